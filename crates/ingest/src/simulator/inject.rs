//! Imperfections layered over the model's clean, time-ordered events:
//! out-of-order and late event times, and malformed records of each kind, so
//! that watermarks, late tables and dead letters get exercised.

use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use kpiflow_types::Stream;

/// How a malformed record is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MalformedKind {
    /// Not JSON at all: truncated, a doubled comma, or trailing garbage.
    InvalidJson,
    /// A numeric field carries a string.
    WrongType,
    /// A required field is absent.
    MissingField,
    /// `event_time` is neither RFC 3339 nor epoch milliseconds.
    BadTimestamp,
}

impl MalformedKind {
    /// Every kind, in the order the summary lists them.
    pub const ALL: [MalformedKind; 4] = [
        MalformedKind::InvalidJson,
        MalformedKind::WrongType,
        MalformedKind::MissingField,
        MalformedKind::BadTimestamp,
    ];

    /// The kind's name in summaries.
    pub fn name(self) -> &'static str {
        match self {
            MalformedKind::InvalidJson => "invalid_json",
            MalformedKind::WrongType => "wrong_type",
            MalformedKind::MissingField => "missing_field",
            MalformedKind::BadTimestamp => "bad_timestamp",
        }
    }
}

impl fmt::Display for MalformedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Numeric fields per stream, for wrong-type records.
fn numeric_fields(stream: Stream) -> &'static [&'static str] {
    match stream {
        Stream::Sales => &["quantity", "unit_price", "amount"],
        Stream::Production => &["quantity_good", "quantity_scrap"],
        Stream::Logistics => &["quantity"],
        Stream::Equipment => &["temperature_c", "vibration_mm_s"],
    }
}

/// Breaks `json` (a good record of `stream`) in the way `kind` says.
pub fn malform(kind: MalformedKind, stream: Stream, json: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut object = match serde_json::from_slice::<Value>(json) {
        Ok(Value::Object(map)) => map,
        // Only called with serialized events, which are objects.
        _ => unreachable!("events serialize to JSON objects"),
    };
    match kind {
        MalformedKind::InvalidJson => {
            let text = String::from_utf8_lossy(json).into_owned();
            match rng.random_range(0..3) {
                // A record cut short, as a crashed writer leaves it.
                0 => json[..rng.random_range(1..json.len() - 1)].to_vec(),
                // Doubled comma: arrow-json 59 is known to accept this silently.
                1 => text.replacen(',', ",,", 1).into_bytes(),
                _ => format!("{text} trailing}}").into_bytes(),
            }
        }
        MalformedKind::WrongType => {
            let fields = numeric_fields(stream);
            let field = fields[rng.random_range(0..fields.len())];
            const WORDS: [&str; 3] = ["twelve", "N/A", "12 units"];
            let word = WORDS[rng.random_range(0..WORDS.len())];
            object.insert(field.to_owned(), Value::String(word.to_owned()));
            serde_json::to_vec(&object).expect("a JSON map serializes")
        }
        MalformedKind::MissingField => {
            let schema = stream.schema();
            let required: Vec<&str> = schema
                .fields()
                .iter()
                .filter(|f| !f.is_nullable())
                .map(|f| f.name().as_str())
                .collect();
            let field = required[rng.random_range(0..required.len())];
            object.remove(field);
            serde_json::to_vec(&object).expect("a JSON map serializes")
        }
        MalformedKind::BadTimestamp => {
            const BAD: [&str; 4] = ["2026-13-45T25:61:00Z", "11/11/2026 10:00", "yesterday", ""];
            let bad = BAD[rng.random_range(0..BAD.len())];
            object.insert("event_time".to_owned(), Value::String(bad.to_owned()));
            serde_json::to_vec(&object).expect("a JSON map serializes")
        }
    }
}
