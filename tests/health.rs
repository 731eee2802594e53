//! The health server under hostile clients: idle connections neither starve the
//! worker of file descriptors nor stay open, `/readyz` says what failed without
//! echoing AWS error text, and `trailwatch healthcheck` probes the endpoints without a
//! shell or curl.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use trailwatch::health::{HEADER_READ_TIMEOUT, MAX_CONNECTIONS};

use crate::support::worker::*;
use crate::support::*;

/// A port nothing listens on (at the moment of asking).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on loopback with `connection: close`: the whole answer, or "" when the
/// connection is refused or closed without one.
fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// [`wait_for`] that adds `why()` to the failure.
fn wait_or(what: &str, secs: u64, mut cond: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}: {}",
            why()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// A worker process, killed when the test ends however it ends.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Descriptors the process holds now.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One connection of the flood: opened, then never a byte sent.
struct Idle {
    stream: TcpStream,
    opened: Instant,
}

/// Idle connections to the health port, as a hostile local client holds them: how
/// long each one stayed open before the server closed it.
struct Flood {
    addr: SocketAddr,
    open: Vec<Idle>,
    /// How long each connection the server closed had been open (as seen by the
    /// last [`Flood::poll`]).
    lifetimes: Vec<Duration>,
}

impl Flood {
    fn new(port: u16) -> Flood {
        Flood {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            open: Vec::new(),
            lifetimes: Vec::new(),
        }
    }

    /// Opens connections until `n` are open, at most `burst` new ones.
    fn top_up(&mut self, n: usize, burst: usize) {
        for _ in 0..n.saturating_sub(self.open.len()).min(burst) {
            let opened = Instant::now();
            match TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
                Ok(stream) => {
                    stream.set_nonblocking(true).unwrap();
                    self.open.push(Idle { stream, opened });
                }
                // Refused outright: closed at once.
                Err(_) => self.lifetimes.push(opened.elapsed()),
            }
        }
    }

    /// Notes the connections the server has closed since the last call.
    fn poll(&mut self) {
        let mut closed = Vec::new();
        self.open.retain_mut(|c| {
            let mut buf = [0u8; 512];
            let gone = loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => break true,
                    // Whatever the server says before it closes, read past it.
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if gone {
                closed.push(c.opened.elapsed());
            }
            !gone
        });
        self.lifetimes.extend(closed);
    }

    fn longest(&self) -> Duration {
        self.lifetimes.iter().max().copied().unwrap_or_default()
    }
}

/// A CloudTrail file with one SSO delete (one alert of `s3-sso-object-delete`).
fn delete_file(n: usize) -> Vec<u8> {
    gzip(&cloudtrail(&[s3_event(
        n,
        "DeleteObject",
        &format!("user{n}@example.com"),
        None,
    )]))
}

