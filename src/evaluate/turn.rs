//! The stateful step: one file's prepared records, in order, against detection
//! state, out through the driver's [`Emit`].
//!
//! Alerts that no window decides go out as their records come. Windowed rules
//! (thresholds, suppression) gather the file's part of each window they touch
//! ([`FileWindows`]), settled against the state once the file is read to its end;
//! so are the file's share of the DeleteObjects join. What the state is asked
//! therefore grows with the windows and requests a file touches, not with its
//! events, and a file that fails half-way has changed nothing.

use std::sync::Arc;

use super::prepare::{Built, Prepared, Ready, Renderer};
use crate::alert::{Alert, SourceRef};
use crate::engine::windows::{FileWindows, StoreError};
use crate::engine::{Detection, Engine};
use crate::input::{Position, RECORD_ERRORS_SHOWN};
use crate::join::{FileKeys, delete_objects_request};
use crate::json::Syntax;
use crate::record::{Event, RecordError, RecordJson};
use crate::rules::Rule;
use crate::state::{JoinFile, State};

/// Where a driver takes what the stateful step produces.
pub trait Emit {
    /// A rule fired: once per alert it raised, also for alerts that the join
    /// holds back; never for the join's follow-ups.
    fn fired(&mut self, rule: &Rule);
    /// An alert to send.
    fn alert(&mut self, alert: Alert);
    /// Alerts already rendered by the driver's [`Renderer`].
    fn rendered(&mut self, bytes: &[u8]);
    /// A record that failed on its own (the first [`RECORD_ERRORS_SHOWN`] of a
    /// file; the others are only counted, in [`FileCounts::hidden_errors`]).
    fn bad_record(&mut self, position: Position, error: &RecordError);
    /// A windowed alert goes out again: this file had claimed its window before
    /// (it is processed again after a crash or a redelivery).
    fn repeated(&mut self) {}
}

/// What stands for a windowed alert until its window is settled: the first
/// record of the file in the window.
enum Rep {
    /// A threshold's: the record's text, parsed again if the window fires.
    Record {
        index: u64,
        record: RecordJson,
    },
    /// A record handed over whole (the join's business, or without a text).
    Event {
        index: u64,
        event: Arc<Event>,
    },
    /// A suppressed rule's alert, built (or rendered) ahead with its bucket's id.
    Alert(Box<Alert>),
    Rendered(Vec<u8>),
}

/// What a file's turn counted besides alerts.
#[derive(Debug, Default)]
pub struct FileCounts {
    /// Records outside the time range.
    pub filtered: u64,
    /// Record errors beyond those shown.
    pub hidden_errors: u64,
    /// Condition matches per rule (index into the rules), before windows.
    pub matches: Vec<u64>,
}

/// One file's turn at the stateful step.
pub struct FileTurn<'a> {
    engine: &'a Engine,
    render: Option<Renderer>,
    source: &'a dyn Fn(u64) -> SourceRef,
    /// The file's access log key lines, for the join once it is read.
    keys: FileKeys,
    /// The file's `DeleteObjects` requests, and the alerts the join holds.
    join: JoinFile,
    windows: FileWindows<Rep>,
    counts: FileCounts,
    bad: u64,
    /// An alert rendered straight from its event (reused).
    line: Vec<u8>,
}

