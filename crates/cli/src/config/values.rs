//! Reading one setting's value: durations, sizes, times, the data location,
//! identifiers. Each reader takes a merged figment [`Value`] and returns the
//! typed value or the problem in words that name the value and show a valid
//! one; the caller adds the key and where the value came from.
//!
//! `text` is true when the value came from the environment or a flag, where
//! every value is a string: then `"true"` is a boolean and `"5"` a number.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use figment::value::Value;
use serde::Serializer;

use super::DataSpec;

/// How a value is shown in a message: strings quoted, tables and lists by kind.
pub fn shown(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_else(|| "a number".into()),
        Value::Empty(..) => "nothing".into(),
        Value::Dict(..) if toml_datetime(value).is_some() => "a TOML date-time".into(),
        Value::Dict(..) => "a table".into(),
        Value::Array(..) => "a list".into(),
    }
}

pub fn string(value: &Value) -> Result<&str, String> {
    match value {
        Value::String(_, s) => Ok(s),
        other => Err(format!("expected a string, got {}", shown(other))),
    }
}

pub fn non_empty(value: &Value) -> Result<String, String> {
    let s = string(value)?.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_owned())
}

pub fn boolean(value: &Value, text: bool) -> Result<bool, String> {
    match value {
        Value::Bool(_, b) => Ok(*b),
        Value::String(_, s) if text && (s == "true" || s == "false") => Ok(s == "true"),
        other => Err(format!("{} is not a boolean (true or false)", shown(other))),
    }
}

pub fn integer(value: &Value, text: bool) -> Result<i128, String> {
    let parsed = match value {
        Value::Num(_, n) => n.to_i128(),
        Value::String(_, s) if text => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| format!("{} is not a whole number", shown(value)))
}

/// A librdkafka property value: librdkafka takes text, so numbers and
/// booleans written bare in TOML are accepted as their text.
pub fn property_value(value: &Value) -> Result<String, String> {
    match value {
        Value::String(_, s) => Ok(s.clone()),
        Value::Bool(_, b) => Ok(b.to_string()),
        Value::Num(..) => Ok(shown(value)),
        other => Err(format!(
            "expected a string, number or boolean, got {}",
            shown(other)
        )),
    }
}

pub fn duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(_, s) if s.trim().parse::<f64>().is_ok() => Err(format!(
            "{s:?} is not a duration: give the unit (e.g. \"{}s\")",
            s.trim()
        )),
        Value::String(_, s) => humantime::parse_duration(s.trim())
            .map_err(|_| format!("{s:?} is not a duration (e.g. \"10s\", \"5m\", \"1h\")")),
        Value::Num(..) => Err(format!(
            "{} is not a duration: give the unit (e.g. \"{}s\")",
            shown(value),
            shown(value)
        )),
        other => Err(format!("{} is not a duration (e.g. \"10s\")", shown(other))),
    }
}

/// A duration, or `word` ("off", "forever") for none.
pub fn duration_or(value: &Value, word: &str) -> Result<Option<Duration>, String> {
    match value {
        Value::String(_, s) if s.trim() == word => Ok(None),
        _ => duration(value)
            .map(Some)
            .map_err(|e| format!("{e} or \"{word}\"")),
    }
}