/// 300 idle connections to the health port, topped up as the server closes them,
/// while files flow: every file is still read and alerted on (nothing towards the
/// dead-letter queue), the worker never runs out of descriptors, connections over
/// the cap are closed at once and the others within the header-read timeout, and
/// `/healthz` answers once the flood stops.
///
/// The worker runs with a soft and hard limit of 256 descriptors (`prlimit`, when
/// there): without the cap, the flood alone would exhaust them.
#[test]
fn idle_connection_flood_starves_nothing() {
    const FLOOD: usize = 300;
    const FILES: usize = 8;
    let bed = Bed::new(2);
    let rules = root().join("rules/s3-sso-object-delete.toml");
    let cfg = bed.config(&rules, "");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let w = Worker(bed.spawn_with(&cfg, &[], &[("TRAILWATCH_HEALTH_LISTEN", &listen)]));
    let pid = w.0.id();
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=256:256"])
        .status()
        .is_ok_and(|s| s.success());
    if !limited {
        eprintln!("prlimit unavailable: the worker keeps its descriptor limit");
    }
    wait_for("the health server", 60, || {
        status(&http_get(port, "/healthz")) == Some(200)
    });
    let baseline = fds(pid);

    let mut flood = Flood::new(port);
    flood.top_up(FLOOD, FLOOD);
    let (mut sent, mut last_put) = (0, Instant::now());
    let mut peak = 0;
    let pace = |flood: &mut Flood, peak: &mut usize| {
        flood.poll();
        flood.top_up(FLOOD, 30);
        *peak = (*peak).max(fds(pid));
    };
    let why = || {
        let log = bed.log();
        let emfile = log.matches("Too many open files").count();
        let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
        format!(
            "{} alerts, {} in the dead-letter queue, {emfile} log lines with EMFILE; log ends:\n{tail}",
            bed.alerts().len(),
            bed.depth(&bed.dlq)
        )
    };
    wait_or(
        "every file's alert under the flood",
        120,
        || {
            pace(&mut flood, &mut peak);
            // Files keep coming while the flood is held, not all at once.
            if sent < FILES && last_put.elapsed() >= Duration::from_millis(500) {
                bed.put(&format!("AWSLogs/{sent}.json.gz"), delete_file(sent));
                sent += 1;
                last_put = Instant::now();
            }
            sent == FILES && bed.alerts().len() == FILES
        },
        why,
    );
    wait_for("the queue to drain under the flood", 60, || {
        pace(&mut flood, &mut peak);
        bed.depth(&bed.queue) == 0
    });
    let log = bed.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("file failed"), "{log}");
    assert_eq!(bed.depth(&bed.dlq), 0, "{log}");
    assert!(
        peak <= baseline + MAX_CONNECTIONS + 32,
        "descriptors: {baseline} before the flood, {peak} at its peak"
    );

    // The flood stops growing: what is left is closed within the header timeout.
    let slack = Duration::from_secs(2);
    let deadline = Instant::now() + HEADER_READ_TIMEOUT + slack;
    while !flood.open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} idle connections still open {:?} after the flood stopped",
            flood.open.len(),
            HEADER_READ_TIMEOUT + slack
        );
        std::thread::sleep(Duration::from_millis(20));
        flood.poll();
    }
    assert!(
        flood.longest() <= HEADER_READ_TIMEOUT + slack,
        "an idle connection stayed open {:?}",
        flood.longest()
    );
    // Those over the cap were closed at once, not after a timeout.
    let at_once = flood
        .lifetimes
        .iter()
        .filter(|d| **d < Duration::from_secs(1))
        .count();
    assert!(
        at_once >= FLOOD - MAX_CONNECTIONS,
        "{at_once} of {} connections closed within a second",
        flood.lifetimes.len()
    );
    // A header dribbled a byte at a time is cut off all the same.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let _ = slow.write_all(b"GET /healthz HTTP/1.1\r\n");
    loop {
        assert!(
            started.elapsed() < HEADER_READ_TIMEOUT + slack,
            "a header sent a byte at a time is still read after {:?}",
            started.elapsed()
        );
        if slow.write_all(b"x").is_err() {
            break;
        }
        match slow.read(&mut [0u8; 512]) {
            Ok(0) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(_) | Err(_) => break,
        }
    }
    assert!(started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_millis(500));

    wait_for("/healthz after the flood", 10, || {
        status(&http_get(port, "/healthz")) == Some(200)
    });

    let mut w = w;
    signal(&w.0, "TERM");
    assert_eq!(bed.wait_exit(&mut w.0, 60), 0, "{}", bed.log());
}

/// The role ARN and account of a denied call, as AWS words it.
const DENIED: &str = "User: arn:aws:sts::123456789012:assumed-role/trailwatch-task/0f1e2d3c is not authorized to perform: sqs:receivemessage on resource: arn:aws:sqs:eu-west-1:123456789012:trailwatch because no identity-based policy allows the sqs:receivemessage action";

