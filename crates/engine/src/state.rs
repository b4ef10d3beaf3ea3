//! Partial aggregate state of open windows, kept in DataFusion's own
//! accumulators.
//!
//! Pane windows (tumble, hop, date_bin): rows go to the pane of one slide
//! that holds their event time ([`Panes`]); a pane keeps a [`Groups`] — the
//! group keys interned by DataFusion's `GroupValues` and one
//! `GroupsAccumulator` per aggregate, updated with the new rows only. A window
//! is its panes combined: each pane's state (`GroupsAccumulator::state`) is
//! merged into fresh accumulators (`merge_batch`) and evaluated. Since `state`
//! and `evaluate` consume, a pane's live accumulators are *frozen* into state
//! arrays when read, and new rows start a new live part; frozen parts are
//! compacted as they pile up. A tumbling window with nothing frozen is
//! evaluated directly.
//!
//! Session windows keep, per key, a list of sessions with one row
//! `Accumulator` per aggregate; sessions bridged by a new event merge through
//! `state` and `merge_batch`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::window::Panes;

/// What every group state of a view is made of.
pub(crate) struct Template {
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Types of the group keys other than the window.
    pub key_schema: SchemaRef,
    /// Types of each aggregate's state columns.
    pub state_fields: Vec<Vec<Arc<Field>>>,
}

impl Template {
    pub fn new(
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        key_schema: SchemaRef,
    ) -> DfResult<Template> {
        let state_fields = aggregates
            .iter()
            .map(|a| a.state_fields())
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Template {
            aggregates,
            key_schema,
            state_fields,
        })
    }

    fn groups_accumulator(
        agg: &Arc<AggregateFunctionExpr>,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        if agg.groups_accumulator_supported() {
            agg.create_groups_accumulator()
        } else {
            let agg = agg.clone();
            Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                agg.create_accumulator()
            })))
        }
    }

    /// Schema of a snapshot of pane state: pane start, keys, state columns.
    pub fn state_schema(&self, first: &str) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = vec![Arc::new(Field::new(
            first,
            datafusion::arrow::datatypes::DataType::Int64,
            false,
        ))];
        fields.extend(self.key_schema.fields().iter().cloned());
        for (i, state) in self.state_fields.iter().enumerate() {
            for (j, f) in state.iter().enumerate() {
                fields.push(Arc::new(
                    f.as_ref()
                        .clone()
                        .with_name(format!("__state_{i}_{j}"))
                        .with_nullable(true),
                ));
            }
        }
        Arc::new(Schema::new(fields))
    }
}

/// One batch of rows for the accumulators: group keys, each aggregate's
/// arguments and optional filter.
pub(crate) struct Input {
    pub keys: Vec<ArrayRef>,
    pub args: Vec<Vec<ArrayRef>>,
    pub filters: Vec<Option<BooleanArray>>,
    pub rows: usize,
}

impl Input {
    pub fn take(&self, indices: &UInt32Array) -> DfResult<Input> {
        let t = |a: &ArrayRef| take(a.as_ref(), indices, None);
        Ok(Input {
            keys: self.keys.iter().map(t).collect::<Result<_, _>>()?,
            args: self
                .args
                .iter()
                .map(|args| args.iter().map(t).collect::<Result<Vec<_>, _>>())
                .collect::<Result<_, _>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| {
                            take(f, indices, None).map(|a| {
                                a.as_any()
                                    .downcast_ref::<BooleanArray>()
                                    .expect("take of a boolean array")
                                    .clone()
                            })
                        })
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
            rows: indices.len(),
        })
    }
}

enum KeyIndex {
    Values(Box<dyn GroupValues>),
    /// No keys besides the window: one group once any row arrived.
    Single(bool),
}

/// Interned group keys and their accumulators.
pub(crate) struct Groups {
    keys: KeyIndex,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    indices: Vec<usize>,
}

