//! From a view's SQL to the parts the engine runs: what is refused, where the
//! window is, and DataFusion's physical plan split around the aggregation.
//!
//! A windowed view `SELECT k, sum(v) FROM s WHERE … GROUP BY tumble(t, i), k
//! HAVING …` is planned by DataFusion after one rewrite: the window call in
//! `GROUP BY` becomes the two group columns `window_start` and `window_end`,
//! and every projection above the aggregation passes them through first. The
//! physical plan is then cut in three:
//! - `lower`, the aggregation's input: the per-row part (scans of the feed,
//!   projections, filters, unions, joins with reference tables), run on each
//!   new batch;
//! - the aggregation itself, whose group and aggregate expressions (and
//!   DataFusion's accumulators) the engine drives incrementally per window;
//! - `upper`, what sits above the aggregation (HAVING, the final
//!   projection), run on the rows of windows as they are emitted, reading
//!   them from the feed.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Aggregate, Expr, JoinType, LogicalPlan, Projection, ScalarUDF};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, aggregate_expressions};
use datafusion::physical_plan::streaming::StreamingTableExec;

use crate::error::{Error, Result, find_keyword, plan_message};
use crate::feed::Feed;
use crate::window::{self, WINDOW_END_FN, WINDOW_START_FN, WindowSpec};

/// Output column holding a window's start.
pub const WINDOW_START: &str = "window_start";
/// Output column holding a window's end (exclusive).
pub const WINDOW_END: &str = "window_end";

/// What the engine knows of the tables a view may read.
pub(crate) trait Tables {
    fn is_stream(&self, name: &str) -> bool;
    fn is_view(&self, name: &str) -> bool;
    /// Whether the view groups into windows (so has window_start and window_end).
    fn is_windowed_view(&self, name: &str) -> bool;
}

/// A planned view.
pub(crate) enum Planned {
    Windowed(WindowedPlan),
    Stateless(StatelessPlan),
    Joined(JoinedPlan),
}

#[derive(Clone)]
/// A join of two windowed views' final rows, window by window.
pub(crate) struct JoinedPlan {
    pub left: String,
    pub right: String,
    /// The whole view, reading both views' rows from the feed.
    pub plan: Arc<dyn ExecutionPlan>,
}

/// A view that groups rows of streams into windows.
pub(crate) struct WindowedPlan {
    pub spec: WindowSpec,
    /// Stream tables the view reads.
    pub inputs: BTreeSet<String>,
    /// The per-row part, reading the feed.
    pub lower: Arc<dyn ExecutionPlan>,
    /// Event time, evaluated on `lower`'s output.
    pub time: Arc<dyn PhysicalExpr>,
    /// Group keys other than the window, on `lower`'s output.
    pub keys: Vec<(Arc<dyn PhysicalExpr>, String)>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Each aggregate's input columns: its arguments, then its ORDER BY expressions.
    pub arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// `FILTER (WHERE …)` of each aggregate.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Rows of the aggregation's output: window_start, window_end, keys, aggregates.
    pub aggregate_schema: SchemaRef,
    /// Feed slot `upper` reads the aggregation's output from.
    pub aggregate_slot: String,
    /// HAVING and the final projection; reads `aggregate_slot`.
    pub upper: Arc<dyn ExecutionPlan>,
}

/// A view without aggregation over streams: each input row's output is final.
pub(crate) struct StatelessPlan {
    pub inputs: BTreeSet<String>,
    pub plan: Arc<dyn ExecutionPlan>,
}

/// Tables a logical plan scans, in the three kinds the engine knows.
#[derive(Default)]
struct Scans {
    streams: BTreeSet<String>,
    views: BTreeSet<String>,
}

