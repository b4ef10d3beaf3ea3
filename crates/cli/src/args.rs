//! Command-line arguments. Every option has a help text with an example;
//! values are checked here so that a mistake is reported in one line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use kpiflow_ingest::simulator::{Clock, Scenario, SimConfig};

/// kpiflow turns a factory's live Kafka streams (sales, production, logistics,
/// equipment) into continuously updated KPIs for dashboards and alerts.
#[derive(Debug, Parser)]
#[command(name = "kpiflow", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    kpiflow demo                                   # everything in one process, no Kafka needed\n  \
    kpiflow run --config kpiflow.toml              # against a real Kafka cluster and object store\n  \
    kpiflow produce --brokers 127.0.0.1:9092 --scenario peak --rate 2000 --duration 5m")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the factory simulator into a Kafka cluster.
    Produce(ProduceArgs),
    /// Run everything in one process: an embedded Kafka broker, the simulator
    /// producing into it, and a consumer showing live per-topic rates.
    Demo(DemoArgs),
    /// Run read-only SQL over the tables a pipeline wrote (raw.*, views.*,
    /// late.*, deadletters.*, reference tables).
    Query(crate::query::QueryArgs),
    /// Recompute each view's final windows as a batch query over the raw
    /// archive (minus its late events) and report every difference.
    Verify(crate::verify::VerifyArgs),
    /// Run the pipeline against a real Kafka cluster and object store, as
    /// configured by defaults < --config FILE < KPIFLOW_* variables < flags.
    Run(RunArgs),
}

/// Options that shape the simulated factory, shared by `produce` and `demo`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Scenario: normal (an ordinary day), peak (a Double 11 hour at 5× sales
    /// from +30 min), fault (line P1-L2 down from +20 to +50 min), mismatch
    /// (SKU-AF-02 overproduced, SKU-RC-01 short from +15 to +75 min).
    /// Example: --scenario peak
    #[arg(long, default_value = "normal", value_parser = parse_scenario)]
    pub scenario: Scenario,

    /// Random seed: the same seed and options give the same records (with
    /// --clock sim). Example: --seed 7
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Records per second over all four topics; the simulated clock runs as
    /// fast as this rate needs. Example: --rate 5000
    #[arg(long, value_name = "EVENTS_PER_S", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Fraction of records whose event time is moved back within
    /// --max-out-of-order. Example: --out-of-order 0.05
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction, allow_negative_numbers = true)]
    pub out_of_order: f64,

    /// Fraction of records whose event time is moved back beyond
    /// --max-out-of-order (late events). Example: --late 0.01
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction, allow_negative_numbers = true)]
    pub late: f64,

    /// Fraction of malformed records, spread evenly over invalid JSON, a wrong
    /// type, a missing required field and a bad timestamp. Example: --malformed 0.02
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction, allow_negative_numbers = true)]
    pub malformed: f64,

    /// The out-of-orderness bound that --out-of-order stays within and --late
    /// exceeds. Example: --max-out-of-order 5s
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub max_out_of_order: Duration,

    /// Event-time clock: sim (simulated, accelerated, deterministic) or wall
    /// (the current time; scenario timing still follows the simulated clock).
    /// Example: --clock wall
    #[arg(long, default_value = "sim", value_parser = parse_clock)]
    pub clock: Clock,

    /// Simulated time of the first event (RFC 3339), with --clock sim.
    /// Example: --start 2026-11-11T01:30:00Z
    #[arg(long, value_name = "TIME", value_parser = parse_start)]
    pub start: Option<DateTime<Utc>>,
}

impl SimArgs {
    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            scenario: self.scenario,
            start: self.start.unwrap_or_else(SimConfig::default_start),
            clock: self.clock,
            out_of_order: self.out_of_order,
            late: self.late,
            malformed: self.malformed,
            max_out_of_order: self.max_out_of_order,
        }
    }
}

