//! Event time on the wire: RFC 3339 text or integer epoch milliseconds, both
//! accepted everywhere, stored as `TIMESTAMP(ms, UTC)`.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serializer, de};

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
}
