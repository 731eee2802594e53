//! Detection state: what the evaluator's stateful step remembers between events
//! and files: the windows of threshold and suppression rules, both sides of the
//! DeleteObjects join, and which objects were read to their end.
//!
//! Everything before this step is pure and runs in parallel; this is the one
//! place where events meet each other. The evaluator speaks to it through
//! [`State`] alone, so that where the state lives (this process's memory today) is
//! a choice of the driver, not of the evaluator.

use std::sync::Mutex;

use crate::alert::Alert;
use crate::engine::{Detection, Engine, Observation};
use crate::join::{DeleteJoin, FileKeys};

pub mod completed;

pub use completed::{Completed, ObjectId};

/// What the stateful step asks of detection state, one call per decision.
pub trait State {
    /// Rule `rule`'s windowed state (its threshold, its suppression) takes one
    /// observation, in event order; the detection it completes, if any.
    fn window(&mut self, rule: usize, observation: Observation) -> Option<Detection>;
    /// Whether alerts on `DeleteObjects` events wait for their keys (they then go
    /// through [`State::delete_alerts`]); otherwise they go out as any other.
    fn join_holds(&self) -> bool;
    /// A `DeleteObjects` event was seen, alerted or not.
    fn delete_request(&mut self, request_id: &str);
    /// The alerts on one `DeleteObjects` event; what goes out now.
    fn delete_alerts(&mut self, request_id: &str, alerts: Vec<Alert>, now_ms: u64) -> Vec<Alert>;
    /// The access log key lines of one file read to its end; the follow-ups due.
    fn deleted_keys(&mut self, keys: FileKeys, now_ms: u64) -> Vec<Alert>;
    /// Rereads the clock that exceptions and the horizon of future events follow
    /// (between files: a long run crosses midnight).
    fn refresh_clock(&mut self);
    /// Whether this object (at this ETag) was read to its end, its alerts
    /// delivered: a redelivered notification for it is skipped.
    fn object_done(&self, object: &ObjectId) -> bool;
    /// The object was read to its end and its alerts delivered.
    fn object_completed(&mut self, object: ObjectId);
}

/// State owned by one driver: `scan` (ordered, one thread at the stateful step).
pub struct Memory {
    /// The engine's windowed half: only [`Engine::record`] is used.
    pub windows: Engine,
    pub join: DeleteJoin,
}

impl State for Memory {
    fn window(&mut self, rule: usize, observation: Observation) -> Option<Detection> {
        self.windows.record(rule, observation)
    }
    fn join_holds(&self) -> bool {
        self.join.holds()
    }
    fn delete_request(&mut self, request_id: &str) {
        self.join.on_request(request_id)
    }
    fn delete_alerts(&mut self, request_id: &str, alerts: Vec<Alert>, now_ms: u64) -> Vec<Alert> {
        self.join.on_alerts(request_id, alerts, now_ms)
    }
    fn deleted_keys(&mut self, keys: FileKeys, now_ms: u64) -> Vec<Alert> {
        self.join.on_file(keys, now_ms)
    }
    fn refresh_clock(&mut self) {
        self.windows.refresh_clock()
    }
    /// A scan reads each object it lists once.
    fn object_done(&self, _: &ObjectId) -> bool {
        false
    }
    fn object_completed(&mut self, _: ObjectId) {}
}

/// State shared by the files a worker has in flight, each evaluated on its own
/// thread: every call takes its part's lock for as long as the call, and only
/// events that a windowed rule matched or that the join wants call at all. One
/// lock for the whole of every event made in-flight files take turns.
pub struct Shared<'a> {
    pub windows: &'a Mutex<Engine>,
    pub join: &'a Mutex<DeleteJoin>,
    pub completed: &'a Mutex<Completed>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere left the state as it was between two calls: go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State for Shared<'_> {
    fn window(&mut self, rule: usize, observation: Observation) -> Option<Detection> {
        lock(self.windows).record(rule, observation)
    }
    fn join_holds(&self) -> bool {
        lock(self.join).holds()
    }
    fn delete_request(&mut self, request_id: &str) {
        lock(self.join).on_request(request_id)
    }
    fn delete_alerts(&mut self, request_id: &str, alerts: Vec<Alert>, now_ms: u64) -> Vec<Alert> {
        lock(self.join).on_alerts(request_id, alerts, now_ms)
    }
    fn deleted_keys(&mut self, keys: FileKeys, now_ms: u64) -> Vec<Alert> {
        lock(self.join).on_file(keys, now_ms)
    }
    fn refresh_clock(&mut self) {
        lock(self.windows).refresh_clock()
    }
    fn object_done(&self, object: &ObjectId) -> bool {
        lock(self.completed).contains(object)
    }
    fn object_completed(&mut self, object: ObjectId) {
        lock(self.completed).insert(object)
    }
}