/// Run the simulator into any Kafka cluster.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    kpiflow produce --brokers 127.0.0.1:9092 --count 100000 --rate 5000\n  \
    kpiflow produce --brokers kafka:9092 --scenario mismatch --duration 2h --rate 500 --malformed 0.01 --json\n  \
    kpiflow produce --brokers kafka:9093 -X security.protocol=SASL_SSL -X sasl.mechanism=PLAIN --duration 1m")]
#[command(group = clap::ArgGroup::new("limit").required(true).args(["count", "duration"]))]
pub struct ProduceArgs {
    /// Kafka bootstrap servers. Example: --brokers 127.0.0.1:9092
    #[arg(long, value_name = "HOST:PORT", env = "KPIFLOW_BROKERS")]
    pub brokers: String,

    #[command(flatten)]
    pub sim: SimArgs,

    /// Stop after this many records. Example: --count 100000
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this much time. Example: --duration 10m
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Partitions of topics created by this command (existing topics keep
    /// theirs). Example: --partitions 8
    #[arg(long, value_name = "P", default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Replication factor of topics created by this command. Example: --replication-factor 3
    #[arg(long, value_name = "R", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,

    /// A librdkafka property, repeatable, e.g. for secured clusters.
    /// Example: -X security.protocol=SSL
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,

    /// How long to wait for the broker at start-up. Example: --connect-timeout 30s
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Print the summary as one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
}

/// Everything in one process, with no outside service.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    kpiflow demo\n  \
    kpiflow demo --scenario peak --rate 5000\n\n\
    Prints one line a second with each topic's consumed rate; Ctrl-C stops it and exits 0.")]
pub struct DemoArgs {
    #[command(flatten)]
    pub sim: SimArgs,

    /// Partitions of each topic in the embedded cluster. Example: --partitions 8
    #[arg(long, value_name = "P", default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Stop by itself after this long instead of waiting for Ctrl-C. Example: --duration 1m
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// The view whose running values are shown every 5 seconds, one of
    /// sql/*.sql. Example: --view production_vs_sales_hourly
    #[arg(long, value_name = "NAME", default_value = "sales_by_channel_region", value_parser = parse_view)]
    pub view: String,

    /// Where the demo's Delta tables and checkpoints go: a new or empty
    /// directory (the embedded Kafka starts empty every run). Default: a
    /// fresh directory under the system's temporary directory, printed at
    /// start and kept, so that `kpiflow query --data DIR` works afterwards.
    /// Example: --data ./demo-data
    #[arg(long, value_name = "DIR")]
    pub data: Option<std::path::PathBuf>,

    /// Where the dashboards and APIs are served (no auth: keep it on a
    /// loopback address). "off" serves nothing. Example: --http 127.0.0.1:9090
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub http: Listen,

    /// Where the Postgres wire protocol is served, for psql, Grafana and BI
    /// tools (no auth: any user and database connect; keep it on a loopback
    /// address). "off" serves nothing. Example: psql -h 127.0.0.1 -p 5433
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5433", value_parser = parse_listen)]
    pub pg: Listen,
}

/// An address to listen on, or none ("off").
#[derive(Debug, Clone, Copy)]
pub struct Listen(pub Option<std::net::SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s == "off" {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("'{s}' is not host:port with an IP (e.g. 127.0.0.1:8080), or off"))
}

/// Run the pipeline: Kafka source, continuous views, Delta tables.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    kpiflow run --config kpiflow.toml\n  \
    kpiflow run --brokers kafka:9092 --data s3://factory-kpis/prod --print-config\n  \
    KPIFLOW_CHECKPOINT__INTERVAL=5s kpiflow run --config kpiflow.toml -X security.protocol=SSL\n\n\
    Settings, lowest precedence first: built-in defaults, the --config file (TOML; kpiflow.toml\n\
    in the repository lists every setting), KPIFLOW_* variables (nested keys joined by __, e.g.\n\
    KPIFLOW_KAFKA__BROKERS), then these flags. Unset storage.s3 settings fall back to the usual\n\
    AWS_* variables. Every invalid setting is reported at once, naming its file line, variable\n\
    or flag (exit code 2).")]
pub struct RunArgs {
    /// The configuration file (TOML); without it, only defaults, KPIFLOW_*
    /// variables and flags apply. Example: --config kpiflow.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Kafka bootstrap servers (kafka.brokers). Example: --brokers kafka1:9092,kafka2:9092
    #[arg(long, value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,

