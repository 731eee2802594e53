//! Webhook sink: an HTTP POST per alert, of the alert JSON or a Slack-style
//! `{"text": ...}` body. Any 2xx is success; each request has a timeout.
//!
//! The URL is a secret (a Slack webhook's token is its path): it is shown masked
//! ([`crate::config::mask_url`]), and HTTP errors are logged without it (reqwest
//! puts the full URL in its errors' text). Only `https://` is used unless the sink
//! sets `allow_insecure_http`, and redirects are not followed: a 3xx is a failure
//! (a redirect would send the alert, and its attacker-chosen strings, elsewhere).
//! See docs/output-safety.md.

use std::sync::Arc;
use std::time::Duration;

use super::Unsent;
use crate::alert::Alert;

pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL's parts that must never be shown: the URL as configured and as
    /// parsed, and its path and query.
    secrets: Vec<String>,
    /// The URL as shown: [`crate::config::mask_url`].
    shown: String,
    slack: bool,
}

/// Slack's limit on a section's text: longer text is cut, with an ellipsis.
pub const SLACK_TEXT_MAX: usize = 3000;

/// The Slack-style text of an alert, escaped with [`slack_escape`]: the title
/// embeds attacker-chosen strings (`{s3.key}`, user names).
pub fn slack_text(a: &Alert) -> String {
    slack_escape(
        &format!(
            "[{}] {} (rule {}, alert {})",
            a.severity.as_str().to_uppercase(),
            a.title,
            a.rule_id,
            a.alert_id
        ),
        SLACK_TEXT_MAX,
    )
}

/// `s` as plain Slack text of at most `max` characters. Per Slack's message
/// formatting rules `&`, `<` and `>` become `&amp;`, `&lt;` and `&gt;`, so that
/// `<!channel>`, `<@U123>` mentions and `<https://evil|Click here>` links show as
/// typed; control characters (line breaks, tabs, ESC, C1) and the Unicode line
/// and paragraph separators become a space, so that the text stays one line and
/// cannot fake a second message. Text over `max` characters is cut (never inside
/// an escape) and ends with `…`.
pub fn slack_escape(s: &str, max: usize) -> String {
    fn piece(c: char, buf: &mut [u8; 4]) -> &str {
        match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => " ",
            c => c.encode_utf8(buf),
        }
    }
    let mut buf = [0; 4];
    let total: usize = s.chars().map(|c| piece(c, &mut buf).chars().count()).sum();
    let room = if total <= max {
        usize::MAX
    } else {
        max.saturating_sub(1)
    };
    let mut out = String::with_capacity(s.len().min(4 * max) + 8);
    let mut n = 0;
    for c in s.chars() {
        let p = piece(c, &mut buf);
        let len = p.chars().count();
        if n + len > room {
            out.push('…');
            break;
        }
        out.push_str(p);
        n += len;
    }
    out
}

impl Webhook {
    /// `allow_insecure_http`: also accept `http://` (loopback tests); otherwise
    /// the client refuses any URL that is not `https://`.
    pub fn new(
        url: String,
        slack: bool,
        timeout: Duration,
        allow_insecure_http: bool,
    ) -> anyhow::Result<Webhook> {
        // The parse error does not include the URL.
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| anyhow::anyhow!("webhook url is not a valid URL: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("trailwatch/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!allow_insecure_http)
            .build()
            .map_err(|e| anyhow::anyhow!("webhook client: {}", flatten(&e.without_url())))?;
        let mut path = parsed.path().to_owned();
        if let Some(q) = parsed.query() {
            path.push('?');
            path.push_str(q);
        }
        let shown = crate::config::mask_url(&url);
        let mut secrets = vec![url, parsed.as_str().to_owned()];
        if path.len() > 1 {
            secrets.push(path);
        }
        Ok(Webhook {
            client,
            url: parsed,
            secrets,
            shown,
            slack,
        })
    }

    /// `POST <masked URL>: <what>`, with any part of the URL that got into
    /// `what` masked too.
    fn failure(&self, what: String) -> String {
        let mut what = what;
        for s in &self.secrets {
            if what.contains(s.as_str()) {
                what = what.replace(s.as_str(), "***");
            }
        }
        format!("POST {}: {what}", self.shown)
    }

