//! A bad event time must not wreck a view (issue 10): through the real
//! decoder, source and engine (on librdkafka's mock cluster, behind the
//! pipeline runner), one event at i64::MAX, one in microseconds and one two
//! days ahead of the wall clock each end as a dead letter with a reason, and
//! the view's final rows are exactly those of the good events alone.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use datafusion::arrow::array::{Array, Int64Array, StringArray, TimestampMillisecondArray};
use kpiflow_engine::{Emit, Engine, EngineConfig};
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_pipeline::{Input, MemorySink, Pipeline, PipelineConfig};
use kpiflow_types::{Channel, DeadLetterKind, SaleKind, SalesEvent};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

const PER_MINUTE: &str = "SELECT sku, count(*) AS orders, sum(quantity) AS units FROM sales \
                          GROUP BY tumble(event_time, INTERVAL '1 minute'), sku";
const MINUTE: i64 = 60_000;
const GOOD: i64 = 300;

fn t0() -> i64 {
    Utc.with_ymd_and_hms(2026, 11, 11, 2, 0, 0)
        .unwrap()
        .timestamp_millis()
}

fn event(t: i64, i: i64) -> String {
    let sale = SalesEvent {
        event_time: Utc.timestamp_millis_opt(t).unwrap(),
        order_id: format!("O-{i}"),
        channel: Channel::Online,
        region: "east".into(),
        store_id: "S-1".into(),
        sku: format!("SKU-{}", i % 3),
        quantity: 1 + i % 4,
        unit_price: 10.0,
        amount: 10.0,
        kind: SaleKind::Order,
    };
    serde_json::to_string(&sale).unwrap()
}

/// The good events: `GOOD` over ten minutes, then one an hour later that
/// closes every window before it.
fn good_events() -> Vec<String> {
    let mut out: Vec<String> = (0..GOOD).map(|i| event(t0() + i * 2_000, i)).collect();
    out.push(event(t0() + 60 * MINUTE, GOOD));
    out
}

fn bad_events() -> Vec<String> {
    let with_time = |t: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&event(t0(), 999)).unwrap();
        v["event_time"] = serde_json::from_str(t).unwrap();
        v.to_string()
    };
    let micros = (t0() + 5 * MINUTE) * 1000;
    let ahead = Utc::now().timestamp_millis() + 2 * 86_400_000;
    vec![
        with_time("9223372036854775807"),
        with_time(&micros.to_string()),
        with_time(&ahead.to_string()),
    ]
}

/// Final rows of the view as (window start, sku) → (orders, units), and the
/// dead letters, after `events` went through Kafka, the source and the runner.
async fn run(
    events: &[String],
) -> (
    BTreeMap<(i64, String), (i64, i64)>,
    Vec<(DeadLetterKind, String)>,
) {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(1).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .unwrap();
    for e in events {
        producer
            .send(
                FutureRecord::<str, str>::to("sales").payload(e).key("k"),
                Duration::from_secs(10),
            )
            .await
            .expect("produce to the mock cluster");
    }
    let mut config = SourceConfig::new(kafka.bootstrap_servers(), "time-guards");
    config.properties = vec![("session.timeout.ms".into(), "6000".into())];
    config.streams = vec![kpiflow_types::Stream::Sales];
    let cancel = CancellationToken::new();
    let mut source = start(config, cancel.clone()).await.expect("source starts");
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    engine.create_view("v", PER_MINUTE).await.unwrap();
    let mut pipeline = Pipeline::new(engine, PipelineConfig::default());
    let sink = MemorySink::default();
    pipeline.add_sink(Box::new(sink.clone()));
    let stats = pipeline.stats();
    let run = tokio::spawn(pipeline.run(Input::from(&mut source), cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let n = events.len() as u64;
    while stats.rows().iter().sum::<u64>()
        + stats
            .dead_letters
            .load(std::sync::atomic::Ordering::Relaxed)
        < n
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {:?} rows and {} dead letters of {n} records arrived",
            stats.rows(),
            stats
                .dead_letters
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the pipeline stops")
        .unwrap()
        .unwrap();
    source.task.await.unwrap().unwrap();

    let mut finals = BTreeMap::new();
    for b in sink.batches("v", Emit::Final) {
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let starts = col("window_start");
        let starts = starts
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let skus = col("sku");
        let skus = skus.as_any().downcast_ref::<StringArray>().unwrap();
        let orders = col("orders");
        let orders = orders.as_any().downcast_ref::<Int64Array>().unwrap();
        let units = col("units");
        let units = units.as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            let previous = finals.insert(
                (starts.value(i), skus.value(i).to_owned()),
                (orders.value(i), units.value(i)),
            );
            assert!(previous.is_none(), "a window was final twice");
        }
    }
    assert!(sink.rows("v", Emit::Late) == 0, "no event here is late");
    let dead = sink
        .dead_letters()
        .into_iter()
        .map(|d| (d.kind, d.reason))
        .collect();
    (finals, dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_event_times_are_dead_letters_and_the_view_is_unchanged() {
    let good = good_events();
    let (expected, no_dead) = run(&good).await;
    assert!(no_dead.is_empty(), "{no_dead:?}");
    assert_eq!(
        expected.values().map(|(orders, _)| orders).sum::<i64>(),
        GOOD,
        "every good event in a final window"
    );

    // The bad events in the middle of the good ones.
    let mut mixed = good.clone();
    let bad = bad_events();
    mixed.splice(100..100, bad.iter().cloned());
    let (got, dead) = run(&mixed).await;
    assert_eq!(got, expected, "the view's final rows changed");
    assert_eq!(dead.len(), 3, "{dead:?}");
    let kinds: Vec<DeadLetterKind> = dead.iter().map(|d| d.0).collect();
    assert_eq!(
        kinds,
        [
            DeadLetterKind::TimeOutOfRange,
            DeadLetterKind::TimeOutOfRange,
            DeadLetterKind::FutureTime
        ]
    );
    for (_, reason) in &dead {
        assert!(reason.contains("event_time"), "{reason}");
    }
}
