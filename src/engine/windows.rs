//! Thresholds and suppression, both in *event time*.
//!
//! CloudTrail delivers files about 5 minutes after the calls, sometimes much later, and
//! files overlap, so events reach a rule out of order. Windows are therefore computed
//! from `eventTime`, never from arrival time: each group keeps its recent events sorted
//! by time, and an arriving event fires the threshold when *any* window of the
//! configured length that contains it holds `count` events (or distinct values). The
//! events of a window that fired are consumed, so the next alert needs `count` fresh
//! ones. Events are kept for the window plus [`LATENESS_MS`] behind the newest event
//! seen by the rule; older ones are evicted, which bounds memory.
//!
//! Event times are written by whoever writes the log, so the newest one is not
//! trusted blindly: an event dated more than [`FUTURE_TOLERANCE_MS`] ahead of the
//! wall clock (the caller decides, see [`crate::engine::Engine`]) is evaluated with
//! [`ThresholdState::observe_ahead`] and [`SuppressState::admit_ahead`], which move
//! no mark: one record dated 2099 would otherwise make every real event late.
//!
//! This is the engine's runtime state; what a rule asks for (`[threshold]`,
//! `[suppress]`) is compiled in [`crate::rules::compile::threshold`]. The file runs
//! past 600 lines because of its tests: the in-order fast path, the late-event
//! examination and eviction are one algorithm, tested beside it against a
//! reference that examines every window.

use std::collections::BTreeMap;
use std::sync::Arc;

// Keys are our own rule fields' values; a fast non-cryptographic hash is enough
// (group counts are bounded by eviction).
use rustc_hash::FxHashMap as HashMap;

use crate::rules::{Suppress, Threshold};

/// How far behind the newest event an event may arrive and still be counted with
/// the events around it.
pub const LATENESS_MS: i64 = 60 * 60 * 1000;

/// How far ahead of the wall clock an event time may be and still move a rule's
/// marks (its newest event time, the windows ending there). CloudTrail stamps
/// events with AWS's clock; anything further ahead is forged or broken.
pub const FUTURE_TOLERANCE_MS: i64 = 15 * 60 * 1000;

/// How often (in observations) whole-state sweeps evict idle groups.
const SWEEP_EVERY: u64 = 4096;

/// Group or suppression key: one value per `group_by`/`key` field, `None` when absent.
pub type Key = Vec<Option<String>>;

/// A distinct value, made once per event and shared by the group's entry that
/// carries it and the counts of values that hold it (which would otherwise each
/// copy it): a busy group remembers thousands of object keys.
pub type Value = Arc<str>;

/// A threshold that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Events (or distinct values) in the window that fired.
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub group: Key,
}

#[derive(Debug, Default)]
pub struct ThresholdState {
    groups: HashMap<Key, Group>,
    watermark: Option<i64>,
    seq: u64,
}

type Entries = BTreeMap<(i64, u64), Option<Value>>;

/// One group's remembered events, plus a running count of the window that ends at
/// its newest event. Events usually arrive in time order; then that window is the
/// only one that can fire and is updated in O(1) (amortised) per event. An event
/// older than the newest falls back to examining the windows around it.
#[derive(Debug, Default)]
struct Group {
    entries: Entries,
    tail: Option<Tail>,
    /// How many of `entries` carry each distinct value: no window holds more
    /// distinct values than the group, so a late event in a busy group with few
    /// values (a job reading the same keys over and over) is settled at once.
    values: HashMap<Value, usize>,
}

/// Counts one more of `v` (sharing `v` itself when it is new).
fn count_in(values: &mut HashMap<Value, usize>, v: &Value) {
    match values.get_mut(&**v) {
        Some(n) => *n += 1,
        None => {
            values.insert(v.clone(), 1);
        }
    }
}

