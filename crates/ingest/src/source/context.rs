//! The consumer's librdkafka callbacks: rebalances (recorded for the source
//! loop, and start offsets applied on assignment) and statistics (partition
//! end offsets, for idleness and lag).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

/// Bound on reading the group's committed offsets in a rebalance.
const COMMITTED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A change of the partitions this consumer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Partitions revoked, with the epoch their revocation started.
pub type Revocation = (u64, Vec<(String, i32)>);

/// Offsets of one partition, from librdkafka's statistics.
#[derive(Debug, Clone, Copy)]
pub struct PartitionEnds {
    /// High watermark: offset of the next record to be written.
    pub high: i64,
    /// Low watermark: the oldest offset kept.
    pub low: i64,
    /// The application's position (after the last record polled), or < 0.
    pub app: i64,
    /// The group's committed offset, or < 0.
    pub committed: i64,
    /// The poll thread has taken a record of the partition since it was
    /// assigned: `app` may be ahead of what the batcher has seen.
    pub taken: bool,
}

impl Default for PartitionEnds {
    fn default() -> PartitionEnds {
        PartitionEnds {
            high: -1,
            low: -1,
            app: -1,
            committed: -1,
            taken: false,
        }
    }
}

impl PartitionEnds {
    /// Where the member is in the partition when the batcher has seen none
    /// of its records: never a position the poll thread may have passed
    /// (a checkpoint may commit it), nor librdkafka's fetch position (which
    /// counts prefetched records).
    pub fn position_without_records(&self) -> Option<i64> {
        if self.taken {
            None
        } else if self.app >= 0 {
            Some(self.app)
        } else if self.committed >= 0 {
            Some(self.committed)
        } else if self.high >= 0 && self.low == self.high {
            // Empty: wherever the member starts, it is at the end.
            Some(self.high)
        } else {
            None
        }
    }
}

/// Shared between librdkafka's callbacks and the source loop.
#[derive(Default)]
pub struct SourceContext {
    pub rebalances: Mutex<Vec<Rebalanced>>,
    /// Offsets to start from on the next assignment, overriding committed ones.
    pub start_offsets: Mutex<HashMap<(String, i32), i64>>,
    /// Per partition, the offset after the last record delivered downstream
    /// (kept by the batcher, across revocations): where the partition
    /// resumes if it comes back to this member.
    pub delivered: Mutex<HashMap<(String, i32), i64>>,
    pub ends: Mutex<HashMap<(String, i32), PartitionEnds>>,
    /// Bumped at every revocation (in librdkafka's callback, on the poll thread).
    pub epoch: AtomicU64,
    /// Revocations not yet taken by the batcher: (epoch, partitions).
    pub revocations: Mutex<Vec<Revocation>>,
}

/// The (topic, partition) pairs of a list.
pub(crate) fn pairs(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in &statistics.topics {
            for (&partition, p) in &t.partitions {
                // librdkafka reports a partition −1 for unassigned messages.
                if partition < 0 || !p.desired {
                    continue;
                }
                let end = ends.entry((topic.clone(), partition)).or_default();
                end.high = p.hi_offset;
                end.low = p.lo_offset;
                end.app = p.app_offset;
                end.committed = p.committed_offset;
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = pairs(tpl);
            let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
            for tp in &revoked {
                ends.remove(tp);
            }
            drop(ends);
            let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
            self.revocations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((epoch, revoked.clone()));
            self.push(Rebalanced::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let assigned = pairs(tpl);
        let mut starts = self.start_offsets.lock().unwrap_or_else(|e| e.into_inner());
        let delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        // The recovery point, else where the member stopped delivering a
        // partition it held before, wins over the committed offsets (which
        // lag: they are committed after a checkpoint, for monitoring).
        let mut returning = TopicPartitionList::new();
        let mut offsets: Vec<Option<i64>> = Vec::with_capacity(assigned.len());
        for tp in &assigned {
            let start = starts.remove(tp);
            if start.is_none()
                && let Some(&offset) = delivered.get(tp)
            {
                let _ = returning.add_partition_offset(&tp.0, tp.1, Offset::Offset(offset));
            }
            offsets.push(start.or_else(|| delivered.get(tp).copied()));
        }
        drop(delivered);
        drop(starts);
        if returning.count() > 0 {
            // Another member may have held the partition meanwhile and
            // committed beyond what this one delivered: start at the later.
            match consumer.committed_offsets(returning, COMMITTED_TIMEOUT) {
                Ok(committed) => {
                    for (tp, offset) in assigned.iter().zip(offsets.iter_mut()) {
                        if let Some(Offset::Offset(c)) =
                            committed.find_partition(&tp.0, tp.1).map(|e| e.offset())
                            && let Some(o) = offset.as_mut()
                        {
                            *o = (*o).max(c);
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot read the committed offsets of partitions assigned again; resuming them where this member stopped delivering"
                ),
            }
        }
        if offsets.iter().any(Option::is_some) {
            // Eager rebalancing: assigning again replaces the assignment.
            let mut with_offsets = TopicPartitionList::new();
            for ((topic, partition), offset) in assigned.iter().zip(&offsets) {
                let offset = offset.map_or(Offset::Stored, Offset::Offset);
                let _ = with_offsets.add_partition_offset(topic, *partition, offset);
            }
            if let Err(e) = consumer.assign(&with_offsets) {
                tracing::error!(error = %e, "cannot apply start offsets on assignment");
            }
        }
        self.push(Rebalanced::Assigned(assigned));
    }
}

impl SourceContext {
    fn push(&self, event: Rebalanced) {
        self.rebalances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    /// Marks a partition as having had a record taken by the poll thread.
    pub fn taken(&self, topic: &str, partition: i32) {
        self.ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((topic.to_owned(), partition))
            .or_default()
            .taken = true;
    }

    /// Takes the revocations recorded since the last call.
    pub fn take_revocations(&self) -> Vec<Revocation> {
        std::mem::take(&mut *self.revocations.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the rebalances recorded since the last call.
    pub fn take_rebalances(&self) -> Vec<Rebalanced> {
        std::mem::take(&mut *self.rebalances.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::PartitionEnds;

    fn ends(high: i64, low: i64, app: i64, committed: i64, taken: bool) -> PartitionEnds {
        PartitionEnds {
            high,
            low,
            app,
            committed,
            taken,
        }
    }

    #[test]
    fn a_position_without_records_is_never_ahead_of_the_batcher() {
        // The poll thread took records the batcher has not seen: unknown.
        assert_eq!(ends(100, 0, 40, 10, true).position_without_records(), None);
        // Otherwise the application's position, then the committed offset.
        assert_eq!(
            ends(100, 0, 40, 10, false).position_without_records(),
            Some(40)
        );
        assert_eq!(
            ends(100, 0, -1001, 10, false).position_without_records(),
            Some(10)
        );
        // An empty partition: at its end whatever the start.
        assert_eq!(
            ends(7, 7, -1001, -1001, false).position_without_records(),
            Some(7)
        );
        // Records, no position, no commit: unknown (not librdkafka's fetch
        // position, which counts prefetched records).
        assert_eq!(
            ends(100, 0, -1001, -1001, false).position_without_records(),
            None
        );
        assert_eq!(PartitionEnds::default().position_without_records(), None);
    }
}