/// Group keys with each aggregate's state columns, as `GroupsAccumulator::state` gives them.
pub(crate) struct Frozen {
    pub keys: Vec<ArrayRef>,
    pub states: Vec<Vec<ArrayRef>>,
    pub rows: usize,
}

impl Frozen {
    fn size(&self) -> usize {
        self.keys
            .iter()
            .chain(self.states.iter().flatten())
            .map(|a| a.get_array_memory_size())
            .sum()
    }
}

/// Final values of a window's groups.
pub(crate) struct Evaluated {
    pub keys: Vec<ArrayRef>,
    pub values: Vec<ArrayRef>,
    pub rows: usize,
}

impl Groups {
    pub fn new(template: &Template) -> DfResult<Groups> {
        let keys = if template.key_schema.fields().is_empty() {
            KeyIndex::Single(false)
        } else {
            KeyIndex::Values(new_group_values(
                template.key_schema.clone(),
                &GroupOrdering::None,
            )?)
        };
        Ok(Groups {
            keys,
            accumulators: template
                .aggregates
                .iter()
                .map(Template::groups_accumulator)
                .collect::<DfResult<_>>()?,
            indices: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        match &self.keys {
            KeyIndex::Values(v) => v.len(),
            KeyIndex::Single(used) => usize::from(*used),
        }
    }

    fn intern(&mut self, keys: &[ArrayRef], rows: usize) -> DfResult<()> {
        self.indices.clear();
        match &mut self.keys {
            KeyIndex::Values(v) => v.intern(keys, &mut self.indices),
            KeyIndex::Single(used) => {
                if rows > 0 {
                    *used = true;
                }
                self.indices.resize(rows, 0);
                Ok(())
            }
        }
    }

    pub fn update(&mut self, input: &Input) -> DfResult<()> {
        self.intern(&input.keys, input.rows)?;
        let groups = self.len();
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            acc.update_batch(
                &input.args[i],
                &self.indices,
                input.filters[i].as_ref(),
                groups,
            )?;
        }
        Ok(())
    }

    pub fn merge(&mut self, frozen: &Frozen) -> DfResult<()> {
        self.intern(&frozen.keys, frozen.rows)?;
        let groups = self.len();
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            acc.merge_batch(&frozen.states[i], &self.indices, groups)?;
        }
        Ok(())
    }

    fn emit_keys(&mut self) -> DfResult<Vec<ArrayRef>> {
        match &mut self.keys {
            KeyIndex::Values(v) => v.emit(EmitTo::All),
            KeyIndex::Single(_) => Ok(Vec::new()),
        }
    }

    pub fn freeze(mut self) -> DfResult<Frozen> {
        let rows = self.len();
        let keys = self.emit_keys()?;
        let states = self
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<DfResult<_>>()?;
        Ok(Frozen { keys, states, rows })
    }

    pub fn evaluate(mut self) -> DfResult<Evaluated> {
        let rows = self.len();
        let keys = self.emit_keys()?;
        let values = self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<DfResult<_>>()?;
        Ok(Evaluated { keys, values, rows })
    }

    fn size(&self) -> usize {
        let keys = match &self.keys {
            KeyIndex::Values(v) => v.size(),
            KeyIndex::Single(_) => 0,
        };
        keys + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }
}

/// Frozen parts a pane keeps before compacting them into one.
const MAX_FROZEN: usize = 4;

#[derive(Default)]
struct Pane {
    live: Option<Groups>,
    frozen: Vec<Frozen>,
}

impl Pane {
    fn freeze(&mut self, template: &Template) -> DfResult<()> {
        if let Some(live) = self.live.take()
            && live.len() > 0
        {
            self.frozen.push(live.freeze()?);
        }
        if self.frozen.len() > MAX_FROZEN {
            let mut all = Groups::new(template)?;
            for f in &self.frozen {
                all.merge(f)?;
            }
            self.frozen = vec![all.freeze()?];
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.live.as_ref().map_or(0, Groups::size)
            + self.frozen.iter().map(Frozen::size).sum::<usize>()
    }
}

/// A window's evaluated groups.
pub(crate) struct WindowRows {
    pub start: i64,
    pub end: i64,
    pub rows: Evaluated,
}

/// State of a pane-windowed view.
pub(crate) struct PaneWindows {
    pub layout: Panes,
    template: Arc<Template>,
    panes: BTreeMap<i64, Pane>,
}

impl PaneWindows {
    pub fn new(layout: Panes, template: Arc<Template>) -> PaneWindows {
        PaneWindows {
            layout,
            template,
            panes: BTreeMap::new(),
        }
    }

