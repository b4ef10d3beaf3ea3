//! Continuous views: SQL planned once by DataFusion, kept up to date batch by
//! batch through DataFusion's accumulators, windows closed by event-time
//! watermarks.
//!
//! The engine is driven from outside and never waits on I/O: [`Engine::push`]
//! takes a decoded [`SourceBatch`], [`Engine::tick`] moves idle watermarks
//! with the clock and refreshes running values. Final rows and late rows go
//! to the [`Sink`]s and the [`LiveStore`].

mod error;
mod feed;
mod live;
mod plan;
mod state;
mod view;
mod window;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SessionConfig, SessionContext};
use kpiflow_types::{SourceBatch, Stream};

pub use error::{Error, Position, Result};
pub use live::{IS_FINAL, LiveStore};
pub use plan::{WINDOW_END, WINDOW_START};
pub use view::{LATE_REASON, LATE_WATERMARK, LatePolicy, ViewOptions};
pub use window::WindowSpec;

use crate::feed::Feed;
use crate::plan::{Planned, Planner, Tables};
use crate::view::{Kind, Progress, Run, Windowed};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            out_of_orderness_ms: 5_000,
            live_rows: 50_000,
            late_rows: 10_000,
        }
    }
}

/// Whether rows are a window's final result or events that came too late for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Emit {
    Final,
    Late,
}

/// Where final and late rows go. Called on the engine's task: implementations
/// hand rows on (e.g. into a bounded channel) rather than doing I/O.
pub trait Sink: Send {
    fn write(
        &mut self,
        view: &str,
        kind: Emit,
        rows: &RecordBatch,
    ) -> std::result::Result<(), String>;
}

/// Rows written to a [`MemorySink`], by view and kind.
type EmittedRows = HashMap<(String, Emit), Vec<RecordBatch>>;

/// A sink keeping everything in memory, for tests and the demo.
#[derive(Clone, Default, Debug)]
pub struct MemorySink {
    rows: Arc<Mutex<EmittedRows>>,
}

impl MemorySink {
    /// Everything written for `view` of `kind` so far.
    pub fn batches(&self, view: &str, kind: Emit) -> Vec<RecordBatch> {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(view.to_owned(), kind))
            .cloned()
            .unwrap_or_default()
    }

    pub fn rows(&self, view: &str, kind: Emit) -> usize {
        self.batches(view, kind)
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    }
}

impl Sink for MemorySink {
    fn write(
        &mut self,
        view: &str,
        kind: Emit,
        rows: &RecordBatch,
    ) -> std::result::Result<(), String> {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((view.to_owned(), kind))
            .or_default()
            .push(rows.clone());
        Ok(())
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

/// A view file: leading `--` comment lines describe it; lines `-- @name value`
/// set options (`out_of_orderness 10s`, `late table|drop`); the rest is the SELECT.
pub fn parse_view_file(name: &str, text: &str) -> Result<(String, ViewOptions, String)> {
    let mut description = Vec::new();
    let mut options = ViewOptions::default();
    let mut body = Vec::new();
    let mut in_header = true;
    for line in text.lines() {
        let trimmed = line.trim();
        if in_header && let Some(comment) = trimmed.strip_prefix("--") {
            let comment = comment.trim();
            if let Some(setting) = comment.strip_prefix('@') {
                let (key, value) = setting
                    .split_once(char::is_whitespace)
                    .unwrap_or((setting, ""));
                let value = value.trim();
                let bad = |message: String| Error::Option {
                    view: name.to_owned(),
                    option: key.to_owned(),
                    message,
                };
                match key {
                    "out_of_orderness" => {
                        let d = humantime::parse_duration(value).map_err(|e| {
                            bad(format!(
                                "`{value}` is not a duration ({e}); write e.g. 5s or 2min"
                            ))
                        })?;
                        options.out_of_orderness_ms = Some(d.as_millis() as i64);
                    }
                    "late" => {
                        options.late = match value {
                            "table" => LatePolicy::Table,
                            "drop" => LatePolicy::Drop,
                            other => {
                                return Err(bad(format!("`{other}`: expected `table` or `drop`")));
                            }
                        }
                    }
                    other => {
                        return Err(bad(format!(
                            "unknown option `{other}`: expected out_of_orderness or late"
                        )));
                    }
                }
            } else {
                description.push(comment.to_owned());
            }
            continue;
        }
        if !trimmed.is_empty() {
            in_header = false;
        }
        if !in_header {
            body.push(line);
        }
    }
    let sql = body
        .join("\n")
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_owned();
    Ok((description.join(" ").trim().to_owned(), options, sql))
}

/// Where one source partition stands.
#[derive(Debug, Clone, Copy, Default)]
struct PartitionState {
    max_event_time: Option<i64>,
    idle: bool,
}

struct RunningView {
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
    partitions: BTreeMap<String, BTreeMap<i32, PartitionState>>,
    sinks: Vec<Box<dyn Sink>>,
}

struct Catalog<'a> {
    views: &'a [RunningView],
}

impl Tables for Catalog<'_> {
    fn is_stream(&self, name: &str) -> bool {
        Stream::ALL.iter().any(|s| s.name() == name)
    }