fn scans(plan: &LogicalPlan, tables: &dyn Tables) -> Scans {
    let mut found = Scans::default();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.table().to_owned();
            if tables.is_stream(&name) {
                found.streams.insert(name);
            } else if tables.is_view(&name) {
                found.views.insert(name);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

pub(crate) struct Planner<'a> {
    pub view: &'a str,
    pub sql: &'a str,
    pub state: &'a SessionState,
    pub tables: &'a dyn Tables,
    pub feed: &'a Feed,
}

impl Planner<'_> {
    fn unsupported(&self, construct: &str, keyword: Option<&str>, hint: &str) -> Error {
        Error::Unsupported {
            view: self.view.to_owned(),
            construct: construct.to_owned(),
            position: keyword.and_then(|k| find_keyword(self.sql, k)),
            hint: hint.to_owned(),
        }
    }

    fn plan_error(&self, message: impl Into<String>) -> Error {
        Error::Plan {
            view: self.view.to_owned(),
            message: message.into(),
        }
    }

    /// A failure planning cannot have on any SQL: a bug, not the user's.
    fn internal(&self, e: DataFusionError) -> Error {
        Error::internal(format!("planning view `{}`", self.view), e)
    }

    pub async fn plan(&self) -> Result<Planned> {
        let logical = self
            .state
            .create_logical_plan(self.sql)
            .await
            .map_err(|e| self.plan_error(plan_message(&e)))?;
        self.refuse(&logical)?;
        let found = scans(&logical, self.tables);
        if found.streams.is_empty() && found.views.is_empty() {
            return Err(self.unsupported(
                "a view that reads no stream",
                Some("FROM"),
                "read at least one of sales, production, logistics, equipment",
            ));
        }
        let mut aggregates = 0;
        let _ = logical.apply(|node| {
            if matches!(node, LogicalPlan::Aggregate(_)) {
                aggregates += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if !found.views.is_empty() {
            if !found.streams.is_empty() {
                return Err(self.unsupported(
                    "reading a stream and a view in one view",
                    Some("JOIN"),
                    "aggregate the stream in its own windowed view, then join the two views on window_start",
                ));
            }
            if aggregates > 0 {
                return Err(self.unsupported(
                    "aggregating another view's rows",
                    Some("GROUP BY"),
                    "aggregate the streams directly, with the window you need",
                ));
            }
            return self.plan_join(logical).await;
        }
        match aggregates {
            0 => self.plan_stateless(logical, found.streams).await,
            1 => self.plan_windowed(logical, found.streams).await,
            _ => Err(self.unsupported(
                "aggregating an aggregate (nested GROUP BY)",
                None,
                "group once per view",
            )),
        }
    }

    /// Refuses what a continuous view cannot mean, naming it.
    fn refuse(&self, plan: &LogicalPlan) -> Result<()> {
        let mut refusal = None;
        let _ = plan.apply(|node| {
            let stop = |r: Error, refusal: &mut Option<Error>| {
                *refusal = Some(r);
                Ok(TreeNodeRecursion::Stop)
            };
            match node {
                LogicalPlan::Sort(_) => {
                    return stop(
                        self.unsupported(
                            "ORDER BY",
                            Some("ORDER BY"),
                            "a stream has no end to sort; order when you query the view",
                        ),
                        &mut refusal,
                    );
                }
                LogicalPlan::Limit(_) => {
                    return stop(
                        self.unsupported(
                            "LIMIT",
                            Some("LIMIT"),
                            "a stream has no end; limit when you query the view",
                        ),
                        &mut refusal,
                    );
                }
                LogicalPlan::Window(_) => {
                    return stop(
                        self.unsupported(
                            "a window function with OVER",
                            Some("OVER"),
                            "use GROUP BY tumble/hop/session windows",
                        ),
                        &mut refusal,
                    );
                }
                LogicalPlan::Distinct(_) => {
                    return stop(
                        self.unsupported(
                            "DISTINCT (or UNION without ALL)",
                            Some("DISTINCT").or(Some("UNION")),
                            "use UNION ALL, or GROUP BY a window and count(DISTINCT …)",
                        ),
                        &mut refusal,
                    );
                }
                LogicalPlan::Unnest(_) => {
                    return stop(
                        self.unsupported("UNNEST", Some("UNNEST"), "not supported on streams"),
                        &mut refusal,
                    );
                }
                LogicalPlan::RecursiveQuery(_) => {
                    return stop(
                        self.unsupported("WITH RECURSIVE", Some("RECURSIVE"), "not supported on streams"),
                        &mut refusal,
                    );
                }
                LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {}
                LogicalPlan::Subquery(_) => {
                    return stop(
                        self.unsupported("a subquery in an expression", Some("SELECT"), "join a reference table instead"),
                        &mut refusal,
                    );
                }
                LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
                | LogicalPlan::DescribeTable(_)
                | LogicalPlan::Extension(_) => {
                    return stop(
                        self.unsupported(
                            "a statement other than SELECT",
                            None,
                            "a view is one SELECT",
                        ),
                        &mut refusal,
                    );
                }
                LogicalPlan::Join(join) => {
                    let left = scans(&join.left, self.tables);
                    let right = scans(&join.right, self.tables);
                    let left_stream = !left.streams.is_empty();
                    let right_stream = !right.streams.is_empty();
                    if left_stream && right_stream {
                        return stop(
                            self.unsupported(
                                "a join of two streams",
                                Some("JOIN"),
                                "a stream join needs windows on both sides: aggregate each stream in its own windowed view, then join the views on window_start",
                            ),
                            &mut refusal,
                        );
                    }
                    let keeps_unmatched_reference = match join.join_type {
                        JoinType::Full => true,
                        JoinType::Right | JoinType::RightSemi | JoinType::RightAnti => left_stream,
                        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti => right_stream,
                        _ => false,
                    };
                    if keeps_unmatched_reference && (left_stream || right_stream) {
                        return stop(
                            self.unsupported(
                                &format!("a {} join that keeps the reference table's unmatched rows", join.join_type),
                                Some("JOIN"),
                                "put the stream on the preserved side (stream LEFT JOIN reference) or use an inner join",
                            ),
                            &mut refusal,
                        );
                    }
                }
                LogicalPlan::Aggregate(agg)
                    if agg.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) =>
                {
                    {
                        return stop(
                            self.unsupported(
                                "GROUPING SETS, ROLLUP or CUBE",
                                Some("GROUP BY"),
                                "group by a window and plain columns",
                            ),
                            &mut refusal,
                        );
                    }
                }
                _ => {}
            }
            for expr in node.expressions() {
                let mut sub = false;
                let _ = expr.apply(|e| {
                    if matches!(
                        e,
                        Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
                    ) {
                        sub = true;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
                if sub {
                    return stop(
                        self.unsupported(
                            "a subquery in an expression",
                            Some("SELECT"),
                            "join a reference table instead",
                        ),
                        &mut refusal,
                    );
                }
                if !matches!(node, LogicalPlan::Aggregate(_))
                    && let Some(name) = window::mentions_window(&expr)
                {
                    return stop(
                        self.unsupported(
                            &format!("{name}() outside GROUP BY"),
                            Some(name),
                            "windows are written in GROUP BY; select window_start and window_end are added to the output",
                        ),
                        &mut refusal,
                    );
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        match refusal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A join of two windowed views, matched on window_start.
    async fn plan_join(&self, logical: LogicalPlan) -> Result<Planned> {
        let mut joins = Vec::new();
        let _ = logical.apply(|node| {
            if let LogicalPlan::Join(join) = node {
                joins.push(join.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        });
        let hint = "join two windowed views: SELECT … FROM a JOIN b ON a.window_start = b.window_start AND a.sku = b.sku";
        let [join] = joins.as_slice() else {
            return Err(self.unsupported(
                if joins.is_empty() {
                    "reading a view without joining it"
                } else {
                    "a join of more than two views"
                },
                None,
                hint,
            ));
        };
        let side = |plan: &LogicalPlan| {
            let found = scans(plan, self.tables);
            match found.views.len() {
                1 => found.views.into_iter().next(),
                _ => None,
            }
        };
        let (Some(left), Some(right)) = (side(&join.left), side(&join.right)) else {
            return Err(self.unsupported(
                "a join whose sides are not one view each",
                Some("JOIN"),
                hint,
            ));
        };
        for view in [&left, &right] {
            if !self.tables.is_windowed_view(view) {
                return Err(self.unsupported(
                    &format!("joining `{view}`, which has no windows"),
                    Some("JOIN"),
                    hint,
                ));
            }
        }
        if !matches!(join.join_type, JoinType::Inner | JoinType::Left) {
            return Err(self.unsupported(
                &format!("a {} join of views", join.join_type),
                Some("JOIN"),
                "use JOIN or LEFT JOIN",
            ));
        }
        let is_window_pair = |l: &Expr, r: &Expr| matches!((l, r), (Expr::Column(a), Expr::Column(b)) if a.name == WINDOW_START && b.name == WINDOW_START);
        // Before optimization the ON clause is still the join's filter.
        let on_window = join.on.iter().any(|(l, r)| is_window_pair(l, r))
            || join.filter.as_ref().is_some_and(|f| {
                datafusion::logical_expr::utils::split_conjunction(f)
                    .iter()
                    .any(|e| match e {
                        Expr::BinaryExpr(b) if b.op == datafusion::logical_expr::Operator::Eq => {
                            is_window_pair(&b.left, &b.right)
                        }
                        _ => false,
                    })
            });
        if !on_window {
            return Err(self.unsupported(
                "a join of views that does not match window_start",
                Some("ON"),
                hint,
            ));
        }
        // The left view's window columns first in the output.
        let LogicalPlan::Projection(top) = &logical else {
            return Err(self.internal(DataFusionError::Internal(
                "a SELECT without projection".into(),
            )));
        };
        let rewritten = LogicalPlan::Projection(self.window_columns_first(
            top,
            "kpiflow adds the left view's window_start and window_end to the output; remove it from the SELECT list",
        )?);
        let plan = self
            .state
            .create_physical_plan(&rewritten)
            .await
            .map_err(|e| self.plan_error(plan_message(&e)))?;
        Ok(Planned::Joined(JoinedPlan { left, right, plan }))
    }

    async fn plan_stateless(
        &self,
        logical: LogicalPlan,
        inputs: BTreeSet<String>,
    ) -> Result<Planned> {
        let plan = self
            .state
            .create_physical_plan(&logical)
            .await
            .map_err(|e| self.plan_error(plan_message(&e)))?;
        Ok(Planned::Stateless(StatelessPlan { inputs, plan }))
    }

    async fn plan_windowed(
        &self,
        logical: LogicalPlan,
        inputs: BTreeSet<String>,
    ) -> Result<Planned> {
        let (rewritten, spec) = self.rewrite_window(logical)?;
        let physical = self
            .state
            .create_physical_plan(&rewritten)
            .await
            .map_err(|e| self.plan_error(plan_message(&e)))?;
        self.split(physical, spec, inputs)
    }

    /// Replaces the window call in GROUP BY by the window_start and window_end
    /// group columns and passes them through every projection above.
    fn rewrite_window(&self, plan: LogicalPlan) -> Result<(LogicalPlan, WindowSpec)> {
        let mut spec = None;
        let mut failure = None;
        let udf = |name: &str| {
            window::udfs()
                .into_iter()
                .find(|u| u.name() == name)
                .map(Arc::new)
                .expect("the window bound functions exist")
        };
        let bounds = (udf(WINDOW_START_FN), udf(WINDOW_END_FN));
        let rewritten = plan
            .transform_up(|node| {
                if failure.is_some() {
                    return Ok(Transformed::no(node));
                }
                match node {
                    LogicalPlan::Aggregate(agg) => {
                        match self.rewrite_aggregate(agg, &bounds) {
                            Ok((agg, s)) => {
                                spec = Some(s);
                                Ok(Transformed::yes(LogicalPlan::Aggregate(agg)))
                            }
                            Err(e) => {
                                failure = Some(e);
                                Ok(Transformed::no(LogicalPlan::EmptyRelation(
                                    datafusion::logical_expr::EmptyRelation {
                                        produce_one_row: false,
                                        schema: Arc::new(DFSchema::empty()),
                                    },
                                )))
                            }
                        }
                    }
                    LogicalPlan::Projection(p) if spec.is_some() => {
                        match self.window_columns_first(
                            &p,
                            "kpiflow adds window_start and window_end to every windowed view's output; remove it from the SELECT list",
                        ) {
                            Ok(projection) => {
                                Ok(Transformed::yes(LogicalPlan::Projection(projection)))
                            }
                            Err(e) => {
                                failure = Some(e);
                                Ok(Transformed::no(LogicalPlan::Projection(p)))
                            }
                        }
                    }
                    other => Ok(Transformed::yes(other.recompute_schema()?)),
                }
            })
            .map_err(|e| self.plan_error(plan_message(&e)))?
            .data;
        if let Some(e) = failure {
            return Err(e);
        }
        let spec = spec.ok_or_else(|| self.plan_error("no GROUP BY found"))?;
        Ok((rewritten, spec))
    }

    /// The projection with its input's window_start and window_end (where the
    /// input has them) as its first two columns; refused when the SELECT list
    /// already names one of them.
    fn window_columns_first(&self, p: &Projection, hint: &str) -> Result<Projection> {
        let mut exprs = Vec::with_capacity(p.expr.len() + 2);
        for name in [WINDOW_START, WINDOW_END] {
            if p.schema.fields().iter().any(|f| f.name() == name) {
                return Err(self.unsupported(
                    &format!("selecting a column named {name}"),
                    Some(name),
                    hint,
                ));
            }
            if let Some((q, f)) = p.input.schema().iter().find(|(_, f)| f.name() == name) {
                exprs.push(Expr::Column(Column::new(q.cloned(), f.name())));
            }
        }
        exprs.extend(p.expr.iter().cloned());
        Projection::try_new(exprs, p.input.clone()).map_err(|e| self.plan_error(plan_message(&e)))
    }

    fn rewrite_aggregate(
        &self,
        agg: Aggregate,
        (start_fn, end_fn): &(Arc<ScalarUDF>, Arc<ScalarUDF>),
    ) -> Result<(Aggregate, WindowSpec)> {
        let mut windows = Vec::new();
        let mut keys = Vec::new();
        for expr in &agg.group_expr {
            match window::window_call(expr) {
                Ok(Some(call)) => windows.push(call),
                Ok(None) => keys.push(expr.clone()),
                Err(message) => return Err(self.plan_error(message)),
            }
        }
        let call = match windows.len() {
            1 => windows.pop().expect("one window"),
            0 => {
                return Err(self.unsupported(
                    "GROUP BY without a window over a stream",
                    Some("GROUP BY"),
                    "a stream never ends: group by tumble(event_time, INTERVAL '1 minute'), hop(…), session(…) or date_bin(…)",
                ));
            }
            _ => {
                return Err(self.unsupported(
                    "more than one window in GROUP BY",
                    Some("GROUP BY"),
                    "group by exactly one of tumble, hop, session, date_bin",
                ));
            }
        };
        let bound = |f: &Arc<ScalarUDF>| {
            Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                f.clone(),
                vec![call.time_arg.clone()],
            ))
        };
        let mut group = vec![
            bound(start_fn).alias(WINDOW_START),
            bound(end_fn).alias(WINDOW_END),
        ];
        group.extend(keys);
        let rewritten = Aggregate::try_new(agg.input.clone(), group, agg.aggr_expr.clone())
            .map_err(|e| self.plan_error(plan_message(&e)))?;
        Ok((rewritten, call.spec))
    }

    /// Cuts the physical plan around its aggregation.
    fn split(
        &self,
        physical: Arc<dyn ExecutionPlan>,
        spec: WindowSpec,
        inputs: BTreeSet<String>,
    ) -> Result<Planned> {
        let mut aggregates: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let _ = physical.apply(|node| {
            if node.downcast_ref::<AggregateExec>().is_some() {
                aggregates.push(node.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        });
        let internal = |what: &str| {
            self.internal(DataFusionError::Internal(format!(
                "unexpected physical plan ({what}); please report with the view's SQL"
            )))
        };
        let top = aggregates
            .first()
            .cloned()
            .ok_or_else(|| internal("no aggregate"))?;
        let bottom = aggregates
            .last()
            .cloned()
            .ok_or_else(|| internal("no aggregate"))?;
        let top_exec = top.downcast_ref::<AggregateExec>().expect("aggregate");
        let bottom_exec = bottom.downcast_ref::<AggregateExec>().expect("aggregate");
        match (aggregates.len(), top_exec.mode(), bottom_exec.mode()) {
            (1, AggregateMode::Single | AggregateMode::SinglePartitioned, _) => {}
            (2, AggregateMode::Final | AggregateMode::FinalPartitioned, AggregateMode::Partial) => {
            }
            _ => return Err(internal("aggregation modes")),
        }
        let group = bottom_exec.group_expr();
        if group.has_grouping_set() {
            return Err(internal("grouping sets"));
        }
        let exprs = group.expr();
        if exprs.len() < 2 || exprs[0].1 != WINDOW_START || exprs[1].1 != WINDOW_END {
            return Err(internal("window group columns"));
        }
        let time = exprs[1]
            .0
            .downcast_ref::<ScalarFunctionExpr>()
            .and_then(|f| f.args().first().cloned())
            .ok_or_else(|| internal("window end expression"))?;
        let keys = exprs[2..].to_vec();
        let aggregate_schema = top.schema();
        let aggregate_slot = format!("{}#aggregate", self.view);
        let leaf: Arc<dyn ExecutionPlan> = Arc::new(
            StreamingTableExec::try_new(
                aggregate_schema.clone(),
                vec![
                    self.feed
                        .partition(&aggregate_slot, aggregate_schema.clone()),
                ],
                None,
                Vec::new(),
                false,
                None,
            )
            .map_err(|e| self.internal(e))?,
        );
        let upper = physical
            .transform_down(|node| {
                if Arc::ptr_eq(&node, &top) {
                    Ok(Transformed::new(
                        leaf.clone(),
                        true,
                        TreeNodeRecursion::Jump,
                    ))
                } else {
                    Ok(Transformed::no(node))
                }
            })
            .map_err(|e| self.internal(e))?
            .data;
        Ok(Planned::Windowed(WindowedPlan {
            spec,
            inputs,
            lower: bottom_exec.input().clone(),
            time,
            keys,
            aggregates: bottom_exec.aggr_expr().to_vec(),
            arguments: aggregate_expressions(bottom_exec.aggr_expr(), &AggregateMode::Partial, 0)
                .map_err(|e| self.internal(e))?,
            filters: bottom_exec.filter_expr().to_vec(),
            aggregate_schema,
            aggregate_slot,
            upper,
        }))
    }
}
