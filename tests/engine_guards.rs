//! The engine against input that must not break it: event times no window
//! can hold, a watermark that jumps a year, a batch with the wrong columns,
//! a join whose other side never closes, and idle input that never saw an
//! event.

use std::time::Duration;

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use kpiflow_engine::{
    Emit, Engine, EngineConfig, Error, ErrorClass, LATE_REASON, MAX_EVENT_TIME_MS,
};
use kpiflow_tests::Emitted;
use kpiflow_tests::sales::*;
use kpiflow_types::{SourceBatch, Stream};

const PER_MINUTE: &str = "SELECT sku, count(*) AS orders FROM sales \
                          GROUP BY tumble(event_time, INTERVAL '1 minute'), sku";
const MINUTE: i64 = 60_000;
/// The two inputs of the join tests: sales and production per minute and SKU.
const SALES_VIEW: (&str, &str) = (
    "s",
    "SELECT sku, count(*) AS orders FROM sales GROUP BY tumble(event_time, INTERVAL '1 minute'), sku",
);
const PRODUCTION_VIEW: (&str, &str) = (
    "p",
    "SELECT sku, sum(quantity_good) AS made FROM production GROUP BY tumble(event_time, INTERVAL '1 minute'), sku",
);
const YEAR: i64 = 365 * 86_400_000;
/// A hang shows up as this timeout, not as a test that never ends.
const HANG: Duration = Duration::from_secs(60);

async fn engine_with(config: EngineConfig, views: &[(&str, &str)]) -> Engine {
    let mut engine = Engine::new(config).unwrap();
    for (name, sql) in views {
        engine.create_view(name, sql).await.unwrap();
    }
    engine
}

fn push_of(sales: &[Sale], first_offset: i64, max: Option<i64>, idle: bool) -> SourceBatch {
    batch(
        Stream::Sales,
        sales_rows(sales, first_offset),
        vec![progress(0, max, idle)],
    )
}

/// One sale at `t` on partition 0, its time the partition's latest.
fn one(t: i64, offset: i64, sku: &str) -> SourceBatch {
    push_of(&[sale(t, 0, sku, "online", 1, 1.0)], offset, Some(t), false)
}

fn orders(batches: &[RecordBatch]) -> i64 {
    batches
        .iter()
        .map(|b| {
            let c = b.column_by_name("orders").unwrap();
            let c = c
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap();
            c.iter().flatten().sum::<i64>()
        })
        .sum()
}

#[tokio::test]
async fn an_event_time_no_window_can_hold_is_a_late_row_and_moves_nothing() {
    let mut engine = engine_with(EngineConfig::default(), &[("v", PER_MINUTE)]).await;
    let mut sink = Emitted::default();
    let t0 = 1_790_000_000_000;
    // One good event, then i64::MAX and i64::MIN as a source without the
    // ingest guards would hand them over (its progress says i64::MAX too).
    let rows = [
        sale(t0, 0, "A", "online", 1, 1.0),
        sale(i64::MAX, 0, "A", "online", 1, 1.0),
        sale(i64::MIN + 1, 0, "A", "online", 1, 1.0),
    ];
    tokio::time::timeout(HANG, engine.push(&push_of(&rows, 0, Some(i64::MAX), false)))
        .await
        .expect("the engine hung on i64::MAX")
        .unwrap();
    // The partition's reported latest time is no time: it holds the
    // watermark instead of moving it to the year 9999.
    assert_eq!(engine.watermark("v"), None, "the watermark moved");
    let late = sink.collect(&mut engine).batches("v", Emit::Late);
    let reasons: Vec<String> = late
        .iter()
        .flat_map(|b| {
            let r = b.column_by_name(LATE_REASON).unwrap();
            let r = r.as_any().downcast_ref::<StringArray>().unwrap().clone();
            (0..r.len()).map(move |i| r.value(i).to_owned())
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("outside the supported range")),
        "{reasons:?}"
    );
    // The good event's window closes as usual.
    engine.push(&one(t0 + 2 * MINUTE, 3, "B")).await.unwrap();
    assert_eq!(
        orders(&sink.collect(&mut engine).batches("v", Emit::Final)),
        1
    );
    assert!(engine.watermark("v").unwrap() < MAX_EVENT_TIME_MS);
}

