//! The Postgres port end to end: `kpiflow demo` with `--pg` and `--http` on
//! free loopback ports, then `pg_clients.py` (psycopg 3 on both query
//! protocols, and Debian's psql) runs Grafana's data-source query sequence,
//! compares a windowed query's rows over pgwire with /api/sql's, and checks
//! that DDL, DML and engine settings are refused on both paths, and runs the
//! shipped Grafana dashboard's queries (dashboards/grafana/). Token logins
//! and the limits are `crates/pg/tests/port.rs`.
//!
//! psql and KPIFLOW_PYTHON with psycopg must be there (scripts/test installs
//! both); without them the test fails, saying so.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kpiflow_tests::python::{python_with_psycopg, run_script};

const SCRIPT: &str = include_str!("pg_clients.py");

/// Kills the demo however the test ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `psql -c sql` against `pg` (`host:port`): its trimmed stdout, or None.
fn psql(pg: &str, sql: &str) -> Option<String> {
    let (host, port) = pg.rsplit_once(':').expect("host:port");
    let output = Command::new("psql")
        .args([
            "-X", "-A", "-t", "-h", host, "-p", port, "-U", "test", "-d", "kpiflow", "-c", sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "disable")
        .output()
        .expect("psql runs (install Debian's postgresql-client; scripts/test does)");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[test]
fn psql_psycopg_and_grafanas_queries_get_the_sql_apis_rows_and_cannot_write() {
    let (python, versions) = python_with_psycopg();
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_kpiflow"))
            .args([
                "demo",
                "--rate",
                "3000",
                "--http",
                "127.0.0.1:0",
                "--pg",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kpiflow demo"),
    );
    // The demo prints a line a second: keep reading, so it never blocks.
    let stdout = demo.0.stdout.take().expect("the demo's stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut http, mut pg) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.is_none() || pg.is_none() {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the demo printed its addresses within 60 s");
        if let Some(rest) = line.strip_prefix("kpiflow demo: dashboards at ") {
            http = rest.split('/').nth(2).map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("kpiflow demo: Postgres wire protocol at ") {
            pg = rest.split(": ").next().map(str::to_owned);
        }
    }
    let (http, pg) = (http.unwrap(), pg.unwrap());
    println!(
        "demo: http {http}, pg {pg}, data {}; {versions}",
        data.display()
    );
    // The first checkpoint commits the first final windows (10-s interval).
    let committed = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = psql(&pg, "SELECT count(*) FROM views.sales_by_channel_region")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if rows > 0 {
            break;
        }
        assert!(
            Instant::now() < committed,
            "no committed window in views.sales_by_channel_region over pgwire within 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (host, port) = pg.rsplit_once(':').unwrap();
    let dashboard = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dashboards/grafana/kpiflow-sales-production.json");
    let output = run_script(
        &python,
        SCRIPT,
        &[
            host.to_owned(),
            port.to_owned(),
            format!("http://{http}"),
            dashboard.to_string_lossy().into_owned(),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pg_clients.py failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON summary");
    println!("pg_clients.py: {summary}");
    assert_eq!(summary["version"], 1600);
    assert!(summary["series_rows"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["refused"], "ok");
    assert_eq!(summary["dashboard_queries"], 4, "{summary}");
    assert!(
        matches!(demo.0.try_wait(), Ok(None)),
        "the demo exited during the checks: {:?}",
        demo.0.try_wait()
    );
}
