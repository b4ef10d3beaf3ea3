//! Dead letters held until the next batch goes out, so that none trails a
//! batch whose progress passed its offset: their bound (a batch's rows or
//! [`MAX_HELD_DEAD_BYTES`] of key and payload, whichever comes first; a full
//! hold emits the stream like a full batch), dropping those of revoked
//! partitions, and sending them (to `<topic>.dlq` first when enabled, then
//! downstream together).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use kpiflow_types::{DeadLetter, Stream};

use super::batcher::{Batcher, Stopped};

/// Dead letters' key and payload bytes held at most before they are sent.
const MAX_HELD_DEAD_BYTES: usize = 16 << 20;

/// Dead letters not sent yet, in order, and their key and payload bytes.
pub(super) struct HeldDeadLetters {
    dead: Vec<DeadLetter>,
    bytes: usize,
    /// Held at most before they are sent without waiting for the linger.
    max_rows: usize,
}

impl HeldDeadLetters {
    /// Holds up to `max_rows` dead letters (the batch size) or
    /// [`MAX_HELD_DEAD_BYTES`].
    pub(super) fn new(max_rows: usize) -> HeldDeadLetters {
        HeldDeadLetters {
            dead: Vec::new(),
            bytes: 0,
            max_rows,
        }
    }

    /// Holds a dead letter until the next batch goes out (see
    /// [`Batcher::send_dead_letters`]).
    pub(super) fn hold(&mut self, dead: DeadLetter) {
        self.bytes += dead_letter_bytes(&dead);
        self.dead.push(dead);
    }

    /// Enough dead letters are held to send them without waiting for the linger.
    pub(super) fn is_full(&self) -> bool {
        self.dead.len() >= self.max_rows || self.bytes >= MAX_HELD_DEAD_BYTES
    }

    pub(super) fn is_empty(&self) -> bool {
        self.dead.is_empty()
    }

    /// Drops the dead letters of `revoked` partitions (the next owner reads
    /// those records again from the last committed offset); returns how many.
    pub(super) fn drop_revoked(&mut self, revoked: &HashSet<(Stream, i32)>) -> usize {
        let before = self.dead.len();
        self.dead.retain(|d| {
            !d.topic
                .parse::<Stream>()
                .is_ok_and(|s| revoked.contains(&(s, d.partition)))
        });
        self.bytes = self.dead.iter().map(dead_letter_bytes).sum();
        before - self.dead.len()
    }
}

impl Batcher {
    /// Sends the dead letters held, before any batch whose progress covers
    /// their offsets, together rather than one by one (each send to an idle
    /// receiver wakes its thread). With dead-letter topics, each is first
    /// queued to `<topic>.dlq` (see [`DeadLetterTopics::produce`](super::dlq::DeadLetterTopics::produce)).
    pub(super) fn send_dead_letters(&mut self) -> Result<(), Stopped> {
        if self.held.is_empty() {
            return Ok(());
        }
        if let Some(dlq) = &mut self.dlq {
            dlq.produce(&self.held.dead, &self.runtime, &self.cancel)?;
            // Waiting for room in librdkafka's queue may have outlasted a
            // partition: its dead letters are then the next owner's.
            self.apply_revocations();
        }
        let dead = std::mem::take(&mut self.held.dead);
        self.held.bytes = 0;
        let tx = self.dead_tx.clone();
        for d in dead {
            metrics::counter!(
                "kpiflow_ingest_dead_letters_total",
                "topic" => d.topic.clone(),
                "reason" => d.kind.name()
            )
            .increment(1);
            self.send(&tx, d)?;
            self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn dead_letter_bytes(d: &DeadLetter) -> usize {
    d.key.as_ref().map_or(0, Vec::len) + d.payload.as_ref().map_or(0, Vec::len)
}
