//! Alert output formats for `trailwatch scan` (and the worker's stdout/file sinks).

use std::io::{self, Write};

use crate::alert::{Alert, AlertRef};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per alert per line.
    Jsonl,
    /// The Athena-style columns, one row per alert.
    Csv,
}

/// The CSV columns, in order. The first twelve are the classic Athena query over
/// CloudTrail S3 data events.
pub const CSV_COLUMNS: [&str; 18] = [
    "event_time",
    "event_name",
    "aws_region",
    "bucket_name",
    "object_key",
    "user_id",
    "user_arn",
    "source_ip",
    "user_agent",
    "access_denied",
    "error_code",
    "error_message",
    "rule_id",
    "severity",
    "actor_kind",
    "actor_name",
    "event_id",
    "request_id",
];

/// `--columns` for CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Columns {
    /// One row per alert, [`CSV_COLUMNS`].
    #[default]
    Alerts,
    /// The join of `DeleteObjects` alerts with S3 access log lines: one row per
    /// deleted key, [`crate::join::JOIN_COLUMNS`].
    DeletedKeys,
}

/// Writes alerts in one format.
pub trait AlertWriter {
    fn write(&mut self, alert: &Alert) -> io::Result<()>;
    /// For a writer whose output is each alert rendered on its own, the rendering
    /// (so that reader threads can do it, and [`AlertWriter::write_rendered`] only
    /// copies bytes); `None` for the others.
    fn renderer(&self) -> Option<fn(&AlertRef<'_>, &mut Vec<u8>)> {
        None
    }
    /// Writes alerts that [`AlertWriter::renderer`] rendered.
    fn write_rendered(&mut self, _bytes: &[u8]) -> io::Result<()> {
        Err(io::Error::other("this output renders its own alerts"))
    }
    /// Writes the `DeleteObjects` join, for writers that show it as rows.
    fn write_join(&mut self, _rows: &[crate::join::JoinRow]) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()>;
}

pub fn writer<'w, W: Write + 'w>(
    format: Format,
    columns: Columns,
    out: W,
) -> io::Result<Box<dyn AlertWriter + 'w>> {
    Ok(match (format, columns) {
        (Format::Jsonl, _) => Box::new(Jsonl::new(out)),
        (Format::Csv, Columns::Alerts) => Box::new(Csv::new(out)?),
        (Format::Csv, Columns::DeletedKeys) => Box::new(JoinCsv::new(out)?),
    })
}

/// The `DeleteObjects` join as CSV; individual alerts are not written.
pub struct JoinCsv<W: Write>(csv::Writer<W>);

impl<W: Write> JoinCsv<W> {
    pub fn new(out: W) -> io::Result<Self> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(out);
        w.write_record(crate::join::JOIN_COLUMNS)?;
        Ok(JoinCsv(w))
    }
}

impl<W: Write> AlertWriter for JoinCsv<W> {
    fn write(&mut self, _alert: &Alert) -> io::Result<()> {
        Ok(())
    }
    fn write_join(&mut self, rows: &[crate::join::JoinRow]) -> io::Result<()> {
        for r in rows {
            self.0.write_record(r.cells())?;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

pub mod json;

pub struct Jsonl<W> {
    out: W,
    /// The line being written, kept between alerts.
    line: Vec<u8>,
}

impl<W> Jsonl<W> {
    pub fn new(out: W) -> Jsonl<W> {
        Jsonl {
            out,
            line: Vec::with_capacity(8 * 1024),
        }
    }
}

/// One alert as a JSON line.
fn json_line(alert: &AlertRef<'_>, out: &mut Vec<u8>) {
    alert.write_json(out);
    out.push(b'\n');
}

impl<W: Write> AlertWriter for Jsonl<W> {
    fn write(&mut self, alert: &Alert) -> io::Result<()> {
        self.line.clear();
        json_line(&alert.view(), &mut self.line);
        self.out.write_all(&self.line)
    }
    fn renderer(&self) -> Option<fn(&AlertRef<'_>, &mut Vec<u8>)> {
        Some(json_line)
    }
    fn write_rendered(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

pub struct Csv<W: Write>(csv::Writer<W>);

impl<W: Write> Csv<W> {
    pub fn new(out: W) -> io::Result<Self> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(out);
        w.write_record(CSV_COLUMNS)?;
        Ok(Csv(w))
    }
}

/// One CSV row for an alert, in [`CSV_COLUMNS`] order; absent values are empty.
pub fn csv_row(a: &Alert) -> [String; 18] {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        o(&a.event.event_time),
        o(&a.event.event_name),
        o(&a.event.aws_region),
        o(&a.s3.bucket),
        o(&a.s3.key),
        o(&a.actor.principal_id),
        o(&a.actor.arn),
        o(&a.event.source_ip_address),
        o(&a.event.user_agent),
        if a.event.error_code.as_deref() == Some("AccessDenied") {
            "Yes"
        } else {
            "No"
        }
        .to_owned(),
        o(&a.event.error_code),
        o(&a.event.error_message),
        a.rule_id.clone(),
        a.severity.as_str().to_owned(),
        a.actor.kind.as_str().to_owned(),
        o(&a.actor.name),
        o(&a.event.event_id),
        o(&a.event.request_id),
    ]
}

impl<W: Write> AlertWriter for Csv<W> {
    fn write(&mut self, alert: &Alert) -> io::Result<()> {
        self.0.write_record(csv_row(alert))?;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
