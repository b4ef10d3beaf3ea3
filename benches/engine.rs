//! Engine throughput on pre-decoded sales batches (criterion), per core: the
//! engine runs on one thread. Each sample pushes 48 batches of 8,192 events
//! (2,000 events per second of event time, so 1-minute windows close as it
//! goes) through a fresh engine with one view.
//!
//! Baseline in the same run: DataFusion's own batch GROUP BY of the same
//! events (`datafusion_batch`), the cost the engine pays once per event
//! without incremental state, emission and watermarks.
//!
//! `cargo bench -p kpiflow-benches --bench engine`

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use kpiflow_benches::sales_batches;
use kpiflow_engine::{Engine, EngineConfig};
use kpiflow_types::SourceBatch;

const BATCHES: usize = 48;
const ROWS: usize = 8_192;
const SKUS: usize = 1_000;

const VIEWS: &[(&str, &str)] = &[
    (
        "tumble_1min_sum_count",
        "SELECT sku, count(*) AS orders, sum(amount) AS revenue FROM sales GROUP BY tumble(event_time, INTERVAL '1 minute'), sku",
    ),
    (
        "tumble_1h_sum_count",
        "SELECT sku, count(*) AS orders, sum(amount) AS revenue FROM sales GROUP BY tumble(event_time, INTERVAL '1 hour'), sku",
    ),
    (
        "hop_10min_1min_count",
        "SELECT sku, count(*) AS orders FROM sales GROUP BY hop(event_time, INTERVAL '1 minute', INTERVAL '10 minutes'), sku",
    ),
];

fn engine_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let batches: Vec<SourceBatch> = sales_batches(BATCHES, ROWS, SKUS, 2_000);
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements((BATCHES * ROWS) as u64));
    group.sample_size(10);
    for (name, sql) in VIEWS {
        group.bench_function(*name, |b| {
            b.iter_batched(
                || {
                    let mut engine = Engine::new(EngineConfig::default()).unwrap();
                    rt.block_on(engine.create_view("v", sql)).unwrap();
                    engine
                },
                |mut engine| {
                    for batch in &batches {
                        rt.block_on(engine.push(batch)).unwrap();
                    }
                    engine
                },
                BatchSize::PerIteration,
            )
        });
    }
    let rows: Vec<_> = batches.iter().map(|b| b.rows.clone()).collect();
    group.bench_function("datafusion_batch", |b| {
        b.iter_batched(
            || {
                let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
                let table = MemTable::try_new(rows[0].schema(), vec![rows.clone()]).unwrap();
                ctx.register_table("sales", Arc::new(table)).unwrap();
                ctx
            },
            |ctx| {
                rt.block_on(async {
                    ctx.sql("SELECT date_bin(INTERVAL '1 minute', event_time) AS w, sku, count(*), sum(amount) FROM sales GROUP BY 1, 2")
                        .await
                        .unwrap()
                        .collect()
                        .await
                        .unwrap()
                })
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
