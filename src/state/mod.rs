//! Detection state: what the evaluator's stateful step remembers between files:
//! the windows of threshold and suppression rules and which file claimed each
//! ([`WindowStore`]), both sides of the DeleteObjects join, and which objects were
//! read to their end.
//!
//! Everything before this step is pure and runs in parallel; this is the one
//! place where files meet each other. The evaluator speaks to it through
//! [`State`] alone, once per file, so that where the state lives is a choice of
//! the driver: this process's memory ([`Memory`] for `scan`, [`Shared`] for the
//! files a worker has in flight), or DynamoDB for a fleet ([`dynamodb`]).

use std::sync::{Arc, Mutex};

use crate::alert::Alert;
use crate::engine::windows::{MemoryWindows, StoreError, WindowStore};
use crate::join::{DeleteJoin, FileKeys};

pub mod completed;
pub mod dynamodb;

pub use completed::{Completed, ObjectId};

/// One file's share of the DeleteObjects join.
#[derive(Debug, Default, Clone)]
pub struct JoinFile {
    /// The `DeleteObjects` requests the file holds, alerted or not.
    pub requests: Vec<String>,
    /// Alerts on those requests, when [`State::join_holds`], by request.
    pub alerts: Vec<(String, Vec<Alert>)>,
    /// The file's access log key lines (only of a file read to its end).
    pub keys: Option<FileKeys>,
}

impl JoinFile {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.alerts.is_empty() && self.keys.is_none()
    }
}

/// What the stateful step asks of detection state, once per file.
pub trait State {
    /// Threshold windows and suppression buckets.
    fn windows(&mut self) -> &mut dyn WindowStore;
    /// Whether alerts on `DeleteObjects` events wait for their keys (they then go
    /// through [`State::join`]); otherwise they go out as any other.
    fn join_holds(&self) -> bool;
    /// A file's share of the join; the alerts that go out now.
    fn join(&mut self, file: JoinFile, now_ms: u64) -> Result<Vec<Alert>, StoreError>;
    /// Whether this object (at this ETag) was read to its end and its alerts
    /// delivered: a redelivered notification for it is skipped.
    fn object_done(&mut self, object: &ObjectId) -> Result<bool, StoreError>;
    /// The object was read to its end and its alerts delivered.
    fn object_completed(&mut self, object: ObjectId) -> Result<(), StoreError>;
}

/// Feeds one file's join share to a join in memory.
fn join_file(j: &mut DeleteJoin, file: JoinFile, now_ms: u64) -> Vec<Alert> {
    for r in &file.requests {
        j.on_request(r);
    }
    let mut out = Vec::new();
    for (request, alerts) in file.alerts {
        out.extend(j.on_alerts(&request, alerts, now_ms));
    }
    if let Some(keys) = file.keys {
        out.extend(j.on_file(keys, now_ms));
    }
    out
}

/// State owned by one driver: `scan` (ordered, one thread at the stateful step).
pub struct Memory {
    pub windows: MemoryWindows,
    pub join: DeleteJoin,
}

impl State for Memory {
    fn windows(&mut self) -> &mut dyn WindowStore {
        &mut self.windows
    }
    fn join_holds(&self) -> bool {
        self.join.holds()
    }
    fn join(&mut self, file: JoinFile, now_ms: u64) -> Result<Vec<Alert>, StoreError> {
        Ok(join_file(&mut self.join, file, now_ms))
    }
    /// A scan reads each object it lists once.
    fn object_done(&mut self, _: &ObjectId) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn object_completed(&mut self, _: ObjectId) -> Result<(), StoreError> {
        Ok(())
    }
}

