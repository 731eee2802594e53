//! Thresholds and suppression in event time, defined so that the alerts of a set
//! of files do not depend on the order the files arrive in, nor on how many
//! workers share them.
//!
//! - **Windows are tumbling and aligned to the Unix epoch** in event time: a
//!   threshold of width `W` counts an event into the window `[k·W, (k+1)·W)` that
//!   holds its `eventTime`, and suppression of width `S` lets out one alert per key
//!   and `[k·S, (k+1)·S)`. Which window an event belongs to is a property of the
//!   event alone.
//! - **A window counts members, not arrivals**: an event's identity (its
//!   `eventID`), or the value a `distinct` threshold counts, hashed into a
//!   [`Member`]. Adding the same member twice is adding it once, so a file read
//!   twice, or the same event in two overlapping files, counts once; and a set's
//!   size does not depend on the order its members came in.
//! - **An alert's id is its window's** ([`Gate`]): a threshold window that reaches
//!   its count, or the suppression bucket that let an alert out, whichever event
//!   (or file, or worker) happened to complete it.
//!
//! The unit of work is a file. [`FileWindows`] gathers what one file adds to each
//! window it touches (never more than `count` members each), then
//! [`FileWindows::settle`] hands that to a [`WindowStore`] in two calls, [`add`]
//! and [`claim`], so that what a store does grows with the windows a file touches,
//! not with its events. The in-memory store here ([`MemoryWindows`]) serves `scan`,
//! one worker and the rules' tests; [`crate::state`] has the fleet's.
//!
//! [`add`]: WindowStore::add
//! [`claim`]: WindowStore::claim

use std::hash::{Hash, Hasher};
use std::sync::Arc;

// Keys are our own rule fields' values; a fast non-cryptographic hash is enough
// for the maps (members and ids, which other processes must agree on, use SHA-256).
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use sha2::{Digest, Sha256};

use super::{Detection, Observation};
use crate::rules::Rule;

/// Group or suppression key: one value per `group_by`/`key` field, `None` when absent.
pub type Key = Vec<Option<String>>;

/// A distinct value, as text.
pub type Value = Arc<str>;

/// What a threshold window counts: 128 bits of SHA-256 of an event's identity or
/// of a distinct value, the same in every process.
pub type Member = u128;

/// The member that stands for `bytes`.
pub fn member(bytes: &[u8]) -> Member {
    let d = Sha256::digest(bytes);
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

/// The start of the window of width `width_ms` that holds `t` (epoch-aligned, so
/// that it is the same for every reader).
pub fn window_start(t: i64, width_ms: i64) -> i64 {
    let w = width_ms.max(1);
    t.div_euclid(w).saturating_mul(w)
}

/// A threshold window that reached its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Members (events, or distinct values) the window needed, and holds.
    pub count: u64,
    /// The window, in epoch ms: `[start_ms, end_ms)`.
    pub start_ms: i64,
    pub end_ms: i64,
    pub group: Key,
}

/// The two kinds of window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Threshold,
    Suppress,
}

/// One window of one rule: what decides, and names, a windowed alert.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gate {
    pub rule: String,
    pub kind: Kind,
    /// The threshold's group, or the suppression key.
    pub key: Key,
    pub start_ms: i64,
}

impl Gate {
    /// The gate as one string, the same in every process: what stores key it by
    /// and what alert ids are derived from. Fields are separated by NUL, which no
    /// rule id has; an absent key value differs from an empty one.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(64);
        s.push_str(&self.rule);
        s.push('\0');
        s.push_str(match self.kind {
            Kind::Threshold => "threshold",
            Kind::Suppress => "suppress",
        });
        for v in &self.key {
            s.push('\0');
            match v {
                Some(v) => {
                    s.push('=');
                    s.push_str(v);
                }
                None => s.push('-'),
            }
        }
        s.push('\0');
        s.push_str(&self.start_ms.to_string());
        s
    }
}

/// What one file adds to one threshold window.
#[derive(Debug, Clone)]
pub struct WindowAdd {
    pub gate: Gate,
    /// The threshold's count: a store need keep no more members than this.
    pub count: u64,
    /// Members, distinct, at most `count`.
    pub members: Vec<Member>,
}

