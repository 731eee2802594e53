//! `trailwatch run` configuration: a TOML file, every key also settable by
//! environment, validated at load time. AWS region, credentials and endpoints are not
//! here on purpose: they come from the standard SDK chain (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, instance and task roles).

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::rules::Severity;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
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
    #[serde(rename = "sink")]
    pub sinks: Vec<SinkConfig>,
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

/// `[source]`: the SQS queue that carries notifications of new log files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// Queue URL. Required. Env: `TRAILWATCH_QUEUE_URL`.
    pub queue_url: String,
    /// Messages (files) processed at once, each evaluated on its own thread. Env:
    /// `TRAILWATCH_MAX_IN_FLIGHT`. Default: twice the CPUs the process may use
    /// (cgroup quotas count), at least 4: a file waits on S3 and on the sinks as
    /// well as on the CPU.
    pub max_in_flight: usize,
    /// Only keys matching one of these regexes are read (empty: all).
    pub include: Vec<String>,
    /// Keys matching any of these regexes are skipped. Default: digest files.
    pub exclude: Vec<String>,
    /// Long-poll wait per ReceiveMessage, 0–20 s. Default "20s".
    #[serde(with = "humantime_serde_compat")]
    pub wait_time: Duration,
    /// Visibility requested on receive and renewed by the heartbeat while a file is
    /// processed. Default "5m".
    #[serde(with = "humantime_serde_compat")]
    pub visibility_timeout: Duration,
    /// Visibility given to a message whose processing failed, so that it comes back
    /// soon rather than after the full timeout. Default "30s".
    #[serde(with = "humantime_serde_compat")]
    pub retry_delay: Duration,
    /// Time allowed on SIGTERM/SIGINT to finish in-flight files. Default "25s"
    /// (under ECS's 30 s stop timeout).
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
    /// Completed objects remembered to skip redeliveries. Default 10000.
    pub completed_cache: usize,
    /// The buckets this source reads (an allow-list: the trail's bucket, the
    /// access-log bucket). A message naming another bucket is not read: it is
    /// deleted, logged with its sender, counted (`NotificationsRejected`) and raised
    /// as the alert `trailwatch-forged-notification`. Empty: any bucket the role can
    /// read, with a warning at start-up. Env: `TRAILWATCH_BUCKETS` (comma-separated).
    pub buckets: Vec<String>,
    /// Only keys under this prefix are read; others are rejected like a bucket
    /// outside `buckets` (unlike `include`/`exclude`, which skip quietly). Env:
    /// `TRAILWATCH_KEY_PREFIX`.
    pub key_prefix: Option<String>,
    /// The 12-digit account that must own the buckets: sent as S3's
    /// `ExpectedBucketOwner` with every GetObject (so a bucket that changed hands
    /// is refused by S3), and a notification that says another account owns the
    /// bucket (EventBridge's `account`) is rejected. Env:
    /// `TRAILWATCH_EXPECTED_BUCKET_OWNER`.
    pub expected_bucket_owner: Option<String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            queue_url: String::new(),
            max_in_flight: default_in_flight(),
            include: Vec::new(),
            exclude: vec!["CloudTrail-Digest".to_owned()],
            wait_time: Duration::from_secs(20),
            visibility_timeout: Duration::from_secs(300),
            retry_delay: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(25),
            completed_cache: 10_000,
            buckets: Vec::new(),
            key_prefix: None,
            expected_bucket_owner: None,
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

/// Where alerts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    Stdout,
    File,
    Sns,
    Webhook,
}

/// `[[sink]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(rename = "type")]
    pub kind: SinkType,
    /// `file`: path to append JSON lines to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// `sns`: topic ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    /// `webhook`: URL to POST to: `https://` (`http://` only with
    /// `allow_insecure_http`). A secret: shown masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `webhook`: send `{"text": "..."}` (Slack-style) instead of the alert JSON.
    #[serde(default)]
    pub slack: bool,
    /// `webhook`: also accept an `http://` URL. Default false: webhooks take
    /// `https://` only (the URL carries a token, the body the alert). Meant for
    /// loopback tests. Env: `;allow_insecure_http=true` after a `TRAILWATCH_SINKS`
    /// entry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
    /// Only alerts at or above this severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Attempts per delivery round (0.5 s doubling to 20 s between them). After a
    /// failed round the worker logs the error, counts `SinkErrors` and starts
    /// another, holding the file's message, until delivery succeeds or the worker
    /// stops. Default 6.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// `webhook`: timeout per request. Default "10s".
    #[serde(default = "default_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
}

