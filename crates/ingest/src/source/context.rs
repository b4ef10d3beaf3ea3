//! The consumer's librdkafka callbacks: rebalances (recorded for the source
//! loop, and start offsets applied on assignment) and statistics (partition
//! end offsets, for idleness and lag).

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

/// A change of the partitions this consumer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// End offsets of one partition, from librdkafka's statistics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionEnds {
    /// High watermark: offset of the next record to be written.
    pub high: i64,
    /// Fetch position, or −1 when unknown.
    pub position: i64,
}

/// Shared between librdkafka's callbacks and the source loop.
#[derive(Default)]
pub struct SourceContext {
    pub rebalances: Mutex<Vec<Rebalanced>>,
    /// Offsets to start from on the next assignment, overriding committed ones.
    pub start_offsets: Mutex<HashMap<(String, i32), i64>>,
    pub ends: Mutex<HashMap<(String, i32), PartitionEnds>>,
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
                let position = if p.app_offset >= 0 {
                    p.app_offset
                } else {
                    p.next_offset
                };
                ends.insert(
                    (topic.clone(), partition),
                    PartitionEnds {
                        high: p.hi_offset,
                        position,
                    },
                );
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
            self.push(Rebalanced::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let assigned = pairs(tpl);
        let mut starts = self.start_offsets.lock().unwrap_or_else(|e| e.into_inner());
        if assigned.iter().any(|tp| starts.contains_key(tp)) {
            // Re-assign with explicit offsets: the recovery point wins over the
            // committed offsets (eager rebalancing replaces the assignment).
            let mut with_offsets = TopicPartitionList::new();
            for (topic, partition) in &assigned {
                let offset = match starts.remove(&(topic.clone(), *partition)) {
                    Some(o) => Offset::Offset(o),
                    None => Offset::Stored,
                };
                let _ = with_offsets.add_partition_offset(topic, *partition, offset);
            }
            if let Err(e) = consumer.assign(&with_offsets) {
                tracing::error!(error = %e, "cannot apply start offsets on assignment");
            }
        }
        drop(starts);
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

    /// Takes the rebalances recorded since the last call.
    pub fn take_rebalances(&self) -> Vec<Rebalanced> {
        std::mem::take(&mut *self.rebalances.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
