//! `trailwatch run` configuration: a TOML file, every key also settable by
//! environment, validated at load time. AWS region, credentials and endpoints are not
//! here on purpose: they come from the standard SDK chain (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, instance and task roles).
//!
//! Loading reads the file with its sinks as written, applies the environment
//! (`env.rs`), then checks everything at once so that one run names every
//! problem: the sources (`source.rs`, which compiles the key filters the worker
//! uses), the sinks (`sinks.rs`, which turns each into a typed [`SinkConfig`])
//! and the rest here.

mod env;
mod sinks;
mod source;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use env::ENV_VARS;
use sinks::SinkFields;
pub use sinks::{SinkConfig, SinkTarget, SinkType, mask_url};
pub use source::{KeyFilter, SourceConfig, default_in_flight};

/// The whole configuration file. `S` is how sinks are held: checked
/// ([`SinkConfig`], the default, what [`Config::load`] returns) or, while
/// loading, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config<S = SinkConfig> {
    /// `[source]`, or several `[[source]]` tables (e.g. one queue for CloudTrail and
    /// one for S3 server access logs).
    #[serde(
        rename = "source",
        deserialize_with = "one_or_many",
        serialize_with = "many"
    )]
    pub sources: Vec<SourceConfig>,
    pub rules: RulesConfig,
    pub join: JoinConfig,
    pub state: StateConfig,
    #[serde(rename = "sink")]
    pub sinks: Vec<S>,
    pub metrics: MetricsConfig,
    pub health: HealthConfig,
    pub limits: LimitsConfig,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SourceConfig>, D::Error> {
    let v = toml::Value::deserialize(d)?;
    match v {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|i| SourceConfig::deserialize(i).map_err(serde::de::Error::custom))
            .collect(),
        other => Ok(vec![
            SourceConfig::deserialize(other).map_err(serde::de::Error::custom)?,
        ]),
    }
}

fn many<S: serde::Serializer>(v: &[SourceConfig], s: S) -> Result<S::Ok, S::Error> {
    v.serialize(s)
}

/// `[join]`: how long `DeleteObjects` alerts wait for S3 server access log lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JoinConfig {
    /// Hold `DeleteObjects` alerts from the start. Default false: the join switches
    /// itself on when the first S3 server access log line is read, so a worker that
    /// reads only CloudTrail sends each alert once.
    pub enabled: bool,
    /// How long an alert (or a line) waits for the other side. Default "2h".
    #[serde(with = "humantime_serde_compat")]
    pub window: Duration,
    /// Alerts and requests held at most; beyond, the oldest go out (counted as
    /// `JoinEvicted`). Default 100000.
    pub max_pending: usize,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            enabled: false,
            window: Duration::from_secs(2 * 3600),
            max_pending: 100_000,
        }
    }
}

/// Where detection state lives (`[state]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// This process's memory: one worker.
    #[default]
    Memory,
    /// A DynamoDB table shared by every worker.
    Dynamodb,
}

/// `[state]`: thresholds, suppression, the DeleteObjects join and completed
/// objects, in memory (one worker) or in DynamoDB (a fleet).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// `memory` (default) or `dynamodb`. Env: `TRAILWATCH_STATE_BACKEND`.
    pub backend: StateBackend,
    /// The DynamoDB table (`trailwatch state create-table` makes it). Env:
    /// `TRAILWATCH_STATE_TABLE`.
    pub table: String,
    /// How long state waits for a window's late files after its last write (wall
    /// clock; the items' TTL). Default "8d": CloudTrail retries delivery for days.
    #[serde(with = "humantime_serde_compat")]
    pub retention: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Memory,
            table: String::new(),
            retention: Duration::from_secs(8 * 24 * 3600),
        }
    }
}

