//! Event-time watermarks: where each source partition stands, and a view's
//! watermark from its input partitions (the minimum over the active ones of
//! their latest event time, less the view's out-of-orderness; moving with the
//! clock once all of them are idle), and what moving it does: closing
//! windows, releasing joins, and on each tick the running values.

use std::collections::BTreeMap;

use kpiflow_types::{Emit, SourceBatch};

use crate::Engine;
use crate::error::{Error, Result};
use crate::view::Kind;
use crate::view::stream_inputs;
use crate::window::{MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, in_time_range};

/// Where one source partition stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PartitionState {
    /// Latest event time seen, among times the engine can place in windows.
    pub max_event_time: Option<i64>,
    /// Offset of the next record to read: where a restored source resumes.
    pub next_offset: i64,
    pub idle: bool,
}

/// Partitions by stream name.
pub(crate) type Partitions = BTreeMap<String, BTreeMap<i32, PartitionState>>;

pub(crate) enum DataWatermark {
    /// Minimum over active partitions, minus the out-of-orderness.
    At(i64),
    /// An active partition has no event yet.
    Held,
    /// Every partition is idle; the latest event time minus the
    /// out-of-orderness, or `None` when none has seen an event.
    AllIdle(Option<i64>),
    /// The view reads no partition the engine has heard of.
    NoInput,
}

/// Clamps a watermark into the range of times windows can hold.
pub(crate) fn clamp(t: i64) -> i64 {
    t.clamp(MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS)
}

impl Engine {
    /// Takes a batch's partition progress: the partitions listed are the
    /// ones the source holds for the stream now.
    pub(crate) fn update_partitions(&mut self, batch: &SourceBatch) {
        let parts = self
            .partitions
            .entry(batch.stream.name().to_owned())
            .or_default();
        let held: BTreeMap<i32, PartitionState> = batch
            .partitions
            .iter()
            .map(|p| {
                // `None` orders before any time, so `max` keeps the latest
                // known. A time windows cannot hold (a source without the
                // ingest guards) must not move the watermark.
                let known = parts.get(&p.partition);
                let before = known.and_then(|s| s.max_event_time);
                let now = p.max_event_time_ms.filter(|t| in_time_range(*t));
                // A source that does not know a partition's position yet
                // (-1: resumed at an offset, nothing read since) must not
                // erase the one restored from a checkpoint: the next
                // checkpoint would lose where the partition resumes.
                let next_offset = if p.next_offset >= 0 {
                    p.next_offset
                } else {
                    known.map_or(-1, |s| s.next_offset)
                };
                (
                    p.partition,
                    PartitionState {
                        max_event_time: before.max(now),
                        next_offset,
                        idle: p.idle,
                    },
                )
            })
            .collect();
        *parts = held;
    }

    /// The newest event time the view's inputs have seen.
    pub(crate) fn newest_event_ms(&self, i: usize) -> Option<i64> {
        let view = &self.views[i];
        if let Kind::Joined(j) = &view.kind {
            let side = |name: &str| {
                let k = self.views.iter().position(|v| v.info.name == name)?;
                self.newest_event_ms(k)
            };
            return side(&j.plan.left).min(side(&j.plan.right));
        }
        stream_inputs(&view.kind)
            .iter()
            .filter_map(|stream| self.partitions.get(stream))
            .flat_map(|parts| parts.values())
            .filter_map(|p| p.max_event_time)
            .max()
    }

    pub(crate) fn data_watermark(&self, i: usize) -> DataWatermark {
        let view = &self.views[i];
        let mut min: Option<i64> = None;
        let mut max: Option<i64> = None;
        let mut any_active = false;
        let mut any = false;
        for stream in stream_inputs(&view.kind) {
            let Some(parts) = self.partitions.get(stream) else {
                continue;
            };
            for p in parts.values() {
                any = true;
                max = max.max(p.max_event_time);
                if p.idle {
                    continue;
                }
                any_active = true;
                match p.max_event_time {
                    None => return DataWatermark::Held,
                    Some(t) => min = Some(min.map_or(t, |m: i64| m.min(t))),
                }
            }
        }
        let less = |t: i64| clamp(t.saturating_sub(view.out_of_orderness));
        match (any, any_active, min) {
            (false, _, _) => DataWatermark::NoInput,
            (_, true, Some(min)) => DataWatermark::At(less(min)),
            (_, true, None) => DataWatermark::Held,
            (_, false, _) => DataWatermark::AllIdle(max.map(less)),
        }
    }

    /// Moves the view's watermark to `to` if that is later, emitting the
    /// windows it closes.
    pub(crate) async fn advance(&mut self, i: usize, to: i64) -> Result<()> {
        self.close_windows(i, to).await?;
        self.release_joins().await
    }

