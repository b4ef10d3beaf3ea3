//! End to end: the Kafka source, the engine with every built-in view, and
//! the durable pipeline's storage (raw archive of all four topics, final
//! windows, dead letters, checkpoints every 10 s, a final checkpoint at the
//! end) on a local directory, as a ratio to the same run with storage off
//! (no sinks, no checkpoints). Target: ≥ 0.85.
//!
//! A run's time goes from the source's start until every record is taken
//! (rows + dead letters) and the pipeline has stopped: for the durable run
//! that includes the final checkpoint, so that every record is committed.
//! The two kinds alternate, each on a fresh consumer group, against the
//! same records on the embedded mock cluster.
//!
//! `cargo bench -p kpiflow-benches --bench durable`;
//! `KPIFLOW_BENCH_RECORDS` (default 1200000: the mock cluster keeps 5 MB
//! per partition), `KPIFLOW_BENCH_PARTITIONS` per topic (32),
//! `KPIFLOW_BENCH_RUNS` per kind (3), `KPIFLOW_BENCH_CHECKPOINT_SECS` (10),
//! `KPIFLOW_BENCH_RAW=0` to leave the raw archive out (what it costs).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kpiflow_benches::kafka::{assert_kept, produce_spread};
use kpiflow_benches::{env_number, median};
use kpiflow_engine::{Engine, EngineConfig};
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_pipeline::{Durability, Input, Pipeline, PipelineConfig};
use kpiflow_storage::{DataLocation, StoreOptions};
use kpiflow_types::Stream;
use tokio_util::sync::CancellationToken;

/// The built-in views and reference tables, from the repository's `sql/`
/// (what the binary embeds).
async fn engine() -> Engine {
    let sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql");
    let mut engine = Engine::new(EngineConfig::default()).expect("engine");
    let files = |dir: &Path, extension: &str| {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .expect("the sql directory")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == extension))
            .collect();
        paths.sort();
        paths
    };
    let name = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
    for csv in files(&sql.join("reference"), "csv") {
        let text = std::fs::read_to_string(&csv).expect("reference table");
        engine
            .register_reference_csv(&name(&csv), &text)
            .expect("register a reference table");
    }
    // A view may read another view: create them in dependency order by
    // retrying the ones whose inputs do not exist yet.
    let mut pending = files(&sql, "sql");
    while !pending.is_empty() {
        let before = pending.len();
        let mut failed = Vec::new();
        for path in pending {
            let text = std::fs::read_to_string(&path).expect("view file");
            if engine.create_view_file(&name(&path), &text).await.is_err() {
                failed.push(path);
            }
        }
        assert!(failed.len() < before, "cannot create the views {failed:?}");
        pending = failed;
    }
    engine
}

struct Run {
    pauses: u64,
    /// CPU seconds per thread name, most first.
    threads: Vec<(String, f64)>,
    /// CPU seconds of every thread but the mock broker's while the records
    /// were taken.
    cpu: f64,
    taken: f64,
    stopped: f64,
    checkpoints: u64,
    /// Source batches the engine took.
    batches: u64,
}

