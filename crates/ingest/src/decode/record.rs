//! One message → one row, in one pass: the JSON syntax check, the lookup of
//! each top-level field by name, its type check and its conversion, appending
//! straight into the columns.
//!
//! The rules:
//! - The message is exactly one JSON object (RFC 8259), optionally surrounded
//!   by whitespace: no missing or extra commas, no trailing data, escapes and
//!   UTF-8 checked, numbers by the grammar, nesting at most 64 deep.
//! - Fields the schema does not name are skipped, though still checked.
//! - A field named twice is refused, rather than arrow-json's "last one wins":
//!   values are appended as they are read, and a record that says two things
//!   about one field is a producer bug better seen than guessed at.
//! - Text fields take strings; integer fields take numbers, truncating a
//!   fraction and refusing what does not fit, as arrow-json does; float fields
//!   take numbers; time fields take what arrow-json's timestamp parser takes
//!   or integer epoch milliseconds. Strings are never read as numbers, nor
//!   numbers as strings.
//! - `null` or absence is a null for nullable fields and refuses the record
//!   for the others.
//! - Every time must lie in the reader's [`TimeBounds`] range, and a field
//!   named `event_time` must not be more than their skew ahead of the wall
//!   clock last given ([`RecordReader::set_time_bounds`]): two integer
//!   comparisons where the time is converted.
//!
//! A syntax error anywhere in the message outranks a field's problem: the
//! rest of a record is still checked after its first bad field. Otherwise the
//! reason given is the first bad field in message order, then the first
//! missing required field in schema order.

use arrow_schema::Schema;
use kpiflow_types::DeadLetterKind;
use kpiflow_types::stream::EVENT_TIME;
use kpiflow_types::time::{TimeBounds, TimeRefusal};

use super::columns::{Column, Kind, Values};
use super::diagnose::{self, Expected, Problem};
use super::json::{SyntaxError, literal, number, peek, skip_value, skip_ws, string, unescape_into};
use super::time;

/// The widest schema read: fields are tracked in `u64` masks.
pub const MAX_FIELDS: usize = 64;

#[derive(Debug, Clone)]
struct FieldSpec {
    name: String,
    key: Key,
    kind: Kind,
    /// For a time field, the exclusive end of the times accepted (the
    /// range's end, or for `event_time` the skew's if earlier).
    time_end: i64,
    /// Named `event_time`: also held to the future-skew bound.
    is_event_time: bool,
}

/// A field's name and closing quote as 8-byte words, to recognise the
/// unescaped key in place without a call to `memcmp`.
#[derive(Debug, Clone)]
struct Key {
    quoted: Vec<u8>,
    /// Little-endian words of `quoted`, the last one masked to its length.
    words: Vec<(u64, u64)>,
}

impl Key {
    fn new(name: &str) -> Key {
        let mut quoted = name.as_bytes().to_vec();
        quoted.push(b'"');
        let words = quoted
            .chunks(8)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                let mask = if chunk.len() == 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * chunk.len())) - 1
                };
                (u64::from_le_bytes(word), mask)
            })
            .collect();
        Key { quoted, words }
    }

    /// Whether `rest` starts with the name and its closing quote.
    #[inline(always)]
    fn starts(&self, rest: &[u8]) -> bool {
        if rest.len() < self.words.len() * 8 {
            return rest.starts_with(&self.quoted);
        }
        let mut at = 0;
        for &(word, mask) in &self.words {
            let bytes: [u8; 8] = rest[at..at + 8].try_into().expect("8 bytes");
            if u64::from_le_bytes(bytes) & mask != word {
                return false;
            }
            at += 8;
        }
        true
    }
}

/// Reads messages of one flat schema into its columns.
#[derive(Debug, Clone)]
pub struct RecordReader {
    fields: Vec<FieldSpec>,
    required: u64,
    nullable: u64,
    /// Unescaped keys and time strings.
    scratch: Vec<u8>,
    times: time::TimeParser,
    bounds: TimeBounds,
    /// The wall clock (epoch ms) the future-skew bound was last measured from.
    now_ms: i64,
    /// Earliest time accepted (inclusive), `bounds.min_ms`.
    time_min: i64,
    /// A text column passed [`TEXT_FULL`] bytes since the last [`RecordReader::clear_full`].
    text_full: bool,
}

