//! `[source]`: a queue, the keys read from it and the buckets it may name; and
//! [`KeyFilter`], its include/exclude lists compiled once, by validation, for the
//! worker to use as they are.

use std::time::Duration;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::ConfigError;

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
    #[serde(with = "super::humantime_serde_compat")]
    pub wait_time: Duration,
    /// Visibility requested on receive and renewed by the heartbeat while a file is
    /// processed. Default "5m".
    #[serde(with = "super::humantime_serde_compat")]
    pub visibility_timeout: Duration,
    /// Visibility given to a message whose processing failed, so that it comes back
    /// soon rather than after the full timeout. Default "30s".
    #[serde(with = "super::humantime_serde_compat")]
    pub retry_delay: Duration,
    /// Time allowed on SIGTERM/SIGINT to finish in-flight files. Default "25s"
    /// (under ECS's 30 s stop timeout).
    #[serde(with = "super::humantime_serde_compat")]
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
    /// `include` and `exclude` as validation compiled them, so that the worker
    /// does not compile them again (see [`SourceConfig::key_filter`]).
    #[serde(skip)]
    pub(crate) keys: Option<KeyFilter>,
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
            keys: None,
        }
    }
}

impl SourceConfig {
    /// The include/exclude filters: the ones validation compiled, or, for a
    /// source that did not come through [`super::Config::load`] (or whose lists
    /// changed since), compiled now.
    pub fn key_filter(&self) -> Result<KeyFilter, ConfigError> {
        match &self.keys {
            Some(k) if k.compiled_from(&self.include, &self.exclude) => Ok(k.clone()),
            _ => KeyFilter::new("source", &self.include, &self.exclude)
                .map_err(|problems| ConfigError(problems.join("; "))),
        }
    }

