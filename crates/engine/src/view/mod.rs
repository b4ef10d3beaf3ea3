//! One running view: its kind (windowed, stateless, a join of two views),
//! options and watermark bookkeeping. `windowed.rs`: input rows into window
//! state, late rows aside, windows out as the watermark passes them;
//! `joined.rs`: final rows of two views waiting to be joined.

mod joined;
pub(crate) mod windowed;

use std::collections::BTreeSet;

use crate::plan::StatelessPlan;

pub(crate) use joined::Joined;
pub(crate) use windowed::Windowed;

/// What happens to events that arrive for a window already final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Into the `<view>__late` table (and the sinks), counted.
    #[default]
    Table,
    /// Dropped, counted.
    Drop,
}

/// Per-view settings, from the view file's leading comment (`-- @name value`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ViewOptions {
    /// Allowed out-of-orderness in ms; the engine default when `None`.
    pub out_of_orderness_ms: Option<i64>,
    pub late: LatePolicy,
}

/// Column of the late table: why the row is there.
pub const LATE_REASON: &str = "late_reason";
/// Column of the late table: the view's watermark when the row arrived.
pub const LATE_WATERMARK: &str = "watermark";

pub(crate) enum Kind {
    Windowed(Box<Windowed>),
    Stateless(StatelessPlan),
    Joined(Box<Joined>),
}

/// A join of two windowed views: each side's final rows wait, by window
/// start, until both sides are final for the window; then the join runs on
/// those rows alone and its rows are final.
/// Watermark bookkeeping of a view.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Current watermark (epoch ms), once known.
    pub watermark: Option<i64>,
    /// When all input went idle: (clock then, watermark base then).
    pub idle_since: Option<(i64, i64)>,
}

static NO_STREAMS: BTreeSet<String> = BTreeSet::new();

/// The streams a view reads directly.
pub(crate) fn stream_inputs(kind: &Kind) -> &BTreeSet<String> {
    match kind {
        Kind::Windowed(w) => &w.plan.inputs,
        Kind::Stateless(s) => &s.inputs,
        Kind::Joined(_) => &NO_STREAMS,
    }
}
