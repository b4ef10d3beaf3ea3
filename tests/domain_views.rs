//! The views in `sql/` on simulated factory data.
//!
//! Golden: `sql/tests/input.jsonl` (Kafka records of the four streams, from
//! the seeded simulator with a line fault, out-of-order and a few late
//! events) goes through the real decoder and the engine; each view's final
//! rows must equal `sql/tests/<view>.csv` and its late rows
//! `sql/tests/<view>.late.csv`. `KPIFLOW_BLESS=1 cargo test -p kpiflow-tests
//! --test domain_views` rewrites the expected files;
//! `KPIFLOW_BLESS=input` regenerates the input too.
//!
//! Differential: the same finals must equal each view's SQL run as one batch
//! query over the events minus the late ones (`kpiflow_tests::oracle`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::csv::WriterBuilder;
use kpiflow_engine::{Emit, Engine, EngineConfig, MemorySink, WindowSpec};
use kpiflow_ingest::decode::{RawMessage, TopicDecoder};
use kpiflow_ingest::simulator::{Clock, Scenario, SimConfig, Simulator};
use kpiflow_tests::oracle::{LateRule, Table, assert_same_rows, batch_query, with_closed};
use kpiflow_tests::sales::progress;
use kpiflow_types::{SourceBatch, Stream};

const PARTITIONS: i32 = 4;
/// Records pushed per round, split per stream.
const ROUND: usize = 300;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One Kafka record of the fixture.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    topic: String,
    partition: i32,
    offset: i64,
    value: String,
}

/// 3 simulated hours with a line fault; one record in 40 kept (every
/// equipment state change and inspection kept), a few out of order and late.
fn generate_input(path: &Path) {
    let config = SimConfig {
        seed: 11,
        scenario: Scenario::Fault,
        start: SimConfig::default_start(),
        clock: Clock::Simulated,
        out_of_order: 0.05,
        late: 0.003,
        malformed: 0.0,
        max_out_of_order: std::time::Duration::from_secs(4),
    };
    let end = config.start.timestamp_millis() + 3 * 3_600_000;
    let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut lines = Vec::new();
    for (i, record) in Simulator::new(config).enumerate() {
        let event = record.event.as_ref().expect("no malformed records");
        if event.event_time().timestamp_millis() > end {
            break;
        }
        let payload = String::from_utf8(record.payload.clone()).unwrap();
        let rare = record.stream == Stream::Equipment && !payload.contains("\"telemetry\"");
        if !rare && i % 40 != 0 {
            continue;
        }
        let partition = kpiflow_tests::java_partition(record.key.as_bytes(), PARTITIONS);
        let offset = offsets
            .entry((record.stream.name().to_owned(), partition))
            .or_default();
        lines.push(
            serde_json::to_string(&Record {
                topic: record.stream.name().to_owned(),
                partition,
                offset: *offset,
                value: payload,
            })
            .unwrap(),
        );
        *offset += 1;
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn read_input(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; KPIFLOW_BLESS=input regenerates it",
                path.display()
            )
        })
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Decoded rows of one stream in arrival order, with the engine's watermark
/// for each view when they arrived.
#[derive(Default)]
struct Arrived {
    rows: Vec<RecordBatch>,
    closed: BTreeMap<String, Vec<Option<i64>>>,
}

async fn run(
    records: &[Record],
    views: &[kpiflow_engine::ViewInfo],
    engine: &mut Engine,
) -> BTreeMap<Stream, Arrived> {
    let mut arrived: BTreeMap<Stream, Arrived> = BTreeMap::new();
    let mut max: BTreeMap<(Stream, i32), i64> = BTreeMap::new();
    for round in records.chunks(ROUND) {
        for stream in Stream::ALL {
            let mut decoder = TopicDecoder::new(stream, ROUND);
            for r in round.iter().filter(|r| r.topic == stream.name()) {
                decoder
                    .push(&RawMessage {
                        partition: r.partition,
                        offset: r.offset,
                        timestamp_ms: None,
                        key: None,
                        payload: Some(r.value.as_bytes()),
                    })
                    .unwrap_or_else(|d| panic!("fixture record refused: {}", d.reason));
            }
            let (Some(rows), _) = decoder.finish() else {
                continue;
            };
            let times = event_times(&rows);
            let parts = rows
                .column_by_name("_partition")
                .unwrap()
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int32Array>()
                .unwrap()
                .clone();
            for i in 0..rows.num_rows() {
                let m = max.entry((stream, parts.value(i))).or_insert(i64::MIN);
                *m = (*m).max(times.value(i));
            }
            let entry = arrived.entry(stream).or_default();
            for v in views {
                let w = engine.watermark(&v.name);
                entry
                    .closed
                    .entry(v.name.clone())
                    .or_default()
                    .extend(std::iter::repeat_n(w, rows.num_rows()));
            }
            entry.rows.push(rows.clone());
            push(engine, stream, rows, &max, false).await;
        }
    }
    for stream in Stream::ALL {
        push(
            engine,
            stream,
            RecordBatch::new_empty(stream.source_schema()),
            &max,
            true,
        )
        .await;
    }
    engine.tick(0).await.unwrap();
    engine.tick(10 * 86_400_000).await.unwrap();
    arrived
}

fn event_times(rows: &RecordBatch) -> TimestampMillisecondArray {
    rows.column_by_name("event_time")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .expect("event_time is TIMESTAMP(ms)")
        .clone()
}

