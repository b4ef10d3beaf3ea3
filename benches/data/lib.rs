//! Seeded data shared by every benchmark: the simulator's records, so benches
//! measure what production sees (same field mix, sizes and key spread).

use kpiflow_ingest::simulator::{Scenario, SimConfig, SimRecord, Simulator};
use kpiflow_types::Stream;

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
