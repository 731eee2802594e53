//! Webhook sink: an HTTP POST per alert, of the alert JSON or a Slack-style
//! `{"text": ...}` body. Any 2xx is success; each request has a timeout.

use std::sync::Arc;
use std::time::Duration;

use super::Unsent;
use crate::alert::Alert;

pub struct Webhook {
    client: reqwest::Client,
    url: String,
    slack: bool,
}

/// The Slack-style text of an alert.
pub fn slack_text(a: &Alert) -> String {
    format!(
        "[{}] {} (rule {}, alert {})",
        a.severity.as_str().to_uppercase(),
        a.title,
        a.rule_id,
        a.alert_id
    )
}

impl Webhook {
    pub fn new(url: String, slack: bool, timeout: Duration) -> anyhow::Result<Webhook> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("trailwatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Webhook { client, url, slack })
    }

    /// POSTs the alerts one at a time; on failure, the alerts from the one that
    /// failed on are left.
    pub async fn post(&self, alerts: &[Arc<Alert>]) -> Result<(), Unsent> {
        for (i, a) in alerts.iter().enumerate() {
            let body = if self.slack {
                serde_json::json!({ "text": slack_text(a) }).to_string()
            } else {
                a.to_json()
            };
            let resp = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    Unsent::from(
                        i,
                        alerts.len(),
                        format!(
                            "POST {}: {}",
                            crate::config::mask_url(&self.url),
                            flatten(&e)
                        ),
                    )
                })?;
            if !resp.status().is_success() {
                return Err(Unsent::from(
                    i,
                    alerts.len(),
                    format!(
                        "POST {}: HTTP {}",
                        crate::config::mask_url(&self.url),
                        resp.status()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn flatten(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