/// Counts one less of `v`, forgetting it at zero.
fn uncount_in(values: &mut HashMap<Value, usize>, v: &str) {
    if let Some(n) = values.get_mut(v) {
        *n -= 1;
        if *n == 0 {
            values.remove(v);
        }
    }
}

impl Group {
    fn insert(&mut self, key: (i64, u64), v: Option<Value>) {
        if let Some(v) = &v {
            count_in(&mut self.values, v);
        }
        self.entries.insert(key, v);
    }

    fn remove(&mut self, key: &(i64, u64)) {
        if let Some(Some(v)) = self.entries.remove(key) {
            self.forget(&v);
        }
    }

    fn forget(&mut self, v: &str) {
        uncount_in(&mut self.values, v);
    }

    /// Forgets entries older than `horizon`; returns whether it removed any.
    fn evict(&mut self, horizon: i64) -> bool {
        let mut removed = false;
        while let Some((&(t, _), _)) = self.entries.first_key_value() {
            if t >= horizon {
                break;
            }
            if let Some((_, Some(v))) = self.entries.pop_first() {
                self.forget(&v);
            }
            removed = true;
        }
        removed
    }
}

/// The entries from `start` to `newest` (the window ending at the newest event).
#[derive(Debug)]
struct Tail {
    start: (i64, u64),
    newest: (i64, u64),
    count: usize,
    values: HashMap<Value, usize>,
}

impl Tail {
    /// Counts the entries in `[newest - w, newest]`.
    fn build(entries: &Entries, newest: (i64, u64), w: i64) -> Tail {
        let mut t = Tail {
            start: newest,
            newest,
            count: 0,
            values: HashMap::default(),
        };
        let mut first = true;
        for (k, v) in entries.range((newest.0 - w, 0)..=newest) {
            if first {
                t.start = *k;
                first = false;
            }
            t.add(v);
        }
        t
    }

    fn add(&mut self, v: &Option<Value>) {
        self.count += 1;
        if let Some(v) = v {
            count_in(&mut self.values, v);
        }
    }

    fn remove(&mut self, v: &Option<Value>) {
        self.count -= 1;
        if let Some(v) = v {
            uncount_in(&mut self.values, v);
        }
    }
}

impl ThresholdState {
    /// The newest event time seen, used for events that carry none.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Records one matching event; returns the hit when it completes a window.
    pub fn observe(
        &mut self,
        th: &Threshold,
        t: i64,
        group: Key,
        distinct: Option<Value>,
    ) -> Option<Hit> {
        let wm = self.watermark.map_or(t, |w| w.max(t));
        self.watermark = Some(wm);
        self.observe_below(th, t, wm, group, distinct)
    }

    /// [`Self::observe`] for an event dated too far ahead to be trusted: it may
    /// complete a window with the events held (and then consumes them, as any
    /// hit does), but it moves no mark and is not kept: the newest event time
    /// stays, and so do the windows of the events that come after it.
    pub fn observe_ahead(
        &mut self,
        th: &Threshold,
        t: i64,
        group: Key,
        distinct: Option<Value>,
    ) -> Option<Hit> {
        // Without a newest time there is nothing held to evict.
        let wm = self.watermark.unwrap_or(t);
        let key = (t, self.seq + 1);
        let probe = group.clone();
        let hit = self.observe_below(th, t, wm, group, distinct);
        if hit.is_none()
            && let Some(g) = self.groups.get_mut(&probe)
        {
            g.remove(&key);
            // Its window may have moved the running count past the events held.
            g.tail = None;
            if g.entries.is_empty() {
                self.groups.remove(&probe);
            }
        }
        hit
    }

