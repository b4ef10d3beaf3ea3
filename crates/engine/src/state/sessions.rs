//! Session windows: per key, sessions ordered by start with one row
//! `Accumulator` per aggregate, merged when an event bridges two.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::Accumulator;

use super::groups::Evaluated;
use super::{Input, Template, WindowRows};
use crate::window::in_time_range;

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

    /// Columns of a snapshot: session start, last event, keys, state columns.
    pub fn snapshot_schema(&self) -> SchemaRef {
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
        Arc::new(Schema::new(fields))
    }

    /// The state as record batches (session start, keys, last event, state
    /// columns); sessions stay usable.
    pub fn snapshot(&mut self) -> DfResult<Vec<RecordBatch>> {
        let schema = self.snapshot_schema();
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
            let bad = |m: &str| Err(datafusion::common::DataFusionError::Plan(m.to_owned()));
            if starts.null_count() > 0 || lasts.null_count() > 0 {
                return bad("a session without start or last event time");
            }
            for (start, last) in starts.values().iter().zip(lasts.values()) {
                if start > last || !in_time_range(*start) || !in_time_range(*last) {
                    return bad(&format!(
                        "a session from {start} to {last}: not a valid time range"
                    ));
                }
            }
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
