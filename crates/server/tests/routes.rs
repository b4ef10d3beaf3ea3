//! Every route through the real router (no socket): what each answers, the
//! whole role × route matrix with auth on, and that the OpenAPI document
//! lists exactly the routes there are.

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{body_text, fixture, get, post_json, send, token_of};
use kpiflow_server::Role;
use serde_json::{Value, json};

/// (method, OpenAPI path, a concrete request path, the role it needs).
const ROUTES: &[(&str, &str, &str, Option<Role>)] = &[
    ("get", "/healthz", "/healthz", None),
    ("get", "/readyz", "/readyz", None),
    ("get", "/login", "/login?next=/sql", None),
    ("post", "/login", "/login", None),
    ("post", "/logout", "/logout", None),
    ("get", "/assets/{file}", "/assets/kpiflow.css", None),
    (
        "get",
        "/assets/vendor/uplot/{file}",
        "/assets/vendor/uplot/uPlot.iife.min.js",
        None,
    ),
    ("get", "/", "/", Some(Role::Viewer)),
    (
        "get",
        "/dashboards/{name}",
        "/dashboards/sales",
        Some(Role::Viewer),
    ),
    (
        "get",
        "/api/dashboards",
        "/api/dashboards",
        Some(Role::Viewer),
    ),
    (
        "get",
        "/api/dashboards/{name}",
        "/api/dashboards/production_vs_sales",
        Some(Role::Viewer),
    ),
    (
        "get",
        "/api/dashboards/{name}/stream",
        "/api/dashboards/sales/stream",
        Some(Role::Viewer),
    ),
    ("get", "/api/views", "/api/views", Some(Role::Viewer)),
    (
        "get",
        "/api/views/{name}",
        "/api/views/sales_by_channel_region?limit=5",
        Some(Role::Viewer),
    ),
    (
        "get",
        "/api/views/{name}/stream",
        "/api/views/sales_by_channel_region/stream",
        Some(Role::Viewer),
    ),
    ("get", "/metrics", "/metrics", Some(Role::Viewer)),
    (
        "get",
        "/api/openapi.json",
        "/api/openapi.json",
        Some(Role::Viewer),
    ),
    ("get", "/sql", "/sql", Some(Role::Analyst)),
    ("post", "/api/sql", "/api/sql", Some(Role::Analyst)),
];

fn request(method: &str, path: &str, token: Option<&str>) -> Request<Body> {
    let builder = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(path);
    let builder = match token {
        Some(t) => builder.header("authorization", format!("Bearer {t}")),
        None => builder,
    };
    match (method, path) {
        ("post", "/api/sql") => builder
            .header("content-type", "application/json")
            .body(Body::from(json!({"sql": "SELECT 1 AS one"}).to_string())),
        ("post", "/login") => builder
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("token=nonsense&next=%2Fsql")),
        _ => builder.body(Body::empty()),
    }
    .unwrap()
}

/// What a route answers when let through.
fn expected(method: &str, path: &str) -> StatusCode {
    match (method, path) {
        ("post", "/login") | ("post", "/logout") => StatusCode::SEE_OTHER,
        _ => StatusCode::OK,
    }
}

#[tokio::test]
async fn every_route_answers_with_auth_off() {
    let f = fixture(false).await;
    for (method, _, path, _) in ROUTES {
        let response = send(&f.state, request(method, path, None)).await;
        assert_eq!(response.status(), expected(method, path), "{method} {path}");
    }
}

#[tokio::test]
async fn every_route_times_every_role() {
    let f = fixture(true).await;
    for (method, _, path, needs) in ROUTES {
        for who in [
            None,
            Some(Role::Viewer),
            Some(Role::Analyst),
            Some(Role::Planner),
            Some(Role::Admin),
        ] {
            let token = who.map(token_of);
            let response = send(&f.state, request(method, path, token.as_deref())).await;
            let status = response.status();
            let case = format!("{method} {path} as {who:?}");
            let denied = match (needs, who) {
                (None, _) => None,
                (Some(_), None) => Some((StatusCode::UNAUTHORIZED, "unauthorized")),
                (Some(need), Some(has)) if has < *need => {
                    Some((StatusCode::FORBIDDEN, "forbidden"))
                }
                _ => None,
            };
            match denied {
                Some((want, code)) => {
                    assert_eq!(status, want, "{case}");
                    let body: Value = serde_json::from_str(&body_text(response).await).unwrap();
                    assert_eq!(body["error"]["code"], code, "{case}: {body}");
                    assert!(
                        body["error"]["message"].as_str().unwrap().len() > 10,
                        "{case}"
                    );
                }
                None => assert_eq!(status, expected(method, path), "{case}"),
            }
        }
    }
}

#[tokio::test]
async fn a_browser_without_a_token_is_sent_to_the_login_page() {
    let f = fixture(true).await;
    let request = Request::get("/dashboards/sales")
        .header("accept", "text/html,application/xhtml+xml")
        .body(Body::empty())
        .unwrap();
    let response = send(&f.state, request).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"],
        "/login?next=/dashboards/sales"
    );
    // The login sets a cookie that opens the page.
    let login = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "token={}&next=%2Fdashboards%2Fsales",
            token_of(Role::Viewer)
        )))
        .unwrap();
    let response = send(&f.state, login).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/dashboards/sales");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = Request::get("/dashboards/sales")
        .header("cookie", pair)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.state, page).await.status(), StatusCode::OK);
    // A wrong token goes back to the form, and never to another site.
    let wrong = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("token=wrong&next=https%3A%2F%2Fevil.example"))
        .unwrap();
    let response = send(&f.state, wrong).await;
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/login?error=1&next=/"), "{location}");
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes() {
    let f = fixture(false).await;
    let doc: Value =
        serde_json::from_str(&body_text(send(&f.state, get("/api/openapi.json")).await).await)
            .unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routed);
}

