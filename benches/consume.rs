//! End-to-end consume rate of the Kafka source (decode, dead letters, batches)
//! as a ratio to librdkafka's raw consume rate of the same messages, both
//! against the same local broker in the same run.
//!
//! `cargo bench -p kpiflow-benches --bench consume` uses the embedded mock
//! cluster; set `KPIFLOW_BENCH_BROKERS=host:port` to use another broker
//! (its stream topics must be empty or absent; they are created, and a fence
//! record per partition follows the data — see `fence`).
//! `KPIFLOW_BENCH_RECORDS` (default 400000), `KPIFLOW_BENCH_PARTITIONS` per
//! topic (default 16; on the mock cluster records are spread round-robin, and
//! it keeps at most 5 MB per partition: 400000 records need 16) and
//! `KPIFLOW_BENCH_RUNS` (5). A run lasts ~0.4 s: with 100000 records (~0.1 s)
//! the source's fixed start and tail (its first fetch, the last batch's
//! linger) weighed 5–10 % and invocations swung by ±0.1; 8 partitions and
//! 100000 records remain a harder setting to try.
//! `KPIFLOW_BENCH_MALFORMED` (0.01) is the fraction of malformed records.
//! The source runs with a 5 ms linger (`KPIFLOW_BENCH_LINGER_MS`, default
//! 50 ms in production): with 50 ms the last partial batch of each stream
//! would wait up to 50 ms after its last record — a fixed delay, not a
//! throughput cost. A shorter linger only makes batches smaller, i.e. more
//! work per record.
//! `KPIFLOW_BENCH_SOURCE_PROPERTY=key=value,key=value` adds librdkafka properties.
//! `KPIFLOW_BENCH_DLQ=1` also produces the source's dead letters to `<topic>.dlq`.

use std::time::{Duration, Instant};

use kpiflow_benches::kafka::{assert_kept, fence, produce_spread};
use kpiflow_benches::{env_number, median};
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_types::Stream;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// Partitions per topic: `KPIFLOW_BENCH_PARTITIONS`, default 16.
fn partitions() -> i32 {
    env_number("KPIFLOW_BENCH_PARTITIONS", 16) as i32
}

/// librdkafka alone: every message of the stream topics, payload touched,
/// with the prefetch settings the source uses.
fn raw_consume(brokers: &str, n: u64) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kpiflow-bench-raw")
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("raw consumer");
    let mut tpl = TopicPartitionList::new();
    for s in Stream::ALL {
        for p in 0..partitions() {
            tpl.add_partition_offset(s.name(), p, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut count = 0u64;
    let mut bytes = 0usize;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while count < n {
        assert!(
            Instant::now() < deadline,
            "raw consumer: only {count} of {n} records in 300 s"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, |p| p.len());
            count += 1;
        }
    }
    std::hint::black_box(bytes);
    first.expect("some messages").elapsed()
}

/// rdkafka's StreamConsumer in a consumer group, `recv` in a loop: what the
/// source is built on, without decoding.
async fn stream_consume(brokers: &str, n: u64, run: usize) -> Duration {
    use rdkafka::consumer::StreamConsumer;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("kpiflow-bench-stream-{run}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("stream consumer");
    let topics: Vec<&str> = Stream::ALL.iter().map(|s| s.name()).collect();
    consumer.subscribe(&topics).unwrap();
    let mut count = 0u64;
    let mut bytes = 0usize;
    let mut first: Option<Instant> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while count < n {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => panic!("stream consumer: only {count} of {n} records in 300 s"),
            m = consumer.recv() => if let Ok(m) = m {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, |p| p.len());
                count += 1;
            }
        }
    }
    std::hint::black_box(bytes);
    first.expect("some messages").elapsed()
}

