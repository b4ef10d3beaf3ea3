//! The source's two threads under a stalled or departed downstream (mock
//! cluster): what it holds while paused is bounded, and it stops promptly
//! when cancelled or when nobody reads its batches any more.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::source::{Source, SourceConfig, start};
use kpiflow_types::Stream;
use kpiflow_types::source::{OFFSET_COLUMN, PARTITION_COLUMN};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

mod common;
use common::{mock_source_config, produce_seeded};

async fn produce_records(kafka: &EmbeddedKafka, n: u64) {
    produce_seeded(kafka, n, 21, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_downstream_bounds_what_the_source_takes_and_cancel_stops_it() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(4).unwrap();
    let n = 40_000;
    produce_records(&kafka, n).await;

    let mut config = mock_source_config(&kafka, "stalled");
    config.max_batch_rows = 500;
    config.batch_capacity = 1;
    let cancel = CancellationToken::new();
    // Nobody reads the batches.
    let source = start(config, cancel.clone()).await.expect("source starts");
    let stats = source.handle.stats();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !stats.paused.load(Ordering::Relaxed) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the source never paused; {} records received",
            stats.records.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Messages librdkafka fetched before the pause are still taken from its
    // queue for a moment: wait until the count holds still for 300 ms.
    let mut at_pause = stats.records.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stats.records.load(Ordering::Relaxed);
        if now == at_pause {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the record count never settled after the pause ({now} records)"
        );
        at_pause = now;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = stats.records.load(Ordering::Relaxed);
    // One batch in the channel and one being sent, a batch per stream in the
    // decoders, four chunks handed over and a chunk per stream in the poll
    // thread: 15 × 500 rows.
    assert!(
        later <= 15 * 500,
        "took {later} of {n} records with nobody reading"
    );
    assert_eq!(later, at_pause, "kept taking records while paused");
    eprintln!("paused holding {later} of {n} records");

    let stopping = tokio::time::Instant::now();
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), source.task)
        .await
        .expect("the source stops within 2 s of its cancellation")
        .unwrap()
        .unwrap();
    eprintln!("stopped in {:?}", stopping.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_batch_receiver_ends_the_source() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(2).unwrap();
    let config = mock_source_config(&kafka, "dropped");
    let source = start(config, CancellationToken::new())
        .await
        .expect("source starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while source.handle.assignment().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no partition assigned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No records at all: the source finds out at its next progress batch.
    drop(source.batches);
    tokio::time::timeout(Duration::from_secs(3), source.task)
        .await
        .expect("the source ends within 3 s once its batches have no reader")
        .unwrap()
        .unwrap();
}

/// Every (stream, partition)'s high watermark.
fn high_watermarks(kafka: &EmbeddedKafka, partitions: i32) -> BTreeMap<(Stream, i32), i64> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .unwrap();
    let mut highs = BTreeMap::new();
    for s in Stream::ALL {
        for p in 0..partitions {
            let (_, high) = probe
                .fetch_watermarks(s.name(), p, Duration::from_secs(10))
                .unwrap();
            highs.insert((s, p), high);
        }
    }
    highs
}

/// What a source delivered so far.
#[derive(Default)]
struct Delivered {
    /// Rows and dead letters.
    records: u64,
    /// The largest event time among the rows, per partition.
    max_event_time: BTreeMap<(Stream, i32), i64>,
}

