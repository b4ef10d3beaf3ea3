//! Differential test of the one-pass decoder against arrow-json (what it
//! replaced) and serde_json (a strict RFC 8259 parser), on the simulator's
//! records and on many mutations of them: values of every JSON type and
//! awkward number, time and string forms, escaped and duplicated keys,
//! unknown fields, reordered fields, whitespace, and byte-level damage.
//!
//! For every record:
//! - serde_json refuses it (or it is not an object) ⇔ we refuse it as invalid JSON;
//! - we accept it ⇒ arrow-json accepts it alone, with the same row;
//! - arrow-json accepts it and we do not ⇒ one of our deliberate extra rules
//!   (a duplicated field, a string in a number field, a number that is not
//!   integer milliseconds in a time field, a time outside the bounds as
//!   arrow-json reads it); otherwise arrow-json refuses it too;
//! - we accept it ⇒ its times are within the bounds (2000 to 2100, and
//!   `event_time` at most a day past the decoder's wall clock, fixed here);
//! - every refusal has a reason naming the field or the byte.
//!
//! Accepted records are decoded in batches among the refused ones, so the
//! comparison also checks that a refused record leaves nothing behind.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use kpiflow_ingest::decode::{RawMessage, TopicDecoder};
use kpiflow_ingest::simulator::{Scenario, SimConfig, Simulator};
use kpiflow_types::source::{KAFKA_TS_COLUMN, OFFSET_COLUMN, PARTITION_COLUMN};
use kpiflow_types::time::TimeBounds;
use kpiflow_types::{DeadLetter, DeadLetterKind, Stream};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// The wall clock the decoder measures the future skew from:
/// 2026-11-20T00:00:00Z, nine days after the simulator's start.
const NOW_MS: i64 = 1_795_132_800_000;

/// Whether `field`'s time `ms` is one the decoder must accept: the default
/// bounds written out, independently of `TimeBounds`.
fn within_bounds(field: &str, ms: i64) -> bool {
    const MIN_MS: i64 = 946_684_800_000; // 2000-01-01T00:00:00Z
    const END_MS: i64 = 4_102_444_800_000; // 2100-01-01T00:00:00Z
    const DAY_MS: i64 = 86_400_000;
    (MIN_MS..END_MS).contains(&ms) && (field != "event_time" || ms <= NOW_MS + DAY_MS)
}

/// The time fields of `row` (one row of `stream`'s schema) that are not
/// within bounds.
fn times_out_of_bounds(stream: Stream, row: &RecordBatch) -> Vec<String> {
    let schema = stream.schema();
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f.data_type(), arrow_schema::DataType::Timestamp(..)))
        .filter(|(i, f)| {
            let column = row.column(*i).as_primitive::<TimestampMillisecondType>();
            column.is_valid(0) && !within_bounds(f.name(), column.value(0))
        })
        .map(|(_, f)| f.name().clone())
        .collect()
}

/// Awkward values, as JSON text.
const VALUES: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "42",
    "1.5",
    "-1.5",
    "-0.5",
    "1e3",
    "1E+3",
    "1.0",
    "2.5e-3",
    "1e400",
    "-1e400",
    "1e-400",
    "4.9e-324",
    "1.7976931348623157e308",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999",
    "123456789012345678901234567890",
    "0.1",
    "0.30000000000000004",
    "2147483648",
    "1794360600000",
    "-1794360600000",
    "1794360600000.5",
    "1.7943606e12",
    "17943606000000000000000",
    r#""""#,
    r#""x""#,
    r#""twelve""#,
    r#""12""#,
    r#""1.5""#,
    r#""caf\u00e9""#,
    r#""\ud83d\ude00 emoji""#,
    r#""\uD83D\uDE00""#,
    r#""\ud83d""#,
    r#""\ude00\ud83d""#,
    r#""tab\there\nnewline""#,
    r#""\"quoted\" \\ \/ \b\f\r""#,
    "\"caf\u{e9} \u{1F600}\"",
    r#""\u0000""#,
    r#""a string well over forty characters long, to see it cut short""#,
    r#""1794360600000""#,
    "null",
    "true",
    "false",
    "[]",
    "{}",
    r#"[1,2,{"a":[null,"x\"y"]}]"#,
    r#"{"x":{"y":[1,"z",true]}}"#,
    "[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]",
];

