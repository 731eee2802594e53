//! S3 server access logs: one request per line, space-separated fields, `[...]` time,
//! `"..."` quoted fields, `-` for absent. Parsed into a JSON object whose keys are the
//! field names AWS documents, so rules with `log_type = "s3_access"` address them
//! like CloudTrail fields. Fields AWS appends in the future are kept, never fatal.
//!
//! The lines are written by the requesters (keys, URIs, user agents, referers), so
//! a line is refused beyond [`MAX_LINE_BYTES`] as it is read, and beyond
//! [`MAX_FIELDS`] fields as it is split: no line holds more memory than that.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// The documented fields, in order.
pub const FIELDS: [&str; 27] = [
    "bucket_owner",
    "bucket",
    "time",
    "remote_ip",
    "requester",
    "request_id",
    "operation",
    "key",
    "request_uri",
    "http_status",
    "error_code",
    "bytes_sent",
    "object_size",
    "total_time",
    "turn_around_time",
    "referer",
    "user_agent",
    "version_id",
    "host_id",
    "signature_version",
    "cipher_suite",
    "authentication_type",
    "host_header",
    "tls_version",
    "access_point_arn",
    "acl_required",
    "source_region",
];

/// Fields that are numbers when present.
const NUMERIC: [&str; 5] = [
    "http_status",
    "bytes_sent",
    "object_size",
    "total_time",
    "turn_around_time",
];

/// Lines must have at least the fields up to `http_status`.
const MIN_FIELDS: usize = 10;

/// The longest line read, newline included. Real lines stay under about 10 KiB: the
/// longest fields are the key (at most 1 KiB, up to 3 KiB percent-encoded, and
/// again in the request URI), the user agent and the referer. A longer line is
/// skipped as it is read, and fails alone.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The most fields a line may have: AWS documents 27 (see [`FIELDS`]) and appends
/// one now and then; more than this is not an access log line.
pub const MAX_FIELDS: usize = 64;

/// Why a line of `size` bytes was refused.
pub fn too_long(size: u64) -> String {
    format!("line is {size} bytes, over the cap of {MAX_LINE_BYTES} bytes for an access log line")
}

/// Splits a line into fields: bare tokens, `[bracketed]` and `"quoted"` ones.
fn tokens(line: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::with_capacity(28);
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if out.len() == MAX_FIELDS {
            return Err(format!(
                "more than {MAX_FIELDS} fields (at column {})",
                i + 1
            ));
        }
        let (start, end, next) = match b[i] {
            b'[' => {
                let close = line[i..]
                    .find(']')
                    .ok_or_else(|| format!("unclosed `[` at column {}", i + 1))?;
                (i + 1, i + close, i + close + 1)
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    return Err(format!("unclosed `\"` at column {}", i + 1));
                }
                (i + 1, j, j + 1)
            }
            _ => {
                let end = line[i..].find(' ').map_or(b.len(), |k| i + k);
                (i, end, end)
            }
        };
        out.push(&line[start..end]);
        i = next;
    }
    Ok(out)
}

/// `06/Feb/2019:00:00:38 +0000` → epoch milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let fmt = format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(s, &fmt)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Parses one log line into its fields. Also sets `eventTime` (RFC 3339, for
/// thresholds and output) and `key_decoded` (the key with `%XX` escapes decoded).
pub fn parse_line(line: &str) -> Result<Map<String, Value>, String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(too_long(line.len() as u64));
    }
    let toks = tokens(line.trim_end_matches(['\r', '\n']))?;
    if toks.len() < MIN_FIELDS {
        return Err(format!(
            "{} fields, expected at least {MIN_FIELDS} (bucket owner, bucket, [time], remote IP, requester, request ID, operation, key, \"request URI\", HTTP status)",
            toks.len()
        ));
    }
    let mut m = Map::new();
    for (i, t) in toks.iter().enumerate() {
        let Some(name) = FIELDS.get(i) else { break };
        let v = if *t == "-" || t.is_empty() {
            Value::Null
        } else if NUMERIC.contains(name) {
            match t.parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => return Err(format!("{name} is `{t}`, not a number")),
            }
        } else {
            Value::String((*t).to_owned())
        };
        m.insert((*name).to_owned(), v);
    }
    if toks.len() > FIELDS.len() {
        let extra = toks[FIELDS.len()..]
            .iter()
            .map(|t| Value::String((*t).to_owned()))
            .collect();
        m.insert("extra_fields".to_owned(), Value::Array(extra));
    }
    let time = toks[2];
    let ms = parse_time(time)
        .ok_or_else(|| format!("time `[{time}]` is not like [06/Feb/2019:00:00:38 +0000]"))?;
    let rfc = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    m.insert("eventTime".to_owned(), Value::String(rfc));
    if let Some(Value::String(k)) = m.get("key") {
        let decoded = percent_decode_str(k).decode_utf8_lossy().into_owned();
        m.insert("key_decoded".to_owned(), Value::String(decoded));
    }
    Ok(m)
}

