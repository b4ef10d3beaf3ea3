//! The watermark a view should have, computed from the source batches and
//! the clock alone, so that tests decide which events are late without asking
//! the engine. Written from the rules README ("Continuous views") and
//! DESIGN.md ("Semantics") state, not from the engine's code:
//!
//! 1. A source batch reports every partition of its stream that the source
//!    holds; per partition, the largest event time seen so far (never
//!    forgotten while the partition is reported) and whether it is idle.
//! 2. A partition's watermark is that event time minus the view's allowed
//!    out-of-orderness.
//! 3. A view's watermark is the minimum over the partitions of its input
//!    streams that are not idle. A partition that is not idle and has no
//!    event yet holds it where it is.
//! 4. When every partition of the view's input is idle, the watermark moves
//!    with the clock at each tick: from the latest event time over those
//!    partitions minus the out-of-orderness (the base), taken at the first
//!    tick that found them all idle, plus the time since that tick. Input
//!    that is no longer all idle stops the clock; the next all-idle spell
//!    starts again from its own base.
//! 5. A watermark never moves back: a window once final stays final.
//! 6. A join of two views has the smaller of its inputs' watermarks, once
//!    both have one.
//!
//! An event pushed in a batch is late for a window when the window's end is
//! at or before the view's watermark as it stood before that batch.

use std::collections::BTreeMap;

use kpiflow_types::{SourceBatch, Stream};

/// One partition as the latest batch of its stream reported it.
#[derive(Debug, Clone, Copy)]
struct Reported {
    max_event_time: Option<i64>,
    idle: bool,
}

/// The spec's watermark of one view (see the module documentation).
#[derive(Debug, Clone)]
pub struct WatermarkModel {
    inputs: Vec<Stream>,
    out_of_orderness: i64,
    partitions: BTreeMap<Stream, BTreeMap<i32, Reported>>,
    value: Option<i64>,
    /// (clock at the first all-idle tick, base) while the input is all idle.
    idle_spell: Option<(i64, i64)>,
}

impl WatermarkModel {
    pub fn new(inputs: &[Stream], out_of_orderness_ms: i64) -> WatermarkModel {
        WatermarkModel {
            inputs: inputs.to_vec(),
            out_of_orderness: out_of_orderness_ms,
            partitions: BTreeMap::new(),
            value: None,
            idle_spell: None,
        }
    }

    /// The watermark (epoch ms), once there is one.
    pub fn get(&self) -> Option<i64> {
        self.value
    }

    fn raise(&mut self, to: i64) {
        self.value = Some(self.value.map_or(to, |w| w.max(to)));
    }

    /// Every reported partition of the view's input streams.
    fn reported(&self) -> impl Iterator<Item = &Reported> {
        self.partitions.values().flat_map(BTreeMap::values)
    }

    /// The view's input has been reported and all of it is idle.
    fn all_idle(&self) -> bool {
        self.reported().all(|p| p.idle)
    }

    /// A batch was pushed (rows and progress).
    pub fn push(&mut self, batch: &SourceBatch) {
        if !self.inputs.contains(&batch.stream) {
            return;
        }
        let before = self.partitions.remove(&batch.stream).unwrap_or_default();
        let now: BTreeMap<i32, Reported> = batch
            .partitions
            .iter()
            .map(|p| {
                let earlier = before.get(&p.partition).and_then(|r| r.max_event_time);
                let max_event_time = match (earlier, p.max_event_time_ms) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                (
                    p.partition,
                    Reported {
                        max_event_time,
                        idle: p.idle,
                    },
                )
            })
            .collect();
        self.partitions.insert(batch.stream, now);
        if self.all_idle() {
            // Rule 4: only the clock moves it now.
            return;
        }
        self.idle_spell = None;
        let mut lowest: Option<i64> = None;
        for p in self.reported().filter(|p| !p.idle) {
            match p.max_event_time {
                // Rule 3: an active partition without events holds it.
                None => return,
                Some(t) => lowest = Some(lowest.map_or(t, |l| l.min(t))),
            }
        }
        if let Some(t) = lowest {
            self.raise(t - self.out_of_orderness);
        }
    }

    /// The engine was ticked at `now_ms` (epoch ms).
    pub fn tick(&mut self, now_ms: i64) {
        let latest = self.reported().filter_map(|p| p.max_event_time).max();
        let (true, Some(latest)) = (self.all_idle(), latest) else {
            self.idle_spell = None;
            return;
        };
        let base = latest - self.out_of_orderness;
        let (since, base) = *self.idle_spell.get_or_insert((now_ms, base));
        self.raise(base + (now_ms - since).max(0));
    }
}

/// Rule 6: the watermark of a join of two views.
pub fn joined(left: Option<i64>, right: Option<i64>) -> Option<i64> {
    Some(left?.min(right?))
}

/// The streams a view's SQL reads: the stream names that follow `FROM` or
/// `JOIN` (outside string literals and comments it is good enough for the
/// views the tests write and ship).
pub fn stream_inputs(sql: &str) -> Vec<Stream> {
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        if pair[0] != "from" && pair[0] != "join" {
            continue;
        }
        if let Some(s) = Stream::ALL.iter().find(|s| s.name() == pair[1])
            && !out.contains(s)
        {
            out.push(*s);
        }
    }
    out
}
