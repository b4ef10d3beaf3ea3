//! A view's SQL, as DataFusion plans it for one batch query, taken apart for
//! the batch formulation: where the aggregation is, its window, the columns
//! of its input it reads, and how to run the same aggregation over other
//! rows.
//!
//! A windowed view `SELECT k, sum(v) FROM … WHERE … GROUP BY tumble(t, i), k
//! HAVING …` becomes two plans. The per-row plan is the aggregation's input
//! (FROM, joins, WHERE, UNION ALL) projected to the columns the aggregation
//! reads, named as the engine's late table names them, plus the event time
//! ([`TIME`]) and, for sessions, the group keys ([`KEY`]`0…`). The output plan
//! is the same aggregation and everything above it (HAVING, the SELECT list)
//! over a table of such rows joined to their windows, grouped by
//! `window_start`, `window_end` and the keys instead of the window call, the
//! window columns first in every projection above. Between the two, rows are
//! joined to windows and late rows taken out (`windows.rs`, `late.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef};
use datafusion::logical_expr::{
    Aggregate, Expr, Filter, LogicalPlan, Projection, SubqueryAlias, cast,
};

use super::windows::{KEY, TIME, ts_ms};
use crate::plan::{WINDOW_END, WINDOW_START};
use crate::window::{WindowSpec, window_call};

/// Table name of the rows the output plan reads.
pub(super) const KEPT: &str = "__kept";

/// What kind of view the SQL is, for the batch formulation.
pub(super) enum Shape {
    /// A windowed aggregation of stream rows.
    Windowed(Box<Windowed>),
    /// A join of two windowed views, the left view's window columns first.
    JoinedViews(LogicalPlan),
    /// No aggregation: the SQL as it is.
    Plain(LogicalPlan),
}

pub(super) struct Windowed {
    pub spec: WindowSpec,
    /// The aggregation's input columns it reads (the event time's
    /// included), in the input's order, each with its late-table name.
    pub columns: Vec<(Column, String)>,
    /// Group keys besides the window.
    pub keys: usize,
    /// The per-row plan: `columns` by late name, [`TIME`], and for sessions
    /// the keys as [`KEY`]`0…`.
    pub rows: LogicalPlan,
    aggregate: Aggregate,
    /// Position of the window call among the aggregate's group expressions.
    window_at: usize,
    /// Nodes above the aggregation, the plan's root first.
    above: Vec<LogicalPlan>,
}