/// Whether a line looks like an access log record: a canonical-ID-or-name token,
/// a bucket, then a `[time]`.
pub fn looks_like_access_log(line: &str) -> bool {
    let mut parts = line.splitn(3, ' ');
    let (Some(owner), Some(bucket), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !owner.is_empty()
        && !owner.starts_with(['{', '['])
        && !bucket.is_empty()
        && rest.starts_with('[')
        && rest
            .find(']')
            .is_some_and(|end| parse_time(&rest[1..end]).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be amzn-s3-demo-bucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE REST.GET.VERSIONING - "GET /amzn-s3-demo-bucket1?versioning HTTP/1.1" 200 - 113 - 7 - "-" "S3Console/0.4" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com TLSV1.2 arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP Yes us-east-1"#;

    #[test]
    fn documented_example_line() {
        let m = parse_line(SAMPLE).unwrap();
        assert_eq!(m["bucket"], "amzn-s3-demo-bucket1");
        assert_eq!(m["remote_ip"], "192.0.2.3");
        assert_eq!(m["operation"], "REST.GET.VERSIONING");
        assert_eq!(m["key"], Value::Null);
        assert_eq!(
            m["request_uri"],
            "GET /amzn-s3-demo-bucket1?versioning HTTP/1.1"
        );
        assert_eq!(m["http_status"], 200);
        assert_eq!(m["error_code"], Value::Null);
        assert_eq!(m["bytes_sent"], 113);
        assert_eq!(m["total_time"], 7);
        assert_eq!(m["referer"], Value::Null);
        assert_eq!(m["user_agent"], "S3Console/0.4");
        assert_eq!(m["tls_version"], "TLSV1.2");
        assert_eq!(m["acl_required"], "Yes");
        assert_eq!(m["source_region"], "us-east-1");
        assert_eq!(m["eventTime"], "2019-02-06T00:00:38Z");
        assert!(looks_like_access_log(SAMPLE));
    }

    #[test]
    fn batch_delete_lines_with_encoded_keys_and_extra_fields() {
        let line = r#"owner bkt [05/Nov/2024:10:09:03 +0000] 198.51.100.24 arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_S3DataAdmins_0a1b2c3d4e5f6789/jane.doe@example.com Q7W3E9R1T5Y2U8I4 BATCH.DELETE.OBJECT 2024/q4/forecast%2C%20draft.xlsx - 204 - - 30511 - - - - - hostid SigV4 TLS_AES_128_GCM_SHA256 AuthHeader bkt.s3.eu-west-1.amazonaws.com TLSv1.3 - - eu-west-1 future1 "future two""#;
        let m = parse_line(line).unwrap();
        assert_eq!(m["operation"], "BATCH.DELETE.OBJECT");
        assert_eq!(m["key"], "2024/q4/forecast%2C%20draft.xlsx");
        assert_eq!(m["key_decoded"], "2024/q4/forecast, draft.xlsx");
        assert_eq!(m["http_status"], 204);
        assert_eq!(m["request_uri"], Value::Null);
        assert_eq!(
            m["extra_fields"],
            serde_json::json!(["future1", "future two"])
        );
        assert_eq!(m["eventTime"], "2024-11-05T10:09:03Z");
    }

    #[test]
    fn older_shorter_lines_parse() {
        let line = r#"owner bkt [06/Feb/2019:00:00:38 -0700] 192.0.2.3 - 3E57 WEBSITE.GET.OBJECT index.html "GET /index.html HTTP/1.1" 403 AccessDenied"#;
        let m = parse_line(line).unwrap();
        assert_eq!(m["requester"], Value::Null);
        assert_eq!(m["error_code"], "AccessDenied");
        assert_eq!(m["eventTime"], "2019-02-06T07:00:38Z", "converted to UTC");
        assert!(!m.contains_key("user_agent"));
    }

    #[test]
    fn malformed_lines_say_why() {
        let cases = [
            (
                "owner bkt [06/Feb/2019:00:00:38 +0000 1.2.3.4",
                "unclosed `[`",
            ),
            (
                "owner bkt [06/Feb/2019:00:00:38 +0000] 1.2.3.4 - id OP key \"GET / HTTP/1.1",
                "unclosed `\"`",
            ),
            (
                "owner bkt [06/Feb/2019:00:00:38 +0000] 1.2.3.4",
                "4 fields, expected at least 10",
            ),
            (
                "owner bkt [yesterday] ip r id OP k \"u\" 200",
                "time `[yesterday]`",
            ),
            (
                "owner bkt [06/Feb/2019:00:00:38 +0000] ip r id OP k \"u\" OK",
                "http_status is `OK`",
            ),
        ];
        for (line, want) in cases {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
        assert!(!looks_like_access_log("{\"Records\":[]}"));
        assert!(!looks_like_access_log("hello world"));
    }

    #[test]
    fn lines_and_fields_are_capped() {
        // AWS's fields plus a few it may append parse; a line of many more does not.
        let line = |extra: usize| format!("{SAMPLE}{}", " future".repeat(extra));
        let m = parse_line(&line(MAX_FIELDS - FIELDS.len())).unwrap();
        assert_eq!(m["extra_fields"].as_array().unwrap().len(), 37);
        let e = parse_line(&line(MAX_FIELDS - FIELDS.len() + 1)).unwrap_err();
        assert!(e.starts_with("more than 64 fields (at column"), "{e}");
        // However few its fields, a line over the cap is refused.
        let long = format!("{SAMPLE} \"{}\"", "x".repeat(MAX_LINE_BYTES));
        let e = parse_line(&long).unwrap_err();
        assert_eq!(
            e,
            format!(
                "line is {} bytes, over the cap of 65536 bytes for an access log line",
                long.len()
            )
        );
    }
}
