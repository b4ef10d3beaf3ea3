//! Every problem reported at once, each with its file line, variable or flag.

use super::*;

#[test]
fn brokers_are_required_and_the_message_says_where_to_set_them() {
    let found = problems(load_with_env(&args(&[]), env(&[])));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("kafka.brokers: required")
            && found[0].contains("KPIFLOW_KAFKA__BROKERS")
            && found[0].contains("--brokers"),
        "{found:?}"
    );
}

#[test]
fn every_invalid_setting_is_reported_at_once_with_its_source() {
    let file = TempFile::new(
        "problems",
        r#"[pipeline]
id = "has space"
[checkpoint]
interval = "10x"
keep = 1
[raw.topics.sale]
enabled = false
[compaction]
target_file_size = "12 parsecs"
[time_bounds]
min = "2050-01-01T00:00:00Z"
max = "2040-01-01T00:00:00Z"
"#,
    );
    let path = file.path();
    let env = env(&[
        ("KPIFLOW_KAFKA__BROKERS", "k:9092"),
        ("KPIFLOW_SOURCE__LINGER", "0s"),
        ("KPIFLOW_KAFKA__DEAD_LETTER_TOPICS", "yes"),
        ("KPIFLOW_RETENTION__RAW", "10m"),
    ]);
    let flags = [
        "--config",
        path,
        "--data",
        "gs://bucket/x",
        "-X",
        "group.id=g",
    ];
    let found = problems(load_with_env(&args(&flags), env));
    let expected = [
        format!(
            "{path}:2: pipeline.id: \"has space\" is not a pipeline id: 1 to 64 of A-Z a-z 0-9 _ . - (e.g. \"kpiflow-eu\")"
        ),
        "KPIFLOW_KAFKA__DEAD_LETTER_TOPICS: kafka.dead_letter_topics: \"yes\" is not a boolean (true or false)".into(),
        "-X group.id=g: kafka.properties.group.id: set kafka.group instead".into(),
        "--data: data: \"gs://bucket/x\": unsupported scheme \"gs\"; give a directory, file:///absolute/path or s3://bucket/prefix".into(),
        "KPIFLOW_SOURCE__LINGER: source.linger: \"0s\" must be above zero".into(),
        format!(
            "{path}:12: time_bounds.max: 2040-01-01T00:00:00Z must be after time_bounds.min (2050-01-01T00:00:00Z): the range is min inclusive to max exclusive"
        ),
        format!(
            "{path}:4: checkpoint.interval: \"10x\" is not a duration (e.g. \"10s\", \"5m\", \"1h\")"
        ),
        format!(
            "{path}:5: checkpoint.keep: 1: keep at least 2 checkpoints (the newest may be unfinished after a crash)"
        ),
        format!(
            "{path}:6: raw.topics.sale: unknown stream 'sale': expected one of sales, production, logistics, equipment"
        ),
        format!(
            "{path}:9: compaction.target_file_size: \"12 parsecs\" is not a size (e.g. \"128MiB\" or 134217728)"
        ),
        "KPIFLOW_RETENTION__RAW: retention.raw: \"10m\": keep at least 1h (tables are partitioned by the hour), or \"forever\"".into(),
    ];
    for line in &expected {
        assert!(
            found.contains(line),
            "missing:\n{line}\nin:\n{}",
            found.join("\n")
        );
    }
    // The file's problems come first, in the order of its lines.
    let lines: Vec<usize> = found
        .iter()
        .map_while(|p| p.strip_prefix(&format!("{path}:")))
        .map(|rest| rest.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 5, 6, 9, 12], "{}", found.join("\n"));
    assert_eq!(found.len(), expected.len(), "{}", found.join("\n"));
}

