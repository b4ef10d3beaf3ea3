//! The `kpiflow` binary: command-line parsing and wiring of the crates.

mod args;
mod config;
mod demo;
mod display;
mod produce;
mod query;
mod run;
mod serve;
mod verify;
mod views;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return args::report_usage_error(e),
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Produce(args) => produce::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Query(args) => query::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Run(args) => run::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line: each cause once (most messages
/// already carry theirs), whitespace runs (an S3 error body's newlines)
/// folded to a space.
fn one_line(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Logs go to stderr, `warn` and above unless `RUST_LOG` says otherwise, so
/// they never mix with a command's output on stdout. librdkafka's own log is
/// off by default: it repeats every connection failure many times a second,
/// and kpiflow reports the ones that matter itself (`RUST_LOG=librdkafka=debug`
/// shows it).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            // delta-rs warns at every file of a table with a binary column
            // (dead letters' payload) that it keeps no statistics for it.
            "warn,librdkafka=off,rdkafka=off,deltalake_core::writer::stats=error",
        )
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
