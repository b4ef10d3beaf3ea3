//! Differential property test of the engine against the batch oracle
//! (`kpiflow_tests::oracle`): random sales over several partitions, out of
//! order within the bound, some far behind; random batch splits and idle
//! gaps; views of every window kind with every supported aggregate.
//!
//! Which events are late is decided by the spec's watermark
//! (`kpiflow_tests::watermark`), computed from the batches' progress and the
//! ticks, never by the engine's; the engine's watermark is asserted equal to
//! it after every push and tick.
//!
//! For each view: the final rows equal the view's SQL as one batch query
//! over all events minus the late ones; the late table holds exactly the
//! (event, window) pairs that came after the window was final; the last
//! running snapshot of each window equals its final row; and a run that is
//! snapshotted mid-stream and restored into a fresh engine emits the same
//! final rows as the uninterrupted one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use datafusion::arrow::array::RecordBatch;
use kpiflow_engine::{Emit, Engine, EngineConfig, WindowSpec};
use kpiflow_tests::Emitted;
use kpiflow_tests::oracle::{
    LateRule, Table, assert_same_rows, batch_join_query, batch_query, with_closed,
};
use kpiflow_tests::sales::{Sale, progress, sales_rows};
use kpiflow_tests::watermark::{self, WatermarkModel};
use kpiflow_types::{SourceBatch, Stream};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const OUT_OF_ORDERNESS: i64 = 5_000;
const BASE: i64 = 1_790_000_000_000;

/// A generated view: SQL, a Rust copy of its WHERE clause, its window.
struct Case {
    name: String,
    sql: String,
    keep: fn(&Sale) -> bool,
    window: WindowSpec,
}

const AGGREGATES: &str = "count(*) AS n, sum(quantity) AS units, min(amount) AS lo, max(amount) AS hi, \
     avg(amount) AS mean, count(DISTINCT channel) AS channels, approx_distinct(region) AS regions, \
     approx_percentile_cont(quantity, 0.5) AS median_units";

fn cases() -> Vec<Case> {
    let windows = [
        (
            "tumble",
            "tumble(event_time, INTERVAL '1 minute')",
            WindowSpec::Tumble {
                size: 60_000,
                origin: 0,
            },
        ),
        (
            "hop",
            "hop(event_time, INTERVAL '20 seconds', INTERVAL '1 minute')",
            WindowSpec::Hop {
                slide: 20_000,
                size: 60_000,
            },
        ),
        (
            "session",
            "session(event_time, INTERVAL '20 seconds')",
            WindowSpec::Session { gap: 20_000 },
        ),
        (
            "date_bin",
            "date_bin(INTERVAL '30 seconds', event_time)",
            WindowSpec::Tumble {
                size: 30_000,
                origin: 0,
            },
        ),
    ];
    let mut out = Vec::new();
    for (kind, call, spec) in windows {
        let mut add = |suffix: &str, sql: String, keep: fn(&Sale) -> bool| {
            out.push(Case {
                name: format!("{kind}_{suffix}"),
                sql,
                keep,
                window: spec,
            })
        };
        add(
            "all",
            format!("SELECT sku, {AGGREGATES} FROM sales GROUP BY {call}, sku"),
            |_| true,
        );
        add(
            "filtered",
            format!(
                "SELECT channel, count(*) AS n, sum(amount) AS revenue FROM sales \
                 WHERE quantity >= 2 GROUP BY {call}, channel HAVING count(*) > 1"
            ),
            |s| s.quantity >= 2,
        );
        add(
            "joined",
            format!(
                "SELECT k.category, count(*) AS n, sum(s.amount) AS revenue, max(k.unit_price) AS list_price \
                 FROM sales s JOIN skus k ON s.sku = k.sku GROUP BY {}, k.category",
                call.replace("event_time", "s.event_time")
            ),
            |s| s.sku != "SKU-XX-99",
        );
        if kind != "session" {
            add(
                "online",
                format!(
                    "SELECT sku, count(*) AS orders FROM sales WHERE channel = 'online' GROUP BY {call}, sku"
                ),
                |s| s.channel == "online",
            );
            add(
                "offline",
                format!(
                    "SELECT sku, sum(quantity) AS units FROM sales WHERE channel <> 'online' GROUP BY {call}, sku"
                ),
                |s| s.channel != "online",
            );
        }
        add(
            "global",
            format!("SELECT count(*) AS n, sum(quantity) AS units FROM sales GROUP BY {call}"),
            |_| true,
        );
    }
    out
}