/// Reads until `until` records arrived and every partition was reported
/// idle after that; checks that no partition is ever reported idle while
/// records of it are still to come. A batch made before the latest records
/// were written may still say idle at the partition's `previous` end, until
/// a record past that end arrives. Also checks each partition's reported
/// largest event time against the rows delivered so far. Returns the
/// partitions seen not idle.
async fn read_until_idle(
    source: &mut Source,
    highs: &BTreeMap<(Stream, i32), i64>,
    previous: Option<&BTreeMap<(Stream, i32), i64>>,
    delivered_so_far: &mut Delivered,
    until: u64,
) -> BTreeSet<(Stream, i32)> {
    let Delivered {
        records,
        max_event_time,
    } = delivered_so_far;
    let mut busy = BTreeSet::new();
    let mut idle = BTreeSet::new();
    // Partitions with a record past their previous end delivered.
    let mut moved: BTreeSet<(Stream, i32)> = BTreeSet::new();
    let delivered = |key: (Stream, i32), offset: i64, moved: &mut BTreeSet<_>| {
        if previous.is_none_or(|before| offset >= before[&key]) {
            moved.insert(key);
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while *records < until || idle.len() < highs.len() {
        tokio::select! {
            Some(batch) = source.batches.recv() => {
                *records += batch.rows.num_rows() as u64;
                let partitions = batch.rows.column_by_name(PARTITION_COLUMN).unwrap().as_primitive::<Int32Type>();
                let offsets = batch.rows.column_by_name(OFFSET_COLUMN).unwrap().as_primitive::<Int64Type>();
                let times = batch.rows.column(0).as_primitive::<TimestampMillisecondType>();
                for ((p, o), t) in partitions.values().iter().zip(offsets.values()).zip(times.values()) {
                    delivered((batch.stream, *p), *o, &mut moved);
                    let max = max_event_time.entry((batch.stream, *p)).or_insert(*t);
                    *max = (*max).max(*t);
                }
                for p in &batch.partitions {
                    let key = (batch.stream, p.partition);
                    assert_eq!(
                        p.max_event_time_ms,
                        max_event_time.get(&key).copied(),
                        "{key:?}: largest event time reported vs delivered"
                    );
                    if p.idle {
                        let stale = previous
                            .filter(|_| !moved.contains(&key))
                            .map(|before| before[&key]);
                        assert!(
                            p.next_offset == highs[&key] || Some(p.next_offset) == stale,
                            "{key:?} reported idle at offset {} with records up to {}",
                            p.next_offset, highs[&key]
                        );
                        if *records >= until && p.next_offset == highs[&key] {
                            idle.insert(key);
                        }
                    } else {
                        idle.remove(&key);
                        busy.insert(key);
                    }
                }
            }
            Some(dead) = source.dead_letters.recv() => {
                *records += 1;
                let stream = dead.topic.parse::<Stream>().unwrap();
                delivered((stream, dead.partition), dead.offset, &mut moved);
            }
            _ = tokio::time::sleep_until(deadline) => panic!(
                "{} of {until} records; idle: {idle:?}", *records
            ),
        }
    }
    busy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_idle_only_when_caught_up_and_quiet() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(2).unwrap();
    produce_seeded(&kafka, 4_000, 5, 0.0).await;
    let highs = high_watermarks(&kafka, 2);

    let mut config = mock_source_config(&kafka, "idle");
    config.idle_timeout = Duration::from_secs(1);
    let cancel = CancellationToken::new();
    let mut source = start(config, cancel.clone()).await.expect("source starts");
    let mut records = Delivered::default();
    let busy = read_until_idle(&mut source, &highs, None, &mut records, 4_000).await;
    assert_eq!(
        busy.len(),
        highs.len(),
        "some partition was idle from the start"
    );

    // More records: the partitions that get some are busy again, then idle
    // again at their new ends.
    produce_seeded(&kafka, 2_000, 6, 0.0).await;
    let more = high_watermarks(&kafka, 2);
    let grown: BTreeSet<(Stream, i32)> = more
        .iter()
        .filter(|(k, high)| **high > highs[*k])
        .map(|(k, _)| *k)
        .collect();
    let busy = read_until_idle(&mut source, &more, Some(&highs), &mut records, 6_000).await;
    assert!(
        grown.is_subset(&busy),
        "partitions with new records never reported busy: {:?}",
        grown.difference(&busy).collect::<Vec<_>>()
    );
    cancel.cancel();
    source.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_stall_nothing_is_idle_before_it_is_caught_up_again() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(2).unwrap();
    produce_seeded(&kafka, 2_000, 7, 0.0).await;
    let highs = high_watermarks(&kafka, 2);
    let mut config = mock_source_config(&kafka, "stall-idle");
    config.idle_timeout = Duration::from_secs(1);
    config.batch_capacity = 1;
    config.max_batch_rows = 200;
    let cancel = CancellationToken::new();
    let mut source = start(config, cancel.clone()).await.expect("source starts");
    let mut records = Delivered::default();
    read_until_idle(&mut source, &highs, None, &mut records, 2_000).await;

    // Nobody reads: records written now make the source pause, and those
    // written while it is paused leave librdkafka's end offsets stale.
    produce_seeded(&kafka, 2_000, 8, 0.0).await;
    let stats = source.handle.stats();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !stats.paused.load(Ordering::Relaxed) {
        assert!(tokio::time::Instant::now() < deadline, "never paused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    produce_seeded(&kafka, 2_000, 9, 0.0).await;
    // Longer than the idle timeout: the last records seen are old by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let more = high_watermarks(&kafka, 2);
    read_until_idle(&mut source, &more, Some(&highs), &mut records, 6_000).await;
    cancel.cancel();
    source.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_timeout_below_librdkafkas_resolution_is_refused() {
    let mut config = SourceConfig::new("127.0.0.1:1", "short-idle");
    config.idle_timeout = Duration::from_millis(200);
    let Err(e) = start(config, CancellationToken::new()).await else {
        panic!("a 200 ms idle timeout was accepted");
    };
    let message = e.to_string();
    assert!(
        message.contains("idle timeout must be at least 1s") && message.contains("200ms"),
        "{message}"
    );
}
