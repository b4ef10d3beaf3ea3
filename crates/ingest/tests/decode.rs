//! Decoding against the simulator's records: every record ends in a batch or a
//! dead letter, bad ones never cost good ones, and each dead letter says what
//! is wrong, naming the field or the syntax error.

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use kpiflow_ingest::decode::{RawMessage, TopicDecoder};
use kpiflow_ingest::simulator::{MalformedKind, Scenario, SimConfig, SimRecord, Simulator};
use kpiflow_types::source::{OFFSET_COLUMN, PARTITION_COLUMN};
use kpiflow_types::{DeadLetter, DeadLetterKind, Stream};

fn records(n: usize, malformed: f64, seed: u64) -> Vec<SimRecord> {
    Simulator::new(SimConfig {
        seed,
        scenario: Scenario::Peak,
        malformed,
        out_of_order: 0.1,
        late: 0.02,
        ..SimConfig::default()
    })
    .take(n)
    .collect()
}

struct Outcome {
    /// Offsets of rows in batches, with their key column value.
    rows: BTreeMap<i64, String>,
    /// Event time by offset.
    times: BTreeMap<i64, i64>,
    dead: BTreeMap<i64, DeadLetter>,
    batches: usize,
}

/// Decodes `stream`'s records, numbering them as offsets 0.. on partition
/// `offset % 3`, in batches of at most `max_rows`.
fn decode(stream: Stream, records: &[&SimRecord], max_rows: usize) -> Outcome {
    let mut decoder = TopicDecoder::new(stream, max_rows);
    let mut out = Outcome {
        rows: BTreeMap::new(),
        times: BTreeMap::new(),
        dead: BTreeMap::new(),
        batches: 0,
    };
    let take = |decoder: &mut TopicDecoder, out: &mut Outcome| {
        let (batch, dead) = decoder.finish();
        for d in dead {
            assert!(out.dead.insert(d.offset, d).is_none());
        }
        if let Some(batch) = batch {
            out.batches += 1;
            assert!(batch.num_rows() <= max_rows);
            assert_eq!(batch.schema(), stream.source_schema());
            let offsets = batch
                .column_by_name(OFFSET_COLUMN)
                .unwrap()
                .as_primitive::<Int64Type>();
            let partitions = batch.column_by_name(PARTITION_COLUMN).unwrap();
            assert_eq!(partitions.null_count(), 0);
            let keys = batch
                .column_by_name(stream.key_field())
                .unwrap()
                .as_string::<i32>();
            let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
            for row in 0..batch.num_rows() {
                let offset = offsets.value(row);
                assert!(
                    out.rows
                        .insert(offset, keys.value(row).to_owned())
                        .is_none()
                );
                out.times.insert(offset, times.value(row));
            }
        }
    };
    for (offset, r) in records.iter().enumerate() {
        let m = RawMessage {
            partition: (offset % 3) as i32,
            offset: offset as i64,
            timestamp_ms: Some(1_000 + offset as i64),
            key: Some(r.key.as_bytes()),
            payload: Some(&r.payload),
        };
        if let Err(d) = decoder.push(&m) {
            assert!(out.dead.insert(d.offset, *d).is_none());
        }
        if decoder.is_full() {
            take(&mut decoder, &mut out);
        }
    }
    take(&mut decoder, &mut out);
    out
}

fn expected_kind(kind: MalformedKind) -> DeadLetterKind {
    match kind {
        MalformedKind::InvalidJson => DeadLetterKind::InvalidJson,
        MalformedKind::WrongType => DeadLetterKind::WrongType,
        MalformedKind::MissingField => DeadLetterKind::MissingField,
        MalformedKind::BadTimestamp => DeadLetterKind::BadTimestamp,
    }
}