/// A join of two generated views on window_start and sku.
struct JoinCase {
    name: String,
    sql: String,
}

fn joins() -> Vec<JoinCase> {
    ["tumble", "hop", "date_bin"]
        .iter()
        .map(|kind| JoinCase {
            name: format!("{kind}_channels"),
            sql: format!(
                "SELECT o.sku, o.orders, f.units FROM {kind}_online o LEFT JOIN {kind}_offline f \
                 ON o.window_start = f.window_start AND o.sku = f.sku"
            ),
        })
        .collect()
}

/// Events in arrival order, split into source batches.
struct Input {
    events: Vec<Sale>,
    batches: Vec<SourceBatch>,
    /// Index of the first event of each batch.
    firsts: Vec<usize>,
}

fn generate(
    seed: u64,
    partitions: i32,
    events: usize,
    late_share: f64,
    max_batch: usize,
    idle_share: f64,
) -> Input {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // SKUs of sql/reference/skus.csv, and one that is not there.
    let skus = [
        "SKU-KT-01",
        "SKU-KT-02",
        "SKU-KT-03",
        "SKU-KT-04",
        "SKU-RC-01",
        "SKU-RC-02",
        "SKU-RC-03",
        "SKU-AF-01",
        "SKU-AF-02",
        "SKU-BL-01",
        "SKU-BL-02",
        "SKU-XX-99",
    ];
    let channels = ["online", "retail", "dealer"];
    let regions = ["east", "south", "north"];
    // Per partition: event times in its own order.
    let mut per_partition: Vec<Vec<Sale>> = vec![Vec::new(); partitions as usize];
    let mut nominal = vec![BASE + rng.random_range(0..30_000); partitions as usize];
    let mut max_seen = vec![i64::MIN; partitions as usize];
    for _ in 0..events {
        let p = rng.random_range(0..partitions) as usize;
        nominal[p] += rng.random_range(0..4_000);
        let t = if max_seen[p] > i64::MIN && rng.random_bool(late_share) {
            // Beyond the bound: may be late, depending on the watermark.
            max_seen[p] - OUT_OF_ORDERNESS - rng.random_range(1..180_000)
        } else {
            nominal[p] - rng.random_range(0..OUT_OF_ORDERNESS)
        };
        max_seen[p] = max_seen[p].max(t);
        per_partition[p].push(Sale {
            t,
            partition: p as i32,
            sku: skus[rng.random_range(0..skus.len())].to_owned(),
            channel: channels[rng.random_range(0..channels.len())].to_owned(),
            region: regions[rng.random_range(0..regions.len())].to_owned(),
            quantity: rng.random_range(1..4),
            amount: f64::from(rng.random_range(100..100_000)) / 100.0,
        });
    }
    let mut cursor = vec![0usize; partitions as usize];
    let mut max_event: Vec<Option<i64>> = vec![None; partitions as usize];
    let mut out = Input {
        events: Vec::new(),
        batches: Vec::new(),
        firsts: Vec::new(),
    };
    loop {
        let open: Vec<usize> = (0..partitions as usize)
            .filter(|&p| cursor[p] < per_partition[p].len())
            .collect();
        if open.is_empty() {
            break;
        }
        let size = rng.random_range(1..=max_batch);
        let mut rows = Vec::new();
        let mut touched = vec![false; partitions as usize];
        for _ in 0..size {
            let open: Vec<usize> = (0..partitions as usize)
                .filter(|&p| cursor[p] < per_partition[p].len())
                .collect();
            if open.is_empty() {
                break;
            }
            let p = open[rng.random_range(0..open.len())];
            let sale = per_partition[p][cursor[p]].clone();
            cursor[p] += 1;
            max_event[p] = Some(max_event[p].map_or(sale.t, |m| m.max(sale.t)));
            touched[p] = true;
            rows.push(sale);
        }
        let progress = (0..partitions as usize)
            .map(|p| {
                let idle = !touched[p] && rng.random_bool(idle_share);
                progress(p as i32, max_event[p], idle)
            })
            .collect();
        out.firsts.push(out.events.len());
        let first_offset = out.events.len() as i64;
        out.events.extend(rows.iter().cloned());
        out.batches.push(SourceBatch {
            stream: Stream::Sales,
            rows: sales_rows(&rows, first_offset),
            partitions: progress,
        });
    }
    out.firsts.push(out.events.len());
    out
}

