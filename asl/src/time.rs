//! Timestamps as Step Functions reads and prints them. Apart from the evaluator so that
//! Choice rules can compare timestamps without importing the evaluator.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

/// ISO 8601 with milliseconds, as Step Functions prints times.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 with a mandatory offset, as Wait's Timestamp requires.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .filter(|_| s.contains('T'))
        .map(|t| t.with_timezone(&Utc))
}

/// The instant `secs` seconds after `t`. One past the last instant a timestamp can
/// hold is that last instant: a deadline so far off never comes, and adding to a
/// timestamp must not panic on a number a client chose.
pub fn seconds_after(t: DateTime<Utc>, secs: f64) -> DateTime<Utc> {
    let ms = secs * 1000.0;
    let d = if ms.is_nan() {
        Some(Duration::zero())
    } else if ms.abs() < i64::MAX as f64 {
        Duration::try_milliseconds(ms as i64)
    } else {
        None
    };
    let end = if secs < 0.0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    };
    d.and_then(|d| t.checked_add_signed(d)).unwrap_or(end)
}
