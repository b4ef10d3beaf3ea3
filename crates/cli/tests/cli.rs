//! The `kpiflow` binary end to end: help texts, one-line errors for bad
//! input within a bounded time, `produce` against the test broker, and the
//! demo's live rates, running view values and clean Ctrl-C exit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn kpiflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kpiflow"))
}

/// Runs to completion, failing the test if it takes longer than `limit`.
fn run_within(mut command: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kpiflow");
    loop {
        if child.try_wait().expect("wait").is_some() {
            return (child.wait_with_output().expect("output"), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("kpiflow did not finish within {limit:?}: {command:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_explains_every_option_with_an_example() {
    for args in [
        vec!["--help"],
        vec!["produce", "--help"],
        vec!["demo", "--help"],
        vec!["run", "--help"],
    ] {
        let (output, _) = run_within(
            {
                let mut c = kpiflow();
                c.args(&args);
                c
            },
            Duration::from_secs(10),
        );
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("Example"),
            "{args:?} help has no example:\n{text}"
        );
        // Every option's paragraph carries its own example.
        if args.len() == 2 {
            for paragraph in text.split("\n  -").skip(1) {
                let name = paragraph.lines().next().unwrap_or_default();
                if name.contains("--help") || name.contains("--version") || name.contains("--json")
                {
                    continue;
                }
                assert!(
                    paragraph.contains("Example:"),
                    "{args:?}: option {name} has no example"
                );
            }
        }
    }
}

/// Runs with bad arguments; returns the single stderr line.
fn one_line_error(args: &[&str]) -> String {
    let mut command = kpiflow();
    command.args(args);
    let (output, _) = run_within(command, Duration::from_secs(30));
    assert!(!output.status.success(), "{args:?} succeeded");
    let stderr = stderr_of(&output);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line, got:\n{stderr}"
    );
    lines[0].to_owned()
}

#[test]
fn bad_input_is_reported_in_one_line_naming_the_fix() {
    let base = ["produce", "--brokers", "127.0.0.1:1", "--count", "10"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    let line = one_line_error(&with(&["--scenario", "rush"]));
    assert!(
        line.contains("rush") && line.contains("normal, peak, fault, mismatch"),
        "{line}"
    );
    for rate in ["0", "-5", "fast"] {
        let line = one_line_error(&with(&["--rate", rate]));
        assert!(
            line.contains("--rate") && line.contains("above 0"),
            "{line}"
        );
    }
    for fraction in ["1.5", "-0.1"] {
        let line = one_line_error(&with(&["--malformed", fraction]));
        assert!(
            line.contains("--malformed") && line.contains("between 0 and 1"),
            "{line}"
        );
    }
    let line = one_line_error(&["demo", "--view", "sales_by_planet"]);
    assert!(
        line.contains("sales_by_planet") && line.contains("production_vs_sales_hourly"),
        "{line}"
    );
    let line = one_line_error(&["produce", "--brokers", "127.0.0.1:1"]);
    assert!(
        line.contains("--count") && line.contains("--duration"),
        "{line}"
    );
    let line = one_line_error(&with(&["--duration", "soon"]));
    assert!(
        line.contains("--duration") || line.contains("--count"),
        "{line}"
    );
}

#[test]
fn unreachable_broker_fails_fast_with_the_fix() {
    let mut command = kpiflow();
    command.args([
        "produce",
        "--brokers",
        "127.0.0.1:1",
        "--count",
        "10",
        "--connect-timeout",
        "2s",
    ]);
    let (output, took) = run_within(command, Duration::from_secs(20));
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("cannot reach") && lines[0].contains("--brokers"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn produce_json_summary_counts_what_the_broker_acknowledged() {
    let brokers = std::env::var("KPIFLOW_TEST_BROKERS").unwrap_or_else(|_| {
        panic!("KPIFLOW_TEST_BROKERS is not set: run the tests with scripts/test, which starts a tansu broker")
    });
    let mut command = kpiflow();
    command.args([
        "produce",
        "--brokers",
        &brokers,
        "--count",
        "3000",
        "--rate",
        "10000",
        "--malformed",
        "0.2",
        "--scenario",
        "fault",
        "--json",
    ]);
    let (output, _) = run_within(command, Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr_of(&output));
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    let topics = summary["topics"].as_object().expect("topics");
    assert_eq!(topics.len(), 4);
    let mut total = 0;
    let mut malformed = 0;
    for (name, topic) in topics {
        assert_eq!(topic["failed"], 0, "{name}");
        let bad: u64 = topic["malformed"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        total += topic["good"].as_u64().unwrap() + bad;
        malformed += bad;
    }
    assert_eq!(total, 3000);
    let fraction = malformed as f64 / 3000.0;
    assert!((fraction - 0.2).abs() < 0.03, "{fraction}");
    assert_eq!(summary["scenario"], "fault");
}

#[test]
fn demo_shows_live_rates_and_running_view_values_and_exits_zero_on_ctrl_c() {
    let mut child = kpiflow()
        .args([
            "demo",
            "--rate",
            "2000",
            "--http",
            "127.0.0.1:0",
            "--pg",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kpiflow demo");
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });

    // Wait for a line where all four topics have a non-zero rate.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let live = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(remaining) {
            Ok(line) => {
                let all_live = ["sales", "production", "logistics", "equipment"]
                    .iter()
                    .all(|t| {
                        line.split(&format!("{t} ")).nth(1).is_some_and(|rest| {
                            let rate = rest
                                .trim_start()
                                .split('/')
                                .next()
                                .unwrap_or("0")
                                .replace(',', "");
                            rate.parse::<u64>().is_ok_and(|r| r > 0)
                        })
                    });
                seen.push(line.clone());
                if all_live {
                    break line;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no line with four live rates within 60s; got:\n{}",
                    seen.join("\n")
                );
            }
        }
    };
    assert!(
        live.contains("decoded") && live.contains("dead letters"),
        "{live}"
    );

    // The engine's running values: two tables of the shown view, five
    // seconds apart, with different values.
    let mut tables: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    while tables.len() < 2 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines_rx.recv_timeout(remaining) else {
            let _ = child.kill();
            panic!(
                "no two tables of running values within 40s; got:\n{}",
                seen.join("\n")
            );
        };
        seen.push(line.clone());
        if line.starts_with("view sales_by_channel_region:") {
            current = Some(String::new());
        } else if let Some(table) = current.as_mut() {
            if line.starts_with('+') || line.starts_with('|') {
                table.push_str(&line);
                table.push('\n');
            } else {
                if table.contains("| window_start") && table.contains("net_revenue") {
                    tables.push(table.clone());
                }
                current = None;
            }
        }
    }
    assert_ne!(tables[0], tables[1], "running values did not change in 5 s");

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("send SIGINT");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(45) {
            let _ = child.kill();
            panic!("demo did not stop within 45s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(exit.code(), Some(0), "demo exit status {exit:?}");
    let rest: Vec<String> = lines_rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.starts_with("stopped:")),
        "no closing line: {rest:?}"
    );
}
