//! Compaction merges the small files of every day but the newest without
//! changing a row; retention deletes the partitions past it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use kpiflow_storage::{
    Catalog, DataLocation, DeltaSink, MaintenanceConfig, StoreOptions, TableKind, maintain,
};
use kpiflow_types::{Emit, Epoch, Sink, ViewRows};

fn rows(start_ms: i64, n: i64) -> ViewRows {
    let schema = Arc::new(Schema::new(vec![
        Field::new("sku", DataType::Utf8, false),
        Field::new("total", DataType::Int64, false),
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("SKU-{i}")),
            )),
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(
                TimestampMillisecondArray::from_iter_values((0..n).map(|i| start_ms + i * 60_000))
                    .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    ViewRows {
        view: "totals".into(),
        kind: Emit::Final,
        rows: batch,
    }
}

async fn scalar(location: &DataLocation, sql: &str) -> i64 {
    let catalog = Catalog::open(location).await.unwrap();
    let batches = catalog.query(sql).await.unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn old_days_are_compacted_and_expired_and_the_newest_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let location =
        DataLocation::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    let mut sink = DeltaSink::open(location.clone(), "m", Vec::new(), BTreeSet::new())
        .await
        .unwrap();
    sink.resume(None).await.unwrap();
    let today = chrono::Utc::now().date_naive();
    let today_ms = today
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let old_ms = today_ms - 10 * 86_400_000;
    for epoch in 1..=3 {
        sink.write_rows(&rows(old_ms, 10)).await.unwrap();
        sink.write_rows(&rows(today_ms, 5)).await.unwrap();
        let prepared = sink.prepare_commit(Epoch(epoch)).await.unwrap();
        sink.commit(Epoch(epoch), &prepared).await.unwrap();
    }
    let old_day = dir.path().join(format!(
        "views/totals/window_date={}",
        (today - chrono::Days::new(10)).format("%Y-%m-%d")
    ));
    let new_day = dir.path().join(format!(
        "views/totals/window_date={}",
        today.format("%Y-%m-%d")
    ));
    assert_eq!(
        (files(&old_day), files(&new_day)),
        (3, 3),
        "one file per epoch and day"
    );
    let sum = "SELECT sum(total) FROM views.totals";
    let before = scalar(&location, sum).await;

    let compact = MaintenanceConfig {
        target_file_size: 128 << 20,
        retention: BTreeMap::new(),
    };
    let report = maintain(&location, &compact).await.unwrap();
    assert_eq!(
        (report.files_compacted, report.files_written),
        (3, 1),
        "{report:?}"
    );
    assert_eq!(
        scalar(&location, sum).await,
        before,
        "compaction changes no row"
    );
    assert_eq!(
        scalar(&location, "SELECT count(*) FROM views.totals").await,
        45
    );

    let expire = MaintenanceConfig {
        retention: BTreeMap::from([(TableKind::View, Duration::from_secs(2 * 86_400))]),
        ..compact
    };
    let report = maintain(&location, &expire).await.unwrap();
    assert_eq!(
        report.files_expired, 1,
        "the old day's one compacted file: {report:?}"
    );
    assert_eq!(
        scalar(&location, "SELECT count(*) FROM views.totals").await,
        15,
        "only today's rows are left"
    );
}
