//! A join of two windowed views: each side's final rows wait, by window
//! start, until both sides are final for that window.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, RecordBatch, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::Result as DfResult;

use crate::feed::Run;
use crate::plan::{JoinedPlan, WINDOW_END, WINDOW_START};
use crate::view::windowed::check_columns;

pub(crate) struct Joined {
    pub plan: JoinedPlan,
    pending: BTreeMap<i64, Pending>,
    /// Rows in `pending`, both sides.
    waiting: usize,
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
            waiting: 0,
        }
    }

    /// Drops the oldest windows' rows until at most `max` rows wait; returns
    /// how many were dropped. Bounds the state of a join whose other side
    /// never closes its windows.
    pub fn enforce_cap(&mut self, max: usize) -> usize {
        let mut dropped = 0;
        while self.waiting > max {
            let Some((_, p)) = self.pending.pop_first() else {
                break;
            };
            let rows = p.rows();
            self.waiting -= rows;
            dropped += rows;
        }
        dropped
    }

    /// A copy of this join's plan holding a snapshot's waiting rows, checked
    /// against the input views' columns; this join is unchanged.
    pub fn restored(
        &self,
        left: (&SchemaRef, &[RecordBatch]),
        right: (&SchemaRef, &[RecordBatch]),
    ) -> Result<Joined, String> {
        let mut fresh = Joined::new(self.plan.clone());
        for (side, (schema, batches)) in [("left", left), ("right", right)] {
            for batch in batches {
                check_columns(schema, &batch.schema()).map_err(|e| format!("{side} rows: {e}"))?;
                for name in [WINDOW_START, WINDOW_END] {
                    if batch
                        .column_by_name(name)
                        .is_none_or(|c| c.null_count() > 0)
                    {
                        return Err(format!("{side} rows without {name}"));
                    }
                }
            }
            let view = if side == "left" {
                self.plan.left.clone()
            } else {
                self.plan.right.clone()
            };
            fresh.buffer(&view, batches).map_err(|e| e.to_string())?;
        }
        Ok(fresh)
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
                    self.waiting += part.num_rows();
                    pending.left.push(part.clone());
                }
                if right && !left {
                    self.waiting += part.num_rows();
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
                self.waiting -= p.rows();
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
        self.waiting
    }
}

impl Pending {
    fn rows(&self) -> usize {
        self.left
            .iter()
            .chain(&self.right)
            .map(RecordBatch::num_rows)
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
