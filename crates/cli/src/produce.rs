//! `kpiflow produce`: the simulator into a Kafka cluster, with live progress
//! on stderr and a per-topic summary at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, Summary, produce};
use kpiflow_ingest::simulator::MalformedKind;
use tokio_util::sync::CancellationToken;

use crate::args::ProduceArgs;
use crate::display::{StatusLine, thousands};

const DEFAULT_RATE: f64 = 1000.0;

pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let limit = match (args.count, args.duration) {
        (Some(n), _) => Limit::Count(n),
        (None, Some(d)) => Limit::Duration(d),
        (None, None) => Limit::Unbounded,
    };
    let mut options = ProduceOptions::new(
        args.brokers.clone(),
        args.sim.sim_config(),
        args.sim.rate.unwrap_or(DEFAULT_RATE),
        limit,
    );
    options.partitions = args.partitions;
    options.replication_factor = args.replication_factor;
    options.properties = args.properties.clone();
    options.connect_timeout = args.connect_timeout;
    options.validate()?;

    let progress = Arc::new(Progress::default());
    let cancel = CancellationToken::new();
    let ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let done = CancellationToken::new();
    let display = tokio::spawn(show_progress(progress.clone(), done.clone()));
    let result = produce(&options, &progress, &cancel).await;
    done.cancel();
    let _ = display.await;
    ctrl_c.abort();

    let summary = result?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    if summary.failed() > 0 {
        eprintln!(
            "error: {} records were not acknowledged by the broker; check the broker's health and retry",
            thousands(summary.failed())
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show_progress(progress: Arc<Progress>, done: CancellationToken) {
    let mut line = StatusLine::new(5);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let started = tokio::time::Instant::now();
    let mut last = 0;
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if !progress.connected.load(Ordering::Relaxed) {
            continue;
        }
        let acked = progress.acked.load(Ordering::Relaxed);
        let failed = progress.failed.load(Ordering::Relaxed);
        let event_time = crate::display::event_time(progress.event_time_ms.load(Ordering::Relaxed));
        line.update(&format!(
            "producing: {:>6.0}s  {} acked ({}/s)  {} failed  event time {event_time}",
            started.elapsed().as_secs_f64(),
            thousands(acked),
            thousands(acked - last),
            thousands(failed),
        ));
        last = acked;
    }
    line.finish();
}

fn print_summary(summary: &Summary) {
    println!(
        "sent to {} (scenario {}, seed {}) in {:.1}s{}",
        summary.brokers,
        summary.scenario,
        summary.seed,
        summary.elapsed_s,
        if summary.cancelled {
            ", stopped by Ctrl-C"
        } else {
            ""
        }
    );
    let kinds: Vec<&str> = MalformedKind::ALL.iter().map(|k| k.name()).collect();
    println!(
        "{:<11} {:>5} {:>10} {:>10} {:>13} {:>11} {:>14} {:>14} {:>12} {:>8} {:>7}",
        "topic",
        "parts",
        "good",
        "malformed",
        kinds[0],
        kinds[1],
        kinds[2],
        kinds[3],
        "out_of_order",
        "late",
        "failed"
    );
    let mut totals = [0u64; 9];
    for (topic, t) in &summary.topics {
        let by_kind: Vec<u64> = kinds
            .iter()
            .map(|k| t.malformed.get(*k).copied().unwrap_or(0))
            .collect();
        let row = [
            t.good,
            t.malformed_total(),
            by_kind[0],
            by_kind[1],
            by_kind[2],
            by_kind[3],
            t.out_of_order,
            t.late,
            t.failed,
        ];
        for (total, v) in totals.iter_mut().zip(row) {
            *total += v;
        }
        print_row(topic, &t.partitions.to_string(), &row);
    }
    print_row("total", "", &totals);
}

fn print_row(name: &str, partitions: &str, v: &[u64; 9]) {
    let s: Vec<String> = v.iter().map(|&n| thousands(n)).collect();
    println!(
        "{name:<11} {partitions:>5} {:>10} {:>10} {:>13} {:>11} {:>14} {:>14} {:>12} {:>8} {:>7}",
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]
    );
}