#[test]
fn every_record_is_in_a_batch_or_a_dead_letter_with_its_reason() {
    let all = records(40_000, 0.10, 77);
    for stream in Stream::ALL {
        let mine: Vec<&SimRecord> = all.iter().filter(|r| r.stream == stream).collect();
        let out = decode(stream, &mine, 512);
        assert_eq!(out.rows.len() + out.dead.len(), mine.len(), "{stream}");
        for (offset, r) in mine.iter().enumerate() {
            let offset = offset as i64;
            match (r.malformed, r.event.as_ref()) {
                (None, Some(event)) => {
                    // Good records all arrive, even those sharing a batch with bad ones.
                    assert_eq!(
                        out.rows.get(&offset),
                        Some(&r.key),
                        "{stream} offset {offset}"
                    );
                    assert_eq!(out.times[&offset], event.event_time().timestamp_millis());
                }
                (Some(kind), _) => {
                    let d = out.dead.get(&offset).unwrap_or_else(|| {
                        panic!(
                            "{stream} offset {offset} ({kind}) was not dead-lettered: {}",
                            String::from_utf8_lossy(&r.payload)
                        )
                    });
                    assert_eq!(
                        d.kind,
                        expected_kind(kind),
                        "{}: {}",
                        d.reason,
                        String::from_utf8_lossy(&r.payload)
                    );
                    assert_eq!(d.payload.as_deref(), Some(r.payload.as_slice()));
                    assert_eq!(d.key.as_deref(), Some(r.key.as_bytes()));
                    assert_eq!(d.partition, (offset % 3) as i32);
                    assert_eq!(d.timestamp_ms, Some(1_000 + offset));
                    match d.kind {
                        DeadLetterKind::InvalidJson => {
                            assert!(d.reason.starts_with("invalid JSON at byte"), "{}", d.reason)
                        }
                        DeadLetterKind::BadTimestamp => {
                            assert!(d.reason.contains("field `event_time`"), "{}", d.reason)
                        }
                        _ => assert!(d.reason.contains("field `"), "{}", d.reason),
                    }
                }
                (None, None) => unreachable!("good records carry their event"),
            }
        }
    }
}

#[test]
fn clean_input_fills_batches_to_the_row_limit() {
    let all = records(5_000, 0.0, 3);
    let sales: Vec<&SimRecord> = all.iter().filter(|r| r.stream == Stream::Sales).collect();
    let out = decode(Stream::Sales, &sales, 100);
    assert_eq!(out.rows.len(), sales.len());
    assert!(out.dead.is_empty());
    assert_eq!(out.batches, sales.len().div_ceil(100));
}

#[test]
fn a_batch_of_only_bad_records_yields_only_dead_letters() {
    let all = records(20_000, 1.0, 5);
    let sales: Vec<&SimRecord> = all
        .iter()
        .filter(|r| r.stream == Stream::Sales)
        .take(300)
        .collect();
    let out = decode(Stream::Sales, &sales, 64);
    assert!(out.rows.is_empty());
    assert_eq!(out.dead.len(), 300);
    let kinds: BTreeSet<DeadLetterKind> = out.dead.values().map(|d| d.kind).collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
}

