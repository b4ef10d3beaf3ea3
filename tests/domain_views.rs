//! The views in `sql/` on simulated factory data.
//!
//! Golden: `sql/tests/input.jsonl` (Kafka records of the four streams, from
//! the seeded simulator with a line fault, out-of-order and a few late
//! events, plus late events of every stream added far behind the watermark,
//! see [`LATE_EVENTS`]) goes through the real decoder and the engine; each
//! view's final rows must equal `sql/tests/<view>.csv` and its late rows
//! `sql/tests/<view>.late.csv`, and so must those of a run that is
//! snapshotted halfway and restored into a fresh engine.
//! `KPIFLOW_BLESS=1 cargo test -p kpiflow-tests --test domain_views` rewrites
//! the expected files; `KPIFLOW_BLESS=input` regenerates the input too.
//!
//! Differential: the same finals must equal each view's SQL run as one batch
//! query over the events minus the late ones (`kpiflow_tests::oracle`).
//! Which events are late is decided by the spec's watermark
//! (`kpiflow_tests::watermark`) computed from the batches pushed and the
//! ticks; the engine's watermark is asserted equal to it after every push.
//!
//! Verify: what `kpiflow verify` does, through the engine's `batch` API:
//! each view recomputed over every decoded event minus the rows of its own
//! late table, compared with its finals, shows no difference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::csv::WriterBuilder;
use kpiflow_engine::batch;
use kpiflow_engine::{Emit, Engine, EngineConfig, LatePolicy, ViewInfo, WindowSpec};
use kpiflow_ingest::decode::{RawMessage, TopicDecoder};
use kpiflow_ingest::simulator::{Clock, Scenario, SimConfig, Simulator};
use kpiflow_tests::Emitted;
use kpiflow_tests::oracle::{
    LateRule, Table, assert_same_rows, batch_query, reference_tables, with_closed,
};
use kpiflow_tests::sales::progress;
use kpiflow_tests::watermark::{WatermarkModel, stream_inputs};
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

