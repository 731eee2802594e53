//! Alert sinks: where alerts go, each with an optional minimum severity. A delivery
//! is retried with exponential backoff and jitter ([`crate::retry`]); the worker
//! deletes an SQS message only after every sink accepted every alert of its files.

mod sns;
mod webhook;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::alert::Alert;
use crate::config::{SinkConfig, SinkTarget};
use crate::retry::backoff;
use crate::rules::Severity;

enum Kind {
    Stdout,
    File { path: PathBuf, lock: Mutex<()> },
    Sns(sns::Sns),
    Webhook(webhook::Webhook),
}

/// One configured sink.
pub struct Sink {
    kind: Kind,
    pub name: String,
    min_severity: Option<Severity>,
    max_attempts: u32,
}

/// An attempt that did not get every alert accepted: the alerts still to send
/// (indices into the attempt's alerts, in order), and why.
#[derive(Debug)]
pub struct Unsent {
    pub left: Vec<usize>,
    pub message: String,
}

impl Unsent {
    /// The alerts from `first` on (sinks that send one at a time stop at the first
    /// failure).
    fn from(first: usize, len: usize, message: impl Into<String>) -> Unsent {
        Unsent {
            left: (first..len).collect(),
            message: message.into(),
        }
    }
}

/// A delivery that failed every attempt.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {message} (after {attempts} attempts)")]
pub struct SinkError {
    pub sink: String,
    pub message: String,
    pub attempts: u32,
}

impl Sink {
    /// Builds a sink; AWS clients come from `aws` (the standard SDK chain).
    pub fn new(c: &SinkConfig, aws: &aws_config::SdkConfig) -> anyhow::Result<Sink> {
        let (kind, name) = match &c.target {
            SinkTarget::Stdout => (Kind::Stdout, "stdout".to_owned()),
            SinkTarget::File { path } => (
                Kind::File {
                    path: path.clone(),
                    lock: Mutex::new(()),
                },
                format!("file:{}", path.display()),
            ),
            SinkTarget::Sns { topic_arn } => (
                Kind::Sns(sns::Sns::new(aws, topic_arn.clone())),
                format!("sns:{topic_arn}"),
            ),
            SinkTarget::Webhook {
                url,
                slack,
                allow_insecure_http,
                timeout,
            } => (
                Kind::Webhook(webhook::Webhook::new(
                    url.clone(),
                    *slack,
                    *timeout,
                    *allow_insecure_http,
                )?),
                format!("webhook:{}", crate::config::mask_url(url)),
            ),
        };
        Ok(Sink {
            kind,
            name,
            min_severity: c.min_severity,
            max_attempts: c.max_attempts,
        })
    }

    /// Delivers the alerts at or above the sink's minimum severity, retrying with
    /// backoff. Alerts already accepted are not sent again by a retry.
    pub async fn deliver(&self, alerts: &[Arc<Alert>]) -> Result<(), SinkError> {
        let mut pending: Vec<Arc<Alert>> = alerts
            .iter()
            .filter(|a| self.min_severity.is_none_or(|m| a.severity >= m))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send(&pending).await {
                Ok(()) => return Ok(()),
                Err(Unsent { left, message }) => {
                    pending = left.iter().map(|&i| pending[i].clone()).collect();
                    if attempt >= self.max_attempts {
                        return Err(SinkError {
                            sink: self.name.clone(),
                            message,
                            attempts: attempt,
                        });
                    }
                    let wait = backoff(attempt);
                    tracing::warn!(sink = %self.name, attempt, error = %message, retry_in = ?wait, "alert delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt. On failure: the alerts not accepted.
    async fn send(&self, alerts: &[Arc<Alert>]) -> Result<(), Unsent> {
        let all = |e: String| Unsent::from(0, alerts.len(), e);
        match &self.kind {
            Kind::Stdout => {
                let lines = jsonl(alerts);
                tokio::task::spawn_blocking(move || {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&lines)?;
                    out.flush()
                })
                .await
                .map_err(|e| all(e.to_string()))?
                .map_err(|e| all(format!("writing to stdout: {e}")))
            }
            Kind::File { path, lock } => {
                let lines = jsonl(alerts);
                let path = path.clone();
                // Appends under a lock so concurrent files never interleave lines;
                // synced to disk before the alerts count as delivered.
                let res = tokio::task::block_in_place(|| {
                    let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    f.write_all(&lines)?;
                    f.sync_data()
                });
                res.map_err(|e| all(format!("appending to {}: {e}", path.display())))
            }
            Kind::Sns(s) => s.publish(alerts).await,
            Kind::Webhook(w) => w.post(alerts).await,
        }
    }
}

fn jsonl(alerts: &[Arc<Alert>]) -> Vec<u8> {
    let mut buf = Vec::new();
    for a in alerts {
        a.write_json(&mut buf);
        buf.push(b'\n');
    }
    buf
}

/// Builds every configured sink.
pub fn build(configs: &[SinkConfig], aws: &aws_config::SdkConfig) -> anyhow::Result<Vec<Sink>> {
    configs.iter().map(|c| Sink::new(c, aws)).collect()
}
