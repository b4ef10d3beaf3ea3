//! The source under injected broker faults (librdkafka's mock cluster) and
//! with bad configuration: retried and nothing lost, or a clear error in
//! bounded time.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use kpiflow_ingest::Error;
use kpiflow_ingest::embedded::{EmbeddedKafka, FaultyApi};
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_types::source::{OFFSET_COLUMN, PARTITION_COLUMN};
use tokio_util::sync::CancellationToken;

mod common;
use common::mock_source_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_are_retried_and_nothing_is_lost() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(4).unwrap();
    let n = 20_000u64;
    let sim = SimConfig {
        seed: 12,
        scenario: Scenario::Fault,
        malformed: 0.05,
        ..SimConfig::default()
    };
    let mut options =
        ProduceOptions::new(kafka.bootstrap_servers(), sim, 50_000.0, Limit::Count(n));
    options.create_topics = false;
    kafka.fail_requests(FaultyApi::Produce, 30);
    let summary = produce(&options, &Progress::default(), &CancellationToken::new())
        .await
        .expect("produce despite request errors");
    assert_eq!(
        summary.acked(),
        n,
        "every record acknowledged after retries"
    );

    kafka.fail_requests(FaultyApi::Fetch, 30);
    let cancel = CancellationToken::new();
    let mut source = start(mock_source_config(&kafka, "faults"), cancel.clone())
        .await
        .expect("source starts");
    let mut seen: HashSet<(String, i32, i64)> = HashSet::new();
    let mut per_topic: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut injected_again = false;
    while (seen.len() as u64) < n {
        if !injected_again && seen.len() as u64 > n / 2 {
            // More faults while consuming.
            kafka.fail_requests(FaultyApi::Fetch, 20);
            injected_again = true;
        }
        tokio::select! {
            Some(batch) = source.batches.recv() => {
                let rows = &batch.rows;
                let partitions = rows.column_by_name(PARTITION_COLUMN).unwrap().as_primitive::<Int32Type>();
                let offsets = rows.column_by_name(OFFSET_COLUMN).unwrap().as_primitive::<Int64Type>();
                for i in 0..rows.num_rows() {
                    let key = (batch.stream.name().to_owned(), partitions.value(i), offsets.value(i));
                    assert!(seen.insert(key.clone()), "{key:?} delivered twice");
                }
                per_topic.entry(batch.stream.name().to_owned()).or_default().0 += rows.num_rows() as u64;
            }
            Some(dead) = source.dead_letters.recv() => {
                let key = (dead.topic.clone(), dead.partition, dead.offset);
                assert!(seen.insert(key.clone()), "{key:?} delivered twice");
                per_topic.entry(dead.topic.clone()).or_default().1 += 1;
            }
            _ = tokio::time::sleep_until(deadline) => panic!("only {} of {n} records arrived", seen.len()),
        }
    }
    for (topic, t) in &summary.topics {
        assert_eq!(
            per_topic.get(topic).copied().unwrap_or_default(),
            (t.good, t.malformed_total()),
            "{topic}"
        );
    }
    cancel.cancel();
    source.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unknown_client_property_is_named() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(1).unwrap();
    let mut config = mock_source_config(&kafka, "bad-property");
    config
        .properties
        .push(("fetch.max.byts".into(), "1000".into()));
    let err = start(config, CancellationToken::new())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, Error::ClientConfig(_)), "{err}");
    assert!(err.to_string().contains("fetch.max.byts"), "{err}");
}

#[tokio::test]
async fn a_missing_topic_is_named_with_the_fix() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let err = start(
        mock_source_config(&kafka, "no-topics"),
        CancellationToken::new(),
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, Error::Topic { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("'sales'")
            && text.contains("does not exist")
            && text.contains("kpiflow produce"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_broker_fails_within_the_timeout() {
    let mut config = SourceConfig::new("127.0.0.1:1", "unreachable");
    config.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = start(config, CancellationToken::new())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, Error::BrokerUnreachable { .. }), "{err}");
    assert!(err.to_string().contains("--brokers"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