/// A late event added to the simulator's records: a copy of the last record
/// of `stream` whose payload contains `like` before the point `at` (a share
/// of the records), `back_ms` earlier in event time, arriving at that point.
struct LateEvent {
    at: f64,
    stream: Stream,
    like: &'static str,
    back_ms: i64,
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// Two hours back is behind every view's watermark at 40 % and 75 % of the
/// fixture, hourly windows included, and a day back behind the daily one:
/// late for every view that reads them. Two are late for some views only
/// (so some finals count them): an inspection 90 minutes back (its hour is
/// final, its day open) and an order 8 minutes back (the sales watermark
/// trails the copied order by about 5 minutes there: its minute and three
/// of its 5-minute windows are final, two 5-minute windows and its hour open).
const LATE_EVENTS: &[LateEvent] = &[
    LateEvent {
        at: 0.4,
        stream: Stream::Sales,
        like: "\"kind\":\"order\"",
        back_ms: 2 * HOUR,
    },
    LateEvent {
        at: 0.4,
        stream: Stream::Sales,
        like: "\"kind\":\"order\"",
        back_ms: 8 * MINUTE,
    },
    LateEvent {
        at: 0.4,
        stream: Stream::Production,
        like: "",
        back_ms: 2 * HOUR,
    },
    LateEvent {
        at: 0.4,
        stream: Stream::Logistics,
        like: "\"status\":\"shipped\"",
        back_ms: 2 * HOUR,
    },
    LateEvent {
        at: 0.4,
        stream: Stream::Equipment,
        like: "\"kind\":\"telemetry\"",
        back_ms: 2 * HOUR,
    },
    LateEvent {
        at: 0.4,
        stream: Stream::Equipment,
        like: "\"kind\":\"inspection\"",
        back_ms: 90 * MINUTE,
    },
    LateEvent {
        at: 0.75,
        stream: Stream::Sales,
        like: "\"kind\":\"order\"",
        back_ms: 2 * HOUR,
    },
    LateEvent {
        at: 0.75,
        stream: Stream::Production,
        like: "",
        back_ms: 2 * HOUR,
    },
    LateEvent {
        at: 0.75,
        stream: Stream::Logistics,
        like: "\"status\":\"delivered\"",
        back_ms: 2 * HOUR,
    },
    LateEvent {
        at: 0.75,
        stream: Stream::Equipment,
        like: "\"kind\":\"telemetry\"",
        back_ms: 2 * HOUR,
    },
    LateEvent {
        at: 0.75,
        stream: Stream::Equipment,
        like: "\"kind\":\"inspection\"",
        back_ms: 24 * HOUR,
    },
];

/// A record of the fixture before offsets are numbered.
struct Drawn {
    stream: Stream,
    partition: i32,
    event_time: i64,
    value: String,
}

/// 3 simulated hours with a line fault; one record in 40 kept (every
/// equipment state change and inspection kept), a few out of order and late;
/// then [`LATE_EVENTS`]. Offsets numbered per partition in arrival order.
fn generate_input() -> String {
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
    let end = config.start.timestamp_millis() + 3 * HOUR;
    let mut drawn = Vec::new();
    for (i, record) in Simulator::new(config).enumerate() {
        let event = record.event.as_ref().expect("no malformed records");
        let event_time = event.event_time().timestamp_millis();
        if event_time > end {
            break;
        }
        let payload = String::from_utf8(record.payload.clone()).unwrap();
        let rare = record.stream == Stream::Equipment && !payload.contains("\"telemetry\"");
        if !rare && i % 40 != 0 {
            continue;
        }
        drawn.push(Drawn {
            stream: record.stream,
            partition: kpiflow_tests::java_partition(record.key.as_bytes(), PARTITIONS),
            event_time,
            value: payload,
        });
    }
    let mut late: Vec<(usize, Drawn)> = LATE_EVENTS
        .iter()
        .map(|l| {
            let at = (l.at * drawn.len() as f64) as usize;
            let like = drawn[..at]
                .iter()
                .rev()
                .find(|d| d.stream == l.stream && d.value.contains(l.like))
                .unwrap_or_else(|| panic!("no {} record like {} to copy", l.stream.name(), l.like));
            let rest = like
                .value
                .strip_prefix("{\"event_time\":")
                .and_then(|v| v.split_once(','))
                .expect("event_time is the first field")
                .1;
            let event_time = like.event_time - l.back_ms;
            let late = Drawn {
                stream: l.stream,
                partition: like.partition,
                event_time,
                value: format!("{{\"event_time\":{event_time},{rest}"),
            };
            (at, late)
        })
        .collect();
    let mut arriving = Vec::new();
    for (i, d) in drawn.into_iter().enumerate() {
        while let Some(at) = late.iter().position(|(at, _)| *at == i) {
            arriving.push(late.remove(at).1);
        }
        arriving.push(d);
    }
    let mut offsets: BTreeMap<(Stream, i32), i64> = BTreeMap::new();
    let lines: Vec<String> = arriving
        .into_iter()
        .map(|d| {
            let offset = offsets.entry((d.stream, d.partition)).or_default();
            let line = serde_json::to_string(&Record {
                topic: d.stream.name().to_owned(),
                partition: d.partition,
                offset: *offset,
                value: d.value,
            })
            .unwrap();
            *offset += 1;
            line
        })
        .collect();
    lines.join("\n") + "\n"
}

/// The fixture's records: regenerated by `KPIFLOW_BLESS=input` (and written
/// when `write`), else read from `sql/tests/input.jsonl`.
fn fixture(write: bool) -> Vec<Record> {
    let path = root().join("sql/tests/input.jsonl");
    let text = if std::env::var("KPIFLOW_BLESS").is_ok_and(|b| b == "input") {
        let text = generate_input();
        if write {
            std::fs::write(&path, &text).unwrap();
        }
        text
    } else {
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; KPIFLOW_BLESS=input regenerates it",
                path.display()
            )
        })
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An engine with the reference tables and every view of `sql/`.
async fn golden_engine() -> (Engine, Vec<ViewInfo>) {
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    for entry in std::fs::read_dir(root().join("sql/reference"))
        .unwrap()
        .flatten()
    {
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
    (engine, views)
}

/// Decoded rows of one stream in arrival order, with the spec's watermark
/// for each view when they arrived.
#[derive(Default)]
struct Arrived {
    rows: Vec<RecordBatch>,
    closed: BTreeMap<String, Vec<Option<i64>>>,
}

/// A golden run: the engine it ended with, the sink of each engine it used
/// (one, or two when restored), what arrived.
struct Golden {
    engine: Engine,
    views: Vec<ViewInfo>,
    sinks: Vec<Emitted>,
    arrived: BTreeMap<Stream, Arrived>,
}

impl Golden {
    fn rows(&self, view: &str, kind: Emit) -> Vec<RecordBatch> {
        self.sinks
            .iter()
            .flat_map(|s| s.batches(view, kind))
            .collect()
    }
}

/// The fixture through the engine, `ROUND` records at a time. With
/// `restore_before`, the engine is snapshotted before that round and the
/// rest goes to a fresh engine restored from the snapshot.
async fn run(records: &[Record], restore_before: Option<usize>) -> Golden {
    let (mut engine, views) = golden_engine().await;
    let mut sinks = vec![Emitted::default()];
    let default_out_of_orderness = EngineConfig::default().out_of_orderness_ms;
    let mut models: BTreeMap<String, WatermarkModel> = views
        .iter()
        .map(|v| {
            let inputs = stream_inputs(&v.sql);
            assert!(!inputs.is_empty(), "{}: reads no stream", v.name);
            let ooo = v
                .options
                .out_of_orderness_ms
                .unwrap_or(default_out_of_orderness);
            (v.name.clone(), WatermarkModel::new(&inputs, ooo))
        })
        .collect();
    let mut arrived: BTreeMap<Stream, Arrived> = BTreeMap::new();
    let mut max: BTreeMap<(Stream, i32), i64> = BTreeMap::new();
    for (r, round) in records.chunks(ROUND).enumerate() {
        if restore_before == Some(r) {
            sinks.last_mut().unwrap().collect(&mut engine);
            let snapshot = engine.snapshot().unwrap();
            let (mut fresh, _) = golden_engine().await;
            fresh.restore(&snapshot).unwrap();
            sinks.push(Emitted::default());
            engine = fresh;
        }
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
            for v in &views {
                let w = models[&v.name].get();
                entry
                    .closed
                    .entry(v.name.clone())
                    .or_default()
                    .extend(std::iter::repeat_n(w, rows.num_rows()));
            }
            entry.rows.push(rows.clone());
            let batch = source_batch(stream, rows, &max, false);
            push(
                &mut engine,
                &batch,
                &mut models,
                &format!("round {r}, {}", stream.name()),
            )
            .await;
        }
    }
    for stream in Stream::ALL {
        let idle = source_batch(
            stream,
            RecordBatch::new_empty(stream.source_schema()),
            &max,
            true,
        );
        push(
            &mut engine,
            &idle,
            &mut models,
            &format!("{} idle", stream.name()),
        )
        .await;
    }
    for now in [0, 10 * 86_400_000] {
        engine.tick(now).await.unwrap();
        models.values_mut().for_each(|m| m.tick(now));
        assert_watermarks(&engine, &models, &format!("tick at {now}"));
    }
    sinks.last_mut().unwrap().collect(&mut engine);
    Golden {
        engine,
        views,
        sinks,
        arrived,
    }
}

