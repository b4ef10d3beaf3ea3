//! The broker goes down in the middle of the stream and comes back, once for
//! less than the consumer's session and once for longer (the member's
//! partitions are lost and assigned to it again): the durable pipeline
//! (Delta sink, checkpoints every second) ends with every record in `raw.*`
//! or `deadletters.*` exactly once — none lost, none twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::array::{Array, Int64Array};
use kpiflow_engine::{Engine, EngineConfig};
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_pipeline::{Durability, Input, PipelineConfig};
use kpiflow_storage::{Catalog, DataLocation, StoreOptions};
use kpiflow_types::Stream;
use tokio_util::sync::CancellationToken;

const RECORDS: u64 = 20_000;
/// The consumer's session.
const SESSION_MS: u64 = 6_000;

async fn scalar(catalog: &Catalog, sql: &str) -> i64 {
    let batches = catalog.query(sql).await.unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shorter_than_the_session_loses_and_doubles_nothing() {
    outage(Duration::from_secs(3), 5).await;
}

// The session times out: librdkafka reports the assignment lost and the
// member rejoins. Before the fix, commits during the rejoin restarted it
// for good (2,954 of 20,000 records taken 120 s later), and once the
// partitions came back they were read again from the committed offsets,
// behind what had been delivered (11,611 rows in raw.sales, 10,555 distinct).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_session_loses_and_doubles_nothing() {
    outage(Duration::from_millis(SESSION_MS + 3_000), 6).await;
}

async fn outage(length: Duration, seed: u64) {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(2).unwrap();
    let sim = SimConfig {
        seed,
        scenario: Scenario::Normal,
        malformed: 0.02,
        ..SimConfig::default()
    };
    let mut options = ProduceOptions::new(
        kafka.bootstrap_servers(),
        sim,
        200_000.0,
        Limit::Count(RECORDS),
    );
    options.partitions = 2;
    options.create_topics = false;
    let summary = produce(&options, &Progress::default(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.acked(), RECORDS);

    let dir = tempfile::tempdir().unwrap();
    let location =
        DataLocation::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    let durability = Durability {
        location: location.clone(),
        pipeline_id: "outage".into(),
        keep_checkpoints: 3,
        raw: Stream::ALL.into_iter().collect(),
    };
    let config = PipelineConfig {
        checkpoint_interval: Some(Duration::from_secs(1)),
        ..PipelineConfig::default()
    };
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let recovered = kpiflow_pipeline::recover(engine, config, &durability)
        .await
        .unwrap();
    let mut source_config = SourceConfig::new(kafka.bootstrap_servers(), "outage");
    source_config.properties = vec![("session.timeout.ms".into(), SESSION_MS.to_string())];
    // Small batches, so that the outage falls in the middle of the stream.
    source_config.max_batch_rows = 64;
    source_config.start_offsets = recovered.start_offsets;
    let cancel = CancellationToken::new();
    // A failed assertion must still stop the source's threads, or the
    // runtime waits for them forever.
    let _stop = cancel.clone().drop_guard();
    let mut source = start(source_config, cancel.clone()).await.unwrap();
    let stats = recovered.pipeline.stats();
    let handle = source.handle.clone();
    let run = tokio::spawn(
        recovered
            .pipeline
            .run(Input::from(&mut source), cancel.clone()),
    );
    let taken = || stats.rows().iter().sum::<u64>() + stats.dead_letters.load(Ordering::Relaxed);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while taken() < RECORDS / 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = taken();

    eprintln!("{before} records taken; broker down for {length:?}");
    kafka.broker_down(1).unwrap();
    tokio::time::sleep(length).await;
    kafka.broker_up(1).unwrap();
    eprintln!("{} records taken; broker up", taken());
    assert!(
        before < RECORDS,
        "the outage came in the middle of the stream"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while taken() < RECORDS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {RECORDS} records taken 120 s after the outage",
            taken()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything taken twice would show up here or in the tables.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the pipeline stops")
        .unwrap()
        .unwrap();
    source.task.await.unwrap().unwrap();
    let assignments = handle.stats().assignments.load(Ordering::Relaxed);
    eprintln!(
        "{assignments} assignments; {} records read again after the partitions came back, skipped",
        handle.stats().redelivered_records.load(Ordering::Relaxed)
    );
    if length > Duration::from_millis(SESSION_MS) {
        assert!(
            assignments >= 2,
            "the session outlived: the partitions were lost and assigned again ({assignments} assignments)"
        );
    }

    let catalog = Catalog::open(&location).await.unwrap();
    let mut rows = 0;
    let mut per_topic = HashMap::new();
    for stream in Stream::ALL {
        let raw = format!("raw.{stream}");
        let n = scalar(&catalog, &format!("SELECT count(*) FROM {raw}")).await;
        let distinct = scalar(
            &catalog,
            &format!("SELECT count(*) FROM (SELECT DISTINCT _partition, _offset FROM {raw})"),
        )
        .await;
        assert_eq!(n, distinct, "{raw}: every record once");
        let dead = scalar(
            &catalog,
            &format!("SELECT count(*) FROM deadletters.{stream}"),
        )
        .await;
        let dead_distinct = scalar(
            &catalog,
            &format!(
                "SELECT count(*) FROM (SELECT DISTINCT \"partition\", \"offset\" FROM deadletters.{stream})"
            ),
        )
        .await;
        assert_eq!(
            dead, dead_distinct,
            "deadletters.{stream}: every record once"
        );
        rows += n + dead;
        per_topic.insert(stream.name().to_owned(), (n, dead));
    }
    let expected: BTreeSet<_> = summary
        .topics
        .iter()
        .map(|(t, s)| (t.clone(), (s.good as i64, s.malformed_total() as i64)))
        .collect();
    let got: BTreeSet<_> = per_topic.into_iter().collect();
    assert_eq!(
        got, expected,
        "rows and dead letters per topic: (stored, expected)"
    );
    assert_eq!(rows, RECORDS as i64);
}