#[tokio::test]
async fn a_watermark_jumping_a_year_closes_the_open_windows_in_time_of_the_state() {
    // One-second hop windows of a minute: a year is 31.5M windows, and
    // closing them one by one would take far longer than HANG.
    let hop = "SELECT sku, count(*) AS orders FROM sales \
               GROUP BY hop(event_time, INTERVAL '1 second', INTERVAL '1 minute'), sku";
    let mut engine = engine_with(EngineConfig::default(), &[("v", hop), ("m", PER_MINUTE)]).await;
    let mut sink = Emitted::default();
    let t0 = 1_790_000_000_000;
    let first: Vec<Sale> = (0..100)
        .map(|i| sale(t0 + i * 1_000, 0, &format!("S{}", i % 7), "online", 1, 1.0))
        .collect();
    engine
        .push(&push_of(&first, 0, Some(t0 + 99_000), false))
        .await
        .unwrap();
    // All idle, then a batch a year later.
    engine
        .push(&push_of(&[], 100, Some(t0 + 99_000), true))
        .await
        .unwrap();
    let later = [sale(t0 + YEAR, 0, "S1", "online", 1, 1.0)];
    tokio::time::timeout(
        HANG,
        engine.push(&push_of(&later, 100, Some(t0 + YEAR), false)),
    )
    .await
    .expect("closing a year of windows took longer than the state allows")
    .unwrap();
    let out = sink.collect(&mut engine);
    assert_eq!(
        orders(&out.batches("m", Emit::Final)),
        100,
        "every minute window of the first events closed"
    );
    // Each event is in 60 one-second-sliding windows.
    assert_eq!(orders(&out.batches("v", Emit::Final)), 100 * 60);
    let stats = engine.stats("v").unwrap();
    assert!(stats.open_groups <= 60, "{stats:?}");
}

#[tokio::test]
async fn a_batch_without_its_streams_columns_is_applied_to_no_view() {
    let mut engine = engine_with(EngineConfig::default(), &[("v", PER_MINUTE)]).await;
    let mut sink = Emitted::default();
    let t0 = 1_790_000_000_000;
    engine.push(&one(t0, 0, "A")).await.unwrap();
    let before = engine.stats("v").unwrap();
    let rows = sales_rows(&[sale(t0 + 1, 0, "A", "online", 1, 1.0)], 1);
    let wrong = rows.project(&[0, 1, 2]).unwrap();
    let err = engine
        .push(&batch(
            Stream::Sales,
            wrong,
            vec![progress(0, Some(t0 + 5 * MINUTE), false)],
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Batch { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::BadInput);
    assert_eq!(
        engine.stats("v").unwrap(),
        before,
        "the refused batch changed the view"
    );
    // The engine goes on.
    engine.push(&one(t0 + 2 * MINUTE, 1, "A")).await.unwrap();
    assert_eq!(
        orders(&sink.collect(&mut engine).batches("v", Emit::Final)),
        1
    );
}

#[tokio::test]
async fn rows_a_join_waits_for_are_capped_and_counted() {
    let config = EngineConfig {
        join_pending_rows: 10,
        ..EngineConfig::default()
    };
    let views = [
        SALES_VIEW,
        PRODUCTION_VIEW,
        (
            "j",
            "SELECT s.sku, s.orders, p.made FROM s JOIN p ON s.window_start = p.window_start AND s.sku = p.sku",
        ),
    ];
    let mut engine = engine_with(config, &views).await;
    let t0 = 1_790_000_000_000;
    // Production never says anything: 20 minutes of sales wait for it.
    for m in 0..20 {
        let rows = [sale(t0 + m * MINUTE, 0, "A", "online", 1, 1.0)];
        engine
            .push(&push_of(&rows, m, Some(t0 + m * MINUTE), false))
            .await
            .unwrap();
    }
    let stats = engine.stats("j").unwrap();
    assert!(stats.open_groups <= 10, "{stats:?}");
    assert!(stats.join_dropped >= 9, "{stats:?}");
}

#[tokio::test]
async fn idle_input_that_never_saw_an_event_moves_with_the_clock_and_releases_joins() {
    let views = [
        SALES_VIEW,
        PRODUCTION_VIEW,
        (
            "j",
            "SELECT s.sku, s.orders, p.made FROM s LEFT JOIN p ON s.window_start = p.window_start AND s.sku = p.sku",
        ),
    ];
    let mut engine = engine_with(EngineConfig::default(), &views).await;
    let mut sink = Emitted::default();
    let t0 = 1_790_000_000_000;
    engine
        .push(&push_of(
            &[sale(t0, 0, "A", "online", 1, 1.0)],
            0,
            Some(t0),
            true,
        ))
        .await
        .unwrap();
    // Production's one partition: idle, never an event.
    engine
        .push(&batch(
            Stream::Production,
            RecordBatch::new_empty(Stream::Production.source_schema()),
            vec![progress(0, None, true)],
        ))
        .await
        .unwrap();
    assert_eq!(engine.watermark("p"), None);
    let now = t0 + 10 * MINUTE;
    engine.tick(now).await.unwrap();
    assert_eq!(engine.watermark("p"), Some(now - 5_000));
    // Two minutes on, the sales window has closed by the clock too.
    engine.tick(now + 2 * MINUTE).await.unwrap();
    assert_eq!(engine.watermark("p"), Some(now + 2 * MINUTE - 5_000));
    let joined = sink.collect(&mut engine).batches("j", Emit::Final);
    assert_eq!(joined.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
}
