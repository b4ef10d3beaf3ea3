//! Back-pressure loses nothing (mock cluster): a downstream that reads in
//! bursts with pauses between makes the source pause and resume its
//! partitions many times, and every offset of every partition still arrives
//! exactly once, as a row or a dead letter.
//!
//! librdkafka drops its prefetched messages when a partition is paused and
//! fetches again from the application's position on resume, which lands
//! inside a record batch whenever the poll thread stopped partway through
//! one. The records are produced with `kpiflow produce`'s own settings
//! (`linger.ms=5`, librdkafka's default `batch.num.messages`, as fast as the
//! broker takes them), so batches hold many records each (measured: 6-55 per
//! batch); unlike the tansu test broker, the mock cluster answers a fetch
//! inside a batch as Kafka does, with the containing batch, and librdkafka
//! skips the records before its position. The test counts those skips from
//! librdkafka's own debug log ("Skip <offset> < fetch <offset>"), so it
//! proves it resumed inside batches rather than assuming it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::source::start;
use kpiflow_types::Stream;
use kpiflow_types::source::{OFFSET_COLUMN, PARTITION_COLUMN};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod common;
use common::{mock_source_config, produce_seeded};

const PARTITIONS: i32 = 4;

/// Keeps librdkafka's "Skip <offset> < fetch <offset>" debug lines: a fetch
/// answered with a batch that starts before the fetch position, i.e. a
/// fetch that started inside a batch.
#[derive(Clone, Default)]
struct Skips(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Skips {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0.contains("Skip ") && message.0.contains(" < fetch ") {
            self.0.lock().unwrap().push(message.0);
        }
    }
}

/// The (topic, partition, fetch offset) of each fetch that started inside
/// a batch, from the skip lines, e.g. "MSG [thrd:…]: …: sales [2]: Skip
/// offset 40 (leader epoch 0) < fetch offset 52 (leader epoch 0)".
fn fetches_inside_batches(lines: &[String]) -> BTreeSet<(String, i32, i64)> {
    let mut out = BTreeSet::new();
    for line in lines {
        let Some(skip) = line.find(": Skip ") else {
            continue;
        };
        let head = &line[..skip];
        let (Some(open), Some(close)) = (head.rfind(" ["), head.rfind(']')) else {
            continue;
        };
        let topic = head[..open].rsplit([' ', ':']).next().unwrap_or_default();
        let partition: i32 = head[open + 2..close].parse().unwrap_or(-1);
        let fetch = line[skip..]
            .split(" < fetch ")
            .nth(1)
            .and_then(|f| f.split_whitespace().find_map(|w| w.parse::<i64>().ok()));
        if let Some(fetch) = fetch {
            out.insert((topic.to_owned(), partition, fetch));
        }
    }
    out
}

/// Every (stream, partition)'s high watermark.
fn high_watermarks(kafka: &EmbeddedKafka) -> BTreeMap<(Stream, i32), i64> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .unwrap();
    let mut highs = BTreeMap::new();
    for s in Stream::ALL {
        for p in 0..PARTITIONS {
            let (_, high) = probe
                .fetch_watermarks(s.name(), p, Duration::from_secs(10))
                .unwrap();
            highs.insert((s, p), high);
        }
    }
    highs
}