async fn run_once(brokers: &str, n: u64, durable: bool, run: usize) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine().await;
    let (pipeline, start_offsets) = if durable {
        let config = PipelineConfig {
            checkpoint_interval: Some(Duration::from_secs(env_number(
                "KPIFLOW_BENCH_CHECKPOINT_SECS",
                10,
            ))),
            ..PipelineConfig::default()
        };
        let location =
            DataLocation::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
        let durability = Durability {
            location,
            pipeline_id: "bench".into(),
            keep_checkpoints: 3,
            // KPIFLOW_BENCH_RAW=0: views, dead letters and checkpoints only.
            raw: if env_number("KPIFLOW_BENCH_RAW", 1) == 0 {
                Default::default()
            } else {
                Stream::ALL.into_iter().collect()
            },
        };
        let recovered = kpiflow_pipeline::recover(engine, config, &durability)
            .await
            .expect("a fresh durable pipeline");
        (recovered.pipeline, recovered.start_offsets)
    } else {
        (
            Pipeline::new(engine, PipelineConfig::default()),
            HashMap::new(),
        )
    };
    let kind = if durable { "durable" } else { "off" };
    let mut config = SourceConfig::new(brokers, format!("kpiflow-bench-e2e-{kind}-{run}"));
    config.properties = vec![("session.timeout.ms".into(), "6000".into())];
    config.start_offsets = start_offsets;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let threads_before = thread_cpu();
    let mut source = start(config, cancel.clone()).await.expect("source");
    let source_handle = source.handle.clone();
    let stats = pipeline.stats();
    let running = tokio::spawn(pipeline.run(Input::from(&mut source), cancel.clone()));
    let taken = || stats.rows().iter().sum::<u64>() + stats.dead_letters.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(600);
    while taken() < n {
        assert!(
            Instant::now() < deadline,
            "{kind} run: {} of {n} records taken in 600 s",
            taken()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_taken = started.elapsed();
    // Before the run's own threads (consumer, poll, batcher) end.
    let mut threads: Vec<(String, f64)> = thread_cpu()
        .into_iter()
        .map(|(name, s)| {
            let before = threads_before.get(&name).copied().unwrap_or(0.0);
            (name, s - before)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    let cpu = threads.iter().map(|(_, s)| s).sum();
    cancel.cancel();
    let summary = running
        .await
        .expect("the pipeline task")
        .expect("the pipeline stops cleanly");
    let stopped = started.elapsed();
    source.task.await.expect("source task").expect("source");
    Run {
        cpu,
        threads,
        pauses: source_handle.stats().pauses.load(Ordering::Relaxed),
        taken: all_taken.as_secs_f64(),
        stopped: stopped.as_secs_f64(),
        checkpoints: summary.checkpoints,
        batches: summary.batches,
    }
}

/// CPU seconds (user + system) per thread name of this process's live
/// threads but the mock broker's (`rdk:mock`): what the pipeline itself
/// spends, whatever share of the two cores the in-process broker leaves it.
/// Linux only (empty when /proc is missing).
fn thread_cpu() -> HashMap<String, f64> {
    // USER_HZ: the unit of /proc's utime and stime, 100 on Linux.
    const TICKS_PER_S: f64 = 100.0;
    let mut by_name = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        if name.starts_with("rdk:mock") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // Fields 14 and 15 of stat(5), counted from after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .map(|&i| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0u64))
            .sum();
        *by_name.entry(name.to_string()).or_insert(0.0) += ticks as f64 / TICKS_PER_S;
    }
    by_name
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("durable: bench");
        return;
    }
    let n = env_number("KPIFLOW_BENCH_RECORDS", 1_200_000);
    let partitions = env_number("KPIFLOW_BENCH_PARTITIONS", 32) as i32;
    let runs = env_number("KPIFLOW_BENCH_RUNS", 3) as usize;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kafka = EmbeddedKafka::start(1).expect("embedded cluster");
    kafka.create_stream_topics(partitions).expect("topics");
    let brokers = kafka.bootstrap_servers();
    let sim = SimConfig {
        seed: 4,
        scenario: Scenario::Peak,
        malformed: 0.01,
        ..SimConfig::default()
    };
    eprintln!("producing {n} records");
    produce_spread(&brokers, sim, n, partitions);
    assert_kept(&brokers, partitions, n);
    println!("durable: {n} records, {partitions} partitions per topic, {runs} runs of each kind");
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu_ratios = Vec::new();
    for run in 0..runs {
        let o = rt.block_on(run_once(&brokers, n, false, run));
        let d = rt.block_on(run_once(&brokers, n, true, run));
        println!(
            "  run {run}: storage off {:.0} rec/s ({:.2} s), durable {:.0} rec/s ({:.2} s to take every record, {:.2} s with the final checkpoint, {} checkpoints; source paused {} / {} times)",
            n as f64 / o.stopped,
            o.stopped,
            n as f64 / d.stopped,
            d.taken,
            d.stopped,
            d.checkpoints,
            o.pauses,
            d.pauses
        );
        off.push(n as f64 / o.stopped);
        on.push(n as f64 / d.stopped);
        ratios.push(o.stopped / d.stopped);
        println!(
            "    CPU of the pipeline's threads (not the mock broker's) per record taken: off {:.2} µs, durable {:.2} µs",
            o.cpu / n as f64 * 1e6,
            d.cpu / n as f64 * 1e6
        );
        for (kind, r) in [("off", &o), ("durable", &d)] {
            let top: Vec<String> = r
                .threads
                .iter()
                .take(8)
                .map(|(name, s)| format!("{name} {s:.2}"))
                .collect();
            println!(
                "    {kind}: {} source batches ({:.0} rows each); CPU s by thread: {}",
                r.batches,
                n as f64 / r.batches.max(1) as f64,
                top.join(", ")
            );
        }
        if d.cpu > 0.0 {
            cpu_ratios.push(o.cpu / d.cpu);
        }
    }
    println!(
        "median: storage off {:.0} rec/s, durable {:.0} rec/s, median of per-run ratios {:.2} (target ≥ 0.85)",
        median(off),
        median(on),
        median(ratios)
    );
    if !cpu_ratios.is_empty() {
        println!(
            "median of per-run CPU ratios (off / durable, the pipeline's threads only): {:.2}",
            median(cpu_ratios)
        );
    }
}
