//! The correctness oracle for continuous views: the view's own SQL run by
//! DataFusion as one batch query over all events, with the window call in
//! `GROUP BY` replaced by a join to an explicit table of windows.
//!
//! `GROUP BY tumble(t, size), k` becomes
//! `FROM … JOIN __windows __w ON t >= __w.window_start AND t < __w.window_end
//!  GROUP BY __w.window_start, __w.window_end, k`, with `__windows` listing
//! every window over the events' time range (tumble, date_bin, hop) or, for
//! sessions, every key's sessions computed here from the sorted event times.
//! This is the definition of window assignment, independent of the engine's
//! panes, watermarks and accumulators.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, SelectItem, SetExpr,
    Statement,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use kpiflow_engine::WindowSpec;

/// Column of oracle stream tables: the view's watermark when the row arrived
/// (null before any), used to leave out the windows the row was late for.
pub const CLOSED: &str = "__closed";

/// A table for the oracle: name and rows.
pub struct Table {
    pub name: String,
    pub rows: Vec<RecordBatch>,
}

/// How the oracle leaves out late events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateRule {
    /// The stream tables hold on-time rows only.
    Removed,
    /// Stream rows carry [`CLOSED`] and join only windows ending after it
    /// (hop: a row is late for some of its windows only). The window's time
    /// argument must be qualified by the stream's alias or be unqualified
    /// over a single stream.
    ByWindow,
}

fn ts_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn parse(sql: &str) -> Statement {
    let mut statements =
        Parser::parse_sql(&GenericDialect {}, sql).expect("oracle parses the view");
    statements.remove(0)
}

fn select_of(statement: &mut Statement) -> &mut datafusion::sql::sqlparser::ast::Select {
    let Statement::Query(query) = statement else {
        panic!("not a query")
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        panic!("not a plain SELECT")
    };
    select.as_mut()
}

fn args_of(expr: &Expr) -> Option<(String, Vec<Expr>)> {
    let Expr::Function(f) = expr else { return None };
    let name = f.name.to_string().to_lowercase();
    if !["tumble", "hop", "session", "date_bin"].contains(&name.as_str()) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => e.clone(),
            other => panic!("unexpected window argument {other}"),
        })
        .collect();
    Some((name, args))
}

/// Qualifier of a column expression (`s` for `s.event_time`).
fn qualifier(expr: &Expr) -> Option<String> {
    match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            Some(parts[parts.len() - 2].value.clone())
        }
        _ => None,
    }
}

