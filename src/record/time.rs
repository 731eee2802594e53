//! `eventTime` to epoch milliseconds and back. Plain conversions, in a file of
//! their own because they serve beyond the event: the command line parses times
//! with them, alerts print times with them.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The wall clock in epoch milliseconds (0 before 1970, which no clock here is).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Parses an RFC 3339 timestamp (CloudTrail's `eventTime`) to epoch milliseconds.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Formats epoch milliseconds as RFC 3339 UTC, second precision (CloudTrail's form).
pub fn format_time_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}
