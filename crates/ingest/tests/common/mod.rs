//! Set-up shared by the source's tests on the mock cluster.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_ingest::source::SourceConfig;
use tokio_util::sync::CancellationToken;

/// A source of `group` on the mock cluster.
pub fn mock_source_config(kafka: &EmbeddedKafka, group: &str) -> SourceConfig {
    let mut config = SourceConfig::new(kafka.bootstrap_servers(), group);
    // Mock consumers should notice a dead member quickly.
    config.properties = vec![("session.timeout.ms".into(), "6000".into())];
    config
}

/// Produces `n` simulator records (normal scenario, `malformed` of them
/// bad) into the stream topics already created, and checks all were acknowledged.
pub async fn produce_seeded(kafka: &EmbeddedKafka, n: u64, seed: u64, malformed: f64) {
    let sim = SimConfig {
        seed,
        scenario: Scenario::Normal,
        malformed,
        ..SimConfig::default()
    };
    let mut options = ProduceOptions::new(kafka.bootstrap_servers(), sim, 1e9, Limit::Count(n));
    options.create_topics = false;
    let summary = produce(&options, &Progress::default(), &CancellationToken::new())
        .await
        .expect("produce");
    assert_eq!(summary.acked(), n);
}