/// Whether a file is the one to emit a gate's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This file claimed it first: the alert goes out.
    Won,
    /// This file had claimed it before (it is being processed again, after a
    /// crash or a redelivery): the alert goes out again, with the same id.
    Repeat,
    /// Another file claimed it: its alert went out, not this one.
    Lost,
}

/// Why a store could not answer (a backend throttled or unreachable): the file's
/// work is retried, nothing of it was lost.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where windows are counted and claimed. Both calls are idempotent for one
/// `file` (a name that is the same whenever the same file is processed again):
/// adding a file's members twice adds them once, and a file's claims are its own.
pub trait WindowStore {
    /// Adds each window's members; answers, in order, whether each window now
    /// holds at least its count.
    fn add(&mut self, file: &str, adds: &[WindowAdd]) -> Result<Vec<bool>, StoreError>;
    /// Claims each gate for `file`, in order.
    fn claim(&mut self, file: &str, gates: &[Gate]) -> Result<Vec<Claim>, StoreError>;
}

/// Windows in this process's memory: the whole of a scan, or a worker's life
/// (minus what [`MemoryWindows::sweep`] forgets).
#[derive(Debug, Default)]
pub struct MemoryWindows {
    windows: HashMap<Gate, Counted>,
    claims: HashMap<Gate, Claimed>,
}

#[derive(Debug)]
struct Counted {
    /// At most the window's count: past it, nothing changes any more.
    members: HashSet<Member>,
    touched_ms: i64,
}

#[derive(Debug)]
struct Claimed {
    file: Arc<str>,
    touched_ms: i64,
}

impl MemoryWindows {
    /// Forgets windows and claims last touched more than `retention_ms` before
    /// `now_ms` (wall clock): a long-running worker's memory stays bounded, and a
    /// window's late files still count as long as they come within `retention_ms`
    /// of its last one.
    pub fn sweep(&mut self, now_ms: i64, retention_ms: i64) {
        let keep = |t: i64| now_ms.saturating_sub(t) <= retention_ms;
        self.windows.retain(|_, w| keep(w.touched_ms));
        self.claims.retain(|_, c| keep(c.touched_ms));
    }

