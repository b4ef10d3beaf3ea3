//! `kpiflow demo`: everything in one process with no outside service — an
//! embedded Kafka cluster, the simulator producing into it, the Kafka source
//! decoding it into Arrow batches and dead letters, and the pipeline runner
//! keeping the views of `sql/` up to date in the engine. Per-topic rates are printed every second
//! and the running values of one view every five, until Ctrl-C.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use kpiflow_engine::{IS_FINAL, LiveStore};
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::Clock;
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_pipeline::{Durability, Input, PipelineConfig, PipelineStats};
use kpiflow_storage::{DataLocation, StoreOptions};
use kpiflow_types::Stream;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::args::DemoArgs;
use crate::display::thousands;

const DEFAULT_RATE: f64 = 2000.0;
/// How often the demo checkpoints (and so commits its tables).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// How long shutdown may take before the demo gives up waiting.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(40);

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let rate = args.sim.rate.unwrap_or(DEFAULT_RATE);
    let kafka = EmbeddedKafka::start(1)?;
    kafka.create_stream_topics(args.partitions)?;
    let brokers = kafka.bootstrap_servers();
    let mut options = ProduceOptions::new(
        brokers.clone(),
        args.sim.sim_config(),
        rate,
        Limit::Unbounded,
    );
    options.partitions = args.partitions;
    // The mock cluster does not implement CreateTopics; the topics exist already.
    options.create_topics = false;
    // Fewer, larger message sets: the mock broker finds a fetch's offset by
    // a linear scan of a partition's message sets, and with 5-ms batches
    // that scan took 85 % of the demo's CPU at 10K records/s (perf), so the
    // broker, not the pipeline, set the pace.
    options.properties.push(("linger.ms".into(), "50".into()));
    options.validate()?;

    // The URL comes first once the server listens; the rest after it.
    let mut intro = Vec::new();
    intro.push(format!(
        "kpiflow demo: embedded Kafka at {brokers} (librdkafka mock cluster), {} topics × {} partitions",
        Stream::ALL.len(),
        args.partitions
    ));
    intro.push(format!(
        "simulator: scenario {}, seed {}, {} records/s; Ctrl-C to stop",
        options.sim.scenario,
        options.sim.seed,
        thousands(rate as u64)
    ));

    let cancel = CancellationToken::new();
    let progress = Arc::new(Progress::default());
    let producer = {
        let (options, progress, cancel) = (options.clone(), progress.clone(), cancel.clone());
        tokio::spawn(async move { produce(&options, &progress, &cancel).await })
    };
    let mut source_config = SourceConfig::new(brokers.clone(), "kpiflow-demo");
    source_config.properties = vec![("session.timeout.ms".into(), "6000".into())];
    if matches!(options.sim.clock, Clock::Simulated) {
        // The simulated clock starts in the past and runs up to a few
        // hundred times faster than the wall clock: after a few hours it is
        // legitimately ahead of it. The range check stays on.
        source_config.time_bounds.max_future_skew_ms = None;
    }
    let engine = crate::views::engine().await?;
    let live = engine.live();
    intro.push(format!(
        "engine: {} views from sql/ ({}); showing {} every 5 s",
        crate::views::VIEWS.len(),
        crate::views::VIEWS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
        args.view
    ));
    let data = data_dir(args.data.as_deref())?;
    intro.push(format!(
        "data: {} (Delta tables; afterwards: kpiflow query --data {} \"SELECT …\")",
        data.display(),
        data.display()
    ));
    let durability = Durability {
        location: DataLocation::open(&data.to_string_lossy(), &StoreOptions::default())?,
        pipeline_id: "kpiflow-demo".into(),
        keep_checkpoints: 3,
        raw: Stream::ALL.into_iter().collect(),
    };
    let config = PipelineConfig {
        checkpoint_interval: Some(CHECKPOINT_INTERVAL),
        ..PipelineConfig::default()
    };
    let pipeline = kpiflow_pipeline::recover(engine, config, &durability)
        .await?
        .pipeline;
    let mut source = start(source_config, cancel.clone()).await?;
    let serving = match (args.http.0, args.pg.0) {
        (None, None) => None,
        (http, pg) => {
            let listen = crate::serve::Listeners {
                http,
                pg,
                pg_max_connections: kpiflow_pg::PgConfig::default().max_connections,
            };
            let serving = crate::serve::start(
                listen,
                kpiflow_server::ServerConfig {
                    checkpoint_interval: Some(CHECKPOINT_INTERVAL),
                    ..kpiflow_server::ServerConfig::default()
                },
                &pipeline,
                durability.location.clone(),
                source.handle.clone(),
                cancel.clone(),
            )
            .await?;
            let reach = |addr: std::net::SocketAddr| {
                if addr.ip().is_loopback() {
                    ": this machine only"
                } else {
                    ": anyone who can reach this address sees everything"
                }
            };
            if let Some(addr) = serving.http {
                println!(
                    "kpiflow demo: dashboards at http://{addr}/ (no auth{})",
                    reach(addr)
                );
            }
            if let Some(addr) = serving.pg {
                println!(
                    "kpiflow demo: Postgres wire protocol at {addr}: psql -h {} -p {} (no auth{})",
                    addr.ip(),
                    addr.port(),
                    reach(addr)
                );
            }
            Some(serving)
        }
    };
    for line in intro {
        println!("{line}");
    }
    let stats = pipeline.stats();
    let input = Input::from(&mut source);
    let consumer = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let summary = pipeline.run(input, cancel).await?;
            source.task.await.context("the source task failed")??;
            anyhow::Ok(summary)
        }
    });

    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = stats.rows();
    let mut seconds: u64 = 0;
    let stop_after = args.duration.map(|d| started + d);
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = ticker.tick() => {}
        }
        if producer.is_finished() || consumer.is_finished() {
            break;
        }
        let now = stats.rows();
        let rates: Vec<String> = Stream::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} {:>6}/s", s.name(), thousands(now[i] - last[i])))
            .collect();
        let event_time = crate::display::event_time(progress.event_time_ms.load(Ordering::Relaxed));
        println!(
            "{:>5.0}s  {}  | decoded {} + {} dead letters of {} produced | event time {event_time}",
            started.elapsed().as_secs_f64(),
            rates.join("  "),
            thousands(now.iter().sum()),
            thousands(stats.dead_letters.load(Ordering::Relaxed)),
            thousands(progress.acked.load(Ordering::Relaxed)),
        );
        seconds += 1;
        if seconds.is_multiple_of(5) {
            show_view(&live, &args.view, &stats);
        }
        let _ = std::io::stdout().flush();
        last = now;
        if stop_after.is_some_and(|t| tokio::time::Instant::now() >= t) {
            break;
        }
    }

    cancel.cancel();
    let summary = tokio::time::timeout(SHUTDOWN_TIMEOUT, producer)
        .await
        .context("the producer did not stop in time")?
        .context("the producer task failed")??;
    let pipeline = tokio::time::timeout(SHUTDOWN_TIMEOUT, consumer)
        .await
        .context("the pipeline did not stop in time")?
        .context("the pipeline task failed")??;
    if let Some(serving) = serving {
        serving.stopped(SHUTDOWN_TIMEOUT).await;
    }
    println!(
        "stopped: {} records produced and acknowledged, {} decoded into rows, {} dead letters",
        thousands(summary.acked()),
        thousands(pipeline.rows),
        thousands(pipeline.dead_letters),
    );
    drop(kafka);
    Ok(ExitCode::SUCCESS)
}

