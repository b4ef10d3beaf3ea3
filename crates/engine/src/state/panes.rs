//! Pane windows (tumble, hop, date_bin): a window is `per_window`
//! consecutive panes of one slide, each pane a [`Groups`] of its rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::common::Result as DfResult;

use super::groups::{Evaluated, Frozen, Groups};
use super::{Input, Template, WindowRows};
use crate::window::{Panes, in_time_range};

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
            if panes.null_count() > 0 {
                return Err(datafusion::common::DataFusionError::Plan(
                    "a pane without start".into(),
                ));
            }
            let distinct: BTreeSet<i64> = panes.values().iter().copied().collect();
            if let Some(bad) = distinct
                .iter()
                .find(|&&p| !in_time_range(p) || self.layout.pane_of(p) != p)
            {
                return Err(datafusion::common::DataFusionError::Plan(format!(
                    "pane start {bad} is not a pane of this view's window"
                )));
            }
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
