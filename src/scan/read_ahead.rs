//! Several files at once: reader threads each take the next file, then
//! decompress, split, parse and prepare it (the pure, costly part of evaluation),
//! while the calling thread takes the files' turns strictly in input order.
//! Thresholds, suppression, the join and the output therefore see exactly the
//! sequence a single thread would: the output is identical. What readers hold
//! ahead is bounded by a memory budget each.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};

use super::ScanOptions;
use super::consumer::Consumer;
use super::objects::{Object, S3, open};
use crate::engine::Engine;
use crate::evaluate::{Prepared, prepare};
use crate::input::{self, Item};
use crate::output::AlertWriter;

/// Records per chunk, and the memory that a reader's records may take while they
/// wait for their turn ([`Prepared::weight`]). A reader on a later file than the
/// consumer's must get far enough ahead to keep its core busy until its turn: most
/// records weigh little (`Prepared::Done` without alerts, `Prepared::Windowed`), but a
/// file's rendered alerts are held too, and with the whole pack on S3 data events
/// they come to about as much as the file's JSON. 24 MiB holds a whole file of the
/// benchmark corpus (10,000 records, larger than most CloudTrail files) with its
/// alerts: with 12, the second reader of two waited for a third of each file, and
/// the scan took 8% longer. Memory stays bounded whatever the file sizes.
const CHUNK: usize = 128;
const BUDGET: usize = 24 << 20;

/// The memory a reader's records take until the consumer has taken them.
///
/// No deadlock: a reader waits only while records of its own are held, and those
/// belong to files up to the one it reads. When that is the consumer's file, the
/// consumer is taking them; when it is a later one, the consumer gets there.
struct Budget {
    limit: usize,
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits until `weight` more fits (or nothing is held, so that one chunk always
    /// goes), unless `stop` says the consumer is gone.
    fn take(&self, weight: usize, stop: &std::sync::atomic::AtomicBool) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0
            && *used + weight > self.limit
            && !stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += weight;
    }

    fn give(&self, weight: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(weight);
        self.freed.notify_all();
    }

    /// Wakes a reader waiting in [`Budget::take`] (after `stop` was set).
    fn wake(&self) {
        let _held = self.used.lock().unwrap_or_else(|e| e.into_inner());
        self.freed.notify_all();
    }
}

/// What a reader thread hands over for one file, in order.
enum Chunk<'a> {
    /// Records, and what they weigh against their reader's [`Budget`].
    Items(Vec<Prepared>, usize, &'a Budget),
    OpenFailed(String),
    End(Result<input::StreamStats, input::StreamError>),
}