/// Text a batch may hold per column before it counts as full, well below
/// the 2 GiB that 32-bit string offsets address.
const TEXT_FULL: usize = 1 << 30;

impl RecordReader {
    /// A reader for `schema`, holding times to `bounds` with the wall
    /// clock at `now_ms` (see [`set_time_bounds`](Self::set_time_bounds)).
    ///
    /// # Panics
    /// When `schema` has more than [`MAX_FIELDS`] fields or a type [`Kind`]
    /// does not cover: the stream schemas are fixed, so that is a bug.
    pub fn new(schema: &Schema, bounds: TimeBounds, now_ms: i64) -> RecordReader {
        assert!(schema.fields().len() <= MAX_FIELDS, "at most 64 fields");
        let mut required = 0;
        let mut nullable = 0;
        let fields = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if f.is_nullable() {
                    nullable |= 1 << i;
                } else {
                    required |= 1 << i;
                }
                FieldSpec {
                    name: f.name().clone(),
                    key: Key::new(f.name()),
                    kind: Kind::of(f)
                        .unwrap_or_else(|| panic!("unsupported type for field {}", f.name())),
                    time_end: i64::MAX,
                    is_event_time: f.name() == EVENT_TIME,
                }
            })
            .collect();
        let mut reader = RecordReader {
            fields,
            required,
            nullable,
            scratch: Vec::new(),
            times: time::TimeParser::default(),
            bounds,
            now_ms,
            time_min: bounds.min_ms,
            text_full: false,
        };
        reader.set_time_bounds(bounds, now_ms);
        reader
    }

    /// Holds every time field to `bounds`' range and `event_time` also to
    /// their future skew, measured from the wall clock `now_ms` (epoch ms).
    /// Cheap: the source calls it once per chunk of messages with the clock
    /// read once.
    pub fn set_time_bounds(&mut self, bounds: TimeBounds, now_ms: i64) {
        self.bounds = bounds;
        self.now_ms = now_ms;
        self.time_min = bounds.min_ms;
        let event_time_end = bounds.event_time_end(now_ms);
        for f in &mut self.fields {
            f.time_end = if f.is_event_time {
                event_time_end
            } else {
                bounds.max_ms
            };
        }
    }

    /// The bounds times are held to.
    pub fn time_bounds(&self) -> TimeBounds {
        self.bounds
    }

    /// Whether field `f`'s time `ms` (written at `value`) is within bounds.
    #[inline(always)]
    fn check_time(&self, f: usize, ms: i64, value: (usize, usize)) -> Result<(), Problem> {
        if ms >= self.time_min && ms < self.fields[f].time_end {
            Ok(())
        } else {
            Err(self.refuse_time(f, ms, value))
        }
    }

    #[cold]
    #[inline(never)]
    fn refuse_time(&self, f: usize, ms: i64, value: (usize, usize)) -> Problem {
        let checked = if self.fields[f].is_event_time {
            self.bounds.check_event_time(ms, self.now_ms)
        } else {
            self.bounds.check(ms)
        };
        // `time_end` is derived from the same bounds, so the check fails too.
        let refusal = checked.err().unwrap_or(TimeRefusal::OutOfRange {
            ms,
            min_ms: self.bounds.min_ms,
            max_ms: self.bounds.max_ms,
        });
        Problem::TimeBounds {
            field: f,
            value,
            refusal,
        }
    }

    /// Whether a text column has grown past a gigabyte: the batch should be finished.
    pub fn text_full(&self) -> bool {
        self.text_full
    }

    /// Called when the columns are emptied.
    pub fn clear_full(&mut self) {
        self.text_full = false;
    }

    /// Appends `message` as one row to `columns` (one a field, in schema
    /// order), or returns what is wrong with it. On error some columns may
    /// hold a value of this row: the caller truncates them.
    pub fn read(&mut self, message: &[u8], columns: &mut [Column]) -> Result<(), Problem> {
        let bytes = message;
        let mut i = skip_ws(bytes, 0);
        match bytes.get(i) {
            None => return syntax(i, "empty message, expected a JSON object"),
            Some(b'{') => {}
            Some(_) => return syntax(i, "expected a JSON object starting with '{'"),
        }
        i = skip_ws(bytes, i + 1);
        let mut seen = 0u64;
        let mut problem: Option<Problem> = None;
        // Producers mostly write fields in schema order: try the next one first.
        let mut next = 0;
        if peek(bytes, i)? == b'}' {
            i += 1;
        } else {
            let mut first = true;
            loop {
                if peek(bytes, i)? != b'"' {
                    return syntax(
                        i,
                        if first {
                            "expected a field name or '}'"
                        } else {
                            "expected a field name after ','"
                        },
                    );
                }
                let field = match self.fields.get(next) {
                    Some(f) if f.key.starts(&bytes[i + 1..]) => {
                        i += 1 + f.key.quoted.len();
                        Some(next)
                    }
                    _ => {
                        let key = string(bytes, i)?;
                        let found = self.lookup(&bytes[i + 1..key.end - 1], key.escaped);
                        i = key.end;
                        found
                    }
                };
                i = skip_ws(bytes, i);
                if peek(bytes, i)? != b':' {
                    return syntax(i, "expected ':' after a field name");
                }
                i = skip_ws(bytes, i + 1);
                i = match field {
                    Some(f) if problem.is_none() => {
                        next = f + 1;
                        match self.value(bytes, i, f, &mut seen, columns) {
                            Ok(end) => end,
                            Err(p @ Problem::Syntax(_)) => return Err(p),
                            Err(p) => {
                                problem = Some(p);
                                skip_value(bytes, i, 1)?
                            }
                        }
                    }
                    _ => skip_value(bytes, i, 1)?,
                };
                i = skip_ws(bytes, i);
                match peek(bytes, i)? {
                    b',' => i = skip_ws(bytes, i + 1),
                    b'}' => {
                        i += 1;
                        break;
                    }
                    _ => return syntax(i, "expected ',' or '}' after a value"),
                }
                first = false;
            }
        }
        let end = skip_ws(bytes, i);
        if end != bytes.len() {
            return syntax(end, "unexpected data after the JSON object");
        }
        if let Some(problem) = problem {
            return Err(problem);
        }
        let missing = self.required & !seen;
        if missing != 0 {
            return Err(Problem::Missing {
                field: missing.trailing_zeros() as usize,
            });
        }
        let mut absent = self.nullable & !seen;
        while absent != 0 {
            columns[absent.trailing_zeros() as usize].push_null();
            absent &= absent - 1;
        }
        Ok(())
    }

    fn lookup(&mut self, raw: &[u8], escaped: bool) -> Option<usize> {
        let key = if escaped {
            self.scratch.clear();
            unescape_into(raw, &mut self.scratch);
            &self.scratch[..]
        } else {
            raw
        };
        self.fields.iter().position(|f| f.name.as_bytes() == key)
    }

    /// Reads field `f`'s value at `i` into its column; returns the index after it.
    #[inline]
    fn value(
        &mut self,
        bytes: &[u8],
        i: usize,
        f: usize,
        seen: &mut u64,
        columns: &mut [Column],
    ) -> Result<usize, Problem> {
        let bit = 1u64 << f;
        if *seen & bit != 0 {
            return Err(Problem::Duplicate { field: f });
        }
        *seen |= bit;
        let column = &mut columns[f];
        let c = peek(bytes, i)?;
        let kind = self.fields[f].kind;
        let end = match (&mut column.values, c) {
            (_, b'n') => {
                let end = literal(bytes, i)?;
                if column.valid.is_none() {
                    return Err(Problem::Null { field: f });
                }
                column.push_null();
                return Ok(end);
            }
            (
                Values::Utf8 {
                    offsets,
                    bytes: text,
                },
                b'"',
            ) => {
                let s = string(bytes, i)?;
                let raw = &bytes[i + 1..s.end - 1];
                if s.escaped {
                    unescape_into(raw, text);
                } else {
                    text.extend_from_slice(raw);
                }
                if text.len() > TEXT_FULL {
                    self.text_full = true;
                    if text.len() > i32::MAX as usize {
                        return Err(Problem::TooLarge);
                    }
                }
                offsets.push(text.len() as i32);
                s.end
            }
            (Values::Int64(values), b'-' | b'0'..=b'9') => {
                let n = number(bytes, i)?;
                if kind == Kind::TimestampMs {
                    let ms = n.as_i64().ok_or(Problem::BadTime {
                        field: f,
                        value: (i, n.end),
                    })?;
                    self.check_time(f, ms, (i, n.end))?;
                    values.push(ms);
                } else {
                    // As arrow-json: the integer, else the float truncated if in range.
                    let value = n.as_i64().or_else(|| {
                        let v = n.as_f64(&bytes[i..n.end]);
                        (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0)
                            .contains(&v)
                            .then_some(v as i64)
                    });
                    values.push(value.ok_or(Problem::OutOfRange {
                        field: f,
                        value: (i, n.end),
                    })?);
                }
                n.end
            }
            (Values::Int64(values), b'"') if kind == Kind::TimestampMs => {
                let s = string(bytes, i)?;
                let raw = &bytes[i + 1..s.end - 1];
                let text = if s.escaped {
                    self.scratch.clear();
                    unescape_into(raw, &mut self.scratch);
                    &self.scratch[..]
                } else {
                    raw
                };
                let ms = self.times.parse_ms(text).ok_or(Problem::BadTime {
                    field: f,
                    value: (i, s.end),
                })?;
                self.check_time(f, ms, (i, s.end))?;
                values.push(ms);
                s.end
            }
            (Values::Int32(values), b'-' | b'0'..=b'9') => {
                let n = number(bytes, i)?;
                let value = n.as_i64().and_then(|v| i32::try_from(v).ok()).or_else(|| {
                    let v = n.as_f64(&bytes[i..n.end]);
                    (v > -2_147_483_649.0 && v < 2_147_483_648.0).then_some(v as i32)
                });
                values.push(value.ok_or(Problem::OutOfRange {
                    field: f,
                    value: (i, n.end),
                })?);
                n.end
            }
            (Values::Float64(values), b'-' | b'0'..=b'9') => {
                let n = number(bytes, i)?;
                values.push(n.as_f64(&bytes[i..n.end]));
                n.end
            }
            (Values::Boolean(values), b't' | b'f') => {
                let end = literal(bytes, i)?;
                values.push(c == b't');
                end
            }
            _ => {
                let end = skip_value(bytes, i, 1)?;
                return Err(if kind == Kind::TimestampMs {
                    Problem::BadTime {
                        field: f,
                        value: (i, end),
                    }
                } else {
                    Problem::WrongType {
                        field: f,
                        value: (i, end),
                    }
                });
            }
        };
        column.set_valid();
        Ok(end)
    }

    /// The dead-letter kind and reason for `problem` in `message`.
    pub fn explain(&self, problem: &Problem, message: &[u8]) -> (DeadLetterKind, String) {
        diagnose::explain(problem, message, |i| {
            let f = &self.fields[i];
            let expected = match f.kind {
                Kind::Utf8 => Expected::String,
                Kind::Int64 | Kind::Int32 | Kind::TimestampMs => Expected::Integer,
                Kind::Float64 => Expected::Number,
                Kind::Boolean => Expected::Boolean,
            };
            (f.name.as_str(), expected)
        })
    }
}