impl<'a> FileTurn<'a> {
    /// A file's turn begins: today's date is read again (a long run crosses
    /// midnight, and exceptions with an expiry date follow it).
    pub fn begin(
        engine: &'a Engine,
        render: Option<Renderer>,
        source: &'a dyn Fn(u64) -> SourceRef,
    ) -> FileTurn<'a> {
        engine.refresh_date();
        FileTurn {
            engine,
            render,
            source,
            keys: FileKeys::default(),
            join: JoinFile::default(),
            windows: FileWindows::default(),
            counts: FileCounts {
                matches: vec![0; engine.rules().len()],
                ..FileCounts::default()
            },
            bad: 0,
            line: Vec::new(),
        }
    }

    /// The next record of the file.
    pub fn take(&mut self, p: Prepared, state: &dyn State, emit: &mut dyn Emit) {
        match p {
            Prepared::Event {
                index,
                event,
                matched,
                built,
            } => self.event(index, event, &matched, built, state, emit),
            Prepared::Windowed {
                index,
                record,
                steps,
                rendered,
            } => {
                let rules = self.engine.rules();
                for step in steps {
                    self.counts.matches[step.rule] += 1;
                    if !self.engine.is_windowed(step.rule) {
                        // A stateless rule beside a windowed one: its alert is ready.
                        emit.fired(&rules[step.rule]);
                        match step.alert {
                            Some(Ready::Alert(a)) => emit.alert(*a),
                            Some(Ready::Rendered(r)) => emit.rendered(&rendered[r]),
                            None => unreachable!("a stateless rule's alert is built ahead"),
                        }
                        continue;
                    }
                    let rep = || match step.alert {
                        Some(Ready::Alert(a)) => Rep::Alert(a),
                        Some(Ready::Rendered(r)) => Rep::Rendered(rendered[r].to_vec()),
                        None => Rep::Record {
                            index,
                            record: record
                                .clone()
                                .expect("a record with a threshold step keeps its text"),
                        },
                    };
                    self.windows
                        .observe(rules, step.rule, step.observation, rep);
                }
            }
            Prepared::Done { matched, built } => {
                for &r in &matched {
                    self.counts.matches[r] += 1;
                    emit.fired(&self.engine.rules()[r]);
                }
                match built {
                    Built::Alerts(alerts) => alerts.into_iter().for_each(|a| emit.alert(a)),
                    Built::Rendered(bytes) => emit.rendered(&bytes),
                }
            }
            Prepared::Filtered => self.counts.filtered += 1,
            Prepared::Bad { position, error } => {
                self.bad += 1;
                if self.bad <= RECORD_ERRORS_SHOWN {
                    emit.bad_record(position, &error);
                }
            }
        }
    }

    /// A record handed over whole: the join's business, or windowed without a
    /// text to parse again.
    fn event(
        &mut self,
        index: u64,
        event: Box<Event>,
        matched: &[usize],
        built: Vec<Alert>,
        state: &dyn State,
        emit: &mut dyn Emit,
    ) {
        self.keys.observe(&event);
        let request = delete_objects_request(&event).map(str::to_owned);
        if let Some(id) = &request {
            self.join.requests.push(id.clone());
        }
        let hold = request.is_some() && state.join_holds();
        let event: Arc<Event> = Arc::from(event);
        let mut built = built.into_iter();
        let mut held = Vec::new();
        for &i in matched {
            self.counts.matches[i] += 1;
            let rule = &self.engine.rules()[i];
            if self.engine.is_windowed(i) {
                let o = self.engine.observation(i, &event);
                let rep = || Rep::Event {
                    index,
                    event: event.clone(),
                };
                self.windows.observe(self.engine.rules(), i, o, rep);
                continue;
            }
            emit.fired(rule);
            let prebuilt = built.next();
            if let (Some(render), None, false) = (self.render, &prebuilt, hold) {
                // Written straight from the event: the owned alert is never built.
                self.line.clear();
                let source = (self.source)(index);
                let d = Detection::matched(i);
                Alert::with_ref(rule, &d, &event, &source, |a| render(a, &mut self.line));
                emit.rendered(&self.line);
                continue;
            }
            let alert = prebuilt.unwrap_or_else(|| {
                Alert::new(rule, &Detection::matched(i), &event, (self.source)(index))
            });
            if hold {
                held.push(alert);
            } else {
                emit.alert(alert);
            }
        }
        if let (Some(id), false) = (request, held.is_empty()) {
            self.join.alerts.push((id, held));
        }
    }

    /// The end of the file, named `file` for the state (the same name whenever the
    /// same file is processed again). `read_to_end`: whether it was read to its
    /// end; a file that was not changes no window and joins no key lines (its
    /// retry will), except that a scan, which does not retry, keeps what it could
    /// read (`keep_partial`).
    pub fn finish(
        self,
        file: &str,
        read_to_end: bool,
        keep_partial: bool,
        state: &mut dyn State,
        emit: &mut dyn Emit,
        now_ms: u64,
    ) -> Result<FileCounts, StoreError> {
        let keep = read_to_end || keep_partial;
        let rules = self.engine.rules();
        let mut join = self.join;
        if keep {
            for s in self.windows.settle(rules, state.windows(), file)? {
                let rule = &rules[s.detection.rule];
                emit.fired(rule);
                if s.repeat {
                    emit.repeated();
                }
                let d = &s.detection;
                match s.rep {
                    Rep::Alert(a) => emit.alert(*a),
                    Rep::Rendered(bytes) => emit.rendered(&bytes),
                    Rep::Record { index, record } => {
                        let event =
                            Event::parse_split(record.as_str().as_bytes(), &[], Syntax::Valid)
                                .expect("a record's text parses again as it did when read");
                        emit.alert(Alert::new(rule, d, &event, (self.source)(index)));
                    }
                    Rep::Event { index, event } => {
                        let alert = Alert::new(rule, d, &event, (self.source)(index));
                        match delete_objects_request(&event) {
                            Some(id) if state.join_holds() => {
                                join.alerts.push((id.to_owned(), vec![alert]))
                            }
                            _ => emit.alert(alert),
                        }
                    }
                }
            }
            if !self.keys.is_empty() {
                join.keys = Some(self.keys);
            }
        }
        if !join.is_empty() {
            for a in state.join(join, now_ms)? {
                emit.alert(a);
            }
        }
        Ok(FileCounts {
            hidden_errors: self.bad.saturating_sub(RECORD_ERRORS_SHOWN),
            ..self.counts
        })
    }
}