    /// Joins the windows both inputs of a joined view have made final.
    async fn release_joins(&mut self) -> Result<()> {
        let task = self.ctx.task_ctx();
        for i in 0..self.views.len() {
            let Kind::Joined(j) = &self.views[i].kind else {
                continue;
            };
            let (left, right) = (j.plan.left.clone(), j.plan.right.clone());
            let (Some(l), Some(r)) = (self.watermark(&left), self.watermark(&right)) else {
                continue;
            };
            let to = l.min(r);
            let view = &mut self.views[i];
            if view.progress.watermark.is_some_and(|w| w >= to) {
                continue;
            }
            view.progress.watermark = Some(to);
            let name = view.info.name.clone();
            let Kind::Joined(j) = &mut view.kind else {
                continue;
            };
            let (left_rows, right_rows) = j.ready(to);
            if left_rows.is_empty() && right_rows.is_empty() {
                continue;
            }
            let rows = j
                .join(left_rows, right_rows)
                .execute(&self.feed, &task)
                .await
                .map_err(|e| Error::internal(format!("view `{name}`: joining windows"), e))?;
            self.emit(&name, Emit::Final, &rows)?;
        }
        Ok(())
    }

    /// Closes the windows of view `i` that end by `to`. Work is proportional
    /// to the windows holding state, never to how far the watermark moved.
    async fn close_windows(&mut self, i: usize, to: i64) -> Result<()> {
        let view = &mut self.views[i];
        let from = view.progress.watermark;
        if from.is_some_and(|f| f >= to) {
            return Ok(());
        }
        view.progress.watermark = Some(to);
        let name = view.info.name.clone();
        metrics::gauge!("kpiflow_engine_watermark_ms", "view" => name.clone()).set(to as f64);
        let Kind::Windowed(w) = &mut view.kind else {
            return Ok(());
        };
        let failed = |e| Error::internal(format!("view `{name}`: closing windows"), e);
        let closed = w.close(from, to).map_err(failed)?;
        metrics::gauge!("kpiflow_engine_state_bytes", "view" => name.clone())
            .set(w.state_size() as f64);
        metrics::gauge!("kpiflow_engine_open_groups", "view" => name.clone())
            .set(w.open_groups() as f64);
        if closed.is_empty() {
            return Ok(());
        }
        metrics::counter!("kpiflow_engine_windows_final_total", "view" => name.clone())
            .increment(closed.len() as u64);
        let rows = w
            .output(&closed)
            .map_err(failed)?
            .execute(&self.feed, &self.ctx.task_ctx())
            .await
            .map_err(failed)?;
        self.emit(&name, Emit::Final, &rows)
    }

    /// Advances the watermarks of views whose input is all idle with the clock
    /// (`now_ms`, epoch ms), then refreshes the running values of open windows.
    /// A view whose idle input never had an event moves from `now_ms` less its
    /// out-of-orderness, so that joins waiting on it are released.
    pub async fn tick(&mut self, now_ms: i64) -> Result<()> {
        self.check_running()?;
        let ticked = self.tick_views(now_ms).await;
        self.stop_on_internal(ticked)
    }

    async fn tick_views(&mut self, now_ms: i64) -> Result<()> {
        for i in 0..self.views.len() {
            match self.data_watermark(i) {
                DataWatermark::AllIdle(base) => {
                    let out_of_orderness = self.views[i].out_of_orderness;
                    let base =
                        base.unwrap_or_else(|| clamp(now_ms.saturating_sub(out_of_orderness)));
                    let progress = &mut self.views[i].progress;
                    let (since, base) = *progress.idle_since.get_or_insert((now_ms, base));
                    let to = clamp(base.saturating_add(now_ms.saturating_sub(since).max(0)));
                    self.advance(i, to).await?;
                }
                _ => self.views[i].progress.idle_since = None,
            }
        }
        self.release_joins().await?;
        let task = self.ctx.task_ctx();
        for i in 0..self.views.len() {
            let view = &mut self.views[i];
            let name = view.info.name.clone();
            let run = match &mut view.kind {
                // Running rows of a join: the join of both inputs' running rows.
                Kind::Joined(j) => Ok(j.join(
                    self.live.running(&j.plan.left),
                    self.live.running(&j.plan.right),
                )),
                Kind::Windowed(w) => w
                    .running(view.progress.watermark)
                    .and_then(|open| w.output(&open)),
                Kind::Stateless(_) => continue,
            };
            let failed = |e| Error::internal(format!("view `{name}`: running values"), e);
            let rows = run
                .map_err(failed)?
                .execute(&self.feed, &task)
                .await
                .map_err(failed)?;
            self.live.set_running(&name, &rows).map_err(failed)?;
        }
        Ok(())
    }
}
