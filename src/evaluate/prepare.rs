//! The pure half of evaluation: what a record's turn at the stateful step will
//! need, worked out ahead of it on any thread.

use crate::alert::{Alert, AlertRef, SourceRef};
use crate::engine::{Detection, Engine, Observation};
use crate::input::Position;
use crate::join::DeleteJoin;
use crate::record::{Event, RecordError, RecordJson};

/// Renders one alert for an output that takes alerts as bytes (JSON lines).
pub type Renderer = fn(&AlertRef<'_>, &mut Vec<u8>);

/// The event times kept (`scan --since/--until`); the default keeps every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    /// Keep only events with `eventTime` at or after this (epoch ms).
    pub since_ms: Option<i64>,
    /// Keep only events with `eventTime` before this (epoch ms).
    pub until_ms: Option<i64>,
}

impl TimeRange {
    fn keeps(&self, event: &Event) -> bool {
        if self.since_ms.is_none() && self.until_ms.is_none() {
            return true;
        }
        event.time_ms().is_some_and(|t| {
            self.since_ms.is_none_or(|s| t >= s) && self.until_ms.is_none_or(|u| t < u)
        })
    }
}

/// A record read (and matched against the rules' conditions) ahead of its turn.
pub enum Prepared {
    /// A record the DeleteObjects join wants (or one without a text to parse
    /// again), handed over whole.
    Event {
        index: u64,
        event: Box<Event>,
        matched: Vec<usize>,
        /// The alerts of the matched rules that keep no state (no threshold, no
        /// suppression): they fire whenever they match, so they are built here.
        built: Vec<Alert>,
    },
    /// A record that a rule with a threshold or suppression matched: what each
    /// matched rule's windowed state needs of it, and the alerts that no threshold
    /// decides, built (or rendered into `rendered`) ahead. The record's text stays
    /// only when a threshold may complete (its alert is built then), so a reader
    /// can run far ahead in little memory.
    Windowed {
        index: u64,
        record: Option<RecordJson>,
        steps: Vec<Step>,
        rendered: Vec<u8>,
    },
    /// A record whose turn needs nothing but its ready alerts: every rule it
    /// matched is stateless and the DeleteObjects join has no interest in it. The
    /// record itself is not handed over (most records match nothing).
    Done { matched: Vec<usize>, built: Built },
    /// A record outside the [`TimeRange`].
    Filtered,
    /// A record that failed on its own.
    Bad {
        position: Position,
        error: RecordError,
    },
}

impl Prepared {
    /// Roughly the memory a record held ahead takes (for a driver's read-ahead
    /// budget).
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Prepared>()
            + match self {
                Prepared::Event { event, built, .. } => {
                    event.footprint() + built.len() * ALERT_WEIGHT
                }
                Prepared::Windowed {
                    record,
                    steps,
                    rendered,
                    ..
                } => {
                    record.as_ref().map_or(0, |r| r.as_str().len())
                        + rendered.len()
                        + steps.len() * std::mem::size_of::<Step>()
                        + steps
                            .iter()
                            .filter(|s| matches!(s.alert, Some(Ready::Alert(_))))
                            .count()
                            * ALERT_WEIGHT
                }
                Prepared::Done { matched, built } => {
                    matched.len() * 8
                        + match built {
                            Built::Alerts(a) => a.len() * ALERT_WEIGHT,
                            Built::Rendered(b) => b.len(),
                        }
                }
                Prepared::Filtered | Prepared::Bad { .. } => 0,
            }
    }
}

/// What an alert built ahead weighs: the struct, its strings and its share of the
/// record's text, roughly.
const ALERT_WEIGHT: usize = 4096;

/// One matched rule of a [`Prepared::Windowed`] record.
pub struct Step {
    pub(super) rule: usize,
    pub(super) observation: Observation,
    /// The alert, when the rule has no threshold (it goes out unless suppressed).
    pub(super) alert: Option<Ready>,
}

