//! Per-partition progress, as each batch reports it: what the source knows
//! of every partition it holds ([`Part`]: the next offset, the largest event
//! time, the last record's arrival), the event-time maxima tracked per run of
//! a partition's rows, idleness ([`is_idle`]), what was delivered downstream
//! (kept across revocations), and the [`PartitionProgress`] list built from
//! them and librdkafka's statistics.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMillisecondType};
use rdkafka::consumer::Consumer;

use kpiflow_types::source::PARTITION_COLUMN;
use kpiflow_types::{PartitionProgress, Stream};

use super::batcher::Batcher;

/// What the source knows of one partition it holds.
pub(super) struct Part {
    /// Offset after the last record received.
    next_offset: Option<i64>,
    max_event_time_ms: Option<i64>,
    last_activity: Instant,
}

impl Part {
    pub(super) fn new(now: Instant) -> Part {
        Part {
            next_offset: None,
            max_event_time_ms: None,
            last_activity: now,
        }
    }
}

/// Whether a partition is idle: not paused, caught up with its end, and
/// quiet for `timeout` since its last record and since the last resume (its
/// end offset is stale while paused).
fn is_idle(
    paused: bool,
    caught_up: bool,
    last_activity: Instant,
    resumed_at: Option<Instant>,
    timeout: Duration,
    now: Instant,
) -> bool {
    let quiet_since = resumed_at.map_or(last_activity, |r| r.max(last_activity));
    !paused && caught_up && now.saturating_duration_since(quiet_since) >= timeout
}

impl Batcher {
    /// A record of `partition` at `offset` was received at `at`.
    pub(super) fn seen(&mut self, stream: Stream, partition: i32, offset: i64, at: Instant) {
        let part = self
            .parts
            .entry((stream, partition))
            .or_insert_with(|| Part::new(at));
        part.next_offset = Some(part.next_offset.map_or(offset + 1, |n| n.max(offset + 1)));
        part.last_activity = at;
    }

    pub(super) fn track_event_times(&mut self, stream: Stream, rows: &RecordBatch) {
        if rows.num_rows() == 0 {
            return;
        }
        let times = rows.column(0).as_primitive::<TimestampMillisecondType>();
        let partitions = rows
            .column_by_name(PARTITION_COLUMN)
            .expect("source batches carry _partition")
            .as_primitive::<Int32Type>();
        // Rows come in runs of one partition: one lookup a run.
        let mut run: Option<(i32, i64)> = None;
        for (&t, &p) in times.values().iter().zip(partitions.values()) {
            match &mut run {
                Some((partition, max)) if *partition == p => *max = (*max).max(t),
                _ => {
                    if let Some((partition, max)) = run {
                        self.note_event_time(stream, partition, max);
                    }
                    run = Some((p, t));
                }
            }
        }
        if let Some((partition, max)) = run {
            self.note_event_time(stream, partition, max);
        }
    }

    fn note_event_time(&mut self, stream: Stream, partition: i32, t: i64) {
        if let Some(part) = self.parts.get_mut(&(stream, partition)) {
            part.max_event_time_ms = Some(part.max_event_time_ms.map_or(t, |m| m.max(t)));
        }
    }

    /// The stream's rows up to each partition's next offset have been sent
    /// downstream: remembered, here and for the rebalance callback, beyond
    /// revocations (see [`Batcher::already_delivered`]).
    pub(super) fn note_delivered(&mut self, stream: Stream) {
        let mut shared = self
            .consumer
            .context()
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (&(s, partition), part) in &self.parts {
            if s != stream {
                continue;
            }
            if let Some(next) = part.next_offset {
                let known = self.delivered.entry((s, partition)).or_insert(next);
                *known = (*known).max(next);
                shared.insert((s.name().to_owned(), partition), *known);
            }
        }
    }

    /// Offsets below this were delivered before: a partition that was lost
    /// (the session timed out) and came back may read them again.
    pub(super) fn already_delivered(&self, stream: Stream, partition: i32) -> i64 {
        self.delivered
            .get(&(stream, partition))
            .copied()
            .unwrap_or(i64::MIN)
    }

    pub(super) fn progress(&self, stream: Stream) -> Vec<PartitionProgress> {
        let paused = self.stats.paused.load(Ordering::Relaxed);
        let resumed_at = *self
            .stats
            .resumed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let ends = self
            .consumer
            .context()
            .ends
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut list: Vec<PartitionProgress> = self
            .parts
            .iter()
            .filter(|((s, _), _)| *s == stream)
            .map(|(&(_, partition), part)| {
                let end = ends.get(&(stream.name().to_owned(), partition));
                // Never behind what was delivered: a partition that came
                // back reports the committed offset until its first record.
                let delivered = self.delivered.get(&(stream, partition)).copied();
                let position = part
                    .next_offset
                    .or_else(|| end.and_then(|e| e.position_without_records()))
                    .map(|p| delivered.map_or(p, |d| p.max(d)))
                    .or(delivered);
                let caught_up = match (end, position) {
                    (Some(end), Some(position)) => end.high >= 0 && position >= end.high,
                    _ => false,
                };
                if let (Some(end), Some(position)) = (end, position) {
                    metrics::gauge!(
                        "kpiflow_ingest_consumer_lag",
                        "topic" => stream.name(),
                        "partition" => partition.to_string()
                    )
                    .set((end.high - position).max(0) as f64);
                }
                PartitionProgress {
                    partition,
                    max_event_time_ms: part.max_event_time_ms,
                    next_offset: position.unwrap_or(-1),
                    idle: is_idle(
                        paused,
                        caught_up,
                        part.last_activity,
                        resumed_at,
                        self.config.idle_timeout,
                        now,
                    ),
                }
            })
            .collect();
        list.sort_by_key(|p| p.partition);
        list
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::is_idle;

    #[test]
    fn idle_needs_caught_up_quiet_unpaused_and_time_since_the_resume() {
        let now = Instant::now() + Duration::from_secs(100);
        let timeout = Duration::from_secs(5);
        let long_ago = now - Duration::from_secs(60);
        let just_now = now - Duration::from_secs(1);
        assert!(is_idle(false, true, long_ago, None, timeout, now));
        assert!(is_idle(false, true, long_ago, Some(long_ago), timeout, now));
        // Lagging, paused, a recent record, or a recent resume: not idle.
        assert!(!is_idle(false, false, long_ago, None, timeout, now));
        assert!(!is_idle(true, true, long_ago, None, timeout, now));
        assert!(!is_idle(false, true, just_now, None, timeout, now));
        assert!(!is_idle(
            false,
            true,
            long_ago,
            Some(just_now),
            timeout,
            now
        ));
        // Exactly the timeout counts.
        assert!(is_idle(false, true, now - timeout, None, timeout, now));
    }
}
