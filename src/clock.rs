//! Wall-clock readings, and event timestamps to and from RFC 3339 at
//! millisecond granularity (parsed by `jiff`: any UTC offset, `T` or a
//! space between date and time).

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;

/// Now, in microseconds since the Unix epoch: comparable across the
/// processes of one machine, for latency.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Now, in milliseconds since the Unix epoch: the live event-time clock.
pub fn now_millis() -> u64 {
    now_micros() / 1_000
}

/// Now, as `2026-11-24T07:30:50Z`.
pub fn now_rfc3339() -> String {
    format_millis((now_millis() / 1_000 * 1_000) as i64)
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC, with a fraction
/// only when the time has one: `1970-01-01T01:00:00Z`,
/// `2024-03-01T12:00:00.25Z`.
///
/// ```
/// use fraudflow::clock::format_millis;
/// assert_eq!(format_millis(3_600_000), "1970-01-01T01:00:00Z");
/// assert_eq!(format_millis(1_709_294_400_250), "2024-03-01T12:00:00.25Z");
/// ```
pub fn format_millis(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map_or_else(|_| format!("{ms} ms"), |t| t.to_string())
}

/// Parses an RFC 3339 / ISO-8601 time with a UTC offset into milliseconds
/// since the Unix epoch (finer fractions are cut to the millisecond).
///
/// ```
/// use fraudflow::clock::parse_millis;
/// assert_eq!(parse_millis("1970-01-01T00:00:00Z"), Some(0));
/// assert_eq!(parse_millis("2024-03-01T12:00:00.250+02:00"), Some(1_709_287_200_250));
/// assert_eq!(parse_millis("2024-03-01 10:00:00.250Z"), Some(1_709_287_200_250));
/// assert_eq!(parse_millis("2024-02-30T00:00:00Z"), None);
/// assert_eq!(parse_millis("2024-03-01T12:00:00"), None); // no offset
/// assert_eq!(parse_millis("yesterday"), None);
/// ```
pub fn parse_millis(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// Whether `text` is a well-formed date and time with an offset that
/// [`parse_millis`] refused only for its range (jiff's timestamps end at
/// 9999-12-30): a message should say so, not that it is malformed.
///
/// ```
/// use fraudflow::clock::is_beyond_range;
/// assert!(is_beyond_range("9999-12-31T23:59:59Z"));
/// assert!(!is_beyond_range("2024-03-01T12:00:00Z"));
/// assert!(!is_beyond_range("2024-03-01T12:00:00")); // no offset
/// assert!(!is_beyond_range("yesterday"));
/// ```
pub fn is_beyond_range(text: &str) -> bool {
    parse_millis(text).is_none()
        && jiff::fmt::temporal::Pieces::parse(text)
            .is_ok_and(|p| p.time().is_some() && p.offset().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_round_trip() {
        for ms in [0, 951_782_400_000, 1_709_287_200_250, 4_102_444_800_001] {
            assert_eq!(parse_millis(&format_millis(ms)), Some(ms));
        }
        assert_eq!(format_millis(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