/// Runs the view's SQL as a batch query over `streams` and `references`.
pub async fn batch_query(
    sql: &str,
    window: Option<WindowSpec>,
    streams: &[Table],
    references: &std::path::Path,
    late: LateRule,
) -> Vec<RecordBatch> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    register_reference_csvs(&ctx, references).await;
    for t in streams {
        let schema = t.rows[0].schema();
        ctx.register_table(
            t.name.as_str(),
            Arc::new(MemTable::try_new(schema, vec![t.rows.clone()]).unwrap()),
        )
        .unwrap();
    }
    let Some(window) = window else {
        return ctx.sql(sql).await.unwrap().collect().await.unwrap();
    };
    let mut statement = parse(sql);
    let select = select_of(&mut statement);
    let GroupByExpr::Expressions(group, _) = &mut select.group_by else {
        panic!("GROUP BY ALL is not a view")
    };
    let at = group
        .iter()
        .position(|e| args_of(e).is_some())
        .expect("a window in GROUP BY");
    let (name, args) = args_of(&group[at]).expect("window call");
    let time = if name == "date_bin" {
        args[1].clone()
    } else {
        args[0].clone()
    };
    let keys: Vec<Expr> = group
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at)
        .map(|(_, e)| e.clone())
        .collect();
    let w = |c: &str| Expr::CompoundIdentifier(vec![Ident::new("__w"), Ident::new(c)]);
    group.splice(at..=at, [w("window_start"), w("window_end")]);
    select.projection.splice(
        0..0,
        [
            SelectItem::ExprWithAlias {
                expr: w("window_start"),
                alias: Ident::new("window_start"),
            },
            SelectItem::ExprWithAlias {
                expr: w("window_end"),
                alias: Ident::new("window_end"),
            },
        ],
    );
    let mut on = format!("{time} >= __w.window_start AND {time} < __w.window_end");
    if late == LateRule::ByWindow {
        let closed = match qualifier(&time) {
            Some(q) => format!("{q}.{CLOSED}"),
            None => CLOSED.to_owned(),
        };
        on.push_str(&format!(
            " AND ({closed} IS NULL OR __w.window_end > {closed})"
        ));
    }
    let windows: RecordBatch = match window {
        WindowSpec::Session { gap } => {
            for (i, k) in keys.iter().enumerate() {
                on.push_str(&format!(" AND {k} IS NOT DISTINCT FROM __w.__k{i}"));
            }
            session_windows(&ctx, select, &time, &keys, gap).await
        }
        spec => {
            let (pane, size, origin) = match spec {
                WindowSpec::Tumble { size, origin } => (size, size, origin),
                WindowSpec::Hop { slide, size } => (slide, size, 0),
                WindowSpec::Session { .. } => unreachable!(),
            };
            let (lo, hi) = time_range(streams);
            let mut starts = Vec::new();
            let mut s = (lo - size - origin).div_euclid(pane) * pane + origin;
            while s <= hi {
                starts.push(s);
                s += pane;
            }
            let ends: Vec<i64> = starts.iter().map(|s| s + size).collect();
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("window_start", ts_ms(), false),
                    Field::new("window_end", ts_ms(), false),
                ])),
                vec![
                    Arc::new(TimestampMillisecondArray::from(starts).with_timezone("UTC")),
                    Arc::new(TimestampMillisecondArray::from(ends).with_timezone("UTC")),
                ],
            )
            .unwrap()
        }
    };
    let join = parse(&format!("SELECT 1 FROM __dummy JOIN __windows __w ON {on}"));
    let mut join = join;
    let join_clause = select_of(&mut join).from[0].joins.remove(0);
    select.from[0].joins.push(join_clause);
    ctx.register_table(
        "__windows",
        Arc::new(MemTable::try_new(windows.schema(), vec![vec![windows]]).unwrap()),
    )
    .unwrap();
    let text = statement.to_string();
    ctx.sql(&text)
        .await
        .unwrap_or_else(|e| panic!("oracle query failed: {e}\n{text}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("oracle query failed: {e}\n{text}"))
}

/// A join of views run as a batch query over the views' batch results, with
/// the left view's window columns first (`left` is its alias in the SQL).
pub async fn batch_join_query(sql: &str, left: &str, views: &[Table]) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    for t in views {
        let schema = t
            .rows
            .first()
            .map(|b| b.schema())
            .expect("the view has rows");
        ctx.register_table(
            t.name.as_str(),
            Arc::new(MemTable::try_new(schema, vec![t.rows.clone()]).unwrap()),
        )
        .unwrap();
    }
    let mut statement = parse(sql);
    let select = select_of(&mut statement);
    let column = |c: &str| Expr::CompoundIdentifier(vec![Ident::new(left), Ident::new(c)]);
    select.projection.splice(
        0..0,
        [
            SelectItem::ExprWithAlias {
                expr: column("window_start"),
                alias: Ident::new("window_start"),
            },
            SelectItem::ExprWithAlias {
                expr: column("window_end"),
                alias: Ident::new("window_end"),
            },
        ],
    );
    let text = statement.to_string();
    ctx.sql(&text)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn time_range(streams: &[Table]) -> (i64, i64) {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for t in streams {
        for b in &t.rows {
            let Ok(col) = b.schema().index_of("event_time") else {
                continue;
            };
            let a = cast(
                b.column(col),
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )
            .unwrap();
            let a = a
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            for v in a.iter().flatten() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if lo > hi { (0, 0) } else { (lo, hi) }
}

/// Every key's sessions: events closer than `gap` share one, ending `gap`
/// after its last event.
async fn session_windows(
    ctx: &SessionContext,
    select: &datafusion::sql::sqlparser::ast::Select,
    time: &Expr,
    keys: &[Expr],
    gap: i64,
) -> RecordBatch {
    let mut items: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} AS __k{i}"))
        .collect();
    items.push(format!("{time} AS __t"));
    let from: Vec<String> = select.from.iter().map(|f| f.to_string()).collect();
    let mut text = format!("SELECT {} FROM {}", items.join(", "), from.join(", "));
    if let Some(w) = &select.selection {
        text.push_str(&format!(" WHERE {w}"));
    }
    let batches = ctx.sql(&text).await.unwrap().collect().await.unwrap();
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    // key (as displayed) -> (key values, times)
    let mut by_key: BTreeMap<Vec<String>, (Vec<ScalarValue>, Vec<i64>)> = BTreeMap::new();
    for b in &batches {
        let t = cast(
            b.column(keys.len()),
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )
        .unwrap();
        let t = t
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        for row in 0..b.num_rows() {
            let values: Vec<ScalarValue> = (0..keys.len())
                .map(|c| ScalarValue::try_from_array(b.column(c), row).unwrap())
                .collect();
            let shown = values.iter().map(|v| format!("{v:?}")).collect();
            let entry = by_key.entry(shown).or_insert_with(|| (values, Vec::new()));
            if !t.is_null(row) {
                entry.1.push(t.value(row));
            }
        }
    }
    let mut key_columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); keys.len()];
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for (_, (values, mut times)) in by_key {
        times.sort_unstable();
        let mut i = 0;
        while i < times.len() {
            let start = times[i];
            let mut last = start;
            let mut j = i + 1;
            while j < times.len() && times[j] - last < gap {
                last = times[j];
                j += 1;
            }
            starts.push(start);
            ends.push(last + gap);
            for (c, v) in values.iter().enumerate() {
                key_columns[c].push(v.clone());
            }
            i = j;
        }
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (c, values) in key_columns.into_iter().enumerate() {
        let field = schema.field(c);
        fields.push(Field::new(
            format!("__k{c}"),
            field.data_type().clone(),
            true,
        ));
        columns.push(if values.is_empty() {
            datafusion::arrow::array::new_empty_array(field.data_type())
        } else {
            ScalarValue::iter_to_array(values).unwrap()
        });
    }
    fields.push(Field::new("window_start", ts_ms(), false));
    fields.push(Field::new("window_end", ts_ms(), false));
    columns.push(Arc::new(
        TimestampMillisecondArray::from(starts).with_timezone("UTC"),
    ));
    columns.push(Arc::new(
        TimestampMillisecondArray::from(ends).with_timezone("UTC"),
    ));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// One value of a result row, for comparing results computed in different
/// orders: timestamps as epoch milliseconds, floats compared with a relative
/// tolerance.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Cell {
    Null,
    Int(i128),
    Float(f64),
    Text(String),
}

fn same_cell(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Float(x), Cell::Float(y)) => {
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) || (x.is_nan() && y.is_nan())
        }
        _ => a == b,
    }
}