#[tokio::test]
async fn dashboards_and_views_describe_themselves() {
    let f = fixture(false).await;
    let list: Value =
        serde_json::from_str(&body_text(send(&f.state, get("/api/dashboards")).await).await)
            .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for want in [
        "sales",
        "production",
        "production_vs_sales",
        "logistics",
        "equipment",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let missing = send(&f.state, get("/api/dashboards/nope")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body = body_text(missing).await;
    assert!(
        body.contains("not_found") && body.contains("sales"),
        "{body}"
    );

    let views: Value =
        serde_json::from_str(&body_text(send(&f.state, get("/api/views")).await).await).unwrap();
    let sales = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "sales_by_channel_region")
        .unwrap();
    assert_eq!(sales["window"]["kind"], "tumble");
    assert_eq!(sales["window"]["size_ms"], 60_000);
    assert!(
        sales["watermark_ms"].as_i64().unwrap() > common::T0,
        "{sales}"
    );
    assert!(sales["newest_event_ms"].as_i64().unwrap() > sales["watermark_ms"].as_i64().unwrap());
    assert!(sales["live_rows"].as_u64().unwrap() > 0, "{sales}");
}

#[tokio::test]
async fn view_rows_in_three_formats_with_filters() {
    let f = fixture(false).await;
    let path = "/api/views/sales_by_channel_region";
    let rows: Value =
        serde_json::from_str(&body_text(send(&f.state, get(path)).await).await).unwrap();
    let columns: Vec<&str> = rows["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        columns.contains(&"window_start") && columns.contains(&"is_final"),
        "{columns:?}"
    );
    let n = rows["row_count"].as_u64().unwrap();
    // 5 minutes × 2 channels, the newest minute running.
    assert_eq!(n, 10, "{rows}");
    let finals: Value = serde_json::from_str(
        &body_text(
            send(
                &f.state,
                get(&format!("{path}?final=true&key=channel:online")),
            )
            .await,
        )
        .await,
    )
    .unwrap();
    assert_eq!(finals["row_count"], 4, "{finals}");
    let limited: Value = serde_json::from_str(
        &body_text(send(&f.state, get(&format!("{path}?limit=3"))).await).await,
    )
    .unwrap();
    assert_eq!(limited["row_count"], 3);
    assert_eq!(limited["truncated"], true);
    let csv = body_text(send(&f.state, get(&format!("{path}?format=csv"))).await).await;
    assert!(
        csv.starts_with("window_start,window_end,channel,region,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 11, "{csv}");
    let arrow = send(&f.state, get(&format!("{path}?format=arrow"))).await;
    assert_eq!(
        arrow.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = axum::body::to_bytes(arrow.into_body(), 1 << 20)
        .await
        .unwrap();
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .unwrap();
    let total: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(total, 10);
    let since = format!("{path}?since={}", common::T0 + 4 * 60_000);
    let newest: Value =
        serde_json::from_str(&body_text(send(&f.state, get(&since)).await).await).unwrap();
    assert_eq!(newest["row_count"], 2, "{newest}");
    for bad in [
        "?since=yesterday",
        "?key=channel",
        "?key=nope:x",
        "?limit=0",
        "?format=xml",
    ] {
        let response = send(&f.state, get(&format!("{path}{bad}"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        send(&f.state, get("/api/views/nope")).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The same question within one tick is answered from memory; once the
/// progress moves, the answer is computed again and holds the new rows.
#[tokio::test]
async fn view_answers_are_kept_until_the_next_tick() {
    let mut f = fixture(false).await;
    let path = "/api/views/sales_by_channel_region?key=channel:online";
    let ask = |state: kpiflow_server::AppState| async move {
        let response = send(&state, get(path)).await;
        let cache = response.headers()["x-kpiflow-cache"]
            .to_str()
            .unwrap()
            .to_owned();
        let rows: Value = serde_json::from_str(&body_text(response).await).unwrap();
        (cache, rows["row_count"].as_u64().unwrap())
    };
    assert_eq!(ask(f.state.clone()).await, ("miss".into(), 5));
    assert_eq!(ask(f.state.clone()).await, ("hit".into(), 5));
    // Two more minutes of sales; the answer stays that of the tick it was
    // computed in until the progress moves.
    common::feed_sales(&mut f.engine, common::T0 + 5 * 60_000, 2, 1_000).await;
    assert_eq!(ask(f.state.clone()).await, ("hit".into(), 5));
    f.progress.send(common::progress_of(&f.engine, 2)).unwrap();
    assert_eq!(ask(f.state.clone()).await, ("miss".into(), 7));
    assert_eq!(ask(f.state.clone()).await, ("hit".into(), 7));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let f = fixture(false).await;
    assert_eq!(body_text(send(&f.state, get("/healthz")).await).await, "ok");
    let ready: Value =
        serde_json::from_str(&body_text(send(&f.state, get("/readyz")).await).await).unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["partitions"], 3);
    send(&f.state, post_json("/api/sql", &json!({"sql": "SELECT 1"}))).await;
    let metrics = body_text(send(&f.state, get("/metrics")).await).await;
    assert!(metrics.contains("kpiflow_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/api/sql\""), "{metrics}");
    assert!(
        metrics.contains("kpiflow_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test]
async fn readiness_needs_a_recent_checkpoint() {
    let f = common::fixture_with(kpiflow_server::ServerConfig {
        checkpoint_interval: Some(std::time::Duration::from_millis(10)),
        ..kpiflow_server::ServerConfig::default()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let response = send(&f.state, get("/readyz")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body_text(response).await;
    assert!(body.contains("no checkpoint for"), "{body}");
}
