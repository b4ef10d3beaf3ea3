//! The event streams: a snapshot first, updates at each tick, a reconnect
//! with `Last-Event-ID` without a gap, and a client that stops reading
//! costing a bounded buffer (it gets a fresh snapshot, not every frame it
//! missed).

mod common;

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::Request;
use common::{T0, feed_sales, fixture, progress_of, send};
use futures::StreamExt;
use serde_json::Value;

struct Event {
    id: u64,
    kind: String,
    data: Value,
}

/// The next event (keep-alive comments skipped), within 10 s.
async fn next_event(stream: &mut BodyDataStream, buffer: &mut String) -> Event {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Event {
                    id: id.expect("every event has an id"),
                    kind,
                    data: serde_json::from_str(&data).unwrap(),
                };
            }
            let chunk = stream.next().await.expect("the stream is open").unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("an event within 10 s")
}

async fn open(f: &common::Fixture, path: &str, last: Option<u64>) -> BodyDataStream {
    let mut request = Request::get(path);
    if let Some(id) = last {
        request = request.header("last-event-id", id.to_string());
    }
    let response = send(&f.state, request.body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response.into_body().into_data_stream()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_updates_and_a_reconnect_without_a_gap() {
    let mut f = fixture(false).await;
    let _feeds = f.state.spawn_feeds(f.shutdown.clone());
    let path = "/api/dashboards/sales/stream";
    let mut stream = open(&f, path, None).await;
    let mut buffer = String::new();
    let first = next_event(&mut stream, &mut buffer).await;
    assert_eq!(first.kind, "snapshot");
    let panels = first.data["panels"].as_object().unwrap();
    let revenue = &panels["revenue_by_channel"];
    assert_eq!(revenue["kind"], "line");
    assert!(revenue["error"].is_null(), "{revenue}");
    let series = revenue["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "online and retail: {revenue}");
    assert_eq!(revenue["x"].as_array().unwrap().len(), 5);
    // The newest minute runs, the others are final.
    let finals = series[0]["final"].as_array().unwrap();
    assert_eq!(
        finals.iter().filter(|f| **f == Value::Bool(false)).count(),
        1
    );
    assert!(revenue["freshness"]["watermark_ms"].as_i64().unwrap() > T0);

    // New sales and a tick: an update with the panels that changed.
    feed_sales(&mut f.engine, T0 + 5 * 60_000, 2, 1_000).await;
    f.progress.send(progress_of(&f.engine, 2)).unwrap();
    let update = next_event(&mut stream, &mut buffer).await;
    assert_eq!(update.kind, "update");
    assert!(update.id > first.id);
    let revenue = &update.data["panels"]["revenue_by_channel"];
    assert_eq!(revenue["x"].as_array().unwrap().len(), 7, "{revenue}");
    drop(stream);

    // Reconnecting at the newest id: nothing is missing, so no snapshot
    // (keep-alive comments aside, nothing comes until the next tick).
    let mut again = open(&f, path, Some(update.id)).await;
    let mut buffer = String::new();
    let quiet = tokio::time::timeout(Duration::from_millis(500), again.next()).await;
    assert!(quiet.is_err(), "no event before the next tick: {quiet:?}");
    feed_sales(&mut f.engine, T0 + 7 * 60_000, 1, 2_000).await;
    f.progress.send(progress_of(&f.engine, 3)).unwrap();
    let next = next_event(&mut again, &mut buffer).await;
    assert_eq!(next.kind, "update");
    assert!(next.id > update.id);
    drop(again);

    // Reconnecting from an older id: the snapshot holds everything since.
    let mut behind = open(&f, path, Some(first.id)).await;
    let mut buffer = String::new();
    let caught_up = next_event(&mut behind, &mut buffer).await;
    assert_eq!(caught_up.kind, "snapshot");
    assert_eq!(caught_up.id, next.id);
    let revenue = &caught_up.data["panels"]["revenue_by_channel"];
    assert_eq!(revenue["x"].as_array().unwrap().len(), 8, "{revenue}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_gets_a_fresh_snapshot_not_a_queue() {
    let mut f = fixture(false).await;
    let buffer_frames = kpiflow_server::ServerConfig::default().sse_buffer;
    let _feeds = f.state.spawn_feeds(f.shutdown.clone());
    let path = "/api/views/sales_by_channel_region/stream";
    let mut stream = open(&f, path, None).await;
    let mut buffer = String::new();
    let first = next_event(&mut stream, &mut buffer).await;
    assert_eq!(first.kind, "snapshot");
    // Many ticks with changes while the client reads nothing.
    let ticks = 4 * buffer_frames as u64;
    for i in 0..ticks {
        feed_sales(
            &mut f.engine,
            T0 + (5 + i as i64) * 60_000,
            1,
            10_000 + 100 * i as i64,
        )
        .await;
        f.progress.send(progress_of(&f.engine, 2 + i)).unwrap();
        // Each tick is computed before the next.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What the client reads now: the frames still buffered at most, then a
    // snapshot of the newest state — never all the frames it missed.
    let mut read = 0;
    let last = loop {
        let event = next_event(&mut stream, &mut buffer).await;
        read += 1;
        if event.kind == "snapshot" {
            break event;
        }
        assert!(
            read <= buffer_frames,
            "{read} updates queued for a client that stopped reading"
        );
    };
    let rows = last.data["panels"]["rows"]["rows"]
        .as_array()
        .unwrap()
        .len();
    assert!(rows > 0);
    assert!(
        last.id >= first.id + ticks - 1,
        "the snapshot is the newest state: {} vs {}",
        last.id,
        first.id + ticks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let f = fixture(false).await;
    let mut stream = open(&f, "/api/dashboards/sales/stream", None).await;
    let mut buffer = String::new();
    next_event(&mut stream, &mut buffer).await;
    f.shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = stream.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ended at shutdown");
}