    /// Consumer group shared by every process of the pipeline (kafka.group).
    /// Example: --group kpiflow-eu
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Where tables and checkpoints live: a directory, file:///path or
    /// s3://bucket/prefix (data). Example: --data s3://factory-kpis/prod
    #[arg(long, value_name = "DIR|URL")]
    pub data: Option<String>,

    /// How often a checkpoint is taken (checkpoint.interval). Example: --checkpoint-interval 30s
    #[arg(long, value_name = "D")]
    pub checkpoint_interval: Option<String>,

    /// The Delta application-transaction id (pipeline.id), [A-Za-z0-9_.-], at
    /// most 64 characters. Example: --pipeline-id kpiflow-eu
    #[arg(long, value_name = "ID")]
    pub pipeline_id: Option<String>,

    /// A librdkafka property, repeatable; added to kafka.properties, winning
    /// over the same property from the file or environment.
    /// Example: -X security.protocol=SASL_SSL
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,

    /// Serve the dashboards, the views and SQL APIs and /metrics on this
    /// address (server.listen; default off). Example: --http 127.0.0.1:8080
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,

    /// Serve the Postgres wire protocol (psql, Grafana, BI tools) over the
    /// same tables as the SQL API on this address (pg.listen; default off).
    /// With tokens, log in as a token's name with the token as password.
    /// Example: --pg 127.0.0.1:5432
    #[arg(long, value_name = "ADDR")]
    pub pg: Option<String>,

    /// Allow --http or --pg on an address other machines can reach without tokens
    /// (server.insecure): anyone who can connect sees everything.
    #[arg(long)]
    pub insecure: bool,

    /// Print the merged settings as TOML (secrets as "***") and exit without
    /// connecting anywhere. Example: kpiflow run --config kpiflow.toml --print-config
    #[arg(long)]
    pub print_config: bool,
}

fn parse_view(s: &str) -> Result<String, String> {
    if crate::views::VIEWS.iter().any(|(name, _)| *name == s) {
        Ok(s.to_owned())
    } else {
        let names: Vec<&str> = crate::views::VIEWS.iter().map(|(n, _)| *n).collect();
        Err(format!(
            "unknown view '{s}': expected one of {}",
            names.join(", ")
        ))
    }
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse()
        .map_err(|e: kpiflow_ingest::simulator::UnknownScenario| e.to_string())
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("the rate must be a number above 0 events per second, e.g. --rate 1000".into()),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("must be a fraction between 0 and 1, e.g. 0.05".into()),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; write a duration such as 500ms, 30s, 5m or 2h"))
}

fn parse_clock(s: &str) -> Result<Clock, String> {
    match s {
        "sim" => Ok(Clock::Simulated),
        "wall" => Ok(Clock::Wall),
        _ => Err("use sim (simulated time) or wall (the current time)".into()),
    }
}

fn parse_start(s: &str) -> Result<DateTime<Utc>, String> {
    kpiflow_types::time::parse_rfc3339(s).map_err(|e| e.to_string())
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("write a librdkafka property as KEY=VALUE, e.g. -X security.protocol=SSL".into()),
    }
}

/// Prints help and version as clap does; any other mistake as one line on
/// stderr, naming the problem and the fix, with exit code 2.
pub fn report_usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(error.exit_code().clamp(0, 255) as u8)
        }
        _ => {
            let text = error.render().to_string();
            let line = text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("For more information")
                        && !l.starts_with("Usage:")
                })
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("{line} (see --help)");
            ExitCode::from(2)
        }
    }
}
