//! A deterministic generator of realistic CloudTrail log files, for the tests, the
//! benchmarks and `scripts/bench`.
//!
//! It writes what CloudTrail delivers to S3: gzip files of one compact
//! `{"Records":[...]}` object each, named
//! `<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<16 alnum>.json.gz`, flat in the
//! output directory or under `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`.
//! Records carry CloudTrail's fields in its usual key order, about 1.9 KB each:
//! ~60% S3 data events, ~35% management events, ~5% errors, by every identity type
//! the detector normalises, with episodes (bursts of denials, batch S3 jobs) that
//! the bundled rules' thresholds catch. See the modules for each part.
//!
//! The same options give the same bytes: every file has its own random stream,
//! derived from the seed and its index (so files can be written on several threads
//! in any order), and gzip headers carry no time or name. No CLI and no async:
//! tests and benches include this file with `#[path = ...] mod gen_corpus;`, which
//! is why the submodules below are named by path and only fastrand, flate2 and std
//! are used.

#[path = "agents.rs"]
mod agents;
#[path = "iam.rs"]
mod iam;
#[path = "identity.rs"]
mod identity;
#[path = "ids.rs"]
mod ids;
#[path = "json.rs"]
mod json;
#[path = "mgmt.rs"]
mod mgmt;
#[path = "record.rs"]
mod record;
#[path = "s3.rs"]
mod s3;
#[path = "world.rs"]
mod world;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::{Compression, GzBuilder};

use record::Gen;
use world::{REGIONS, World};

/// Where files go under the output directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// Directly in it.
    #[default]
    Flat,
    /// `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`, as in a trail's bucket.
    S3,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub files: usize,
    /// Records per file.
    pub records: usize,
    pub layout: Layout,
}

impl Options {
    pub fn new(seed: u64, files: usize, records: usize) -> Options {
        Options {
            seed,
            files,
            records,
            layout: Layout::Flat,
        }
    }
}

/// What [`write_corpus_counted`] wrote.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// In file order (each file 5 minutes after the previous one).
    pub paths: Vec<PathBuf>,
    pub records: u64,
    pub json_bytes: u64,
    pub gzip_bytes: u64,
}

/// When the first file is delivered: 2025-04-30T16:00:00Z.
pub fn start_time() -> i64 {
    ids::unix(2025, 4, 30, 16, 0, 0)
}

/// Seconds between two files.
pub const FILE_STEP: i64 = 300;

/// Writes the corpus into `out` (created if missing) and returns the files' paths.
pub fn write_corpus(opts: &Options, out: &Path) -> io::Result<Vec<PathBuf>> {
    write_corpus_counted(opts, out).map(|s| s.paths)
}

/// [`write_corpus`], with the counts of what was written.
pub fn write_corpus_counted(opts: &Options, out: &Path) -> io::Result<Summary> {
    std::fs::create_dir_all(out)?;
    let world = World::new(stream(opts.seed, 0, 0));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(opts.files)
        .max(1);
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<io::Result<FileInfo>>>> =
        Mutex::new((0..opts.files).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= opts.files {
                        break;
                    }
                    let r = write_file(&world, opts, out, i);
                    let failed = r.is_err();
                    done.lock().unwrap()[i] = Some(r);
                    if failed {
                        // Let the other threads stop at their next file.
                        next.store(opts.files, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let mut summary = Summary::default();
    for r in done.into_inner().unwrap().into_iter().flatten() {
        let f = r?;
        summary.paths.push(f.path);
        summary.records += opts.records as u64;
        summary.json_bytes += f.json_bytes;
        summary.gzip_bytes += f.gzip_bytes;
    }
    Ok(summary)
}

struct FileInfo {
    path: PathBuf,
    json_bytes: u64,
    gzip_bytes: u64,
}

/// A seed for random stream `kind` (0 the world, 1 the files) number `index`:
/// SplitMix64's finaliser over the three, so nearby seeds give unrelated streams.
fn stream(seed: u64, kind: u64, index: u64) -> u64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    mix(mix(mix(seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(kind)).wrapping_add(index))
}

/// Counts what goes through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_file(world: &World, opts: &Options, out: &Path, index: usize) -> io::Result<FileInfo> {
    let mut rng = fastrand::Rng::with_seed(stream(opts.seed, 1, index as u64));
    let region = ids::pick(
        &mut rng,
        &[
            (70, REGIONS[0]),
            (8, REGIONS[1]),
            (8, REGIONS[2]),
            (8, REGIONS[3]),
            (6, REGIONS[4]),
        ],
    );
    let t0 = start_time() + FILE_STEP * index as i64;
    let name = format!(
        "{}_CloudTrail_{region}_{}_{}.json.gz",
        world.account,
        ids::compact(t0),
        ids::chars(&mut rng, ids::ALNUM, 16)
    );
    let dir = match opts.layout {
        Layout::Flat => out.to_path_buf(),
        Layout::S3 => out
            .join("AWSLogs")
            .join(&world.account)
            .join("CloudTrail")
            .join(region)
            .join(ids::date_path(t0)),
    };
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    let file = Counting {
        inner: BufWriter::with_capacity(1 << 16, File::create(&path)?),
        bytes: 0,
    };
    let mut gz = Counting {
        inner: GzBuilder::new().write(file, Compression::default()),
        bytes: 0,
    };
    let mut file_gen = Gen::new(world, rng.u64(..), region, t0);
    let mut buf = String::with_capacity(1 << 16);
    buf.push_str("{\"Records\":[");
    for i in 0..opts.records {
        if i > 0 {
            buf.push(',');
        }
        file_gen.next_record(&mut buf);
        if buf.len() >= 1 << 15 {
            gz.write_all(buf.as_bytes())?;
            buf.clear();
        }
    }
    buf.push_str("]}");
    gz.write_all(buf.as_bytes())?;
    let json_bytes = gz.bytes;
    let mut file = gz.inner.finish()?;
    file.flush()?;
    Ok(FileInfo {
        path,
        json_bytes,
        gzip_bytes: file.bytes,
    })
}
