//! What the runner publishes for readers beside it (the HTTP server): after
//! every tick and checkpoint, each view's watermark, newest event and
//! counts, and the newest checkpoint. A `watch` channel: a reader always
//! sees the latest and never holds the runner back.

use std::collections::BTreeMap;

use kpiflow_engine::Engine;

/// Where the pipeline stands, as of its last tick or checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Ticks since the runner started: the live rows may have changed
    /// whenever it moves.
    pub tick: u64,
    /// The wall clock of the tick (epoch ms).
    pub at_ms: i64,
    pub views: BTreeMap<String, ViewProgress>,
    /// The newest checkpoint's epoch (0: none yet).
    pub epoch: u64,
    /// When this process saved its newest checkpoint (epoch ms).
    pub checkpoint_at_ms: Option<i64>,
}

/// One view's progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewProgress {
    /// Windows ending at or before it are final (epoch ms).
    pub watermark_ms: Option<i64>,
    /// The newest event time its inputs have seen (epoch ms).
    pub newest_event_ms: Option<i64>,
    pub open_groups: usize,
    /// Final rows emitted since the process started.
    pub final_rows: u64,
    /// Late rows since the process started.
    pub late_rows: u64,
}

impl Progress {
    /// Every view of `engine` as it stands.
    pub(crate) fn views_of(engine: &Engine) -> BTreeMap<String, ViewProgress> {
        engine
            .views()
            .into_iter()
            .filter_map(|view| {
                let stats = engine.stats(&view.name)?;
                Some((
                    view.name,
                    ViewProgress {
                        watermark_ms: stats.watermark,
                        newest_event_ms: stats.newest_event_ms,
                        open_groups: stats.open_groups,
                        final_rows: stats.final_rows,
                        late_rows: stats.late_rows,
                    },
                ))
            })
            .collect()
    }
}
