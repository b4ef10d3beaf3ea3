//! `kpiflow demo`: everything in one process with no outside service — an
//! embedded Kafka cluster, the simulator producing into it, and the Kafka
//! source decoding it into Arrow batches and dead letters; per-topic rates are
//! printed every second until Ctrl-C.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_types::Stream;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::args::DemoArgs;
use crate::display::thousands;

const DEFAULT_RATE: f64 = 2000.0;
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
    options.validate()?;

    println!(
        "kpiflow demo: embedded Kafka at {brokers} (librdkafka mock cluster), {} topics × {} partitions",
        Stream::ALL.len(),
        args.partitions
    );
    println!(
        "simulator: scenario {}, seed {}, {} records/s; Ctrl-C to stop",
        options.sim.scenario,
        options.sim.seed,
        thousands(rate as u64)
    );

    let cancel = CancellationToken::new();
    let progress = Arc::new(Progress::default());
    let producer = {
        let (options, progress, cancel) = (options.clone(), progress.clone(), cancel.clone());
        tokio::spawn(async move { produce(&options, &progress, &cancel).await })
    };
    let mut source_config = SourceConfig::new(brokers.clone(), "kpiflow-demo");
    source_config.properties = vec![("session.timeout.ms".into(), "6000".into())];
    let source = start(source_config, cancel.clone()).await?;
    let counts = Arc::new(Counts::default());
    let consumer = tokio::spawn(drain(source, counts.clone()));

    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = counts.records();
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
        let now = counts.records();
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
            thousands(counts.dead_letters.load(Ordering::Relaxed)),
            thousands(progress.acked.load(Ordering::Relaxed)),
        );
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
    tokio::time::timeout(SHUTDOWN_TIMEOUT, consumer)
        .await
        .context("the consumer did not stop in time")?
        .context("the consumer task failed")??;
    println!(
        "stopped: {} records produced and acknowledged, {} decoded into rows, {} dead letters",
        thousands(summary.acked()),
        thousands(counts.records().iter().sum()),
        thousands(counts.dead_letters.load(Ordering::Relaxed)),
    );
    drop(kafka);
    Ok(ExitCode::SUCCESS)
}

/// Rows decoded per stream (in [`Stream::ALL`] order) and dead letters.
#[derive(Debug, Default)]
struct Counts {
    rows: [std::sync::atomic::AtomicU64; 4],
    dead_letters: std::sync::atomic::AtomicU64,
}

impl Counts {
    fn records(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.rows[i].load(Ordering::Relaxed))
    }
}

/// Takes the source's batches and dead letters until it stops, counting them.
async fn drain(
    mut source: kpiflow_ingest::source::Source,
    counts: Arc<Counts>,
) -> kpiflow_ingest::Result<()> {
    loop {
        tokio::select! {
            batch = source.batches.recv() => match batch {
                Some(batch) => {
                    let i = Stream::ALL.iter().position(|s| *s == batch.stream).unwrap_or(0);
                    counts.rows[i].fetch_add(batch.rows.num_rows() as u64, Ordering::Relaxed);
                }
                None => break,
            },
            Some(_) = source.dead_letters.recv() => {
                counts.dead_letters.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    source
        .task
        .await
        .map_err(|e| kpiflow_ingest::Error::ClientConfig(format!("source task failed: {e}")))?
}