/// State in memory shared by the files a worker has in flight, each evaluated on
/// its own thread: every call takes its part's lock for that call only, once per
/// file. It outlives rule reloads: windows are keyed by rule id.
#[derive(Debug)]
pub struct Shared {
    /// How long a window no file touched is kept (`[state] retention`).
    pub retention: std::time::Duration,
    pub windows: Mutex<MemoryWindows>,
    pub join: Mutex<DeleteJoin>,
    pub completed: Mutex<Completed>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere left the state as it was between two calls: go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(join: DeleteJoin, completed: Completed) -> Shared {
        Shared {
            retention: std::time::Duration::from_secs(8 * 24 * 3600),
            windows: Mutex::new(MemoryWindows::default()),
            join: Mutex::new(join),
            completed: Mutex::new(completed),
        }
    }

    /// The [`State`] one file uses.
    pub fn handle(self: &Arc<Self>) -> SharedHandle {
        SharedHandle {
            shared: self.clone(),
            windows: LockedWindows(self.clone()),
        }
    }

    /// Forgets windows untouched for the retention (see [`MemoryWindows::sweep`]).
    pub fn sweep(&self, now_ms: i64) {
        lock(&self.windows).sweep(now_ms, self.retention.as_millis() as i64)
    }
}

/// [`Shared`] as one file's [`State`].
pub struct SharedHandle {
    shared: Arc<Shared>,
    windows: LockedWindows,
}

/// The shared windows, locked for each call.
struct LockedWindows(Arc<Shared>);

impl WindowStore for LockedWindows {
    fn add(
        &mut self,
        file: &str,
        adds: &[crate::engine::windows::WindowAdd],
    ) -> Result<Vec<bool>, StoreError> {
        lock(&self.0.windows).add(file, adds)
    }
    fn claim(
        &mut self,
        file: &str,
        gates: &[crate::engine::windows::Gate],
    ) -> Result<Vec<crate::engine::windows::Claim>, StoreError> {
        lock(&self.0.windows).claim(file, gates)
    }
}

impl State for SharedHandle {
    fn windows(&mut self) -> &mut dyn WindowStore {
        &mut self.windows
    }
    fn join_holds(&self) -> bool {
        lock(&self.shared.join).holds()
    }
    fn join(&mut self, file: JoinFile, now_ms: u64) -> Result<Vec<Alert>, StoreError> {
        Ok(join_file(&mut lock(&self.shared.join), file, now_ms))
    }
    fn object_done(&mut self, object: &ObjectId) -> Result<bool, StoreError> {
        Ok(lock(&self.shared.completed).contains(object))
    }
    fn object_completed(&mut self, object: ObjectId) -> Result<(), StoreError> {
        lock(&self.shared.completed).insert(object);
        Ok(())
    }
}

/// Where a worker keeps detection state; each file gets a [`State`] handle of
/// its own, used on the file's blocking thread.
#[derive(Clone)]
pub enum Backend {
    /// This process's memory: one worker (the default; nothing to set up).
    Memory(Arc<Shared>),
    /// A DynamoDB table: any number of workers.
    DynamoDb(dynamodb::Table),
}

impl Backend {
    /// One file's handle.
    pub fn handle(&self) -> Box<dyn State + Send> {
        match self {
            Backend::Memory(m) => Box::new(m.handle()),
            Backend::DynamoDb(t) => Box::new(dynamodb::Handle::new(t.clone())),
        }
    }

    /// The state in memory, when it is there: its join waits by the wall clock
    /// and its windows are swept.
    pub fn memory(&self) -> Option<&Arc<Shared>> {
        match self {
            Backend::Memory(m) => Some(m),
            Backend::DynamoDb(_) => None,
        }
    }
}

/// Retries a state whose backend failed (throttled past the SDK's own retries,
/// or down) with backoff, until it answers or `stop()` says the worker is
/// stopping: an outage holds the file, and its message, instead of failing it and
/// spending one of the message's receives per attempt (a long outage would send
/// good files to the dead-letter queue). Every call is idempotent for its file
/// (members are sets, claims are the file's own, items are keyed by the file), so
/// a retry changes nothing. `report` hears each failure and the recovery, for
/// readiness.
pub struct Retrying<S> {
    inner: S,
    stop: Stop,
    report: Report,
}