pub(super) enum Ready {
    Alert(Box<Alert>),
    /// A span of the record's `rendered` bytes.
    Rendered(std::ops::Range<usize>),
}

/// The alerts of a [`Prepared::Done`] record: as built, or already rendered for
/// the output (JSON lines), so that the stateful step only copies bytes.
pub enum Built {
    Alerts(Vec<Alert>),
    Rendered(Vec<u8>),
}

/// What a record's turn will need: whether it is in the time range, the rules
/// whose condition holds, what their windowed state needs, and the alerts that no
/// threshold decides (rendered when `render` is given). `scratch` is the caller's,
/// reused between records.
pub fn prepare(
    engine: &Engine,
    range: TimeRange,
    render: Option<Renderer>,
    source: &dyn Fn(u64) -> SourceRef,
    index: u64,
    event: Event,
    scratch: &mut Vec<usize>,
) -> Prepared {
    if !range.keeps(&event) {
        return Prepared::Filtered;
    }
    // Matched in the caller's own list: what is handed over is allocated only
    // when a rule matched (most records match none), and exactly to size.
    scratch.clear();
    engine.matching(&event, scratch);
    let matched = scratch.to_vec();
    let rules = engine.rules();
    let build = |r: usize, d: &Detection| Alert::new(&rules[r], d, &event, source(index));
    // Rendered straight from the event: the owned alert is never built.
    let render_into = |render: Renderer, r: usize, d: &Detection, out: &mut Vec<u8>| {
        Alert::with_ref(&rules[r], d, &event, &source(index), |a| render(a, out))
    };
    // About what one rendered alert takes (it carries the record), so that a
    // record's buffer is not grown as its alerts are written.
    let line = event.raw_text().map_or(2048, str::len) + 2048;
    let all_stateless = matched.iter().all(|&r| !engine.is_windowed(r));
    if DeleteJoin::interested(&event) || (!all_stateless && event.raw_text().is_none()) {
        let built = matched
            .iter()
            .filter(|&&r| !engine.is_windowed(r))
            .map(|&r| build(r, &Detection::matched(r)))
            .collect();
        return Prepared::Event {
            index,
            event: Box::new(event),
            matched,
            built,
        };
    }
    if !all_stateless {
        let ready = matched.iter().filter(|&&r| rules[r].threshold.is_none());
        let mut rendered = Vec::with_capacity(render.map_or(0, |_| ready.count() * line));
        let mut keep_record = false;
        let steps = matched
            .iter()
            .map(|&r| {
                let observation = engine.observation(r, &event);
                let alert = if rules[r].threshold.is_some() {
                    keep_record = true;
                    None
                } else {
                    // Suppressed (or stateless): the alert is named by its
                    // suppression bucket, whichever event of it goes out.
                    let d = Detection {
                        gate: engine.suppress_gate(r, &observation),
                        ..Detection::matched(r)
                    };
                    Some(match render {
                        Some(render) => {
                            let start = rendered.len();
                            render_into(render, r, &d, &mut rendered);
                            Ready::Rendered(start..rendered.len())
                        }
                        None => Ready::Alert(Box::new(build(r, &d))),
                    })
                };
                Step {
                    rule: r,
                    observation,
                    alert,
                }
            })
            .collect();
        return Prepared::Windowed {
            index,
            record: keep_record.then(|| event.record_json()),
            steps,
            rendered,
        };
    }
    let built = match render {
        Some(render) if !matched.is_empty() => {
            let mut bytes = Vec::with_capacity(matched.len() * line);
            matched
                .iter()
                .for_each(|&r| render_into(render, r, &Detection::matched(r), &mut bytes));
            Built::Rendered(bytes)
        }
        _ => Built::Alerts(
            matched
                .iter()
                .map(|&r| build(r, &Detection::matched(r)))
                .collect(),
        ),
    };
    Prepared::Done { matched, built }
}
