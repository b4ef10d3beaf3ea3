//! Server-Sent Events for a feed: a snapshot first (skipped when the
//! client's `Last-Event-ID` is the current frame), then each update as it
//! comes; a client that fell more than the buffer behind gets a fresh
//! snapshot instead of the frames it missed, so nothing queues up per
//! client and a reconnecting page never has a gap. Keep-alive comments on
//! idle streams; every stream ends at shutdown (an open stream would
//! otherwise hold up axum's graceful shutdown, axum#2673).

use std::convert::Infallible;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::dashboards::{Feed, Feeds, Frame};
use crate::state::AppState;

/// The id the client last saw, if it says.
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn event(frame: &Frame) -> Event {
    Event::default()
        .id(frame.seq.to_string())
        .event(frame.event)
        .data(frame.json.as_ref())
}

/// Counts open streams for `/metrics` while alive.
struct Open;

impl Open {
    fn new() -> Open {
        metrics::gauge!("kpiflow_http_sse_clients").increment(1.0);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("kpiflow_http_sse_clients").decrement(1.0);
    }
}

/// The event stream of one feed for one client: the one the request's
/// `Last-Event-ID` resumes, ending at the server's shutdown.
pub fn stream(
    state: &AppState,
    feed: Arc<Feed>,
    headers: &HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let frames = async_stream(
        state.inner.feeds.clone(),
        feed,
        last_event_id(headers),
        state.inner.shutdown.clone(),
    );
    Sse::new(frames).keep_alive(
        KeepAlive::new()
            .interval(state.inner.config.keep_alive)
            .text("keep-alive"),
    )
}

fn async_stream(
    feeds: Feeds,
    feed: Arc<Feed>,
    last_seen: Option<u64>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // Subscribed before the snapshot is read: no update falls in between.
    let rx = feed.subscribe();
    struct S {
        feeds: Feeds,
        feed: Arc<Feed>,
        rx: tokio::sync::broadcast::Receiver<Arc<Frame>>,
        sent: Option<u64>,
        started: bool,
        _open: Open,
    }
    let state = S {
        feeds,
        feed,
        rx,
        sent: last_seen,
        started: false,
        _open: Open::new(),
    };
    let frames = futures::stream::unfold(state, |mut s| async move {
        loop {
            if !s.started {
                s.started = true;
                let snapshot = s.feeds.snapshot(&s.feed).await;
                if s.sent == Some(snapshot.seq) {
                    continue;
                }
                s.sent = Some(snapshot.seq);
                return Some((Ok(event(&snapshot)), s));
            }
            match s.rx.recv().await {
                Ok(frame) => {
                    if s.sent.is_some_and(|seen| frame.seq <= seen) {
                        continue;
                    }
                    s.sent = Some(frame.seq);
                    return Some((Ok(event(&frame)), s));
                }
                Err(RecvError::Lagged(missed)) => {
                    metrics::counter!("kpiflow_http_sse_resnapshots_total").increment(1);
                    tracing::debug!(missed, "a slow SSE client gets a fresh snapshot");
                    let snapshot = s.feeds.snapshot(&s.feed).await;
                    s.sent = Some(snapshot.seq);
                    return Some((Ok(event(&snapshot)), s));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    futures::StreamExt::take_until(frames, shutdown.cancelled_owned())
}