/// `[rules]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rules directory. Env: `TRAILWATCH_RULES`. Default "rules".
    pub dir: PathBuf,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: PathBuf::from("rules"),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Send CloudWatch metrics. Env: `TRAILWATCH_METRICS_ENABLED`. Default true.
    pub enabled: bool,
    /// CloudWatch namespace. Env: `TRAILWATCH_METRICS_NAMESPACE`. Default "TrailWatch".
    pub namespace: String,
    /// How often metrics are sent. Default "60s".
    #[serde(with = "humantime_serde_compat")]
    pub flush_interval: Duration,
    /// Flushes a batch is kept through while CloudWatch fails before its datapoints
    /// are dropped (and counted). Default 5.
    pub max_pending_flushes: u32,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            namespace: "TrailWatch".to_owned(),
            flush_interval: Duration::from_secs(60),
            max_pending_flushes: 5,
        }
    }
}

/// `[health]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Address for /healthz, /readyz and /metrics; empty disables. Env:
    /// `TRAILWATCH_HEALTH_LISTEN`. Default "127.0.0.1:8080".
    pub listen: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            listen: "127.0.0.1:8080".to_owned(),
        }
    }
}

/// `[limits]`: per-file limits against hostile input.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_decompressed_bytes: u64,
    pub max_record_bytes: usize,
    pub max_nesting_depth: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = crate::input::Limits::default();
        LimitsConfig {
            max_decompressed_bytes: l.max_decompressed_bytes,
            max_record_bytes: l.max_record_bytes,
            max_nesting_depth: l.max_nesting_depth,
        }
    }
}

/// `humantime` strings ("30s", "5m") for `Duration` fields.
pub(crate) mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write e.g. \"30s\", \"5m\""
            ))
        })
    }
}