async fn engine(cases: &[Case]) -> (Engine, Emitted) {
    let mut engine = Engine::new(EngineConfig {
        out_of_orderness_ms: OUT_OF_ORDERNESS,
        ..EngineConfig::default()
    })
    .unwrap();
    let skus = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql/reference/skus.csv"),
    )
    .unwrap();
    engine.register_reference_csv("skus", &skus).unwrap();
    for case in cases {
        engine.create_view(&case.name, &case.sql).await.unwrap();
    }
    for join in joins() {
        engine.create_view(&join.name, &join.sql).await.unwrap();
    }
    (engine, Emitted::default())
}

/// Everything idle, then the clock far ahead: every window closes. The
/// models, if given, follow.
async fn close_all(
    engine: &mut Engine,
    partitions: i32,
    now: i64,
    mut models: Option<&mut BTreeMap<&str, WatermarkModel>>,
) {
    let idle = SourceBatch {
        stream: Stream::Sales,
        rows: sales_rows(&[], 0),
        partitions: (0..partitions).map(|p| progress(p, None, true)).collect(),
    };
    engine.push(&idle).await.unwrap();
    if let Some(models) = models.as_deref_mut() {
        models.values_mut().for_each(|m| m.push(&idle));
    }
    for t in [now, now + 86_400_000] {
        engine.tick(t).await.unwrap();
        if let Some(models) = models.as_deref_mut() {
            models.values_mut().for_each(|m| m.tick(t));
        }
    }
}

/// The engine's watermark of every view equals the spec's (and a join's is
/// the smaller of its inputs').
fn assert_watermarks(
    engine: &Engine,
    models: &BTreeMap<&str, WatermarkModel>,
    seed: u64,
    after: &str,
) {
    for (view, model) in models {
        assert_eq!(
            engine.watermark(view),
            model.get(),
            "view {view} (seed {seed}): the engine's watermark (left) is not the spec's (right) after the {after}"
        );
    }
    for join in joins() {
        let kind = join.name.trim_end_matches("_channels");
        let want = watermark::joined(
            models[format!("{kind}_online").as_str()].get(),
            models[format!("{kind}_offline").as_str()].get(),
        );
        assert_eq!(
            engine.watermark(&join.name),
            want,
            "view {} (seed {seed}): the engine's watermark (left) is not the spec's (right) after the {after}",
            join.name
        );
    }
}

fn windows_of(spec: WindowSpec, t: i64) -> Vec<(i64, i64)> {
    match spec {
        WindowSpec::Tumble { size, origin } => {
            let s = (t - origin).div_euclid(size) * size + origin;
            vec![(s, s + size)]
        }
        WindowSpec::Hop { slide, size } => {
            let last = t.div_euclid(slide) * slide;
            (0..size / slide)
                .map(|k| last - k * slide)
                .map(|s| (s, s + size))
                .collect()
        }
        WindowSpec::Session { .. } => unreachable!(),
    }
}

