//! Any Delta reader sees exactly the committed rows: a real data directory
//! (`kpiflow demo` with malformed and late records, so that every kind of
//! table has rows) read table by table with the Python `deltalake` package
//! (delta-rs's Python binding, its own build of the protocol: log replay,
//! partition values from the file paths, Parquet through pyarrow) and with
//! `kpiflow query`, compared as multisets of rows. Python also sees each
//! table's newest version and the pipeline's application transaction, and
//! neither reader sees a Parquet file that no commit added.
//!
//! Canonical values: timestamps as epoch microseconds (kpiflow prints RFC
//! 3339, Python gives integers), binary columns as lowercase hex (as
//! kpiflow prints them), dates as `YYYY-MM-DD`, floats to 13 significant
//! digits (both sides print the shortest round-trip form; the rounding
//! only absorbs a last-bit difference of JSON parsing), null for a column
//! kpiflow's JSON lines leave out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KINDS: [&str; 4] = ["raw", "views", "late", "deadletters"];
/// The demo's pipeline id: the application id of its Delta commits.
const DEMO_PIPELINE: &str = "kpiflow-demo";

/// Reads each `name=path` table of argv[3..] with deltalake and writes
/// `<out>/<name>.jsonl`: a header (version, the application transaction of
/// argv[2], row count, columns with their Arrow types), then one object per
/// row in the canonical form above.
const READER: &str = r#"
import json, math, sys
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

def canonical(column, kind):
    if pa.types.is_dictionary(kind):
        column = pa.chunked_array([c.dictionary_decode() for c in column.chunks], kind.value_type)
        kind = kind.value_type
    if pa.types.is_timestamp(kind):
        to_micros = {"s": lambda v: v * 1_000_000, "ms": lambda v: v * 1000,
                     "us": lambda v: v, "ns": lambda v: v // 1000}[kind.unit]
        return [None if v is None else to_micros(v) for v in pc.cast(column, pa.int64()).to_pylist()]
    values = column.to_pylist()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return [None if v is None else v.hex() for v in values]
    if pa.types.is_date(kind):
        return [None if v is None else v.isoformat() for v in values]
    if pa.types.is_floating(kind):
        return [v if v is None or math.isfinite(v) else repr(v) for v in values]
    return values

out, app = sys.argv[1], sys.argv[2]
for spec in sys.argv[3:]:
    name, path = spec.split("=", 1)
    dt = DeltaTable(path)
    table = dt.to_pyarrow_table()
    names = table.schema.names
    columns = {f.name: canonical(table.column(f.name), f.type) for f in table.schema}
    with open(f"{out}/{name}.jsonl", "w") as f:
        header = {"version": dt.version(), "app_version": dt.transaction_version(app),
                  "rows": table.num_rows, "columns": [[x.name, str(x.type)] for x in table.schema]}
        f.write(json.dumps(header) + "\n")
        for i in range(table.num_rows):
            f.write(json.dumps({n: columns[n][i] for n in names}) + "\n")
"#;

/// What a finished child printed.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with none of the caller's `KPIFLOW_*` variables, its
/// output to files (the demo prints a lot), killed after `limit`.
fn kpiflow(args: &[&str], scratch: &Path, limit: Duration) -> Ran {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out_path, err_path) = (
        scratch.join(format!("run-{run}.out")),
        scratch.join(format!("run-{run}.err")),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_kpiflow"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KPIFLOW_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = command.spawn().expect("start kpiflow");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kpiflow {args:?} did not finish within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ran {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// `kpiflow query --format json`: one object per line.
fn query(data: &Path, sql: &str, scratch: &Path) -> Vec<serde_json::Map<String, Value>> {
    let data = data.to_str().unwrap();
    let ran = kpiflow(
        &["query", "--data", data, "--format", "json", sql],
        scratch,
        Duration::from_secs(120),
    );
    assert_eq!(ran.code, Some(0), "{sql}: {}", ran.stderr);
    ran.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(row)) => row,
            other => panic!("{sql}: not a JSON object: {l} ({other:?})"),
        })
        .collect()
}