#[test]
fn reasons_name_the_problem_precisely() {
    let good = br#"{"event_time":"2026-11-11T01:30:00Z","order_id":"O","channel":"online","region":"east","store_id":"S","sku":"K","quantity":1,"unit_price":1.0,"amount":1.0,"kind":"order"}"#;
    let cases: [(&[u8], DeadLetterKind, &str); 7] = [
        (br#"{"event_time":"2026-11-11T01:30:00Z","order_id":"O","channel":"online","region":"east","store_id":"S","sku":"K","quantity":"twelve","unit_price":1.0,"amount":1.0,"kind":"order"}"#,
            DeadLetterKind::WrongType, "field `quantity`: expected an integer, got string \"twelve\""),
        (br#"{"event_time":"2026-11-11T01:30:00Z","order_id":"O","channel":"online","region":"east","store_id":"S","quantity":1,"unit_price":1.0,"amount":1.0,"kind":"order"}"#,
            DeadLetterKind::MissingField, "missing required field `sku`"),
        (br#"{"event_time":"yesterday","order_id":"O","channel":"online","region":"east","store_id":"S","sku":"K","quantity":1,"unit_price":1.0,"amount":1.0,"kind":"order"}"#,
            DeadLetterKind::BadTimestamp, "field `event_time`: string \"yesterday\" is not an RFC 3339 time"),
        (br#"{"event_time":"2026-11-11T01:30:00Z","order_id":"O","channel":"online","region":"east","store_id":"S","sku":42,"quantity":1,"unit_price":1.0,"amount":1.0,"kind":"order"}"#,
            DeadLetterKind::WrongType, "field `sku`: expected a string, got number 42"),
        (br#"{"event_time":"2026-11-11T01:30:00Z",,"order_id":"O"}"#, DeadLetterKind::InvalidJson, "invalid JSON at byte 37: expected a field name after ','"),
        (br#"{"event_time":"2026-11-11T01:30:00Z","order_id":"O""#, DeadLetterKind::InvalidJson, "truncated"),
        (b"", DeadLetterKind::EmptyPayload, "empty payload"),
    ];
    for (payload, kind, reason) in cases {
        let mut decoder = TopicDecoder::new(Stream::Sales, 16);
        let message = |offset: i64, payload: &'static [u8]| RawMessage {
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            payload: Some(payload),
        };
        // A good record before and after: both must survive.
        let mut dead: Vec<DeadLetter> = Vec::new();
        for (offset, p) in [(0, &good[..]), (1, payload), (2, &good[..])] {
            let p: &'static [u8] = p;
            if let Err(d) = decoder.push(&message(offset, p)) {
                dead.push(*d);
            }
        }
        let (batch, more) = decoder.finish();
        dead.extend(more);
        assert_eq!(batch.map(|b| b.num_rows()), Some(2), "{reason}");
        assert_eq!(dead.len(), 1, "{reason}");
        assert_eq!(dead[0].kind, kind, "{}", dead[0].reason);
        assert!(
            dead[0].reason.contains(reason),
            "{} does not contain {reason}",
            dead[0].reason
        );
        assert_eq!(dead[0].offset, 1);
    }
}

#[test]
fn dropping_a_revoked_partition_keeps_the_others() {
    let all = records(3_000, 0.0, 9);
    let sales: Vec<&SimRecord> = all
        .iter()
        .filter(|r| r.stream == Stream::Sales)
        .take(90)
        .collect();
    let mut decoder = TopicDecoder::new(Stream::Sales, 1_000);
    for (offset, r) in sales.iter().enumerate() {
        decoder
            .push(&RawMessage {
                partition: (offset % 3) as i32,
                offset: offset as i64,
                timestamp_ms: None,
                key: Some(r.key.as_bytes()),
                payload: Some(&r.payload),
            })
            .unwrap();
    }
    decoder.retain_partitions(|p| p != 1);
    assert_eq!(decoder.len(), 60);
    let (batch, dead) = decoder.finish();
    assert!(dead.is_empty());
    let batch = batch.unwrap();
    let partitions = batch
        .column_by_name(PARTITION_COLUMN)
        .unwrap()
        .as_primitive::<arrow_array::types::Int32Type>();
    assert!(partitions.values().iter().all(|&p| p != 1));
    assert_eq!(batch.num_rows(), 60);
}

/// Decodes `payloads` of `stream` into one batch, with the dead letters.
fn decode_all(stream: Stream, payloads: &[&[u8]]) -> (Option<RecordBatch>, Vec<DeadLetter>) {
    let mut decoder = TopicDecoder::new(stream, 1_000);
    let mut dead = Vec::new();
    for (offset, p) in payloads.iter().enumerate() {
        let m = RawMessage {
            partition: 0,
            offset: offset as i64,
            timestamp_ms: None,
            key: None,
            payload: Some(p),
        };
        if let Err(d) = decoder.push(&m) {
            dead.push(*d);
        }
    }
    let (batch, more) = decoder.finish();
    dead.extend(more);
    (batch, dead)
}

fn sales(event_time: &str, sku: &str, quantity: &str, unit_price: &str) -> Vec<u8> {
    format!(
        r#"{{"event_time":{event_time},"order_id":"O","channel":"online","region":"east","store_id":"S","sku":{sku},"quantity":{quantity},"unit_price":{unit_price},"amount":1.0,"kind":"order"}}"#
    )
    .into_bytes()
}

#[test]
fn numbers_convert_as_arrow_json_converts_them() {
    let t = r#""2026-11-11T01:30:00Z""#;
    let cases: [(&str, &str, i64, f64); 6] = [
        ("2", "3", 2, 3.0),
        ("2.9", "3.25", 2, 3.25),
        ("-0.5", "-0", 0, -0.0),
        ("1e3", "1e-3", 1_000, 0.001),
        ("-9223372036854775808", "1e400", i64::MIN, f64::INFINITY),
        ("9223372036854775807", "0.1", i64::MAX, 0.1),
    ];
    let payloads: Vec<Vec<u8>> = cases
        .iter()
        .map(|(q, p, _, _)| sales(t, r#""K""#, q, p))
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let (batch, dead) = decode_all(Stream::Sales, &refs);
    assert!(dead.is_empty(), "{dead:?}");
    let batch = batch.unwrap();
    let quantity = batch
        .column_by_name("quantity")
        .unwrap()
        .as_primitive::<Int64Type>();
    let price = batch
        .column_by_name("unit_price")
        .unwrap()
        .as_primitive::<arrow_array::types::Float64Type>();
    for (row, (_, _, q, p)) in cases.iter().enumerate() {
        assert_eq!(quantity.value(row), *q, "row {row}");
        assert_eq!(price.value(row).to_bits(), p.to_bits(), "row {row}");
    }
}

#[test]
fn values_that_do_not_fit_are_refused_naming_the_field() {
    let t = r#""2026-11-11T01:30:00Z""#;
    let cases: [(Vec<u8>, DeadLetterKind, &str); 8] = [
        (
            sales(t, r#""K""#, "9223372036854775808", "1"),
            DeadLetterKind::Other,
            "field `quantity`: number 9223372036854775808 is out of range for its integer type",
        ),
        (
            sales(t, r#""K""#, "1e30", "1"),
            DeadLetterKind::Other,
            "field `quantity`: number 1e+30 is out of range",
        ),
        (
            sales(t, r#""K""#, "\"2\"", "1"),
            DeadLetterKind::WrongType,
            "field `quantity`: expected an integer, got string \"2\"",
        ),
        (
            sales(t, r#""K""#, "2", "[1]"),
            DeadLetterKind::WrongType,
            "field `unit_price`: expected a number, got a list",
        ),
        (
            sales(t, "null", "2", "1"),
            DeadLetterKind::MissingField,
            "required field `sku` is null",
        ),
        (
            sales("1.5e12", r#""K""#, "2", "1"),
            DeadLetterKind::BadTimestamp,
            "field `event_time`: number 1500000000000.0 is not an RFC 3339 time",
        ),
        (
            sales("true", r#""K""#, "2", "1"),
            DeadLetterKind::BadTimestamp,
            "field `event_time`: true is not",
        ),
        (
            b"{\"event_time\":1,\"sku\":\"caf\xc3\"}".to_vec(),
            DeadLetterKind::InvalidJson,
            "invalid JSON at byte 26: invalid UTF-8 in a string",
        ),
    ];
    for (payload, kind, reason) in cases {
        let (batch, dead) = decode_all(Stream::Sales, &[&payload]);
        assert!(batch.is_none());
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].kind, kind, "{}", dead[0].reason);
        assert!(
            dead[0].reason.contains(reason),
            "{} does not contain {reason}",
            dead[0].reason
        );
    }
}

#[test]
fn event_times_in_every_accepted_form() {
    let cases = [
        (r#""2026-11-11T10:00:00Z""#, 1_794_391_200_000),
        (r#""2026-11-11T10:00:00.123456Z""#, 1_794_391_200_123),
        (r#""2026-11-11T18:00:00.5+08:00""#, 1_794_391_200_500),
        (r#""2026-11-11 10:00:00""#, 1_794_391_200_000),
        (r#""2026\u002d11-11T10:00:00Z""#, 1_794_391_200_000),
        ("1794391200000", 1_794_391_200_000),
        ("946684800000", 946_684_800_000),
    ];
    let payloads: Vec<Vec<u8>> = cases
        .iter()
        .map(|(t, _)| sales(t, r#""K""#, "1", "1"))
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let (batch, dead) = decode_all(Stream::Sales, &refs);
    assert!(dead.is_empty(), "{dead:?}");
    let times = batch.unwrap();
    let times = times.column(0).as_primitive::<TimestampMillisecondType>();
    for (row, (t, ms)) in cases.iter().enumerate() {
        assert_eq!(times.value(row), *ms, "{t}");
    }
}

#[test]
fn escapes_in_keys_and_values_are_decoded() {
    let payload = br#"{"event_time":1794391200000,"order_id":"O","channel":"online","region":"east","store_id":"S","\u0073ku":"K\u002d\"1\"\\\ud83d\ude00\n","quantity":1,"unit_price":1,"amount":1,"kind":"order"}"#;
    let (batch, dead) = decode_all(Stream::Sales, &[payload]);
    assert!(dead.is_empty(), "{dead:?}");
    let batch = batch.unwrap();
    let sku = batch.column_by_name("sku").unwrap().as_string::<i32>();
    assert_eq!(sku.value(0), "K-\"1\"\\\u{1F600}\n");
}

#[test]
fn nullable_fields_take_null_or_absence_and_unknown_fields_are_skipped() {
    let payload = br#"{"event_time":1794391200000,"device_id":"D","plant_id":"P","line_id":"L","kind":"telemetry","state":"running","temperature_c":null,"vibration_mm_s":2,"inspector":"ann","extra":{"deep":[1,{"x":null}]},"more":[]}"#;
    let (batch, dead) = decode_all(Stream::Equipment, &[payload]);
    assert!(dead.is_empty(), "{dead:?}");
    let batch = batch.unwrap();
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert!(column("temperature_c").is_null(0));
    assert!(column("fault_code").is_null(0));
    assert!(column("inspection").is_null(0));
    assert_eq!(column("inspector").as_string::<i32>().value(0), "ann");
    assert_eq!(
        column("vibration_mm_s")
            .as_primitive::<arrow_array::types::Float64Type>()
            .value(0),
        2.0
    );
}

/// A field named twice is refused: arrow-json would keep the last value, but
/// values are appended as they are read and a record saying two things about
/// one field is a producer bug.
#[test]
fn a_repeated_field_is_refused() {
    let payload = sales(r#"1794391200000,"sku":"again""#, r#""K""#, "1", "1");
    let (_, dead) = decode_all(Stream::Sales, &[&payload]);
    assert_eq!(dead[0].kind, DeadLetterKind::Other);
    assert_eq!(dead[0].reason, "field `sku` appears more than once");
}

/// Regression guard for the one-pass design: a record refused at its last
/// field has already appended its text fields, which must be cut back out.
#[test]
fn a_record_refused_late_leaves_nothing_in_the_batch() {
    let good = sales("1794391200001", r#""GOOD-1""#, "1", "1");
    let late = br#"{"event_time":1794391200002,"order_id":"BAD","channel":"BAD","region":"BAD","store_id":"BAD","sku":"BAD","quantity":3,"unit_price":1,"amount":1,"kind":7}"#;
    let missing = br#"{"event_time":1794391200002,"order_id":"BAD","channel":"BAD","region":"BAD","store_id":"BAD","quantity":3,"unit_price":1,"amount":1,"kind":"x"}"#;
    let good2 = sales("1794391200004", r#""GOOD-2""#, "4", "4");
    let (batch, dead) = decode_all(Stream::Sales, &[&good, late, missing, &good2]);
    assert_eq!(dead.len(), 2);
    let batch = batch.unwrap();
    assert_eq!(batch.num_rows(), 2);
    let strings = |name: &str| {
        let c = batch.column_by_name(name).unwrap().as_string::<i32>();
        (0..c.len())
            .map(|i| c.value(i).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(strings("sku"), ["GOOD-1", "GOOD-2"]);
    assert_eq!(strings("order_id"), ["O", "O"]);
    let quantity = batch
        .column_by_name("quantity")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(quantity.values().to_vec(), [1, 4]);
}
