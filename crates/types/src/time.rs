//! Event time on the wire: RFC 3339 text or integer epoch milliseconds, both
//! accepted everywhere, stored as `TIMESTAMP(ms, UTC)`; and the bounds a
//! source holds times to ([`TimeBounds`]), so that one record in the wrong
//! unit cannot move a watermark to the year 55,000.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serializer, de};

use crate::source::DeadLetterKind;

/// Why a value is not a valid event time.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TimeError {
    /// Text that is not RFC 3339 (e.g. `2026-11-11T10:00:00Z`).
    #[error(
        "'{0}' is not an RFC 3339 time (e.g. 2026-11-11T10:00:00Z) or epoch milliseconds (e.g. 1794391200000)"
    )]
    Text(String),
    /// Epoch milliseconds outside the range chrono can represent.
    #[error("{0} epoch milliseconds is out of range")]
    OutOfRange(i64),
}

/// Parses RFC 3339 text, truncating to milliseconds.
pub fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, TimeError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| truncate_ms(t.with_timezone(&Utc)))
        .map_err(|_| TimeError::Text(text.to_owned()))
}

/// Converts epoch milliseconds.
pub fn from_epoch_ms(ms: i64) -> Result<DateTime<Utc>, TimeError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or(TimeError::OutOfRange(ms))
}

fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    from_epoch_ms(t.timestamp_millis()).unwrap_or(t)
}

/// Formats as RFC 3339 with millisecond precision and a `Z` suffix.
pub fn format_rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serializes as RFC 3339 text; use with `#[serde(serialize_with = "...")]`.
pub fn serialize_rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(t))
}

/// Serializes as integer epoch milliseconds.
pub fn serialize_epoch_ms<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(t.timestamp_millis())
}

/// Deserializes RFC 3339 text or integer epoch milliseconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire<'a> {
        Millis(i64),
        #[serde(borrow)]
        Text(std::borrow::Cow<'a, str>),
    }
    match Wire::deserialize(d)
        .map_err(|_| de::Error::custom("expected RFC 3339 text or integer epoch milliseconds"))?
    {
        Wire::Millis(ms) => from_epoch_ms(ms).map_err(de::Error::custom),
        Wire::Text(text) => parse_rfc3339(&text).map_err(de::Error::custom),
    }
}

/// 2000-01-01T00:00:00Z in epoch milliseconds: the default earliest time.
pub const DEFAULT_MIN_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z in epoch milliseconds: the default end of the range (exclusive).
pub const DEFAULT_MAX_MS: i64 = 4_102_444_800_000;
/// One day: how far ahead of the wall clock an `event_time` may be by default.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: i64 = 86_400_000;
/// 0001-01-01T00:00:00Z: the earliest bound [`TimeBounds::validate`] allows.
pub const EARLIEST_BOUND_MS: i64 = -62_135_596_800_000;
/// 10000-01-01T00:00:00Z: the latest bound [`TimeBounds::validate`] allows
/// (the range is exclusive, so times up to the end of year 9999).
pub const LATEST_BOUND_MS: i64 = 253_402_300_800_000;

/// The times a source accepts. Every time field must lie in
/// `min_ms..max_ms`; `event_time` must also be at most `max_future_skew_ms`
/// ahead of the wall clock. Times in the past are never refused for being
/// old: replays of history stay possible. A refused record becomes a dead
/// letter ([`TimeRefusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// Earliest time accepted, epoch ms, inclusive.
    pub min_ms: i64,
    /// End of the accepted range, epoch ms, exclusive.
    pub max_ms: i64,
    /// How far (ms) an `event_time` may be ahead of the wall clock; `None`
    /// turns the check off (the range still applies).
    pub max_future_skew_ms: Option<i64>,
}

impl Default for TimeBounds {
    /// 2000-01-01T00:00:00Z (inclusive) to 2100-01-01T00:00:00Z (exclusive),
    /// `event_time` at most a day ahead of the wall clock.
    fn default() -> TimeBounds {
        TimeBounds {
            min_ms: DEFAULT_MIN_MS,
            max_ms: DEFAULT_MAX_MS,
            max_future_skew_ms: Some(DEFAULT_MAX_FUTURE_SKEW_MS),
        }
    }
}

