//! The analysts' catalog: every committed table (`raw`, `views`, `late`,
//! `deadletters`), the live views (`live.<view>`) and the reference tables,
//! read-only, under a memory limit of its own — a query over it fails
//! while the pipeline goes on. The catalog is reopened once a newer
//! checkpoint has committed more rows.
//!
//! Queries run on threads of their own at a lower CPU priority than the
//! pipeline (`QueryRuntime`): a heavy query gets what the pipeline leaves
//! of the machine, and the pipeline keeps its pace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use tokio::sync::{Mutex, watch};

use kpiflow_engine::LiveStore;
use kpiflow_pipeline::Progress;
use kpiflow_storage::{Catalog, DataLocation, QueryError};

use crate::error::{AppError, Position};
use crate::state::{ServerConfig, Sources};

/// `identifier` as a quoted SQL identifier.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `text` as a SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Rows of one query.
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// More rows were there than the limit.
    pub truncated: bool,
    pub elapsed: Duration,
}

struct Cached {
    epoch: u64,
    catalog: Arc<Catalog>,
}

/// Niceness of the query threads (the pipeline's threads keep 0): under
/// contention Linux gives a nice-10 thread about a tenth of what a
/// nice-0 thread gets.
pub const QUERY_NICENESS: i32 = 10;

/// A Tokio runtime whose threads run the analysts' queries, niced to
/// `QUERY_NICENESS` (on Linux, where niceness is per thread).
pub struct QueryRuntime {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl QueryRuntime {
    pub fn new(threads: usize) -> std::io::Result<QueryRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("kpiflow-sql")
            .on_thread_start(lower_priority)
            .enable_time()
            .build()?;
        Ok(QueryRuntime {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the query runtime lives until dropped")
            .handle()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropped from within the server's own runtime: a blocking shutdown
        // would panic there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{ThreadPriority, ThreadPriorityValue};
        // thread-priority maps 0..=99 onto niceness 19..=-20: 22 is nice 10
        // (`the_query_threads_are_niced` checks it).
        let value = ThreadPriorityValue::try_from(22u8).expect("22 is within 0..=99");
        if let Err(e) =
            thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(value))
        {
            tracing::debug!(error = ?e, niceness = QUERY_NICENESS, "cannot lower the priority of a query thread");
        }
    }
}

/// Aborts a spawned query when the request waiting for it goes away
/// (timeout, or the client hung up).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
pub struct SqlService {
    location: DataLocation,
    live: LiveStore,
    views: Vec<String>,
    references: Vec<(String, Arc<dyn TableProvider>)>,
    memory_limit: usize,
    /// The memory pool every catalog's queries share (`memory_limit`), and
    /// the tables' object stores.
    query_env: Arc<RuntimeEnv>,
    timeout: Duration,
    progress: watch::Receiver<Progress>,
    cached: Arc<Mutex<Option<Cached>>>,
    runtime: Arc<QueryRuntime>,
}

impl SqlService {
    pub fn new(sources: &Sources, config: &ServerConfig) -> std::io::Result<SqlService> {
        Ok(SqlService {
            location: sources.location.clone(),
            live: sources.live.clone(),
            views: sources.views.iter().map(|v| v.name.clone()).collect(),
            references: sources.references.clone(),
            memory_limit: config.sql_memory_limit,
            query_env: kpiflow_storage::limited_runtime(config.sql_memory_limit)
                .map_err(std::io::Error::other)?,
            timeout: config.sql_timeout,
            progress: sources.progress.clone(),
            cached: Arc::new(Mutex::new(None)),
            runtime: Arc::new(QueryRuntime::new(config.sql_threads)?),
        })
    }

    /// The catalog as of the newest checkpoint.
    async fn catalog(&self) -> Result<Arc<Catalog>, AppError> {
        let epoch = self.progress.borrow().epoch;
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.epoch == epoch
        {
            return Ok(c.catalog.clone());
        }
        let catalog = Catalog::open_with_runtime(&self.location, self.query_env.clone())
            .await
            .map_err(|e| AppError::internal("opening the SQL catalog", e))?;
        for view in &self.views {
            if let Some(table) = self.live.table(view) {
                catalog
                    .register("live", view, table)
                    .map_err(|e| AppError::internal("registering a live view", e))?;
            }
        }
        for (name, table) in &self.references {
            catalog
                .register("public", name, table.clone())
                .map_err(|e| AppError::internal("registering a reference table", e))?;
        }
        let catalog = Arc::new(catalog);
        *cached = Some(Cached {
            epoch,
            catalog: catalog.clone(),
        });
        Ok(catalog)
    }

    /// The catalog as of the newest checkpoint, for a front end that plans
    /// and runs queries itself (the Postgres wire protocol): it must run
    /// them on [`SqlService::query_runtime`] with [`SqlService::timeout`],
    /// in sessions on [`SqlService::query_env`] (the memory limit).
    pub async fn newest_catalog(&self) -> Result<Arc<Catalog>, AppError> {
        self.catalog().await
    }

