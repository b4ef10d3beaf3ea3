//! Memory of open groups: 1,000,000 distinct keys (order ids) in one open
//! 1-hour window, pushed as pre-decoded batches. Reports the engine's own
//! state accounting (DataFusion's `size()` of group values and accumulators)
//! and the process's resident memory growth, for count and sum per key.
//! Target: ≤ 1 GiB for 1M open groups.
//!
//! `cargo bench -p kpiflow-benches --bench engine_memory`

use kpiflow_benches::sales_batches;
use kpiflow_engine::{Engine, EngineConfig};

const GROUPS: usize = 1_000_000;
const ROWS: usize = 8_192;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("engine_memory: bench");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // 1M events at 300 per second of event time: all within one hour.
    let batches = sales_batches(GROUPS.div_ceil(ROWS), ROWS, 1_000, 300);
    let input_bytes: usize = batches.iter().map(|b| b.rows.get_array_memory_size()).sum();
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    rt.block_on(engine.create_view(
        "per_order",
        "SELECT order_id, count(*) AS n, sum(amount) AS revenue FROM sales GROUP BY tumble(event_time, INTERVAL '1 hour'), order_id",
    ))
    .unwrap();
    let before = rss_bytes();
    let start = std::time::Instant::now();
    for batch in &batches {
        rt.block_on(engine.push(batch)).unwrap();
    }
    let elapsed = start.elapsed();
    let after = rss_bytes();
    let stats = engine.stats("per_order").unwrap();
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "engine_memory: {} open groups; state {:.1} MiB ({:.0} B/group); RSS growth {:.1} MiB ({:.0} B/group); input batches {:.1} MiB (held by the bench, not the engine); {:.2} s to push",
        stats.open_groups,
        mib(stats.state_bytes as f64),
        stats.state_bytes as f64 / stats.open_groups as f64,
        mib(after.saturating_sub(before) as f64),
        after.saturating_sub(before) as f64 / stats.open_groups as f64,
        mib(input_bytes as f64),
        elapsed.as_secs_f64(),
    );
    assert!(
        stats.open_groups >= GROUPS,
        "every order id is its own group"
    );
}