fn event_times(rows: &RecordBatch) -> TimestampMillisecondArray {
    rows.column_by_name("event_time")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .expect("event_time is TIMESTAMP(ms)")
        .clone()
}

/// Rows of one stream with every partition's progress (max event time so far).
fn source_batch(
    stream: Stream,
    rows: RecordBatch,
    max: &BTreeMap<(Stream, i32), i64>,
    idle: bool,
) -> SourceBatch {
    let partitions = (0..PARTITIONS)
        .map(|p| progress(p, max.get(&(stream, p)).copied(), idle))
        .collect();
    SourceBatch {
        stream,
        rows,
        partitions,
    }
}

/// Pushes a batch into the engine and the models; the engine's watermarks
/// must then be the spec's.
async fn push(
    engine: &mut Engine,
    batch: &SourceBatch,
    models: &mut BTreeMap<String, WatermarkModel>,
    what: &str,
) {
    engine.push(batch).await.unwrap();
    models.values_mut().for_each(|m| m.push(batch));
    assert_watermarks(engine, models, &format!("push of {what}"));
}

fn assert_watermarks(engine: &Engine, models: &BTreeMap<String, WatermarkModel>, after: &str) {
    for (view, model) in models {
        assert_eq!(
            engine.watermark(view),
            model.get(),
            "view {view}: the engine's watermark (left) is not the spec's (right) after the {after}"
        );
    }
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

/// Each view's golden files and their text from a run.
fn outputs(golden: &Golden) -> BTreeMap<PathBuf, String> {
    let dir = root().join("sql/tests");
    let mut out = BTreeMap::new();
    for view in &golden.views {
        let finals = golden.rows(&view.name, Emit::Final);
        assert!(
            !finals.is_empty(),
            "{}: no final rows from the fixture",
            view.name
        );
        out.insert(
            dir.join(format!("{}.csv", view.name)),
            csv(&finals, &view.schema),
        );
        // A view that drops late rows (`-- @late drop`) has no late file.
        if view.options.late == LatePolicy::Table {
            let (late_schema, _) = golden
                .engine
                .live()
                .rows(&format!("{}__late", view.name))
                .expect("a windowed view has a late table");
            let late_fields: Vec<_> = late_schema
                .fields()
                .iter()
                .filter(|f| f.name() != "is_final")
                .cloned()
                .collect();
            let late_schema =
                std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(late_fields));
            out.insert(
                dir.join(format!("{}.late.csv", view.name)),
                csv(&golden.rows(&view.name, Emit::Late), &late_schema),
            );
        }
    }
    out
}