/// Sorted offsets as half-open ranges, e.g. `"12..15, 40..41"`.
fn ranges(offsets: &[i64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < offsets.len() {
        let start = offsets[i];
        let mut end = start + 1;
        while i + 1 < offsets.len() && offsets[i + 1] == end {
            end += 1;
            i += 1;
        }
        out.push(format!("{start}..{end}"));
        i += 1;
    }
    out.join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_and_resumes_lose_and_repeat_nothing() {
    // Before any client exists: rdkafka takes its log level from the `log`
    // crate's when a client is configured.
    let skips = Skips::default();
    tracing_subscriber::registry()
        .with(skips.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(PARTITIONS).unwrap();
    let n = 30_000u64;
    produce_seeded(&kafka, n, 41, 0.05).await;
    let highs = high_watermarks(&kafka);
    let total: i64 = highs.values().sum();
    assert_eq!(
        total, n as i64,
        "offsets on the cluster vs records produced"
    );

    let mut config = mock_source_config(&kafka, "pauses");
    // Small batches and a one-batch channel: the batcher waits for room
    // downstream after every batch, and the poll thread pauses often.
    config.max_batch_rows = 100;
    config.batch_capacity = 1;
    config.linger = Duration::from_millis(5);
    // librdkafka's per-message debug context, for its skip lines.
    config.properties.push(("debug".into(), "msg".into()));
    let cancel = CancellationToken::new();
    let mut source = start(config, cancel.clone()).await.expect("source starts");

    let mut seen: HashSet<(Stream, i32, i64)> = HashSet::new();
    let mut twice: Vec<(Stream, i32, i64)> = Vec::new();
    let mut outside: Vec<(Stream, i32, i64)> = Vec::new();
    let mut note = |key: (Stream, i32, i64), seen: &mut HashSet<_>| {
        if highs.get(&(key.0, key.1)).is_none_or(|&h| key.2 >= h) {
            outside.push(key);
        } else if !seen.insert(key) {
            twice.push(key);
        }
    };
    let mut batches = 0u64;
    // Not a wall-clock bound on the whole run (the point is to pass on a
    // loaded machine): the source must keep delivering, and a stall of
    // 60 s with records still missing fails the test.
    let stall = Duration::from_secs(60);
    let mut last_new = tokio::time::Instant::now();
    let started = last_new;
    while (seen.len() as u64) < n {
        let deadline = last_new + stall;
        let before = seen.len();
        tokio::select! {
            Some(batch) = source.batches.recv() => {
                batches += 1;
                let partitions = batch.rows.column_by_name(PARTITION_COLUMN).unwrap().as_primitive::<Int32Type>();
                let offsets = batch.rows.column_by_name(OFFSET_COLUMN).unwrap().as_primitive::<Int64Type>();
                for (&p, &o) in partitions.values().iter().zip(offsets.values()) {
                    note((batch.stream, p, o), &mut seen);
                }
                // The bursty reader: three batches at once, then a pause of
                // 2-20 ms (deterministic, so every run pauses alike).
                if batches.is_multiple_of(3) {
                    let ms = 2 + (batches * 7919) % 19;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
            Some(dead) = source.dead_letters.recv() => {
                let stream = dead.topic.parse::<Stream>().unwrap();
                note((stream, dead.partition, dead.offset), &mut seen);
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
        if seen.len() > before {
            last_new = tokio::time::Instant::now();
        }
    }
    // Anything still on its way would be delivered twice or outside.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(batch) = source.batches.try_recv() {
        let partitions = batch
            .rows
            .column_by_name(PARTITION_COLUMN)
            .unwrap()
            .as_primitive::<Int32Type>();
        let offsets = batch
            .rows
            .column_by_name(OFFSET_COLUMN)
            .unwrap()
            .as_primitive::<Int64Type>();
        for (&p, &o) in partitions.values().iter().zip(offsets.values()) {
            note((batch.stream, p, o), &mut seen);
        }
    }
    while let Ok(dead) = source.dead_letters.try_recv() {
        let stream = dead.topic.parse::<Stream>().unwrap();
        note((stream, dead.partition, dead.offset), &mut seen);
    }
    let stats = source.handle.stats();
    let pauses = stats.pauses.load(Ordering::Relaxed);
    let revoked = stats.revoked_records.load(Ordering::Relaxed);
    let inside = fetches_inside_batches(&skips.0.lock().unwrap());
    eprintln!(
        "{} of {n} records in {:?}, {batches} batches, {pauses} pauses, {} fetches inside a batch, {revoked} dropped at revocations",
        seen.len(),
        started.elapsed(),
        inside.len()
    );

    let mut missing = String::new();
    for (&(stream, partition), &high) in &highs {
        let lost: Vec<i64> = (0..high)
            .filter(|o| !seen.contains(&(stream, partition, *o)))
            .collect();
        if !lost.is_empty() {
            missing.push_str(&format!(
                "\n  {stream:?}/{partition}: {} missing: {}",
                lost.len(),
                ranges(&lost)
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "records never arrived (no new record for {stall:?}):{missing}"
    );
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert!(
        outside.is_empty(),
        "beyond the partitions' ends: {outside:?}"
    );
    // The point of the test: many pauses, resuming inside batches.
    assert!(pauses >= 10, "only {pauses} pauses");
    assert!(
        inside.len() >= 5,
        "only {} fetches started inside a batch: {inside:?}",
        inside.len()
    );
    assert_eq!(revoked, 0, "a rebalance happened: the test proves less");
    cancel.cancel();
    source.task.await.unwrap().unwrap();
}
