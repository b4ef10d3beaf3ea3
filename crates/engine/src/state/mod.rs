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
//!
//! `groups.rs`: interned keys and their accumulators; `panes.rs`: pane
//! windows; `sessions.rs`: session windows.

mod groups;
mod panes;
mod sessions;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::GroupsAccumulator;
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

pub(crate) use groups::Evaluated;
pub(crate) use panes::PaneWindows;
pub(crate) use sessions::Sessions;

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

/// A window's evaluated groups.
pub(crate) struct WindowRows {
    pub start: i64,
    pub end: i64,
    pub rows: Evaluated,
}
