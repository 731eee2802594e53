//! `gen_corpus`: writes a deterministic, realistic CloudTrail corpus (see
//! `generator.rs`) for the tests, the benchmarks and `scripts/bench`.
//!
//! ```text
//! cargo run --release --example gen_corpus -- --seed 1 --files 20 --records 10000 --out DIR [--layout flat|s3] [--quiet]
//! ```

// `write_corpus` and `Options::new` are the tests' and benches' API.
#[allow(dead_code)]
mod generator;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};

use generator::{Layout, Options};

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    /// Files directly in --out.
    Flat,
    /// AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/ under --out.
    S3,
}

/// Writes gzip CloudTrail log files of synthetic but realistic records; the same
/// arguments always give the same bytes.
#[derive(Parser)]
#[command(name = "gen_corpus")]
struct Args {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of log files.
    #[arg(long, default_value_t = 20)]
    files: usize,
    /// Records per file.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "flat")]
    layout: LayoutArg,
    /// No summary on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = Options {
        seed: args.seed,
        files: args.files,
        records: args.records,
        layout: match args.layout {
            LayoutArg::Flat => Layout::Flat,
            LayoutArg::S3 => Layout::S3,
        },
    };
    let started = Instant::now();
    match generator::write_corpus_counted(&opts, &args.out) {
        Ok(s) => {
            if !args.quiet {
                eprintln!(
                    "gen_corpus: {} files, {} records, {} bytes of gzip, {} bytes of JSON ({:.0} bytes per record) in {:.2?}",
                    s.paths.len(),
                    s.records,
                    s.gzip_bytes,
                    s.json_bytes,
                    s.json_bytes as f64 / s.records.max(1) as f64,
                    started.elapsed()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_corpus: {}: {e}", args.out.display());
            ExitCode::FAILURE
        }
    }
}
