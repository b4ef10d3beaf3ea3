//! Seeded data shared by every benchmark: the simulator's records, so benches
//! measure what production sees (same field mix, sizes and key spread).

use std::sync::Arc;

pub mod kafka;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use kpiflow_ingest::simulator::{Scenario, SimConfig, SimRecord, Simulator};
use kpiflow_types::{PartitionProgress, SourceBatch, Stream};

/// The first `n` well-formed records of `stream` for a fixed seed.
pub fn records(stream: Stream, n: usize) -> Vec<SimRecord> {
    Simulator::new(SimConfig {
        seed: 1_111,
        scenario: Scenario::Peak,
        ..SimConfig::default()
    })
    .filter(|r| r.stream == stream)
    .take(n)
    .collect()
}

/// Mean payload size in bytes.
pub fn mean_size(records: &[SimRecord]) -> f64 {
    records.iter().map(|r| r.payload.len()).sum::<usize>() as f64 / records.len() as f64
}

/// Pre-decoded sales batches for engine benches: `batches` × `rows` events,
/// `per_second` events per second of event time from 2026-11-11T00:00Z,
/// spread evenly over `keys` SKUs (`SKU-0000`, …) and 4 partitions, each
/// order id unique.
pub fn sales_batches(
    batches: usize,
    rows: usize,
    keys: usize,
    per_second: i64,
) -> Vec<SourceBatch> {
    const START: i64 = 1_794_355_200_000;
    let schema = Stream::Sales.source_schema();
    let skus: Vec<String> = (0..keys).map(|k| format!("SKU-{k:04}")).collect();
    let mut out = Vec::with_capacity(batches);
    let mut n: i64 = 0;
    for _ in 0..batches {
        let ids: Vec<i64> = (n..n + rows as i64).collect();
        n += rows as i64;
        let times: Vec<i64> = ids.iter().map(|i| START + i * 1000 / per_second).collect();
        let text = |f: &dyn Fn(i64) -> String| -> ArrayRef {
            Arc::new(StringArray::from(
                ids.iter().map(|&i| f(i)).collect::<Vec<_>>(),
            ))
        };
        let channels = ["online", "retail", "dealer"];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(times.clone()).with_timezone("UTC")),
            text(&|i| format!("SO-{i:010}")),
            text(&|i| channels[(i % 3) as usize].to_owned()),
            text(&|i| ["east", "south", "west", "north"][(i % 4) as usize].to_owned()),
            text(&|i| format!("ST-{:02}", i % 40)),
            text(&|i| skus[(i.wrapping_mul(7919) % keys as i64) as usize].clone()),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| 1 + i % 3).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(vec![129.0; rows])),
            Arc::new(Float64Array::from(
                ids.iter()
                    .map(|i| 129.0 * (1 + i % 3) as f64)
                    .collect::<Vec<_>>(),
            )),
            text(&|_| "order".to_owned()),
            Arc::new(Int32Array::from(
                ids.iter().map(|i| (i % 4) as i32).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| i / 4).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(times.clone()).with_timezone("UTC")),
        ];
        let rows = RecordBatch::try_new(schema.clone(), columns).expect("sales batch");
        let last = *times.last().expect("rows");
        out.push(SourceBatch {
            stream: Stream::Sales,
            rows,
            partitions: (0..4)
                .map(|p| PartitionProgress {
                    partition: p,
                    max_event_time_ms: Some(last),
                    next_offset: 0,
                    idle: false,
                })
                .collect(),
        });
    }
    out
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median (upper median of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