    /// Records an event at `t` with the newest trusted time `wm` (at least `t` for
    /// trusted events).
    fn observe_below(
        &mut self,
        th: &Threshold,
        t: i64,
        wm: i64,
        group: Key,
        distinct: Option<Value>,
    ) -> Option<Hit> {
        self.seq += 1;
        if self.seq.is_multiple_of(SWEEP_EVERY) {
            let horizon = wm - th.window_ms - LATENESS_MS;
            self.groups.retain(|_, g| {
                if g.evict(horizon) {
                    g.tail = None;
                }
                !g.entries.is_empty()
            });
        }
        // Look the group up before cloning its key: most observations find it.
        if !self.groups.contains_key(&group) {
            self.groups.insert(group.clone(), Group::default());
        }
        let g = self.groups.get_mut(&group).expect("inserted above");
        let horizon = wm - th.window_ms - LATENESS_MS;
        if g.evict(horizon) && g.tail.as_ref().is_some_and(|tl| tl.start.0 < horizon) {
            g.tail = None;
        }
        let key = (t, self.seq);
        let w = th.window_ms;
        let in_order = g.entries.last_key_value().is_none_or(|(k, _)| *k < key);
        g.insert(key, distinct);
        let measure = |tail: &Tail| {
            if th.distinct.is_some() {
                tail.values.len() as u64
            } else {
                tail.count as u64
            }
        };

        if in_order {
            // Only the window ending here can fire, and it holds every event of the
            // last `w` milliseconds.
            match g.tail.as_mut() {
                Some(tail) => {
                    tail.add(&g.entries[&key]);
                    tail.newest = key;
                    while tail.start.0 < t - w {
                        let old = tail.start;
                        tail.remove(&g.entries[&old]);
                        tail.start = match g
                            .entries
                            .range((std::ops::Bound::Excluded(old), std::ops::Bound::Unbounded))
                            .next()
                        {
                            Some((k, _)) => *k,
                            None => key,
                        };
                    }
                }
                None => g.tail = Some(Tail::build(&g.entries, key, w)),
            }
            let tail = g.tail.as_ref().expect("set above");
            let count = measure(tail);
            if count < th.count {
                return None;
            }
            let keys: Vec<(i64, u64)> =
                g.entries.range(tail.start..=key).map(|(k, _)| *k).collect();
            let hit = Hit {
                count,
                first_ms: keys[0].0,
                last_ms: t,
                group,
            };
            for k in keys {
                g.remove(&k);
            }
            g.tail = None;
            return Some(hit);
        }

        // A late event: it may complete any window of length `w` that contains it.
        if let Some(tail) = g.tail.as_mut()
            && t >= tail.newest.0 - w
        {
            tail.add(&g.entries[&key]);
            tail.start = tail.start.min(key);
        }
        // No window can hold more events (or distinct values) than the group
        // remembers: most late events are rejected here without a look around.
        let held = match th.distinct {
            Some(_) => g.values.len(),
            None => g.entries.len(),
        };
        if (held as u64) < th.count {
            return None;
        }
        // Nor more than the events around it: counting them is cheap next to
        // examining the windows (which hashes every distinct value).
        let around = g.entries.range((t - w, 0)..=(t + w, u64::MAX)).count();
        if (around as u64) < th.count {
            return None;
        }
        let entries = &g.entries;
        let near: Vec<(&(i64, u64), &Option<Value>)> =
            entries.range((t - w, 0)..=(t + w, u64::MAX)).collect();
        let n = near.len();
        let mut j = 0;
        let mut seen: HashMap<&str, usize> = HashMap::default();
        for i in 0..n {
            let start = near[i].0.0;
            if start > t {
                break;
            }
            // Extend the window [start, start + w] as far as it goes.
            while j < n && near[j].0.0 <= start + w {
                if let Some(v) = near[j].1 {
                    *seen.entry(&**v).or_default() += 1;
                }
                j += 1;
            }
            if start + w >= t {
                let count = if th.distinct.is_some() {
                    seen.len() as u64
                } else {
                    (j - i) as u64
                };
                if count >= th.count {
                    let keys: Vec<(i64, u64)> = near[i..j].iter().map(|(k, _)| **k).collect();
                    let hit = Hit {
                        count,
                        first_ms: keys[0].0,
                        last_ms: keys[keys.len() - 1].0,
                        group,
                    };
                    for k in keys {
                        g.remove(&k);
                    }
                    g.tail = None;
                    return Some(hit);
                }
            }
            // Slide: drop the window's first event.
            if let Some(v) = near[i].1
                && let Some(c) = seen.get_mut(&**v)
            {
                *c -= 1;
                if *c == 0 {
                    seen.remove(&**v);
                }
            }
        }
        None
    }

