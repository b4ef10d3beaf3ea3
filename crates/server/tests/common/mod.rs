//! A service over an engine with every shipped view, fed a few minutes of
//! sales: some windows final, the newest running. No pipeline: the test
//! moves the progress channel itself.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use kpiflow_engine::{Engine, EngineConfig};
use kpiflow_pipeline::{Progress, ViewProgress};
use kpiflow_server::{AppState, Readiness, Role, ServerConfig, Sources, Token};
use kpiflow_storage::{DataLocation, StoreOptions};
use kpiflow_tests::sales::{batch, progress, sale, sales_rows};
use kpiflow_types::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// 2026-11-11T00:00:00Z.
pub const T0: i64 = 1_794_355_200_000;

pub struct Fixture {
    pub state: AppState,
    pub engine: Engine,
    pub progress: watch::Sender<Progress>,
    pub shutdown: CancellationToken,
    pub dir: tempfile::TempDir,
}

pub fn tokens() -> Vec<Token> {
    Role::ALL
        .iter()
        .map(|r| Token {
            name: format!("{r}-user"),
            role: *r,
            token: format!("{r}-secret-token"),
        })
        .collect()
}

pub fn token_of(role: Role) -> String {
    format!("{role}-secret-token")
}

/// Every shipped view and reference table, from the repository's `sql/`.
pub async fn engine() -> Engine {
    let sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql");
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let files = |dir: &Path, ext: &str| {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        v.sort();
        v
    };
    let name = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
    for csv in files(&sql.join("reference"), "csv") {
        engine
            .register_reference_csv(&name(&csv), &std::fs::read_to_string(&csv).unwrap())
            .unwrap();
    }
    let mut pending = files(&sql, "sql");
    while !pending.is_empty() {
        let before = pending.len();
        let mut failed = Vec::new();
        for p in pending {
            if engine
                .create_view_file(&name(&p), &std::fs::read_to_string(&p).unwrap())
                .await
                .is_err()
            {
                failed.push(p);
            }
        }
        assert!(failed.len() < before, "cannot create {failed:?}");
        pending = failed;
    }
    engine
}

/// Sales every 10 s for `minutes` from `from`, two channels.
pub async fn feed_sales(engine: &mut Engine, from: i64, minutes: i64, first_offset: i64) {
    let sales: Vec<_> = (0..minutes * 6)
        .map(|i| {
            let channel = if i % 2 == 0 { "online" } else { "retail" };
            sale(from + i * 10_000, 0, "SKU-RC-01", channel, 1 + i % 3, 100.0)
        })
        .collect();
    let last = sales.last().unwrap().t;
    let rows = sales_rows(&sales, first_offset);
    engine
        .push(&batch(
            Stream::Sales,
            rows,
            vec![progress(0, Some(last), false)],
        ))
        .await
        .unwrap();
    engine
        .tick(chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
}

pub fn progress_of(engine: &Engine, tick: u64) -> Progress {
    Progress {
        tick,
        at_ms: chrono::Utc::now().timestamp_millis(),
        views: engine
            .views()
            .into_iter()
            .map(|v| {
                let s = engine.stats(&v.name).unwrap();
                (
                    v.name,
                    ViewProgress {
                        watermark_ms: s.watermark,
                        newest_event_ms: s.newest_event_ms,
                        open_groups: s.open_groups,
                        final_rows: s.final_rows,
                        late_rows: s.late_rows,
                    },
                )
            })
            .collect(),
        epoch: 0,
        checkpoint_at_ms: None,
    }
}

pub async fn fixture_with(config: ServerConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let location =
        DataLocation::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    let mut engine = engine().await;
    feed_sales(&mut engine, T0, 5, 0).await;
    let (tx, rx) = watch::channel(progress_of(&engine, 1));
    let sources = Sources {
        views: engine.views(),
        live: engine.live(),
        progress: rx,
        location,
        references: Vec::new(),
        ready: Arc::new(|| Readiness { partitions: 3 }),
    };
    let shutdown = CancellationToken::new();
    let state = AppState::new(config, sources, shutdown.clone()).unwrap();
    Fixture {
        state,
        engine,
        progress: tx,
        shutdown,
        dir,
    }
}

pub async fn fixture(auth: bool) -> Fixture {
    fixture_with(ServerConfig {
        tokens: if auth { tokens() } else { Vec::new() },
        ..ServerConfig::default()
    })
    .await
}

pub async fn send(state: &AppState, request: Request<Body>) -> Response<Body> {
    kpiflow_server::app(state.clone())
        .oneshot(request)
        .await
        .unwrap()
}

pub async fn body_text(response: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

pub fn post_json(path: &str, json: &serde_json::Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(json.to_string()))
        .unwrap()
}
