//! The worker's blocking half for one file: decode, split, parse, then the shared
//! evaluator ([`crate::evaluate`]) with the worker's state; alerts go to the
//! delivery channel as they are built.
//!
//! Files in flight are evaluated at once, each on a thread of the blocking pool.
//! What they share is split by how it is used: the rules and their index are
//! read-only ([`ActiveRules::matcher`], no lock), and detection state is asked
//! once per file, when it is read ([`crate::state::State`]). Holding one engine
//! lock for every event of every file made in-flight files take turns: a backlog
//! drained on one core.

use std::io::Read;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::process::now_ms;
use crate::alert::{Alert, SourceRef};
use crate::engine::windows::StoreError;
use crate::engine::{Engine, EngineOptions};
use crate::evaluate::{Emit, FileTurn, Prepared, TimeRange, prepare};
use crate::input::{self, Item, Limits, Position};
use crate::metrics::StatSet;
use crate::record::RecordError;
use crate::rules::{Rule, RuleSet};
use crate::state::{ObjectId, State};

/// The rules in force: a reload swaps the whole `Arc`, and files in flight finish
/// with the rules they started with. Windowed state is not theirs: it is keyed
/// by rule id and outlives a reload ([`crate::state`]).
pub(crate) struct ActiveRules {
    /// Matching and observations: `&self` only, shared by every file.
    matcher: Engine,
}

impl ActiveRules {
    pub(crate) fn new(set: &RuleSet) -> ActiveRules {
        ActiveRules {
            matcher: Engine::new(set, EngineOptions::default()),
        }
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        self.matcher.rules()
    }
}

/// What evaluating one stream produced besides alerts.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub record_errors: u64,
    pub alerts: u64,
    /// Windowed alerts sent again by a file processed again.
    pub repeated: u64,
    pub lag: StatSet,
    /// Condition matches by rule id.
    pub matches: Vec<(String, u64)>,
}

pub(super) struct Evaluated {
    pub result: Result<input::StreamStats, input::StreamError>,
    /// Settling the file against detection state failed (the backend throttled or
    /// unreachable): the file is retried.
    pub state: Result<(), StoreError>,
    pub counts: Counts,
}

/// The worker's side of a file's turn: alerts into the delivery channel.
struct Channel<'a> {
    tx: &'a mpsc::Sender<Arc<Alert>>,
    alerts: u64,
    repeated: u64,
    bucket: &'a str,
    key: &'a str,
}

impl Emit for Channel<'_> {
    /// Alerts are counted by rule once delivered (see `process::deliver`).
    fn fired(&mut self, _: &Rule) {}

    fn alert(&mut self, alert: Alert) {
        self.alerts += 1;
        // A closed channel (delivery failed, the read is being cancelled) drops it.
        let _ = self.tx.blocking_send(Arc::new(alert));
    }

    fn rendered(&mut self, _: &[u8]) {
        unreachable!("the worker prepares without a renderer")
    }

    fn bad_record(&mut self, position: Position, error: &RecordError) {
        tracing::warn!(bucket = ?self.bucket, key = ?self.key, at = %position, error = %error, "bad record skipped");
    }

    fn repeated(&mut self) {
        self.repeated += 1;
    }
}

/// Reads one file through the rules; alerts go to `tx` as they are built, and its
/// windows and join share settle against `state` once it is read, as `file`.
pub(super) fn file(
    reader: impl Read,
    limits: Limits,
    rules: &ActiveRules,
    state: &mut dyn State,
    object: &ObjectId,
    tx: &mpsc::Sender<Arc<Alert>>,
) -> Evaluated {
    let (bucket, key, etag) = object;
    let mut lag = StatSet::default();
    let mut record_errors = 0;
    let mut scratch = Vec::new();
    let mut channel = Channel {
        tx,
        alerts: 0,
        repeated: 0,
        bucket,
        key,
    };
    let source = |index| SourceRef::object(bucket, key, index);
    let mut turn = FileTurn::begin(&rules.matcher, None, &source);
    let result = input::read_events(reader, limits, |item| {
        let p = match item {
            Item::Bad { position, error } => {
                record_errors += 1;
                Prepared::Bad { position, error }
            }
            Item::Event { index, event } => {
                if let Some(t) = event.time_ms() {
                    lag.add((now_ms() as i64 - t) as f64 / 1000.0);
                }
                let range = TimeRange::default();
                prepare(
                    &rules.matcher,
                    range,
                    None,
                    &source,
                    index,
                    event,
                    &mut scratch,
                )
            }
        };
        turn.take(p, state, &mut channel);
    });
    // The same name whenever the same object (at the same ETag) is processed.
    let name = format!("s3://{bucket}/{key}#{etag}");
    let settled = turn.finish(&name, result.is_ok(), false, state, &mut channel, now_ms());
    let (state, matches) = match settled {
        Ok(counts) => (
            Ok(()),
            rules
                .rules()
                .iter()
                .zip(counts.matches)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.id.clone(), n))
                .collect(),
        ),
        Err(e) => (Err(e), Vec::new()),
    };
    Evaluated {
        result,
        state,
        counts: Counts {
            record_errors,
            alerts: channel.alerts,
            repeated: channel.repeated,
            lag,
            matches,
        },
    }
}