/// Rows sorted, columns named `is_final` left out.
pub fn canonical(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    for b in batches {
        let schema = b.schema();
        for row in 0..b.num_rows() {
            let mut cells = Vec::new();
            for (c, field) in schema.fields().iter().enumerate() {
                if field.name() == "is_final" {
                    continue;
                }
                let column = match field.data_type() {
                    DataType::Timestamp(_, _) => cast(
                        b.column(c),
                        &DataType::Timestamp(TimeUnit::Millisecond, None),
                    )
                    .unwrap(),
                    _ => b.column(c).clone(),
                };
                let v = ScalarValue::try_from_array(&column, row).unwrap();
                cells.push(match v {
                    v if v.is_null() => Cell::Null,
                    ScalarValue::Float64(Some(f)) => Cell::Float(f),
                    ScalarValue::Float32(Some(f)) => Cell::Float(f64::from(f)),
                    ScalarValue::Int8(Some(v)) => Cell::Int(v.into()),
                    ScalarValue::Int16(Some(v)) => Cell::Int(v.into()),
                    ScalarValue::Int32(Some(v)) => Cell::Int(v.into()),
                    ScalarValue::Int64(Some(v)) => Cell::Int(v.into()),
                    ScalarValue::UInt32(Some(v)) => Cell::Int(v.into()),
                    ScalarValue::UInt64(Some(v)) => Cell::Int(v.into()),
                    ScalarValue::TimestampMillisecond(Some(v), _) => Cell::Int(v.into()),
                    other => Cell::Text(other.to_string()),
                });
            }
            rows.push(cells);
        }
    }
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    rows
}

/// Panics with both row sets when they differ beyond float rounding.
pub fn assert_same_rows(got: &[RecordBatch], want: &[RecordBatch], context: &str) {
    let (g, w) = (canonical(got), canonical(want));
    let same = g.len() == w.len()
        && g.iter()
            .zip(&w)
            .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_cell(x, y)));
    if !same {
        let show = |rows: &[Vec<Cell>]| {
            rows.iter()
                .map(|r| format!("{r:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{context}: {} rows vs {} expected\n--- got\n{}\n--- expected\n{}",
            g.len(),
            w.len(),
            show(&g),
            show(&w)
        );
    }
}

/// Adds the [`CLOSED`] column (timestamp, null when nothing was closed) to stream rows.
pub fn with_closed(batch: &RecordBatch, closed: Vec<Option<i64>>) -> RecordBatch {
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(CLOSED, ts_ms(), true)));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(
        TimestampMillisecondArray::from(closed).with_timezone("UTC"),
    ));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// Every `*.csv` in `dir` as a table, read by DataFusion's own CSV reader.
async fn register_reference_csvs(ctx: &SessionContext, dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        ctx.register_csv(
            &name,
            path.to_str().unwrap(),
            datafusion::prelude::CsvReadOptions::new(),
        )
        .await
        .unwrap();
    }
}
