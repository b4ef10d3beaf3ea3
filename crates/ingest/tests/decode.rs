//! Decoding against the simulator's records: every record ends in a batch or a
//! dead letter, bad ones never cost good ones, and each dead letter says what
//! is wrong, naming the field or the syntax error.

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
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