async fn check(
    seed: u64,
    partitions: i32,
    events: usize,
    late_share: f64,
    max_batch: usize,
    idle_share: f64,
) {
    let cases = cases();
    let input = generate(seed, partitions, events, late_share, max_batch, idle_share);
    let (mut engine, mut sink) = engine(&cases).await;
    // Uninterrupted run, remembering each view's watermark as each event
    // arrived: the spec's watermark computed from the batches and ticks, not
    // the engine's, which is only compared with it.
    let mut models: BTreeMap<&str, WatermarkModel> = cases
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                WatermarkModel::new(&[Stream::Sales], OUT_OF_ORDERNESS),
            )
        })
        .collect();
    let mut closed: BTreeMap<&str, Vec<Option<i64>>> = BTreeMap::new();
    let mut now = 0;
    for (b, batch) in input.batches.iter().enumerate() {
        for case in &cases {
            let w = models[case.name.as_str()].get();
            closed
                .entry(&case.name)
                .or_default()
                .extend(std::iter::repeat_n(
                    w,
                    input.firsts[b + 1] - input.firsts[b],
                ));
        }
        engine.push(batch).await.unwrap();
        models.values_mut().for_each(|m| m.push(batch));
        assert_watermarks(&engine, &models, seed, &format!("push of batch {b}"));
        now += 100;
        if b % 7 == 0 {
            engine.tick(now).await.unwrap();
            models.values_mut().for_each(|m| m.tick(now));
            assert_watermarks(&engine, &models, seed, &format!("tick after batch {b}"));
        }
    }
    // The last running values, then everything closed.
    engine.tick(now).await.unwrap();
    models.values_mut().for_each(|m| m.tick(now));
    assert_watermarks(&engine, &models, seed, "the last tick");
    let mut running = BTreeMap::new();
    for case in &cases {
        let (_, rows) = engine.live().rows(&case.name).unwrap();
        running.insert(case.name.as_str(), running_only(&rows));
    }
    sink.collect(&mut engine);
    let final_before: BTreeMap<&str, usize> = cases
        .iter()
        .map(|c| (c.name.as_str(), sink.rows(&c.name, Emit::Final)))
        .collect();
    close_all(&mut engine, partitions, now + 1, Some(&mut models)).await;
    assert_watermarks(&engine, &models, seed, "close");
    sink.collect(&mut engine);

    // The same input, snapshotted after a third of the batches and restored
    // into a fresh engine.
    let cut = input.batches.len() / 3;
    let (mut first, mut first_sink) = engine_pair(&cases).await;
    for batch in &input.batches[..cut] {
        first.push(batch).await.unwrap();
    }
    let snapshot = first.snapshot().unwrap();
    first_sink.collect(&mut first);
    drop(first);
    let (mut second, mut second_sink) = engine_pair(&cases).await;
    second.restore(&snapshot).unwrap();
    for batch in &input.batches[cut..] {
        second.push(batch).await.unwrap();
    }
    close_all(&mut second, partitions, now + 1, None).await;
    second_sink.collect(&mut second);

    let references = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql/reference");
    let mut expected_by_view: BTreeMap<&str, Vec<RecordBatch>> = BTreeMap::new();
    for case in &cases {
        let closed = &closed[case.name.as_str()];
        let passes: Vec<bool> = input.events.iter().map(case.keep).collect();
        // Expected late (event, window) pairs, as (event time, window start).
        let mut late_expected = Vec::new();
        let mut on_time = Vec::new();
        for (i, e) in input.events.iter().enumerate() {
            let c = closed[i];
            let late_windows: Vec<i64> = match case.window {
                WindowSpec::Session { .. } => {
                    if c.is_some_and(|c| e.t < c) {
                        vec![i64::MIN]
                    } else {
                        vec![]
                    }
                }
                spec => windows_of(spec, e.t)
                    .into_iter()
                    .filter(|&(_, end)| c.is_some_and(|c| end <= c))
                    .map(|(s, _)| s)
                    .collect(),
            };
            let fully_late = match case.window {
                WindowSpec::Hop { slide, size } => late_windows.len() as i64 == size / slide,
                _ => !late_windows.is_empty(),
            };
            if passes[i] {
                late_expected.extend(late_windows.iter().map(|&s| (e.t, s)));
            }
            if !fully_late {
                on_time.push(i);
            }
        }
        let rule = match case.window {
            WindowSpec::Hop { .. } => LateRule::ByWindow,
            _ => LateRule::Removed,
        };
        let kept: Vec<usize> = match rule {
            LateRule::ByWindow => (0..input.events.len()).collect(),
            LateRule::Removed => on_time,
        };
        let rows: Vec<Sale> = kept.iter().map(|&i| input.events[i].clone()).collect();
        let table = with_closed(
            &sales_rows(&rows, 0),
            kept.iter().map(|&i| closed[i]).collect(),
        );
        let expected = batch_query(
            &case.sql,
            &[Table {
                name: "sales".into(),
                rows: vec![table],
            }],
            &references,
            rule,
        )
        .await;
        expected_by_view.insert(&case.name, expected.clone());
        let got = sink.batches(&case.name, Emit::Final);
        let context = format!("view {} (seed {seed}) {}", case.name, case.sql);
        assert_same_rows(
            &got,
            &expected,
            &format!("{context}: final rows vs the batch query"),
        );
        // Late rows.
        let late = sink.batches(&case.name, Emit::Late);
        let mut late_got = late_pairs(&late, matches!(case.window, WindowSpec::Session { .. }));
        late_got.sort_unstable();
        late_expected.sort_unstable();
        assert_eq!(
            late_got, late_expected,
            "view {} (seed {seed}): late rows",
            case.name
        );
        // Running values before the close equal the finals emitted at the close.
        let closing = tail_rows(
            &sink.batches(&case.name, Emit::Final),
            final_before[case.name.as_str()],
        );
        assert_same_rows(
            &running[case.name.as_str()],
            &closing,
            &format!("{context}: last running values vs the final rows"),
        );
        // Snapshot and restore: the same finals.
        let mut resumed = first_sink.batches(&case.name, Emit::Final);
        resumed.extend(second_sink.batches(&case.name, Emit::Final));
        assert_same_rows(
            &resumed,
            &got,
            &format!("{context}: finals after snapshot and restore"),
        );
    }
    let schemas = engine
        .views()
        .into_iter()
        .map(|v| (v.name, v.schema))
        .collect();
    check_joins(
        &sink,
        (&first_sink, &second_sink),
        &expected_by_view,
        &schemas,
        seed,
    )
    .await;
}