    /// [`Self::observe`] without the in-order fast path: every window around the
    /// event is examined (the reference the fast path is tested against).
    #[cfg(test)]
    fn observe_by_examination(
        &mut self,
        th: &Threshold,
        t: i64,
        group: Key,
        distinct: Option<Value>,
    ) -> Option<Hit> {
        // A late timestamp never takes the fast path; run the slow path by making
        // every event look late: drop the tail and insert through the general code.
        for g in self.groups.values_mut() {
            g.tail = None;
        }
        let wm = self.watermark.map_or(t, |w| w.max(t));
        self.watermark = Some(wm);
        self.seq += 1;
        let g = self.groups.entry(group.clone()).or_default();
        g.evict(wm - th.window_ms - LATENESS_MS);
        g.insert((t, self.seq), distinct);
        let w = th.window_ms;
        let near: Vec<((i64, u64), Option<Value>)> = g
            .entries
            .range((t - w, 0)..=(t + w, u64::MAX))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for i in 0..near.len() {
            let start = near[i].0.0;
            if start > t {
                break;
            }
            if start + w < t {
                continue;
            }
            let window: Vec<&((i64, u64), Option<Value>)> = near[i..]
                .iter()
                .take_while(|(k, _)| k.0 <= start + w)
                .collect();
            let count = if th.distinct.is_some() {
                window
                    .iter()
                    .filter_map(|(_, v)| v.as_deref())
                    .collect::<std::collections::HashSet<_>>()
                    .len() as u64
            } else {
                window.len() as u64
            };
            if count >= th.count {
                for (k, _) in &window {
                    g.entries.remove(k);
                }
                return Some(Hit {
                    count,
                    first_ms: window[0].0.0,
                    last_ms: window[window.len() - 1].0.0,
                    group,
                });
            }
        }
        None
    }

    /// Groups currently held (for tests and metrics).
    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// Remembers when each suppression key alerted recently.
#[derive(Debug, Default)]
pub struct SuppressState {
    /// Event times of the alerts that went out, per key, within the horizon.
    sent: HashMap<Key, std::collections::BTreeSet<i64>>,
    watermark: i64,
    seen: u64,
}

impl SuppressState {
    /// Whether an alert at event time `t` with `key` may go out; records it if so.
    /// An alert is dropped when an alert with the same key went out less than the
    /// window before *or after* it (events arrive out of order).
    pub fn admit(&mut self, s: &Suppress, key: Key, t: i64) -> bool {
        self.watermark = self.watermark.max(t);
        self.admit_below(s, key, t)
    }

    /// [`Self::admit`] for an alert dated too far ahead to be trusted: suppressed
    /// and remembered alike (so that a flood of them goes out once per window),
    /// but the newest alert time, which decides what is forgotten, stays.
    pub fn admit_ahead(&mut self, s: &Suppress, key: Key, t: i64) -> bool {
        self.admit_below(s, key, t)
    }

