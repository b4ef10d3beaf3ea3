//! The source reports what it does through the `metrics` crate: records,
//! bytes, batches, rows, dead letters by reason, consumer lag and decode time.
//! Its own test binary, because the recorder is process-wide.

use std::collections::HashMap;
use std::time::Duration;

use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_ingest::source::{SourceConfig, start};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_metrics_count_what_happened() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(2).unwrap();
    let n = 3_000u64;
    let sim = SimConfig {
        seed: 8,
        scenario: Scenario::Normal,
        malformed: 0.1,
        ..SimConfig::default()
    };
    let mut options =
        ProduceOptions::new(kafka.bootstrap_servers(), sim, 50_000.0, Limit::Count(n));
    options.create_topics = false;
    let summary = produce(&options, &Progress::default(), &CancellationToken::new())
        .await
        .unwrap();

    let mut config = SourceConfig::new(kafka.bootstrap_servers(), "metrics");
    config.properties = vec![("session.timeout.ms".into(), "6000".into())];
    let cancel = CancellationToken::new();
    let mut source = start(config, cancel.clone()).await.unwrap();
    let mut received = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received < n {
        tokio::select! {
            Some(batch) = source.batches.recv() => received += batch.rows.num_rows() as u64,
            Some(_) = source.dead_letters.recv() => received += 1,
            _ = tokio::time::sleep_until(deadline) => panic!("only {received} of {n} records arrived"),
        }
    }
    // Let a progress batch report lag after the last records.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while source.batches.try_recv().is_ok() {}

    let mut counters: HashMap<String, u64> = HashMap::new();
    let mut dead_by_reason: HashMap<String, u64> = HashMap::new();
    let mut lag_partitions = 0;
    let mut decode_samples = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_owned();
        match value {
            DebugValue::Counter(v) => {
                *counters.entry(name.clone()).or_default() += v;
                if name == "kpiflow_ingest_dead_letters_total" {
                    let reason = key
                        .key()
                        .labels()
                        .find(|l| l.key() == "reason")
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default();
                    *dead_by_reason.entry(reason).or_default() += v;
                }
            }
            DebugValue::Gauge(_) if name == "kpiflow_ingest_consumer_lag" => lag_partitions += 1,
            DebugValue::Histogram(samples) if name == "kpiflow_ingest_decode_seconds" => {
                decode_samples += samples.len()
            }
            _ => {}
        }
    }
    let good: u64 = summary.topics.values().map(|t| t.good).sum();
    let bad: u64 = summary.topics.values().map(|t| t.malformed_total()).sum();
    assert_eq!(
        counters.get("kpiflow_ingest_records_total"),
        Some(&n),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("kpiflow_ingest_rows_total"),
        Some(&good),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("kpiflow_ingest_dead_letters_total"),
        Some(&bad),
        "{counters:?}"
    );
    assert!(
        counters
            .get("kpiflow_ingest_bytes_total")
            .is_some_and(|b| *b > n * 100)
    );
    assert!(
        counters
            .get("kpiflow_ingest_batches_total")
            .is_some_and(|b| *b > 0)
    );
    for reason in [
        "invalid_json",
        "wrong_type",
        "missing_field",
        "bad_timestamp",
    ] {
        assert!(
            dead_by_reason.get(reason).is_some_and(|c| *c > 0),
            "{dead_by_reason:?}"
        );
    }
    assert_eq!(lag_partitions, 8, "a lag gauge per topic partition");
    assert!(decode_samples > 0);
    cancel.cancel();
    source.task.await.unwrap().unwrap();
}
