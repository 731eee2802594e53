//! A fault-injecting HTTP proxy in front of the emulator, for the reliability
//! scenarios. The worker reaches it through the ordinary `AWS_ENDPOINT_URL`; per AWS
//! action it can add latency, answer with a throttling error, a 500 or a 503, cut a
//! response body in the middle, or refuse service, for a number of requests or a
//! period. DynamoDB calls (JSON POSTs with `X-Amz-Target: DynamoDB_20120810.Op`)
//! are actions too, per operation or all at once ([`Action::DynamoDb`]). Loopback
//! only; one request per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The AWS calls a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReceiveMessage,
    DeleteMessage,
    ChangeMessageVisibility,
    GetObject,
    Publish,
    PutMetricData,
    /// A DynamoDB operation; [`DynamoOp::All`] stands for every one of them (as a
    /// fault's target and in [`Proxy::count`]).
    DynamoDb(DynamoOp),
    Other,
}

/// DynamoDB operations, as the `X-Amz-Target` header names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamoOp {
    /// Any operation (never a request's own).
    All,
    GetItem,
    PutItem,
    UpdateItem,
    Query,
    Other,
}

impl DynamoOp {
    fn from_target(op: &str) -> DynamoOp {
        match op {
            "GetItem" => DynamoOp::GetItem,
            "PutItem" => DynamoOp::PutItem,
            "UpdateItem" => DynamoOp::UpdateItem,
            "Query" => DynamoOp::Query,
            _ => DynamoOp::Other,
        }
    }

    /// Whether the operation writes items.
    pub fn writes(self) -> bool {
        matches!(self, DynamoOp::PutItem | DynamoOp::UpdateItem)
    }
}

impl Action {
    /// Whether a fault on (or a count of) `self` takes a request of `action`.
    pub fn covers(self, action: Action) -> bool {
        match (self, action) {
            (Action::DynamoDb(DynamoOp::All), Action::DynamoDb(_)) => true,
            (a, b) => a == b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Forward after a delay.
    Latency(Duration),
    /// Wait, then close the connection without forwarding: the request never
    /// reaches the service (a client killed meanwhile leaves no trace).
    Hang(Duration),
    /// HTTP 500 without forwarding.
    ServerError,
    /// The service's throttling error (HTTP 400 `Throttling` / SQS `RequestThrottled`
    /// / DynamoDB `ProvisionedThroughputExceededException`).
    Throttle,
    /// HTTP 503 `ServiceUnavailable` without forwarding: the service is down.
    Unavailable,
    /// Forward, then send only half of the response body and close.
    ResetMidBody,
    /// Forward, send half of the response body, stall for the duration, then send
    /// the rest: the reader has consumed (and evaluated) the first half meanwhile.
    StallMidBody(Duration),
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub action: Action,
    pub kind: Kind,
    /// How many matching requests it hits (`None`: all until `until`).
    pub times: Option<u32>,
    pub until: Option<Instant>,
    /// Only requests whose path contains this (e.g. one object's key).
    pub path: Option<&'static str>,
    /// Only this share of the matching requests, drawn at random.
    pub ratio: Option<f64>,
}

impl Fault {
    /// `kind` on every `action` request, until narrowed by the builders below.
    pub fn on(action: Action, kind: Kind) -> Fault {
        Fault {
            action,
            kind,
            times: None,
            until: None,
            path: None,
            ratio: None,
        }
    }

    pub fn ratio(mut self, r: f64) -> Fault {
        self.ratio = Some(r);
        self
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    pub fn for_secs(mut self, secs: u64) -> Fault {
        self.until = Some(Instant::now() + Duration::from_secs(secs));
        self
    }

    pub fn path(mut self, p: &'static str) -> Fault {
        self.path = Some(p);
        self
    }
}

#[derive(Debug, Default)]
struct State {
    faults: Vec<Fault>,
    /// Requests seen: action, whether faulted, the request's path.
    seen: Vec<(Action, bool, String)>,
    /// When the last fault was injected.
    last_fault: Option<Instant>,
    /// Responses currently stalled mid-body.
    stalled: usize,
}

pub struct Proxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let up = upstream.trim_start_matches("http://").to_owned();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (st, up) = (st.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, &st);
                });
            }
        });
        Proxy { endpoint, state }
    }

    pub fn add(&self, f: Fault) {
        self.state.lock().unwrap().faults.push(f);
    }

    /// (requests, faulted requests) seen for `action` (every DynamoDB operation for
    /// `DynamoDb(All)`).
    pub fn count(&self, action: Action) -> (usize, usize) {
        self.count_where(|a, _| action.covers(a))
    }

    /// (requests, faulted requests) seen for `action` whose path contains `part`.
    pub fn count_path(&self, action: Action, part: &str) -> (usize, usize) {
        self.count_where(|a, p| action.covers(a) && p.contains(part))
    }

    fn count_where(&self, pick: impl Fn(Action, &str) -> bool) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        let mut n = (0, 0);
        for (a, f, p) in &s.seen {
            if pick(*a, p) {
                n.0 += 1;
                n.1 += usize::from(*f);
            }
        }
        n
    }

    /// DynamoDB writes seen that were forwarded (not faulted).
    pub fn dynamo_writes(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|(a, f, _)| matches!(a, Action::DynamoDb(op) if op.writes()) && !f)
            .count()
    }

    /// Removes every fault still armed.
    pub fn clear(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// When the last fault was injected (`None`: never).
    pub fn last_fault(&self) -> Option<Instant> {
        self.state.lock().unwrap().last_fault
    }

    /// When the last fault armed for a period ([`Fault::for_secs`]) ends (`None`: none
    /// is).
    pub fn armed_until(&self) -> Option<Instant> {
        let s = self.state.lock().unwrap();
        s.faults.iter().filter_map(|f| f.until).max()
    }

    /// Responses stalled mid-body right now.
    pub fn stalled(&self) -> usize {
        self.state.lock().unwrap().stalled
    }
}

