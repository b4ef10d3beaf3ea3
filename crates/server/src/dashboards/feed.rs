//! Each dashboard's live feed: at every engine tick (the pipeline's
//! progress moving) the panels of dashboards someone watches are computed
//! once — not once per client — and what changed goes out as one frame to
//! every open page.
//!
//! A frame is `{"seq", "now_ms", "panels": {"<id>": PanelData}}`: a
//! snapshot holds every panel, an update the panels that changed (each
//! whole). Frames are serialised once and shared; the broadcast channel
//! keeps the last few, so a client that stops reading costs nothing but
//! its place in it, and one that falls behind further gets a fresh
//! snapshot (see `sse`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::Serialize;
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;

use kpiflow_pipeline::Progress;

use super::definition::Dashboard;
use super::panel::{self, PanelData};
use crate::state::{ServerConfig, Sources};

/// One SSE event's worth, serialised once.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    /// `snapshot` or `update`.
    pub event: &'static str,
    pub json: Arc<str>,
}

#[derive(Serialize)]
struct FrameBody<'a> {
    seq: u64,
    now_ms: i64,
    panels: BTreeMap<&'a str, &'a PanelData>,
}

/// What a feed last computed.
#[derive(Default)]
struct Computed {
    seq: u64,
    /// Per panel: its data (freshness included).
    panels: BTreeMap<String, PanelData>,
    snapshot: Option<Arc<Frame>>,
    /// The progress tick the panels are from.
    tick: Option<u64>,
}

/// One dashboard's feed.
pub struct Feed {
    pub dashboard: Dashboard,
    computed: Mutex<Computed>,
    tx: broadcast::Sender<Arc<Frame>>,
}

/// Every dashboard's feed, and the context their queries run in.
#[derive(Clone)]
pub struct Feeds {
    feeds: Arc<BTreeMap<String, Arc<Feed>>>,
    ctx: SessionContext,
    progress: tokio::sync::watch::Receiver<Progress>,
    stale_after: Duration,
}

impl Feeds {
    pub fn new(dashboards: &[Dashboard], sources: &Sources, config: &ServerConfig) -> Feeds {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let live = Arc::new(MemorySchemaProvider::new());
        for view in &sources.views {
            if let Some(table) = sources.live.table(&view.name) {
                let _ = datafusion::catalog::SchemaProvider::register_table(
                    live.as_ref(),
                    view.name.clone(),
                    table,
                );
            }
        }
        if let Some(catalog) = ctx.catalog("datafusion") {
            let _ = catalog.register_schema("live", live);
        }
        let views: Vec<Dashboard> = sources
            .views
            .iter()
            .filter(|v| {
                v.schema
                    .column_with_name(kpiflow_engine::WINDOW_START)
                    .is_some()
            })
            .map(Dashboard::of_view)
            .collect();
        let feeds = dashboards
            .iter()
            .chain(&views)
            .map(|d| {
                let (tx, _) = broadcast::channel(config.sse_buffer.max(1));
                (
                    d.name.clone(),
                    Arc::new(Feed {
                        dashboard: d.clone(),
                        computed: Mutex::new(Computed::default()),
                        tx,
                    }),
                )
            })
            .collect();
        Feeds {
            feeds: Arc::new(feeds),
            ctx,
            progress: sources.progress.clone(),
            stale_after: config.stale_after,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Feed>> {
        self.feeds.get(name).cloned()
    }

    /// Updates the watched dashboards at every tick until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut progress = self.progress.clone();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = progress.changed() => if changed.is_err() { return },
            }
            let now = progress.borrow_and_update().clone();
            for feed in self.feeds.values() {
                if feed.tx.receiver_count() > 0 {
                    self.update(feed, &now).await;
                }
            }
        }
    }

    /// The feed's current snapshot, computed now if it is older than the
    /// pipeline's last tick.
    pub async fn snapshot(&self, feed: &Feed) -> Arc<Frame> {
        let now = self.progress.borrow().clone();
        let mut computed = feed.computed.lock().await;
        if let (Some(snapshot), Some(tick)) = (&computed.snapshot, computed.tick)
            && tick == now.tick
        {
            return snapshot.clone();
        }
        self.recompute(feed, &mut computed, &now).await;
        computed
            .snapshot
            .clone()
            .expect("a snapshot after computing")
    }

    async fn update(&self, feed: &Feed, now: &Progress) {
        let mut computed = feed.computed.lock().await;
        if computed.tick == Some(now.tick) {
            return;
        }
        if let Some(update) = self.recompute(feed, &mut computed, now).await {
            // No receiver left is fine: the next page gets the snapshot.
            let _ = feed.tx.send(update);
        }
    }

    /// Computes every panel; returns the update frame if anything changed.
    async fn recompute(
        &self,
        feed: &Feed,
        computed: &mut Computed,
        now: &Progress,
    ) -> Option<Arc<Frame>> {
        let wall = chrono::Utc::now().timestamp_millis();
        let mut changed: Vec<String> = Vec::new();
        for panel in &feed.dashboard.panels {
            let mut data = panel::compute(&self.ctx, panel).await;
            let progress = now.views.get(&panel.view);
            data.freshness.newest_event_ms = progress.and_then(|p| p.newest_event_ms);
            data.freshness.watermark_ms = progress.and_then(|p| p.watermark_ms);
            let previous = computed.panels.get(&panel.id);
            let same = previous.is_some_and(|p| same_data(p, &data));
            data.freshness.changed_ms = match previous {
                Some(p) if same => p.freshness.changed_ms,
                _ => wall,
            };
            data.freshness.stale =
                wall - data.freshness.changed_ms >= self.stale_after.as_millis() as i64;
            if previous != Some(&data) {
                changed.push(panel.id.clone());
            }
            computed.panels.insert(panel.id.clone(), data);
        }
        computed.tick = Some(now.tick);
        let first = computed.snapshot.is_none();
        if changed.is_empty() && !first {
            return None;
        }
        computed.seq += 1;
        let seq = computed.seq;
        let all: BTreeMap<&str, &PanelData> = computed
            .panels
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let snapshot = Arc::new(Frame {
            seq,
            event: "snapshot",
            json: serialise(seq, wall, all),
        });
        computed.snapshot = Some(snapshot);
        let update: BTreeMap<&str, &PanelData> = changed
            .iter()
            .filter_map(|id| computed.panels.get_key_value(id))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        Some(Arc::new(Frame {
            seq,
            event: "update",
            json: serialise(seq, wall, update),
        }))
    }
}

impl Feed {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.tx.subscribe()
    }
}

/// Equal but for when it last changed and whether that makes it stale.
fn same_data(a: &PanelData, b: &PanelData) -> bool {
    let mut a = a.clone();
    a.freshness.changed_ms = b.freshness.changed_ms;
    a.freshness.stale = b.freshness.stale;
    a == *b
}

fn serialise(seq: u64, now_ms: i64, panels: BTreeMap<&str, &PanelData>) -> Arc<str> {
    let body = FrameBody {
        seq,
        now_ms,
        panels,
    };
    serde_json::to_string(&body)
        .unwrap_or_else(|e| format!("{{\"seq\":{seq},\"error\":\"{e}\"}}"))
        .into()
}