/// A column as kpiflow's catalog types it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    data_type: String,
}

/// One table's rows as canonical strings (one JSON array per row, in the
/// catalog's column order), with how often each occurs.
type Multiset = HashMap<String, i64>;

fn canonical(value: &Value, column: &Column, from_kpiflow: bool) -> Value {
    let data_type = column.data_type.as_str();
    match value {
        Value::Null => Value::Null,
        Value::String(text) if from_kpiflow && data_type.starts_with("Timestamp") => {
            let micros = chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_micros())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|t| t.and_utc().timestamp_micros())
                })
                .unwrap_or_else(|e| panic!("{}: {text:?} is not a time: {e}", column.name));
            Value::from(micros)
        }
        Value::Number(n) if data_type.starts_with("Float") => {
            Value::String(format!("{:.12e}", n.as_f64().expect("a float")))
        }
        other => other.clone(),
    }
}

fn row_key(row: &serde_json::Map<String, Value>, columns: &[Column], from_kpiflow: bool) -> String {
    let values: Vec<Value> = columns
        .iter()
        .map(|c| canonical(row.get(&c.name).unwrap_or(&Value::Null), c, from_kpiflow))
        .collect();
    serde_json::to_string(&values).unwrap()
}

fn multiset(
    rows: &[serde_json::Map<String, Value>],
    columns: &[Column],
    from_kpiflow: bool,
) -> Multiset {
    let mut counts = Multiset::new();
    for row in rows {
        *counts
            .entry(row_key(row, columns, from_kpiflow))
            .or_default() += 1;
    }
    counts
}

/// Rows in one multiset and not the other (with multiplicity), a few of each.
fn differences(kpiflow: &Multiset, python: &Multiset) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = kpiflow.keys().chain(python.keys()).collect();
    for key in keys {
        let (k, p) = (
            kpiflow.get(key).copied().unwrap_or(0),
            python.get(key).copied().unwrap_or(0),
        );
        if k != p {
            out.push(format!(
                "{k} × from kpiflow query, {p} × from deltalake: {key}"
            ));
        }
    }
    out
}

fn total(rows: &Multiset) -> i64 {
    rows.values().sum()
}

/// The newest `_delta_log/NNN.json` of a table.
fn newest_log_version(table: &Path) -> i64 {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json")?.parse::<i64>().ok()
        })
        .max()
        .expect("a table has log entries")
}

/// Every Parquet file under `dir` (partition folders included).
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "_delta_log") {
            continue;
        }
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    out
}

