//! Snapshots that are damaged, of another version or another engine's are
//! refused with an error naming the problem, and the engine is unchanged
//! and keeps running (property test over random damage).

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use kpiflow_engine::{Emit, Engine, EngineConfig, Error, Snapshot};
use kpiflow_tests::Emitted;
use kpiflow_tests::sales::*;
use kpiflow_types::Stream;
use proptest::prelude::*;
use std::sync::Arc;

const VIEWS: [(&str, &str); 3] = [
    (
        "tumbling",
        "SELECT sku, count(*) AS n, sum(amount) AS revenue, approx_distinct(region) AS regions, \
         count(DISTINCT channel) AS channels FROM sales GROUP BY tumble(event_time, INTERVAL '1 minute'), sku",
    ),
    (
        "sessions",
        "SELECT sku, count(*) AS n, avg(amount) AS mean FROM sales GROUP BY session(event_time, INTERVAL '20 seconds'), sku",
    ),
    (
        "joined",
        "SELECT a.sku, a.n, b.n AS m FROM tumbling a JOIN tumbling b ON a.window_start = b.window_start AND a.sku = b.sku",
    ),
];
const T0: i64 = 1_790_000_000_000;

async fn engine() -> Engine {
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    for (name, sql) in VIEWS {
        engine.create_view(name, sql).await.unwrap();
    }
    engine
}

async fn fed() -> Engine {
    let mut engine = engine().await;
    let rows: Vec<Sale> = (0..200)
        .map(|i| {
            sale(
                T0 + i * 700,
                0,
                ["A", "B", "C"][i as usize % 3],
                ["online", "retail"][i as usize % 2],
                1 + i % 4,
                10.0 + i as f64,
            )
        })
        .collect();
    engine
        .push(&batch(
            Stream::Sales,
            sales_rows(&rows, 0),
            vec![progress(0, Some(T0 + 199 * 700), false)],
        ))
        .await
        .unwrap();
    engine
}