impl TimeBounds {
    /// Checks that the range is not empty, lies within years 1 to 9999, and
    /// that the skew is not negative; the error names the bound and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        for (name, ms) in [("min_ms", self.min_ms), ("max_ms", self.max_ms)] {
            if !(EARLIEST_BOUND_MS..=LATEST_BOUND_MS).contains(&ms) || from_epoch_ms(ms).is_err() {
                return Err(format!(
                    "time bounds: {name} = {ms} is outside the years 1 to 9999 (epoch milliseconds {EARLIEST_BOUND_MS}..={LATEST_BOUND_MS}); give epoch milliseconds, e.g. {DEFAULT_MIN_MS} for 2000-01-01T00:00:00Z"
                ));
            }
        }
        if self.min_ms >= self.max_ms {
            return Err(format!(
                "time bounds: min_ms ({}, {}) must be before max_ms ({}, {}), which is exclusive",
                self.min_ms,
                bound_text(self.min_ms),
                self.max_ms,
                bound_text(self.max_ms)
            ));
        }
        if let Some(skew) = self.max_future_skew_ms
            && skew < 0
        {
            return Err(format!(
                "time bounds: max_future_skew_ms must be 0 or more (e.g. {DEFAULT_MAX_FUTURE_SKEW_MS} for a day), got {skew}; leave it out (None) to turn the check off"
            ));
        }
        Ok(())
    }

    /// The range as text, e.g. `2000-01-01T00:00:00Z..2100-01-01T00:00:00Z`.
    pub fn range_text(&self) -> String {
        format!("{}..{}", bound_text(self.min_ms), bound_text(self.max_ms))
    }

    /// Whether `ms` lies in the range (any time field).
    #[inline]
    pub fn check(&self, ms: i64) -> Result<(), TimeRefusal> {
        if ms < self.min_ms || ms >= self.max_ms {
            return Err(TimeRefusal::OutOfRange {
                ms,
                min_ms: self.min_ms,
                max_ms: self.max_ms,
            });
        }
        Ok(())
    }

    /// Whether `ms` is an acceptable `event_time` with the wall clock at
    /// `now_ms`: in the range, and not more than the skew ahead of the clock.
    #[inline]
    pub fn check_event_time(&self, ms: i64, now_ms: i64) -> Result<(), TimeRefusal> {
        self.check(ms)?;
        match self.max_future_skew_ms {
            Some(skew) if ms > now_ms.saturating_add(skew) => Err(TimeRefusal::Future {
                ms,
                now_ms,
                max_skew_ms: skew,
            }),
            _ => Ok(()),
        }
    }

    /// The exclusive upper end for `event_time` with the wall clock at
    /// `now_ms`: the range's end or the skew's, whichever is earlier. With
    /// it, `min_ms <= ms && ms < end` is exactly [`check_event_time`](Self::check_event_time)
    /// succeeding, in two comparisons (for a decoder's hot path).
    #[inline]
    pub fn event_time_end(&self, now_ms: i64) -> i64 {
        match self.max_future_skew_ms {
            Some(skew) => self
                .max_ms
                .min(now_ms.saturating_add(skew.max(0)).saturating_add(1)),
            None => self.max_ms,
        }
    }
}

/// Why a time that parsed is refused by [`TimeBounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRefusal {
    /// Outside `min_ms..max_ms`.
    OutOfRange { ms: i64, min_ms: i64, max_ms: i64 },
    /// More than `max_skew_ms` ahead of the wall clock (`now_ms`).
    Future {
        ms: i64,
        now_ms: i64,
        max_skew_ms: i64,
    },
}

impl TimeRefusal {
    /// The dead-letter kind for this refusal.
    pub fn kind(&self) -> DeadLetterKind {
        match self {
            TimeRefusal::OutOfRange { .. } => DeadLetterKind::TimeOutOfRange,
            TimeRefusal::Future { .. } => DeadLetterKind::FutureTime,
        }
    }

    /// The dead letter's reason: names `field`, the value as `written` in
    /// the record (JSON text: digits, or a quoted string), the range or the
    /// clock and the bound, and what to fix.
    pub fn reason(&self, field: &str, written: &str) -> String {
        match *self {
            TimeRefusal::OutOfRange { ms, min_ms, max_ms } => {
                let bounds = TimeBounds {
                    min_ms,
                    max_ms,
                    max_future_skew_ms: None,
                };
                let range = bounds.range_text();
                let is_number = written.starts_with(|c: char| c == '-' || c.is_ascii_digit());
                let hint = if is_number {
                    unit_hint(&bounds, ms)
                } else {
                    let at = from_epoch_ms(ms)
                        .map(|t| format!(", {}", format_rfc3339(&t)))
                        .unwrap_or_default();
                    format!(
                        "check the date{at}; fix the producer, or widen the source's time bounds if such times are real"
                    )
                };
                format!("field `{field}`: {written} is outside {range} ({hint})")
            }
            TimeRefusal::Future {
                ms,
                now_ms,
                max_skew_ms,
            } => {
                let now = from_epoch_ms(now_ms)
                    .map(|t| format_rfc3339(&t))
                    .unwrap_or_else(|_| now_ms.to_string());
                format!(
                    "field `{field}`: {written} is {} ahead of the wall clock ({now}), more than the {} allowed (max_future_skew_ms); check the producer's clock (times in the past are always accepted), or raise max_future_skew_ms if such times are real",
                    duration_text(ms.saturating_sub(now_ms)),
                    duration_text(max_skew_ms)
                )
            }
        }
    }
}

