//! `produce` against a real broker (tansu): every acknowledged record can be
//! consumed, byte for byte; keys land on the partition the Java client's
//! partitioner gives them; the malformed fraction is the one asked for.

use std::collections::HashMap;
use std::time::Duration;

use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig, Simulator};
use kpiflow_tests::{fence, high_watermarks, java_partition, read_appended, test_brokers};
use kpiflow_types::{EquipmentEvent, LogisticsEvent, ProductionEvent, SalesEvent, Stream};
use tokio_util::sync::CancellationToken;

const TOPICS: [&str; 4] = ["sales", "production", "logistics", "equipment"];

fn parses(stream: Stream, payload: &[u8]) -> bool {
    match stream {
        Stream::Sales => serde_json::from_slice::<SalesEvent>(payload).is_ok(),
        Stream::Production => serde_json::from_slice::<ProductionEvent>(payload).is_ok(),
        Stream::Logistics => serde_json::from_slice::<LogisticsEvent>(payload).is_ok(),
        Stream::Equipment => serde_json::from_slice::<EquipmentEvent>(payload).is_ok(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_is_consumed_on_its_key_partition() {
    let brokers = test_brokers();
    let n: u64 = 20_000;
    let sim = SimConfig {
        seed: 2026,
        scenario: Scenario::Peak,
        malformed: 0.1,
        out_of_order: 0.05,
        ..SimConfig::default()
    };
    // Earlier tests' newest batches come into view with ours (see `fence`).
    fence(&brokers, &TOPICS);
    let before = high_watermarks(&brokers, &TOPICS);
    let options = ProduceOptions::new(brokers.clone(), sim.clone(), 20_000.0, Limit::Count(n));
    let summary = produce(&options, &Progress::default(), &CancellationToken::new())
        .await
        .expect("produce to the test broker");
    assert_eq!(summary.failed(), 0);
    assert_eq!(summary.acked(), n);

    let consumed = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || {
            fence(&brokers, &TOPICS);
            read_appended(&brokers, &TOPICS, &before, Duration::from_secs(60))
        }
    })
    .await
    .unwrap();

    // Byte for byte, the records the simulator makes for this seed.
    let mut expected: HashMap<(String, Vec<u8>, Vec<u8>), i64> = HashMap::new();
    for r in Simulator::new(sim).take(n as usize) {
        *expected
            .entry((r.stream.name().to_owned(), r.key.into_bytes(), r.payload))
            .or_default() += 1;
    }
    let mut got: HashMap<(String, Vec<u8>, Vec<u8>), i64> = HashMap::new();
    for c in &consumed {
        *got.entry((c.topic.clone(), c.key.clone(), c.payload.clone()))
            .or_default() += 1;
    }
    assert_eq!(consumed.len() as u64, n, "consumed vs acknowledged");
    assert!(
        got == expected,
        "consumed records differ from those produced"
    );

    // Keys on the Java client's partition.
    for c in &consumed {
        let partitions = summary.topics[&c.topic].partitions;
        assert_eq!(
            c.partition,
            java_partition(&c.key, partitions),
            "{} key {} on partition {}",
            c.topic,
            String::from_utf8_lossy(&c.key),
            c.partition
        );
    }

    // The malformed fraction matches the option, and the summary counts them exactly.
    let malformed = consumed
        .iter()
        .filter(|c| !parses(c.topic.parse().unwrap(), &c.payload))
        .count() as u64;
    let reported: u64 = summary.topics.values().map(|t| t.malformed_total()).sum();
    assert_eq!(malformed, reported);
    let fraction = malformed as f64 / n as f64;
    assert!(
        (fraction - 0.1).abs() < 0.01,
        "malformed fraction {fraction}"
    );
    for topic in TOPICS {
        assert!(
            consumed.iter().any(|c| c.topic == topic),
            "nothing consumed from {topic}"
        );
    }
}