fn time_text(rng: &mut ChaCha8Rng) -> String {
    let year = *[1969, 1970, 1900, 2000, 2024, 2026, 2100, 9999]
        .choose(rng)
        .unwrap();
    let month = rng.random_range(0..=13);
    let day = rng.random_range(0..=32);
    let hour = rng.random_range(0..=24);
    let minute = rng.random_range(0..=60);
    let second = rng.random_range(0..=61);
    let sep = *["T", "T", "t", " "].choose(rng).unwrap();
    let fraction = match rng.random_range(0..6) {
        0 | 1 => String::new(),
        2 => ".".to_owned(),
        _ => {
            let n = rng.random_range(1..=12);
            format!(
                ".{}",
                (0..n)
                    .map(|_| char::from(b'0' + rng.random_range(0..10)))
                    .collect::<String>()
            )
        }
    };
    let zone = match rng.random_range(0..9) {
        0..=2 => "Z".to_owned(),
        3 => "z".to_owned(),
        4 => String::new(),
        5 => format!(
            "+{:02}:{:02}",
            rng.random_range(0..=24),
            rng.random_range(0..=60)
        ),
        6 => format!(
            "-{:02}:{:02}",
            rng.random_range(0..=14),
            rng.random_range(0..=59)
        ),
        7 => format!(
            "+{:02}{:02}",
            rng.random_range(0..=14),
            rng.random_range(0..=59)
        ),
        _ => "+08".to_owned(),
    };
    let text = if rng.random_bool(0.05) {
        format!("{year:04}-{month:02}-{day:02}")
    } else {
        format!(
            "{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
        )
    };
    if rng.random_bool(0.05) {
        // An escaped character the decoder must undo before parsing.
        format!("\"{}\"", text.replacen('-', "\\u002d", 1))
    } else {
        format!("\"{text}\"")
    }
}

fn whitespace(rng: &mut ChaCha8Rng) -> &'static str {
    if rng.random_bool(0.8) {
        ""
    } else {
        [" ", "\n", "\t ", "\r\n  "].choose(rng).unwrap()
    }
}

/// `good` (a record of `stream`) changed in one to three random ways.
fn mutate(stream: Stream, good: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(good) else {
        return good.to_vec();
    };
    let schema = stream.schema();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut members: Vec<(String, String)> = map
        .iter()
        .map(|(k, v)| (serde_json::to_string(k).unwrap(), v.to_string()))
        .collect();
    for _ in 0..rng.random_range(1..=3) {
        let pick = rng.random_range(0..members.len().max(1));
        match rng.random_range(0..11) {
            0..=2 if !members.is_empty() => {
                members[pick].1 = VALUES.choose(rng).unwrap().to_string()
            }
            3 => {
                let time_field = if stream == Stream::Logistics && rng.random_bool(0.3) {
                    "promised_time"
                } else {
                    "event_time"
                };
                let value = if rng.random_bool(0.8) {
                    time_text(rng)
                } else {
                    VALUES.choose(rng).unwrap().to_string()
                };
                for m in &mut members {
                    if m.0 == format!("\"{time_field}\"") {
                        m.1 = value.clone();
                    }
                }
            }
            4 if !members.is_empty() => {
                members.remove(pick);
            }
            5 => {
                let at = rng.random_range(0..=members.len());
                let name = ["extra", "note", "", "é", "sku2"].choose(rng).unwrap();
                let value = VALUES.choose(rng).unwrap().to_string();
                members.insert(at, (format!("\"{name}\""), value));
            }
            6 if !members.is_empty() => {
                // The same field again, with its value or another.
                let mut copy = members[pick].clone();
                if rng.random_bool(0.5) {
                    copy.1 = VALUES.choose(rng).unwrap().to_string();
                }
                let at = rng.random_range(0..=members.len());
                members.insert(at, copy);
            }
            7 if !members.is_empty() => {
                // An escaped key that still names the field.
                let key = &members[pick].0;
                if key.len() > 2 && key.is_ascii() {
                    let first = key.as_bytes()[1];
                    members[pick].0 = format!("\"\\u{:04x}{}", first, &key[2..]);
                }
            }
            8 => members.shuffle(rng),
            9 if !members.is_empty() => {
                // A key that almost names a field.
                let name = names.choose(rng).unwrap();
                members[pick].0 = format!("\"{}\"", name.to_uppercase());
            }
            _ => {}
        }
    }
    let mut text = String::from("{");
    text.push_str(whitespace(rng));
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            text.push(',');
            text.push_str(whitespace(rng));
        }
        text.push_str(k);
        text.push_str(whitespace(rng));
        text.push(':');
        text.push_str(whitespace(rng));
        text.push_str(v);
        text.push_str(whitespace(rng));
    }
    text.push('}');
    let mut bytes = text.into_bytes();
    if rng.random_bool(0.3) {
        damage(&mut bytes, rng);
    }
    bytes
}