    /// Adds what is wrong with this source (`at`: how problems name it) to
    /// `problems`, and keeps the compiled key filters; `earlier` are the sources
    /// before it, which must not name the same queue.
    pub(super) fn check(&mut self, at: &str, earlier: &[SourceConfig], problems: &mut Vec<String>) {
        if self.queue_url.is_empty() {
            problems.push(format!(
                "{at}.queue_url is required (or set TRAILWATCH_QUEUE_URL)"
            ));
        }
        if earlier.iter().any(|o| o.queue_url == self.queue_url) && !self.queue_url.is_empty() {
            problems.push(format!("{at}: queue {} is listed twice", self.queue_url));
        }
        if self.max_in_flight == 0 {
            problems.push(format!("{at}.max_in_flight must be at least 1"));
        }
        if self.wait_time > Duration::from_secs(20) {
            problems.push(format!(
                "{at}.wait_time must be at most 20s (the SQS long-poll maximum)"
            ));
        }
        let vt = self.visibility_timeout;
        if vt < Duration::from_secs(2) || vt > Duration::from_secs(43_200) {
            problems.push(format!(
                "{at}.visibility_timeout must be between 2s and 12h"
            ));
        }
        if self.retry_delay > Duration::from_secs(43_200) {
            problems.push(format!("{at}.retry_delay must be at most 12h"));
        }
        for b in &self.buckets {
            if !valid_bucket_name(b) {
                problems.push(format!(
                    "{at}.buckets: `{}` is not an S3 bucket name (3-63 characters: a-z, 0-9, `.` and `-`)",
                    b.escape_debug()
                ));
            }
        }
        if let Some(o) = &self.expected_bucket_owner
            && !(o.len() == 12 && o.bytes().all(|b| b.is_ascii_digit()))
        {
            problems.push(format!(
                "{at}.expected_bucket_owner: `{}` is not a 12-digit AWS account id",
                o.escape_debug()
            ));
        }
        match KeyFilter::new(at, &self.include, &self.exclude) {
            Ok(k) => self.keys = Some(k),
            Err(p) => problems.extend(p),
        }
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

/// A source's `include` and `exclude` regexes, each list one [`RegexSet`]: a key
/// is matched against each list in one pass, however long the list.
#[derive(Debug, Clone)]
pub struct KeyFilter {
    include: RegexSet,
    exclude: RegexSet,
}

impl KeyFilter {
    /// Compiles both lists. On failure, one problem per bad pattern, named as
    /// `{at}.include` or `{at}.exclude`.
    pub fn new(at: &str, include: &[String], exclude: &[String]) -> Result<KeyFilter, Vec<String>> {
        let mut problems = Vec::new();
        let mut compile = |what: &str, list: &[String]| match RegexSet::new(list) {
            Ok(set) => Some(set),
            Err(e) => {
                problems.extend(pattern_problems(at, what, list, &e));
                None
            }
        };
        match (compile("include", include), compile("exclude", exclude)) {
            (Some(include), Some(exclude)) => Ok(KeyFilter { include, exclude }),
            _ => Err(problems),
        }
    }

    /// Whether the worker reads `key`: it matches an `include` (or there are
    /// none) and no `exclude`.
    pub fn wanted(&self, key: &str) -> bool {
        (self.include.is_empty() || self.include.is_match(key)) && !self.exclude.is_match(key)
    }

    fn compiled_from(&self, include: &[String], exclude: &[String]) -> bool {
        self.include.patterns() == include && self.exclude.patterns() == exclude
    }
}

/// Why `list` did not compile, per pattern: a set's error names one pattern only,
/// so each is compiled alone to name every bad one (on this failure path only).
/// Should each compile alone (the set as a whole over a size limit), the set's
/// error.
fn pattern_problems(
    at: &str,
    what: &str,
    list: &[String],
    set_error: &regex::Error,
) -> Vec<String> {
    let one_line = |e: &regex::Error| e.to_string().replace('\n', " ");
    let bad: Vec<String> = list
        .iter()
        .filter_map(|re| {
            Regex::new(re)
                .err()
                .map(|e| format!("{at}.{what}: invalid regex `{re}`: {}", one_line(&e)))
        })
        .collect();
    if bad.is_empty() {
        vec![format!("{at}.{what}: {}", one_line(set_error))]
    } else {
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_are_filtered_by_both_lists() {
        let k = KeyFilter::new("source", &[], &list(&["CloudTrail-Digest"])).unwrap();
        assert!(k.wanted("AWSLogs/1/CloudTrail/x.json.gz"));
        assert!(!k.wanted("AWSLogs/1/CloudTrail-Digest/x.json.gz"));
        let k = KeyFilter::new("source", &list(&["^a/", "^b/"]), &list(&["\\.tmp$"])).unwrap();
        assert!(k.wanted("a/x") && k.wanted("b/y"));
        assert!(!k.wanted("c/x") && !k.wanted("a/x.tmp"));
    }

    #[test]
    fn every_bad_pattern_is_named() {
        let e = KeyFilter::new("source #2", &list(&["(", "ok"]), &list(&["[", "fine", "+"]))
            .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("source #2.include: invalid regex `(`: "),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("source #2.exclude: invalid regex `[`: "),
            "{e:?}"
        );
        assert!(
            e[2].starts_with("source #2.exclude: invalid regex `+`: "),
            "{e:?}"
        );
        assert!(e.iter().all(|p| !p.contains('\n')), "{e:?}");
    }

    /// The worker takes the filters validation compiled, unless the lists changed.
    #[test]
    fn the_validated_compilation_is_reused_while_it_matches() {
        let mut s = SourceConfig {
            queue_url: "q".into(),
            ..SourceConfig::default()
        };
        let mut problems = Vec::new();
        s.check("source", &[], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let compiled = s.keys.clone().unwrap();
        assert!(compiled.compiled_from(&s.include, &s.exclude));
        assert!(!s.key_filter().unwrap().wanted("x/CloudTrail-Digest/y"));
        s.exclude.clear();
        assert!(s.key_filter().unwrap().wanted("x/CloudTrail-Digest/y"));
        s.include = list(&["("]);
        assert!(s.key_filter().is_err());
    }
}