    fn admit_below(&mut self, s: &Suppress, key: Key, t: i64) -> bool {
        self.seen += 1;
        let horizon = self.watermark - s.window_ms - LATENESS_MS;
        if self.seen.is_multiple_of(SWEEP_EVERY) {
            self.sent.retain(|_, times| {
                times.retain(|x| *x >= horizon);
                !times.is_empty()
            });
        }
        let times = self.sent.entry(key).or_default();
        let w = s.window_ms;
        // Any alert that went out less than the window before or after this one?
        if times
            .range(t.saturating_sub(w - 1)..=t.saturating_add(w - 1))
            .next()
            .is_some()
        {
            return false;
        }
        times.insert(t);
        while times.first().is_some_and(|x| *x < horizon) {
            times.pop_first();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FieldRef;

    const MIN: i64 = 60_000;

    fn th(count: u64, window_min: i64, distinct: bool) -> Threshold {
        Threshold {
            count,
            window_ms: window_min * MIN,
            window_text: format!("{window_min}m"),
            group_by: vec![],
            distinct: distinct.then(|| {
                (
                    "eventName".to_owned(),
                    FieldRef::parse("eventName").unwrap(),
                )
            }),
        }
    }

    fn g(s: &str) -> Key {
        vec![Some(s.to_owned())]
    }

    /// Feeds (minute, group) events; returns the indices of events that fired.
    fn fire(t: &Threshold, events: &[(i64, &str)]) -> Vec<usize> {
        let mut st = ThresholdState::default();
        events
            .iter()
            .enumerate()
            .filter_map(|(i, (m, grp))| st.observe(t, m * MIN, g(grp), None).map(|_| i))
            .collect()
    }

    #[test]
    fn fires_on_the_count_th_event_within_the_window() {
        assert_eq!(
            fire(&th(3, 5, false), &[(0, "a"), (1, "a"), (2, "a")]),
            vec![2]
        );
        assert_eq!(
            fire(&th(3, 5, false), &[(0, "a"), (1, "a")]),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn window_edges_are_inclusive() {
        // Exactly `window` apart still counts; one millisecond more does not.
        assert_eq!(fire(&th(2, 5, false), &[(0, "a"), (5, "a")]), vec![1]);
        let mut st = ThresholdState::default();
        assert!(st.observe(&th(2, 5, false), 0, g("a"), None).is_none());
        assert!(
            st.observe(&th(2, 5, false), 5 * MIN + 1, g("a"), None)
                .is_none()
        );
    }

    #[test]
    fn groups_count_separately() {
        assert_eq!(
            fire(&th(2, 5, false), &[(0, "a"), (1, "b"), (2, "a")]),
            vec![2]
        );
    }

    #[test]
    fn out_of_order_events_complete_a_window() {
        // Arrival order 10, 0, 4. With a 5-minute window no window holds all three
        // ([0, 5] holds 0 and 4); with a 10-minute one, [0, 10] does.
        assert_eq!(
            fire(&th(3, 5, false), &[(10, "a"), (0, "a"), (4, "a")]),
            Vec::<usize>::new()
        );
        assert_eq!(
            fire(&th(3, 10, false), &[(10, "a"), (0, "a"), (4, "a")]),
            vec![2]
        );
        // A late event in the middle of a burst.
        assert_eq!(
            fire(&th(3, 5, false), &[(3, "a"), (1, "a"), (2, "a")]),
            vec![2]
        );
    }

    #[test]
    fn a_fired_window_is_consumed() {
        let ev: Vec<(i64, &str)> = (0..6).map(|m| (m, "a")).collect();
        assert_eq!(fire(&th(3, 10, false), &ev), vec![2, 5]);
    }

    #[test]
    fn distinct_counts_values_not_events() {
        let t = th(3, 5, true);
        let mut st = ThresholdState::default();
        let mut obs = |m: i64, v: &str| st.observe(&t, m * MIN, g("a"), Some(v.into()));
        assert!(obs(0, "x").is_none());
        assert!(obs(1, "x").is_none());
        assert!(obs(2, "y").is_none());
        let hit = obs(3, "z").expect("three distinct values");
        assert_eq!(hit.count, 3);
        assert_eq!((hit.first_ms, hit.last_ms), (0, 3 * MIN));
    }

    #[test]
    fn old_events_are_evicted_and_idle_groups_dropped() {
        let t = th(100, 1, false);
        let mut st = ThresholdState::default();
        for i in 0..(SWEEP_EVERY as i64 * 2) {
            // each event in its own group, one minute apart
            st.observe(&t, i * MIN, g(&i.to_string()), None);
        }
        assert!(st.groups() < 200, "groups held: {}", st.groups());
    }

    /// The in-order fast path gives exactly what examining every window gives, on
    /// random streams with late events, groups and distinct values.
    #[test]
    fn fast_path_agrees_with_the_full_examination() {
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let distinct = seed % 2 == 0;
            let t = th(rng.u64(2..6), rng.i64(1..5), distinct);
            let mut fast = ThresholdState::default();
            let mut slow = ThresholdState::default();
            let mut clock = 0i64;
            // Streams differ in how many values there are and how many events are late.
            let values = rng.u8(1..8);
            let late = rng.u8(1..5);
            for _ in 0..400 {
                clock += rng.i64(0..40_000);
                // Mostly in order, sometimes late by up to ten minutes.
                let at = if rng.u8(..10) < late {
                    clock - rng.i64(0..600_000)
                } else {
                    clock
                };
                let grp = g(["a", "b"][rng.usize(..2)]);
                let val: Option<Value> = Some(format!("k{}", rng.u8(..values)).into());
                let a = fast.observe(&t, at, grp.clone(), val.clone());
                let b = slow.observe_by_examination(&t, at, grp, val);
                assert_eq!(a, b, "seed {seed}");
            }
        }
    }

    #[test]
    fn a_long_burst_below_the_distinct_count_stays_cheap() {
        // 200,000 reads of the same few keys in one window: linear, not quadratic.
        let t = th(50, 10, true);
        let mut st = ThresholdState::default();
        for i in 0..200_000i64 {
            assert!(
                st.observe(&t, i, g("a"), Some(format!("k{}", i % 10).into()))
                    .is_none()
            );
        }
    }

    #[test]
    fn a_long_late_burst_of_few_values_stays_cheap() {
        // The same few keys read over and over, half the events arriving late:
        // each late event is settled by the group's count of values, not by
        // examining the windows around it.
        let t = th(50, 10, true);
        let mut st = ThresholdState::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..100_000i64 {
            let at = if i % 2 == 0 {
                i - rng.i64(0..60_000)
            } else {
                i
            };
            assert!(
                st.observe(&t, at, g("a"), Some(format!("k{}", i % 10).into()))
                    .is_none()
            );
        }
    }

    #[test]
    fn an_event_ahead_moves_no_mark_and_is_not_kept() {
        let t = th(3, 5, false);
        let mut st = ThresholdState::default();
        assert!(st.observe(&t, 0, g("a"), None).is_none());
        // Far ahead, alone: evaluated, not kept, and the newest time stays.
        let year = 365 * 24 * 60 * MIN;
        assert!(st.observe_ahead(&t, 75 * year, g("a"), None).is_none());
        assert!(st.observe_ahead(&t, 75 * year, g("b"), None).is_none());
        assert_eq!(st.watermark(), Some(0));
        assert_eq!(st.groups(), 1, "nothing of it held");
        // The real events after it still complete their window.
        assert!(st.observe(&t, MIN, g("a"), None).is_none());
        let hit = st
            .observe(&t, 2 * MIN, g("a"), None)
            .expect("three in five minutes");
        assert_eq!((hit.count, hit.first_ms, hit.last_ms), (3, 0, 2 * MIN));
        // Two far-ahead events never add up: neither is kept.
        assert!(st.observe_ahead(&t, year, g("c"), None).is_none());
        assert!(st.observe_ahead(&t, year, g("c"), None).is_none());
        assert!(st.observe_ahead(&t, year, g("c"), None).is_none());
        // One that completes a window with the events held fires, and consumes them.
        assert!(st.observe(&t, 10 * MIN, g("d"), None).is_none());
        assert!(st.observe(&t, 11 * MIN, g("d"), None).is_none());
        let hit = st
            .observe_ahead(&t, 12 * MIN, g("d"), None)
            .expect("it completes the window");
        assert_eq!((hit.first_ms, hit.last_ms), (10 * MIN, 12 * MIN));
        assert_eq!(st.watermark(), Some(11 * MIN));
        // After one ahead in the group, in order or late, counting is unchanged.
        assert!(st.observe(&t, 20 * MIN, g("e"), None).is_none());
        assert!(st.observe_ahead(&t, 30 * MIN, g("e"), None).is_none());
        assert!(st.observe(&t, 19 * MIN, g("e"), None).is_none());
        assert!(st.observe(&t, 21 * MIN, g("e"), None).is_some());
    }

    /// Events ahead, interleaved anywhere, leave the trusted events' alerts as
    /// they are without them, whenever they cannot complete a window themselves.
    #[test]
    fn events_ahead_do_not_change_what_the_others_fire() {
        for seed in 0..100 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let t = th(rng.u64(2..5), rng.i64(1..5), seed % 2 == 0);
            let (mut with, mut without) = (ThresholdState::default(), ThresholdState::default());
            let mut clock = 0i64;
            for _ in 0..300 {
                let grp = g(["a", "b"][rng.usize(..2)]);
                let val: Option<Value> = Some(format!("k{}", rng.u8(..4)).into());
                if rng.u8(..4) == 0 {
                    // Far enough ahead that no window reaches it.
                    let ahead = clock + 1000 * MIN + rng.i64(0..100 * MIN);
                    assert!(with.observe_ahead(&t, ahead, grp, val).is_none());
                    continue;
                }
                clock += rng.i64(0..40_000);
                let at = clock - rng.i64(0..120_000);
                let a = with.observe(&t, at, grp.clone(), val.clone());
                let b = without.observe(&t, at, grp, val);
                assert_eq!(a, b, "seed {seed}");
            }
            assert_eq!(with.watermark(), without.watermark());
        }
    }

    #[test]
    fn an_alert_ahead_is_suppressed_but_moves_no_mark() {
        let s = Suppress {
            window_ms: 60 * MIN,
            key: vec![],
        };
        let mut st = SuppressState::default();
        let far = 1_000_000 * MIN;
        assert!(st.admit_ahead(&s, g("k"), far));
        assert!(
            !st.admit_ahead(&s, g("k"), far + MIN),
            "a flood goes out once"
        );
        assert_eq!(st.watermark, 0);
        assert!(st.admit(&s, g("k"), 100 * MIN));
        assert!(!st.admit(&s, g("k"), 130 * MIN));
    }

    #[test]
    fn suppression_drops_alerts_within_the_window_either_side() {
        let s = Suppress {
            window_ms: 60 * MIN,
            key: vec![],
        };
        let mut st = SuppressState::default();
        assert!(st.admit(&s, g("k"), 100 * MIN));
        assert!(!st.admit(&s, g("k"), 130 * MIN));
        assert!(
            !st.admit(&s, g("k"), 50 * MIN),
            "an earlier event within the window"
        );
        assert!(st.admit(&s, g("other"), 130 * MIN));
        assert!(st.admit(&s, g("k"), 160 * MIN), "exactly one window later");
    }

    #[test]
    fn suppression_remembers_every_recent_alert_not_just_the_last() {
        let s = Suppress {
            window_ms: 60 * MIN,
            key: vec![],
        };
        let mut st = SuppressState::default();
        assert!(st.admit(&s, g("k"), 120 * MIN));
        assert!(
            st.admit(&s, g("k"), 0),
            "two hours earlier: a separate alert"
        );
        assert!(
            !st.admit(&s, g("k"), 150 * MIN),
            "within the window of the 120-minute alert"
        );
        assert!(
            !st.admit(&s, g("k"), 30 * MIN),
            "within the window of the early alert"
        );
    }
}