/// The demo's data directory: the one given, which must be new or empty,
/// or a fresh one under the temporary directory.
fn data_dir(given: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    match given {
        Some(dir) => {
            let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
            if occupied {
                anyhow::bail!(
                    "--data {}: the directory is not empty; the demo's embedded Kafka starts empty \
                     every run, so give it a new or empty directory",
                    dir.display()
                );
            }
            Ok(dir.to_path_buf())
        }
        None => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
            let dir =
                std::env::temp_dir().join(format!("kpiflow-demo-{stamp}-{}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Ok(dir)
        }
    }
}

/// Rows of open windows shown per view.
const SHOWN_ROWS: usize = 12;

/// The view's running rows (open windows, not final) as a table.
fn show_view(live: &LiveStore, view: &str, stats: &PipelineStats) {
    let Some((schema, batches)) = live.rows(view) else {
        return;
    };
    let mut finals = 0;
    let mut open_rows = 0;
    for batch in &batches {
        if let Some(flag) = batch
            .column_by_name(IS_FINAL)
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::BooleanArray>())
        {
            finals += flag.true_count();
            open_rows += flag.false_count();
        }
    }
    // The newest windows: final ones come first in the store, then the
    // running ones (which, with the simulated clock running far ahead of
    // the wall clock, often close again before the next tick).
    let all = arrow::compute::concat_batches(&schema, &batches);
    let shown = all.map(|all| {
        let n = all.num_rows().min(SHOWN_ROWS);
        all.slice(all.num_rows() - n, n)
    });
    println!(
        "view {view}: {open_rows} running rows of open windows, {finals} recent final rows kept; {} final rows over all views",
        thousands(stats.final_rows.load(Ordering::Relaxed))
    );
    if let Ok(table) = shown.and_then(|b| arrow::util::pretty::pretty_format_batches(&[b])) {
        println!("{table}");
    }
}
