//! The stateful step: one file's prepared records, in order, against detection
//! state, out through the driver's [`Emit`].

use super::prepare::{Built, Prepared, Ready, Renderer};
use crate::alert::{Alert, SourceRef};
use crate::engine::{Detection, Engine};
use crate::input::{Position, RECORD_ERRORS_SHOWN};
use crate::join::{FileKeys, delete_objects_request};
use crate::json::Syntax;
use crate::record::{Event, RecordError};
use crate::rules::Rule;
use crate::state::State;

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
    counts: FileCounts,
    bad: u64,
    detections: Vec<Detection>,
    /// An alert rendered straight from its event (reused).
    line: Vec<u8>,
}

impl<'a> FileTurn<'a> {
    /// A file's turn begins: the state's clock is read again (a long run crosses
    /// midnight, and exceptions with an expiry date follow it).
    pub fn begin(
        engine: &'a Engine,
        render: Option<Renderer>,
        source: &'a dyn Fn(u64) -> SourceRef,
        state: &mut dyn State,
    ) -> FileTurn<'a> {
        state.refresh_clock();
        FileTurn {
            engine,
            render,
            source,
            keys: FileKeys::default(),
            counts: FileCounts {
                matches: vec![0; engine.rules().len()],
                ..FileCounts::default()
            },
            bad: 0,
            detections: Vec::new(),
            line: Vec::new(),
        }
    }

    /// The next record of the file.
    pub fn take(&mut self, p: Prepared, state: &mut dyn State, emit: &mut dyn Emit, now_ms: u64) {
        match p {
            Prepared::Event {
                index,
                event,
                matched,
                built,
            } => self.event(index, &event, &matched, built, state, emit, now_ms),
            Prepared::Windowed {
                index,
                record,
                steps,
                rendered,
            } => {
                let mut event = None;
                for step in steps {
                    self.counts.matches[step.rule] += 1;
                    let Some(d) = state.window(step.rule, step.observation) else {
                        continue;
                    };
                    let rule = &self.engine.rules()[d.rule];
                    emit.fired(rule);
                    match step.alert {
                        Some(Ready::Alert(a)) => emit.alert(*a),
                        Some(Ready::Rendered(r)) => emit.rendered(&rendered[r]),
                        None => {
                            // A threshold completed: its alert is built from the
                            // record's text, kept for this.
                            let event = event.get_or_insert_with(|| {
                                let text = record
                                    .as_ref()
                                    .expect("a record with a threshold step keeps its text");
                                Event::parse_split(text.as_str().as_bytes(), &[], Syntax::Valid)
                                    .expect("a record's text parses again as it did when read")
                            });
                            emit.alert(Alert::new(rule, &d, event, (self.source)(index)));
                        }
                    }
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
    #[allow(
        clippy::too_many_arguments,
        reason = "a record taken apart where `take` matches it, and the turn's context"
    )]
    fn event(
        &mut self,
        index: u64,
        event: &Event,
        matched: &[usize],
        built: Vec<Alert>,
        state: &mut dyn State,
        emit: &mut dyn Emit,
        now_ms: u64,
    ) {
        self.keys.observe(event);
        let request = delete_objects_request(event);
        if let Some(id) = request {
            state.delete_request(id);
        }
        let hold = request.is_some() && state.join_holds();
        let mut detections = std::mem::take(&mut self.detections);
        detections.clear();
        for &i in matched {
            self.counts.matches[i] += 1;
            if self.engine.is_windowed(i) {
                let o = self.engine.observation(i, event);
                detections.extend(state.window(i, o));
            } else {
                detections.push(Detection { rule: i, hit: None });
            }
        }
        let mut built = built.into_iter();
        let mut held = Vec::new();
        for d in &detections {
            let rule = &self.engine.rules()[d.rule];
            emit.fired(rule);
            let prebuilt = (!self.engine.is_windowed(d.rule))
                .then(|| built.next())
                .flatten();
            if let (Some(render), None, false) = (self.render, &prebuilt, hold) {
                // Written straight from the event: the owned alert is never built.
                self.line.clear();
                let source = (self.source)(index);
                Alert::with_ref(rule, d, event, &source, |a| render(a, &mut self.line));
                emit.rendered(&self.line);
                continue;
            }
            let alert =
                prebuilt.unwrap_or_else(|| Alert::new(rule, d, event, (self.source)(index)));
            if hold {
                held.push(alert);
            } else {
                emit.alert(alert);
            }
        }
        self.detections = detections;
        if let (Some(id), false) = (request, held.is_empty()) {
            for a in state.delete_alerts(id, held, now_ms) {
                emit.alert(a);
            }
        }
    }

    /// The end of the file. `keep_keys`: whether its access log lines join (the
    /// worker joins only a file read to its end, so that its redelivery counts
    /// them once; a scan keeps what it could read).
    pub fn finish(
        self,
        keep_keys: bool,
        state: &mut dyn State,
        emit: &mut dyn Emit,
        now_ms: u64,
    ) -> FileCounts {
        if keep_keys && !self.keys.is_empty() {
            for a in state.deleted_keys(self.keys, now_ms) {
                emit.alert(a);
            }
        }
        FileCounts {
            hidden_errors: self.bad.saturating_sub(RECORD_ERRORS_SHOWN),
            ..self.counts
        }
    }
}