fn classify(method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Action {
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    if let Some(target) = header("x-amz-target") {
        if let Some(op) = target.strip_prefix("DynamoDB_20120810.") {
            return Action::DynamoDb(DynamoOp::from_target(op));
        }
        return match target.rsplit('.').next().unwrap_or("") {
            "ReceiveMessage" => Action::ReceiveMessage,
            "DeleteMessage" | "DeleteMessageBatch" => Action::DeleteMessage,
            "ChangeMessageVisibility" | "ChangeMessageVisibilityBatch" => {
                Action::ChangeMessageVisibility
            }
            _ => Action::Other,
        };
    }
    let form = String::from_utf8_lossy(body);
    if form.contains("Action=Publish") {
        return Action::Publish;
    }
    if form.contains("Action=PutMetricData") {
        return Action::PutMetricData;
    }
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    // Path-style GetObject: /bucket/key, with the SDK's `x-id=GetObject` marker.
    let object_path = path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches('/')
        .contains('/');
    if method == "GET" && object_path && (query.is_empty() || query.contains("x-id=GetObject")) {
        return Action::GetObject;
    }
    Action::Other
}

fn serve(mut client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let action = classify(method, path, &headers, &body);

    let fault = {
        let mut s = state.lock().unwrap();
        let now = Instant::now();
        let hit = s.faults.iter_mut().find(|f| {
            f.action.covers(action)
                && f.until.is_none_or(|u| now < u)
                && f.times.is_none_or(|n| n > 0)
                && f.path.is_none_or(|p| path.contains(p))
                && f.ratio.is_none_or(|r| fastrand::f64() < r)
        });
        let kind = hit.map(|f| {
            if let Some(n) = f.times.as_mut() {
                *n -= 1;
            }
            f.kind
        });
        s.seen.push((action, kind.is_some(), path.to_owned()));
        if kind.is_some() {
            s.last_fault = Some(now);
        }
        kind
    };

    match fault {
        Some(Kind::ServerError) => {
            let body = "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
            write!(
                client,
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        Some(Kind::Throttle) => {
            let (ctype, body) = if matches!(action, Action::DynamoDb(_)) {
                (
                    "application/x-amz-json-1.0",
                    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded (injected)"}"#
                        .to_owned(),
                )
            } else if headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
            {
                (
                    "application/x-amz-json-1.0",
                    r#"{"__type":"com.amazonaws.sqs#RequestThrottled","message":"injected"}"#
                        .to_owned(),
                )
            } else {
                ("text/xml", "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded (injected)</Message></Error></ErrorResponse>".to_owned())
            };
            write!(
                client,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        Some(Kind::Unavailable) => {
            let (ctype, body) = if headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
            {
                (
                    "application/x-amz-json-1.0",
                    r#"{"__type":"ServiceUnavailable","message":"injected"}"#,
                )
            } else {
                (
                    "text/xml",
                    "<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>",
                )
            };
            write!(
                client,
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        Some(Kind::Hang(d)) => {
            std::thread::sleep(d);
            state.lock().unwrap().last_fault = Some(Instant::now());
            let _ = client.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        Some(Kind::Latency(d)) => {
            std::thread::sleep(d);
            state.lock().unwrap().last_fault = Some(Instant::now());
        }
        _ => {}
    }

    // Forward, one request per connection.
    let mut up = TcpStream::connect(upstream)?;
    head.push_str(&first);
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    if fault == Some(Kind::ResetMidBody) {
        let cut = mid_body(&resp);
        client.write_all(&resp[..cut])?;
        let _ = client.shutdown(std::net::Shutdown::Both);
        return Ok(());
    }
    if let Some(Kind::StallMidBody(d)) = fault {
        let cut = mid_body(&resp);
        client.write_all(&resp[..cut])?;
        client.flush()?;
        state.lock().unwrap().stalled += 1;
        std::thread::sleep(d);
        state.lock().unwrap().stalled -= 1;
        // The stall ends a fault: recovery is measured from here.
        state.lock().unwrap().last_fault = Some(Instant::now());
        return client.write_all(&resp[cut..]);
    }
    client.write_all(&resp)?;
    Ok(())
}

/// The offset halfway through a response's body (past its head).
fn mid_body(resp: &[u8]) -> usize {
    let body = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |i| i + 4);
    body + (resp.len() - body) / 2
}
