//! Continuous views: SQL planned once by DataFusion, kept up to date batch by
//! batch through DataFusion's accumulators, windows closed by event-time
//! watermarks.
//!
//! The engine is driven from outside and never waits on I/O: [`Engine::push`]
//! takes a decoded [`SourceBatch`], [`Engine::tick`] moves idle watermarks
//! with the clock and refreshes running values. Final and late rows go to
//! the [`LiveStore`] and to an outbox the caller drains with
//! [`Engine::take_output`] after each call, to hand them to its sinks.
//!
//! Files: `view_file.rs` (view files and their options), `catalog.rs` (names
//! and reference tables), `plan.rs` (SQL → the parts the engine runs),
//! `window.rs` (window kinds and their arithmetic), `view/` (one running
//! view), `state/` (accumulator state of open windows), `watermark.rs`,
//! `snapshot.rs` (state out and back in), `feed.rs` (how plans read their
//! input), `live.rs` (the live tables), `error.rs`; `batch/` is the batch
//! formulation of views that `verify` checks the stored rows against.

pub mod batch;
mod catalog;
mod error;
mod feed;
mod live;
mod plan;
mod snapshot;
mod state;
mod view;
mod view_file;
mod watermark;
mod window;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::execution::context::{SessionConfig, SessionContext};
use kpiflow_types::{SourceBatch, Stream};

pub use error::{Error, ErrorClass, Position, Result};
pub use kpiflow_types::{Emit, Snapshot, ViewRows};
pub use live::{IS_FINAL, LiveStore};
pub use plan::{WINDOW_END, WINDOW_START};
pub use view::{LATE_REASON, LATE_WATERMARK, LatePolicy, ViewOptions};
pub use view_file::{MAX_OUT_OF_ORDERNESS_MS, parse_view_file};
pub use window::{MAX_EVENT_TIME_MS, MAX_WINDOW_MS, MIN_EVENT_TIME_MS, WindowSpec};

use crate::catalog::Catalog;
use crate::feed::{Feed, Run};
use crate::plan::{Planned, Planner};
use crate::view::windowed::{Update, check_columns};
use crate::view::{Kind, Progress, Windowed};
use crate::watermark::{DataWatermark, Partitions};

/// Suffix of a view's late-events table.
pub const LATE_SUFFIX: &str = "__late";
/// Schema of the live tables in the engine's SQL context.
pub const LIVE_SCHEMA: &str = "live";

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Allowed out-of-orderness of views that do not set their own.
    pub out_of_orderness_ms: i64,
    /// Final rows each view keeps in the live store.
    pub live_rows: usize,
    /// Late rows each view keeps in the live store.
    pub late_rows: usize,
    /// Rows a join of two views keeps waiting for the other side's windows;
    /// beyond it the oldest windows' rows are dropped, counted and logged.
    pub join_pending_rows: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            out_of_orderness_ms: 5_000,
            live_rows: 50_000,
            late_rows: 10_000,
            join_pending_rows: 1_000_000,
        }
    }
}

/// A view's state as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewStats {
    pub open_groups: usize,
    pub state_bytes: usize,
    pub watermark: Option<i64>,
    /// Final rows emitted since the engine started.
    pub final_rows: u64,
    /// Late rows written to the late table since the engine started.
    pub late_rows: u64,
    /// Late rows dropped (the view's `late drop` option) since the engine started.
    pub late_dropped: u64,
    /// Rows of a join of two views dropped because too many waited.
    pub join_dropped: u64,
    /// The newest event time (epoch ms) of the view's input streams; for a
    /// join of two views, the older of its inputs' newest.
    pub newest_event_ms: Option<i64>,
}

/// A view as the engine reports it.
#[derive(Debug, Clone)]
pub struct ViewInfo {
    pub name: String,
    pub description: String,
    pub sql: String,
    /// The window, for windowed views.
    pub window: Option<WindowSpec>,
    pub schema: SchemaRef,
    pub options: ViewOptions,
}

/// Where one source partition's reading stands, as of the engine's last batch.
pub use kpiflow_types::SourcePosition;

pub(crate) struct RunningView {
    info: ViewInfo,
    kind: Kind,
    progress: Progress,
    out_of_orderness: i64,
    counts: Counts,
}

/// Rows a view has emitted or dropped.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    final_rows: u64,
    late_rows: u64,
    late_dropped: u64,
    join_dropped: u64,
}

/// A view's share of a batch, evaluated and not yet applied.
enum Prepared {
    Windowed(Vec<Update>),
    Stateless(Vec<RecordBatch>),
}

