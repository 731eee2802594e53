//! Alert output formats for `trailwatch scan` (and the worker's stdout/file sinks).

use std::borrow::Cow;
use std::fmt::Write as _;
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
    // Shown by `--help` as it is: plain words, no rustdoc links.
    /// One row per alert: event_time, event_name, bucket_name, object_key, user_arn,
    /// source_ip, rule_id, severity, actor_name and the other Athena-style columns.
    #[default]
    Alerts,
    /// The join of DeleteObjects alerts with S3 server access log lines: one row per
    /// deleted key, with who deleted it (from CloudTrail) and the key (from the log).
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

/// A CSV cell as written: safe to open in a spreadsheet (OWASP's advice on CSV
/// injection). Every column holds strings from the record (user agents, object
/// keys, error messages: attacker-chosen), so:
///
/// - a cell that starts with `=`, `+`, `-`, `@`, tab or CR, which a spreadsheet
///   would evaluate as a formula (`=HYPERLINK(...)`, `@SUM(...)`, DDE), gets a
///   leading `'`. So does a negative-looking value such as `-2`, and a lone
///   `-`: no column is a quantity (error codes are names, HTTP statuses are
///   never negative, an absent value is an empty cell, and an access log's `-`
///   placeholder is read as absent), so they stay text rather than being told
///   apart from `-2+3+cmd|...` by guesswork. Strip one leading `'` to get the
///   value back;
/// - a control character (C0, DEL, C1: ESC sequences, line breaks, NUL) becomes
///   a visible `\xNN` (its code point), so that a cell stays on its line and
///   cannot drive a terminal that shows the file.
///
/// Quoting (`,`, `"`) is the CSV writer's. The JSON lines output keeps every
/// string exactly. See docs/output-safety.md.
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if !formula && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    if formula {
        out.push('\'');
    }
    for c in s.chars() {
        if c.is_control() {
            // Every control character is below U+00A0: two hex digits.
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The `DeleteObjects` join as CSV; individual alerts are not written. Cells go
/// through [`csv_cell`].
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
            self.0
                .write_record(r.cells().iter().map(|c| csv_cell(c).into_owned()))?;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

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
/// Each cell is as [`csv_cell`] makes it (no formulas, no control characters).
pub fn csv_row(a: &Alert) -> [String; 18] {
    let o = |v: &Option<String>| v.as_deref().map(csv_cell).unwrap_or_default().into_owned();
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
        csv_cell(&a.rule_id).into_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::SourceRef;
    use crate::engine::Detection;
    use crate::join::{DeletedKey, JoinRow};
    use crate::record::Event;
    use crate::rules::{RuleSet, Strictness};

    const LINK: &str = "=HYPERLINK(\"http://evil\",\"x\")";

    /// An alert whose record carries a formula or a control character in every
    /// string column.
    fn hostile() -> Alert {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rules/s3-assumed-role-object-ops.toml");
        let rules = RuleSet::load(&dir, Strictness::Run).unwrap();
        let event = Event::from_value(serde_json::json!({
            "eventTime": "2024-11-05T10:02:31Z",
            "eventName": "GetObject", "eventSource": "s3.amazonaws.com",
            "awsRegion": "eu-west-1\u{1b}[2J",
            "userAgent": LINK,
            "sourceIPAddress": "@SUM(1)",
            "errorCode": "+1",
            "errorMessage": "-2",
            "eventID": "\tevent",
            "requestID": "\rrequest",
            "userIdentity": {"type": "AssumedRole",
                "principalId": "AROAX:j@x",
                "arn": "arn:aws:sts::1:assumed-role/AWSReservedSSO_A_0123456789abcdef/j@x"},
            "requestParameters": {"bucketName": "b", "key": LINK},
        }))
        .unwrap();
        let d = Detection::matched(0);
        Alert::new(&rules.rules[0], &d, &event, SourceRef::file("f", 0))
    }

    /// The cells of the first data row of `out`.
    fn first_row(out: &[u8]) -> (Vec<String>, Vec<String>) {
        let mut r = csv::Reader::from_reader(out);
        let head = r.headers().unwrap().iter().map(str::to_owned).collect();
        let row = r.records().next().unwrap().unwrap();
        (head, row.iter().map(str::to_owned).collect())
    }

    /// OWASP's CSV injection advice: a cell a spreadsheet would take for a formula
    /// (`=`, `+`, `-`, `@`, tab, CR first) starts with `'`; control characters
    /// are written as visible `\xNN` escapes; other cells are as they were.
    #[test]
    fn csv_cells_cannot_start_a_formula() {
        for (raw, want) in [
            (LINK, "'=HYPERLINK(\"http://evil\",\"x\")"),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(1)", "'@SUM(1)"),
            ("\tx", "'\\x09x"),
            ("\rx", "'\\x0dx"),
            ("a\u{1b}[31mb\nc\u{7f}\u{85}", "a\\x1b[31mb\\x0ac\\x7f\\x85"),
            ("a=b-c", "a=b-c"),
            (
                "2024/q4/forecast, draft.xlsx",
                "2024/q4/forecast, draft.xlsx",
            ),
            ("", ""),
        ] {
            assert_eq!(csv_cell(raw), want, "{raw:?}");
        }

        let mut out = Vec::new();
        let mut w = writer(Format::Csv, Columns::Alerts, &mut out).unwrap();
        w.write(&hostile()).unwrap();
        w.flush().unwrap();
        drop(w);
        assert!(
            !out.iter().any(|&b| b.is_ascii_control() && b != b'\n'),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        let (head, row) = first_row(&out);
        let cell = |c: &str| row[head.iter().position(|h| h == c).unwrap()].as_str();
        assert_eq!(cell("user_agent"), format!("'{LINK}"));
        assert_eq!(cell("object_key"), format!("'{LINK}"));
        assert_eq!(cell("source_ip"), "'@SUM(1)");
        assert_eq!(cell("error_code"), "'+1");
        assert_eq!(cell("error_message"), "'-2");
        assert_eq!(cell("event_id"), "'\\x09event");
        assert_eq!(cell("request_id"), "'\\x0drequest");
        assert_eq!(cell("aws_region"), "eu-west-1\\x1b[2J");
        assert_eq!(cell("event_time"), "2024-11-05T10:02:31Z");
        assert_eq!(cell("bucket_name"), "b");
    }

    /// The `DeleteObjects` join's rows are neutralised the same way: the deleted
    /// key and the access log's user agent come from the request.
    #[test]
    fn join_csv_cells_cannot_start_a_formula() {
        let key = DeletedKey {
            key: "-cmd|' /C calc'!A0".into(),
            http_status: Some(204),
            error_code: None,
            version_id: None,
            request_id: "r".into(),
            bucket: Some("b".into()),
            time: None,
            requester: Some("@evil".into()),
            remote_ip: Some("203.0.113.5".into()),
            user_agent: Some(format!("{LINK}\u{1b}")),
        };
        let mut out = Vec::new();
        let mut w = writer(Format::Csv, Columns::DeletedKeys, &mut out).unwrap();
        w.write_join(&[JoinRow {
            alert: None,
            key: Some(key),
        }])
        .unwrap();
        w.flush().unwrap();
        drop(w);
        let (head, row) = first_row(&out);
        let cell = |c: &str| row[head.iter().position(|h| h == c).unwrap()].as_str();
        assert_eq!(cell("object_key"), "'-cmd|' /C calc'!A0");
        assert_eq!(cell("user_arn"), "'@evil");
        assert_eq!(cell("user_agent"), format!("'{LINK}\\x1b"));
        assert_eq!(cell("httpstatus"), "204");
    }
}