fn default_attempts() -> u32 {
    6
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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
mod humantime_serde_compat {
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

impl Default for Config {
    fn default() -> Self {
        Config {
            sources: vec![SourceConfig::default()],
            rules: RulesConfig::default(),
            join: JoinConfig::default(),
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

/// The environment variables that override the file, with what they set.
pub const ENV_VARS: [(&str, &str); 12] = [
    ("TRAILWATCH_QUEUE_URL", "source.queue_url"),
    ("TRAILWATCH_MAX_IN_FLIGHT", "source.max_in_flight"),
    ("TRAILWATCH_INCLUDE", "source.include (comma-separated)"),
    ("TRAILWATCH_EXCLUDE", "source.exclude (comma-separated)"),
    ("TRAILWATCH_BUCKETS", "source.buckets (comma-separated)"),
    ("TRAILWATCH_KEY_PREFIX", "source.key_prefix"),
    (
        "TRAILWATCH_EXPECTED_BUCKET_OWNER",
        "source.expected_bucket_owner",
    ),
    ("TRAILWATCH_RULES", "rules.dir"),
    ("TRAILWATCH_METRICS_NAMESPACE", "metrics.namespace"),
    ("TRAILWATCH_METRICS_ENABLED", "metrics.enabled"),
    ("TRAILWATCH_HEALTH_LISTEN", "health.listen"),
    (
        "TRAILWATCH_SINKS",
        "sinks, e.g. `stdout,sns:arn:aws:sns:...,webhook:https://...,file:/path`",
    ),
];

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
                toml::from_str::<Config>(&text)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The source the `TRAILWATCH_*` source variables set (the first one).
    fn first_source(&mut self) -> &mut SourceConfig {
        if self.sources.is_empty() {
            self.sources.push(SourceConfig::default());
        }
        &mut self.sources[0]
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let list = |s: String| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(v) = env("TRAILWATCH_QUEUE_URL") {
            self.first_source().queue_url = v;
        }
        if let Some(v) = env("TRAILWATCH_MAX_IN_FLIGHT") {
            self.first_source().max_in_flight = v.parse().map_err(|_| {
                ConfigError(format!(
                    "TRAILWATCH_MAX_IN_FLIGHT: `{v}` is not a whole number"
                ))
            })?;
        }
        if let Some(v) = env("TRAILWATCH_INCLUDE") {
            self.first_source().include = list(v);
        }
        if let Some(v) = env("TRAILWATCH_EXCLUDE") {
            self.first_source().exclude = list(v);
        }
        if let Some(v) = env("TRAILWATCH_BUCKETS") {
            self.first_source().buckets = list(v);
        }
        if let Some(v) = env("TRAILWATCH_KEY_PREFIX") {
            self.first_source().key_prefix = Some(v).filter(|p| !p.is_empty());
        }
        if let Some(v) = env("TRAILWATCH_EXPECTED_BUCKET_OWNER") {
            self.first_source().expected_bucket_owner = Some(v).filter(|o| !o.is_empty());
        }
        if let Some(v) = env("TRAILWATCH_RULES") {
            self.rules.dir = PathBuf::from(v);
        }
        if let Some(v) = env("TRAILWATCH_METRICS_NAMESPACE") {
            self.metrics.namespace = v;
        }
        if let Some(v) = env("TRAILWATCH_METRICS_ENABLED") {
            self.metrics.enabled =
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = env("TRAILWATCH_HEALTH_LISTEN") {
            self.health.listen = v;
        }
        if let Some(v) = env("TRAILWATCH_SINKS") {
            self.sinks = list(v)
                .iter()
                .map(|s| parse_sink_spec(s))
                .collect::<Result<_, _>>()?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.sources.is_empty() {
            problems.push("at least one [source] is required".to_owned());
        }
        let many = self.sources.len() > 1;
        for (i, src) in self.sources.iter().enumerate() {
            let at = if many {
                format!("source #{}", i + 1)
            } else {
                "source".to_owned()
            };
            if src.queue_url.is_empty() {
                problems.push(format!(
                    "{at}.queue_url is required (or set TRAILWATCH_QUEUE_URL)"
                ));
            }
            if self.sources[..i]
                .iter()
                .any(|o| o.queue_url == src.queue_url)
                && !src.queue_url.is_empty()
            {
                problems.push(format!("{at}: queue {} is listed twice", src.queue_url));
            }
            if src.max_in_flight == 0 {
                problems.push(format!("{at}.max_in_flight must be at least 1"));
            }
            if src.wait_time > Duration::from_secs(20) {
                problems.push(format!(
                    "{at}.wait_time must be at most 20s (the SQS long-poll maximum)"
                ));
            }
            let vt = src.visibility_timeout;
            if vt < Duration::from_secs(2) || vt > Duration::from_secs(43_200) {
                problems.push(format!(
                    "{at}.visibility_timeout must be between 2s and 12h"
                ));
            }
            if src.retry_delay > Duration::from_secs(43_200) {
                problems.push(format!("{at}.retry_delay must be at most 12h"));
            }
            for b in &src.buckets {
                if !valid_bucket_name(b) {
                    problems.push(format!(
                        "{at}.buckets: `{}` is not an S3 bucket name (3-63 characters: a-z, 0-9, `.` and `-`)",
                        b.escape_debug()
                    ));
                }
            }
            if let Some(o) = &src.expected_bucket_owner
                && !(o.len() == 12 && o.bytes().all(|b| b.is_ascii_digit()))
            {
                problems.push(format!(
                    "{at}.expected_bucket_owner: `{}` is not a 12-digit AWS account id",
                    o.escape_debug()
                ));
            }
            for (what, list) in [("include", &src.include), ("exclude", &src.exclude)] {
                for re in list {
                    if let Err(e) = Regex::new(re) {
                        problems.push(format!(
                            "{at}.{what}: invalid regex `{re}`: {}",
                            e.to_string().replace('\n', " ")
                        ));
                    }
                }
            }
        }
        if self.join.window < Duration::from_secs(1) {
            problems.push("join.window must be at least 1s".to_owned());
        }
        if self.sinks.is_empty() {
            problems.push(
                "at least one [[sink]] is required (or set TRAILWATCH_SINKS, e.g. \"stdout\")"
                    .to_owned(),
            );
        }
        for (i, s) in self.sinks.iter().enumerate() {
            let n = i + 1;
            match s.kind {
                SinkType::File if s.path.is_none() => {
                    problems.push(format!("sink #{n} (file) needs `path`"))
                }
                SinkType::Sns
                    if s.topic_arn
                        .as_deref()
                        .is_none_or(|a| !a.starts_with("arn:")) =>
                {
                    problems.push(format!(
                        "sink #{n} (sns) needs `topic_arn` = \"arn:aws:sns:...\""
                    ))
                }
                SinkType::Webhook => {
                    if let Some(p) = webhook_url_problem(s) {
                        problems.push(format!("sink #{n} (webhook){p}"));
                    }
                }
                _ => {}
            }
            if s.allow_insecure_http && s.kind != SinkType::Webhook {
                problems.push(format!(
                    "sink #{n} ({}): allow_insecure_http is for webhook sinks only",
                    sink_type_name(s.kind)
                ));
            }
            if s.max_attempts == 0 {
                problems.push(format!("sink #{n}: max_attempts must be at least 1"));
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
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(format!(
                "invalid configuration:\n  - {}",
                problems.join("\n  - ")
            )))
        }
    }

    /// The effective configuration as TOML, with secrets masked (webhook URLs carry
    /// tokens in their path or query).
    pub fn render_masked(&self) -> String {
        let mut c = self.clone();
        for s in &mut c.sinks {
            if let Some(u) = &s.url {
                s.url = Some(mask_url(u));
            }
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// What is wrong with a webhook sink's `url`, as the end of a problem line
/// (after "sink #N (webhook)"); `None` when nothing is. The URL itself is never
/// shown: it may carry a token.
fn webhook_url_problem(s: &SinkConfig) -> Option<String> {
    let needs = || " needs `url` = \"https://...\"".to_owned();
    let Some(u) = s.url.as_deref() else {
        return Some(needs());
    };
    let Ok(url) = reqwest::Url::parse(u) else {
        return Some(needs());
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Some(needs());
    }
    match url.scheme() {
        "https" => None,
        "http" if s.allow_insecure_http => None,
        "http" => Some(
            ": `url` must be https:// (plain http would send the token in its URL and the alerts in clear); \
             to allow http, e.g. for a loopback test, set allow_insecure_http = true on the sink \
             (or add ;allow_insecure_http=true to its TRAILWATCH_SINKS entry)"
                .to_owned(),
        ),
        _ => Some(needs()),
    }
}

fn sink_type_name(k: SinkType) -> &'static str {
    match k {
        SinkType::Stdout => "stdout",
        SinkType::File => "file",
        SinkType::Sns => "sns",
        SinkType::Webhook => "webhook",
    }
}

/// `https://hooks.example.com/services/T000/B000/XXXX?x=y` → `https://hooks.example.com/***`.
pub fn mask_url(u: &str) -> String {
    match u.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/***")
        }
        None => "***".to_owned(),
    }
}

/// [`SourceConfig::max_in_flight`]'s default.
pub fn default_in_flight() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cpus).max(4)
}

/// S3's rules for a bucket name, as far as telling a typo goes: 3-63 characters of
/// lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit.
fn valid_bucket_name(b: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| alnum(c) || c == b'.' || c == b'-')
        && b.bytes().next().is_some_and(alnum)
        && b.bytes().last().is_some_and(alnum)
}

/// `stdout`, `file:/path`, `sns:arn:...`, `webhook:https://...` (for `TRAILWATCH_SINKS`),
/// each optionally followed by `;min_severity=LEVEL`: a deployment configured by
/// environment alone (a CloudFormation task definition) can send every alert to
/// its log and only the ones worth a page to SNS. A webhook may also take
/// `;allow_insecure_http=true` (for an `http://` URL, in loopback tests); the two
/// suffixes go in either order.
fn parse_sink_spec(s: &str) -> Result<SinkConfig, ConfigError> {
    let mut s = s;
    let mut min_severity = None;
    let mut allow_insecure_http = false;
    // Only a known `;key=` ends the spec: a URL's own `;` (in its query) stays.
    // The value alone is shown in errors: a webhook URL may carry a secret.
    while let Some((spec, opt)) = s.rsplit_once(';') {
        if let Some(level) = opt.strip_prefix("min_severity=") {
            min_severity = Some(
                level
                    .trim()
                    .parse::<Severity>()
                    .map_err(|e| ConfigError(format!("TRAILWATCH_SINKS: min_severity: {e}")))?,
            );
        } else if let Some(v) = opt.strip_prefix("allow_insecure_http=") {
            allow_insecure_http = match v.trim() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(ConfigError(format!(
                        "TRAILWATCH_SINKS: allow_insecure_http: `{other}` is not true or false"
                    )));
                }
            };
        } else {
            break;
        }
        s = spec;
    }
    let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
    let mut c = SinkConfig {
        kind: SinkType::Stdout,
        path: None,
        topic_arn: None,
        url: None,
        slack: false,
        allow_insecure_http,
        min_severity,
        max_attempts: default_attempts(),
        timeout: default_timeout(),
    };
    match kind {
        "stdout" => {}
        "file" => {
            c.kind = SinkType::File;
            c.path = Some(PathBuf::from(arg));
        }
        "sns" => {
            c.kind = SinkType::Sns;
            c.topic_arn = Some(arg.to_owned());
        }
        "webhook" => {
            c.kind = SinkType::Webhook;
            c.url = Some(arg.to_owned());
        }
        other => {
            return Err(ConfigError(format!(
                "TRAILWATCH_SINKS: unknown sink `{other}`; use stdout, file:PATH, sns:TOPIC_ARN or webhook:URL, each optionally followed by ;min_severity=LEVEL (and a webhook by ;allow_insecure_http=true)"
            )));
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(Some(&p), &|k| env.get(k).cloned())
    }

    const FULL: &str = r#"
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
    fn environment_overrides_the_file() {
        let c = load(
            FULL,
            &[
                ("TRAILWATCH_QUEUE_URL", "http://127.0.0.1:1/q"),
                ("TRAILWATCH_RULES", "/etc/trailwatch/rules"),
                ("TRAILWATCH_MAX_IN_FLIGHT", "8"),
                ("TRAILWATCH_SINKS", "stdout, sns:arn:aws:sns:us-east-1:1:t"),
                ("TRAILWATCH_EXCLUDE", "Digest,\\.tmp$"),
            ],
        )
        .unwrap();
        assert_eq!(c.sources[0].queue_url, "http://127.0.0.1:1/q");
        assert_eq!(c.rules.dir, PathBuf::from("/etc/trailwatch/rules"));
        assert_eq!(c.sources[0].max_in_flight, 8);
        assert_eq!(c.sinks.len(), 2);
        assert_eq!(c.sinks[1].kind, SinkType::Sns);
        assert_eq!(c.sources[0].exclude, ["Digest", "\\.tmp$"]);
    }

    /// `TRAILWATCH_SINKS` entries may end in `;min_severity=LEVEL`; a bad level is
    /// an error that does not echo the sink (a webhook URL may carry a secret).
    #[test]
    fn environment_sinks_take_a_minimum_severity() {
        let sinks = |v: &str| load(FULL, &[("TRAILWATCH_SINKS", v)]).map(|c| c.sinks);
        let s = sinks(
            "stdout,sns:arn:aws:sns:us-east-1:1:t;min_severity=medium, webhook:https://h.example/x?a=b;min_severity=critical",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].kind, s[0].min_severity), (SinkType::Stdout, None));
        assert_eq!(s[1].kind, SinkType::Sns);
        assert_eq!(s[1].topic_arn.as_deref(), Some("arn:aws:sns:us-east-1:1:t"));
        assert_eq!(s[1].min_severity, Some(Severity::Medium));
        assert_eq!(s[2].url.as_deref(), Some("https://h.example/x?a=b"));
        assert_eq!(s[2].min_severity, Some(Severity::Critical));
        let e = sinks("webhook:https://h.example/secret-token;min_severity=urgent")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_severity: unknown severity `urgent`"), "{e}");
        assert!(!e.contains("secret-token"), "{e}");
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
        assert!(c.sinks[0].allow_insecure_http);
        assert!(c.render_masked().contains("allow_insecure_http = true"));
        let c = load(&hook("HTTPS://hooks.example.com/s3cret", ""), &[]).unwrap();
        assert!(!c.sinks[0].allow_insecure_http);
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

        let env = |v: &str| load(FULL, &[("TRAILWATCH_SINKS", v)]).map(|c| c.sinks);
        let e = env(&format!("stdout,webhook:{plain}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sink #2 (webhook): `url` must be https://"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        for v in [
            format!("webhook:{plain};allow_insecure_http=true;min_severity=high"),
            format!("webhook:{plain};min_severity=high;allow_insecure_http=true"),
        ] {
            let s = env(&v).unwrap();
            assert_eq!(s[0].url.as_deref(), Some(plain), "{v}");
            assert!(s[0].allow_insecure_http, "{v}");
            assert_eq!(s[0].min_severity, Some(Severity::High), "{v}");
        }
        let s = env("webhook:https://h.example/x?a=1;b=2").unwrap();
        assert_eq!(s[0].url.as_deref(), Some("https://h.example/x?a=1;b=2"));
        assert!(!s[0].allow_insecure_http);
        let e = env(&format!("webhook:{plain};allow_insecure_http=yes please"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("allow_insecure_http: `yes please` is not true or false"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
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