/// Whether the worker is stopping (a retry then gives up).
pub type Stop = Arc<dyn Fn() -> bool + Send + Sync>;
/// Hears each failure of the state (`Some`) and its recovery (`None`).
pub type Report = Arc<dyn Fn(Option<&StoreError>) + Send + Sync>;

impl<S> Retrying<S> {
    pub fn new(inner: S, stop: Stop, report: Report) -> Retrying<S> {
        Retrying {
            inner,
            stop,
            report,
        }
    }
}

/// `call` until it answers, with backoff between attempts; the error once `stop`
/// holds.
fn retried<T>(
    stop: &(dyn Fn() -> bool + Send + Sync),
    report: &(dyn Fn(Option<&StoreError>) + Send + Sync),
    mut call: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut attempt = 0;
    loop {
        match call() {
            Ok(v) => {
                if attempt > 0 {
                    report(None);
                }
                return Ok(v);
            }
            Err(e) => {
                report(Some(&e));
                if stop() {
                    return Err(e);
                }
                attempt += 1;
                let wait = crate::retry::backoff(attempt);
                tracing::warn!(error = %e, attempt, retry_in = ?wait,
                    "detection state did not answer; the file (and its message) is held and the call retried");
                // Wakes early when the worker stops.
                let until = std::time::Instant::now() + wait;
                while std::time::Instant::now() < until && !stop() {
                    std::thread::sleep(std::time::Duration::from_millis(100).min(wait));
                }
            }
        }
    }
}

impl<S: State> WindowStore for Retrying<S> {
    fn add(
        &mut self,
        file: &str,
        adds: &[crate::engine::windows::WindowAdd],
    ) -> Result<Vec<bool>, StoreError> {
        let (stop, report) = (self.stop.clone(), self.report.clone());
        let inner = self.inner.windows();
        retried(&*stop, &*report, || inner.add(file, adds))
    }
    fn claim(
        &mut self,
        file: &str,
        gates: &[crate::engine::windows::Gate],
    ) -> Result<Vec<crate::engine::windows::Claim>, StoreError> {
        let (stop, report) = (self.stop.clone(), self.report.clone());
        let inner = self.inner.windows();
        retried(&*stop, &*report, || inner.claim(file, gates))
    }
}

impl<S: State> State for Retrying<S> {
    fn windows(&mut self) -> &mut dyn WindowStore {
        self
    }
    fn join_holds(&self) -> bool {
        self.inner.join_holds()
    }
    fn join(&mut self, file: JoinFile, now_ms: u64) -> Result<Vec<Alert>, StoreError> {
        // A join share is consumed by a call: it is retried whole, from a copy.
        let (stop, report) = (self.stop.clone(), self.report.clone());
        let inner = &mut self.inner;
        retried(&*stop, &*report, || inner.join(file.clone(), now_ms))
    }
    fn object_done(&mut self, object: &ObjectId) -> Result<bool, StoreError> {
        let (stop, report) = (self.stop.clone(), self.report.clone());
        let inner = &mut self.inner;
        retried(&*stop, &*report, || inner.object_done(object))
    }
    fn object_completed(&mut self, object: ObjectId) -> Result<(), StoreError> {
        let (stop, report) = (self.stop.clone(), self.report.clone());
        let inner = &mut self.inner;
        retried(&*stop, &*report, || inner.object_completed(object.clone()))
    }
}

impl State for Box<dyn State + Send> {
    fn windows(&mut self) -> &mut dyn WindowStore {
        (**self).windows()
    }
    fn join_holds(&self) -> bool {
        (**self).join_holds()
    }
    fn join(&mut self, file: JoinFile, now_ms: u64) -> Result<Vec<Alert>, StoreError> {
        (**self).join(file, now_ms)
    }
    fn object_done(&mut self, object: &ObjectId) -> Result<bool, StoreError> {
        (**self).object_done(object)
    }
    fn object_completed(&mut self, object: ObjectId) -> Result<(), StoreError> {
        (**self).object_completed(object)
    }
}