/// Takes a view's (unoptimized) logical plan apart; an error names the
/// construct the batch formulation cannot handle.
pub(super) fn shape(plan: LogicalPlan) -> Result<Shape, String> {
    let mut aggregates = 0;
    let mut reads_views = false;
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::Aggregate(_) => aggregates += 1,
            LogicalPlan::TableScan(scan) => {
                let schema = scan.source.schema();
                reads_views |= [WINDOW_START, WINDOW_END]
                    .iter()
                    .all(|c| schema.field_with_name(c).is_ok());
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match aggregates {
        0 if reads_views => joined_views(plan).map(Shape::JoinedViews),
        0 => Ok(Shape::Plain(plan)),
        1 => windowed(plan).map(|w| Shape::Windowed(Box::new(w))),
        _ => Err("more than one aggregation (a nested GROUP BY) is not a continuous view".into()),
    }
}

/// What a node above the aggregation is, as SQL says it.
fn construct(node: &LogicalPlan) -> String {
    match node {
        LogicalPlan::Sort(_) => "ORDER BY".into(),
        LogicalPlan::Limit(_) => "LIMIT".into(),
        LogicalPlan::Window(_) => "a window function with OVER".into(),
        LogicalPlan::Distinct(_) => "DISTINCT (or UNION without ALL)".into(),
        LogicalPlan::Join(_) => "a join of an aggregating subquery".into(),
        LogicalPlan::Union(_) => "a UNION of aggregations".into(),
        other => format!("`{}`", other.display()),
    }
}

fn windowed(plan: LogicalPlan) -> Result<Windowed, String> {
    let mut above = Vec::new();
    let mut node = plan;
    let aggregate = loop {
        match node {
            LogicalPlan::Aggregate(a) => break a,
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
                let input = node.inputs()[0].clone();
                above.push(node);
                node = input;
            }
            other => {
                return Err(format!(
                    "{} above the aggregation is not supported",
                    construct(&other)
                ));
            }
        }
    };
    if aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Err("GROUPING SETS, ROLLUP or CUBE is not supported".into());
    }
    let mut calls = Vec::new();
    for (i, e) in aggregate.group_expr.iter().enumerate() {
        if let Some(call) = window_call(e)? {
            calls.push((i, call));
        }
    }
    let (window_at, call) = match calls.len() {
        1 => calls.pop().expect("one window"),
        0 => return Err("GROUP BY without a window (tumble, hop, session or date_bin)".into()),
        _ => return Err("more than one window in GROUP BY".into()),
    };
    let keys: Vec<&Expr> = aggregate
        .group_expr
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != window_at)
        .map(|(_, e)| e)
        .collect();
    // Every input column the aggregation reads, in the input's order.
    let input = aggregate.input.schema();
    let mut read = BTreeSet::new();
    for e in keys
        .iter()
        .copied()
        .chain(&aggregate.aggr_expr)
        .chain([&call.time_arg])
    {
        for c in e.column_refs() {
            read.insert(input.index_of_column(c).map_err(|e| e.to_string())?);
        }
    }
    let columns = late_names(input, &read);
    let mut exprs: Vec<Expr> = columns
        .iter()
        .map(|(c, name)| Expr::Column(c.clone()).alias(name))
        .collect();
    exprs.push(cast(call.time_arg.clone(), ts_ms()).alias(TIME));
    if matches!(call.spec, WindowSpec::Session { .. }) {
        for (k, e) in keys.iter().enumerate() {
            exprs.push(unalias(e).alias(format!("{KEY}{k}")));
        }
    }
    let rows = Projection::try_new(exprs, aggregate.input.clone()).map_err(|e| e.to_string())?;
    Ok(Windowed {
        spec: call.spec,
        keys: keys.len(),
        columns,
        rows: LogicalPlan::Projection(rows),
        aggregate,
        window_at,
        above,
    })
}

fn unalias(e: &Expr) -> Expr {
    match e {
        Expr::Alias(a) => a.expr.as_ref().clone(),
        e => e.clone(),
    }
}

/// The columns at `read` with the names the engine's late table gives them:
/// a name's first occurrence as it is, later ones `name_2`, `name_3`, …
/// (a join's two `sku` columns are `sku` and `sku_2`).
fn late_names(input: &DFSchemaRef, read: &BTreeSet<usize>) -> Vec<(Column, String)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    read.iter()
        .map(|&i| {
            let (q, f) = input.qualified_field(i);
            let n = seen.entry(f.name().clone()).or_default();
            *n += 1;
            let name = if *n == 1 {
                f.name().clone()
            } else {
                format!("{}_{n}", f.name())
            };
            (Column::new(q.cloned(), f.name()), name)
        })
        .collect()
}

