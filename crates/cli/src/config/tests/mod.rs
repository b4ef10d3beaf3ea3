//! Loading in-process, with the environment given as a list (no process-wide
//! variables, so the tests run in parallel): defaults and precedence here,
//! reports of problems in `problems.rs`, printing and the example file in
//! `printing.rs`.

mod printing;
mod problems;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::*;
use crate::args::{Cli, Command, RunArgs};

pub(super) fn args(flags: &[&str]) -> RunArgs {
    let argv = ["kpiflow", "run"].iter().chain(flags);
    match Cli::try_parse_from(argv).expect("valid flags").command {
        Command::Run(args) => args,
        other => panic!("parsed {other:?}"),
    }
}

pub(super) fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A file removed when dropped.
pub(super) struct TempFile(PathBuf);

impl TempFile {
    pub(super) fn new(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("kpiflow-config-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    pub(super) fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(super) fn problems(result: Result<RunConfig, ConfigErrors>) -> Vec<String> {
    match result {
        Ok(config) => panic!("loaded, expected problems: {config:?}"),
        Err(errors) => errors.0.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn defaults_need_only_the_brokers_and_match_the_crates_own() {
    let config = load_with_env(&args(&["--brokers", "k:9092"]), env(&[])).unwrap();
    assert_eq!(config.kafka.brokers, "k:9092");
    assert_eq!(config.pipeline.id, "kpiflow");
    assert_eq!(config.data, DataSpec::Dir("./kpiflow-data".into()));
    assert_eq!(config.checkpoint.interval, Duration::from_secs(10));
    assert_eq!(config.checkpoint.keep, 5);
    assert_eq!(config.compaction.interval, Some(Duration::from_secs(3600)));
    assert_eq!(config.compaction.target_file_size, 128 << 20);
    assert!(
        TableKind::ALL
            .iter()
            .all(|k| config.retention.of(*k).is_none())
    );
    let store = config.store_options();
    assert_eq!(
        store.request_timeout,
        StoreOptions::default().request_timeout
    );
    assert!(store.s3.endpoint.is_none() && store.s3.secret_access_key.is_none());
    assert!(Stream::ALL.iter().all(|s| config.raw.archives(*s)));
    assert_eq!(config.views.len(), crate::views::VIEWS.len());
    assert_eq!(config.storage.s3, S3Config::default());

    // The defaults are those of SourceConfig, TimeBounds and EngineConfig.
    let ours = config.source_config();
    let theirs = SourceConfig::new("k:9092", "kpiflow");
    assert_eq!(ours.max_batch_rows, theirs.max_batch_rows);
    assert_eq!(ours.linger, theirs.linger);
    assert_eq!(ours.idle_timeout, theirs.idle_timeout);
    assert_eq!(ours.time_bounds, theirs.time_bounds);
    assert_eq!(ours.dead_letter_topics, theirs.dead_letter_topics);
    assert_eq!(ours.auto_offset_reset, theirs.auto_offset_reset);
    assert_eq!(ours.connect_timeout, theirs.connect_timeout);
    assert_eq!(ours.properties, theirs.properties);
    let engine = config.engine_config();
    assert_eq!(
        engine.out_of_orderness_ms,
        EngineConfig::default().out_of_orderness_ms
    );
}

#[test]
fn a_file_loses_to_the_environment_which_loses_to_flags() {
    let file = TempFile::new(
        "precedence",
        r#"
[pipeline]
id = "from-file"
[kafka]
brokers = "file:9092"
group = "from-file"
[kafka.properties]
"client.id" = "from-file"
"fetch.min.bytes" = 1
"socket.timeout.ms" = "30000"
[checkpoint]
interval = "1s"
keep = 3
"#,
    );
    let env = env(&[
        ("KPIFLOW_KAFKA__GROUP", "from-env"),
        ("KPIFLOW_CHECKPOINT__INTERVAL", "2s"),
        ("KPIFLOW_CHECKPOINT__KEEP", "4"),
        ("KPIFLOW_KAFKA__PROPERTIES__CLIENT_ID", "from-env"),
        ("KPIFLOW_KAFKA__PROPERTIES__SOCKET_TIMEOUT_MS", "20000"),
    ]);
    let flags = [
        "--config",
        file.path(),
        "--group",
        "from-flag",
        "-X",
        "socket.timeout.ms=10000",
        "--checkpoint-interval",
        "3s",
    ];
    let config = load_with_env(&args(&flags), env.clone()).unwrap();
    assert_eq!(config.pipeline.id, "from-file"); // file only
    assert_eq!(config.kafka.brokers, "file:9092");
    assert_eq!(config.checkpoint.keep, 4); // env over file
    assert_eq!(config.kafka.group, "from-flag"); // flag over env over file
    assert_eq!(config.checkpoint.interval, Duration::from_secs(3));
    let properties = &config.kafka.properties.0;
    assert_eq!(properties["client.id"], "from-env");
    assert_eq!(properties["fetch.min.bytes"], "1");
    assert_eq!(properties["socket.timeout.ms"], "10000");
    assert_eq!(properties.len(), 3);

    // Without the flags, the environment wins over the file.
    let config = load_with_env(&args(&["--config", file.path()]), env).unwrap();
    assert_eq!(config.kafka.group, "from-env");
    assert_eq!(config.checkpoint.interval, Duration::from_secs(2));
    assert_eq!(config.kafka.properties.0["socket.timeout.ms"], "20000");
}

#[test]
fn the_environment_takes_text_for_every_kind_of_setting() {
    let env = env(&[
        ("KPIFLOW_BROKERS", "produce:9092"), // what `produce` reads
        ("KPIFLOW_CHECKPOINT__KEEP", "7"),
        ("KPIFLOW_RAW__TOPICS__EQUIPMENT__ENABLED", "false"),
        ("KPIFLOW_VIEWS", "top_skus_5min, line_output_hourly"),
        ("KPIFLOW_COMPACTION__TARGET_FILE_SIZE", "1048576"),
        ("KPIFLOW_COMPACTION__INTERVAL", "off"),
        ("KPIFLOW_TIME_BOUNDS__FUTURE_SKEW", "off"),
        ("KPIFLOW_DATA", "s3://factory-kpis/prod/"),
        ("KPIFLOW_STORAGE__S3__ALLOW_HTTP", "true"),
        ("KPIFLOW_STORAGE__S3__SECRET_ACCESS_KEY", "hunter2"),
    ]);
    let config = load_with_env(&args(&[]), env.clone()).unwrap();
    assert_eq!(config.kafka.brokers, "produce:9092");
    assert_eq!(config.checkpoint.keep, 7);
    assert!(!config.raw.archives(Stream::Equipment) && config.raw.archives(Stream::Sales));
    assert_eq!(config.views, ["top_skus_5min", "line_output_hourly"]);
    assert_eq!(config.compaction.target_file_size, 1 << 20);
    assert_eq!(config.compaction.interval, None);
    assert_eq!(config.time_bounds().max_future_skew_ms, None);
    let s3 = DataSpec::S3 {
        bucket: "factory-kpis".into(),
        prefix: "prod".into(),
    };
    assert_eq!(config.data, s3);
    assert_eq!(config.storage.s3.allow_http, Some(true));
    assert_eq!(
        config
            .storage
            .s3
            .secret_access_key
            .as_ref()
            .unwrap()
            .expose(),
        "hunter2"
    );

    // KPIFLOW_KAFKA__BROKERS wins over produce's KPIFLOW_BROKERS.
    let mut env = env;
    env.push(("KPIFLOW_KAFKA__BROKERS".into(), "run:9092".into()));
    let config = load_with_env(&args(&[]), env).unwrap();
    assert_eq!(config.kafka.brokers, "run:9092");
}