    /// POSTs the alerts one at a time; on failure, the alerts from the one that
    /// failed on are left. A 3xx is a failure: redirects are not followed.
    pub async fn post(&self, alerts: &[Arc<Alert>]) -> Result<(), Unsent> {
        for (i, a) in alerts.iter().enumerate() {
            let body = if self.slack {
                serde_json::json!({ "text": slack_text(a) }).to_string()
            } else {
                a.to_json()
            };
            let resp = self
                .client
                .post(self.url.clone())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                // reqwest's errors carry the full URL, token and all.
                .map_err(|e| {
                    Unsent::from(i, alerts.len(), self.failure(flatten(&e.without_url())))
                })?;
            let status = resp.status();
            if !status.is_success() {
                let what = if status.is_redirection() {
                    format!("HTTP {status} (redirects are not followed: configure the final URL)")
                } else {
                    format!("HTTP {status}")
                };
                return Err(Unsent::from(i, alerts.len(), self.failure(what)));
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{Webhook, slack_text};
    use crate::alert::{Alert, SourceRef};
    use crate::engine::Detection;
    use crate::record::Event;
    use crate::rules::{RuleSet, Strictness};

    fn alert(title: &str) -> Alert {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rules/s3-sso-object-delete.toml");
        let rules = RuleSet::load(&dir, Strictness::Run).unwrap();
        let event = Event::from_value(serde_json::json!({
            "eventName": "DeleteObject", "eventSource": "s3.amazonaws.com",
            "requestParameters": {"bucketName": "b", "key": "k"},
        }))
        .unwrap();
        let d = Detection::matched(0);
        let mut a = Alert::new(&rules.rules[0], &d, &event, SourceRef::file("f", 0));
        a.title = title.to_owned();
        a
    }

    /// A port on loopback that refuses connections.
    fn refused_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Slack's control sequences (`<!channel>`, `<URL|label>`, `<@U…>` mentions)
    /// and line breaks from an attacker-chosen title reach the channel as text.
    #[test]
    fn slack_text_escapes_control_sequences_and_line_breaks() {
        let t = slack_text(&alert(
            "deleted <!channel> <https://evil.example/x|Click here> <@U123> a&b\nFAKE: all clear\r\x1b[31m\u{85}end",
        ));
        assert!(!t.contains('<') && !t.contains('>'), "{t}");
        assert!(t.chars().all(|c| !c.is_control()), "{t:?}");
        assert!(
            t.contains(
                "deleted &lt;!channel&gt; &lt;https://evil.example/x|Click here&gt; &lt;@U123&gt; a&amp;b FAKE: all clear  [31m end"
            ),
            "{t:?}"
        );
        assert!(t.starts_with("[HIGH] deleted "), "{t}");
    }

    /// The text is at most 3,000 characters (a Slack section's limit), cut with an
    /// ellipsis and never inside an escape.
    #[test]
    fn slack_text_is_capped() {
        let t = slack_text(&alert(&"<".repeat(5000)));
        assert_eq!(t.chars().count(), 3000, "{t}");
        assert!(t.ends_with("&lt;…"), "{t}");
        let t = slack_text(&alert("short"));
        assert!(!t.ends_with('…'), "{t}");
    }

    /// A refused connection's error names the host, never the URL's path or query
    /// (a Slack webhook's token is its path).
    #[tokio::test]
    async fn errors_do_not_carry_the_url_secret() {
        let port = refused_port();
        let url = format!("http://127.0.0.1:{port}/services/T0/B0/s3cretpath?token=s3cretquery");
        let w = Webhook::new(url, true, Duration::from_secs(2), true).unwrap();
        let e = w.post(&[Arc::new(alert("t"))]).await.unwrap_err();
        assert_eq!(e.left, [0]);
        assert!(!e.message.contains("s3cret"), "{}", e.message);
        assert!(!e.message.contains("services"), "{}", e.message);
        assert!(
            e.message.contains(&format!("127.0.0.1:{port}/***")),
            "{}",
            e.message
        );
    }

    /// Without `allow_insecure_http` the client itself refuses `http://` (the
    /// configuration refuses it first): nothing is sent.
    #[tokio::test]
    async fn plain_http_is_refused_without_the_flag() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://127.0.0.1:{port}/s3cret");
        let w = Webhook::new(url, false, Duration::from_secs(2), false).unwrap();
        let e = w.post(&[Arc::new(alert("t"))]).await.unwrap_err();
        assert!(!e.message.contains("s3cret"), "{}", e.message);
        assert!(l.accept().is_err(), "a connection was made");
    }

    /// A 302 is a failure with its status; its target gets nothing.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let target_port = target.local_addr().unwrap().port();
        let reached = Arc::new(AtomicUsize::new(0));
        let r = reached.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in target.incoming().flatten() {
                r.fetch_add(1, Ordering::SeqCst);
                held.push(c);
            }
        });
        let hook = TcpListener::bind("127.0.0.1:0").unwrap();
        let hook_port = hook.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in hook.incoming() {
                let Ok(mut c) = c else { return };
                let mut r = BufReader::new(c.try_clone().unwrap());
                let (mut line, mut len) = (String::new(), 0);
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let _ = std::io::Read::read_exact(&mut r, &mut vec![0; len]);
                let _ = write!(
                    c,
                    "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target_port}/stolen\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        let w = Webhook::new(
            format!("http://127.0.0.1:{hook_port}/hook"),
            false,
            Duration::from_secs(2),
            true,
        )
        .unwrap();
        let e = w.post(&[Arc::new(alert("t"))]).await.unwrap_err();
        assert!(e.message.contains("HTTP 302"), "{}", e.message);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }
}