impl Windowed {
    /// The view's output over `kept` (a scan of [`KEPT`]: the late-named
    /// columns, `window_start`, `window_end`): the same aggregate
    /// expressions and keys, grouped by the window columns instead of the
    /// window call; HAVING and the SELECT list above it as they were, with
    /// the window columns first.
    pub fn over(&self, kept: LogicalPlan) -> Result<LogicalPlan, String> {
        let at = |c: &str| Expr::Column(Column::new(Some(KEPT), c));
        // The kept rows under the input's own column names, so that the
        // aggregate and key expressions read them unchanged.
        let mut exprs: Vec<Expr> = self
            .columns
            .iter()
            .map(|(c, name)| at(name).alias_qualified(c.relation.clone(), c.name.clone()))
            .collect();
        exprs.extend([at(WINDOW_START), at(WINDOW_END)]);
        let input = Projection::try_new(exprs, Arc::new(kept)).map_err(|e| e.to_string())?;
        let mut group = vec![at(WINDOW_START), at(WINDOW_END)];
        group.extend(
            self.aggregate
                .group_expr
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != self.window_at)
                .map(|(_, e)| e.clone()),
        );
        let aggregate = Aggregate::try_new(
            Arc::new(LogicalPlan::Projection(input)),
            group,
            self.aggregate.aggr_expr.clone(),
        )
        .map_err(|e| e.to_string())?;
        let mut plan = LogicalPlan::Aggregate(aggregate);
        for node in self.above.iter().rev() {
            let input = Arc::new(plan);
            plan = match node {
                LogicalPlan::Projection(p) => {
                    LogicalPlan::Projection(window_columns_first(&p.expr, &p.schema, input)?)
                }
                LogicalPlan::Filter(f) => LogicalPlan::Filter(
                    Filter::try_new(f.predicate.clone(), input).map_err(|e| e.to_string())?,
                ),
                LogicalPlan::SubqueryAlias(a) => LogicalPlan::SubqueryAlias(
                    SubqueryAlias::try_new(input, a.alias.clone()).map_err(|e| e.to_string())?,
                ),
                other => unreachable!("refused in `windowed`: {}", other.display()),
            };
        }
        Ok(plan)
    }

    /// The output columns that identify a row: `window_start`, `window_end`
    /// and every SELECT item computed from group keys alone (not from an
    /// aggregate).
    pub fn key_columns(&self) -> Vec<String> {
        let groups = self.aggregate.group_expr.len();
        let mut schema = self.aggregate.schema.clone();
        let mut keys: Vec<bool> = (0..schema.fields().len())
            .map(|i| i < groups && i != self.window_at)
            .collect();
        for node in self.above.iter().rev() {
            if let LogicalPlan::Projection(p) = node {
                keys = p
                    .expr
                    .iter()
                    .map(|e| {
                        e.column_refs()
                            .iter()
                            .all(|c| schema.index_of_column(c).is_ok_and(|i| keys[i]))
                    })
                    .collect();
            }
            schema = node.schema().clone();
        }
        let mut out = vec![WINDOW_START.to_owned(), WINDOW_END.to_owned()];
        out.extend(
            schema
                .fields()
                .iter()
                .zip(keys)
                .filter(|(_, key)| *key)
                .map(|(f, _)| f.name().clone()),
        );
        out
    }
}

/// `exprs` over `input` with the input's `window_start` and `window_end`
/// first; refused when the SELECT list (`schema`) has a column of that name.
fn window_columns_first(
    exprs: &[Expr],
    schema: &DFSchemaRef,
    input: Arc<LogicalPlan>,
) -> Result<Projection, String> {
    let mut out = Vec::with_capacity(exprs.len() + 2);
    for name in [WINDOW_START, WINDOW_END] {
        if schema.fields().iter().any(|f| f.name() == name) {
            return Err(format!(
                "selecting a column named {name} (kpiflow adds it to the output)"
            ));
        }
        if let Some((q, f)) = input.schema().iter().find(|(_, f)| f.name() == name) {
            out.push(Expr::Column(Column::new(q.cloned(), f.name())));
        }
    }
    out.extend(exprs.iter().cloned());
    Projection::try_new(out, input).map_err(|e| e.to_string())
}

/// A join of two windowed views: the SELECT list with the left view's
/// window columns first, as the engine emits it.
fn joined_views(plan: LogicalPlan) -> Result<LogicalPlan, String> {
    let mut joins = 0;
    let _ = plan.apply(|node| {
        joins += usize::from(matches!(node, LogicalPlan::Join(_)));
        Ok(TreeNodeRecursion::Continue)
    });
    if joins != 1 {
        return Err(format!(
            "a view reading views must join exactly two of them (found {joins} joins)"
        ));
    }
    let LogicalPlan::Projection(top) = plan else {
        return Err(format!(
            "{} over a join of views is not supported",
            construct(&plan)
        ));
    };
    window_columns_first(&top.expr, &top.schema, top.input.clone()).map(LogicalPlan::Projection)
}
