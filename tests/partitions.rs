//! The same files give the same alert ids however they are shared out: random
//! partitions of a corpus among workers that share detection state, each worker
//! reading its files in a random order on its own thread, against `scan` of the
//! whole corpus. The workers here are the library's evaluator with the in-memory
//! shared state the worker uses (the DynamoDB state is driven by real workers in
//! `fleet`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use trailwatch::alert::{Alert, SourceRef};
use trailwatch::engine::{Engine, EngineOptions};
use trailwatch::evaluate::{Emit, FileTurn, Prepared, TimeRange, prepare};
use trailwatch::input::{self, Item, Limits, Position};
use trailwatch::join::{DeleteJoin, Policy};
use trailwatch::record::RecordError;
use trailwatch::rules::{Rule, RuleSet, Strictness};
use trailwatch::state::{Completed, Shared, State};

use crate::support::*;

/// Alert ids by rule.
type Ids = BTreeMap<String, BTreeSet<String>>;

struct Collect(Arc<Mutex<Ids>>);

impl Emit for Collect {
    fn fired(&mut self, _: &Rule) {}
    fn alert(&mut self, a: Alert) {
        // A join follow-up repeats its alert's id: the set is what counts.
        let mut ids = self.0.lock().unwrap();
        ids.entry(a.rule_id.clone()).or_default().insert(a.alert_id);
    }
    fn rendered(&mut self, _: &[u8]) {
        unreachable!("prepared without a renderer")
    }
    fn bad_record(&mut self, _: Position, _: &RecordError) {}
}

/// One worker: its files in order, each through the evaluator with `state`.
fn worker(engine: &Engine, files: &[PathBuf], shared: &Arc<Shared>, ids: &Arc<Mutex<Ids>>) {
    for f in files {
        let name = f.display().to_string();
        let source = |index| SourceRef::file(&name, index);
        let mut state = shared.handle();
        let mut out = Collect(ids.clone());
        let mut turn = FileTurn::begin(engine, None, &source);
        let mut scratch = Vec::new();
        let read = input::read_events(std::fs::File::open(f).unwrap(), Limits::default(), |item| {
            let p = match item {
                Item::Bad { position, error } => Prepared::Bad { position, error },
                Item::Event { index, event } => prepare(
                    engine,
                    TimeRange::default(),
                    None,
                    &source,
                    index,
                    event,
                    &mut scratch,
                ),
            };
            turn.take(p, &state, &mut out);
        });
        assert!(read.is_ok(), "{name}: {read:?}");
        turn.finish(&name, true, false, &mut state, &mut out, 0)
            .expect("memory state answers");
        state
            .object_completed((name.clone(), String::new(), String::new()))
            .unwrap();
    }
}

fn state() -> Arc<Shared> {
    Arc::new(Shared::new(
        DeleteJoin::new(Policy::Streaming {
            window: std::time::Duration::from_secs(3600),
            max_entries: 100_000,
            active: true,
        }),
        Completed::new(1000),
    ))
}

fn scan_ids(dir: &Path) -> Ids {
    let (code, out, err) = run(trailwatch()
        .args(["scan", "--rules"])
        .arg(root().join("rules"))
        .arg(dir));
    assert_eq!(code, 0, "{err}");
    let mut ids = Ids::new();
    for a in jsonl(&out) {
        ids.entry(a["rule_id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(a["alert_id"].as_str().unwrap().to_owned());
    }
    ids
}

#[test]
fn random_partitions_among_workers_give_the_ids_of_scan() {
    let dir = tempfile::tempdir().unwrap();
    generate(11, 8, 1500, dir.path());
    let expected = scan_ids(dir.path());
    let windowed = ["repeated-access-denied", "cis-iam-policy-changes"];
    for rule in windowed {
        assert!(
            expected.contains_key(rule),
            "{rule} fires in the corpus: {:?}",
            expected.keys()
        );
    }
    let set = RuleSet::load(&root().join("rules"), Strictness::Run).unwrap();
    let engine = Engine::new(&set, EngineOptions::default());
    let files = input::local_files(dir.path()).unwrap();
    let mut rng = fastrand::Rng::with_seed(20261204);
    for trial in 0..6 {
        let workers = 1 + trial % 4;
        let mut shares: Vec<Vec<PathBuf>> = vec![Vec::new(); workers];
        let mut order = files.clone();
        rng.shuffle(&mut order);
        for f in order {
            shares[rng.usize(..workers)].push(f);
        }
        let shared = state();
        let ids = Arc::new(Mutex::new(Ids::new()));
        std::thread::scope(|s| {
            for share in &shares {
                s.spawn(|| worker(&engine, share, &shared, &ids));
            }
        });
        let got = ids.lock().unwrap().clone();
        if workers == 4 {
            // The control: the same shares, each worker with a state of its own,
            // do not see each other's windows, and the ids differ.
            let ids = Arc::new(Mutex::new(Ids::new()));
            for share in &shares {
                worker(&engine, share, &state(), &ids);
            }
            assert_ne!(
                *ids.lock().unwrap(),
                expected,
                "state per worker loses windows"
            );
        }
        for rule in expected.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
            assert_eq!(
                got.get(rule),
                expected.get(rule),
                "trial {trial} ({workers} workers, shares {:?}): {rule}",
                shares.iter().map(Vec::len).collect::<Vec<_>>()
            );
        }
    }
}
