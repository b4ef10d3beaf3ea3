//! Why a record was refused, in words naming the field (or the byte, for
//! syntax): built only for refused records, so it may be slow.

use serde_json::Value;

use kpiflow_types::DeadLetterKind;
use kpiflow_types::time::TimeRefusal;

use super::json::SyntaxError;

impl From<SyntaxError> for Problem {
    fn from(e: SyntaxError) -> Problem {
        Problem::Syntax(e)
    }
}

/// The first thing wrong with a record, as the decoder found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not exactly one JSON object.
    Syntax(SyntaxError),
    /// A required field is absent.
    Missing { field: usize },
    /// A required field is `null`.
    Null { field: usize },
    /// The value at `value` (a byte range of the message) has the wrong JSON type.
    WrongType { field: usize, value: (usize, usize) },
    /// A time field's value is neither a time nor integer epoch milliseconds.
    BadTime { field: usize, value: (usize, usize) },
    /// A time field's value is a time, but outside the reader's bounds.
    TimeBounds {
        field: usize,
        value: (usize, usize),
        refusal: TimeRefusal,
    },
    /// A number that does not fit the field's integer type.
    OutOfRange { field: usize, value: (usize, usize) },
    /// A field named twice: a producer bug, and which value is meant is a guess.
    Duplicate { field: usize },
    /// The batch's text would outgrow 32-bit offsets.
    TooLarge,
}

/// What a field's reason says it expected.
#[derive(Debug, Clone, Copy)]
pub enum Expected {
    String,
    Integer,
    Number,
    Boolean,
}

/// The dead-letter kind and reason for `problem` in `payload`; `field`
/// gives a field's name and what it expected.
pub fn explain<'a>(
    problem: &Problem,
    payload: &[u8],
    field: impl Fn(usize) -> (&'a str, Expected),
) -> (DeadLetterKind, String) {
    let value = |(start, end): (usize, usize)| describe_raw(&payload[start..end]);
    match *problem {
        Problem::Syntax(ref e) => (DeadLetterKind::InvalidJson, e.to_string()),
        Problem::Missing { field: i } => (
            DeadLetterKind::MissingField,
            format!("missing required field `{}`", field(i).0),
        ),
        Problem::Null { field: i } => (
            DeadLetterKind::MissingField,
            format!("required field `{}` is null", field(i).0),
        ),
        Problem::WrongType { field: i, value: v } => {
            let (name, expected) = field(i);
            let expected = match expected {
                Expected::String => "a string",
                Expected::Integer => "an integer",
                Expected::Number => "a number",
                Expected::Boolean => "true or false",
            };
            (
                DeadLetterKind::WrongType,
                format!("field `{name}`: expected {expected}, got {}", value(v)),
            )
        }
        Problem::BadTime { field: i, value: v } => (
            DeadLetterKind::BadTimestamp,
            format!(
                "field `{}`: {} is not an RFC 3339 time (e.g. 2026-11-11T10:00:00Z) or integer epoch milliseconds",
                field(i).0,
                value(v)
            ),
        ),
        Problem::TimeBounds {
            field: i,
            value: (start, end),
            refusal,
        } => (
            refusal.kind(),
            refusal.reason(field(i).0, &written(&payload[start..end])),
        ),
        Problem::OutOfRange { field: i, value: v } => (
            DeadLetterKind::Other,
            format!(
                "field `{}`: {} is out of range for its integer type",
                field(i).0,
                value(v)
            ),
        ),
        Problem::Duplicate { field: i } => (
            DeadLetterKind::Other,
            format!("field `{}` appears more than once", field(i).0),
        ),
        Problem::TooLarge => (
            DeadLetterKind::Other,
            "the batch's text would exceed 2 GiB; record not decoded".to_owned(),
        ),
    }
}

/// A value as written in the message, cut short past 64 characters.
fn written(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    if text.chars().count() > 64 {
        format!("{}…", text.chars().take(64).collect::<String>())
    } else {
        text.into_owned()
    }
}

/// A short description of one JSON value, given its text.
fn describe_raw(text: &[u8]) -> String {
    match serde_json::from_slice::<Value>(text) {
        Ok(value) => describe(&value),
        // Beyond f64's range, which serde_json refuses and the grammar allows.
        Err(_) if matches!(text.first(), Some(b'-' | b'0'..=b'9')) => {
            format!("number {}", String::from_utf8_lossy(text))
        }
        Err(_) => format!("`{}`", String::from_utf8_lossy(text)),
    }
}

/// A short description of a JSON value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}
