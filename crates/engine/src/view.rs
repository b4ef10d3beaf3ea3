//! One running view: its input rows through the per-row plan into window
//! state, late rows aside, windows out as the watermark passes them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use futures::TryStreamExt;

use crate::feed::Feed;
use crate::plan::{JoinedPlan, StatelessPlan, WINDOW_END, WINDOW_START, WindowedPlan};
use crate::state::{Input, PaneWindows, Sessions, Template, WindowRows};
use crate::window::WindowSpec;

/// What happens to events that arrive for a window already final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Into the `<view>__late` table (and the sinks), counted.
    #[default]
    Table,
    /// Dropped, counted.
    Drop,
}

/// Per-view settings, from the view file's leading comment (`-- @name value`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ViewOptions {
    /// Allowed out-of-orderness in ms; the engine default when `None`.
    pub out_of_orderness_ms: Option<i64>,
    pub late: LatePolicy,
}

/// Column of the late table: why the row is there.
pub const LATE_REASON: &str = "late_reason";
/// Column of the late table: the view's watermark when the row arrived.
pub const LATE_WATERMARK: &str = "watermark";

pub(crate) enum Kind {
    Windowed(Box<Windowed>),
    Stateless(StatelessPlan),
    Joined(Box<Joined>),
}

/// A join of two windowed views: each side's final rows wait, by window
/// start, until both sides are final for the window; then the join runs on
/// those rows alone and its rows are final.
pub(crate) struct Joined {
    pub plan: JoinedPlan,
    pending: BTreeMap<i64, Pending>,
}

#[derive(Default)]
struct Pending {
    end: i64,
    left: Vec<RecordBatch>,
    right: Vec<RecordBatch>,
}

impl Joined {
    pub fn new(plan: JoinedPlan) -> Joined {
        Joined {
            plan,
            pending: BTreeMap::new(),
        }
    }

    /// Keeps final rows of an input view until their window can be joined.
    pub fn buffer(&mut self, view: &str, batches: &[RecordBatch]) -> DfResult<()> {
        let (left, right) = (view == self.plan.left, view == self.plan.right);
        for batch in batches {
            let starts = window_column(batch, WINDOW_START)?;
            let ends = window_column(batch, WINDOW_END)?;
            let mut rows: BTreeMap<i64, (i64, Vec<u32>)> = BTreeMap::new();
            for i in 0..batch.num_rows() {
                rows.entry(starts.value(i))
                    .or_insert((ends.value(i), Vec::new()))
                    .1
                    .push(i as u32);
            }
            for (start, (end, indices)) in rows {
                let part = if indices.len() == batch.num_rows() {
                    batch.clone()
                } else {
                    datafusion::arrow::compute::take_record_batch(
                        batch,
                        &UInt32Array::from(indices),
                    )?
                };
                let pending = self.pending.entry(start).or_default();
                pending.end = pending.end.max(end);
                if left {
                    pending.left.push(part.clone());
                }
                if right && !left {
                    pending.right.push(part);
                }
            }
        }
        Ok(())
    }

    /// Rows of the windows both inputs have closed by `watermark`, taken out.
    pub fn ready(&mut self, watermark: i64) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
        let starts: Vec<i64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.end <= watermark)
            .map(|(s, _)| *s)
            .collect();
        let mut out = (Vec::new(), Vec::new());
        for start in starts {
            if let Some(p) = self.pending.remove(&start) {
                out.0.extend(p.left);
                out.1.extend(p.right);
            }
        }
        out
    }

    /// The join of the two views' rows, ready to run.
    pub fn join(&self, left: Vec<RecordBatch>, right: Vec<RecordBatch>) -> Run {
        let mut slots = vec![(self.plan.left.as_str(), left)];
        if self.plan.right != self.plan.left {
            slots.push((self.plan.right.as_str(), right));
        }
        Run::new(&self.plan.plan, slots)
    }

    /// The rows waiting, per side.
    pub fn snapshot(&self) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
        let mut out = (Vec::new(), Vec::new());
        for p in self.pending.values() {
            out.0.extend(p.left.iter().cloned());
            out.1.extend(p.right.iter().cloned());
        }
        out
    }

    pub fn rows_waiting(&self) -> usize {
        self.pending
            .values()
            .map(|p| {
                p.left
                    .iter()
                    .chain(&p.right)
                    .map(RecordBatch::num_rows)
                    .sum::<usize>()
            })
            .sum()
    }
}