/// What a snapshot says, to compare two engines' states.
fn describe(s: &Snapshot) -> Vec<(String, String)> {
    s.entries
        .iter()
        .map(|(n, b)| {
            // Rows in a stable order: session state comes out of a hash map.
            let text = pretty(std::slice::from_ref(b));
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            (n.clone(), lines.join("\n"))
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Damage {
    /// Keep only the first rows of one entry.
    Truncate { entry: usize, keep: usize },
    /// Drop a column of one entry.
    DropColumn { entry: usize, column: usize },
    /// Turn a column of one entry into strings.
    Retype { entry: usize, column: usize },
    /// Lose a whole entry.
    DropEntry { entry: usize },
    /// Rename an entry.
    Rename { entry: usize },
    /// Another format version.
    Version { version: u32 },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0usize..16, 0usize..8).prop_map(|(entry, keep)| Damage::Truncate { entry, keep }),
        (0usize..16, 0usize..16).prop_map(|(entry, column)| Damage::DropColumn { entry, column }),
        (0usize..16, 0usize..16).prop_map(|(entry, column)| Damage::Retype { entry, column }),
        (0usize..16).prop_map(|entry| Damage::DropEntry { entry }),
        (0usize..16).prop_map(|entry| Damage::Rename { entry }),
        (2u32..1000).prop_map(|version| Damage::Version { version }),
    ]
}

/// The damaged snapshot, or `None` when the damage changes nothing (a
/// truncation to at least the entry's rows).
fn apply(snapshot: &Snapshot, damage: &Damage) -> Option<Snapshot> {
    let mut s = snapshot.clone();
    let n = s.entries.len();
    match *damage {
        Damage::Truncate { entry, keep } => {
            let (_, b) = &mut s.entries[entry % n];
            if keep >= b.num_rows() {
                return None;
            }
            *b = b.slice(0, keep);
            // Fewer rows of partitions or views, or of window state: only
            // the former two are always detectable; state with fewer groups
            // is still a valid state.
            return Some(s);
        }
        Damage::DropColumn { entry, column } => {
            let (_, b) = &mut s.entries[entry % n];
            let keep: Vec<usize> = (0..b.num_columns())
                .filter(|&c| c != column % b.num_columns())
                .collect();
            *b = b.project(&keep).unwrap();
        }
        Damage::Retype { entry, column } => {
            let (_, b) = &mut s.entries[entry % n];
            let c = column % b.num_columns();
            let mut fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            if fields[c].data_type() == &DataType::Utf8 {
                fields[c] = Field::new(fields[c].name(), DataType::Int64, true);
                let mut columns: Vec<ArrayRef> = b.columns().to_vec();
                columns[c] = Arc::new(Int64Array::from(vec![7; b.num_rows()]));
                *b = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
            } else {
                fields[c] = Field::new(fields[c].name(), DataType::Utf8, true);
                let mut columns: Vec<ArrayRef> = b.columns().to_vec();
                columns[c] = Arc::new(StringArray::from(vec!["x"; b.num_rows()]));
                *b = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
            }
        }
        Damage::DropEntry { entry } => {
            s.entries.remove(entry % n);
        }
        Damage::Rename { entry } => {
            s.entries[entry % n].0.push_str("_other");
        }
        Damage::Version { version } => s.format_version = version,
    }
    Some(s)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn a_valid_snapshot_restores_into_a_fresh_engine() {
    runtime().block_on(async {
        let mut first = fed().await;
        // What closed before the cut is not the restored engine's to emit.
        first.take_output();
        let snapshot = first.snapshot().unwrap();
        let mut second = engine().await;
        second.restore(&snapshot).unwrap();
        assert_eq!(describe(&second.snapshot().unwrap()), describe(&snapshot));
        // Both close the same windows.
        let mut a = Emitted::default();
        let mut b = Emitted::default();
        for e in [&mut first, &mut second] {
            e.tick(T0).await.unwrap();
            e.push(&batch(
                Stream::Sales,
                sales_rows(&[], 200),
                vec![progress(0, Some(T0 + 3_600_000), false)],
            ))
            .await
            .unwrap();
        }
        for view in ["tumbling", "sessions", "joined"] {
            let x = pretty(&a.collect(&mut first).batches(view, Emit::Final));
            let y = pretty(&b.collect(&mut second).batches(view, Emit::Final));
            assert_eq!(x, y, "{view}");
            assert!(!x.is_empty());
        }
    });
}

#[test]
fn a_snapshot_of_other_views_is_refused_naming_them() {
    runtime().block_on(async {
        let snapshot = fed().await.snapshot().unwrap();
        let mut other = Engine::new(EngineConfig::default()).unwrap();
        other
            .create_view("tumbling", "SELECT sku, count(*) AS n FROM sales GROUP BY tumble(event_time, INTERVAL '1 minute'), sku")
            .await
            .unwrap();
        let err = other.restore(&snapshot).unwrap_err();
        assert!(matches!(err, Error::Restore(_)), "{err}");
        assert!(err.to_string().contains("views"), "{err}");
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_snapshot_is_an_error_and_leaves_the_engine_unchanged(damage in damage()) {
        runtime().block_on(async {
            let snapshot = fed().await.snapshot().unwrap();
            let Some(damaged) = apply(&snapshot, &damage) else { return };
            let mut engine = fed().await;
            let before = describe(&engine.snapshot().unwrap());
            let restored = engine.restore(&damaged);
            // Fewer groups of window state, or none (a view without open
            // windows has no entry), is a smaller valid state; so are fewer
            // partitions (a source that held fewer). Files carry checksums
            // for that: the engine checks meaning, not integrity.
            let name = &snapshot.entries[match damage {
                Damage::Truncate { entry, .. } | Damage::DropEntry { entry } => entry,
                _ => 0,
            } % snapshot.entries.len()].0;
            let smaller_state = match damage {
                Damage::Truncate { .. } => name != "__views",
                Damage::DropEntry { .. } => !name.starts_with("__"),
                _ => false,
            };
            match restored {
                Err(e) => {
                    assert!(matches!(e, Error::Restore(_)), "{damage:?}: {e}");
                    assert_eq!(describe(&engine.snapshot().unwrap()), before, "{damage:?} changed the engine");
                }
                Ok(()) => assert!(smaller_state, "{damage:?} was accepted"),
            }
            // The engine still runs.
            engine
                .push(&batch(Stream::Sales, sales_rows(&[sale(T0 + 300_000, 0, "A", "online", 1, 1.0)], 200), vec![progress(0, Some(T0 + 300_000), false)]))
                .await
                .unwrap_or_else(|e| panic!("after {damage:?}: {e}"));
        });
    }
}