fn syntax<T>(offset: usize, message: &'static str) -> Result<T, Problem> {
    Err(Problem::Syntax(SyntaxError { offset, message }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::decode::columns::Column;

    /// Reads `message` against a schema with one nullable text field `a`,
    /// so everything else is an unknown field checked for syntax only.
    fn check(message: &str) -> Result<(), Problem> {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true)]));
        let mut columns = vec![Column::new(schema.field(0), Kind::Utf8, 1)];
        RecordReader::new(&schema, TimeBounds::default(), 0).read(message.as_bytes(), &mut columns)
    }

    #[test]
    fn accepts_valid_objects() {
        for ok in [
            r#"{}"#,
            r#" {"a":"x"} "#,
            r#"{"z":-1.5e+3,"b":"x\"y\\\u00e9","c":[1,[2,{}],[]],"d":{"e":null},"f":true,"g":false}"#,
            "{\"a\":\"caf\u{e9}\"}\n",
            r#"{"x":0,"b":0.0,"c":1E9}"#,
            r#"{ "a" : null , "b" : [ ] , "c" : { } }"#,
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_what_arrow_json_would_accept_or_misread() {
        for (bad, why) in [
            (r#"{"b":1,,"c":2}"#, "field name after ','"),
            (r#"{"b":1,}"#, "field name after ','"),
            (r#"{,"b":1}"#, "field name or '}'"),
            (r#"{"b":1 "c":2}"#, "expected ',' or '}'"),
            (r#"{"a":"x" "c":2}"#, "expected ',' or '}'"),
            (r#"{"b":[1,,2]}"#, "where a value belongs"),
            (r#"{"b":[1 2]}"#, "expected ',' or ']'"),
            (r#"{"b":{"c":1,}}"#, "field name after ','"),
            (r#"{"b":1}{"b":2}"#, "after the JSON object"),
            (r#"{"b":1} trailing}"#, "after the JSON object"),
            (r#"{"b":"tru"#, "truncated"),
            (r#"{"b":1"#, "truncated"),
            (r#"{"b""#, "truncated"),
            (r#"{"a":"#, "truncated"),
            ("", "empty"),
            ("  ", "empty"),
            ("[1]", "JSON object"),
            ("42", "JSON object"),
            (r#"{"b":01}"#, "expected ',' or '}'"),
            (r#"{"b":1.}"#, "after '.'"),
            (r#"{"b":1e}"#, "exponent"),
            (r#"{"b":tru}"#, "literal"),
            (r#"{"a":nul}"#, "literal"),
            (r#"{"b":"\x"}"#, "invalid escape"),
            (r#"{"b":"\u12G4"}"#, "\\u escape"),
            (r#"{"a":"\ud800"}"#, "unpaired"),
            ("{\"b\":\"line\nbreak\"}", "control character"),
            (r#"{'b':1}"#, "field name"),
            (r#"{"b"=1}"#, "':'"),
        ] {
            match check(bad) {
                Err(Problem::Syntax(e)) => {
                    assert!(e.to_string().contains(why), "{bad}: {e}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let invalid_utf8 = b"{\"a\":\"\xff\"}";
        let schema = Schema::new(vec![Field::new("a", DataType::Utf8, true)]);
        let mut columns = vec![Column::new(schema.field(0), Kind::Utf8, 1)];
        let e =
            RecordReader::new(&schema, TimeBounds::default(), 0).read(invalid_utf8, &mut columns);
        assert!(
            matches!(e, Err(Problem::Syntax(ref e)) if e.message.contains("UTF-8")),
            "{e:?}"
        );
    }

    #[test]
    fn every_proper_prefix_of_an_object_is_rejected() {
        let json = r#"{"event_time":"2026-11-11T01:30:00.000Z","a":"SKU-KT-01","quantity":2,"x":[1,{"y":null}]}"#;
        for end in 0..json.len() {
            assert!(
                matches!(check(&json[..end]), Err(Problem::Syntax(_))),
                "{}",
                &json[..end]
            );
        }
        assert_eq!(check(json), Ok(()));
    }

    #[test]
    fn a_syntax_error_outranks_an_earlier_bad_field() {
        assert!(matches!(
            check(r#"{"a":1}"#),
            Err(Problem::WrongType { .. })
        ));
        assert!(matches!(check(r#"{"a":1,,}"#), Err(Problem::Syntax(_))));
        assert!(matches!(
            check(r#"{"a":"x","a":"y"}"#),
            Err(Problem::Duplicate { field: 0 })
        ));
        assert!(matches!(
            check(r#"{"a":"x","a":"y"}}"#),
            Err(Problem::Syntax(_))
        ));
    }
}