/// One byte-level change, as a broken producer or transport might make.
fn damage(bytes: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    const BYTES: &[u8] = b",:\"\\{}[] 0123456789.eE+-ntf\x00\x1f\x7f\x80\xc3\xa9\xff";
    if bytes.is_empty() {
        return;
    }
    let at = rng.random_range(0..bytes.len());
    match rng.random_range(0..6) {
        0 => {
            bytes.remove(at);
        }
        1 => bytes.insert(at, *BYTES.choose(rng).unwrap()),
        2 => bytes[at] = *BYTES.choose(rng).unwrap(),
        3 => bytes.truncate(at),
        4 => {
            let end = rng.random_range(at..=bytes.len());
            let copy = bytes[at..end].to_vec();
            bytes.splice(at..at, copy);
        }
        _ => {
            if at + 1 < bytes.len() {
                bytes.swap(at, at + 1);
            }
        }
    }
}

/// arrow-json's row for `payload` alone, or `None` when it refuses it.
fn arrow_json_row(stream: Stream, payload: &[u8]) -> Option<RecordBatch> {
    let mut decoder = arrow_json::ReaderBuilder::new(stream.schema())
        .with_batch_size(4)
        .build_decoder()
        .unwrap();
    let read = decoder.decode(payload).ok()?;
    if read != payload.len() || decoder.has_partial_record() {
        return None;
    }
    decoder.flush().ok()?.filter(|b| b.num_rows() == 1)
}

/// The top-level keys of a JSON object, repeats included (serde_json's
/// `Map` keeps only the last).
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Whether `payload` names one of `stream`'s fields twice.
fn repeats_a_field(stream: Stream, payload: &[u8]) -> bool {
    let Ok(Keys(keys)) = serde_json::from_slice::<Keys>(payload) else {
        return false;
    };
    let schema = stream.schema();
    schema
        .fields()
        .iter()
        .any(|f| keys.iter().filter(|k| *k == f.name()).count() > 1)
}

/// Whether arrow-json may accept what we refuse, for this reason.
fn deliberately_stricter(d: &DeadLetter) -> bool {
    match d.kind {
        DeadLetterKind::Other => d.reason.contains("appears more than once"),
        // arrow-json reads numbers out of strings.
        DeadLetterKind::WrongType => d.reason.contains(", got string"),
        // arrow-json truncates fractional and saturates huge milliseconds.
        DeadLetterKind::BadTimestamp => d.reason.contains(": number "),
        _ => false,
    }
}