    pub fn update(&mut self, pane: i64, input: &Input) -> DfResult<()> {
        let entry = self.panes.entry(pane).or_default();
        if entry.live.is_none() {
            entry.live = Some(Groups::new(&self.template)?);
        }
        entry.live.as_mut().expect("live groups").update(input)
    }

    /// Starts of windows holding data whose end is in `(after, upto]`, or all
    /// windows ending after `after` when `upto` is `None`.
    fn windows(&self, after: i64, upto: Option<i64>) -> BTreeSet<i64> {
        let size = self.layout.window_size();
        let mut starts = BTreeSet::new();
        for &pane in self.panes.keys() {
            let mut start = self.layout.first_window_of(pane);
            while start <= pane {
                let end = start + size;
                if end > after && upto.is_none_or(|u| end <= u) {
                    starts.insert(start);
                }
                start += self.layout.pane;
            }
        }
        starts
    }

    /// A window's groups, leaving its panes usable.
    fn combine(&mut self, start: i64) -> DfResult<Evaluated> {
        let mut all = Groups::new(&self.template)?;
        let end = start + self.layout.window_size();
        for (_, pane) in self.panes.range_mut(start..end) {
            pane.freeze(&self.template)?;
            for f in &pane.frozen {
                all.merge(f)?;
            }
        }
        all.evaluate()
    }

    /// Windows ending in `(after, upto]`, in order of start; panes no window
    /// after `upto` needs are freed.
    pub fn close(&mut self, after: i64, upto: i64) -> DfResult<Vec<WindowRows>> {
        let size = self.layout.window_size();
        let mut out = Vec::new();
        for start in self.windows(after, Some(upto)) {
            let rows = if self.layout.per_window == 1 {
                let pane = self.panes.remove(&start).unwrap_or_default();
                let mut groups = match pane.live {
                    Some(g) => g,
                    None => Groups::new(&self.template)?,
                };
                for f in &pane.frozen {
                    groups.merge(f)?;
                }
                groups.evaluate()?
            } else {
                self.combine(start)?
            };
            if rows.rows > 0 {
                out.push(WindowRows {
                    start,
                    end: start + size,
                    rows,
                });
            }
        }
        let layout = self.layout;
        self.panes
            .retain(|&pane, _| layout.last_end_of(pane) > upto);
        Ok(out)
    }

    /// Current values of every window holding data and ending after `after`.
    pub fn running(&mut self, after: i64) -> DfResult<Vec<WindowRows>> {
        let size = self.layout.window_size();
        let mut out = Vec::new();
        for start in self.windows(after, None) {
            let rows = self.combine(start)?;
            if rows.rows > 0 {
                out.push(WindowRows {
                    start,
                    end: start + size,
                    rows,
                });
            }
        }
        Ok(out)
    }

    pub fn size(&self) -> usize {
        self.panes.values().map(Pane::size).sum()
    }

    pub fn groups(&self) -> usize {
        self.panes
            .values()
            .map(|p| {
                p.live.as_ref().map_or(0, Groups::len)
                    + p.frozen.iter().map(|f| f.rows).sum::<usize>()
            })
            .sum()
    }

