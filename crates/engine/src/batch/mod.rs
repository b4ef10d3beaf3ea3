//! The batch formulation of continuous views, for `kpiflow verify`: a view's
//! final windows recomputed as one DataFusion query over all its input rows,
//! minus the rows that went to its late table, and the differences between
//! those rows and the ones the pipeline stored.
//!
//! It shares nothing with the engine's panes, watermarks or accumulators:
//! the view's own SQL is planned by DataFusion as a batch query, the window
//! call in `GROUP BY` replaced by a join to an explicit table of windows
//! (`windows.rs`: every window over the rows' time range, or each key's
//! sessions computed from its sorted event times; the join decides which
//! windows a row is in). Only the recognition of the window call in the SQL
//! (`window::window_call`) is the engine's.
//!
//! Late rows. The late table holds one row per (per-row row, missed window):
//! the aggregation's input columns, `window_start`, `window_end` (null when
//! the row missed every window), `watermark`, `late_reason`. The batch
//! formulation builds the same per-row rows from the input (`rewrite.rs`),
//! takes out the late rows without a window, assigns the rest to windows,
//! takes out the late rows with a window from the (row, window) pairs, and
//! only then aggregates (`late.rs`). The differences are multiset
//! differences on every column the aggregation reads: a row late for some
//! hop windows stays in the others, and of two equal rows one late and one
//! on time, one stays. Since the aggregation reads nothing but those
//! columns, the result is exactly the aggregation over the (row, window)
//! pairs the engine counted. A late row that matches no input row is an
//! error (the input is not what the view ran over).
//!
//! Files: `rewrite.rs` (the view's plan taken apart and put back over other
//! rows), `windows.rs` (window tables), `late.rs` (the multiset difference),
//! `compare.rs` (stored against recomputed rows). No I/O: tables come in as
//! record batches.

mod compare;
mod late;
mod rewrite;
mod windows;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use compare::{Difference, DifferenceKind, FLOAT_TOLERANCE, compare};

use crate::error::{Error, Result, plan_message};
use crate::plan::{WINDOW_END, WINDOW_START};
use crate::window::WindowSpec;
use rewrite::{KEPT, Shape, Windowed};
use windows::{KEY, TIME};

/// A table a view reads, with all its rows: a stream (every decoded event),
/// a reference table, or another view's final rows.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub schema: SchemaRef,
    pub rows: Vec<RecordBatch>,
}

impl Table {
    pub fn new(name: impl Into<String>, schema: SchemaRef, rows: Vec<RecordBatch>) -> Table {
        Table {
            name: name.into(),
            schema,
            rows,
        }
    }
}

fn recompute(view: &str, message: impl Into<String>) -> Error {
    Error::Recompute {
        view: view.to_owned(),
        message: message.into(),
    }
}

/// A view's SQL planned over `tables` in a batch context of its own.
async fn planned(view: &str, sql: &str, tables: &[Table]) -> Result<(SessionContext, Shape)> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(false));
    // Only for planning: the window call is replaced before anything runs.
    for udf in crate::window::udfs() {
        ctx.register_udf(udf);
    }
    for t in tables {
        register(&ctx, view, &t.name, t.schema.clone(), t.rows.clone())?;
    }
    let logical = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(|e| Error::Plan {
            view: view.to_owned(),
            message: plan_message(&e),
        })?;
    let shape = rewrite::shape(logical).map_err(|m| recompute(view, m))?;
    Ok((ctx, shape))
}

fn register(
    ctx: &SessionContext,
    view: &str,
    name: &str,
    schema: SchemaRef,
    rows: Vec<RecordBatch>,
) -> Result<()> {
    // A collected batch may differ from the plan's schema in nullability:
    // the rows' own schema is the table's.
    let schema = rows.first().map(RecordBatch::schema).unwrap_or(schema);
    let table = MemTable::try_new(schema, vec![rows])
        .map_err(|e| recompute(view, format!("table `{name}`: {}", plan_message(&e))))?;
    let _ = ctx.deregister_table(name);
    ctx.register_table(name, Arc::new(table))
        .map_err(|e| recompute(view, format!("table `{name}`: {}", plan_message(&e))))?;
    Ok(())
}

async fn run(ctx: &SessionContext, view: &str, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    let failed = |e: datafusion::error::DataFusionError| recompute(view, plan_message(&e));
    ctx.execute_logical_plan(plan)
        .await
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)
}

fn schema_of(plan: &LogicalPlan) -> SchemaRef {
    Arc::new(plan.schema().as_arrow().clone())
}