#[test]
fn python_deltalake_reads_every_table_as_kpiflow_query_does() {
    // The interpreter first: without it the test fails at once, not after the demo.
    let (python, versions) = kpiflow_tests::python::python_with_deltalake();
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let started = Instant::now();
    let demo = kpiflow(
        &[
            "demo",
            "--http",
            "127.0.0.1:0",
            "--pg",
            "off",
            "--duration",
            "20s",
            "--rate",
            "3000",
            "--malformed",
            "0.02",
            "--late",
            "0.01",
            "--data",
            data.to_str().unwrap(),
        ],
        scratch.path(),
        Duration::from_secs(180),
    );
    assert_eq!(demo.code, Some(0), "demo: {}", demo.stderr);
    eprintln!("demo ran in {:?}", started.elapsed());

    // The tables, and each one's columns as kpiflow's catalog types them.
    let kinds = KINDS.map(|k| format!("'{k}'")).join(",");
    let listed = query(
        &data,
        &format!(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns \
             WHERE table_schema IN ({kinds}) ORDER BY table_schema, table_name, ordinal_position"
        ),
        scratch.path(),
    );
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for row in &listed {
        let text = |key: &str| row[key].as_str().unwrap().to_owned();
        tables
            .entry(format!("{}.{}", text("table_schema"), text("table_name")))
            .or_default()
            .push(Column {
                name: text("column_name"),
                data_type: text("data_type"),
            });
    }
    let also_listed: BTreeSet<String> = query(
        &data,
        &format!(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ({kinds})"
        ),
        scratch.path(),
    )
    .iter()
    .map(|r| {
        format!(
            "{}.{}",
            r["table_schema"].as_str().unwrap(),
            r["table_name"].as_str().unwrap()
        )
    })
    .collect();
    assert_eq!(tables.keys().cloned().collect::<BTreeSet<_>>(), also_listed);
    for kind in KINDS {
        let of_kind = tables
            .keys()
            .filter(|t| t.starts_with(&format!("{kind}.")))
            .count();
        assert!(of_kind > 0, "no {kind}.* table in {:?}", tables.keys());
    }

    // A Parquet file no commit added (as an epoch's files are before their
    // commit): neither reader may see it.
    let uncommitted_table = "raw.sales";
    let before: i64 = query(
        &data,
        &format!("SELECT count(*) AS n FROM {uncommitted_table}"),
        scratch.path(),
    )[0]["n"]
        .as_i64()
        .unwrap();
    let committed_file = parquet_files(&data.join("raw/sales"))
        .into_iter()
        .next()
        .expect("raw.sales has files");
    std::fs::copy(
        &committed_file,
        committed_file.with_file_name("part-00000-never-committed-c000.zstd.parquet"),
    )
    .unwrap();

    // Python reads every table in one run.
    let out = scratch.path().join("python");
    std::fs::create_dir(&out).unwrap();
    let mut args = vec![out.to_str().unwrap().to_owned(), DEMO_PIPELINE.to_owned()];
    for table in tables.keys() {
        let path = data.join(table.replacen('.', "/", 1));
        args.push(format!("{table}={}", path.display()));
    }
    let read = kpiflow_tests::python::run_script(&python, READER, &args);
    assert!(
        read.status.success(),
        "the deltalake reader failed:\n{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let newest_epoch: i64 = std::fs::read_dir(data.join("checkpoints").join(DEMO_PIPELINE))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().parse().ok())
        .max()
        .expect("the demo checkpointed");

    let mut rows_per_kind: BTreeMap<&str, i64> = BTreeMap::new();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (table, columns) in &tables {
        let text = std::fs::read_to_string(out.join(format!("{table}.jsonl"))).unwrap();
        let mut lines = text.lines();
        let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        let python_rows: Vec<serde_json::Map<String, Value>> = lines
            .map(|l| match serde_json::from_str(l).unwrap() {
                Value::Object(row) => row,
                other => panic!("{table}: {other}"),
            })
            .collect();

        // Same columns, in the same order, partition columns included.
        let python_columns: Vec<&str> = header["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[0].as_str().unwrap())
            .collect();
        let ours: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(python_columns, ours, "{table}: columns");

        let kpiflow_rows = query(&data, &format!("SELECT * FROM {table}"), scratch.path());
        for row in &kpiflow_rows {
            for key in row.keys() {
                assert!(
                    ours.contains(&key.as_str()),
                    "{table}: unknown column {key}"
                );
            }
        }
        let ours_set = multiset(&kpiflow_rows, columns, true);
        let theirs_set = multiset(&python_rows, columns, false);
        assert_eq!(
            header["rows"].as_i64(),
            Some(python_rows.len() as i64),
            "{table}"
        );
        let diff = differences(&ours_set, &theirs_set);
        if total(&ours_set) != total(&theirs_set) || !diff.is_empty() {
            failures.push(format!(
                "{table}: {} rows from kpiflow query, {} from deltalake; {} differing rows, e.g.:\n  {}",
                total(&ours_set),
                total(&theirs_set),
                diff.len(),
                diff.iter().take(5).cloned().collect::<Vec<_>>().join("\n  ")
            ));
        }

        // The comparison is not vacuous: one row less, or one value changed, is seen.
        if let Some(first) = python_rows.first() {
            let fewer = multiset(&python_rows[1..], columns, false);
            assert!(!differences(&ours_set, &fewer).is_empty(), "{table}");
            let mut changed = python_rows.clone();
            let column = &columns[0].name;
            changed[0].insert(
                column.clone(),
                match &first[column] {
                    Value::String(s) => Value::String(format!("{s}x")),
                    Value::Number(n) => Value::from(n.as_f64().unwrap() + 1.0),
                    _ => Value::from("x"),
                },
            );
            let changed = multiset(&changed, columns, false);
            assert!(!differences(&ours_set, &changed).is_empty(), "{table}");
        }

        // Python sees the newest version and the pipeline's epochs.
        let path = data.join(table.replacen('.', "/", 1));
        assert_eq!(
            header["version"].as_i64(),
            Some(newest_log_version(&path)),
            "{table}: deltalake's version"
        );
        let app_version = header["app_version"].as_i64();
        if python_rows.is_empty() {
            assert!(
                app_version.is_none_or(|v| v <= newest_epoch),
                "{table}: {app_version:?}"
            );
        } else {
            assert!(
                app_version.is_some_and(|v| (1..=newest_epoch).contains(&v)),
                "{table}: the application transaction of {DEMO_PIPELINE} is {app_version:?}, \
                 the newest checkpoint {newest_epoch}"
            );
        }
        if table == uncommitted_table {
            assert_eq!(
                total(&ours_set),
                before,
                "kpiflow query read an uncommitted file"
            );
            assert_eq!(
                total(&theirs_set),
                before,
                "deltalake read an uncommitted file"
            );
        }

        let kind = KINDS
            .into_iter()
            .find(|k| table.starts_with(&format!("{k}.")))
            .unwrap();
        *rows_per_kind.entry(kind).or_default() += total(&theirs_set);
        if kind == "raw" || kind == "deadletters" {
            assert!(!python_rows.is_empty(), "{table} has no rows");
        }
        report.push(format!("{table} {}", total(&theirs_set)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in KINDS {
        assert!(
            rows_per_kind.get(kind).copied().unwrap_or(0) > 0,
            "no rows in any {kind}.* table: {rows_per_kind:?}"
        );
    }
    eprintln!(
        "{versions}: {} tables equal to kpiflow query, rows: {}; in {:?}",
        tables.len(),
        report.join(", "),
        started.elapsed()
    );

    // kpiflow verify: equal on the demo's tables; a table another writer
    // altered is reported by view, window and key, and exits 1.
    let data_arg = data.to_str().unwrap();
    let verified = kpiflow(
        &["verify", "--data", data_arg],
        scratch.path(),
        Duration::from_secs(120),
    );
    assert_eq!(
        verified.code,
        Some(0),
        "verify:\n{}{}",
        verified.stdout,
        verified.stderr
    );
    let table = data.join("views/sales_by_channel_region");
    let altered = kpiflow_tests::python::run_script(
        &python,
        "import sys\nfrom deltalake import DeltaTable\n\
         DeltaTable(sys.argv[1]).update(updates={'orders': 'orders + 1'}, \
         predicate=\"channel = 'online' AND region = 'north'\")",
        &[table.to_string_lossy().into_owned()],
    );
    assert!(
        altered.status.success(),
        "altering the table with Python: {}",
        String::from_utf8_lossy(&altered.stderr)
    );
    let verified = kpiflow(
        &["verify", "--data", data_arg],
        scratch.path(),
        Duration::from_secs(120),
    );
    assert_eq!(
        verified.code,
        Some(1),
        "verify after the change:\n{}",
        verified.stdout
    );
    let line = verified
        .stdout
        .lines()
        .find(|l| l.contains("channel = online, region = north"))
        .unwrap_or_else(|| panic!("no difference names the key:\n{}", verified.stdout));
    assert!(
        line.contains("view `sales_by_channel_region`, window ") && line.contains("orders is "),
        "{line}"
    );
    assert!(
        verified
            .stdout
            .lines()
            .all(|l| !l.contains("region = south")),
        "only the altered key differs:\n{}",
        verified.stdout
    );
}