/// Files whose expected text differs from the run's, each with `why`.
fn differing(
    got: &BTreeMap<PathBuf, String>,
    want: impl Fn(&Path) -> String,
    why: &str,
) -> Vec<String> {
    got.iter()
        .filter(|(file, text)| want(file) != **text)
        .map(|(file, _)| format!("{} differs from {why}", file.display()))
        .collect()
}

fn read_expected(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}; KPIFLOW_BLESS=1 writes it", file.display()))
}

#[tokio::test]
async fn domain_views_match_their_golden_files_and_the_batch_query() {
    let bless = std::env::var("KPIFLOW_BLESS").unwrap_or_default();
    let records = fixture(true);
    let golden = run(&records, None).await;
    let files = outputs(&golden);
    let failures = if bless.is_empty() {
        differing(
            &files,
            read_expected,
            "the engine's output (KPIFLOW_BLESS=1 rewrites it)",
        )
    } else {
        for (file, text) in &files {
            std::fs::write(file, text).unwrap();
        }
        Vec::new()
    };

    let references = root().join("sql/reference");
    let arrived = &golden.arrived;
    for view in &golden.views {
        let finals = golden.rows(&view.name, Emit::Final);
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
        let expected = batch_query(&view.sql, &streams, &references, rule).await;
        assert_same_rows(
            &finals,
            &expected,
            &format!("view {}: finals vs the batch query", view.name),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every view saw late events: in its late table, or counted as dropped.
    for view in &golden.views {
        let stats = golden.engine.stats(&view.name).unwrap();
        match view.options.late {
            LatePolicy::Table => assert!(
                stats.late_rows > 0 && !golden.rows(&view.name, Emit::Late).is_empty(),
                "{}: the fixture's late events reach its late table",
                view.name
            ),
            LatePolicy::Drop => assert!(
                stats.late_dropped > 0,
                "{}: the fixture's late events are dropped and counted",
                view.name
            ),
        }
    }
}

#[tokio::test]
async fn a_golden_run_restored_from_a_mid_run_snapshot_gives_the_same_files() {
    let records = fixture(false);
    let rounds = records.len().div_ceil(ROUND);
    let restored = run(&records, Some(rounds / 2)).await;
    for (i, sink) in restored.sinks.iter().enumerate() {
        let side = ["before the snapshot", "after the restore"][i];
        for kind in [Emit::Final, Emit::Late] {
            let rows: usize = restored
                .views
                .iter()
                .map(|v| sink.rows(&v.name, kind))
                .sum();
            assert!(rows > 0, "no {kind:?} rows {side}: the cut is not mid-run");
        }
    }
    let files = outputs(&restored);
    let failures = if std::env::var("KPIFLOW_BLESS").is_ok_and(|b| !b.is_empty()) {
        // The other test is rewriting the files: compare with a run of its own.
        let whole = outputs(&run(&records, None).await);
        differing(&files, |f| whole[f].clone(), "an uninterrupted run's")
    } else {
        differing(
            &files,
            read_expected,
            "the output of a run snapshotted and restored halfway",
        )
    };
    assert!(
        failures.is_empty(),
        "a run snapshotted and restored halfway is not the uninterrupted one:\n{}",
        failures.join("\n")
    );
}

/// `kpiflow verify` on the golden run: each view's SQL over ALL decoded
/// events, minus the engine's own late rows for the view (per missed window:
/// the hop view's late event still counts in its open windows), equals the
/// view's finals, key by key and column by column; and without subtracting
/// them it would not, so the late rows are what makes the difference.
#[tokio::test]
async fn every_view_recomputed_over_all_events_minus_its_late_rows_equals_its_finals() {
    let golden = run(&fixture(false), None).await;
    let mut tables: Vec<batch::Table> = golden
        .arrived
        .iter()
        .map(|(stream, a)| batch::Table::new(stream.name(), stream.source_schema(), a.rows.clone()))
        .collect();
    tables.extend(reference_tables(&root().join("sql/reference")).await);
    let expected_keys: BTreeMap<&str, &str> = [
        ("carrier_on_time_hourly", "carrier carrier_code sla_hours"),
        ("equipment_health_hourly", "plant_id line_id"),
        ("last_inspection_daily", "device_id line_id"),
        ("line_output_hourly", "plant_id line_id line_name"),
        ("production_vs_sales_hourly", "sku"),
        ("sales_by_channel_region", "channel region"),
        ("top_skus_5min", "sku name category"),
    ]
    .into_iter()
    .collect();
    let mut report = Vec::new();
    for view in &golden.views {
        let name = view.name.as_str();
        let finals = golden.rows(name, Emit::Final);
        let late = golden.rows(name, Emit::Late);
        assert!(!late.is_empty(), "{name}: the fixture has late rows for it");
        let keys = batch::key_columns(name, &view.sql, &tables).await.unwrap();
        assert_eq!(
            keys[2..].join(" "),
            expected_keys[name],
            "{name}: key columns"
        );
        let recomputed = batch::batch_query(name, &view.sql, &tables, &late)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        report.extend(
            batch::compare(name, &keys, &finals, &recomputed)
                .iter()
                .map(ToString::to_string),
        );
        let with_late = batch::batch_query(name, &view.sql, &tables, &[])
            .await
            .unwrap();
        assert!(
            !batch::compare(name, &keys, &finals, &with_late).is_empty(),
            "{name}: its late events, counted, would change its finals"
        );
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}
