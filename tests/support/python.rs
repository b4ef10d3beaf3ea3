//! The Python interpreter that tests use to read kpiflow's output with
//! tools other than kpiflow: the `deltalake` package from PyPI, with
//! `pyarrow`, and `psycopg` (a Postgres client). `scripts/test` installs
//! them into a virtual environment once and exports `KPIFLOW_PYTHON`.

use std::path::PathBuf;
use std::process::{Command, Output};

/// How to get the interpreter, for the failure messages.
const HOW_TO_INSTALL: &str = "Run the tests with scripts/test (it installs the Python packages \
     `deltalake`, `pyarrow` and `psycopg[binary]` into a virtual environment under ~/.cache/kpiflow \
     once and exports KPIFLOW_PYTHON), or install them yourself: `python3 -m venv /tmp/kpiflow-py && \
     /tmp/kpiflow-py/bin/pip install deltalake pyarrow 'psycopg[binary]'` (the versions scripts/test \
     pins) and export KPIFLOW_PYTHON=/tmp/kpiflow-py/bin/python";

/// `KPIFLOW_PYTHON`, checked to import `deltalake` and `pyarrow`. Fails
/// (never skips) when it is unset or the import fails, saying how to
/// install them. Returns the interpreter and the packages' versions.
pub fn python_with_deltalake() -> (PathBuf, String) {
    python_with(
        "deltalake, pyarrow",
        "reads kpiflow's Delta tables with the Python `deltalake` package",
    )
}

/// `KPIFLOW_PYTHON`, checked to import `psycopg`, as
/// [`python_with_deltalake`].
pub fn python_with_psycopg() -> (PathBuf, String) {
    python_with(
        "psycopg",
        "connects to kpiflow's Postgres port with psycopg",
    )
}

/// `KPIFLOW_PYTHON` checked to import `modules` (comma-separated; each has
/// a `__version__`); `does` says what the test needs them for.
fn python_with(modules: &str, does: &str) -> (PathBuf, String) {
    let python = std::env::var_os("KPIFLOW_PYTHON")
        .unwrap_or_else(|| panic!("KPIFLOW_PYTHON is not set: this test {does}. {HOW_TO_INSTALL}"));
    let python = PathBuf::from(python);
    let versions: Vec<String> = modules
        .split(',')
        .map(|m| format!("{0} {{{0}.__version__}}", m.trim()))
        .collect();
    let probe = Command::new(&python)
        .args([
            "-c",
            &format!("import {modules}; print(f'{}')", versions.join(", ")),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "KPIFLOW_PYTHON={} cannot be started: {e}. {HOW_TO_INSTALL}",
                python.display()
            )
        });
    if !probe.status.success() {
        panic!(
            "KPIFLOW_PYTHON={} cannot import {modules}:\n{}\n{HOW_TO_INSTALL}",
            python.display(),
            String::from_utf8_lossy(&probe.stderr).trim()
        );
    }
    let versions = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    (python, versions)
}

/// Runs `script` (Python source) with `args` and returns its output.
pub fn run_script(python: &PathBuf, script: &str, args: &[String]) -> Output {
    Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()))
}
