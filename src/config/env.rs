//! The `TRAILWATCH_*` variables that override the file, applied before
//! validation, so that a value from either place is checked the same way; and the
//! `TRAILWATCH_SINKS` syntax, for deployments configured by environment alone.

use std::path::PathBuf;

use super::sinks::{SinkFields, SinkType};
use super::{Config, ConfigError, SourceConfig};
use crate::rules::Severity;

/// The environment variables that override the file, with what they set.
pub const ENV_VARS: [(&str, &str); 14] = [
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
    (
        "TRAILWATCH_STATE_BACKEND",
        "state.backend (memory or dynamodb)",
    ),
    ("TRAILWATCH_STATE_TABLE", "state.table"),
    ("TRAILWATCH_METRICS_NAMESPACE", "metrics.namespace"),
    ("TRAILWATCH_METRICS_ENABLED", "metrics.enabled"),
    ("TRAILWATCH_HEALTH_LISTEN", "health.listen"),
    (
        "TRAILWATCH_SINKS",
        "sinks, e.g. `stdout,sns:arn:aws:sns:...,webhook:https://...,file:/path`",
    ),
];

impl Config<SinkFields> {
    /// The source the `TRAILWATCH_*` source variables set (the first one).
    fn first_source(&mut self) -> &mut SourceConfig {
        if self.sources.is_empty() {
            self.sources.push(SourceConfig::default());
        }
        &mut self.sources[0]
    }

    pub(super) fn apply_env(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
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
        if let Some(v) = env("TRAILWATCH_STATE_BACKEND") {
            self.state.backend = match v.to_ascii_lowercase().as_str() {
                "memory" => super::StateBackend::Memory,
                "dynamodb" => super::StateBackend::Dynamodb,
                _ => {
                    return Err(ConfigError(format!(
                        "TRAILWATCH_STATE_BACKEND: `{v}` is neither `memory` nor `dynamodb`"
                    )));
                }
            };
        }
        if let Some(v) = env("TRAILWATCH_STATE_TABLE") {
            self.state.table = v;
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
}

/// `stdout`, `file:/path`, `sns:arn:...`, `webhook:https://...` (for `TRAILWATCH_SINKS`),
/// each optionally followed by `;min_severity=LEVEL`: a deployment configured by
/// environment alone (a CloudFormation task definition) can send every alert to
/// its log and only the ones worth a page to SNS. A webhook may also take
/// `;allow_insecure_http=true` (for an `http://` URL, in loopback tests); the two
/// suffixes go in either order. The entry is checked with the file's sinks.
fn parse_sink_spec(s: &str) -> Result<SinkFields, ConfigError> {
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
    let mut c = match kind {
        "stdout" => SinkFields::of(SinkType::Stdout),
        "file" => SinkFields {
            path: Some(PathBuf::from(arg)),
            ..SinkFields::of(SinkType::File)
        },
        "sns" => SinkFields {
            topic_arn: Some(arg.to_owned()),
            ..SinkFields::of(SinkType::Sns)
        },
        "webhook" => SinkFields {
            url: Some(arg.to_owned()),
            ..SinkFields::of(SinkType::Webhook)
        },
        other => {
            return Err(ConfigError(format!(
                "TRAILWATCH_SINKS: unknown sink `{other}`; use stdout, file:PATH, sns:TOPIC_ARN or webhook:URL, each optionally followed by ;min_severity=LEVEL (and a webhook by ;allow_insecure_http=true)"
            )));
        }
    };
    c.min_severity = min_severity;
    c.allow_insecure_http = allow_insecure_http;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkTarget;
    use crate::config::tests::{FULL, load, webhook};

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
        assert_eq!(c.sinks[1].kind(), SinkType::Sns);
        assert_eq!(c.sources[0].exclude, ["Digest", "\\.tmp$"]);
        let keys = c.sources[0].key_filter().unwrap();
        assert!(!keys.wanted("a/x.tmp") && keys.wanted("a/x.json.gz"));
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
        assert_eq!((s[0].kind(), s[0].min_severity), (SinkType::Stdout, None));
        assert_eq!(
            s[1].target,
            SinkTarget::Sns {
                topic_arn: "arn:aws:sns:us-east-1:1:t".into()
            }
        );
        assert_eq!(s[1].min_severity, Some(Severity::Medium));
        assert_eq!(webhook(&s[2]), ("https://h.example/x?a=b", false));
        assert_eq!(s[2].min_severity, Some(Severity::Critical));
        let e = sinks("webhook:https://h.example/secret-token;min_severity=urgent")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_severity: unknown severity `urgent`"), "{e}");
        assert!(!e.contains("secret-token"), "{e}");
    }

    /// An `http://` webhook from the environment needs `;allow_insecure_http=true`
    /// (in either order with `;min_severity=`); a URL's own `;` stays in it.
    #[test]
    fn environment_webhooks_need_https_unless_allowed() {
        let plain = "http://127.0.0.1:9/hooks/s3cret?token=t0ken";
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
            assert_eq!(webhook(&s[0]), (plain, true), "{v}");
            assert_eq!(s[0].min_severity, Some(Severity::High), "{v}");
        }
        let s = env("webhook:https://h.example/x?a=1;b=2").unwrap();
        assert_eq!(webhook(&s[0]), ("https://h.example/x?a=1;b=2", false));
        let e = env(&format!("webhook:{plain};allow_insecure_http=yes please"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("allow_insecure_http: `yes please` is not true or false"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }
}