/// Bytes: a whole number, or text with a unit: B, KiB, MiB, GiB (powers of
/// 1024) or kB, MB, GB (powers of 1000), e.g. "128MiB".
pub fn byte_size(value: &Value, text: bool) -> Result<u64, String> {
    let bad = || {
        format!(
            "{} is not a size (e.g. \"128MiB\" or 134217728)",
            shown(value)
        )
    };
    let s = match value {
        Value::Num(_, n) => {
            return n
                .to_u128()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(bad);
        }
        Value::String(_, s) => s.trim(),
        _ => return Err(bad()),
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = (&s[..split], s[split..].trim());
    let factor: u64 = match unit {
        "" if text => 1,
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(bad)
}

/// Formats bytes in the largest binary unit that divides them ("128MiB").
pub fn format_size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// The string TOML's own date-time type becomes in figment.
fn toml_datetime(value: &Value) -> Option<&str> {
    match value {
        Value::Dict(_, dict) if dict.len() == 1 => dict
            .get("$__toml_private_datetime")
            .and_then(|v| v.as_str()),
        _ => None,
    }
}

/// An RFC 3339 time, as a string or a TOML date-time.
pub fn time(value: &Value) -> Result<DateTime<Utc>, String> {
    let text = toml_datetime(value).or_else(|| value.as_str());
    text.and_then(|t| kpiflow_types::time::parse_rfc3339(t.trim()).ok())
        .ok_or_else(|| {
            format!(
                "{} is not an RFC 3339 time (e.g. \"2000-01-01T00:00:00Z\")",
                shown(value)
            )
        })
}

pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The Delta application-transaction id: [A-Za-z0-9_.-]+, at most 64 characters.
pub fn pipeline_id(value: &Value) -> Result<String, String> {
    let id = string(value)?;
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(valid) {
        return Err(format!(
            "{id:?} is not a pipeline id: 1 to 64 of A-Z a-z 0-9 _ . - (e.g. \"kpiflow-eu\")"
        ));
    }
    Ok(id.to_owned())
}

/// Comma-separated `host:port` entries, none empty.
pub fn brokers(value: &Value) -> Result<String, String> {
    let list = string(value)?.trim();
    if list.is_empty() || list.split(',').any(|entry| entry.trim().is_empty()) {
        return Err(format!(
            "{list:?} is not a broker list (e.g. \"kafka1:9092,kafka2:9092\")"
        ));
    }
    Ok(list.to_owned())
}

/// A directory, `file:///absolute/path` or `s3://bucket/prefix`.
pub fn data_location(value: &Value) -> Result<DataSpec, String> {
    let s = string(value)?.trim();
    let forms = "a directory, file:///absolute/path or s3://bucket/prefix";
    let Some((scheme, rest)) = s.split_once("://") else {
        if s.is_empty() {
            return Err(format!("must not be empty: give {forms}"));
        }
        return Ok(DataSpec::Dir(PathBuf::from(s)));
    };
    match scheme {
        "file" if rest.starts_with('/') => Ok(DataSpec::Dir(PathBuf::from(rest))),
        "file" => Err(format!(
            "{s:?}: a file URL needs an absolute path and no host (file:///var/lib/kpiflow)"
        )),
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
            if !bucket_ok {
                return Err(format!(
                    "{s:?}: {bucket:?} is not a bucket name (3 to 63 of a-z 0-9 . -)"
                ));
            }
            Ok(DataSpec::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            })
        }
        _ => Err(format!(
            "{s:?}: unsupported scheme {scheme:?}; give {forms}"
        )),
    }
}

/// Serializes a duration as humantime text ("10s", "1h 30m").
pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn ser_off<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_str("off"),
    }
}

pub fn ser_size<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_size(*bytes))
}

pub fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

pub fn ser_display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use figment::value::Value;

    use super::*;

    #[test]
    fn values_read_as_documented() {
        let text = |s: &str| Value::from(s.to_owned());
        assert_eq!(byte_size(&text("128MiB"), false), Ok(128 << 20));
        assert_eq!(byte_size(&text("2GB"), false), Ok(2_000_000_000));
        assert_eq!(byte_size(&Value::from(4096u64), false), Ok(4096));
        assert!(byte_size(&text("128"), false).is_err());
        assert!(byte_size(&text("-1MiB"), true).is_err());
        assert_eq!(format_size(128 << 20), "128MiB");
        assert_eq!(format_size(1000), "1000B");
        assert!(pipeline_id(&text(&"a".repeat(64))).is_ok());
        assert!(pipeline_id(&text(&"a".repeat(65))).is_err());
        assert!(pipeline_id(&text("é")).is_err());
        assert!(data_location(&text("file://host/x")).is_err());
        assert!(data_location(&text("s3://Bad_Bucket/x")).is_err());
        assert_eq!(
            data_location(&text("s3://kpis")),
            Ok(DataSpec::S3 {
                bucket: "kpis".into(),
                prefix: String::new()
            })
        );
        assert!(brokers(&text("a:1,,b:2")).is_err());
        assert_eq!(edit_distance("kafka.brokrs", "kafka.brokers"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        let unitless = duration(&text("30")).unwrap_err();
        assert!(
            unitless.contains("give the unit (e.g. \"30s\")"),
            "{unitless}"
        );
        assert_eq!(duration(&text("1h 30m")), Ok(Duration::from_secs(5400)));
    }
}
