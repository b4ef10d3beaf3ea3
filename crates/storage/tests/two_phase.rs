//! The Delta sink's two-phase commit on a real directory: an epoch's files
//! are invisible until committed, a repeated commit changes nothing, and a
//! crashed epoch's files are deleted when the sink resumes.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use kpiflow_storage::{Catalog, DataLocation, DeltaSink, ObjectCheckpoints, StoreOptions};
use kpiflow_types::{
    Checkpoint, CheckpointStore, DeadLetter, DeadLetterKind, Emit, Epoch, Sink, Snapshot,
    SourcePosition, ViewRows,
};

const APP: &str = "test-pipeline";

fn view_rows(start_minute: i64, n: i64) -> ViewRows {
    let schema = Arc::new(Schema::new(vec![
        Field::new("sku", DataType::Utf8, false),
        Field::new("total", DataType::Int64, true),
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]));
    let base = 1_795_000_000_000i64; // 2026-11-18
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("SKU-{i}")),
            )),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 10))),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    (0..n).map(|i| base + (start_minute + i) * 60_000),
                )
                .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    ViewRows {
        view: "totals".into(),
        kind: Emit::Final,
        rows,
    }
}

fn dead_letter(offset: i64) -> DeadLetter {
    DeadLetter {
        topic: "sales".into(),
        partition: 0,
        offset,
        timestamp_ms: Some(1_795_000_000_000),
        key: None,
        payload: Some(b"{not json".to_vec()),
        kind: DeadLetterKind::InvalidJson,
        reason: "invalid JSON at byte 1".into(),
    }
}

async fn count(location: &DataLocation, table: &str) -> i64 {
    let catalog = Catalog::open(location).await.unwrap();
    let batches = catalog
        .query(&format!("SELECT count(*) AS n FROM {table}"))
        .await
        .unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

fn parquet_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("_delta_log") {
            n += parquet_files(&path);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            n += 1;
        }
    }
    n
}

async fn open(location: &DataLocation) -> DeltaSink {
    DeltaSink::open(location.clone(), APP, Vec::new(), BTreeSet::new())
        .await
        .unwrap()
}

fn checkpoint(epoch: u64, prepared: kpiflow_types::Prepared) -> Checkpoint {
    Checkpoint {
        epoch: Epoch(epoch),
        snapshot: Snapshot::new(),
        positions: vec![SourcePosition {
            stream: "sales".into(),
            partition: 0,
            next_offset: epoch as i64 * 100,
        }],
        prepared: vec![prepared],
    }
}

#[tokio::test]
async fn an_epoch_is_visible_only_once_committed_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let location =
        DataLocation::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    location.check().await.unwrap();
    location.claim(APP).await.unwrap();
    let mut checkpoints = ObjectCheckpoints::new(location.clone(), APP, 3);

    let mut sink = open(&location).await;
    sink.resume(None).await.unwrap();
    sink.write_rows(&view_rows(0, 5)).await.unwrap();
    sink.write_dead_letters(&[dead_letter(7), dead_letter(9)])
        .await
        .unwrap();
    let prepared = sink.prepare_commit(Epoch(1)).await.unwrap();
    assert_eq!(
        count(&location, "views.totals").await,
        0,
        "prepared, not committed: invisible"
    );
    checkpoints
        .save(&checkpoint(1, prepared.clone()))
        .await
        .unwrap();
    sink.commit(Epoch(1), &prepared).await.unwrap();
    assert_eq!(count(&location, "views.totals").await, 5);
    assert_eq!(count(&location, "deadletters.sales").await, 2);

    // Committing the same epoch again (recovery rolling forward) is a no-op.
    sink.commit(Epoch(1), &prepared).await.unwrap();
    assert_eq!(count(&location, "views.totals").await, 5);

    // Epoch 2 is written and closed, its checkpoint saved, then the process
    // "dies" before committing: the next start rolls it forward.
    sink.write_rows(&view_rows(10, 3)).await.unwrap();
    let prepared2 = sink.prepare_commit(Epoch(2)).await.unwrap();
    checkpoints.save(&checkpoint(2, prepared2)).await.unwrap();
    drop(sink);
    assert_eq!(count(&location, "views.totals").await, 5);

    // Epoch 3 is written and closed but its checkpoint never saved.
    let mut sink = open(&location).await;
    let latest = checkpoints.latest().await.unwrap().expect("checkpoint 2");
    assert_eq!(latest.epoch, Epoch(2));
    assert_eq!(latest.positions[0].next_offset, 200);
    sink.resume(Some((latest.epoch, &latest.prepared[0])))
        .await
        .unwrap();
    assert_eq!(
        count(&location, "views.totals").await,
        8,
        "epoch 2 rolled forward"
    );
    sink.write_rows(&view_rows(20, 4)).await.unwrap();
    sink.prepare_commit(Epoch(3)).await.unwrap();
    drop(sink);
    let table_dir = dir.path().join("views/totals");
    let files_before = parquet_files(&table_dir);

    let mut sink = open(&location).await;
    let latest = checkpoints.latest().await.unwrap().unwrap();
    sink.resume(Some((latest.epoch, &latest.prepared[0])))
        .await
        .unwrap();
    assert!(
        parquet_files(&table_dir) < files_before,
        "the never-checkpointed epoch 3's files are deleted ({files_before} before)"
    );
    assert_eq!(
        count(&location, "views.totals").await,
        8,
        "nothing of epoch 3 visible"
    );

    // Epoch 3 written again, this time to the end.
    sink.write_rows(&view_rows(20, 4)).await.unwrap();
    let prepared3 = sink.prepare_commit(Epoch(3)).await.unwrap();
    checkpoints
        .save(&checkpoint(3, prepared3.clone()))
        .await
        .unwrap();
    sink.commit(Epoch(3), &prepared3).await.unwrap();
    assert_eq!(count(&location, "views.totals").await, 12);
}

#[tokio::test]
async fn a_damaged_newest_manifest_falls_back_and_a_damaged_only_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let location =
        DataLocation::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    let mut checkpoints = ObjectCheckpoints::new(location.clone(), APP, 3);
    let empty = kpiflow_types::Prepared::default();
    checkpoints
        .save(&checkpoint(1, empty.clone()))
        .await
        .unwrap();
    checkpoints.save(&checkpoint(2, empty)).await.unwrap();
    let manifest = dir
        .path()
        .join(format!("checkpoints/{APP}/{:020}/manifest.json", 2));
    std::fs::write(&manifest, b"{ truncated").unwrap();
    let latest = checkpoints.latest().await.unwrap().expect("falls back");
    assert_eq!(latest.epoch, Epoch(1));

    let first = dir
        .path()
        .join(format!("checkpoints/{APP}/{:020}/state.arrows", 1));
    std::fs::write(&first, b"garbage").unwrap();
    let error = checkpoints.latest().await.unwrap_err().to_string();
    assert!(error.contains("manifest.json"), "{error}");
}

#[tokio::test]
async fn a_location_of_another_pipeline_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let location =
        DataLocation::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    location.claim("first").await.unwrap();
    location.claim("first").await.unwrap();
    let error = location.claim("second").await.unwrap_err().to_string();
    assert!(error.contains("belongs to pipeline `first`"), "{error}");
}
