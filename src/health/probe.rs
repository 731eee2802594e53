//! `trailwatch healthcheck`: the client side, for container health checks
//! without a shell or curl.

use std::net::SocketAddr;
use std::time::Duration;

/// Where `trailwatch healthcheck` looks by default: the images' loopback port.
pub const DEFAULT_PROBE_URL: &str = "http://127.0.0.1:8080/healthz";

/// The URL `trailwatch healthcheck` probes without `--url`: `/healthz` on the port
/// of `listen` (`TRAILWATCH_HEALTH_LISTEN`), on loopback when it names all
/// interfaces; [`DEFAULT_PROBE_URL`] when it is unset, empty or not an address.
pub fn probe_url(listen: Option<&str>) -> String {
    match listen.and_then(|l| l.trim().parse::<SocketAddr>().ok()) {
        Some(mut addr) => {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}/healthz")
        }
        None => DEFAULT_PROBE_URL.to_owned(),
    }
}

/// `trailwatch healthcheck`: GETs `url` (no proxy, no redirects) within `timeout`.
/// `Ok` on a 2xx answer; otherwise a one-line reason (with the start of the body,
/// printable characters only, for a `/readyz` that says why not).
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
    let fail = |e: reqwest::Error| {
        if e.is_timeout() {
            return format!(
                "{url}: timed out after {}",
                humantime::format_duration(timeout)
            );
        }
        // The innermost cause says most ("Connection refused (os error 111)").
        let mut cause: &dyn std::error::Error = &e;
        while let Some(s) = cause.source() {
            cause = s;
        }
        match e.is_connect() {
            true => format!("{url}: cannot connect: {cause}"),
            false => format!("{url}: {cause}"),
        }
    };
    let mut resp = client.get(url).send().await.map_err(fail)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = Vec::new();
    while body.len() < 256 {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&body[..body.len().min(256)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(match text.is_empty() {
        true => format!("{url} answered {status}"),
        false => format!("{url} answered {status}: {text}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_urls() {
        assert_eq!(probe_url(None), DEFAULT_PROBE_URL);
        assert_eq!(probe_url(Some("")), DEFAULT_PROBE_URL);
        assert_eq!(probe_url(Some("nope")), DEFAULT_PROBE_URL);
        assert_eq!(
            probe_url(Some("127.0.0.1:9090")),
            "http://127.0.0.1:9090/healthz"
        );
        assert_eq!(
            probe_url(Some("0.0.0.0:8081")),
            "http://127.0.0.1:8081/healthz"
        );
        assert_eq!(probe_url(Some("[::]:8080")), "http://[::1]:8080/healthz");
    }
}
