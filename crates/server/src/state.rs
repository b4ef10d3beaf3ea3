//! What the handlers share: the server's settings, what the pipeline gives
//! it to read (views, live rows, progress, the data location), the
//! dashboards' feeds and the SQL catalog.

use std::sync::Arc;
use std::time::Duration;

use datafusion::catalog::TableProvider;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use kpiflow_engine::{LiveStore, ViewInfo};
use kpiflow_pipeline::Progress;
use kpiflow_storage::DataLocation;

use crate::answers::Answers;
use crate::auth::{Auth, Token};
use crate::dashboards::{Dashboard, Feeds};
use crate::sql::SqlService;

/// How the server behaves; `kpiflow run`'s `[server]` section.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// None: auth off (every route open).
    pub tokens: Vec<Token>,
    /// Longest a SQL query may run before it is cancelled.
    pub sql_timeout: Duration,
    /// Memory the SQL API's queries may use together (bytes).
    pub sql_memory_limit: usize,
    /// Threads the SQL API's queries run on (at a lower priority than the
    /// pipeline's).
    pub sql_threads: usize,
    /// Rows a SQL or views API answer holds at most.
    pub max_rows: usize,
    /// Frames kept for SSE clients; one further behind gets a fresh snapshot.
    pub sse_buffer: usize,
    /// Keep-alive comments on idle SSE streams.
    pub keep_alive: Duration,
    /// A panel whose data has not changed this long is marked stale.
    pub stale_after: Duration,
    /// The pipeline's checkpoint interval (for `/readyz`).
    pub checkpoint_interval: Option<Duration>,
    /// Dashboards from this directory instead of the built-in ones.
    pub dashboards_dir: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            tokens: Vec::new(),
            sql_timeout: Duration::from_secs(30),
            sql_memory_limit: 512 << 20,
            sql_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_rows: 100_000,
            sse_buffer: 16,
            keep_alive: Duration::from_secs(15),
            stale_after: Duration::from_secs(60),
            checkpoint_interval: None,
            dashboards_dir: None,
        }
    }
}

/// Whether the pipeline is ready, as `/readyz` reports it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Kafka partitions this process holds.
    pub partitions: usize,
}

/// Asked at every `/readyz`: the pipeline's side of readiness.
pub type ReadyCheck = Arc<dyn Fn() -> Readiness + Send + Sync>;

/// What the pipeline gives the server to read.
#[derive(Clone)]
pub struct Sources {
    pub views: Vec<ViewInfo>,
    pub live: LiveStore,
    pub progress: watch::Receiver<Progress>,
    /// Where the tables are (history, the SQL catalog).
    pub location: DataLocation,
    /// Reference tables, queryable by name.
    pub references: Vec<(String, Arc<dyn TableProvider>)>,
    pub ready: ReadyCheck,
}

/// Shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: ServerConfig,
    pub auth: Auth,
    pub sources: Sources,
    pub dashboards: Vec<Dashboard>,
    pub feeds: Feeds,
    pub sql: SqlService,
    /// The views API's answers of this tick.
    pub answers: Answers,
    /// Cancelled at shutdown: open SSE streams end.
    pub shutdown: CancellationToken,
    pub started: std::time::Instant,
}

impl AppState {
    /// Checks the dashboards against the views and prepares the feeds.
    /// `shutdown` ends every open stream when cancelled.
    pub fn new(
        config: ServerConfig,
        sources: Sources,
        shutdown: CancellationToken,
    ) -> Result<AppState, String> {
        let dashboards = crate::dashboards::load(config.dashboards_dir.as_deref(), &sources.views)?;
        let feeds = Feeds::new(&dashboards, &sources, &config);
        let sql = SqlService::new(&sources, &config)
            .map_err(|e| format!("cannot start the threads SQL queries run on: {e}"))?;
        Ok(AppState {
            inner: Arc::new(Inner {
                auth: Auth::new(config.tokens.clone()),
                config,
                sources,
                dashboards,
                feeds,
                sql,
                answers: Answers::default(),
                shutdown,
                started: std::time::Instant::now(),
            }),
        })
    }

    /// Starts computing the watched dashboards at every tick, until
    /// `cancel` (`serve` does; a test driving `app` with `oneshot` may).
    pub fn spawn_feeds(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.inner.feeds.clone().run(cancel))
    }

    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub fn dashboards(&self) -> &[Dashboard] {
        &self.inner.dashboards
    }

    /// The analysts' SQL service (catalog, limits, query threads), for other
    /// front ends over the same catalog (the Postgres wire protocol).
    pub fn sql(&self) -> &SqlService {
        &self.inner.sql
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }
}
