//! The live dashboards in a real browser: `kpiflow demo` on a free loopback
//! port, then `tests/browser/dashboards.js` (puppeteer-core driving Debian's
//! headless Chromium) opens every dashboard at 1280×800 and 390×844 and
//! requires it live, free of errors, with every chart drawn and a KPI moving
//! within 5 s; its screenshots go to `<target>/screenshots/`. Then Ctrl-C
//! stops the demo, which must exit 0.
//!
//! Node.js, Chromium (`KPIFLOW_CHROMIUM`, default `/usr/bin/chromium`) and
//! `tests/browser/node_modules` must be there: scripts/test installs them.
//! Without them the test fails, saying so; it is never skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the browser script may take for all pages (it bounds each wait
/// itself; this catches a hang of node or Chromium).
const BROWSER_LIMIT: Duration = Duration::from_secs(8 * 60);

const HOW_TO_INSTALL: &str = "scripts/test installs them; by hand: \
     `apt-get update && apt-get install -y chromium` (or set KPIFLOW_CHROMIUM to a Chromium binary), \
     Node.js 18 or later on PATH, and `npm ci --prefix tests/browser`";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// `CARGO_TARGET_DIR` (relative to the repository root when relative),
/// else `<repo>/target`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Fails the test, naming what is missing and how to get it.
fn require_tools(root: &Path) -> PathBuf {
    let mut missing = Vec::new();
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => missing.push(format!(
            "`node --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => missing.push(format!("node (Node.js) is not on PATH: {e}")),
    }
    let chromium = std::env::var_os("KPIFLOW_CHROMIUM")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        missing.push(format!("no Chromium at {}", chromium.display()));
    }
    let puppeteer = root.join("tests/browser/node_modules/puppeteer-core/package.json");
    if !puppeteer.is_file() {
        missing.push(format!(
            "{} is missing (tests/browser's packages are not installed)",
            puppeteer.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the browser test cannot run: {}.\n{HOW_TO_INSTALL}",
        missing.join("; ")
    );
    chromium
}

/// Kills the demo if the test ends before it was stopped on purpose.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn every_dashboard_goes_live_in_chromium_with_drawn_charts_and_moving_kpis() {
    let started = Instant::now();
    let root = repo_root();
    let chromium = require_tools(&root);
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let data = scratch.path().join("data");
    let demo_err = scratch.path().join("demo.err");
    let screenshots = target_dir(&root).join("screenshots");

    let mut command = Command::new(env!("CARGO_BIN_EXE_kpiflow"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KPIFLOW_") {
            command.env_remove(name);
        }
    }
    command
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--pg",
            "off",
            "--rate",
            "3000",
            "--data",
        ])
        .arg(&data)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&demo_err).expect("demo.err"));
    let mut demo = Demo(command.spawn().expect("start kpiflow demo"));
    let demo_stderr = || std::fs::read_to_string(&demo_err).unwrap_or_default();

    // The demo prints a line a second: keep reading, so it never blocks.
    let stdout = demo.0.stdout.take().expect("the demo's stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let first = lines_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "kpiflow demo printed nothing within 60 s; stderr:\n{}",
                demo_stderr()
            )
        });
    let url = first
        .strip_prefix("kpiflow demo: dashboards at ")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("the demo's first line is not its URL: {first:?}"))
        .to_string();
    println!("demo at {url} (data in {})", data.display());

    // The browser script, its output to files (printed below).
    let (out_path, err_path) = (
        scratch.path().join("browser.out"),
        scratch.path().join("browser.err"),
    );
    let browser_started = Instant::now();
    let mut browser = Command::new("node")
        .arg(root.join("tests/browser/dashboards.js"))
        .arg(&url)
        .arg(&screenshots)
        .current_dir(&root)
        .env("KPIFLOW_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("browser.out"))
        .stderr(std::fs::File::create(&err_path).expect("browser.err"))
        .spawn()
        .expect("start node tests/browser/dashboards.js");
    let status = loop {
        if let Some(status) = browser.try_wait().expect("wait for node") {
            break Some(status);
        }
        if browser_started.elapsed() > BROWSER_LIMIT {
            let _ = browser.kill();
            let _ = browser.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    println!("--- tests/browser/dashboards.js stdout\n{out}--- stderr\n{err}---");
    let status = status.unwrap_or_else(|| {
        panic!("tests/browser/dashboards.js did not finish within {BROWSER_LIMIT:?}:\n{out}\n{err}")
    });
    assert!(
        status.success(),
        "tests/browser/dashboards.js failed ({status}):\n{err}\nits stdout:\n{out}\nthe demo's stderr:\n{}",
        demo_stderr()
    );
    println!(
        "browser checks took {:.1} s; screenshots in {}",
        browser_started.elapsed().as_secs_f64(),
        screenshots.display()
    );

    // Ctrl-C: a clean stop, exit 0.
    assert!(
        matches!(demo.0.try_wait(), Ok(None)),
        "the demo exited during the browser checks: {:?}; stderr:\n{}",
        demo.0.try_wait(),
        demo_stderr()
    );
    let sent = Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status()
        .expect("send SIGINT");
    assert!(sent.success(), "kill -INT failed: {sent}");
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = demo.0.try_wait().expect("wait for the demo") {
            break exit;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(45),
            "the demo did not stop within 45 s of Ctrl-C; stderr:\n{}",
            demo_stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        exit.code(),
        Some(0),
        "the demo's exit status after Ctrl-C: {exit:?}; stderr:\n{}",
        demo_stderr()
    );
    // Its last lines, up to the end of its stdout.
    let mut rest: Vec<String> = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while let Ok(line) = lines_rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        rest.push(line);
    }
    assert!(
        rest.iter().any(|l| l.starts_with("stopped:")),
        "no closing `stopped:` line after Ctrl-C; the last lines:\n{}",
        rest[rest.len().saturating_sub(10)..].join("\n")
    );
    println!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}
