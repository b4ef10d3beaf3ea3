//! The Postgres port in-process, driven by Debian's `psql` (simple query
//! protocol): token logins, the row limit and the time limit. The catalog
//! is an empty data directory plus a reference table, so every answer is
//! known. Queries through the demo pipeline's tables, psycopg's extended
//! protocol and Grafana's query sequence are `crates/cli/tests/pg_wire.rs`.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kpiflow_engine::{Engine, EngineConfig};
use kpiflow_pg::PgConfig;
use kpiflow_pipeline::Progress;
use kpiflow_server::{Readiness, Role, ServerConfig, Sources, SqlService, Token};
use kpiflow_storage::{DataLocation, StoreOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const HOW_TO_INSTALL: &str =
    "install Debian's postgresql-client (apt-get install postgresql-client; scripts/test does)";

struct Port {
    addr: SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _progress: watch::Sender<Progress>,
}

impl Drop for Port {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn token(name: &str, role: Role) -> Token {
    Token {
        name: name.into(),
        role,
        token: format!("{name}-secret-token-0123456789"),
    }
}

async fn port(tokens: Vec<Token>, config: ServerConfig, max_rows: usize) -> Port {
    port_with(
        PgConfig {
            tokens,
            max_rows,
            ..PgConfig::default()
        },
        config,
    )
    .await
}

async fn port_with(pg: PgConfig, config: ServerConfig) -> Port {
    let dir = tempfile::tempdir().unwrap();
    let location =
        DataLocation::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    engine
        .register_reference_csv("lines", "line_id,plant\nL1,north\nL2,south\nL3,north\n")
        .unwrap();
    let lines = engine.context().table_provider("lines").await.unwrap();
    let (progress, rx) = watch::channel(Progress::default());
    let sources = Sources {
        views: engine.views(),
        live: engine.live(),
        progress: rx,
        location,
        references: vec![("lines".into(), lines)],
        ready: Arc::new(|| Readiness { partitions: 0 }),
    };
    let sql = SqlService::new(&sources, &config).unwrap();
    let shutdown = CancellationToken::new();
    let (addr, _task) =
        kpiflow_pg::start("127.0.0.1:0".parse().unwrap(), sql, pg, shutdown.clone())
            .await
            .unwrap();
    Port {
        addr,
        shutdown,
        _dir: dir,
        _progress: progress,
    }
}

/// `psql -c sql` as `user` with `password`: (succeeded, stdout, stderr).
async fn psql(addr: SocketAddr, user: &str, password: &str, sql: &str) -> (bool, String, String) {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-U", user, "-d", "kpiflow", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "disable");
    let output = tokio::task::spawn_blocking(move || command.output());
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("psql answered within 60 s")
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run psql: {e}; {HOW_TO_INSTALL}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_open_the_port_to_analysts_only() {
    let analyst = token("grafana", Role::Analyst);
    let viewer = token("wall", Role::Viewer);
    let port = port(
        vec![analyst.clone(), viewer.clone()],
        ServerConfig::default(),
        1000,
    )
    .await;
    let sql = "SELECT plant, count(*) FROM public.lines GROUP BY plant ORDER BY plant";
    let (ok, out, err) = psql(port.addr, "grafana", &analyst.token, sql).await;
    assert!(ok, "the analyst's token: {err}");
    assert_eq!(out, "north|2\nsouth|1");
    let (ok, _, err) = psql(port.addr, "grafana", "not-the-token", sql).await;
    assert!(
        !ok && err
            .to_lowercase()
            .contains("password authentication failed"),
        "{err}"
    );
    let (ok, _, err) = psql(port.addr, "wall", &viewer.token, sql).await;
    assert!(
        !ok && err
            .to_lowercase()
            .contains("password authentication failed"),
        "a viewer's token: {err}"
    );
    let (ok, _, err) = psql(port.addr, "nobody", &analyst.token, sql).await;
    assert!(
        !ok && err
            .to_lowercase()
            .contains("password authentication failed"),
        "another user: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_row_limit_fails_and_names_the_limit() {
    let port = port(Vec::new(), ServerConfig::default(), 3).await;
    let (ok, out, err) = psql(
        port.addr,
        "any",
        "",
        "SELECT line_id FROM lines ORDER BY line_id",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "L1\nL2\nL3");
    let (ok, _, err) = psql(
        port.addr,
        "any",
        "",
        "SELECT a.line_id FROM lines a CROSS JOIN lines b",
    )
    .await;
    assert!(!ok, "9 rows passed a limit of 3");
    assert!(err.contains("more than 3 rows (server.max_rows)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_sql_timeout_is_cancelled_and_the_port_goes_on() {
    let config = ServerConfig {
        sql_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let port = port(Vec::new(), config, 1000).await;
    let (ok, _, err) = psql(
        port.addr,
        "any",
        "",
        "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3",
    )
    .await;
    assert!(!ok, "the query ended on its own");
    assert!(err.contains("SQL timeout of 1 s"), "{err}");
    let (ok, out, err) = psql(port.addr, "any", "", "SELECT 1").await;
    assert!(ok && out == "1", "after a timeout: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_and_a_freed_slot_serves_the_next() {
    let pg = PgConfig {
        max_connections: 1,
        connect_wait: Duration::from_millis(500),
        ..PgConfig::default()
    };
    let port = port_with(pg, ServerConfig::default()).await;
    // A client that connects and says nothing holds the only slot.
    let idle = tokio::net::TcpStream::connect(port.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, _, err) = psql(port.addr, "any", "", "SELECT 1").await;
    assert!(
        !ok,
        "a second connection was served past max_connections = 1"
    );
    assert!(err.contains("closed the connection"), "{err}");
    drop(idle);
    let served = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = psql(port.addr, "any", "", "SELECT 1").await;
        if ok {
            assert_eq!(out, "1");
            break;
        }
        assert!(
            tokio::time::Instant::now() < served,
            "the slot was not freed within 10 s of the idle client leaving: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
