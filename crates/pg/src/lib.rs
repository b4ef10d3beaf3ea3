//! The Postgres wire protocol over the analysts' catalog, for psql, Grafana
//! and BI tools: the only crate that knows it. The tables are those of
//! `/api/sql` (`raw`, `views`, `late`, `deadletters`, `live`, the
//! reference tables in `public`), with `pg_catalog` and
//! `information_schema` for the tools that browse them.
//!
//! datafusion-postgres answers the protocol (both the simple and the
//! extended query path); kpiflow adds what a production port needs:
//! - `hooks`: only queries get through (DDL, DML, COPY and engine settings
//!   are refused on both paths, SQLSTATE 25006), and every statement is
//!   planned against the newest committed catalog.
//! - `limits`: the SQL API's time limit (57014) and row limit (54000) on
//!   each result; its memory limit is the shared query runtime's pool.
//! - `startup`: no auth (loopback, no tokens), or the server's tokens as
//!   passwords: user = the token's name, password = the token, analyst role
//!   or above.
//! - `settings`: `current_setting(name)`, which Grafana asks for the
//!   server version and which datafusion-pg-catalog lacks.
//!
//! Connections run on the SQL service's niced query threads, at most
//! `max_connections` at once, and end at shutdown.

mod hooks;
mod limits;
mod settings;
mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::SessionContext;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::QueryHook;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use kpiflow_server::{Role, SqlService, Token};

use crate::hooks::{CatalogRefresh, ReadOnly};
use crate::limits::Limited;
use crate::startup::Startup;

/// How the Postgres port behaves.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// None: no auth (any user and database connect). Otherwise a client
    /// logs in as a token's name with the token as password.
    pub tokens: Vec<Token>,
    /// Rows one result may hold; a larger one ends in an error.
    pub max_rows: usize,
    /// Connections served at once; one more waits `connect_wait`, then is
    /// closed.
    pub max_connections: usize,
    pub connect_wait: Duration,
}

impl Default for PgConfig {
    fn default() -> PgConfig {
        PgConfig {
            tokens: Vec::new(),
            max_rows: 100_000,
            max_connections: 64,
            connect_wait: Duration::from_secs(5),
        }
    }
}

/// Why the port could not start.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot set up the Postgres catalog: {0}")]
    Catalog(String),
}

/// Everything a connection needs; one per server.
struct Handlers {
    service: Arc<Limited>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// The session every connection plans in: the SQL service's runtime (its
/// memory pool and the tables' stores), `pg_catalog`, `current_setting`;
/// the table schemas are put in by `CatalogRefresh` before each statement.
fn session(sql: &SqlService) -> Result<Arc<SessionContext>, PgError> {
    let ctx =
        SessionContext::new_with_config_rt(kpiflow_storage::session_config(), sql.query_env());
    setup_pg_catalog(&ctx, "kpiflow", EmptyContextProvider)
        .map_err(|e| PgError::Catalog(e.to_string()))?;
    settings::register(&ctx);
    Ok(Arc::new(ctx))
}

/// Serves the protocol on `listener` until `shutdown`; open connections
/// end then too.
pub async fn serve(
    listener: TcpListener,
    sql: SqlService,
    config: PgConfig,
    shutdown: CancellationToken,
) -> Result<(), PgError> {
    let ctx = session(&sql)?;
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(CatalogRefresh::new(sql.clone())),
        Arc::new(ReadOnly),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    let inner = Arc::new(DfSessionService::new_with_hooks(ctx, hooks));
    let connections = Arc::new(ConnectionManager::new());
    let analysts: Vec<Token> = config
        .tokens
        .iter()
        .filter(|t| t.role >= Role::Analyst)
        .cloned()
        .collect();
    let handlers = Arc::new(Handlers {
        service: Arc::new(Limited::new(inner, sql.timeout(), config.max_rows)),
        startup: Arc::new(Startup::new(
            config.tokens.is_empty(),
            analysts,
            connections.clone(),
        )),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let runtime = sql.query_runtime();
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: the next accept may work.
                    tracing::warn!(error = %e, "postgres port: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (handlers, slots, shutdown) = (handlers.clone(), slots.clone(), shutdown.clone());
        let wait = config.connect_wait;
        runtime.spawn(async move {
            let Ok(Ok(_slot)) = tokio::time::timeout(wait, slots.acquire_owned()).await else {
                tracing::warn!(%peer, "postgres port: connection closed, every slot is taken (pg max_connections)");
                return;
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                done = pgwire::tokio::process_socket(socket, None, handlers) => {
                    if let Err(e) = done {
                        tracing::debug!(%peer, error = %e, "postgres connection ended");
                    }
                }
            }
        });
    }
}

/// Binds `addr` and serves on it, as [`serve`]; the address bound (port 0
/// picks one) is returned at once.
pub async fn start(
    addr: SocketAddr,
    sql: SqlService,
    config: PgConfig,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<Result<(), PgError>>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(serve(listener, sql, config, shutdown))))
}