    /// The runtime every catalog's queries run in: its memory pool holds
    /// the SQL memory limit for all of them together.
    pub fn query_env(&self) -> Arc<RuntimeEnv> {
        self.query_env.clone()
    }

    /// The niced threads queries run on.
    pub fn query_runtime(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// Longest a query may run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one read-only query: at most `limit` rows, cancelled after the
    /// timeout. Planning and execution both run on the query runtime, so a
    /// flood of queries (a views API miss is one) takes only what the
    /// pipeline leaves.
    pub async fn run(&self, sql: &str, limit: usize) -> Result<Answer, AppError> {
        let sql = sql.to_owned();
        self.run_with(move |_| sql, limit).await
    }

    /// As [`SqlService::run`], with the statement written against the
    /// catalog it runs on (which tables are committed, say).
    pub async fn run_with(
        &self,
        sql: impl FnOnce(&Catalog) -> String + Send + 'static,
        limit: usize,
    ) -> Result<Answer, AppError> {
        let started = Instant::now();
        let service = self.clone();
        let task = self
            .runtime
            .handle()
            .spawn(async move { service.plan_and_collect(sql, limit).await });
        let _abort = AbortOnDrop(task.abort_handle());
        let (schema, batches) = match tokio::time::timeout(self.timeout, task).await {
            Err(_) => {
                return Err(AppError::Timeout {
                    seconds: self.timeout.as_secs(),
                });
            }
            Ok(Err(e)) => return Err(AppError::internal("running a query", e)),
            Ok(Ok(result)) => result?,
        };
        let (batches, truncated) = cut(batches, limit);
        Ok(Answer {
            schema,
            batches,
            truncated,
            elapsed: started.elapsed(),
        })
    }

    /// On the query runtime: the plan and at most `limit` + 1 rows (one more
    /// than asked tells whether there were more).
    async fn plan_and_collect(
        &self,
        sql: impl FnOnce(&Catalog) -> String,
        limit: usize,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), AppError> {
        let catalog = self.catalog().await?;
        let sql = sql(&catalog);
        let frame = catalog.dataframe(&sql).await.map_err(query_error)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let frame = frame
            .limit(0, Some(limit.saturating_add(1)))
            .map_err(|e| sql_error(&e))?;
        let batches = frame
            .collect()
            .await
            .map_err(|e| self.execution_error(&e))?;
        Ok((schema, batches))
    }

    fn execution_error(&self, e: &DataFusionError) -> AppError {
        if let DataFusionError::ResourcesExhausted(detail) = e.find_root() {
            return AppError::MemoryLimit {
                limit_mib: (self.memory_limit >> 20) as u64,
                detail: detail.clone(),
            };
        }
        sql_error(e)
    }
}

/// The first `limit` rows, and whether there were more.
pub fn cut(batches: Vec<RecordBatch>, limit: usize) -> (Vec<RecordBatch>, bool) {
    let mut out = Vec::new();
    let mut rows = 0;
    let mut truncated = false;
    for batch in batches {
        if rows + batch.num_rows() > limit {
            let take = limit - rows;
            if take > 0 {
                out.push(batch.slice(0, take));
            }
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        out.push(batch);
    }
    (out, truncated)
}

fn query_error(e: QueryError) -> AppError {
    match e {
        QueryError::Refused(_) => AppError::BadRequest {
            code: "sql_refused",
            message: e.to_string(),
            position: None,
        },
        QueryError::Sql(e) => sql_error(&e),
    }
}

/// A SQL error with the position the parser names, if it does.
pub fn sql_error(e: &DataFusionError) -> AppError {
    let message = e.to_string();
    AppError::BadRequest {
        code: "sql_invalid",
        position: position(&message),
        message,
    }
}

/// `… at Line: 1, Column: 8`, as sqlparser writes it.
fn position(message: &str) -> Option<Position> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Position {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::{QUERY_NICENESS, QueryRuntime, position};
    use crate::error::Position;

    /// Field 19 of `/proc/thread-self/stat`: the calling thread's niceness.
    #[cfg(target_os = "linux")]
    fn niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_query_threads_are_niced() {
        let runtime = QueryRuntime::new(2).unwrap();
        let on_query_thread = runtime.handle().spawn(async { niceness() }).await.unwrap();
        assert_eq!(on_query_thread, QUERY_NICENESS);
    }

    #[test]
    fn the_parser_position_is_found() {
        assert_eq!(
            position(
                "SQL error: ParserError(\"Expected: end of statement, found: x at Line: 2, Column: 14\")"
            ),
            Some(Position {
                line: 2,
                column: 14
            })
        );
        assert_eq!(position("no position here"), None);
    }
}