/// The continuous views of one worker.
pub struct Engine {
    config: EngineConfig,
    ctx: SessionContext,
    feed: Feed,
    live: LiveStore,
    live_schema: Arc<MemorySchemaProvider>,
    views: Vec<RunningView>,
    references: Vec<String>,
    partitions: Partitions,
    /// Rows emitted since the last [`Engine::take_output`].
    outbox: Vec<ViewRows>,
    /// Set by an internal error: the state may be half-applied.
    stopped: Option<String>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine> {
        // One partition: the engine runs plans one batch at a time, and the
        // split around the aggregation expects one aggregation (or one
        // Partial/Final pair) over one input.
        let session = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config(session);
        // count(DISTINCT x) must stay one aggregation for the engine to drive it.
        ctx.remove_optimizer_rule("single_distinct_aggregation_to_group_by");
        for udf in window::udfs() {
            ctx.register_udf(udf);
        }
        let setup = |e| Error::internal("setting up the engine's SQL context", e);
        let feed = Feed::default();
        for stream in Stream::ALL {
            let table = feed
                .table(stream.name(), stream.source_schema())
                .map_err(setup)?;
            ctx.register_table(stream.name(), Arc::new(table))
                .map_err(setup)?;
        }
        let live_schema = Arc::new(MemorySchemaProvider::new());
        ctx.catalog("datafusion")
            .expect("default catalog")
            .register_schema(LIVE_SCHEMA, live_schema.clone())
            .map_err(setup)?;
        Ok(Engine {
            config,
            ctx,
            feed,
            live: LiveStore::default(),
            live_schema,
            views: Vec::new(),
            references: Vec::new(),
            partitions: BTreeMap::new(),
            outbox: Vec::new(),
            stopped: None,
        })
    }

