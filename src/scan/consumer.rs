//! The ordered half of a scan: each file's turn at the stateful step, in input
//! order, with the alerts to the output and the counts to the summary.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;

use super::Summary;
use crate::alert::Alert;
use crate::evaluate::{Emit, FileTurn, Prepared, Renderer};
use crate::input::{self, Position};
// Diagnostics name files and keys from outside: written escaped, like the logs.
use crate::logging::Escaped;
use crate::output::AlertWriter;
use crate::record::RecordError;
use crate::rules::Rule;
use crate::state::Memory;

/// Fed one file after another in input order (by the calling thread, or by the
/// reader threads of [`super::read_ahead`]).
pub(super) struct Consumer<'a> {
    pub(super) state: Memory,
    pub(super) summary: Summary,
    /// The first error writing alerts; the scan stops at the end of the file.
    write_err: Option<std::io::Error>,
    bar: Option<&'a indicatif::ProgressBar>,
    started: Instant,
}

/// The output side of a file's turn.
struct Output<'a> {
    summary: &'a mut Summary,
    out: &'a mut dyn AlertWriter,
    write_err: &'a mut Option<std::io::Error>,
    diag: &'a mut dyn Write,
    name: &'a str,
}

impl Output<'_> {
    /// Writes to the output unless an earlier write failed; the first error is
    /// kept for the end of the file.
    fn emit(&mut self, write: impl FnOnce(&mut dyn AlertWriter) -> std::io::Result<()>) {
        if self.write_err.is_none()
            && let Err(e) = write(self.out)
        {
            *self.write_err = Some(e);
        }
    }
}

impl Emit for Output<'_> {
    fn fired(&mut self, rule: &Rule) {
        let s = &mut *self.summary;
        s.alerts += 1;
        match s.alerts_by_rule.get_mut(&rule.id) {
            Some(n) => *n += 1,
            None => {
                s.alerts_by_rule.insert(rule.id.clone(), 1);
            }
        }
        s.alerts_by_severity[rule.severity as usize] += 1;
        s.max_severity = s.max_severity.max(Some(rule.severity));
    }

    fn alert(&mut self, alert: Alert) {
        self.emit(|out| out.write(&alert));
    }

    fn rendered(&mut self, bytes: &[u8]) {
        self.emit(|out| out.write_rendered(bytes));
    }

    fn bad_record(&mut self, position: Position, error: &RecordError) {
        let line = format_args!("trailwatch: {}: {position}: {error}", self.name);
        let _ = writeln!(self.diag, "{}", Escaped(line));
    }
}

/// One file, from its first record to its end.
pub(super) struct File<'c> {
    turn: FileTurn<'c>,
    name: &'c str,
}

impl<'a> Consumer<'a> {
    pub(super) fn new(
        state: Memory,
        summary: Summary,
        bar: Option<&'a indicatif::ProgressBar>,
        started: Instant,
    ) -> Consumer<'a> {
        Consumer {
            state,
            summary,
            write_err: None,
            bar,
            started,
        }
    }

    pub(super) fn open_failed(&mut self, msg: &str, diag: &mut dyn Write) -> std::io::Result<()> {
        self.summary.files += 1;
        self.summary.files_failed += 1;
        writeln!(diag, "{}", Escaped(msg))
    }

    /// A file's turn begins.
    pub(super) fn begin<'c>(
        &mut self,
        engine: &'c crate::engine::Engine,
        render: Option<Renderer>,
        source: &'c dyn Fn(u64) -> crate::alert::SourceRef,
        name: &'c str,
    ) -> File<'c> {
        File {
            turn: FileTurn::begin(engine, render, source),
            name,
        }
    }

    /// The file's next record.
    pub(super) fn take(
        &mut self,
        file: &mut File<'_>,
        p: Prepared,
        out: &mut dyn AlertWriter,
        diag: &mut dyn Write,
    ) {
        let mut output = Output {
            summary: &mut self.summary,
            out,
            write_err: &mut self.write_err,
            diag,
            name: file.name,
        };
        file.turn.take(p, &self.state, &mut output);
    }

    /// The end of a file: its counts or the error that stopped it.
    pub(super) fn end_file(
        &mut self,
        file: File<'_>,
        result: Result<input::StreamStats, input::StreamError>,
        out: &mut dyn AlertWriter,
        diag: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let name = file.name;
        let mut output = Output {
            summary: &mut self.summary,
            out,
            write_err: &mut self.write_err,
            diag,
            name,
        };
        let read_to_end = result.is_ok();
        let counts = file
            .turn
            .finish(
                name,
                read_to_end,
                true,
                &mut self.state,
                &mut output,
                now_ms(),
            )
            .expect("state in memory always answers");
        let s = &mut self.summary;
        s.files += 1;
        s.filtered += counts.filtered;
        if let Some(e) = self.write_err.take() {
            return Err(e).context("writing alerts");
        }
        if counts.hidden_errors > 0 {
            writeln!(
                diag,
                "trailwatch: {}: {} more record errors not shown",
                Escaped(name),
                counts.hidden_errors
            )?;
        }
        match result {
            Ok(stats) => {
                s.records += stats.records;
                s.record_errors += stats.record_errors;
                s.bytes += stats.bytes;
            }
            Err(e) => {
                s.records += e.stats.records;
                s.record_errors += e.stats.record_errors;
                s.bytes += e.stats.bytes;
                s.files_failed += 1;
                writeln!(diag, "{}", Escaped(format_args!("trailwatch: {name}: {e}")))?;
            }
        }
        if let Some(b) = self.bar {
            b.inc(1);
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!(
                "{} records, {:.0} events/s",
                s.records,
                s.records as f64 / secs
            ));
        }
        Ok(())
    }
}

/// The wall clock, for the join's waiting times (a scan holds to its end, so
/// they only order entries).
fn now_ms() -> u64 {
    crate::record::now_ms() as u64
}
