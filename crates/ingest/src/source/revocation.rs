//! Revocations as the batcher applies them: librdkafka's callback bumps an
//! epoch and records the partitions; before any input or emit the batcher
//! takes them, drops the held rows, dead letters and progress of those
//! partitions, and remembers the epoch, so that rows of theirs still queued
//! in chunks started before it are dropped too. They are the next owner's
//! to deliver: nothing of a revoked partition is emitted after the batcher
//! learns of it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use rdkafka::consumer::Consumer;

use kpiflow_types::Stream;

use super::batcher::Batcher;
use super::context::SourceContext;

/// The revocations applied so far.
#[derive(Default)]
pub(super) struct Revocations {
    /// The newest revocation epoch applied.
    epoch_seen: u64,
    /// The epoch each partition was last revoked in.
    revoked_at: HashMap<(Stream, i32), u64>,
}

impl Revocations {
    /// The partitions revoked since the last call (`None` if the epoch has
    /// not moved), remembering the epoch of each.
    fn take_new(&mut self, context: &SourceContext) -> Option<HashSet<(Stream, i32)>> {
        if context.epoch.load(Ordering::SeqCst) == self.epoch_seen {
            return None;
        }
        let mut revoked: HashSet<(Stream, i32)> = HashSet::new();
        for (epoch, list) in context.take_revocations() {
            self.epoch_seen = self.epoch_seen.max(epoch);
            for (topic, partition) in list {
                if let Ok(stream) = topic.parse::<Stream>() {
                    self.revoked_at.insert((stream, partition), epoch);
                    revoked.insert((stream, partition));
                }
            }
        }
        Some(revoked)
    }

    /// Whether records of `partition` from a chunk started in `epoch` are
    /// still this member's (the partition was not revoked since).
    pub(super) fn still_ours(&self, stream: Stream, partition: i32, epoch: u64) -> bool {
        self.revoked_at.is_empty()
            || self
                .revoked_at
                .get(&(stream, partition))
                .is_none_or(|&e| e <= epoch)
    }
}

impl Batcher {
    /// Drops the held rows and progress of partitions revoked since the last
    /// call, and remembers when, so rows of theirs still queued in older
    /// chunks are dropped too: they are the next owner's to deliver.
    pub(super) fn apply_revocations(&mut self) {
        if let Some(revoked) = self.revocations.take_new(self.consumer.context())
            && !revoked.is_empty()
        {
            self.drop_revoked(&revoked);
        }
    }

    fn drop_revoked(&mut self, revoked: &HashSet<(Stream, i32)>) {
        // Dead letters held are dropped with the rows: the next owner reads
        // those records again from the last committed offset.
        let dropped = self.held.drop_revoked(revoked);
        self.stats
            .revoked_records
            .fetch_add(dropped as u64, Ordering::Relaxed);
        let holding_dead = !self.held.is_empty();
        for (decoder, oldest) in self.decoders.iter_mut().zip(&mut self.oldest) {
            let Some(decoder) = decoder else { continue };
            let stream = decoder.stream();
            let before = decoder.len();
            decoder.retain_partitions(|p| !revoked.contains(&(stream, p)));
            let dropped = (before - decoder.len()) as u64;
            self.stats
                .revoked_records
                .fetch_add(dropped, Ordering::Relaxed);
            if decoder.is_empty() && !holding_dead {
                *oldest = None;
            }
        }
        self.parts.retain(|key, _| !revoked.contains(key));
        tracing::info!(partitions = revoked.len(), "partitions revoked");
    }
}