    /// The state as record batches (pane start, keys, state columns); panes
    /// stay usable.
    pub fn snapshot(&mut self) -> DfResult<Vec<RecordBatch>> {
        let schema = self.template.state_schema("__pane");
        let mut out = Vec::new();
        for (&start, pane) in self.panes.iter_mut() {
            pane.freeze(&self.template)?;
            for f in &pane.frozen {
                let mut columns: Vec<ArrayRef> =
                    vec![Arc::new(Int64Array::from(vec![start; f.rows]))];
                columns.extend(f.keys.iter().cloned());
                columns.extend(f.states.iter().flatten().cloned());
                out.push(RecordBatch::try_new(schema.clone(), columns)?);
            }
        }
        Ok(out)
    }

    pub fn restore(&mut self, batches: &[RecordBatch]) -> DfResult<()> {
        let keys = self.template.key_schema.fields().len();
        for batch in batches {
            let panes = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| {
                    datafusion::common::DataFusionError::Plan("pane column is not Int64".into())
                })?;
            let distinct: BTreeSet<i64> = panes.values().iter().copied().collect();
            for start in distinct {
                let mask =
                    BooleanArray::from_iter(panes.values().iter().map(|&p| Some(p == start)));
                let part = filter_record_batch(batch, &mask)?;
                let mut columns = part.columns()[1..].iter().cloned();
                let key_columns: Vec<ArrayRef> = columns.by_ref().take(keys).collect();
                let states = self
                    .template
                    .state_fields
                    .iter()
                    .map(|fields| columns.by_ref().take(fields.len()).collect())
                    .collect();
                self.panes.entry(start).or_default().frozen.push(Frozen {
                    keys: key_columns,
                    states,
                    rows: part.num_rows(),
                });
            }
        }
        Ok(())
    }
}

/// One session of one key.
struct Session {
    start: i64,
    last: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Rows of the current batch waiting to be added.
    pending: Vec<u32>,
}

/// State of a session-windowed view.
pub(crate) struct Sessions {
    gap: i64,
    template: Arc<Template>,
    converter: Option<RowConverter>,
    /// Sessions per key, ordered by start and never overlapping.
    by_key: HashMap<OwnedRow, Vec<Session>>,
    /// The key of views grouped by the window alone.
    no_key: Option<OwnedRow>,
}