/// Records accepted, refused, and refused for a time out of bounds.
fn check_stream(stream: Stream, seed: u64, count: usize) -> (usize, usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let good: Vec<Vec<u8>> = Simulator::new(SimConfig {
        seed,
        scenario: Scenario::Peak,
        malformed: 0.2,
        ..SimConfig::default()
    })
    .filter(|r| r.stream == stream)
    .take(count / 4)
    .map(|r| r.payload)
    .collect();
    let mut payloads: Vec<Vec<u8>> = good.clone();
    while payloads.len() < count {
        let base = good.choose(&mut rng).unwrap();
        payloads.push(mutate(stream, base, &mut rng));
    }
    payloads.shuffle(&mut rng);

    let mut decoder = TopicDecoder::with_time_bounds(stream, 97, TimeBounds::default());
    decoder.set_wall_clock_ms(NOW_MS);
    let mut ours: Vec<RecordBatch> = Vec::new();
    let mut theirs: Vec<RecordBatch> = Vec::new();
    let mut accepted: Vec<usize> = Vec::new();
    let mut refused = 0;
    let mut refused_for_time = 0;
    for (offset, payload) in payloads.iter().enumerate() {
        let message = RawMessage {
            partition: (offset % 5) as i32,
            offset: offset as i64,
            timestamp_ms: (offset % 7 != 0).then_some(offset as i64 * 10),
            key: None,
            payload: Some(payload),
        };
        let text = String::from_utf8_lossy(payload);
        let strict = serde_json::from_slice::<Value>(payload);
        // serde_json refuses numbers beyond f64's range, which the grammar
        // allows: then it cannot tell whether the rest is well-formed.
        let undecided = strict
            .as_ref()
            .is_err_and(|e| e.to_string().starts_with("number out of range"));
        let strict_object = matches!(strict, Ok(Value::Object(_)));
        let arrow = arrow_json_row(stream, payload);
        match decoder.push(&message) {
            Ok(()) => {
                assert!(
                    strict_object || undecided,
                    "{stream}: accepted what serde_json refuses: {text}"
                );
                let row = arrow.unwrap_or_else(|| {
                    panic!("{stream}: accepted what arrow-json refuses: {text}")
                });
                let outside = times_out_of_bounds(stream, &row);
                assert!(
                    outside.is_empty(),
                    "{stream}: accepted times out of bounds in {outside:?}: {text}"
                );
                theirs.push(row);
                accepted.push(offset);
            }
            Err(d) => {
                refused += 1;
                assert_eq!(d.offset, offset as i64);
                assert_eq!(d.payload.as_deref(), Some(&payload[..]));
                let named = match d.kind {
                    DeadLetterKind::InvalidJson => d.reason.starts_with("invalid JSON at byte "),
                    DeadLetterKind::EmptyPayload => payload.is_empty(),
                    _ => d.reason.contains("field `"),
                };
                assert!(named, "{stream}: {:?} {}: {text}", d.kind, d.reason);
                let invalid = matches!(
                    d.kind,
                    DeadLetterKind::InvalidJson | DeadLetterKind::EmptyPayload
                );
                assert!(
                    invalid != strict_object || undecided,
                    "{stream}: {} (serde_json: {:?}): {text}",
                    d.reason,
                    strict.err()
                );
                // A time refused for its bounds: as arrow-json reads the
                // field, it is out of them too.
                let time_refused = match d.kind {
                    DeadLetterKind::TimeOutOfRange | DeadLetterKind::FutureTime => {
                        let field = d.reason.split('`').nth(1).unwrap_or_default();
                        assert!(
                            d.kind != DeadLetterKind::FutureTime || field == "event_time",
                            "{stream}: only event_time has a future bound: {}",
                            d.reason
                        );
                        // (With a field repeated, arrow-json's row has its last value.)
                        if let Some(row) =
                            arrow.as_ref().filter(|_| !repeats_a_field(stream, payload))
                        {
                            assert!(
                                times_out_of_bounds(stream, row).iter().any(|f| f == field),
                                "{stream}: {} but arrow-json reads it within bounds: {text}",
                                d.reason
                            );
                        }
                        refused_for_time += 1;
                        true
                    }
                    _ => false,
                };
                // arrow-json keeps a repeated field's last value; we refuse the
                // record, for the first problem in it.
                assert!(
                    arrow.is_none()
                        || !strict_object
                        || deliberately_stricter(&d)
                        || time_refused
                        || repeats_a_field(stream, payload),
                    "{stream}: refused what arrow-json accepts: {}: {text}",
                    d.reason
                );
            }
        }
        if decoder.is_full() {
            ours.extend(decoder.finish().0);
        }
    }
    ours.extend(decoder.finish().0);

    let ours = arrow_select::concat::concat_batches(&stream.source_schema(), &ours).unwrap();
    let theirs = arrow_select::concat::concat_batches(&stream.schema(), &theirs).unwrap();
    assert_eq!(ours.num_rows(), accepted.len());
    for (i, field) in stream.schema().fields().iter().enumerate() {
        let (a, b) = (ours.column(i), theirs.column(i));
        if a.as_ref() != b.as_ref() {
            let row = (0..a.len())
                .find(|&r| a.slice(r, 1).as_ref() != b.slice(r, 1).as_ref())
                .unwrap();
            panic!(
                "{stream}: field {} differs at row {row}: ours {:?}, arrow-json {:?}: {}",
                field.name(),
                a.slice(row, 1),
                b.slice(row, 1),
                String::from_utf8_lossy(&payloads[accepted[row]])
            );
        }
    }
    let column = |name: &str| Arc::clone(ours.column_by_name(name).unwrap());
    let partitions = column(PARTITION_COLUMN);
    let offsets = column(OFFSET_COLUMN);
    let kafka_ts = column(KAFKA_TS_COLUMN);
    for (row, &offset) in accepted.iter().enumerate() {
        assert_eq!(
            partitions.as_primitive::<Int32Type>().value(row),
            (offset % 5) as i32
        );
        assert_eq!(
            offsets.as_primitive::<Int64Type>().value(row),
            offset as i64
        );
        let ts = kafka_ts.as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.is_valid(row), offset % 7 != 0);
        if ts.is_valid(row) {
            assert_eq!(ts.value(row), offset as i64 * 10);
        }
    }
    (accepted.len(), refused, refused_for_time)
}

#[test]
fn agrees_with_arrow_json_on_every_record_both_accept() {
    for (n, stream) in Stream::ALL.into_iter().enumerate() {
        for seed in 0..3 {
            let (accepted, refused, refused_for_time) =
                check_stream(stream, 1_000 * n as u64 + seed, 4_000);
            // Both outcomes well exercised, time bounds included.
            assert!(
                accepted > 1_000 && refused > 1_000 && refused_for_time > 20,
                "{stream}: {accepted} {refused} {refused_for_time}"
            );
        }
    }
}