    /// The SQL context: streams, reference tables, `live.<view>` tables.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn live(&self) -> LiveStore {
        self.live.clone()
    }

    /// Final and late rows emitted since the last call, in order. Drain it
    /// after every `push` and `tick`: it holds at most what one call emitted.
    pub fn take_output(&mut self) -> Vec<ViewRows> {
        std::mem::take(&mut self.outbox)
    }

    /// Where each source partition's reading stands: everything before
    /// `next_offset` is in the engine's state (or its output) already.
    pub fn source_positions(&self) -> Vec<SourcePosition> {
        // A partition whose position the source did not know yet (-1) has
        // none to resume from: nothing of it was read.
        self.partitions
            .iter()
            .flat_map(|(stream, parts)| {
                parts
                    .iter()
                    .filter(|(_, p)| p.next_offset >= 0)
                    .map(|(&partition, p)| SourcePosition {
                        stream: stream.clone(),
                        partition,
                        next_offset: p.next_offset,
                    })
            })
            .collect()
    }

    fn check_running(&self) -> Result<()> {
        match &self.stopped {
            Some(cause) => Err(Error::Stopped(cause.clone())),
            None => Ok(()),
        }
    }

    /// Plans and starts a view from a view file's text (see [`parse_view_file`]).
    pub async fn create_view_file(&mut self, name: &str, text: &str) -> Result<ViewInfo> {
        let (description, options, sql) = parse_view_file(name, text)?;
        self.create_view_with(name, &sql, &description, options)
            .await
    }

    /// Plans and starts a view with default options.
    pub async fn create_view(&mut self, name: &str, sql: &str) -> Result<ViewInfo> {
        self.create_view_with(name, sql, "", ViewOptions::default())
            .await
    }

    pub async fn create_view_with(
        &mut self,
        name: &str,
        sql: &str,
        description: &str,
        options: ViewOptions,
    ) -> Result<ViewInfo> {
        self.check_free(name)?;
        let state = self.ctx.state();
        let planned = Planner {
            view: name,
            sql,
            state: &state,
            tables: &Catalog { views: &self.views },
            feed: &self.feed,
        }
        .plan()
        .await?;
        let (kind, schema, window) = match planned {
            Planned::Windowed(plan) => {
                let schema = plan.upper.schema();
                let spec = plan.spec;
                let w = Windowed::new(plan)
                    .map_err(|e| Error::internal(format!("starting view `{name}`"), e))?;
                (Kind::Windowed(Box::new(w)), schema, Some(spec))
            }
            Planned::Stateless(plan) => {
                let schema = plan.plan.schema();
                (Kind::Stateless(plan), schema, None)
            }
            Planned::Joined(plan) => {
                let schema = plan.plan.schema();
                let window = self
                    .views
                    .iter()
                    .find(|v| v.info.name == plan.left)
                    .and_then(|v| v.info.window);
                (
                    Kind::Joined(Box::new(view::Joined::new(plan))),
                    schema,
                    window,
                )
            }
        };
        // Other views may join this one's final rows, read from the feed.
        let table = self
            .feed
            .table(name, schema.clone())
            .map_err(|e| Error::internal(format!("registering view `{name}`"), e))?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| Error::internal(format!("registering view `{name}`"), e))?;
        let info = ViewInfo {
            name: name.to_owned(),
            description: description.to_owned(),
            sql: sql.to_owned(),
            window,
            schema: schema.clone(),
            options: options.clone(),
        };
        self.live.add(name, &schema, self.config.live_rows);
        self.register_live(name)?;
        if let Kind::Windowed(w) = &kind {
            let late = format!("{name}{LATE_SUFFIX}");
            self.live.add(&late, &w.late_schema, self.config.late_rows);
            self.register_live(&late)?;
        }
        self.views.push(RunningView {
            out_of_orderness: options
                .out_of_orderness_ms
                .unwrap_or(self.config.out_of_orderness_ms),
            info: info.clone(),
            kind,
            progress: Progress::default(),
            counts: Counts::default(),
        });
        Ok(info)
    }

    fn register_live(&self, name: &str) -> Result<()> {
        let table = self.live.table(name).expect("just added");
        self.live_schema
            .register_table(name.to_owned(), table)
            .map_err(|e| Error::internal(format!("registering live table `{name}`"), e))?;
        Ok(())
    }

    /// Stops a view and frees its state.
    pub fn drop_view(&mut self, name: &str) -> Result<()> {
        let at = self
            .views
            .iter()
            .position(|v| v.info.name == name)
            .ok_or_else(|| Error::Name(format!("no view named `{name}`")))?;
        if let Some(user) = self.views.iter().find(|v| match &v.kind {
            Kind::Joined(j) => j.plan.left == name || j.plan.right == name,
            _ => false,
        }) {
            return Err(Error::Name(format!(
                "view `{}` joins `{name}`: drop it first",
                user.info.name
            )));
        }
        self.views.remove(at);
        let _ = self.ctx.deregister_table(name);
        for table in [name.to_owned(), format!("{name}{LATE_SUFFIX}")] {
            self.live.remove(&table);
            let _ = self.live_schema.deregister_table(&table);
        }
        Ok(())
    }

    pub fn views(&self) -> Vec<ViewInfo> {
        self.views.iter().map(|v| v.info.clone()).collect()
    }

    /// Size of a view's state: open groups and bytes held by their
    /// accumulators and keys (DataFusion's own `size()` accounting).
    pub fn stats(&self, view: &str) -> Option<ViewStats> {
        let i = self.views.iter().position(|v| v.info.name == view)?;
        let v = &self.views[i];
        let (open_groups, state_bytes) = match &v.kind {
            Kind::Windowed(w) => (w.open_groups(), w.state_size()),
            Kind::Stateless(_) => (0, 0),
            Kind::Joined(j) => (j.rows_waiting(), 0),
        };
        Some(ViewStats {
            open_groups,
            state_bytes,
            watermark: v.progress.watermark,
            final_rows: v.counts.final_rows,
            late_rows: v.counts.late_rows,
            late_dropped: v.counts.late_dropped,
            join_dropped: v.counts.join_dropped,
            newest_event_ms: self.newest_event_ms(i),
        })
    }

    /// The view's watermark (epoch ms), once known.
    pub fn watermark(&self, view: &str) -> Option<i64> {
        self.views
            .iter()
            .find(|v| v.info.name == view)
            .and_then(|v| v.progress.watermark)
    }

    /// Rows out of a view: counted, into the outbox, the live store and the
    /// joins that read the view.
    fn emit(&mut self, view: &str, kind: Emit, batches: &[RecordBatch]) -> Result<()> {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if let Some(v) = self.views.iter_mut().find(|v| v.info.name == view) {
            match kind {
                Emit::Final => v.counts.final_rows += rows,
                Emit::Late => v.counts.late_rows += rows,
            }
        }
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            self.outbox.push(ViewRows {
                view: view.to_owned(),
                kind,
                rows: batch.clone(),
            });
        }
        let table = match kind {
            Emit::Final => view.to_owned(),
            Emit::Late => format!("{view}{LATE_SUFFIX}"),
        };
        self.live
            .push_final(&table, batches)
            .map_err(|e| Error::internal(format!("live table `{table}`"), e))?;
        if kind == Emit::Final {
            let cap = self.config.join_pending_rows;
            for v in &mut self.views {
                if let Kind::Joined(j) = &mut v.kind
                    && (j.plan.left == view || j.plan.right == view)
                {
                    j.buffer(view, batches).map_err(|e| {
                        Error::internal(format!("view `{}`: joining `{view}`", v.info.name), e)
                    })?;
                    let dropped = j.enforce_cap(cap);
                    if dropped > 0 {
                        v.counts.join_dropped += dropped as u64;
                        metrics::counter!("kpiflow_engine_join_dropped_rows_total", "view" => v.info.name.clone())
                            .increment(dropped as u64);
                        tracing::warn!(
                            view = %v.info.name,
                            dropped,
                            cap,
                            "more rows wait for the other side of the join than the cap allows; the oldest windows' rows were dropped (does one input never close its windows?)"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes one decoded batch: its rows into every view reading the stream,
    /// then its partition progress into the watermarks, closing windows.
    ///
    /// All or nothing: every view's share of the batch is evaluated first,
    /// and an error there ([`Error::Batch`], [`Error::Input`]) leaves every
    /// view as it was. Applying it cannot fail on any input; if it does (a
    /// bug), the engine stops ([`Error::Stopped`]) rather than go on with
    /// views that disagree.
    pub async fn push(&mut self, batch: &SourceBatch) -> Result<()> {
        self.check_running()?;
        let prepared = self.prepare(batch).await?;
        let applied = self.apply(batch, prepared).await;
        self.stop_on_internal(applied)
    }

    fn stop_on_internal<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && e.class() == ErrorClass::Internal
            && self.stopped.is_none()
        {
            tracing::error!(error = %e, "the engine stops");
            self.stopped = Some(e.to_string());
        }
        result
    }

    /// Every view's share of the batch, evaluated; nothing changes. (Takes
    /// `&mut self` only so that the future is `Send`: it holds no view across
    /// an await.)
    async fn prepare(&mut self, batch: &SourceBatch) -> Result<Vec<(usize, Prepared)>> {
        let stream = batch.stream.name();
        let mut prepared = Vec::new();
        if batch.rows.num_rows() == 0 {
            return Ok(prepared);
        }
        check_columns(&batch.stream.source_schema(), &batch.rows.schema()).map_err(|message| {
            Error::Batch {
                stream: stream.to_owned(),
                message,
            }
        })?;
        let task = self.ctx.task_ctx();
        for i in 0..self.views.len() {
            let view = &self.views[i];
            if !view::stream_inputs(&view.kind).contains(stream) {
                continue;
            }
            let name = view.info.name.clone();
            let input = |source| Error::Input {
                view: name.clone(),
                source,
            };
            let run = match &view.kind {
                Kind::Windowed(w) => &w.plan.lower,
                Kind::Stateless(s) => &s.plan,
                Kind::Joined(_) => continue,
            };
            let run = Run::new(run, vec![(stream, vec![batch.rows.clone()])]);
            let rows = run.execute(&self.feed, &task).await.map_err(input)?;
            let view = &self.views[i];
            let share = match &view.kind {
                Kind::Windowed(w) => Prepared::Windowed(
                    rows.iter()
                        .map(|b| w.prepare(b, view.progress.watermark))
                        .collect::<datafusion::common::Result<_>>()
                        .map_err(input)?,
                ),
                _ => Prepared::Stateless(rows),
            };
            prepared.push((i, share));
        }
        Ok(prepared)
    }

    /// Applies a prepared batch to every view, then moves the watermarks.
    async fn apply(&mut self, batch: &SourceBatch, prepared: Vec<(usize, Prepared)>) -> Result<()> {
        for (i, share) in prepared {
            let name = self.views[i].info.name.clone();
            metrics::counter!("kpiflow_engine_rows_in_total", "view" => name.clone())
                .increment(batch.rows.num_rows() as u64);
            let updates = match share {
                Prepared::Stateless(rows) => {
                    self.emit(&name, Emit::Final, &rows)?;
                    continue;
                }
                Prepared::Windowed(updates) => updates,
            };
            let policy = self.views[i].info.options.late;
            let mut late = Vec::new();
            for update in updates {
                if let Kind::Windowed(w) = &mut self.views[i].kind {
                    w.apply(update.target)
                        .map_err(|e| Error::internal(format!("view `{name}`: adding rows"), e))?;
                }
                late.extend(update.late);
            }
            let late_rows: usize = late.iter().map(RecordBatch::num_rows).sum();
            if late_rows > 0 {
                let action = match policy {
                    LatePolicy::Table => "table",
                    LatePolicy::Drop => "drop",
                };
                metrics::counter!("kpiflow_engine_late_rows_total", "view" => name.clone(), "action" => action)
                    .increment(late_rows as u64);
                match policy {
                    LatePolicy::Table => self.emit(&name, Emit::Late, &late)?,
                    LatePolicy::Drop => self.views[i].counts.late_dropped += late_rows as u64,
                }
            }
        }
        self.update_partitions(batch);
        let stream = batch.stream.name();
        for i in 0..self.views.len() {
            if !view::stream_inputs(&self.views[i].kind).contains(stream) {
                continue;
            }
            match self.data_watermark(i) {
                DataWatermark::At(w) => {
                    self.views[i].progress.idle_since = None;
                    self.advance(i, w).await?;
                }
                DataWatermark::Held => self.views[i].progress.idle_since = None,
                DataWatermark::AllIdle(_) | DataWatermark::NoInput => {}
            }
        }
        Ok(())
    }
}