fn window_column(batch: &RecordBatch, name: &str) -> DfResult<TimestampMillisecondArray> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| datafusion::common::DataFusionError::Plan(format!("no {name} column")))?;
    let column = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    Ok(column
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("cast to timestamp(ms)")
        .clone())
}

pub(crate) struct Windowed {
    pub plan: WindowedPlan,
    state: WindowState,
    /// Input rows as the aggregation sees them, plus window and lateness columns.
    pub late_schema: SchemaRef,
    /// Columns of the per-row output kept in late rows (not DataFusion's
    /// internal `__common_expr_*` columns).
    late_columns: Vec<usize>,
}

enum WindowState {
    Panes(PaneWindows),
    Sessions(Sessions),
}

impl Windowed {
    pub fn new(plan: WindowedPlan) -> DfResult<Windowed> {
        let lower = plan.lower.schema();
        let key_schema = Arc::new(Schema::new(
            plan.keys
                .iter()
                .map(|(e, name)| Ok(Field::new(name, e.data_type(&lower)?, e.nullable(&lower)?)))
                .collect::<DfResult<Vec<_>>>()?,
        ));
        let template = Arc::new(Template::new(plan.aggregates.clone(), key_schema)?);
        let state = match plan.spec {
            WindowSpec::Session { gap } => WindowState::Sessions(Sessions::new(gap, template)?),
            spec => WindowState::Panes(PaneWindows::new(
                spec.panes().expect("pane windows"),
                template,
            )),
        };
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        // The aggregation's input columns, names made unique (a join's two
        // `sku` columns become `sku` and `sku_2`) so the table can be queried.
        let mut seen = std::collections::HashMap::<String, usize>::new();
        let late_columns: Vec<usize> = (0..lower.fields().len())
            .filter(|&i| !lower.field(i).name().starts_with("__common_expr"))
            .collect();
        let mut fields: Vec<Arc<Field>> = late_columns
            .iter()
            .map(|&i| lower.field(i))
            .map(|f| {
                let n = seen.entry(f.name().clone()).or_default();
                *n += 1;
                if *n == 1 {
                    Arc::new(f.clone())
                } else {
                    Arc::new(f.as_ref().clone().with_name(format!("{}_{n}", f.name())))
                }
            })
            .collect();
        fields.push(Arc::new(Field::new(WINDOW_START, ts.clone(), true)));
        fields.push(Arc::new(Field::new(WINDOW_END, ts.clone(), true)));
        fields.push(Arc::new(Field::new(LATE_WATERMARK, ts, true)));
        fields.push(Arc::new(Field::new(LATE_REASON, DataType::Utf8, false)));
        Ok(Windowed {
            plan,
            state,
            late_schema: Arc::new(Schema::new(fields)),
            late_columns,
        })
    }

    pub fn state_size(&self) -> usize {
        match &self.state {
            WindowState::Panes(p) => p.size(),
            WindowState::Sessions(s) => s.size(),
        }
    }

    pub fn open_groups(&self) -> usize {
        match &self.state {
            WindowState::Panes(p) => p.groups(),
            WindowState::Sessions(s) => s.groups(),
        }
    }

