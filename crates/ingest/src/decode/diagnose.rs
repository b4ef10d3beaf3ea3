//! Explains why arrow-json refused a record, naming the field: run only on
//! records already isolated as bad, so it may be slow and thorough.

use arrow_schema::{DataType, Schema};
use chrono::Utc;
use serde_json::Value;

use kpiflow_types::DeadLetterKind;

/// The kind and a reason naming the field; `arrow_error` is the fallback.
pub fn diagnose(schema: &Schema, payload: &[u8], arrow_error: &str) -> (DeadLetterKind, String) {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return (DeadLetterKind::InvalidJson, format!("invalid JSON: {e}")),
    };
    let Some(object) = value.as_object() else {
        return (
            DeadLetterKind::InvalidJson,
            format!("expected a JSON object, got {}", describe(&value)),
        );
    };
    for field in schema.fields() {
        let name = field.name();
        let value = match object.get(name.as_str()) {
            None | Some(Value::Null) if field.is_nullable() => continue,
            None => {
                return (
                    DeadLetterKind::MissingField,
                    format!("missing required field `{name}`"),
                );
            }
            Some(Value::Null) => {
                return (
                    DeadLetterKind::MissingField,
                    format!("required field `{name}` is null"),
                );
            }
            Some(v) => v,
        };
        let problem = match field.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 if !value.is_string() => Some((
                DeadLetterKind::WrongType,
                format!("field `{name}`: expected a string, got {}", describe(value)),
            )),
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
                if !value.is_number() =>
            {
                Some((
                    DeadLetterKind::WrongType,
                    format!(
                        "field `{name}`: expected an integer, got {}",
                        describe(value)
                    ),
                ))
            }
            DataType::Float32 | DataType::Float64 if !value.is_number() => Some((
                DeadLetterKind::WrongType,
                format!("field `{name}`: expected a number, got {}", describe(value)),
            )),
            DataType::Timestamp(..) => match value {
                Value::Number(n) if n.is_i64() => None,
                Value::String(s) if arrow_cast::parse::string_to_datetime(&Utc, s).is_ok() => None,
                _ => Some((
                    DeadLetterKind::BadTimestamp,
                    format!(
                        "field `{name}`: {} is not an RFC 3339 time (e.g. 2026-11-11T10:00:00Z) or integer epoch milliseconds",
                        describe(value)
                    ),
                )),
            },
            _ => None,
        };
        if let Some(problem) = problem {
            return problem;
        }
    }
    (
        DeadLetterKind::Other,
        format!("arrow-json refused the record: {arrow_error}"),
    )
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
