//! Event times held to the source's bounds (issue 10): one record in
//! microseconds, `i64::MAX` or a clock gone wrong must not move a watermark
//! to a year no other event reaches. Outside 2000..2100 (any time field) or
//! more than a day ahead of the wall clock (`event_time` only) a record is a
//! dead letter with a reason naming the field, the value and the bound;
//! past times are never refused for their age; the records around a refused
//! one are unharmed, in the decoder and through the source on the mock cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{SecondsFormat, Utc};
use kpiflow_ingest::decode::{RawMessage, TopicDecoder};
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::error::Error;
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_types::source::{OFFSET_COLUMN, PARTITION_COLUMN};
use kpiflow_types::time::TimeBounds;
use kpiflow_types::{DeadLetter, DeadLetterKind, Stream};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

mod common;
use common::{mock_source_config, produce_seeded};

const DAY_MS: i64 = 86_400_000;

fn sales(event_time: &str) -> Vec<u8> {
    format!(
        r#"{{"event_time":{event_time},"order_id":"O","channel":"online","region":"east","store_id":"S","sku":"K","quantity":1,"unit_price":1.0,"amount":1.0,"kind":"order"}}"#
    )
    .into_bytes()
}

fn logistics(event_time: &str, promised_time: &str) -> Vec<u8> {
    format!(
        r#"{{"event_time":{event_time},"shipment_id":"SH","warehouse_id":"W","destination_region":"east","sku":"K","quantity":1,"carrier":"C","status":"shipped","promised_time":{promised_time}}}"#
    )
    .into_bytes()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Decodes `payloads` with `decoder` into one batch, with the dead letters
/// by offset.
fn decode_with(
    decoder: &mut TopicDecoder,
    payloads: &[Vec<u8>],
) -> (Option<RecordBatch>, BTreeMap<i64, DeadLetter>) {
    let mut dead = BTreeMap::new();
    for (offset, p) in payloads.iter().enumerate() {
        let m = RawMessage {
            partition: 0,
            offset: offset as i64,
            timestamp_ms: None,
            key: None,
            payload: Some(p),
        };
        if let Err(d) = decoder.push(&m) {
            dead.insert(d.offset, *d);
        }
    }
    let (batch, more) = decoder.finish();
    assert!(more.is_empty());
    (batch, dead)
}

/// The `_offset` values of `batch`'s rows.
fn offsets(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column_by_name(OFFSET_COLUMN)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn times(batch: &RecordBatch, column: &str) -> Vec<i64> {
    batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<TimestampMillisecondType>()
        .values()
        .to_vec()
}

#[test]
fn impossible_and_future_event_times_are_dead_letters_naming_field_value_and_bound() {
    let now = now_ms();
    let two_days_ahead = now + 2 * DAY_MS;
    let two_years_ago = now - 2 * 365 * DAY_MS;
    // (event_time as written, kind, what the reason must contain); good
    // records between them.
    let bad: [(String, DeadLetterKind, Vec<String>); 6] = [
        (
            "9223372036854775807".into(),
            DeadLetterKind::TimeOutOfRange,
            vec![
                "field `event_time`: 9223372036854775807 is outside 2000-01-01T00:00:00Z..2100-01-01T00:00:00Z".into(),
                "epoch milliseconds expected".into(),
            ],
        ),
        (
            "1794391200000000".into(),
            DeadLetterKind::TimeOutOfRange,
            vec![
                "field `event_time`: 1794391200000000 is outside 2000-01-01T00:00:00Z..2100-01-01T00:00:00Z".into(),
                "was it microseconds? As microseconds it would be 2026-11-11T10:00:00.000Z".into(),
            ],
        ),
        (
            "\"2150-06-01T12:00:00Z\"".into(),
            DeadLetterKind::TimeOutOfRange,
            vec!["field `event_time`: \"2150-06-01T12:00:00Z\" is outside 2000-01-01T00:00:00Z..2100-01-01T00:00:00Z".into()],
        ),
        (
            "\"1990-06-01T12:00:00+08:00\"".into(),
            DeadLetterKind::TimeOutOfRange,
            vec!["field `event_time`: \"1990-06-01T12:00:00+08:00\" is outside 2000-01-01T00:00:00Z..2100-01-01T00:00:00Z".into()],
        ),
        (
            format!("\"{}\"", rfc3339(two_days_ahead)),
            DeadLetterKind::FutureTime,
            // (Just under 2 days: the decoder read the clock a moment later.)
            vec![
                format!("field `event_time`: \"{}\" is ", rfc3339(two_days_ahead)),
                " ahead of the wall clock (".into(),
                "more than the 1d allowed (max_future_skew_ms)".into(),
            ],
        ),
        (
            two_days_ahead.to_string(),
            DeadLetterKind::FutureTime,
            vec![
                format!("field `event_time`: {two_days_ahead} is "),
                " ahead of the wall clock (".into(),
            ],
        ),
    ];
    let mut payloads = vec![sales(&two_years_ago.to_string())];
    for (written, _, _) in &bad {
        payloads.push(sales(written));
        payloads.push(sales(&format!("\"{}\"", rfc3339(two_years_ago + 1))));
    }
    let mut decoder = TopicDecoder::new(Stream::Sales, 100);
    let (batch, dead) = decode_with(&mut decoder, &payloads);

    // Every good record is a row, a refused one left nothing behind.
    let batch = batch.unwrap();
    let good: Vec<i64> = (0..payloads.len() as i64).step_by(2).collect();
    assert_eq!(offsets(&batch), good);
    let mut expected_times = vec![two_years_ago];
    expected_times.extend(std::iter::repeat_n(two_years_ago + 1, bad.len()));
    assert_eq!(times(&batch, "event_time"), expected_times);
    let skus = batch.column_by_name("sku").unwrap().as_string::<i32>();
    assert!((0..skus.len()).all(|i| skus.value(i) == "K"));

    assert_eq!(dead.len(), bad.len());
    for (i, (written, kind, says)) in bad.iter().enumerate() {
        let d = &dead[&(2 * i as i64 + 1)];
        assert_eq!(d.kind, *kind, "{written}: {}", d.reason);
        for s in says {
            assert!(
                d.reason.contains(s.as_str()),
                "{written}: {} lacks {s}",
                d.reason
            );
        }
        assert_eq!(d.payload.as_deref(), Some(payloads[2 * i + 1].as_slice()));
    }
    // The wall clock named is the one the decoder read.
    let future = &dead[&9].reason;
    let clock = future
        .split("wall clock (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    let clock = chrono::DateTime::parse_from_rfc3339(clock)
        .unwrap()
        .timestamp_millis();
    assert!((now - 60_000..=now_ms()).contains(&clock), "{future}");
}

#[test]
fn the_range_is_inclusive_from_2000_and_exclusive_at_2100_in_utc() {
    let no_skew = TimeBounds {
        max_future_skew_ms: None,
        ..TimeBounds::default()
    };
    let cases = [
        ("\"2000-01-01T00:00:00Z\"", true),
        ("946684800000", true),
        ("\"1999-12-31T23:59:59.999Z\"", false),
        ("946684799999", false),
        // 1999-12-31T23:30:00Z: the bound is in UTC.
        ("\"2000-01-01T00:30:00+01:00\"", false),
        ("\"2099-12-31T23:59:59.999Z\"", true),
        ("\"2100-01-01T00:00:00Z\"", false),
        ("4102444800000", false),
        ("0", false),
        ("-1", false),
        ("-9223372036854775808", false),
    ];
    let payloads: Vec<Vec<u8>> = cases.iter().map(|(t, _)| sales(t)).collect();
    let mut decoder = TopicDecoder::with_time_bounds(Stream::Sales, 100, no_skew);
    let (batch, dead) = decode_with(&mut decoder, &payloads);
    let accepted: BTreeSet<i64> = batch
        .map(|b| offsets(&b))
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (offset, (written, ok)) in cases.iter().enumerate() {
        let offset = offset as i64;
        assert_eq!(accepted.contains(&offset), *ok, "{written}");
        if !ok {
            let d = &dead[&offset];
            assert_eq!(d.kind, DeadLetterKind::TimeOutOfRange, "{}", d.reason);
            assert!(
                d.reason
                    .starts_with(&format!("field `event_time`: {written} is outside")),
                "{}",
                d.reason
            );
        }
    }
}

#[test]
fn promised_time_may_be_far_ahead_but_not_out_of_range() {
    let now = now_ms();
    let event_time = (now - DAY_MS).to_string();
    let payloads = vec![
        // Promised in 2099 and in ten years: no skew bound on promised_time.
        logistics(&event_time, "\"2099-12-31T00:00:00Z\""),
        logistics(&event_time, &(now + 3_650 * DAY_MS).to_string()),
        logistics(&event_time, "\"2150-01-01T00:00:00Z\""),
        logistics(&event_time, "1794391200000000"),
        // A bad event_time is named, not the promised_time after it.
        logistics(&(now + 2 * DAY_MS).to_string(), "\"2199-01-01T00:00:00Z\""),
    ];
    let mut decoder = TopicDecoder::new(Stream::Logistics, 100);
    let (batch, dead) = decode_with(&mut decoder, &payloads);
    let batch = batch.unwrap();
    assert_eq!(offsets(&batch), [0, 1]);
    assert_eq!(
        times(&batch, "promised_time"),
        [4_102_358_400_000, now + 3_650 * DAY_MS]
    );
    assert_eq!(dead[&2].kind, DeadLetterKind::TimeOutOfRange);
    assert!(
        dead[&2].reason.starts_with(
            "field `promised_time`: \"2150-01-01T00:00:00Z\" is outside 2000-01-01T00:00:00Z..2100-01-01T00:00:00Z"
        ),
        "{}",
        dead[&2].reason
    );
    assert_eq!(dead[&3].kind, DeadLetterKind::TimeOutOfRange);
    assert!(
        dead[&3]
            .reason
            .starts_with("field `promised_time`: 1794391200000000 is outside")
            && dead[&3].reason.contains("microseconds"),
        "{}",
        dead[&3].reason
    );
    assert_eq!(dead[&4].kind, DeadLetterKind::FutureTime);
    assert!(
        dead[&4].reason.starts_with("field `event_time`: "),
        "{}",
        dead[&4].reason
    );
}

#[test]
fn the_bounds_are_the_decoders_to_set_and_the_clock_its_callers() {
    let now = 1_796_000_000_000; // 2026-11-30T00:53:20Z
    let payloads = vec![
        sales(&(now + 2 * DAY_MS).to_string()),
        sales(&(now + DAY_MS).to_string()),
        sales(&(now + DAY_MS + 1).to_string()),
        sales("\"1990-06-01T12:00:00Z\""),
        sales("-1"),
    ];
    let accepted = |bounds: TimeBounds, clock: i64| {
        let mut decoder = TopicDecoder::with_time_bounds(Stream::Sales, 100, bounds);
        assert_eq!(decoder.time_bounds(), bounds);
        decoder.set_wall_clock_ms(clock);
        let (batch, dead) = decode_with(&mut decoder, &payloads);
        let kinds: Vec<DeadLetterKind> = dead.values().map(|d| d.kind).collect();
        (batch.map(|b| offsets(&b)).unwrap_or_default(), kinds)
    };
    use DeadLetterKind::{FutureTime, TimeOutOfRange};
    // A day ahead is allowed, a millisecond more is not.
    assert_eq!(
        accepted(TimeBounds::default(), now),
        (
            vec![1],
            vec![FutureTime, FutureTime, TimeOutOfRange, TimeOutOfRange]
        )
    );
    // The clock moves the bound.
    assert_eq!(
        accepted(TimeBounds::default(), now + DAY_MS).0,
        vec![0, 1, 2]
    );
    // No skew bound; a wider range.
    let wide = TimeBounds {
        min_ms: -62_135_596_800_000,
        max_ms: 253_402_300_800_000,
        max_future_skew_ms: None,
    };
    assert_eq!(accepted(wide, now), (vec![0, 1, 2, 3, 4], vec![]));
    let zero_skew = TimeBounds {
        max_future_skew_ms: Some(0),
        ..wide
    };
    let mut decoder = TopicDecoder::with_time_bounds(Stream::Sales, 10, zero_skew);
    decoder.set_wall_clock_ms(now);
    let (batch, dead) = decode_with(
        &mut decoder,
        &[sales(&now.to_string()), sales(&(now + 1).to_string())],
    );
    assert_eq!(offsets(&batch.unwrap()), [0]);
    assert!(
        dead[&1]
            .reason
            .contains("is 0.001s ahead of the wall clock"),
        "{}",
        dead[&1].reason
    );
}

#[tokio::test]
async fn the_source_refuses_invalid_bounds_at_start() {
    let mut config = SourceConfig::new("127.0.0.1:1", "bad-bounds");
    config.time_bounds.min_ms = config.time_bounds.max_ms;
    let Err(Error::InvalidOption(message)) = start(config, CancellationToken::new()).await else {
        panic!("an empty time range was accepted");
    };
    assert!(
        message.contains("time bounds: min_ms") && message.contains("must be before max_ms"),
        "{message}"
    );
    let mut config = SourceConfig::new("127.0.0.1:1", "bad-skew");
    config.time_bounds.max_future_skew_ms = Some(-1);
    let Err(Error::InvalidOption(message)) = start(config, CancellationToken::new()).await else {
        panic!("a negative skew was accepted");
    };
    assert!(
        message.contains("max_future_skew_ms must be 0 or more"),
        "{message}"
    );
}

/// Through the source on the mock cluster: good simulator records, then
/// `i64::MAX`, microseconds and two days ahead, then good records again.
/// The three are dead letters with their reasons, every good record is a
/// row, and no partition's largest event time is beyond the good ones'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_dead_letters_impossible_times_and_keeps_every_good_record() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(2).unwrap();
    let good_before = 1_500;
    produce_seeded(&kafka, good_before, 31, 0.0).await;
    let two_days_ahead = now_ms() + 2 * DAY_MS;
    let bad = [
        (
            "9223372036854775807".to_owned(),
            DeadLetterKind::TimeOutOfRange,
        ),
        (
            "1794391200000000".to_owned(),
            DeadLetterKind::TimeOutOfRange,
        ),
        (
            format!("\"{}\"", rfc3339(two_days_ahead)),
            DeadLetterKind::FutureTime,
        ),
    ];
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .unwrap();
    // Where each bad record went: (partition, offset) → (written, kind).
    let mut bad_at: BTreeMap<(i32, i64), (String, DeadLetterKind)> = BTreeMap::new();
    for (written, kind) in &bad {
        let payload = sales(written);
        let delivery = producer
            .send(
                FutureRecord::to("sales").key("SKU-KT-01").payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        bad_at.insert(
            (delivery.partition, delivery.offset),
            (written.clone(), *kind),
        );
    }
    let good_after = 1_500;
    produce_seeded(&kafka, good_after, 32, 0.0).await;
    let n = good_before + good_after + bad.len() as u64;

    let cancel = CancellationToken::new();
    let mut source = start(mock_source_config(&kafka, "time-bounds"), cancel.clone())
        .await
        .expect("source starts");
    let mut rows: BTreeSet<(Stream, i32, i64)> = BTreeSet::new();
    let mut dead: Vec<DeadLetter> = Vec::new();
    let mut largest_good = i64::MIN;
    let mut largest_reported = i64::MIN;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rows.len() as u64 + (dead.len() as u64) < n {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => panic!(
                "only {} rows and {} dead letters of {n} records in 60 s", rows.len(), dead.len()
            ),
            Some(batch) = source.batches.recv() => {
                let partitions = batch.rows.column_by_name(PARTITION_COLUMN).unwrap().as_primitive::<Int32Type>();
                for (p, o) in partitions.values().iter().zip(offsets(&batch.rows)) {
                    assert!(rows.insert((batch.stream, *p, o)), "a row twice");
                }
                largest_good = times(&batch.rows, "event_time").into_iter().fold(largest_good, i64::max);
                for p in &batch.partitions {
                    largest_reported = largest_reported.max(p.max_event_time_ms.unwrap_or(i64::MIN));
                }
            }
            Some(d) = source.dead_letters.recv() => dead.push(d),
        }
    }
    cancel.cancel();
    source.task.await.unwrap().unwrap();

    assert_eq!(rows.len() as u64, good_before + good_after);
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
    for d in &dead {
        assert_eq!(d.topic, "sales");
        let (written, kind) = &bad_at[&(d.partition, d.offset)];
        assert_eq!(d.kind, *kind, "{}", d.reason);
        assert!(
            d.reason
                .starts_with(&format!("field `event_time`: {written} is ")),
            "{}",
            d.reason
        );
        assert_eq!(d.payload.as_deref(), Some(sales(written).as_slice()));
        assert!(!rows.contains(&(Stream::Sales, d.partition, d.offset)));
    }
    // Watermark inputs stay at the good records' times.
    assert!(largest_good > 0 && largest_good < now_ms() + DAY_MS);
    assert_eq!(largest_reported, largest_good);
}