/// For an integer time out of range: what it would be in other units.
fn unit_hint(bounds: &TimeBounds, ms: i64) -> String {
    let expected = "epoch milliseconds expected";
    let as_unit = [
        ("microseconds", Some(ms / 1_000)),
        ("nanoseconds", Some(ms / 1_000_000)),
        ("seconds", ms.checked_mul(1_000)),
    ];
    for (unit, converted) in as_unit {
        if let Some(t) = converted
            && bounds.check(t).is_ok()
            && let Ok(t) = from_epoch_ms(t)
        {
            return format!(
                "{expected}; was it {unit}? As {unit} it would be {}",
                format_rfc3339(&t)
            );
        }
    }
    let as_ms = from_epoch_ms(ms)
        .map(|t| format!(" (as such it is {})", format_rfc3339(&t)))
        .unwrap_or_default();
    let other_units = if ms >= bounds.max_ms {
        "microseconds or nanoseconds"
    } else {
        "seconds"
    };
    format!(
        "{expected}{as_ms}; it is not in the range as {other_units} either: a placeholder or a corrupt value?"
    )
}

fn bound_text(ms: i64) -> String {
    from_epoch_ms(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|_| format!("{ms} ms"))
}

/// `1d 2h 3m 4.5s`-style text for a non-negative number of milliseconds.
fn duration_text(ms: i64) -> String {
    let ms = ms.max(0);
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (hours, rest) = (rest / 3_600_000, rest % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    if rest > 0 || parts.is_empty() {
        parts.push(if rest % 1_000 == 0 {
            format!("{}s", rest / 1_000)
        } else {
            format!("{}.{:03}s", rest / 1_000, rest % 1_000)
        });
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_epoch_ms_agree() {
        let a = parse_rfc3339("2026-11-11T10:00:00.123+08:00").unwrap();
        let b = from_epoch_ms(a.timestamp_millis()).unwrap();
        assert_eq!(a, b);
        assert_eq!(format_rfc3339(&a), "2026-11-11T02:00:00.123Z");
    }

    #[test]
    fn sub_millisecond_precision_is_truncated() {
        let t = parse_rfc3339("2026-11-11T10:00:00.123987Z").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 123_000_000);
    }

    #[test]
    fn bad_text_names_the_value_and_the_expected_forms() {
        let err = parse_rfc3339("yesterday").unwrap_err().to_string();
        assert!(
            err.contains("'yesterday'") && err.contains("RFC 3339"),
            "{err}"
        );
    }
    #[test]
    fn default_bounds_are_2000_to_2100_and_a_day_ahead() {
        let b = TimeBounds::default();
        assert_eq!(b.validate(), Ok(()));
        assert_eq!(
            parse_rfc3339("2000-01-01T00:00:00Z")
                .unwrap()
                .timestamp_millis(),
            b.min_ms
        );
        assert_eq!(
            parse_rfc3339("2100-01-01T00:00:00Z")
                .unwrap()
                .timestamp_millis(),
            b.max_ms
        );
        assert_eq!(b.max_future_skew_ms, Some(86_400_000));
        assert_eq!(b.range_text(), "2000-01-01T00:00:00Z..2100-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339("0001-01-01T00:00:00Z")
                .unwrap()
                .timestamp_millis(),
            EARLIEST_BOUND_MS
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59.999Z")
                .unwrap()
                .timestamp_millis()
                + 1,
            LATEST_BOUND_MS
        );
    }

    #[test]
    fn validate_names_the_bad_bound() {
        let ok = TimeBounds::default();
        let cases = [
            (
                TimeBounds {
                    min_ms: ok.max_ms,
                    ..ok
                },
                "must be before max_ms",
            ),
            (
                TimeBounds {
                    min_ms: EARLIEST_BOUND_MS - 1,
                    ..ok
                },
                "min_ms = -62135596800001 is outside the years 1 to 9999",
            ),
            (
                TimeBounds {
                    max_ms: i64::MAX,
                    ..ok
                },
                "max_ms = 9223372036854775807 is outside",
            ),
            (
                TimeBounds {
                    max_future_skew_ms: Some(-1),
                    ..ok
                },
                "max_future_skew_ms must be 0 or more",
            ),
        ];
        for (bounds, message) in cases {
            let err = bounds.validate().unwrap_err();
            assert!(err.contains(message), "{err}");
        }
        let widest = TimeBounds {
            min_ms: EARLIEST_BOUND_MS,
            max_ms: LATEST_BOUND_MS,
            max_future_skew_ms: None,
        };
        assert_eq!(widest.validate(), Ok(()));
        assert_eq!(
            TimeBounds {
                max_future_skew_ms: Some(0),
                ..ok
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn the_range_is_inclusive_below_and_exclusive_above() {
        let b = TimeBounds::default();
        assert_eq!(b.check(b.min_ms), Ok(()));
        assert_eq!(b.check(b.max_ms - 1), Ok(()));
        for ms in [b.min_ms - 1, b.max_ms, i64::MIN, i64::MAX, 0] {
            assert_eq!(
                b.check(ms).unwrap_err().kind(),
                DeadLetterKind::TimeOutOfRange
            );
        }
    }

    #[test]
    fn event_time_end_agrees_with_check_event_time() {
        let now = 1_796_000_000_000;
        let day = 86_400_000;
        for skew in [None, Some(0), Some(1), Some(day), Some(i64::MAX)] {
            for now in [now, i64::MAX, i64::MIN, DEFAULT_MAX_MS - 10] {
                let b = TimeBounds {
                    max_future_skew_ms: skew,
                    ..TimeBounds::default()
                };
                let end = b.event_time_end(now);
                let probes = [
                    i64::MIN,
                    b.min_ms - 1,
                    b.min_ms,
                    now.saturating_sub(day),
                    now.saturating_sub(1),
                    now,
                    now.saturating_add(1),
                    now.saturating_add(day),
                    now.saturating_add(day + 1),
                    b.max_ms - 1,
                    b.max_ms,
                    end.saturating_sub(1),
                    end,
                    i64::MAX,
                ];
                for ms in probes {
                    assert_eq!(
                        b.check_event_time(ms, now).is_ok(),
                        b.min_ms <= ms && ms < end,
                        "skew {skew:?} now {now} ms {ms}"
                    );
                }
            }
        }
        // The past is never refused for its age; a day ahead is the limit.
        let b = TimeBounds::default();
        assert_eq!(b.check_event_time(now - 10 * 365 * day, now), Ok(()));
        assert_eq!(b.check_event_time(now + day, now), Ok(()));
        assert_eq!(
            b.check_event_time(now + day + 1, now).unwrap_err().kind(),
            DeadLetterKind::FutureTime
        );
    }

    #[test]
    fn reasons_name_field_value_range_and_a_likely_unit() {
        let b = TimeBounds::default();
        let reason =
            |ms: i64, written: &str| b.check(ms).unwrap_err().reason("event_time", written);
        let micros = reason(1_794_391_200_000_000, "1794391200000000");
        assert_eq!(
            micros,
            "field `event_time`: 1794391200000000 is outside 2000-01-01T00:00:00Z..2100-01-01T00:00:00Z (epoch milliseconds expected; was it microseconds? As microseconds it would be 2026-11-11T10:00:00.000Z)"
        );
        let nanos = reason(1_794_391_200_000_000_000, "1794391200000000000");
        assert!(nanos.contains("was it nanoseconds?"), "{nanos}");
        let seconds = reason(1_794_391_200, "1794391200");
        assert!(seconds.contains("was it seconds?"), "{seconds}");
        let max = reason(i64::MAX, "9223372036854775807");
        assert!(
            max.contains(
                "9223372036854775807 is outside 2000-01-01T00:00:00Z..2100-01-01T00:00:00Z"
            ) && max.contains("microseconds or nanoseconds"),
            "{max}"
        );
        let text = reason(5_680_281_600_000, "\"2150-01-01T00:00:00Z\"");
        assert!(
            text.starts_with(
                "field `event_time`: \"2150-01-01T00:00:00Z\" is outside 2000-01-01T00:00:00Z..2100-01-01T00:00:00Z (check the date"
            ),
            "{text}"
        );
        let future = b
            .check_event_time(1_796_000_000_000 + 2 * 86_400_000, 1_796_000_000_000)
            .unwrap_err()
            .reason("event_time", "1796172800000");
        assert_eq!(
            future,
            "field `event_time`: 1796172800000 is 2d ahead of the wall clock (2026-11-30T00:53:20.000Z), more than the 1d allowed (max_future_skew_ms); check the producer's clock (times in the past are always accepted), or raise max_future_skew_ms if such times are real"
        );
        assert_eq!(duration_text(90_061_500), "1d 1h 1m 1.500s");
        assert_eq!(duration_text(0), "0s");
    }
}