/// Reads `objects` on `opts.threads` reader threads, feeding `c` in input order.
pub(super) fn read_ahead(
    c: &mut Consumer<'_>,
    engine: &Engine,
    opts: &ScanOptions,
    objects: &[Object],
    s3: Option<&S3>,
    out: &mut dyn AlertWriter,
    diag: &mut dyn Write,
) -> anyhow::Result<()> {
    // Declared before the channels, whose chunks borrow them.
    let budgets: Vec<Budget> = (0..opts.threads.clamp(1, objects.len()))
        .map(|_| Budget::new(BUDGET))
        .collect();
    let (txs, rxs): (Vec<_>, Vec<_>) = objects.iter().map(|_| channel()).unzip();
    let txs: Vec<Mutex<Option<Sender<Chunk>>>> =
        txs.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let render = out.renderer();
    let range = opts.range();
    let names: Vec<String> = objects.iter().map(Object::name).collect();
    let sources: Vec<Box<dyn Fn(u64) -> crate::alert::SourceRef + Sync + '_>> = objects
        .iter()
        .zip(&names)
        .map(|(o, name)| Box::new(move |index| o.source(name, index)) as Box<_>)
        .collect();
    std::thread::scope(|scope| {
        for budget in &budgets {
            let (next, stop, txs, sources) = (&next, &stop, &txs, &sources);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= objects.len() || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let tx = txs[i]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .expect("each file is taken once");
                    let reader = match open(&objects[i], s3) {
                        Ok(r) => r,
                        Err(msg) => {
                            let _ = tx.send(Chunk::OpenFailed(msg));
                            continue;
                        }
                    };
                    let mut chunk = Vec::with_capacity(CHUNK);
                    let mut scratch = Vec::new();
                    let mut weight = 0;
                    let mut gone = false;
                    let result = input::read_events(reader, opts.limits, |item| {
                        if gone {
                            return;
                        }
                        let p = match item {
                            Item::Bad { position, error } => Prepared::Bad { position, error },
                            Item::Event { index, event } => prepare(
                                engine,
                                range,
                                render,
                                &*sources[i],
                                index,
                                event,
                                &mut scratch,
                            ),
                        };
                        weight += p.weight();
                        chunk.push(p);
                        if chunk.len() == CHUNK {
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                            budget.take(weight, stop);
                            gone = tx.send(Chunk::Items(full, weight, budget)).is_err();
                            weight = 0;
                        }
                    });
                    if !gone && !chunk.is_empty() {
                        budget.take(weight, stop);
                        gone = tx.send(Chunk::Items(chunk, weight, budget)).is_err();
                    }
                    if gone || tx.send(Chunk::End(result)).is_err() {
                        // The consumer stopped (an output error): so do the readers.
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
        let consumed = (|| -> anyhow::Result<()> {
            for ((rx, name), source) in rxs.iter().zip(&names).zip(&sources) {
                let mut file = c.begin(engine, render, &**source, name);
                // A reader holds the sender until the file's end: the loop ends there.
                for chunk in rx {
                    match chunk {
                        Chunk::OpenFailed(msg) => c.open_failed(&msg, diag)?,
                        Chunk::Items(items, weight, budget) => {
                            for p in items {
                                c.take(&mut file, p, out, diag);
                            }
                            budget.give(weight);
                        }
                        Chunk::End(result) => {
                            c.end_file(file, result, out, diag)?;
                            break;
                        }
                    }
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        budgets.iter().for_each(Budget::wake);
        drop(rxs);
        consumed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::channel;
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_secs(20);

    #[test]
    fn a_reader_within_its_budget_goes_on() {
        let b = Budget::new(10);
        let stop = AtomicBool::new(false);
        b.take(6, &stop);
        b.take(4, &stop);
        assert_eq!(*b.used.lock().unwrap(), 10);
        // Nothing held: one chunk always goes, however heavy.
        let b = Budget::new(10);
        b.take(50, &stop);
        assert_eq!(*b.used.lock().unwrap(), 50);
    }

    /// A reader waits to add 5 to a budget of 10 with 8 held; `release` must let
    /// it go on (within the deadline). Returns the budget afterwards.
    fn waiting_reader_released_by(release: impl FnOnce(&Budget, &AtomicBool), why: &str) -> Budget {
        let b = Budget::new(10);
        let stop = AtomicBool::new(false);
        b.take(8, &stop);
        let (done, finished) = channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                b.take(5, &stop);
                done.send(()).unwrap();
            });
            release(&b, &stop);
            finished.recv_timeout(DEADLINE).expect(why);
        });
        b
    }

    #[test]
    fn a_reader_over_its_budget_waits_until_the_consumer_takes_its_records() {
        let b = waiting_reader_released_by(
            |b, _| b.give(8),
            "the reader goes on once the consumer took its records",
        );
        assert_eq!(*b.used.lock().unwrap(), 5);
    }

    #[test]
    fn a_waiting_reader_is_released_when_the_consumer_stops() {
        waiting_reader_released_by(
            |b, stop| {
                // The consumer gave up (an output error): nothing is given back.
                stop.store(true, Ordering::Relaxed);
                b.wake();
            },
            "a stopped consumer does not leave readers waiting",
        );
    }
}
