
use kpiflow_tests::sales::*;
use kpiflow_engine::{Emit, Engine, EngineConfig, MemorySink};
use kpiflow_types::Stream;

#[tokio::test]
async fn tumble_sum_and_count_close_with_the_watermark() {
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let sink = MemorySink::default();
    engine.add_sink(Box::new(sink.clone()));
    let info = engine
        .create_view(
            "per_minute",
            "SELECT sku, count(*) AS orders, sum(amount) AS revenue FROM sales GROUP BY tumble(event_time, INTERVAL '1 minute'), sku",
        )
        .await
        .unwrap();
    println!("{:?}", info.schema);
    let rows = sales_rows(
        &[
            sale(1_000, 0, "A", "online", 1, 10.0),
            sale(2_000, 0, "B", "online", 1, 5.0),
            sale(59_000, 0, "A", "online", 1, 1.0),
            sale(61_000, 0, "A", "online", 1, 100.0),
        ],
        0,
    );
    engine
        .push(&batch(
            Stream::Sales,
            rows,
            vec![progress(0, Some(61_000), false)],
        ))
        .await
        .unwrap();
    assert_eq!(sink.rows("per_minute", Emit::Final), 0);
    let rows = sales_rows(&[sale(66_000, 0, "B", "online", 1, 1.0)], 4);
    engine
        .push(&batch(
            Stream::Sales,
            rows,
            vec![progress(0, Some(66_000), false)],
        ))
        .await
        .unwrap();
    let out = pretty(&sink.batches("per_minute", Emit::Final));
    println!("{out}");
    assert_eq!(sink.rows("per_minute", Emit::Final), 2);
    engine.tick(0).await.unwrap();
    let live = engine
        .context()
        .sql("SELECT * FROM live.per_minute ORDER BY window_start, sku")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    println!("{}", pretty(&live));
    // A late event for the first minute.
    let rows = sales_rows(&[sale(3_000, 0, "A", "online", 1, 7.0)], 5);
    engine
        .push(&batch(
            Stream::Sales,
            rows,
            vec![progress(0, Some(66_000), false)],
        ))
        .await
        .unwrap();
    println!("{}", pretty(&sink.batches("per_minute", Emit::Late)));
    assert_eq!(sink.rows("per_minute", Emit::Late), 1);
}
