//! `[[sink]]`: where alerts go. Two forms: [`SinkFields`], the table as written
//! (every key of every type, the same for a TOML table and a `TRAILWATCH_SINKS`
//! entry), and [`SinkConfig`], what it means once checked: a [`SinkTarget`] per
//! `type` holding exactly what that type needs. Only checking makes a
//! `SinkConfig`, so the sinks never find a required key missing.
//!
//! The written form stays apart because loading reports every problem of the
//! whole file at once, after the environment had its say (`TRAILWATCH_SINKS`
//! replaces the file's sinks): a sink that fails to deserialize would stop at its
//! own first problem.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rules::Severity;

/// A sink's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    Stdout,
    File,
    Sns,
    Webhook,
}

impl SinkType {
    pub fn name(self) -> &'static str {
        match self {
            SinkType::Stdout => "stdout",
            SinkType::File => "file",
            SinkType::Sns => "sns",
            SinkType::Webhook => "webhook",
        }
    }
}

/// `[[sink]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub target: SinkTarget,
    /// Only alerts at or above this severity.
    pub min_severity: Option<Severity>,
    /// Attempts per delivery round (0.5 s doubling to 20 s between them). After a
    /// failed round the worker logs the error, counts `SinkErrors` and starts
    /// another, holding the file's message, until delivery succeeds or the worker
    /// stops. Default 6.
    pub max_attempts: u32,
}

/// Where a sink delivers, by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkTarget {
    Stdout,
    /// Appends JSON lines to `path`.
    File {
        path: PathBuf,
    },
    /// Publishes to the topic `topic_arn`.
    Sns {
        topic_arn: String,
    },
    /// POSTs to `url`: `https://` (`http://` only with `allow_insecure_http`). A
    /// secret: shown masked.
    Webhook {
        url: String,
        /// Send `{"text": "..."}` (Slack-style) instead of the alert JSON.
        slack: bool,
        /// Also accept an `http://` URL. Default false: webhooks take `https://`
        /// only (the URL carries a token, the body the alert). Meant for loopback
        /// tests. Env: `;allow_insecure_http=true` after a `TRAILWATCH_SINKS` entry.
        allow_insecure_http: bool,
        /// Timeout per request. Default "10s".
        timeout: Duration,
    },
}

impl SinkConfig {
    pub fn kind(&self) -> SinkType {
        match self.target {
            SinkTarget::Stdout => SinkType::Stdout,
            SinkTarget::File { .. } => SinkType::File,
            SinkTarget::Sns { .. } => SinkType::Sns,
            SinkTarget::Webhook { .. } => SinkType::Webhook,
        }
    }
}

/// `[[sink]]` as written. Keys another type needs are accepted and ignored, as
/// they always were (only `allow_insecure_http` is refused off a webhook: it
/// weakens a guarantee).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinkFields {
    #[serde(rename = "type")]
    pub kind: SinkType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub slack: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_timeout", with = "super::humantime_serde_compat")]
    pub timeout: Duration,
}

fn default_attempts() -> u32 {
    6
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SinkFields {
    /// A sink of `kind` with every other key at its default.
    pub fn of(kind: SinkType) -> SinkFields {
        SinkFields {
            kind,
            path: None,
            topic_arn: None,
            url: None,
            slack: false,
            allow_insecure_http: false,
            min_severity: None,
            max_attempts: default_attempts(),
            timeout: default_timeout(),
        }
    }

    /// The sink this table describes, or every problem with it, each starting
    /// with `at` (e.g. `sink #2`).
    pub fn check(self, at: &str) -> Result<SinkConfig, Vec<String>> {
        let mut problems = Vec::new();
        let target = match self.kind {
            SinkType::Stdout => Some(SinkTarget::Stdout),
            SinkType::File => self.path.map(|path| SinkTarget::File { path }),
            SinkType::Sns => self
                .topic_arn
                .filter(|a| a.starts_with("arn:"))
                .map(|topic_arn| SinkTarget::Sns { topic_arn }),
            SinkType::Webhook => match webhook_url(self.url, self.allow_insecure_http) {
                Ok(url) => Some(SinkTarget::Webhook {
                    url,
                    slack: self.slack,
                    allow_insecure_http: self.allow_insecure_http,
                    timeout: self.timeout,
                }),
                Err(why) => {
                    problems.push(format!("{at} (webhook){why}"));
                    None
                }
            },
        };
        match (self.kind, &target) {
            (SinkType::File, None) => problems.push(format!("{at} (file) needs `path`")),
            (SinkType::Sns, None) => problems.push(format!(
                "{at} (sns) needs `topic_arn` = \"arn:aws:sns:...\""
            )),
            _ => {}
        }
        if self.allow_insecure_http && self.kind != SinkType::Webhook {
            problems.push(format!(
                "{at} ({}): allow_insecure_http is for webhook sinks only",
                self.kind.name()
            ));
        }
        if self.max_attempts == 0 {
            problems.push(format!("{at}: max_attempts must be at least 1"));
        }
        match target {
            Some(target) if problems.is_empty() => Ok(SinkConfig {
                target,
                min_severity: self.min_severity,
                max_attempts: self.max_attempts,
            }),
            _ => Err(problems),
        }
    }
}

impl From<&SinkConfig> for SinkFields {
    fn from(c: &SinkConfig) -> SinkFields {
        let mut f = SinkFields::of(c.kind());
        f.min_severity = c.min_severity;
        f.max_attempts = c.max_attempts;
        match &c.target {
            SinkTarget::Stdout => {}
            SinkTarget::File { path } => f.path = Some(path.clone()),
            SinkTarget::Sns { topic_arn } => f.topic_arn = Some(topic_arn.clone()),
            SinkTarget::Webhook {
                url,
                slack,
                allow_insecure_http,
                timeout,
            } => {
                f.url = Some(url.clone());
                f.slack = *slack;
                f.allow_insecure_http = *allow_insecure_http;
                f.timeout = *timeout;
            }
        }
        f
    }
}

/// Written as the table it was read from.
impl Serialize for SinkConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SinkFields::from(self).serialize(s)
    }
}