    fn is_view(&self, name: &str) -> bool {
        self.views.iter().any(|v| v.info.name == name)
    }

    fn is_windowed_view(&self, name: &str) -> bool {
        self.views.iter().any(|v| {
            v.info.name == name
                && !matches!(v.kind, Kind::Stateless(_))
                && v.info.schema.column_with_name(WINDOW_START).is_some()
                && v.info.schema.column_with_name(WINDOW_END).is_some()
        })
    }
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
        let feed = Feed::default();
        for stream in Stream::ALL {
            let table = feed
                .table(stream.name(), stream.source_schema())
                .map_err(|e| Error::Name(e.to_string()))?;
            ctx.register_table(stream.name(), Arc::new(table))
                .map_err(|e| Error::Name(e.to_string()))?;
        }
        let live_schema = Arc::new(MemorySchemaProvider::new());
        ctx.catalog("datafusion")
            .expect("default catalog")
            .register_schema(LIVE_SCHEMA, live_schema.clone())
            .map_err(|e| Error::Name(e.to_string()))?;
        Ok(Engine {
            config,
            ctx,
            feed,
            live: LiveStore::default(),
            live_schema,
            views: Vec::new(),
            references: Vec::new(),
            partitions: BTreeMap::new(),
            sinks: Vec::new(),
        })
    }

    /// The SQL context: streams, reference tables, `live.<view>` tables.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn live(&self) -> LiveStore {
        self.live.clone()
    }

    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    fn check_free(&self, name: &str) -> Result<()> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(Error::Name(format!(
                "`{name}` is not a valid name: use lower-case letters, digits and _, not starting with a digit"
            )));
        }
        if Stream::ALL.iter().any(|s| s.name() == name)
            || self.references.iter().any(|r| r == name)
            || self.views.iter().any(|v| v.info.name == name)
        {
            return Err(Error::Name(format!(
                "a table or view named `{name}` already exists"
            )));
        }
        Ok(())
    }

    /// Registers a reference table from rows.
    pub fn register_reference(&mut self, name: &str, batches: Vec<RecordBatch>) -> Result<()> {
        self.check_free(name)?;
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| Error::Reference {
                table: name.to_owned(),
                message: "no rows".into(),
            })?;
        let table = MemTable::try_new(schema, vec![batches]).map_err(|e| Error::Reference {
            table: name.to_owned(),
            message: e.to_string(),
        })?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| Error::Reference {
                table: name.to_owned(),
                message: e.to_string(),
            })?;
        self.references.push(name.to_owned());
        Ok(())
    }

    /// Registers a reference table from CSV text with a header row; column
    /// types are inferred.
    pub fn register_reference_csv(&mut self, name: &str, csv: &str) -> Result<()> {
        let bad = |message: String| Error::Reference {
            table: name.to_owned(),
            message,
        };
        let format = datafusion::arrow::csv::reader::Format::default().with_header(true);
        let (schema, _) = format
            .infer_schema(std::io::Cursor::new(csv.as_bytes()), None)
            .map_err(|e| bad(format!("cannot infer columns: {e}")))?;
        let reader = datafusion::arrow::csv::ReaderBuilder::new(Arc::new(schema))
            .with_format(format)
            .build(std::io::Cursor::new(csv.as_bytes()))
            .map_err(|e| bad(e.to_string()))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        self.register_reference(name, batches)
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
                let w = Windowed::new(plan).map_err(|e| Error::Plan {
                    view: name.to_owned(),
                    message: error::plan_message(&e),
                })?;
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
            .map_err(|e| Error::Name(e.to_string()))?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| Error::Name(e.to_string()))?;
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
            .map_err(|e| Error::Name(e.to_string()))?;
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
        let v = self.views.iter().find(|v| v.info.name == view)?;
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
        })
    }

    /// The view's watermark (epoch ms), once known.
    pub fn watermark(&self, view: &str) -> Option<i64> {
        self.views
            .iter()
            .find(|v| v.info.name == view)
            .and_then(|v| v.progress.watermark)
    }

    fn emit(&mut self, view: &str, kind: Emit, batches: &[RecordBatch]) -> Result<()> {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if let Some(v) = self.views.iter_mut().find(|v| v.info.name == view) {
            match kind {
                Emit::Final => v.counts.final_rows += rows,
                Emit::Late => v.counts.late_rows += rows,
            }
        }
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            for sink in &mut self.sinks {
                sink.write(view, kind, batch).map_err(Error::Sink)?;
            }
        }
        let table = match kind {
            Emit::Final => view.to_owned(),
            Emit::Late => format!("{view}{LATE_SUFFIX}"),
        };
        self.live
            .push_final(&table, batches)
            .map_err(|e| run_error(view, e))?;
        if kind == Emit::Final {
            for v in &mut self.views {
                if let Kind::Joined(j) = &mut v.kind
                    && (j.plan.left == view || j.plan.right == view)
                {
                    j.buffer(view, batches)
                        .map_err(|e| run_error(&v.info.name, e))?;
                }
            }
        }
        Ok(())
    }

    /// Takes one decoded batch: its rows into every view reading the stream,
    /// then its partition progress into the watermarks, closing windows.
    pub async fn push(&mut self, batch: &SourceBatch) -> Result<()> {
        let stream = batch.stream.name();
        let task = self.ctx.task_ctx();
        for i in 0..self.views.len() {
            if batch.rows.num_rows() == 0 {
                break;
            }
            if !view::stream_inputs(&self.views[i].kind).contains(stream) {
                continue;
            }
            let name = self.views[i].info.name.clone();
            metrics::counter!("kpiflow_engine_rows_in_total", "view" => name.clone())
                .increment(batch.rows.num_rows() as u64);
            let (lower, policy) = match &self.views[i].kind {
                Kind::Windowed(w) => (&w.plan.lower, self.views[i].info.options.late),
                Kind::Stateless(s) => (&s.plan, LatePolicy::Drop),
                Kind::Joined(_) => continue,
            };
            let rows = Run::new(lower, vec![(stream, vec![batch.rows.clone()])])
                .execute(&self.feed, &task)
                .await
                .map_err(|e| run_error(&name, e))?;
            let closed = self.views[i].progress.watermark;
            match &mut self.views[i].kind {
                Kind::Joined(_) => {}
                Kind::Stateless(_) => self.emit(&name, Emit::Final, &rows)?,
                Kind::Windowed(w) => {
                    let mut late = Vec::new();
                    for b in &rows {
                        if let Some(l) = w.update(b, closed).map_err(|e| run_error(&name, e))? {
                            late.push(l);
                        }
                    }
                    let late_rows: usize = late.iter().map(RecordBatch::num_rows).sum();
                    if late_rows > 0 {
                        let action = match policy {
                            LatePolicy::Table => "table",
                            LatePolicy::Drop => "drop",
                        };
                        metrics::counter!("kpiflow_engine_late_rows_total", "view" => name.clone(), "action" => action)
                            .increment(late_rows as u64);
                        if policy == LatePolicy::Table {
                            self.emit(&name, Emit::Late, &late)?;
                        } else {
                            self.views[i].counts.late_dropped += late_rows as u64;
                        }
                    }
                }
            }
        }
        let parts = self.partitions.entry(stream.to_owned()).or_default();
        let held: BTreeMap<i32, PartitionState> = batch
            .partitions
            .iter()
            .map(|p| {
                // `None` orders before any time, so `max` keeps the latest known.
                let before = parts.get(&p.partition).and_then(|s| s.max_event_time);
                (
                    p.partition,
                    PartitionState {
                        max_event_time: before.max(p.max_event_time_ms),
                        idle: p.idle,
                    },
                )
            })
            .collect();
        *parts = held;
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
                DataWatermark::AllIdle(_) => {}
            }
        }
        Ok(())
    }

    fn data_watermark(&self, i: usize) -> DataWatermark {
        let view = &self.views[i];
        let mut min: Option<i64> = None;
        let mut max: Option<i64> = None;
        let mut any_active = false;
        for stream in view::stream_inputs(&view.kind) {
            let Some(parts) = self.partitions.get(stream) else {
                continue;
            };
            for p in parts.values() {
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
        if any_active {
            DataWatermark::At(min.expect("active partitions have times") - view.out_of_orderness)
        } else {
            DataWatermark::AllIdle(max.map(|m| m - view.out_of_orderness))
        }
    }

    /// Moves the view's watermark to `to` if that is later, emitting the
    /// windows it closes.
    async fn advance(&mut self, i: usize, to: i64) -> Result<()> {
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
                .map_err(|e| run_error(&name, e))?;
            self.emit(&name, Emit::Final, &rows)?;
        }
        Ok(())
    }

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
        let closed = w.close(from, to).map_err(|e| run_error(&name, e))?;
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
            .map_err(|e| run_error(&name, e))?
            .execute(&self.feed, &self.ctx.task_ctx())
            .await
            .map_err(|e| run_error(&name, e))?;
        self.emit(&name, Emit::Final, &rows)
    }

    /// Advances the watermarks of views whose input is all idle with the clock
    /// (`now_ms`, epoch ms), then refreshes the running values of open windows.
    pub async fn tick(&mut self, now_ms: i64) -> Result<()> {
        for i in 0..self.views.len() {
            match self.data_watermark(i) {
                DataWatermark::AllIdle(Some(base)) => {
                    let progress = &mut self.views[i].progress;
                    let (since, base) = *progress.idle_since.get_or_insert((now_ms, base));
                    let to = base + (now_ms - since).max(0);
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
            let rows = run
                .map_err(|e| run_error(&name, e))?
                .execute(&self.feed, &task)
                .await
                .map_err(|e| run_error(&name, e))?;
            self.live
                .set_running(&name, &rows)
                .map_err(|e| run_error(&name, e))?;
        }
        Ok(())
    }

    /// The engine's state: source progress, watermarks and every open
    /// window's partial aggregates, as record batches. The engine goes on
    /// unchanged.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let mut entries = Vec::new();
        let (mut streams, mut partitions, mut maxes, mut idles) = (vec![], vec![], vec![], vec![]);
        for (stream, parts) in &self.partitions {
            for (p, s) in parts {
                streams.push(stream.clone());
                partitions.push(*p);
                maxes.push(s.max_event_time);
                idles.push(s.idle);
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("stream", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("max_event_time", DataType::Int64, true),
            Field::new("idle", DataType::Boolean, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(streams)),
            Arc::new(Int32Array::from(partitions)),
            Arc::new(Int64Array::from(maxes)),
            Arc::new(BooleanArray::from(idles)),
        ];
        entries.push((
            SNAPSHOT_PARTITIONS.to_owned(),
            RecordBatch::try_new(schema, columns).map_err(|e| Error::Restore(e.to_string()))?,
        ));
        let view_schema = Arc::new(Schema::new(vec![
            Field::new("view", DataType::Utf8, false),
            Field::new("sql", DataType::Utf8, false),
            Field::new("watermark", DataType::Int64, true),
        ]));
        let mut names = Vec::new();
        let mut sqls = Vec::new();
        let mut watermarks = Vec::new();
        for view in &mut self.views {
            names.push(view.info.name.clone());
            sqls.push(view.info.sql.clone());
            watermarks.push(view.progress.watermark);
            if let Kind::Windowed(w) = &mut view.kind {
                let batches = w.snapshot().map_err(|e| run_error(&view.info.name, e))?;
                if let Some(first) = batches.first() {
                    let all = concat_batches(&first.schema(), &batches)
                        .map_err(|e| Error::Restore(e.to_string()))?;
                    entries.push((view.info.name.clone(), all));
                }
            }
            if let Kind::Joined(j) = &view.kind {
                let (left, right) = j.snapshot();
                for (side, batches) in [("left", left), ("right", right)] {
                    for batch in batches {
                        entries.push((format!("{}{JOIN_SIDE}{side}", view.info.name), batch));
                    }
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(sqls)),
            Arc::new(Int64Array::from(watermarks)),
        ];
        entries.push((
            SNAPSHOT_VIEWS.to_owned(),
            RecordBatch::try_new(view_schema, columns)
                .map_err(|e| Error::Restore(e.to_string()))?,
        ));
        Ok(Snapshot { entries })
    }

    /// Restores a snapshot into an engine with the same views and no input yet.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let bad = |m: &str| Error::Restore(m.to_owned());
        let get = |name: &str| {
            snapshot
                .entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b)
                .ok_or_else(|| bad(&format!("the snapshot has no `{name}` entry")))
        };
        let parts = get(SNAPSHOT_PARTITIONS)?;
        let views = get(SNAPSHOT_VIEWS)?;
        let col = |b: &RecordBatch, i: usize| b.column(i).clone();
        let strings = |a: ArrayRef| a.as_any().downcast_ref::<StringArray>().cloned();
        let (Some(names), Some(sqls), Some(watermarks)) = (
            strings(col(views, 0)),
            strings(col(views, 1)),
            col(views, 2).as_any().downcast_ref::<Int64Array>().cloned(),
        ) else {
            return Err(bad("malformed view entry"));
        };
        if names.len() != self.views.len() {
            return Err(bad(&format!(
                "the snapshot has {} views, this engine {}: create the same views before restoring",
                names.len(),
                self.views.len()
            )));
        }
        for row in 0..names.len() {
            let name = names.value(row);
            let view = self
                .views
                .iter_mut()
                .find(|v| v.info.name == name)
                .ok_or_else(|| {
                    bad(&format!(
                        "view `{name}` is in the snapshot but not in this engine"
                    ))
                })?;
            if view.info.sql != sqls.value(row) {
                return Err(bad(&format!(
                    "view `{name}` has changed since the snapshot; its state cannot be reused"
                )));
            }
            view.progress = Progress {
                watermark: (!watermarks.is_null(row)).then(|| watermarks.value(row)),
                idle_since: None,
            };
            if let Kind::Joined(j) = &mut view.kind {
                for (side, input) in [
                    ("left", j.plan.left.clone()),
                    ("right", j.plan.right.clone()),
                ] {
                    let key = format!("{name}{JOIN_SIDE}{side}");
                    let batches: Vec<RecordBatch> = snapshot
                        .entries
                        .iter()
                        .filter(|(n, _)| *n == key)
                        .map(|(_, b)| b.clone())
                        .collect();
                    j.buffer(&input, &batches).map_err(|e| run_error(name, e))?;
                }
            }
            if let Kind::Windowed(w) = &mut view.kind {
                let batches: Vec<RecordBatch> = snapshot
                    .entries
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, b)| b.clone())
                    .collect();
                w.restore(&batches).map_err(|e| run_error(name, e))?;
            }
        }
        let (Some(streams), Some(partitions), Some(maxes), Some(idles)) = (
            strings(col(parts, 0)),
            col(parts, 1).as_any().downcast_ref::<Int32Array>().cloned(),
            col(parts, 2).as_any().downcast_ref::<Int64Array>().cloned(),
            col(parts, 3)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned(),
        ) else {
            return Err(bad("malformed partition entry"));
        };
        self.partitions.clear();
        for row in 0..streams.len() {
            self.partitions
                .entry(streams.value(row).to_owned())
                .or_default()
                .insert(
                    partitions.value(row),
                    PartitionState {
                        max_event_time: (!maxes.is_null(row)).then(|| maxes.value(row)),
                        idle: idles.value(row),
                    },
                );
        }
        Ok(())
    }
}

const SNAPSHOT_PARTITIONS: &str = "__partitions";
const SNAPSHOT_VIEWS: &str = "__views";
/// Separates a joined view's name from the side in its snapshot entries.
const JOIN_SIDE: &str = "#";

/// Engine state as named record batches (see [`Engine::snapshot`]).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub entries: Vec<(String, RecordBatch)>,
}

enum DataWatermark {
    /// Minimum over active partitions, minus the out-of-orderness.
    At(i64),
    /// An active partition has no event yet.
    Held,
    /// Every partition is idle; the latest event time minus the out-of-orderness.
    AllIdle(Option<i64>),
}

fn run_error(view: &str, source: datafusion::error::DataFusionError) -> Error {
    Error::Run {
        view: view.to_owned(),
        source,
    }
}