    /// Windows and claims held.
    pub fn len(&self) -> usize {
        self.windows.len() + self.claims.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WindowStore for MemoryWindows {
    fn add(&mut self, _file: &str, adds: &[WindowAdd]) -> Result<Vec<bool>, StoreError> {
        let now = crate::record::now_ms();
        Ok(adds
            .iter()
            .map(|a| {
                let w = self
                    .windows
                    .entry(a.gate.clone())
                    .or_insert_with(|| Counted {
                        members: HashSet::default(),
                        touched_ms: now,
                    });
                w.touched_ms = now;
                for m in &a.members {
                    if w.members.len() as u64 >= a.count {
                        break;
                    }
                    w.members.insert(*m);
                }
                w.members.len() as u64 >= a.count
            })
            .collect())
    }

    fn claim(&mut self, file: &str, gates: &[Gate]) -> Result<Vec<Claim>, StoreError> {
        let now = crate::record::now_ms();
        Ok(gates
            .iter()
            .map(|g| match self.claims.get_mut(g) {
                Some(c) => {
                    c.touched_ms = now;
                    if &*c.file == file {
                        Claim::Repeat
                    } else {
                        Claim::Lost
                    }
                }
                None => {
                    self.claims.insert(
                        g.clone(),
                        Claimed {
                            file: file.into(),
                            touched_ms: now,
                        },
                    );
                    Claim::Won
                }
            })
            .collect())
    }
}

/// The time a windowed state places an event at: its `eventTime`, or the epoch
/// for an event without a usable one (the same for every reader).
fn time_of(o: &Observation) -> i64 {
    o.time_ms.unwrap_or(0)
}

/// The suppression bucket of rule `rule` for key `key` at `t`.
pub fn suppress_gate(rule: &Rule, key: Key, t: i64) -> Option<Gate> {
    let s = rule.suppress.as_ref()?;
    Some(Gate {
        rule: rule.id.clone(),
        kind: Kind::Suppress,
        key,
        start_ms: window_start(t, s.window_ms),
    })
}

/// One window a file touched, with what stands for its alert: `R` is the
/// driver's (the first event of the file in the window).
struct Slot<R> {
    rule: usize,
    gate: Gate,
    /// Threshold windows: the file's members, up to the count.
    members: Vec<Member>,
    seen: HashSet<Member>,
    /// A threshold with suppression: the suppression key of the first event.
    suppress_key: Key,
    rep: R,
}

/// What one file adds to the windows of the rules it matched.
pub struct FileWindows<R> {
    slots: Vec<Slot<R>>,
    /// Slots by a hash of (rule, kind, start, key); collisions share a list.
    index: HashMap<u64, Vec<usize>>,
}

impl<R> Default for FileWindows<R> {
    fn default() -> Self {
        FileWindows {
            slots: Vec::new(),
            index: HashMap::default(),
        }
    }
}

/// A windowed alert that goes out: its detection (with the gate that names it),
/// what stands for it, and whether it goes out again ([`Claim::Repeat`]).
pub struct Settled<R> {
    pub detection: Detection,
    pub rep: R,
    pub repeat: bool,
}

impl<R> FileWindows<R> {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Rule `i` (a windowed one) matched an event with observation `o`; `rep`
    /// makes what stands for the alert, called only for the first event of the
    /// file in a window.
    pub fn observe(&mut self, rules: &[Rule], i: usize, o: Observation, rep: impl FnOnce() -> R) {
        let rule = &rules[i];
        let t = time_of(&o);
        let (kind, start_ms, member, count) = match (&rule.threshold, &rule.suppress) {
            (Some(th), _) => {
                // A distinct threshold counts values: an event without one adds nothing.
                let Some(member) = o.member else { return };
                (
                    Kind::Threshold,
                    window_start(t, th.window_ms),
                    Some(member),
                    th.count,
                )
            }
            (None, Some(s)) => (Kind::Suppress, window_start(t, s.window_ms), None, 0),
            (None, None) => return,
        };
        let key = match kind {
            Kind::Threshold => &o.group,
            Kind::Suppress => &o.suppress,
        };
        // Found by a hash of what names the slot, so that an event of a window the
        // file already touched (most of them) allocates nothing.
        let mut h = rustc_hash::FxHasher::default();
        (i, kind, start_ms, key).hash(&mut h);
        let bucket = self.index.entry(h.finish()).or_default();
        let found = bucket.iter().copied().find(|&n| {
            let s = &self.slots[n];
            s.rule == i && s.gate.kind == kind && s.gate.start_ms == start_ms && &s.gate.key == key
        });
        let n = match found {
            Some(n) => n,
            None => {
                let n = self.slots.len();
                bucket.push(n);
                let key = key.clone();
                self.slots.push(Slot {
                    rule: i,
                    gate: Gate {
                        rule: rule.id.clone(),
                        kind,
                        key,
                        start_ms,
                    },
                    members: Vec::new(),
                    seen: HashSet::default(),
                    suppress_key: o.suppress,
                    rep: rep(),
                });
                n
            }
        };
        let slot = &mut self.slots[n];
        if let Some(m) = member
            && (slot.members.len() as u64) < count
            && slot.seen.insert(m)
        {
            slot.members.push(m);
        }
    }

    /// Hands the file's windows to `store` as `file`: the alerts that go out, in
    /// the order the file first touched their windows.
    pub fn settle(
        self,
        rules: &[Rule],
        store: &mut dyn WindowStore,
        file: &str,
    ) -> Result<Vec<Settled<R>>, StoreError> {
        if self.slots.is_empty() {
            return Ok(Vec::new());
        }
        let adds: Vec<WindowAdd> = self
            .slots
            .iter()
            .filter(|s| s.gate.kind == Kind::Threshold)
            .map(|s| WindowAdd {
                gate: s.gate.clone(),
                count: rules[s.rule].threshold.as_ref().map_or(1, |t| t.count),
                members: s.members.clone(),
            })
            .collect();
        let mut reached = store.add(file, &adds)?.into_iter();
        // Each slot that may alert, with the gate that decides it (once per gate:
        // two windows of a threshold can fall into one suppression bucket).
        let mut candidates = Vec::new();
        let mut gates = Vec::new();
        let mut seen = HashSet::default();
        for s in self.slots {
            let rule = &rules[s.rule];
            let hit = match (&rule.threshold, s.gate.kind) {
                (Some(th), Kind::Threshold) => {
                    if !reached.next().unwrap_or(false) {
                        continue;
                    }
                    Some(Hit {
                        count: th.count,
                        start_ms: s.gate.start_ms,
                        end_ms: s.gate.start_ms.saturating_add(th.window_ms),
                        group: s.gate.key.clone(),
                    })
                }
                _ => None,
            };
            // A threshold alert's time, for its suppression, is its window's start.
            let gate = match (&hit, rule.suppress.is_some()) {
                (Some(h), true) => {
                    suppress_gate(rule, s.suppress_key.clone(), h.start_ms).expect("suppressed")
                }
                _ => s.gate.clone(),
            };
            if !seen.insert(gate.clone()) {
                continue;
            }
            gates.push(gate.clone());
            candidates.push((s.rule, hit, gate, s.rep));
        }
        let claims = store.claim(file, &gates)?;
        Ok(candidates
            .into_iter()
            .zip(claims)
            .filter(|(_, c)| *c != Claim::Lost)
            .map(|((rule, hit, gate, rep), c)| Settled {
                detection: Detection {
                    rule,
                    hit,
                    gate: Some(gate),
                },
                rep,
                repeat: c == Claim::Repeat,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(rule: &str, start_ms: i64) -> Gate {
        Gate {
            rule: rule.into(),
            kind: Kind::Threshold,
            key: vec![Some("alice".into()), None],
            start_ms,
        }
    }

    #[test]
    fn windows_are_aligned_to_the_epoch_also_before_it() {
        assert_eq!(window_start(0, 300_000), 0);
        assert_eq!(window_start(299_999, 300_000), 0);
        assert_eq!(window_start(300_000, 300_000), 300_000);
        assert_eq!(window_start(-1, 300_000), -300_000);
    }

    #[test]
    fn a_gate_text_tells_absent_from_empty_and_kinds_apart() {
        let mut g = gate("r", 60_000);
        let absent = g.text();
        g.key[1] = Some(String::new());
        assert_ne!(g.text(), absent);
        g.kind = Kind::Suppress;
        assert_ne!(g.text(), absent);
        assert_eq!(
            gate("r", 60_000).text(),
            absent,
            "the same gate, the same text"
        );
    }

    #[test]
    fn members_added_twice_count_once_and_stop_at_the_count() {
        let mut s = MemoryWindows::default();
        let add = |members: Vec<Member>| WindowAdd {
            gate: gate("r", 0),
            count: 3,
            members,
        };
        assert_eq!(s.add("f1", &[add(vec![1, 2])]).unwrap(), [false]);
        assert_eq!(
            s.add("f1", &[add(vec![1, 2])]).unwrap(),
            [false],
            "a file again adds nothing"
        );
        assert_eq!(
            s.add("f2", &[add(vec![2])]).unwrap(),
            [false],
            "nor a member already there"
        );
        assert_eq!(s.add("f3", &[add(vec![3])]).unwrap(), [true]);
        assert_eq!(s.windows[&gate("r", 0)].members.len(), 3);
        assert_eq!(s.add("f4", &[add(vec![4, 5])]).unwrap(), [true]);
        assert_eq!(
            s.windows[&gate("r", 0)].members.len(),
            3,
            "no more than the count is kept"
        );
    }

    #[test]
    fn the_first_file_to_claim_a_gate_emits_it_and_only_it_repeats_it() {
        let mut s = MemoryWindows::default();
        let g = [gate("r", 0)];
        assert_eq!(s.claim("f1", &g).unwrap(), [Claim::Won]);
        assert_eq!(s.claim("f2", &g).unwrap(), [Claim::Lost]);
        assert_eq!(s.claim("f1", &g).unwrap(), [Claim::Repeat]);
        assert_eq!(s.claim("f2", &[gate("r", 300_000)]).unwrap(), [Claim::Won]);
    }

    #[test]
    fn sweeping_forgets_what_was_not_touched_within_the_retention() {
        let mut s = MemoryWindows::default();
        s.claim("f", &[gate("r", 0)]).unwrap();
        let now = crate::record::now_ms();
        s.sweep(now, 60_000);
        assert_eq!(s.len(), 1, "just touched");
        s.sweep(now + 120_000, 60_000);
        assert!(s.is_empty());
    }
}
