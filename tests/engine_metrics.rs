//! The engine's metrics, read with a debugging recorder: rows in, windows
//! final, late rows by action, watermark, state size and open groups — and
//! that state is freed when windows close. Its own test binary, because the
//! recorder is process-wide.

use std::collections::HashMap;

use kpiflow_engine::{Engine, EngineConfig};
use kpiflow_tests::sales::*;
use kpiflow_types::Stream;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Counters (since the previous snapshot: the recorder hands out increments)
/// and gauges of one view, by metric name (`name{action}` for late rows).
fn values(snapshotter: &Snapshotter, view: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: HashMap<&str, &str> =
            key.key().labels().map(|l| (l.key(), l.value())).collect();
        if labels.get("view") != Some(&view) {
            continue;
        }
        let mut name = key.key().name().to_owned();
        if let Some(action) = labels.get("action") {
            name = format!("{name}{{{action}}}");
        }
        let v = match value {
            DebugValue::Counter(v) => v as f64,
            DebugValue::Gauge(v) => v.into_inner(),
            DebugValue::Histogram(_) => continue,
        };
        out.insert(name, v);
    }
    out
}

#[tokio::test]
async fn engine_metrics_count_rows_windows_late_rows_and_state() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    engine
        .create_view(
            "per_minute",
            "SELECT sku, count(*) AS orders FROM sales GROUP BY tumble(event_time, INTERVAL '1 minute'), sku",
        )
        .await
        .unwrap();
    let skus = ["A", "B", "C", "D"];
    let first: Vec<Sale> = (0..40)
        .map(|i| sale(i * 1_000, 0, skus[i as usize % 4], "online", 1, 1.0))
        .collect();
    let max = 39_000;
    engine
        .push(&batch(
            Stream::Sales,
            sales_rows(&first, 0),
            vec![progress(0, Some(max), false)],
        ))
        .await
        .unwrap();
    let open = values(&snapshotter, "per_minute");
    assert_eq!(open["kpiflow_engine_rows_in_total"], 40.0);
    assert_eq!(open["kpiflow_engine_open_groups"], 4.0, "{open:?}");
    assert!(open["kpiflow_engine_state_bytes"] > 0.0, "{open:?}");
    assert_eq!(open["kpiflow_engine_watermark_ms"], 34_000.0);

    // The next minute: the first closes, its state is freed; one late row.
    let next = [
        sale(70_000, 0, "A", "online", 1, 1.0),
        sale(2_000, 0, "B", "online", 1, 1.0),
    ];
    engine
        .push(&batch(
            Stream::Sales,
            sales_rows(&next, 40),
            vec![progress(0, Some(70_000), false)],
        ))
        .await
        .unwrap();
    let late = [sale(3_000, 0, "C", "online", 1, 1.0)];
    engine
        .push(&batch(
            Stream::Sales,
            sales_rows(&late, 42),
            vec![progress(0, Some(70_000), false)],
        ))
        .await
        .unwrap();
    let after = values(&snapshotter, "per_minute");
    assert_eq!(
        after["kpiflow_engine_rows_in_total"], 3.0,
        "rows since the first snapshot"
    );
    assert_eq!(after["kpiflow_engine_windows_final_total"], 1.0);
    assert_eq!(
        after["kpiflow_engine_open_groups"], 1.0,
        "only A of the second minute: {after:?}"
    );
    assert!(
        after["kpiflow_engine_state_bytes"] < open["kpiflow_engine_state_bytes"],
        "{after:?}"
    );
    assert_eq!(
        after["kpiflow_engine_late_rows_total{table}"], 1.0,
        "{after:?}"
    );
    let stats = engine.stats("per_minute").unwrap();
    assert_eq!(
        (stats.final_rows, stats.late_rows, stats.open_groups),
        (4, 1, 1)
    );
}
