//! Logs on stderr: text for a person (colours only at a terminal) or JSON lines for
//! a log group, at the level `TRAILWATCH_LOG` sets (default `info`).
//!
//! Text logs carry object keys, bucket names, message bodies and record text, all
//! chosen by the people we watch: every field value is written with its control
//! characters escaped, so a newline cannot forge a log line and an escape sequence
//! cannot reach the terminal. JSON logs escape them by JSON's rules.

use std::fmt::{self, Write};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// How log lines are written: for people (`text`) or for log pipelines (`json`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber; call once, first thing.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAILWATCH_LOG")
        .unwrap_or_else(|_| "info".into());
    // Colours only for a person at a terminal: in a file, a pipe or a log group
    // the escape codes are noise (and text logs are read back by tools).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.fmt_fields(EscapedFields).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The fields of an event or span as the default formatter writes them
/// (`message key=value ...`), each value with its control characters (C0, DEL,
/// C1), line and paragraph separators and bidirectional overrides written as
/// escapes: `\n`, `\u{1b}`. Values without them are written unchanged.
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = EscapingVisitor(DefaultVisitor::new(writer, true));
        fields.record(&mut v);
        v.0.finish()
    }
}

struct EscapingVisitor<'a>(DefaultVisitor<'a>);

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{}", ErrorChain(value)))
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.record_debug(field, &Escaped(value))
    }
}

/// An error and its sources, `error: source: source`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// `T` written (as `Debug` or `Display`) with control characters escaped.
pub struct Escaped<T>(pub T);

impl<T: fmt::Debug> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{:?}", self.0)
    }
}

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

/// Characters that can end a line, move the cursor, start a terminal escape
/// sequence or reorder what is shown.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while let Some(i) = s.find(needs_escape) {
            self.0.write_str(&s[..i])?;
            let c = s[i..].chars().next().expect("found at i");
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            s = &s[i + c.len_utf8()..];
        }
        self.0.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn control_characters_are_escaped() {
        let s = "a\nb\r\t\u{1b}[31m\u{7}\u{9b}\u{202e}é";
        assert_eq!(
            Escaped(s).to_string(),
            "a\\nb\\r\\t\\u{1b}[31m\\u{7}\\u{9b}\\u{202e}é"
        );
        assert_eq!(format!("{:?}", Escaped("k\n")), "\"k\\n\"");
        assert_eq!(Escaped("plain key=1").to_string(), "plain key=1");
    }
}
