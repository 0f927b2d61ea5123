//! RFC 3339 times on the command line and in listings (UTC, nanoseconds internally).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("\"{s}\" is not an RFC 3339 time ({e}); example: 2026-11-22T06:41:00Z"))?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("\"{s}\" is out of range"))
}

pub fn format_ns(ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| {
            let t = t.replace_nanosecond((t.nanosecond() / 1_000_000) * 1_000_000).ok()?;
            t.format(&Rfc3339).ok()
        })
        .unwrap_or_else(|| format!("@{ns}ns"))
}

/// A length of time for people: `42 s`, `7 min 5 s`, `3 h 20 min`, `2 d 4 h`.
pub fn format_duration_s(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip() {
        let ns = parse_rfc3339("2026-11-22T06:41:00.250Z").unwrap();
        assert_eq!(format_ns(ns), "2026-11-22T06:41:00.25Z");
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
