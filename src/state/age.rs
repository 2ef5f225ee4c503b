//! Time helpers of the state store: unix-second clock and human-readable ages.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix seconds (the unit of every time column).
pub fn now_unix() -> i64 {
    now_unix_ms().div_euclid(1000)
}

/// Now, in unix milliseconds (only used to round lease expiry up, never stored).
pub(crate) fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is broken; treat it as the epoch rather than panicking.
        Err(_) => 0,
    }
}

/// Formats a duration in seconds the way operators read it in `nodepool list`: the two most
/// significant units, the second zero-padded: `42s`, `3m`, `2h 05m`, `4d 03h`.
/// Negative durations (clock skew between writer and reader) show as `0s`.
pub fn format_age(seconds: i64) -> String {
    let s = seconds.max(0);
    const MIN: i64 = 60;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    if s < MIN {
        format!("{s}s")
    } else if s < HOUR {
        format!("{}m", s / MIN)
    } else if s < DAY {
        format!("{}h {:02}m", s / HOUR, (s % HOUR) / MIN)
    } else {
        format!("{}d {:02}h", s / DAY, (s % DAY) / HOUR)
    }
}

/// The age of a stored timestamp (unix seconds) relative to `now`, formatted by [`format_age`].
pub fn age_since(then: i64, now: i64) -> String {
    format_age(now.saturating_sub(then))
}

/// A timestamp for messages: RFC 3339 in UTC plus its age, e.g. `2024-05-01T10:00:00Z (3m ago)`.
pub fn describe_time(unix: i64) -> String {
    let when = chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("@{unix}"));
    let now = now_unix();
    if unix <= now {
        format!("{when} ({} ago)", format_age(now - unix))
    } else {
        format!("{when} (in {})", format_age(unix - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_minutes_hours_days() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(60), "1m");
        assert_eq!(format_age(3 * 60 + 59), "3m");
        assert_eq!(format_age(3599), "59m");
        assert_eq!(format_age(3600), "1h 00m");
        assert_eq!(format_age(2 * 3600 + 5 * 60 + 7), "2h 05m");
        assert_eq!(format_age(86_399), "23h 59m");
        assert_eq!(format_age(86_400), "1d 00h");
        assert_eq!(format_age(4 * 86_400 + 3 * 3600 + 59 * 60), "4d 03h");
        assert_eq!(format_age(400 * 86_400), "400d 00h");
    }

    #[test]
    fn negative_is_zero() {
        assert_eq!(format_age(-5), "0s");
        assert_eq!(age_since(100, 90), "0s");
        assert_eq!(age_since(100, 220), "2m");
    }

    #[test]
    fn describe_time_is_utc_with_age() {
        let past = now_unix() - 180;
        let text = describe_time(past);
        assert!(text.ends_with("(3m ago)"), "{text}");
        assert!(text.contains('T') && text.contains('Z'), "{text}");
        assert!(describe_time(now_unix() + 7200).contains("(in "));
    }
}
