//! The source's two threads under a stalled or departed downstream (mock
//! cluster): what it holds while paused is bounded, and it stops promptly
//! when cancelled or when nobody reads its batches any more.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_ingest::source::{SourceConfig, start};
use tokio_util::sync::CancellationToken;

fn mock_source_config(kafka: &EmbeddedKafka, group: &str) -> SourceConfig {
    let mut config = SourceConfig::new(kafka.bootstrap_servers(), group);
    config.properties = vec![("session.timeout.ms".into(), "6000".into())];
    config
}

async fn produce_records(kafka: &EmbeddedKafka, n: u64) {
    let sim = SimConfig {
        seed: 21,
        scenario: Scenario::Normal,
        malformed: 0.0,
        ..SimConfig::default()
    };
    let mut options = ProduceOptions::new(kafka.bootstrap_servers(), sim, 1e9, Limit::Count(n));
    options.create_topics = false;
    let summary = produce(&options, &Progress::default(), &CancellationToken::new())
        .await
        .expect("produce");
    assert_eq!(summary.acked(), n);
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
    let at_pause = stats.records.load(Ordering::Relaxed);
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
    let mut config = mock_source_config(&kafka, "dropped");
    config.idle_timeout = Duration::from_millis(200);
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
