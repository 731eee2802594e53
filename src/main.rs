//! The `trailwatch` binary: parse arguments, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use trailwatch::cli::{self, Cli};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // With transparent huge pages on ("always", as on many hosts), the allocator's
    // memory is faulted in 2 MiB at a time, each huge page zeroed by the kernel as
    // it comes in: peak RSS is half as much again (a scan with two threads went
    // over 100 MiB one run in eight) and the zeroing eats what larger pages save
    // on page-table walks. Off, the memory follows what is used; speed is the same
    // within a few percent. Should the call fail (kernels before 3.15, a seccomp
    // filter), nothing changes but the memory.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    trailwatch::logging::init(cli.log_format);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (`trailwatch scan ... | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(cli::EXIT_OK);
            }
            eprintln!(
                "error: {}",
                trailwatch::logging::Escaped(format_args!("{e:#}"))
            );
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