impl<S> Default for Config<S> {
    fn default() -> Self {
        Config {
            sources: vec![SourceConfig::default()],
            rules: RulesConfig::default(),
            join: JoinConfig::default(),
            state: StateConfig::default(),
            sinks: Vec::new(),
            metrics: MetricsConfig::default(),
            health: HealthConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

/// A configuration problem, with where it was found.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `path` (when given), applies environment overrides from `env`, and
    /// validates.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read config {}: {e}", p.display())))?;
                toml::from_str::<Config<SinkFields>>(&text)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        cfg.check()
    }

    /// The effective configuration as TOML, with secrets masked (webhook URLs carry
    /// tokens in their path or query).
    pub fn render_masked(&self) -> String {
        let mut c = self.clone();
        for s in &mut c.sinks {
            if let SinkTarget::Webhook { url, .. } = &mut s.target {
                *url = mask_url(url);
            }
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

impl Config<SinkFields> {
    /// The configuration with its sinks checked, or every problem found.
    fn check(mut self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        if self.sources.is_empty() {
            problems.push("at least one [source] is required".to_owned());
        }
        let many = self.sources.len() > 1;
        for i in 0..self.sources.len() {
            let at = if many {
                format!("source #{}", i + 1)
            } else {
                "source".to_owned()
            };
            let (earlier, rest) = self.sources.split_at_mut(i);
            rest[0].check(&at, earlier, &mut problems);
        }
        if self.join.window < Duration::from_secs(1) {
            problems.push("join.window must be at least 1s".to_owned());
        }
        if self.state.backend == StateBackend::Dynamodb && self.state.table.trim().is_empty() {
            problems.push(
                "state.backend = \"dynamodb\" needs state.table = \"NAME\" (or TRAILWATCH_STATE_TABLE); create it with `trailwatch state create-table --table NAME`".to_owned(),
            );
        }
        if self.state.retention < Duration::from_secs(3600) {
            problems.push("state.retention must be at least 1h".to_owned());
        }
        if self.sinks.is_empty() {
            problems.push(
                "at least one [[sink]] is required (or set TRAILWATCH_SINKS, e.g. \"stdout\")"
                    .to_owned(),
            );
        }
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (i, s) in std::mem::take(&mut self.sinks).into_iter().enumerate() {
            match s.check(&format!("sink #{}", i + 1)) {
                Ok(s) => sinks.push(s),
                Err(p) => problems.extend(p),
            }
        }
        if self.metrics.namespace.is_empty() || self.metrics.namespace.starts_with("AWS/") {
            problems.push(
                "metrics.namespace must be non-empty and must not start with AWS/".to_owned(),
            );
        }
        if self.metrics.flush_interval < Duration::from_secs(1) {
            problems.push("metrics.flush_interval must be at least 1s".to_owned());
        }
        if !self.health.listen.is_empty()
            && self.health.listen.parse::<std::net::SocketAddr>().is_err()
        {
            problems.push(format!(
                "health.listen: `{}` is not an address such as 0.0.0.0:8080",
                self.health.listen
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError(format!(
                "invalid configuration:\n  - {}",
                problems.join("\n  - ")
            )));
        }
        Ok(Config {
            sources: self.sources,
            rules: self.rules,
            join: self.join,
            state: self.state,
            sinks,
            metrics: self.metrics,
            health: self.health,
            limits: self.limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Severity;
    use std::collections::HashMap;

    pub(super) fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(Some(&p), &|k| env.get(k).cloned())
    }

    /// A webhook sink's URL and `allow_insecure_http`.
    pub(super) fn webhook(s: &SinkConfig) -> (&str, bool) {
        match &s.target {
            SinkTarget::Webhook {
                url,
                allow_insecure_http,
                ..
            } => (url, *allow_insecure_http),
            other => panic!("not a webhook: {other:?}"),
        }
    }

    pub(super) const FULL: &str = r#"
[source]
queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/trailwatch"
max_in_flight = 4
include = []
exclude = ["CloudTrail-Digest"]

[rules]
dir = "rules"

[[sink]]
type = "stdout"

[[sink]]
type = "webhook"
url = "https://hooks.example.com/services/T0/B0/secret"
min_severity = "medium"

[metrics]
namespace = "TrailWatch"
flush_interval = "60s"

[health]
listen = "127.0.0.1:8080"
"#;

    #[test]
    fn documented_keys_load_with_defaults() {
        let c = load(FULL, &[]).unwrap();
        assert_eq!(c.sources[0].max_in_flight, 4);
        assert_eq!(c.sources[0].wait_time, Duration::from_secs(20));
        assert_eq!(c.sources[0].shutdown_grace, Duration::from_secs(25));
        assert_eq!(c.sinks.len(), 2);
        assert_eq!(c.sinks[1].min_severity, Some(Severity::Medium));
        assert_eq!(c.metrics.flush_interval, Duration::from_secs(60));
    }

    #[test]
    fn source_allow_list_loads_and_bad_entries_are_named() {
        let text = FULL.replace(
            "max_in_flight = 4\n",
            "max_in_flight = 4\nbuckets = [\"trail-logs\", \"access-logs\"]\nkey_prefix = \"AWSLogs/\"\nexpected_bucket_owner = \"111122223333\"\n",
        );
        let c = load(&text, &[]).unwrap();
        assert_eq!(c.sources[0].buckets, ["trail-logs", "access-logs"]);
        assert_eq!(c.sources[0].key_prefix.as_deref(), Some("AWSLogs/"));
        assert_eq!(
            c.sources[0].expected_bucket_owner.as_deref(),
            Some("111122223333")
        );

        let c = load(
            FULL,
            &[
                ("TRAILWATCH_BUCKETS", "a-bucket, other.bucket"),
                ("TRAILWATCH_EXPECTED_BUCKET_OWNER", "222233334444"),
            ],
        )
        .unwrap();
        assert_eq!(c.sources[0].buckets, ["a-bucket", "other.bucket"]);
        assert_eq!(
            c.sources[0].expected_bucket_owner.as_deref(),
            Some("222233334444")
        );

        let bad = FULL.replace(
            "max_in_flight = 4\n",
            "max_in_flight = 4\nbuckets = [\"Trail_Logs\"]\nexpected_bucket_owner = \"1111\"\n",
        );
        let e = load(&bad, &[]).unwrap_err().to_string();
        assert!(
            e.contains("source.buckets: `Trail_Logs` is not an S3 bucket name"),
            "{e}"
        );
        assert!(
            e.contains("source.expected_bucket_owner: `1111` is not a 12-digit"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let err = load(
            "[source]\nmax_in_flight = 0\nexclude = [\"(\"]\nwait_time = \"30s\"\n[[sink]]\ntype = \"sns\"\n[health]\nlisten = \"nope\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for want in [
            "source.queue_url is required",
            "max_in_flight must be at least 1",
            "invalid regex `(`",
            "wait_time must be at most 20s",
            "sink #1 (sns) needs `topic_arn`",
            "health.listen: `nope`",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let e = load("[source]\nqueue = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `queue`"), "{e}");
        let e = load(&FULL.replace("\"60s\"", "\"soon\""), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid duration `soon`"), "{e}");
        let e = load(&FULL.replace("\"medium\"", "\"severe\""), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown severity `severe`"), "{e}");
    }

    /// A webhook takes https:// only, unless the sink sets `allow_insecure_http`
    /// (in the file, or `;allow_insecure_http=true` in `TRAILWATCH_SINKS`); the
    /// error says what to set and does not echo the URL.
    #[test]
    fn webhooks_need_https_unless_allowed() {
        let hook = |url: &str, extra: &str| {
            format!(
                "[source]\nqueue_url = \"q\"\n[[sink]]\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}"
            )
        };
        let plain = "http://127.0.0.1:9/hooks/s3cret?token=t0ken";
        let e = load(&hook(plain, ""), &[]).unwrap_err().to_string();
        assert!(
            e.contains("sink #1 (webhook): `url` must be https://")
                && e.contains("set allow_insecure_http = true on the sink")
                && e.contains(";allow_insecure_http=true"),
            "{e}"
        );
        assert!(!e.contains("s3cret") && !e.contains("t0ken"), "{e}");
        let c = load(&hook(plain, "allow_insecure_http = true"), &[]).unwrap();
        assert_eq!(webhook(&c.sinks[0]), (plain, true));
        assert!(c.render_masked().contains("allow_insecure_http = true"));
        let c = load(&hook("HTTPS://hooks.example.com/s3cret", ""), &[]).unwrap();
        assert!(!webhook(&c.sinks[0]).1);
        assert!(!c.render_masked().contains("allow_insecure_http"));
        for bad in ["ftp://h.example/s3cret", "https://[s3cret/x", "s3cret"] {
            let e = load(&hook(bad, "allow_insecure_http = true"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("needs `url` = \"https://...\""), "{bad}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        let e = load(
            &format!("{FULL}\n[[sink]]\ntype = \"stdout\"\nallow_insecure_http = true\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sink #3 (stdout): allow_insecure_http is for webhook sinks only"),
            "{e}"
        );
    }

    /// `TRAILWATCH_SINKS` replaces the file's sinks before they are checked: a
    /// broken sink in the file it replaces is no problem.
    #[test]
    fn environment_sinks_replace_the_file_before_checking() {
        let text = FULL.replace("type = \"stdout\"", "type = \"file\"");
        assert!(
            load(&text, &[])
                .unwrap_err()
                .to_string()
                .contains("sink #1 (file) needs `path`")
        );
        let c = load(&text, &[("TRAILWATCH_SINKS", "stdout")]).unwrap();
        assert_eq!(c.sinks[0].target, SinkTarget::Stdout);
    }

    /// Validation compiles the key filters once, for the worker to take as they are.
    #[test]
    fn validation_keeps_the_compiled_key_filters() {
        let text = FULL.replace("include = []", "include = [\"^AWSLogs/\"]");
        let c = load(&text, &[]).unwrap();
        let keys = c.sources[0].keys.as_ref().expect("compiled by validation");
        assert!(keys.wanted("AWSLogs/1/CloudTrail/x.json.gz"));
        assert!(!keys.wanted("AWSLogs/1/CloudTrail-Digest/x.json.gz"));
        assert!(!keys.wanted("other/x.json.gz"));
    }

    #[test]
    fn secrets_are_masked() {
        let c = load(FULL, &[]).unwrap();
        let shown = c.render_masked();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("https://hooks.example.com/***"), "{shown}");
        assert_eq!(
            mask_url("https://user:pw@h.example/x?token=1"),
            "https://h.example/***"
        );
    }
}