async fn check_joins(
    sink: &Emitted,
    resumed: (&Emitted, &Emitted),
    expected_by_view: &BTreeMap<&str, Vec<RecordBatch>>,
    schemas: &BTreeMap<String, datafusion::arrow::datatypes::SchemaRef>,
    seed: u64,
) {
    for join in joins() {
        let kind = join.name.trim_end_matches("_channels");
        let tables: Vec<Table> = [format!("{kind}_online"), format!("{kind}_offline")]
            .into_iter()
            .map(|name| {
                let mut rows = expected_by_view[name.as_str()].clone();
                if rows.is_empty() {
                    rows.push(RecordBatch::new_empty(schemas[&name].clone()));
                }
                Table { name, rows }
            })
            .collect();
        let expected = batch_join_query(&join.sql, &tables).await;
        let got = sink.batches(&join.name, Emit::Final);
        let context = format!("view {} (seed {seed}) {}", join.name, join.sql);
        assert_same_rows(
            &got,
            &expected,
            &format!("{context}: final rows vs the batch join"),
        );
        let mut again = resumed.0.batches(&join.name, Emit::Final);
        again.extend(resumed.1.batches(&join.name, Emit::Final));
        assert_same_rows(
            &again,
            &got,
            &format!("{context}: finals after snapshot and restore"),
        );
    }
}

async fn engine_pair(cases: &[Case]) -> (Engine, Emitted) {
    engine(cases).await
}

fn running_only(rows: &[RecordBatch]) -> Vec<RecordBatch> {
    use datafusion::arrow::array::BooleanArray;
    use datafusion::arrow::compute::{filter_record_batch, not};
    rows.iter()
        .map(|b| {
            let flag = b
                .column_by_name("is_final")
                .unwrap()
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .clone();
            filter_record_batch(b, &not(&flag).unwrap()).unwrap()
        })
        .collect()
}

/// Rows of `batches` after the first `skip` rows.
fn tail_rows(batches: &[RecordBatch], mut skip: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for b in batches {
        if skip >= b.num_rows() {
            skip -= b.num_rows();
            continue;
        }
        out.push(b.slice(skip, b.num_rows() - skip));
        skip = 0;
    }
    out
}

/// (event time, window start) of late rows; sessions have no window.
fn late_pairs(late: &[RecordBatch], session: bool) -> Vec<(i64, i64)> {
    use datafusion::arrow::array::{Array, TimestampMillisecondArray};
    let mut out = Vec::new();
    for b in late {
        let t = b
            .column_by_name("event_time")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let s = b
            .column_by_name("window_start")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            let start = if session || s.is_null(i) {
                i64::MIN
            } else {
                s.value(i)
            };
            out.push((t.value(i), start));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn views_equal_the_batch_query(
        seed in any::<u64>(),
        partitions in 1i32..=4,
        events in 20usize..300,
        late_share in prop_oneof![Just(0.0), 0.0f64..0.15],
        max_batch in 1usize..60,
        idle_share in prop_oneof![Just(0.0), 0.0f64..0.5],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(seed, partitions, events, late_share, max_batch, idle_share));
    }
}