/// Read as a table, then checked (a lone sink, outside a configuration file).
impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SinkFields::deserialize(d)?
            .check("sink")
            .map_err(|problems| serde::de::Error::custom(problems.join("; ")))
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A webhook sink's `url` when it is usable, otherwise what is wrong with it, as
/// the end of a problem line (after "sink #N (webhook)"). The URL itself is never
/// shown: it may carry a token.
fn webhook_url(url: Option<String>, allow_insecure_http: bool) -> Result<String, String> {
    let needs = || " needs `url` = \"https://...\"".to_owned();
    let Some(u) = url else {
        return Err(needs());
    };
    let Ok(parsed) = reqwest::Url::parse(&u) else {
        return Err(needs());
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(needs());
    }
    match parsed.scheme() {
        "https" => Ok(u),
        "http" if allow_insecure_http => Ok(u),
        "http" => Err(
            ": `url` must be https:// (plain http would send the token in its URL and the alerts in clear); \
             to allow http, e.g. for a loopback test, set allow_insecure_http = true on the sink \
             (or add ;allow_insecure_http=true to its TRAILWATCH_SINKS entry)"
                .to_owned(),
        ),
        _ => Err(needs()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(text: &str) -> Result<SinkConfig, String> {
        toml::from_str::<SinkConfig>(text).map_err(|e| e.to_string())
    }

    /// A lone sink is checked as one in a file is; each type keeps what it needs.
    #[test]
    fn a_lone_sink_is_checked() {
        let s = sink("type = \"sns\"\ntopic_arn = \"arn:aws:sns:us-east-1:1:t\"").unwrap();
        assert_eq!(
            s.target,
            SinkTarget::Sns {
                topic_arn: "arn:aws:sns:us-east-1:1:t".into()
            }
        );
        assert_eq!((s.min_severity, s.max_attempts), (None, 6));
        let e = sink("type = \"sns\"\nmax_attempts = 0").unwrap_err();
        assert!(
            e.contains("sink (sns) needs `topic_arn`")
                && e.contains("sink: max_attempts must be at least 1"),
            "{e}"
        );
        let s =
            sink("type = \"webhook\"\nurl = \"https://h.example/x\"\ntimeout = \"3s\"").unwrap();
        assert_eq!(
            s.target,
            SinkTarget::Webhook {
                url: "https://h.example/x".into(),
                slack: false,
                allow_insecure_http: false,
                timeout: Duration::from_secs(3)
            }
        );
        assert!(
            sink("type = \"pager\"")
                .unwrap_err()
                .contains("unknown variant `pager`")
        );
    }

    /// Written back, a checked sink is the table it came from.
    #[test]
    fn a_sink_is_written_as_read() {
        for text in [
            "type = \"stdout\"\nslack = false\nmax_attempts = 6\ntimeout = \"10s\"\n",
            "type = \"file\"\npath = \"/a\"\nslack = false\nmin_severity = \"high\"\nmax_attempts = 2\ntimeout = \"10s\"\n",
            "type = \"webhook\"\nurl = \"http://127.0.0.1/x\"\nslack = true\nallow_insecure_http = true\nmax_attempts = 6\ntimeout = \"1s\"\n",
        ] {
            let s = sink(text).unwrap();
            assert_eq!(toml::to_string(&s).unwrap(), text);
        }
    }
}