/// A stand-in for SQS that denies every call, the way SQS does (JSON protocol with
/// the query-compatible error code header); its endpoint.
fn denying_sqs() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let _ = read_http_body(&mut conn);
                let body = serde_json::json!({
                    "__type": "com.amazon.coral.service#AccessDeniedException",
                    "message": DENIED,
                })
                .to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-query-error: AccessDenied;Sender\r\nx-amzn-requestid: 7a62c49f-347e-4fc4-9331-6e8e7a96aa73\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    endpoint
}

/// `trailwatch run` against [`denying_sqs`], its health endpoints on `port`; its
/// stderr goes to `log`.
fn denied_worker(dir: &std::path::Path, port: u16) -> Worker {
    let sqs = denying_sqs();
    let cfg = dir.join("trailwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nqueue_url = \"{sqs}/123456789012/trailwatch\"\nwait_time = \"1s\"\n\n\
             [rules]\ndir = \"{rules}\"\n\n[[sink]]\ntype = \"stdout\"\n\n\
             [metrics]\nenabled = false\n\n[health]\nlisten = \"127.0.0.1:{port}\"\n",
            rules = root().join("rules/s3-sso-object-delete.toml").display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("worker.log")).unwrap();
    let child = trailwatch()
        .envs([
            ("AWS_ENDPOINT_URL", sqs.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            (
                "TRAILWATCH_LOG",
                "info,aws_config=warn,aws_smithy_runtime=warn",
            ),
        ])
        .args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the worker");
    Worker(child)
}

/// SQS denies ReceiveMessage with the role's ARN in its message: `/readyz` says that
/// SQS receives fail, for how long and with which code, but carries none of the
/// service's text (ARNs, account ids); the worker's log keeps the whole of it.
#[test]
fn readyz_names_the_failure_without_the_error_text() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _w = denied_worker(dir.path(), port);
    let mut answer = String::new();
    wait_for("/readyz to report the denial", 60, || {
        answer = http_get(port, "/readyz");
        answer.contains("AccessDenied")
    });
    assert_eq!(status(&answer), Some(503), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.contains("sqs: ReceiveMessage failing for ") && body.contains("(AccessDenied)"),
        "{body}"
    );
    for secret in [
        "arn:",
        "123456789012",
        "assumed-role",
        "trailwatch-task",
        "not authorized",
    ] {
        assert!(
            !answer.contains(secret),
            "/readyz shows `{secret}`: {answer}"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
    assert!(log.contains("arn:aws:sts::123456789012"), "{log}");
}

/// `trailwatch healthcheck` exits 0 when the URL answers 2xx and 1 otherwise, with
/// the reason on stderr: a worker's `/healthz` (alive even while SQS denies it), its
/// `/readyz` (not ready: 503 and why), a port nothing listens on, and a server that
/// accepts but never answers (cut off by `--timeout`).
#[test]
fn healthcheck_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _w = denied_worker(dir.path(), port);
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    wait_for("the health server", 60, || {
        status(&http_get(port, "/healthz")) == Some(200)
    });
    let (code, out, err) = run(trailwatch().args(["healthcheck", "--url", &healthz]));
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));

    let readyz = format!("http://127.0.0.1:{port}/readyz");
    wait_for("/readyz to report the denial", 60, || {
        http_get(port, "/readyz").contains("AccessDenied")
    });
    let (code, _, err) = run(trailwatch().args(["healthcheck", "--url", &readyz]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&readyz) && err.contains("503"), "{err}");
    assert!(
        err.contains("(AccessDenied)"),
        "the reason, sanitised: {err}"
    );

    let dead = format!("http://127.0.0.1:{}/healthz", free_port());
    let (code, _, err) = run(trailwatch().args(["healthcheck", "--url", &dead]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&dead) && err.to_lowercase().contains("connect"),
        "{err}"
    );

    // Accepts (the kernel does) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", silent.local_addr().unwrap());
    let started = Instant::now();
    let (code, _, err) = run(trailwatch().args(["healthcheck", "--timeout", "1s", "--url", &url]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The default URL is the loopback health port the images use.
    let (code, out, err) = run(trailwatch().args(["healthcheck", "--help"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("http://127.0.0.1:8080/healthz"), "{out}");
}