    /// Adds rows of the per-row plan's output. `closed`: windows ending at or
    /// before it are final. Returns the late rows.
    pub fn update(
        &mut self,
        batch: &RecordBatch,
        closed: Option<i64>,
    ) -> DfResult<Option<RecordBatch>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(None);
        }
        let times = self.plan.time.evaluate(batch)?.into_array(rows)?;
        let times = cast(&times, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let times = times
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("cast to timestamp(ms)");
        let input = Input {
            keys: self
                .plan
                .keys
                .iter()
                .map(|(e, _)| e.evaluate(batch).and_then(|v| v.into_array(rows)))
                .collect::<DfResult<_>>()?,
            args: self
                .plan
                .arguments
                .iter()
                .map(|exprs| {
                    exprs
                        .iter()
                        .map(|e| e.evaluate(batch).and_then(|v| v.into_array(rows)))
                        .collect::<DfResult<Vec<_>>>()
                })
                .collect::<DfResult<_>>()?,
            filters: self
                .plan
                .filters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| {
                            let a = f.evaluate(batch)?.into_array(rows)?;
                            Ok(a.as_any()
                                .downcast_ref::<BooleanArray>()
                                .cloned()
                                .unwrap_or_else(|| BooleanArray::from(vec![false; rows])))
                        })
                        .transpose()
                })
                .collect::<DfResult<_>>()?,
            rows,
        };
        let closed_at = closed.unwrap_or(i64::MIN);
        let mut late = Late::default();
        match &mut self.state {
            WindowState::Panes(state) => {
                let layout = state.layout;
                let size = layout.window_size();
                let mut by_pane: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
                for i in 0..rows {
                    if times.is_null(i) {
                        late.push(i, None, "no event time");
                        continue;
                    }
                    let pane = layout.pane_of(times.value(i));
                    let first = layout.first_window_of(pane);
                    // Windows of this pane already final: starts first, first + pane, …
                    let missed = if first + size > closed_at {
                        0
                    } else {
                        (((closed_at - first - size) / layout.pane) + 1).min(layout.per_window)
                    };
                    for k in 0..missed {
                        let start = first + k * layout.pane;
                        late.push(i, Some((start, start + size)), "window already final");
                    }
                    if missed < layout.per_window {
                        by_pane.entry(pane).or_default().push(i as u32);
                    }
                }
                if by_pane.len() == 1 && by_pane.values().next().is_some_and(|v| v.len() == rows) {
                    let (&pane, _) = by_pane.iter().next().expect("one pane");
                    state.update(pane, &input)?;
                } else {
                    for (pane, indices) in by_pane {
                        let part = input.take(&UInt32Array::from(indices))?;
                        state.update(pane, &part)?;
                    }
                }
            }
            WindowState::Sessions(state) => {
                let mut on_time = Vec::with_capacity(rows);
                for i in 0..rows {
                    if times.is_null(i) {
                        late.push(i, None, "no event time");
                    } else if times.value(i) < closed_at {
                        late.push(i, None, "behind the watermark");
                    } else {
                        on_time.push(i as u32);
                    }
                }
                if on_time.len() == rows {
                    state.update(times.values(), &input)?;
                } else if !on_time.is_empty() {
                    let indices = UInt32Array::from(on_time);
                    let part = input.take(&indices)?;
                    let part_times: Vec<i64> = indices
                        .values()
                        .iter()
                        .map(|&i| times.value(i as usize))
                        .collect();
                    state.update(&part_times, &part)?;
                }
            }
        }
        late.build(
            &self.late_schema,
            &batch.project(&self.late_columns)?,
            closed,
        )
    }

    /// Windows final once the watermark is `upto` (having been `after`).
    pub fn close(&mut self, after: Option<i64>, upto: i64) -> DfResult<Vec<WindowRows>> {
        match &mut self.state {
            WindowState::Panes(p) => p.close(after.unwrap_or(i64::MIN), upto),
            WindowState::Sessions(s) => s.close(upto),
        }
    }

    pub fn running(&mut self, watermark: Option<i64>) -> DfResult<Vec<WindowRows>> {
        let wm = watermark.unwrap_or(i64::MIN);
        match &mut self.state {
            WindowState::Panes(p) => p.running(wm),
            WindowState::Sessions(s) => s.running(wm),
        }
    }

    /// The aggregation's output rows for some windows, as `upper` reads them.
    fn aggregate_batch(&self, windows: &[WindowRows]) -> DfResult<Vec<RecordBatch>> {
        let schema = &self.plan.aggregate_schema;
        windows
            .iter()
            .map(|w| {
                let n = w.rows.rows;
                let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
                for (value, field) in [(w.start, &schema.fields()[0]), (w.end, &schema.fields()[1])]
                {
                    let a: ArrayRef = Arc::new(
                        TimestampMillisecondArray::from(vec![value; n]).with_timezone("UTC"),
                    );
                    columns.push(cast(&a, field.data_type())?);
                }
                columns.extend(w.rows.keys.iter().cloned());
                columns.extend(w.rows.values.iter().cloned());
                let columns = columns
                    .into_iter()
                    .zip(schema.fields().iter())
                    .map(|(c, f)| {
                        if c.data_type() == f.data_type() {
                            Ok(c)
                        } else {
                            cast(&c, f.data_type())
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(RecordBatch::try_new(schema.clone(), columns)?)
            })
            .collect()
    }

    /// The view's output rows for some windows, ready to run: their
    /// aggregate rows through `upper` (HAVING, final projection).
    pub fn output(&self, windows: &[WindowRows]) -> DfResult<Run> {
        let input = self.aggregate_batch(windows)?;
        Ok(Run::new(
            &self.plan.upper,
            vec![(self.plan.aggregate_slot.as_str(), input)],
        ))
    }

    pub fn snapshot(&mut self) -> DfResult<Vec<RecordBatch>> {
        match &mut self.state {
            WindowState::Panes(p) => p.snapshot(),
            WindowState::Sessions(s) => s.snapshot(),
        }
    }

    pub fn restore(&mut self, batches: &[RecordBatch]) -> DfResult<()> {
        match &mut self.state {
            WindowState::Panes(p) => p.restore(batches),
            WindowState::Sessions(s) => s.restore(batches),
        }
    }
}

/// Late rows being collected for one input batch.
#[derive(Default)]
struct Late {
    rows: Vec<u32>,
    windows: Vec<Option<(i64, i64)>>,
    reasons: Vec<&'static str>,
}

impl Late {
    fn push(&mut self, row: usize, window: Option<(i64, i64)>, reason: &'static str) {
        self.rows.push(row as u32);
        self.windows.push(window);
        self.reasons.push(reason);
    }

    fn build(
        self,
        schema: &SchemaRef,
        batch: &RecordBatch,
        watermark: Option<i64>,
    ) -> DfResult<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let indices = UInt32Array::from(self.rows);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        let n = indices.len();
        let ts = |v: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
        };
        columns.push(ts(self.windows.iter().map(|w| w.map(|w| w.0)).collect()));
        columns.push(ts(self.windows.iter().map(|w| w.map(|w| w.1)).collect()));
        columns.push(ts(vec![watermark; n]));
        columns.push(Arc::new(StringArray::from(self.reasons)));
        Ok(Some(RecordBatch::try_new(schema.clone(), columns)?))
    }
}