impl Sessions {
    pub fn new(gap: i64, template: Arc<Template>) -> DfResult<Sessions> {
        let converter = if template.key_schema.fields().is_empty() {
            None
        } else {
            Some(RowConverter::new(
                template
                    .key_schema
                    .fields()
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?)
        };
        let no_key = match &converter {
            None => {
                let c = RowConverter::new(vec![SortField::new(
                    datafusion::arrow::datatypes::DataType::Boolean,
                )])?;
                let rows =
                    c.convert_columns(&[Arc::new(BooleanArray::from(vec![true])) as ArrayRef])?;
                Some(rows.row(0).owned())
            }
            Some(_) => None,
        };
        Ok(Sessions {
            gap,
            template,
            converter,
            by_key: HashMap::new(),
            no_key,
        })
    }

    fn new_session(&self, t: i64) -> DfResult<Session> {
        Ok(Session {
            start: t,
            last: t,
            accumulators: self
                .template
                .aggregates
                .iter()
                .map(|a| a.create_accumulator())
                .collect::<DfResult<_>>()?,
            pending: Vec::new(),
        })
    }

    /// Adds rows with event times `times` (all on time).
    pub fn update(&mut self, times: &[i64], input: &Input) -> DfResult<()> {
        let keys: Vec<OwnedRow> = match &self.converter {
            Some(c) => {
                let rows = c.convert_columns(&input.keys)?;
                rows.iter().map(|r| r.owned()).collect()
            }
            None => vec![self.no_key.clone().expect("no-key row"); input.rows],
        };
        let mut by_key: HashMap<&OwnedRow, Vec<u32>> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            by_key.entry(key).or_default().push(i as u32);
        }
        let gap = self.gap;
        for (key, mut rows) in by_key {
            rows.sort_by_key(|&i| times[i as usize]);
            let mut sessions = self.by_key.remove(key).unwrap_or_default();
            for i in rows {
                let t = times[i as usize];
                let hits: Vec<usize> = sessions
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| t > s.start - gap && t < s.last + gap)
                    .map(|(n, _)| n)
                    .collect();
                match hits.as_slice() {
                    [] => {
                        let mut s = self.new_session(t)?;
                        s.pending.push(i);
                        let at = sessions.partition_point(|s| s.start < t);
                        sessions.insert(at, s);
                    }
                    [first, rest @ ..] => {
                        let first = *first;
                        for &n in rest.iter().rev() {
                            let mut other = sessions.remove(n);
                            let target = &mut sessions[first];
                            target.start = target.start.min(other.start);
                            target.last = target.last.max(other.last);
                            target.pending.append(&mut other.pending);
                            for (a, b) in target
                                .accumulators
                                .iter_mut()
                                .zip(other.accumulators.iter_mut())
                            {
                                let state = b
                                    .state()?
                                    .iter()
                                    .map(ScalarValue::to_array)
                                    .collect::<DfResult<Vec<_>>>()?;
                                a.merge_batch(&state)?;
                            }
                        }
                        let s = &mut sessions[first];
                        s.start = s.start.min(t);
                        s.last = s.last.max(t);
                        s.pending.push(i);
                    }
                }
            }
            for s in &mut sessions {
                if s.pending.is_empty() {
                    continue;
                }
                let indices = UInt32Array::from(std::mem::take(&mut s.pending));
                for (n, acc) in s.accumulators.iter_mut().enumerate() {
                    let mut args: Vec<ArrayRef> = input.args[n]
                        .iter()
                        .map(|a| take(a.as_ref(), &indices, None))
                        .collect::<Result<_, _>>()?;
                    if let Some(filter) = &input.filters[n] {
                        let f = take(filter, &indices, None)?;
                        let f = f.as_any().downcast_ref::<BooleanArray>().expect("boolean");
                        args = args
                            .iter()
                            .map(|a| datafusion::arrow::compute::filter(a.as_ref(), f))
                            .collect::<Result<_, _>>()?;
                    }
                    acc.update_batch(&args)?;
                }
            }
            self.by_key.insert(key.clone(), sessions);
        }
        Ok(())
    }

    fn rows_of(&mut self, closed: bool, watermark: i64) -> DfResult<Vec<WindowRows>> {
        let gap = self.gap;
        let mut picked: Vec<(i64, i64, OwnedRow, Vec<ScalarValue>)> = Vec::new();
        for (key, sessions) in self.by_key.iter_mut() {
            for s in sessions.iter_mut() {
                let end = s.last + gap;
                if (end <= watermark) == closed {
                    let values = s
                        .accumulators
                        .iter_mut()
                        .map(|a| a.evaluate())
                        .collect::<DfResult<_>>()?;
                    picked.push((s.start, end, key.clone(), values));
                }
            }
        }
        if closed {
            for sessions in self.by_key.values_mut() {
                sessions.retain(|s| s.last + gap > watermark);
            }
            self.by_key.retain(|_, s| !s.is_empty());
        }
        picked.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        // One WindowRows per session window (start, end).
        let mut out: Vec<WindowRows> = Vec::new();
        for group in picked.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let keys = match &self.converter {
                Some(c) => c.convert_rows(group.iter().map(|g| g.2.row()))?,
                None => Vec::new(),
            };
            let values = (0..self.template.aggregates.len())
                .map(|n| ScalarValue::iter_to_array(group.iter().map(|g| g.3[n].clone())))
                .collect::<DfResult<_>>()?;
            out.push(WindowRows {
                start: group[0].0,
                end: group[0].1,
                rows: Evaluated {
                    keys,
                    values,
                    rows: group.len(),
                },
            });
        }
        Ok(out)
    }

    /// Sessions ending at or before the watermark, removed from the state.
    pub fn close(&mut self, watermark: i64) -> DfResult<Vec<WindowRows>> {
        self.rows_of(true, watermark)
    }

    pub fn running(&mut self, watermark: i64) -> DfResult<Vec<WindowRows>> {
        self.rows_of(false, watermark)
    }

    pub fn size(&self) -> usize {
        self.by_key
            .iter()
            .map(|(k, s)| {
                k.as_ref().len()
                    + s.iter()
                        .map(|s| s.accumulators.iter().map(|a| a.size()).sum::<usize>() + 32)
                        .sum::<usize>()
            })
            .sum()
    }

    pub fn groups(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    /// The state as record batches (session start, keys, last event, state
    /// columns); sessions stay usable.
    pub fn snapshot(&mut self) -> DfResult<Vec<RecordBatch>> {
        let base = self.template.state_schema("__start");
        let mut fields: Vec<Arc<Field>> = base.fields().iter().cloned().collect();
        fields.insert(
            1,
            Arc::new(Field::new(
                "__last",
                datafusion::arrow::datatypes::DataType::Int64,
                false,
            )),
        );
        let schema = Arc::new(Schema::new(fields));
        let mut starts = Vec::new();
        let mut lasts = Vec::new();
        let mut keys = Vec::new();
        let columns_per_agg: Vec<usize> = self.template.state_fields.iter().map(Vec::len).collect();
        let mut states: Vec<Vec<ScalarValue>> = vec![Vec::new(); columns_per_agg.iter().sum()];
        for (key, sessions) in self.by_key.iter_mut() {
            for s in sessions.iter_mut() {
                starts.push(s.start);
                lasts.push(s.last);
                keys.push(key.clone());
                let mut col = 0;
                for (n, acc) in s.accumulators.iter_mut().enumerate() {
                    let state = acc.state()?;
                    // `state` consumes: rebuild the accumulator from it.
                    let mut fresh = self.template.aggregates[n].create_accumulator()?;
                    let arrays = state
                        .iter()
                        .map(ScalarValue::to_array)
                        .collect::<DfResult<Vec<_>>>()?;
                    fresh.merge_batch(&arrays)?;
                    *acc = fresh;
                    for v in state {
                        states[col].push(v);
                        col += 1;
                    }
                }
            }
        }
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(lasts)),
        ];
        if let Some(c) = &self.converter {
            columns.extend(c.convert_rows(keys.iter().map(|k| k.row()))?);
        }
        // Every session added a value to every state column: none is empty.
        for values in states {
            columns.push(ScalarValue::iter_to_array(values)?);
        }
        Ok(vec![RecordBatch::try_new(schema, columns)?])
    }

    pub fn restore(&mut self, batches: &[RecordBatch]) -> DfResult<()> {
        let keys = self.template.key_schema.fields().len();
        for batch in batches {
            let starts = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned();
            let lasts = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned();
            let (Some(starts), Some(lasts)) = (starts, lasts) else {
                return Err(datafusion::common::DataFusionError::Plan(
                    "session state columns are not Int64".into(),
                ));
            };
            let key_columns: Vec<ArrayRef> = batch.columns()[2..2 + keys].to_vec();
            let key_rows: Vec<OwnedRow> = match &self.converter {
                Some(c) => c
                    .convert_columns(&key_columns)?
                    .iter()
                    .map(|r| r.owned())
                    .collect(),
                None => vec![self.no_key.clone().expect("no-key row"); batch.num_rows()],
            };
            for (row, key) in key_rows.into_iter().enumerate() {
                let mut session = self.new_session(starts.value(row))?;
                session.last = lasts.value(row);
                let mut col = 2 + keys;
                for (n, acc) in session.accumulators.iter_mut().enumerate() {
                    let width = self.template.state_fields[n].len();
                    let arrays: Vec<ArrayRef> = batch.columns()[col..col + width]
                        .iter()
                        .map(|a| a.slice(row, 1))
                        .collect();
                    acc.merge_batch(&arrays)?;
                    col += width;
                }
                let list = self.by_key.entry(key).or_default();
                let at = list.partition_point(|s| s.start < session.start);
                list.insert(at, session);
            }
        }
        Ok(())
    }
}
