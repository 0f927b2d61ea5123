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