/// Runs a plan reading the feed to completion, over all its partitions.
async fn run(plan: &Arc<dyn ExecutionPlan>, ctx: &Arc<TaskContext>) -> DfResult<Vec<RecordBatch>> {
    // Joins keep their build side between executions (HashJoinExec's
    // OnceAsync): reset them, or a stream on the build side would be joined
    // again with every later batch.
    let joins = plan
        .exists(|node| Ok(node.children().len() > 1))
        .unwrap_or(true);
    let plan = if joins {
        reset_plan_states(plan.clone())?
    } else {
        plan.clone()
    };
    let mut out = Vec::new();
    let partitions = plan.properties().partitioning.partition_count();
    for p in 0..partitions {
        let stream = plan.execute(p, ctx.clone())?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        out.extend(batches.into_iter().filter(|b| b.num_rows() > 0));
    }
    Ok(out)
}

/// A plan with the batches its feed scans will read. Owns what it needs, so
/// running it borrows no view state across the await.
pub(crate) struct Run {
    plan: Arc<dyn ExecutionPlan>,
    slots: Vec<(String, Vec<RecordBatch>)>,
}

impl Run {
    pub fn new(plan: &Arc<dyn ExecutionPlan>, slots: Vec<(&str, Vec<RecordBatch>)>) -> Run {
        Run {
            plan: plan.clone(),
            slots: slots
                .into_iter()
                .map(|(slot, batches)| (slot.to_owned(), batches))
                .collect(),
        }
    }

    /// Runs the plan with each slot's batches in the feed.
    pub async fn execute(self, feed: &Feed, ctx: &Arc<TaskContext>) -> DfResult<Vec<RecordBatch>> {
        for (slot, batches) in self.slots {
            feed.set(&slot, batches);
        }
        let out = run(&self.plan, ctx).await;
        feed.clear();
        out
    }
}

/// Watermark bookkeeping of a view.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Current watermark (epoch ms), once known.
    pub watermark: Option<i64>,
    /// When all input went idle: (clock then, watermark base then).
    pub idle_since: Option<(i64, i64)>,
}

static NO_STREAMS: BTreeSet<String> = BTreeSet::new();

/// The streams a view reads directly.
pub(crate) fn stream_inputs(kind: &Kind) -> &BTreeSet<String> {
    match kind {
        Kind::Windowed(w) => &w.plan.inputs,
        Kind::Stateless(s) => &s.inputs,
        Kind::Joined(_) => &NO_STREAMS,
    }
}
