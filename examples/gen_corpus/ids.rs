//! Random identifiers in the shapes AWS prints (access keys, request IDs, UUIDs,
//! opaque tokens), a weighted choice, and UTC time formatting.
//!
//! Time is kept as Unix seconds and formatted here with the civil-from-days
//! algorithm, so the generator needs no date crate and stays includable from any
//! target of the package.

use fastrand::Rng;

pub const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// The alphabet of access key IDs (`AKIA…`, `ASIA…`) and unique IDs (`AIDA…`).
pub const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const HEX: &[u8] = b"0123456789abcdef";
pub const DIGITS: &[u8] = b"0123456789";
pub const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// URL-safe base 64, as in S3 version IDs and Identity Center credential IDs.
pub const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._";

/// Appends `n` characters drawn from `alphabet`.
pub fn push_chars(out: &mut String, rng: &mut Rng, alphabet: &[u8], n: usize) {
    out.reserve(n);
    for _ in 0..n {
        out.push(alphabet[rng.usize(..alphabet.len())] as char);
    }
}

/// `n` characters drawn from `alphabet`.
pub fn chars(rng: &mut Rng, alphabet: &[u8], n: usize) -> String {
    let mut s = String::with_capacity(n);
    push_chars(&mut s, rng, alphabet, n);
    s
}

/// `prefix` followed by `n` characters of `alphabet` (`AKIA…`, `vpce-…`).
pub fn prefixed(rng: &mut Rng, prefix: &str, alphabet: &[u8], n: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + n);
    s.push_str(prefix);
    push_chars(&mut s, rng, alphabet, n);
    s
}

/// A random (version 4) UUID in its lower-case hyphenated form.
pub fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.u64(..), rng.u64(..));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// One value of `choices`, each drawn with its weight.
pub fn pick<T: Copy>(rng: &mut Rng, choices: &[(u32, T)]) -> T {
    let total: u32 = choices.iter().map(|c| c.0).sum();
    let mut x = rng.u32(..total);
    for &(w, v) in choices {
        if x < w {
            return v;
        }
        x -= w;
    }
    choices[choices.len() - 1].1
}

/// One element of a non-empty slice.
pub fn one<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

/// True with probability `p`.
pub fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.f64() < p
}

/// A log-normal draw (object sizes: most small, a long tail of large ones).
pub fn log_normal(rng: &mut Rng, mu: f64, sigma: f64) -> f64 {
    // Box-Muller; 1 - f64() is in (0, 1], so the logarithm is finite.
    let (u1, u2) = (1.0 - rng.f64(), rng.f64());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (mu + sigma * z).exp()
}

/// Seconds since the Unix epoch of a UTC date and time.
pub fn unix(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> i64 {
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss)
}

/// A UTC time broken down: year, month, day, hour, minute, second.
pub struct Civil {
    pub y: i64,
    pub m: u32,
    pub d: u32,
    pub hh: u32,
    pub mm: u32,
    pub ss: u32,
}

pub fn civil(t: i64) -> Civil {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    Civil {
        y: yoe + era * 400 + i64::from(m <= 2),
        m,
        d,
        hh: (secs / 3600) as u32,
        mm: (secs / 60 % 60) as u32,
        ss: (secs % 60) as u32,
    }
}

/// `2025-04-30T16:05:00Z`, CloudTrail's eventTime.
pub fn iso(t: i64) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.y, c.m, c.d, c.hh, c.mm, c.ss
    )
}

/// `20250430T1605Z`, the time in a log file's name.
pub fn compact(t: i64) -> String {
    let c = civil(t);
    format!("{:04}{:02}{:02}T{:02}{:02}Z", c.y, c.m, c.d, c.hh, c.mm)
}

/// `2025/04/30`, the date folders of the S3 layout.
pub fn date_path(t: i64) -> String {
    let c = civil(t);
    format!("{:04}/{:02}/{:02}", c.y, c.m, c.d)
}

/// `Apr 30, 2025, 5:05:00 PM`: how CloudTrail renders STS and IAM dates.
pub fn human(t: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(t);
    let h12 = match c.hh % 12 {
        0 => 12,
        h => h,
    };
    let ampm = if c.hh < 12 { "AM" } else { "PM" };
    format!(
        "{} {}, {}, {}:{:02}:{:02} {}",
        MONTHS[c.m as usize - 1],
        c.d,
        c.y,
        h12,
        c.mm,
        c.ss,
        ampm
    )
}