/// Rows of one stream with every partition's progress (max event time so far).
async fn push(
    engine: &mut Engine,
    stream: Stream,
    rows: RecordBatch,
    max: &BTreeMap<(Stream, i32), i64>,
    idle: bool,
) {
    let partitions = (0..PARTITIONS)
        .map(|p| progress(p, max.get(&(stream, p)).copied(), idle))
        .collect();
    engine
        .push(&SourceBatch {
            stream,
            rows,
            partitions,
        })
        .await
        .unwrap();
}

fn csv(batches: &[RecordBatch], schema: &datafusion::arrow::datatypes::SchemaRef) -> String {
    let mut lines: Vec<String> = Vec::new();
    let all = concat_batches(schema, batches).unwrap();
    let mut out = Vec::new();
    WriterBuilder::new()
        .with_header(true)
        .build(&mut out)
        .write(&all)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut it = text.lines();
    let header = it.next().unwrap_or_default().to_owned();
    lines.extend(it.map(str::to_owned));
    lines.sort();
    std::iter::once(header)
        .chain(lines)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[tokio::test]
async fn domain_views_match_their_golden_files_and_the_batch_query() {
    let bless = std::env::var("KPIFLOW_BLESS").unwrap_or_default();
    let dir = root().join("sql/tests");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.jsonl");
    if bless == "input" {
        generate_input(&input);
    }
    let records = read_input(&input);

    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let references = root().join("sql/reference");
    for entry in std::fs::read_dir(&references).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        engine
            .register_reference_csv(&name, &std::fs::read_to_string(&path).unwrap())
            .unwrap();
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("sql"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "the domain views are in sql/");
    let mut views = Vec::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let info = engine
            .create_view_file(name, &text)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            !info.description.is_empty(),
            "{name}: a leading comment describes the view"
        );
        views.push(info);
    }
    let sink = MemorySink::default();
    engine.add_sink(Box::new(sink.clone()));
    let arrived = run(&records, &views, &mut engine).await;

    let mut failures = Vec::new();
    for view in &views {
        let finals = sink.batches(&view.name, Emit::Final);
        assert!(
            !finals.is_empty(),
            "{}: no final rows from the fixture",
            view.name
        );
        let late = sink.batches(&view.name, Emit::Late);
        let got = csv(&finals, &view.schema);
        let late_schema = engine
            .live()
            .rows(&format!("{}__late", view.name))
            .unwrap()
            .0;
        let late_fields: Vec<_> = late_schema
            .fields()
            .iter()
            .filter(|f| f.name() != "is_final")
            .cloned()
            .collect();
        let late_schema =
            std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(late_fields));
        let got_late = csv(&late, &late_schema);
        for (file, text) in [
            (dir.join(format!("{}.csv", view.name)), &got),
            (dir.join(format!("{}.late.csv", view.name)), &got_late),
        ] {
            if !bless.is_empty() {
                std::fs::write(&file, text).unwrap();
            } else {
                let want = std::fs::read_to_string(&file).unwrap_or_else(|e| {
                    panic!("{}: {e}; KPIFLOW_BLESS=1 writes it", file.display())
                });
                if &want != text {
                    failures.push(format!(
                        "{} differs from the engine's output (KPIFLOW_BLESS=1 rewrites it)",
                        file.display()
                    ));
                }
            }
        }

        // The batch oracle over the same events minus the late ones.
        let window = view.window.expect("domain views are windowed");
        let rule = match window {
            WindowSpec::Hop { .. } => LateRule::ByWindow,
            _ => LateRule::Removed,
        };
        let streams: Vec<Table> = arrived
            .iter()
            .map(|(stream, a)| {
                let all = concat_batches(&stream.source_schema(), &a.rows).unwrap();
                let closed = &a.closed[&view.name];
                let times = event_times(&all);
                let keep: Vec<bool> = (0..all.num_rows())
                    .map(|i| match (rule, window, closed[i]) {
                        (LateRule::ByWindow, _, _) | (_, _, None) => true,
                        (_, WindowSpec::Tumble { size, origin }, Some(c)) => {
                            let start = (times.value(i) - origin).div_euclid(size) * size + origin;
                            start + size > c
                        }
                        (_, WindowSpec::Session { .. }, Some(c)) => times.value(i) >= c,
                        (_, WindowSpec::Hop { .. }, _) => true,
                    })
                    .collect();
                let mask = datafusion::arrow::array::BooleanArray::from(keep);
                let kept = datafusion::arrow::compute::filter_record_batch(&all, &mask).unwrap();
                let kept_closed: Vec<Option<i64>> = closed
                    .iter()
                    .zip(mask.values().iter())
                    .filter(|(_, k)| *k)
                    .map(|(c, _)| *c)
                    .collect();
                Table {
                    name: stream.name().to_owned(),
                    rows: vec![with_closed(&kept, kept_closed)],
                }
            })
            .collect();
        let expected = batch_query(&view.sql, Some(window), &streams, &references, rule).await;
        assert_same_rows(
            &finals,
            &expected,
            &format!("view {}: finals vs the batch query", view.name),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let late_total: usize = views.iter().map(|v| sink.rows(&v.name, Emit::Late)).sum();
    assert!(
        late_total > 0,
        "the fixture has late events and some view saw them"
    );
}
