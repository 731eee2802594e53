//! The worker's blocking half for one file: decode, split, parse, match, and the
//! short stateful step; alerts go to the delivery channel as they are built.
//!
//! Files in flight are evaluated at once, each on a thread of the blocking pool.
//! What they share is split by how it is used: the rules and their index are
//! read-only ([`ActiveRules::matcher`], no lock), and only the windows of threshold
//! and suppression rules sit behind a lock ([`ActiveRules::windows`]), taken for
//! the few microseconds of [`Engine::record`] by an event that matched such a rule.
//! Holding one engine lock for every event of every file made in-flight files take
//! turns: a backlog drained on one core.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::process::now_ms;
use crate::alert::{Alert, SourceRef};
use crate::engine::{Detection, Engine, EngineOptions, Observation};
use crate::input::{self, Item, Limits};
use crate::join::{DeletedKey, PendingJoin};
use crate::metrics::StatSet;
use crate::rules::RuleSet;

/// The rules in force: a reload swaps the whole `Arc`, and files in flight finish
/// with the rules they started with.
pub(crate) struct ActiveRules {
    /// Matching and observations: `&self` only, shared by every file.
    matcher: Engine,
    /// The windows of threshold and suppression rules (the same rules).
    windows: Mutex<Engine>,
}

impl ActiveRules {
    pub(crate) fn new(set: &RuleSet) -> ActiveRules {
        ActiveRules {
            matcher: Engine::new(set, EngineOptions::default()),
            windows: Mutex::new(Engine::new(set, EngineOptions::default())),
        }
    }

    pub(crate) fn rules(&self) -> &[crate::rules::Rule] {
        self.matcher.rules()
    }

    /// The detections of one event, in rule order, into `out` (cleared first);
    /// `matched` and `observed` are scratch space. Windowed rules go through the
    /// shared windows under one short lock; the others detect on their match.
    fn evaluate(
        &self,
        e: &crate::record::Event,
        matched: &mut Vec<usize>,
        observed: &mut Vec<Observation>,
        stateless_matches: &mut [u64],
        out: &mut Vec<Detection>,
    ) {
        out.clear();
        matched.clear();
        self.matcher.matching(e, matched);
        if matched.is_empty() {
            return;
        }
        observed.clear();
        for &i in matched.iter() {
            if self.matcher.is_windowed(i) {
                observed.push(self.matcher.observation(i, e));
            }
        }
        let mut observations = observed.drain(..);
        let mut windows = (!observations.as_slice().is_empty())
            .then(|| self.windows.lock().unwrap_or_else(|p| p.into_inner()));
        for &i in matched.iter() {
            match windows.as_mut() {
                Some(w) if self.matcher.is_windowed(i) => {
                    let o = observations
                        .next()
                        .expect("one observation per windowed rule");
                    out.extend(w.record(i, o));
                }
                _ => {
                    stateless_matches[i] += 1;
                    out.push(Detection { rule: i, hit: None });
                }
            }
        }
    }

    /// Condition matches since the last call, by rule id: the windowed rules'
    /// from their engine, the others' from `stateless` (reset too).
    fn take_match_counts(&self, stateless: &mut [u64]) -> Vec<(String, u64)> {
        let mut counts: HashMap<String, u64> = self
            .windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_match_counts()
            .into_iter()
            .collect();
        for (rule, n) in self.matcher.rules().iter().zip(stateless.iter_mut()) {
            if *n > 0 {
                *counts.entry(rule.id.clone()).or_default() += *n;
                *n = 0;
            }
        }
        counts.into_iter().collect()
    }
}

/// What evaluating one stream produced besides alerts.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub record_errors: u64,
    pub alerts: u64,
    pub lag: StatSet,
    pub matches: Vec<(String, u64)>,
}

pub(super) struct Evaluated {
    pub result: Result<input::StreamStats, input::StreamError>,
    pub counts: Counts,
}

/// Reads one file through the rules; alerts go to `tx` as they are built, and a
/// closed channel (delivery failed, the read is being cancelled) drops them.
pub(super) fn file(
    reader: impl Read,
    limits: Limits,
    rules: &ActiveRules,
    pending: &Mutex<PendingJoin>,
    bucket: &str,
    key: &str,
    tx: &mpsc::Sender<Arc<Alert>>,
) -> Evaluated {
    let mut counts = Counts::default();
    // Batch-delete key lines of this file, by request ID, joined once it is read.
    let mut keys: HashMap<String, Vec<DeletedKey>> = HashMap::new();
    let (mut matched, mut observed, mut detections) = (Vec::new(), Vec::new(), Vec::new());
    let mut stateless_matches = vec![0u64; rules.rules().len()];
    let mut shown = 0u64;
    rules.matcher.refresh_date();
    rules
        .windows
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .refresh_clock();
    let result = input::read_events(reader, limits, |item| match item {
        Item::Bad { position, error } => {
            counts.record_errors += 1;
            shown += 1;
            if shown <= input::RECORD_ERRORS_SHOWN {
                tracing::warn!(bucket = ?bucket, key = ?key, at = %position, error = %error, "bad record skipped");
            }
        }
        Item::Event { index, event } => {
            if let Some(t) = event.time_ms() {
                counts.lag.add((now_ms() as i64 - t) as f64 / 1000.0);
            }
            if let Some(k) = DeletedKey::from_event(&event) {
                keys.entry(k.request_id.clone()).or_default().push(k);
            }
            rules.evaluate(
                &event,
                &mut matched,
                &mut observed,
                &mut stateless_matches,
                &mut detections,
            );
            if detections.is_empty() {
                return;
            }
            let alerts: Vec<Arc<Alert>> = detections
                .iter()
                .map(|d| {
                    let rule = &rules.rules()[d.rule];
                    Arc::new(Alert::new(
                        rule,
                        d,
                        &event,
                        SourceRef::object(bucket, key, index),
                    ))
                })
                .collect();
            let mut follow_ups = Vec::new();
            if let Some(request) = crate::join::delete_objects_request(&event) {
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                for a in &alerts {
                    follow_ups.extend(p.on_alert(request, (**a).clone(), now_ms()));
                }
            }
            for a in alerts
                .into_iter()
                .chain(follow_ups.into_iter().map(Arc::new))
            {
                counts.alerts += 1;
                let _ = tx.blocking_send(a);
            }
        }
    });
    counts.matches = rules.take_match_counts(&mut stateless_matches);
    if result.is_ok() && !keys.is_empty() {
        let follow_ups: Vec<Alert> = {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            keys.into_iter()
                .flat_map(|(req, k)| p.on_keys(&req, k, now_ms()))
                .collect()
        };
        for a in follow_ups {
            counts.alerts += 1;
            let _ = tx.blocking_send(Arc::new(a));
        }
    }
    Evaluated { result, counts }
}
