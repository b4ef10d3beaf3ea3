//! A windowed view: rows of the per-row plan into pane or session state,
//! rows for windows already final aside as late rows, windows out as the
//! watermark passes their end.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result as DfResult;

use crate::feed::Run;
use crate::plan::{WINDOW_END, WINDOW_START, WindowedPlan};
use crate::state::{Input, PaneWindows, Sessions, Template, WindowRows};
use crate::view::{LATE_REASON, LATE_WATERMARK};
use crate::window::{MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, WindowSpec};

pub(crate) struct Windowed {
    pub plan: WindowedPlan,
    template: Arc<Template>,
    state: WindowState,
    /// Input rows as the aggregation sees them, plus window and lateness columns.
    pub late_schema: SchemaRef,
    /// Columns of the per-row output kept in late rows (not DataFusion's
    /// internal `__common_expr_*` columns).
    late_columns: Vec<usize>,
}

/// Why a late row's event time could not be placed in any window.
pub(crate) const OUT_OF_RANGE: &str = "event time outside the supported range (years 1 to 9999)";

/// A batch's rows evaluated for a view, not yet applied.
pub(crate) struct Update {
    pub target: Target,
    /// Rows for windows already final (or without a usable time).
    pub late: Option<RecordBatch>,
}

/// Where a batch's on-time rows go.
pub(crate) enum Target {
    Nothing,
    /// Per pane start, its rows.
    Panes(Vec<(i64, Input)>),
    /// Event times and rows, all on time.
    Sessions(Vec<i64>, Input),
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
            WindowSpec::Session { gap } => {
                WindowState::Sessions(Sessions::new(gap, template.clone())?)
            }
            spec => WindowState::Panes(PaneWindows::new(
                spec.panes().expect("pane windows"),
                template.clone(),
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
            template,
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

    /// Evaluates rows of the per-row plan's output for the state, changing
    /// nothing: which pane or session each row goes to, and which rows are
    /// late. `closed`: windows ending at or before it are final.
    pub fn prepare(&self, batch: &RecordBatch, closed: Option<i64>) -> DfResult<Update> {
        let rows = batch.num_rows();
        let mut update = Update {
            target: Target::Nothing,
            late: None,
        };
        if rows == 0 {
            return Ok(update);
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
        // Times outside the supported range never reach window arithmetic
        // (the source refuses them earlier; this guards other callers).
        let usable = |i: usize, late: &mut Late| {
            if times.is_null(i) {
                late.push(i, None, "no event time");
                false
            } else if !(MIN_EVENT_TIME_MS..=MAX_EVENT_TIME_MS).contains(&times.value(i)) {
                late.push(i, None, OUT_OF_RANGE);
                false
            } else {
                true
            }
        };
        match &self.state {
            WindowState::Panes(state) => {
                let layout = state.layout;
                let size = layout.window_size();
                let mut by_pane: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
                for i in 0..rows {
                    if !usable(i, &mut late) {
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
                let panes = if by_pane.len() == 1
                    && by_pane.values().next().is_some_and(|v| v.len() == rows)
                {
                    let (&pane, _) = by_pane.iter().next().expect("one pane");
                    vec![(pane, input)]
                } else {
                    by_pane
                        .into_iter()
                        .map(|(pane, indices)| Ok((pane, input.take(&UInt32Array::from(indices))?)))
                        .collect::<DfResult<_>>()?
                };
                update.target = Target::Panes(panes);
            }
            WindowState::Sessions(_) => {
                let mut on_time = Vec::with_capacity(rows);
                for i in 0..rows {
                    if !usable(i, &mut late) {
                        continue;
                    }
                    if times.value(i) < closed_at {
                        late.push(i, None, "behind the watermark");
                    } else {
                        on_time.push(i as u32);
                    }
                }
                if on_time.len() == rows {
                    update.target = Target::Sessions(times.values().to_vec(), input);
                } else if !on_time.is_empty() {
                    let indices = UInt32Array::from(on_time);
                    let part = input.take(&indices)?;
                    let part_times: Vec<i64> = indices
                        .values()
                        .iter()
                        .map(|&i| times.value(i as usize))
                        .collect();
                    update.target = Target::Sessions(part_times, part);
                }
            }
        }
        update.late = late.build(
            &self.late_schema,
            &batch.project(&self.late_columns)?,
            closed,
        )?;
        Ok(update)
    }

    /// Adds prepared rows to the state. Fails only on a bug: the inputs were
    /// evaluated against the state's own types by [`Windowed::prepare`].
    pub fn apply(&mut self, target: Target) -> DfResult<()> {
        match (&mut self.state, target) {
            (_, Target::Nothing) => Ok(()),
            (WindowState::Panes(state), Target::Panes(panes)) => {
                for (pane, input) in panes {
                    state.update(pane, &input)?;
                }
                Ok(())
            }
            (WindowState::Sessions(state), Target::Sessions(times, input)) => {
                state.update(&times, &input)
            }
            _ => Err(datafusion::common::DataFusionError::Internal(
                "prepared rows do not match the view's window kind".into(),
            )),
        }
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

    /// A fresh state holding a snapshot's batches, checked against the
    /// view's own state columns (names, types, values that must hold); the
    /// view is unchanged until [`Windowed::set_state`].
    pub fn restored(&self, batches: &[RecordBatch]) -> Result<RestoredState, String> {
        let expected = match &self.state {
            WindowState::Panes(_) => self.template.state_schema("__pane"),
            WindowState::Sessions(s) => s.snapshot_schema(),
        };
        for (n, batch) in batches.iter().enumerate() {
            check_columns(&expected, &batch.schema())
                .map_err(|e| format!("state batch {n}: {e}"))?;
        }
        let state = match (&self.state, self.plan.spec) {
            (WindowState::Panes(p), _) => {
                let mut fresh = PaneWindows::new(p.layout, self.template.clone());
                fresh.restore(batches).map_err(|e| e.to_string())?;
                WindowState::Panes(fresh)
            }
            (WindowState::Sessions(_), WindowSpec::Session { gap }) => {
                let mut fresh =
                    Sessions::new(gap, self.template.clone()).map_err(|e| e.to_string())?;
                fresh.restore(batches).map_err(|e| e.to_string())?;
                WindowState::Sessions(fresh)
            }
            (WindowState::Sessions(_), _) => return Err("session state of a pane view".into()),
        };
        Ok(RestoredState(state))
    }

    pub fn set_state(&mut self, state: RestoredState) {
        self.state = state.0;
    }
}

/// A view's window state rebuilt from a snapshot, not yet in use.
pub(crate) struct RestoredState(WindowState);

/// Whether `got` has the columns of `expected`: the same number, names and
/// types (nullability aside: state arrays may hold nulls either way).
pub(crate) fn check_columns(expected: &Schema, got: &Schema) -> Result<(), String> {
    if expected.fields().len() != got.fields().len() {
        return Err(format!(
            "{} columns where {} were expected ({})",
            got.fields().len(),
            expected.fields().len(),
            expected
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (e, g) in expected.fields().iter().zip(got.fields()) {
        if e.name() != g.name() || e.data_type() != g.data_type() {
            return Err(format!(
                "column `{}` {} where `{}` {} was expected",
                g.name(),
                g.data_type(),
                e.name(),
                e.data_type()
            ));
        }
    }
    Ok(())
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
