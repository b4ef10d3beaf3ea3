//! What durability costs on its own, on a local directory:
//!
//! - **raw archive**: 1,000,000 decoded sales rows (123 batches of 8,192)
//!   into `raw/sales` through the Delta sink (partitioned by event date and
//!   hour, zstd, statistics), prepared and committed as one epoch; baseline:
//!   the same batches into one Parquet file with parquet's `ArrowWriter`
//!   and the same compression, no Delta, no partitioning.
//! - **checkpoint**: an engine holding 1,000,000 open groups (one per order
//!   id in an open 1-hour window, as `engine_memory`); write = snapshot +
//!   `ObjectCheckpoints::save_checkpoint` (state file + manifest), restore =
//!   `newest()` + `Engine::restore` into a fresh engine with the same view.
//!   Targets: write ≤ 2 s, restore ≤ 5 s. Baseline: the snapshot's batches
//!   written to one file as Arrow IPC streams with arrow's `StreamWriter`.
//!
//! `cargo bench -p kpiflow-benches --bench storage [-- raw|checkpoint]`;
//! `KPIFLOW_BENCH_RUNS` (default 5 for the raw archive, 3 for checkpoints).
//! Medians over the runs, ratios against the baseline of the same run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use datafusion::arrow::ipc::writer::StreamWriter;
use kpiflow_benches::{env_number, median, sales_batches};
use kpiflow_engine::{Engine, EngineConfig};
use kpiflow_storage::{DataLocation, DeltaSink, ObjectCheckpoints, StoreOptions, TableSpec};
use kpiflow_types::checkpoint::Checkpoint;
use kpiflow_types::{Epoch, Sink, SourceBatch, Stream};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

const ROWS: usize = 8_192;
const GROUPS: usize = 1_000_000;
const PER_ORDER: &str = "SELECT order_id, count(*) AS n, sum(amount) AS revenue FROM sales GROUP BY tumble(event_time, INTERVAL '1 hour'), order_id";

fn location(dir: &tempfile::TempDir) -> DataLocation {
    DataLocation::open(
        dir.path().to_str().expect("utf-8 path"),
        &StoreOptions::default(),
    )
    .expect("a local data location")
}

/// The batches through the Delta sink as one epoch: seconds.
async fn delta_archive(batches: &[SourceBatch]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = TableSpec::raw("sales", Stream::Sales.source_schema());
    let raw: BTreeSet<Stream> = [Stream::Sales].into_iter().collect();
    let mut sink = DeltaSink::open(location(&dir), "bench", vec![spec], raw)
        .await
        .expect("open the sink");
    let started = Instant::now();
    sink.resume(None).await.expect("resume");
    for batch in batches {
        sink.write_batch(batch).await.expect("write a batch");
    }
    let prepared = sink.prepare_commit(Epoch(1)).await.expect("prepare");
    sink.commit(Epoch(1), &prepared).await.expect("commit");
    started.elapsed().as_secs_f64()
}

/// The batches into one Parquet file, zstd: seconds.
fn parquet_file(batches: &[SourceBatch]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let file = std::fs::File::create(dir.path().join("sales.parquet")).expect("create");
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(file, Stream::Sales.source_schema(), Some(properties))
        .expect("parquet writer");
    for batch in batches {
        writer.write(&batch.rows).expect("write");
    }
    writer.close().expect("close");
    started.elapsed().as_secs_f64()
}

fn raw_archive(rt: &tokio::runtime::Runtime) {
    let runs = env_number("KPIFLOW_BENCH_RUNS", 5) as usize;
    let batches = sales_batches(123, ROWS, 1_000, 300);
    let rows: usize = batches.iter().map(|b| b.rows.num_rows()).sum();
    println!("raw archive: {rows} sales rows, {runs} runs");
    let (mut ours, mut base, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let b = parquet_file(&batches);
        let d = rt.block_on(delta_archive(&batches));
        println!(
            "  run {run}: Delta sink {:.0} rows/s ({d:.2} s), one Parquet file {:.0} rows/s ({b:.2} s)",
            rows as f64 / d,
            rows as f64 / b
        );
        ours.push(rows as f64 / d);
        base.push(rows as f64 / b);
        ratios.push(b / d);
    }
    println!(
        "median: Delta sink {:.0} rows/s, one Parquet file {:.0} rows/s, median ratio {:.2}",
        median(ours),
        median(base),
        median(ratios)
    );
}