/// A view's final rows recomputed as one batch query over `tables` (every
/// stream, reference table and view it reads, by name), minus `late` (rows
/// of the view's late table; see the module documentation).
///
/// A windowed view's output is `window_start`, `window_end`, then its SELECT
/// list, as the engine emits it; a join of two windowed views has the left
/// view's window columns first; a view without aggregation is its SQL as it
/// is (and has no late rows). Errors: [`Error::Plan`] for SQL that does not
/// plan over the tables, [`Error::Recompute`] naming a construct the batch
/// formulation cannot handle, late rows that lack a column or match no input
/// row, or a query that failed on the rows.
pub async fn batch_query(
    view: &str,
    sql: &str,
    tables: &[Table],
    late: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let (ctx, shape) = planned(view, sql, tables).await?;
    match shape {
        Shape::Plain(plan) | Shape::JoinedViews(plan) => {
            no_late(view, late)?;
            run(&ctx, view, plan).await
        }
        Shape::Windowed(w) => {
            let rows = window_rows(&ctx, view, &w, late).await?;
            let schema = rows
                .first()
                .map(RecordBatch::schema)
                .expect("window_rows returns at least one batch");
            register(&ctx, view, KEPT, schema, rows)?;
            let kept = ctx
                .table(KEPT)
                .await
                .map_err(|e| recompute(view, plan_message(&e)))?
                .into_unoptimized_plan();
            let plan = w.over(kept).map_err(|m| recompute(view, m))?;
            run(&ctx, view, plan).await
        }
    }
}

/// A windowed view's rows before aggregation, one per (row, window), minus
/// `late`: the columns its aggregation reads, named as in its late table,
/// then `window_start` and `window_end`. What [`batch_query`] aggregates.
pub async fn batch_rows(
    view: &str,
    sql: &str,
    tables: &[Table],
    late: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let (ctx, shape) = planned(view, sql, tables).await?;
    let Shape::Windowed(w) = shape else {
        return Err(recompute(view, "it has no windows, so no rows per window"));
    };
    let rows = window_rows(&ctx, view, &w, late).await?;
    let mut keep: Vec<&str> = w.columns.iter().map(|(_, n)| n.as_str()).collect();
    keep.extend([WINDOW_START, WINDOW_END]);
    rows.iter()
        .map(|b| {
            let schema = b.schema();
            let indices = keep
                .iter()
                .map(|n| schema.index_of(n))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            b.project(&indices)
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| recompute(view, e.to_string()))
}

/// The output columns that identify a row of the view, for [`compare`]:
/// `window_start`, `window_end` and the SELECT items computed from group
/// keys alone; every column for a view without aggregation.
pub async fn key_columns(view: &str, sql: &str, tables: &[Table]) -> Result<Vec<String>> {
    let (_, shape) = planned(view, sql, tables).await?;
    Ok(match shape {
        Shape::Windowed(w) => w.key_columns(),
        Shape::Plain(plan) | Shape::JoinedViews(plan) => plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
    })
}

fn no_late(view: &str, late: &[RecordBatch]) -> Result<()> {
    if late.iter().any(|b| b.num_rows() > 0) {
        return Err(recompute(
            view,
            "late rows were given for a view without windows, which has none",
        ));
    }
    Ok(())
}

/// The per-row rows of a windowed view joined to their windows, minus the
/// late rows: late-named columns, [`TIME`], keys, `window_start`,
/// `window_end`. Never an empty list (one batch, maybe of no rows).
async fn window_rows(
    ctx: &SessionContext,
    view: &str,
    w: &Windowed,
    late: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let failed = |m: String| recompute(view, m);
    let pre_schema = schema_of(&w.rows);
    let pre = run(ctx, view, w.rows.clone()).await?;
    let pre_schema = pre.first().map(RecordBatch::schema).unwrap_or(pre_schema);
    let names: Vec<String> = w.columns.iter().map(|(_, n)| n.clone()).collect();
    let mut types = pre_schema.fields().to_vec();
    types.extend([WINDOW_START, WINDOW_END].map(|n| {
        Arc::new(datafusion::arrow::datatypes::Field::new(
            n,
            windows::ts_ms(),
            true,
        ))
    }));
    let late = late::split(late, &names, &Arc::new(Schema::new(types))).map_err(failed)?;
    let pre = late::subtract(&pre, &late.unplaced).map_err(failed)?;
    let windows = match w.spec {
        WindowSpec::Session { gap } => {
            windows::session_windows(gap, w.keys, &pre).map_err(|e| failed(e.to_string()))?
        }
        spec => windows::pane_windows(spec, &pre).map_err(failed)?,
    };
    register(ctx, view, "__pre", pre_schema, pre)?;
    register(ctx, view, "__windows", windows.schema(), vec![windows])?;
    let mut on = format!("__pre.{TIME} >= __w.{WINDOW_START} AND __pre.{TIME} < __w.{WINDOW_END}");
    if matches!(w.spec, WindowSpec::Session { .. }) {
        for k in 0..w.keys {
            on.push_str(&format!(
                " AND __pre.{KEY}{k} IS NOT DISTINCT FROM __w.{KEY}{k}"
            ));
        }
    }
    let sql = format!(
        "SELECT __pre.*, __w.{WINDOW_START}, __w.{WINDOW_END} FROM __pre JOIN __windows __w ON {on}"
    );
    let joined = ctx
        .sql(&sql)
        .await
        .map_err(|e| recompute(view, plan_message(&e)))?;
    let schema: SchemaRef = Arc::new(joined.schema().as_arrow().clone());
    let rows = joined
        .collect()
        .await
        .map_err(|e| recompute(view, plan_message(&e)))?;
    let mut rows = late::subtract(&rows, &late.placed).map_err(failed)?;
    if rows.is_empty() {
        rows.push(RecordBatch::new_empty(schema));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