/// The kpiflow source, from its first record to its last row or dead letter.
async fn source_consume(brokers: &str, n: u64, run: usize) -> Duration {
    let mut config = SourceConfig::new(brokers, format!("kpiflow-bench-source-{run}"));
    config.properties = vec![("session.timeout.ms".into(), "6000".into())];
    config.linger = Duration::from_millis(env_number("KPIFLOW_BENCH_LINGER_MS", 5));
    config.dead_letter_topics = env_number("KPIFLOW_BENCH_DLQ", 0) == 1;
    if let Ok(extra) = std::env::var("KPIFLOW_BENCH_SOURCE_PROPERTY") {
        for (k, v) in extra.split(',').filter_map(|kv| kv.split_once('=')) {
            config.properties.push((k.into(), v.into()));
        }
    }
    let cancel = CancellationToken::new();
    let begun = Instant::now();
    let mut source = start(config, cancel.clone()).await.expect("source");
    // The clock starts when the source receives its first record (as for the
    // raw consumer), not when its first batch comes out.
    let watcher = {
        let handle = source.handle.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while handle
                .stats()
                .records
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
            {
                assert!(Instant::now() < deadline, "source: no record in 300 s");
                std::thread::sleep(Duration::from_micros(100));
            }
            Instant::now()
        })
    };
    let mut count = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while count < n {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => panic!("source: only {count} of {n} records in 300 s"),
            Some(batch) = source.batches.recv() => count += batch.rows.num_rows() as u64,
            Some(_) = source.dead_letters.recv() => count += 1,
        }
    }
    let took = watcher.join().expect("first record").elapsed();
    let stats = source.handle.stats();
    eprintln!(
        "    source: {:?} since start, {took:?} since its first record, {} batches, {} pauses, {} records dropped at revocation, {} records received",
        begun.elapsed(),
        stats.batches.load(std::sync::atomic::Ordering::Relaxed),
        stats.pauses.load(std::sync::atomic::Ordering::Relaxed),
        stats
            .revoked_records
            .load(std::sync::atomic::Ordering::Relaxed),
        stats.records.load(std::sync::atomic::Ordering::Relaxed),
    );
    cancel.cancel();
    let _ = source.task.await;
    took
}

/// `KPIFLOW_BENCH_MALFORMED`, default 0.01.
fn malformed_fraction() -> f64 {
    std::env::var("KPIFLOW_BENCH_MALFORMED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.01)
}

fn main() {
    let n = env_number("KPIFLOW_BENCH_RECORDS", 400_000);
    let runs = env_number("KPIFLOW_BENCH_RUNS", 5) as usize;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let embedded;
    let brokers = match std::env::var("KPIFLOW_BENCH_BROKERS") {
        Ok(b) => b,
        Err(_) => {
            embedded = EmbeddedKafka::start(1).expect("embedded cluster");
            embedded.create_stream_topics(partitions()).expect("topics");
            embedded.bootstrap_servers()
        }
    };
    let sim = SimConfig {
        seed: 4,
        scenario: Scenario::Peak,
        malformed: malformed_fraction(),
        ..SimConfig::default()
    };
    eprintln!("producing {n} records to {brokers}");
    if std::env::var("KPIFLOW_BENCH_BROKERS").is_ok() {
        let mut options = ProduceOptions::new(brokers.clone(), sim, 1e9, Limit::Count(n));
        options.partitions = partitions();
        options.create_topics = true;
        let summary = runtime
            .block_on(produce(
                &options,
                &Progress::default(),
                &CancellationToken::new(),
            ))
            .expect("produce the bench records");
        assert_eq!(summary.acked(), n);
        fence(&brokers, partitions());
    } else {
        produce_spread(&brokers, sim, n, partitions());
    }
    assert_kept(&brokers, partitions(), n);
    println!(
        "consume: {n} records ({:.1}% malformed), {runs} runs each, {brokers}",
        malformed_fraction() * 100.0
    );

    let mut raw = Vec::new();
    let mut ours = Vec::new();
    for run in 0..runs {
        let r = raw_consume(&brokers, n).as_secs_f64();
        let c = runtime
            .block_on(stream_consume(&brokers, n, run))
            .as_secs_f64();
        let s = runtime
            .block_on(source_consume(&brokers, n, run))
            .as_secs_f64();
        println!(
            "  run {run}: raw {:.0} rec/s, stream consumer {:.0} rec/s, kpiflow source {:.0} rec/s",
            n as f64 / r,
            n as f64 / c,
            n as f64 / s
        );
        raw.push(n as f64 / r);
        ours.push(n as f64 / s);
    }
    // Each run's raw and source passes are seconds apart: the median of the
    // per-run ratios is the steadier figure on a noisy machine.
    let paired = median(raw.iter().zip(&ours).map(|(r, o)| o / r).collect());
    let (raw, ours) = (median(raw), median(ours));
    println!(
        "median: raw librdkafka {raw:.0} rec/s, kpiflow source {ours:.0} rec/s, ratio {:.2}, median of per-run ratios {paired:.2}",
        ours / raw
    );
}
