//! The analysts' SQL API: read-only (DDL, DML, COPY, SET, file readers
//! refused), a memory limit that fails the query cleanly, a timeout that
//! cancels it, positions in SQL errors, three formats and a row limit.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{body_text, fixture, fixture_with, post_json, send};
use kpiflow_server::ServerConfig;
use serde_json::{Value, json};

async fn sql(f: &common::Fixture, body: Value) -> (StatusCode, Value, String) {
    let response = send(&f.state, post_json("/api/sql", &body)).await;
    let status = response.status();
    let text = body_text(response).await;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

#[tokio::test]
async fn only_reading_is_allowed() {
    let f = fixture(false).await;
    for statement in [
        "CREATE TABLE t (a INT)",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "DROP TABLE live.sales_by_channel_region",
        "INSERT INTO live.sales_by_channel_region VALUES (1)",
        "COPY (SELECT 1) TO '/tmp/kpiflow-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (status, body, _) = sql(&f, json!({ "sql": statement })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{statement}: {body}");
        let code = body["error"]["code"].as_str().unwrap();
        assert!(
            code == "sql_refused" || code == "sql_invalid",
            "{statement}: {body}"
        );
    }
    assert!(!std::path::Path::new("/tmp/kpiflow-copy.csv").exists());
    for reader in [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('/etc/passwd')",
    ] {
        let (status, body, _) = sql(&f, json!({ "sql": reader })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reader}: {body}");
        assert!(
            !body.to_string().contains("root:"),
            "{reader} read the file: {body}"
        );
    }
}

#[tokio::test]
async fn errors_say_where() {
    let f = fixture(false).await;
    let (status, body, _) = sql(
        &f,
        json!({ "sql": "SELECT 1 FROM\n  live.sales_by_channel_region WHERE AND x" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "sql_invalid");
    assert_eq!(body["error"]["position"]["line"], 2, "{body}");
    let (status, body, _) = sql(
        &f,
        json!({ "sql": "SELECT nope FROM live.sales_by_channel_region" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
}

#[tokio::test]
async fn rows_in_three_formats_and_a_limit() {
    let f = fixture(false).await;
    let query = "SELECT channel, sum(net_revenue) AS revenue FROM live.sales_by_channel_region GROUP BY channel ORDER BY channel";
    let (status, body, _) = sql(&f, json!({ "sql": query })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["row_count"], 2);
    assert_eq!(body["rows"][0][0], "online");
    assert_eq!(body["columns"][1]["type"], "number");
    let (_, _, csv) = sql(&f, json!({ "sql": query, "format": "csv" })).await;
    assert_eq!(csv.lines().next(), Some("channel,revenue"));
    assert_eq!(csv.lines().count(), 3);
    let response = send(
        &f.state,
        post_json("/api/sql", &json!({ "sql": query, "format": "arrow" })),
    )
    .await;
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let (_, body, _) = sql(
        &f,
        json!({ "sql": "SELECT * FROM generate_series(1, 100)", "limit": 7 }),
    )
    .await;
    assert_eq!(body["row_count"], 7, "{body}");
    assert_eq!(body["truncated"], true);
    let (status, _, _) = sql(&f, json!({ "sql": "SELECT 1", "limit": 0 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body, _) = sql(&f, json!({ "sql": "SHOW TABLES" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.to_string().contains("sales_by_channel_region"),
        "live views are listed: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_fails_cleanly() {
    let f = fixture_with(ServerConfig {
        sql_memory_limit: 4 << 20,
        ..ServerConfig::default()
    })
    .await;
    let (status, body, _) = sql(
        &f,
        json!({ "sql": "SELECT value % 3000000 AS k, count(*) FROM generate_series(1, 6000000) GROUP BY 1 ORDER BY 2 DESC" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "memory_limit", "{body}");
    // The service goes on.
    let (status, _, _) = sql(&f, json!({ "sql": "SELECT 1" })).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_cancels_a_long_query() {
    let f = fixture_with(ServerConfig {
        sql_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    })
    .await;
    let started = Instant::now();
    let (status, body, _) = sql(
        &f,
        json!({ "sql": "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b" }),
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    // Bounded well above the 1 s limit on a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