/// An engine with the per-order view, 1M open groups pushed.
async fn loaded_engine(batches: &[SourceBatch]) -> Engine {
    let mut engine = Engine::new(EngineConfig::default()).expect("engine");
    engine
        .create_view("per_order", PER_ORDER)
        .await
        .expect("view");
    for batch in batches {
        engine.push(batch).await.expect("push");
    }
    engine
}

struct CheckpointRun {
    snapshot: f64,
    save: f64,
    bytes: usize,
    ipc: f64,
    restore: f64,
}

async fn checkpoint_once(batches: &[SourceBatch], run: u64) -> CheckpointRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ObjectCheckpoints::new(location(&dir), "bench", 3);
    let mut engine = loaded_engine(batches).await;
    let open = engine.stats("per_order").expect("stats").open_groups;
    assert!(open >= GROUPS, "{open} open groups, expected {GROUPS}");

    let started = Instant::now();
    let snapshot = engine.snapshot().expect("snapshot");
    let taken = started.elapsed();
    let checkpoint = Checkpoint {
        epoch: Epoch(run + 1),
        snapshot,
        positions: Vec::new(),
        prepared: Vec::new(),
    };
    store
        .save_checkpoint(&checkpoint)
        .await
        .expect("save the checkpoint");
    let saved = started.elapsed() - taken;
    let bytes = checkpoint.snapshot.size();

    let started = Instant::now();
    let mut ipc_bytes = Vec::new();
    for (_, batch) in &checkpoint.snapshot.entries {
        let mut writer =
            StreamWriter::try_new(&mut ipc_bytes, &batch.schema()).expect("ipc writer");
        writer.write(batch).expect("write");
        writer.finish().expect("finish");
    }
    std::fs::write(dir.path().join("state.arrows"), &ipc_bytes).expect("write the file");
    let ipc = started.elapsed();
    drop(engine);
    drop(checkpoint);

    let mut fresh = Engine::new(EngineConfig::default()).expect("engine");
    fresh
        .create_view("per_order", PER_ORDER)
        .await
        .expect("view");
    let started = Instant::now();
    let loaded = store
        .newest()
        .await
        .expect("read the checkpoint")
        .expect("a checkpoint");
    fresh.restore(&loaded.snapshot).expect("restore");
    let restore = started.elapsed();
    let open = fresh.stats("per_order").expect("stats").open_groups;
    assert!(
        open >= GROUPS,
        "{open} open groups restored, expected {GROUPS}"
    );
    let secs = Duration::as_secs_f64;
    CheckpointRun {
        snapshot: secs(&taken),
        save: secs(&saved),
        bytes,
        ipc: secs(&ipc),
        restore: secs(&restore),
    }
}

fn checkpoints(rt: &tokio::runtime::Runtime) {
    let runs = env_number("KPIFLOW_BENCH_RUNS", 3);
    // 1M events at 300 per second of event time: all within one hour.
    let batches = sales_batches(GROUPS.div_ceil(ROWS), ROWS, 1_000, 300);
    println!("checkpoint: {GROUPS} open groups, {runs} runs");
    let mut all = Vec::new();
    for run in 0..runs {
        let r = rt.block_on(checkpoint_once(&batches, run));
        println!(
            "  run {run}: write {:.2} s (snapshot {:.2} s + save {:.2} s, {:.1} MiB in memory), restore {:.2} s; one IPC file {:.2} s",
            r.snapshot + r.save,
            r.snapshot,
            r.save,
            r.bytes as f64 / (1024.0 * 1024.0),
            r.restore,
            r.ipc
        );
        all.push(r);
    }
    let m = |f: &dyn Fn(&CheckpointRun) -> f64| median(all.iter().map(f).collect());
    println!(
        "median: write {:.2} s (target ≤ 2 s), restore {:.2} s (target ≤ 5 s); save / one IPC file {:.2}",
        m(&|r| r.snapshot + r.save),
        m(&|r| r.restore),
        m(&|r| r.save / r.ipc)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("raw: bench\ncheckpoint: bench");
        return;
    }
    let wants = |name: &str| {
        let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if wants("raw") {
        raw_archive(&rt);
    }
    if wants("checkpoint") {
        checkpoints(&rt);
    }
}
