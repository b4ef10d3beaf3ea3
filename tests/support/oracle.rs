//! The correctness oracle for continuous views, as the tests use it: the
//! engine's batch formulation (`kpiflow_engine::batch`: the view's own SQL
//! run by DataFusion as one batch query, the window call replaced by a join
//! to an explicit table of windows, sharing nothing with the engine's
//! panes, watermarks or accumulators) over test tables, with reference
//! tables read from CSV files, and one test-only way of leaving out late
//! events, [`LateRule::ByWindow`].

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::prelude::{CsvReadOptions, SessionContext};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, SelectItem, SetExpr,
    Statement,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use kpiflow_engine::batch;

pub use kpiflow_engine::batch::{Difference, compare};

/// Column of oracle stream tables: the view's watermark when the row arrived
/// (null before any), used by [`LateRule::ByWindow`].
pub const CLOSED: &str = "__closed";

/// A table for the oracle: name and rows (at least one batch, for its schema).
pub struct Table {
    pub name: String,
    pub rows: Vec<RecordBatch>,
}

impl Table {
    fn batch_table(&self) -> batch::Table {
        let schema = self.rows.first().expect("a table has a batch").schema();
        batch::Table::new(self.name.clone(), schema, self.rows.clone())
    }
}

/// How the oracle leaves out late events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateRule {
    /// The stream tables hold on-time rows only.
    Removed,
    /// Stream rows carry [`CLOSED`] and count only in windows ending after
    /// it (hop: a row is late for some of its windows only). The window's
    /// time argument must be qualified by the stream's alias or be
    /// unqualified over a single stream. Done with the product's late-row
    /// subtraction: the view's rows per window, with `max(__closed)` added
    /// to the SELECT list so that they carry it, minus those whose window
    /// ended by then.
    ByWindow,
}

/// Every `*.csv` in `dir` as a table, read by DataFusion's own CSV reader.
pub async fn reference_tables(dir: &Path) -> Vec<batch::Table> {
    let ctx = SessionContext::new();
    let mut tables = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let df = ctx
            .read_csv(path.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
        let schema = Arc::new(df.schema().as_arrow().clone());
        tables.push(batch::Table::new(name, schema, df.collect().await.unwrap()));
    }
    tables
}

/// Runs the view's SQL as a batch query over `streams` and the reference
/// tables in `references`.
pub async fn batch_query(
    sql: &str,
    streams: &[Table],
    references: &Path,
    late: LateRule,
) -> Vec<RecordBatch> {
    let mut tables: Vec<batch::Table> = streams.iter().map(Table::batch_table).collect();
    tables.extend(reference_tables(references).await);
    let failed = |e: kpiflow_engine::Error| panic!("oracle: {e}\n{sql}");
    if late == LateRule::Removed {
        return batch::batch_query("oracle", sql, &tables, &[])
            .await
            .unwrap_or_else(failed);
    }
    let carrying = with_closed_aggregate(sql);
    let rows = batch::batch_rows("oracle", &carrying, &tables, &[])
        .await
        .unwrap_or_else(failed);
    let late: Vec<RecordBatch> = rows
        .iter()
        .map(|b| {
            let ms = |name: &str| {
                let a = cast(
                    b.column_by_name(name).unwrap(),
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                )
                .unwrap();
                a.as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .unwrap()
                    .clone()
            };
            let (end, closed) = (ms("window_end"), ms(CLOSED));
            let missed = BooleanArray::from_iter(
                (0..b.num_rows())
                    .map(|i| Some(closed.is_valid(i) && end.value(i) <= closed.value(i))),
            );
            filter_record_batch(b, &missed).unwrap()
        })
        .collect();
    let out = batch::batch_query("oracle", &carrying, &tables, &late)
        .await
        .unwrap_or_else(failed);
    out.iter()
        .map(|b| {
            let keep: Vec<usize> = (0..b.num_columns())
                .filter(|&i| b.schema().field(i).name() != CLOSED)
                .collect();
            b.project(&keep).unwrap()
        })
        .collect()
}

/// The view's SQL with `max(<stream>.__closed) AS __closed` added to its
/// SELECT list, the stream being the window time argument's qualifier.
fn with_closed_aggregate(sql: &str) -> String {
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql).expect("the view parses");
    let Statement::Query(query) = &mut statements[0] else {
        panic!("not a query")
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        panic!("not a plain SELECT")
    };
    let GroupByExpr::Expressions(group, _) = &select.group_by else {
        panic!("GROUP BY ALL is not a view")
    };
    let time = group
        .iter()
        .find_map(|e| {
            let Expr::Function(f) = e else { return None };
            let name = f.name.to_string().to_lowercase();
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            let at = match name.as_str() {
                "tumble" | "hop" | "session" => 0,
                "date_bin" => 1,
                _ => return None,
            };
            match &list.args[at] {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            }
        })
        .expect("a window in GROUP BY");
    let closed = match &time {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            format!("{}.{CLOSED}", parts[parts.len() - 2].value)
        }
        _ => CLOSED.to_owned(),
    };
    let item = format!("SELECT max({closed}) AS {CLOSED}");
    let mut parsed = Parser::parse_sql(&GenericDialect {}, &item).unwrap();
    let Statement::Query(q) = &mut parsed[0] else {
        unreachable!()
    };
    let SetExpr::Select(s) = q.body.as_mut() else {
        unreachable!()
    };
    let added: SelectItem = s.projection.remove(0);
    select.projection.push(added);
    statements[0].to_string()
}

/// A join of views run as a batch query over the views' batch results, the
/// left view's window columns first.
pub async fn batch_join_query(sql: &str, views: &[Table]) -> Vec<RecordBatch> {
    let tables: Vec<batch::Table> = views.iter().map(Table::batch_table).collect();
    batch::batch_query("oracle", sql, &tables, &[])
        .await
        .unwrap_or_else(|e| panic!("oracle: {e}\n{sql}"))
}

/// Panics with every difference when the rows differ beyond float rounding
/// (compared as wholes within each window; `is_final` ignored).
pub fn assert_same_rows(got: &[RecordBatch], want: &[RecordBatch], context: &str) {
    let differences = compare(context, &[], got, want);
    if !differences.is_empty() {
        let rows = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
        let shown: Vec<String> = differences
            .iter()
            .take(40)
            .map(|d| format!("  {d}"))
            .collect();
        panic!(
            "{context}: {} rows, {} expected; {} differences (`stored` is the first, \
             `recomputed` the expected):\n{}",
            rows(got),
            rows(want),
            differences.len(),
            shown.join("\n")
        );
    }
}

/// Adds the [`CLOSED`] column (timestamp, null when nothing was closed) to stream rows.
pub fn with_closed(batch: &RecordBatch, closed: Vec<Option<i64>>) -> RecordBatch {
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        CLOSED,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        true,
    )));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(
        TimestampMillisecondArray::from(closed).with_timezone("UTC"),
    ));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}