#[test]
fn unknown_keys_are_errors_naming_the_closest_valid_key() {
    let file = TempFile::new(
        "unknown",
        "views = [\"sales_by_planet\"]\n[kafka]\nbrokrs = \"k:9092\"\n[checkpoint]\nintervall = \"5s\"\n[retention]\nrow = \"30d\"\n[kafak]\ngroup = \"g\"\n[raw.topics.sales]\nenable = false\n",
    );
    let path = file.path();
    let env = env(&[
        ("KPIFLOW_KAFKA_BROKERS", "k:9092"),
        ("KPIFLOW_TEST_BROKERS", "ignored:1"),
        ("KPIFLOW_BENCH_RUNS", "3"),
        ("KPIFLOW_FAILPOINT", "after_manifest"),
        ("KPIFLOW_TANSU", "/opt/tansu"),
        ("KPIFLOW_CHECKPOINT__", "5s"),
        ("KPIFLOW_ENGINE", "off"),
        ("KPIFLOW_ENGINE__OUT_OF_ORDERNESS", "1s"),
    ]);
    let found = problems(load_with_env(&args(&["--config", path]), env));
    let expected = [
        "kafka.brokers: required".to_owned(),
        format!("{path}:1: views: unknown view \"sales_by_planet\": the shipped views are sales_by_channel_region, top_skus_5min"),
        format!("{path}:5: checkpoint.intervall: unknown key; did you mean checkpoint.interval?"),
        format!("{path}:3: kafka.brokrs: unknown key; did you mean kafka.brokers?"),
        format!("{path}:8: kafak: unknown key; did you mean kafka?"),
        "KPIFLOW_KAFKA_BROKERS: kafka_brokers: unknown setting; did you mean KPIFLOW_KAFKA__BROKERS?".into(),
        format!("{path}:11: raw.topics.sales.enable: unknown key; did you mean raw.topics.sales.enabled?"),
        format!("{path}:7: retention.row: unknown key; did you mean retention.raw?"),
        "KPIFLOW_CHECKPOINT__: not a setting: nested keys are joined by exactly two underscores".into(),
        "KPIFLOW_ENGINE__OUT_OF_ORDERNESS: engine.out_of_orderness: conflicts with KPIFLOW_ENGINE".into(),
        "KPIFLOW_ENGINE: engine: expected a table of settings, got \"off\"".into(),
    ];
    for prefix in &expected {
        assert!(
            found.iter().any(|p| p.starts_with(prefix.as_str())),
            "missing:\n{prefix}\nin:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), expected.len(), "{}", found.join("\n"));
}

#[test]
fn a_missing_or_malformed_file_is_an_error_and_other_problems_still_show() {
    let missing = "/nonexistent/kpiflow.toml";
    let found = problems(load_with_env(
        &args(&["--config", missing, "--checkpoint-interval", "soon"]),
        env(&[("KPIFLOW_KAFKA__BROKERS", "k:9092")]),
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with(&format!("--config {missing}: cannot read")),
        "{found:?}"
    );
    assert!(found[1].starts_with("--checkpoint-interval: checkpoint.interval: \"soon\""));

    let file = TempFile::new("syntax", "[kafka]\nbrokers = \"k:9092\"\ngroup = \n");
    let found = problems(load_with_env(&args(&["--config", file.path()]), env(&[])));
    assert!(
        found[0].starts_with(&format!("{}:3: not valid TOML", file.path())),
        "{found:?}"
    );
}

#[test]
fn the_server_section_is_checked_and_an_open_address_needs_tokens() {
    let open = problems(load_with_env(
        &args(&["--brokers", "k:9092", "--http", "0.0.0.0:8080"]),
        env(&[]),
    ));
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].contains("reachable from other machines") && open[0].contains("--insecure"),
        "{open:?}"
    );
    let allowed = load_with_env(
        &args(&[
            "--brokers",
            "k:9092",
            "--http",
            "0.0.0.0:8080",
            "--insecure",
        ]),
        env(&[]),
    )
    .unwrap();
    assert_eq!(allowed.server.listen, Some("0.0.0.0:8080".parse().unwrap()));

    let file = TempFile::new(
        "server",
        r#"[server]
listen = "localhost:80"
sql_timeout = "0s"
[[server.tokens]]
name = "wall"
role = "boss"
token = "0123456789abcdef"
[[server.tokens]]
name = "short"
role = "viewer"
token = "abc"
"#,
    );
    let found = problems(load_with_env(
        &args(&["--brokers", "k:9092", "--config", file.path()]),
        env(&[]),
    ));
    let all = found.join("\n");
    assert!(
        all.contains("server.listen") && all.contains("127.0.0.1:8080"),
        "{all}"
    );
    assert!(all.contains("server.sql_timeout"), "{all}");
    assert!(all.contains("role \"boss\""), "{all}");
    assert!(all.contains("shorter than 16"), "{all}");
    assert!(
        !all.contains("0123456789abcdef"),
        "a token is never shown: {all}"
    );
}
