//! The source's poll thread: the only thread that polls the consumer. It
//! copies each message into a chunk of its stream and hands full chunks to
//! the batcher thread, so decoding runs beside librdkafka instead of between
//! two polls. Rebalances and statistics are served from `poll` here too.
//!
//! When the batcher cannot take a chunk, the poll thread pauses every
//! partition and keeps polling (rebalances must still be served) until the
//! chunk is taken; a message from a partition assigned meanwhile is kept and
//! that partition paused on sight.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, TopicPartitionList};
use tokio::sync::mpsc::WeakSender;
use tokio_util::sync::CancellationToken;

use kpiflow_types::{SourceBatch, Stream};

use super::SourceStats;
use super::context::{Rebalanced, SourceContext};
use crate::decode::RawMessage;

/// Longest wait in `poll` when there is nothing to hand over; bounds how
/// late a cancellation is seen.
const POLL_WAIT: Duration = Duration::from_millis(50);
/// Wait in `poll` while the batcher is full.
const BLOCKED_WAIT: Duration = Duration::from_millis(5);
/// A chunk goes to the batcher at the latest this long after its first message.
const CHUNK_LINGER: Duration = Duration::from_millis(5);
/// Between two tries to hand a chunk to a busy batcher.
const HAND_OVER_WAIT: Duration = Duration::from_micros(250);
/// Longest wait for a busy batcher before pausing instead.
const HAND_OVER_PATIENCE: Duration = Duration::from_millis(100);
/// Bytes of payload and key per chunk, at most (beyond one message).
const CHUNK_BYTES: usize = 1 << 20;

/// Copies of consecutive messages of one stream, in one buffer.
pub(super) struct Chunk {
    pub stream: Stream,
    /// The revocation epoch when the chunk was started: its records of a
    /// partition revoked later are no longer this member's to deliver.
    pub epoch: u64,
    bytes: Vec<u8>,
    payload_bytes: usize,
    messages: Vec<Meta>,
    first: Instant,
    /// When the last message was received.
    pub received: Instant,
}

struct Meta {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
}

impl Chunk {
    fn new(stream: Stream, epoch: u64, capacity: usize, now: Instant) -> Chunk {
        Chunk {
            stream,
            epoch,
            bytes: Vec::with_capacity(capacity * 256),
            payload_bytes: 0,
            messages: Vec::with_capacity(capacity),
            first: now,
            received: now,
        }
    }

    fn push(&mut self, m: &BorrowedMessage<'_>) {
        let mut copy = |part: Option<&[u8]>| {
            part.map(|p| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(p);
                start..self.bytes.len()
            })
        };
        let key = copy(m.key());
        let payload = copy(m.payload());
        self.payload_bytes += payload.as_ref().map_or(0, Range::len);
        self.messages.push(Meta {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key,
            payload,
        });
    }

    /// Messages in the chunk.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Payload and key bytes in the chunk (for its size bound).
    fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Payload bytes in the chunk.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// The messages, as the decoder takes them.
    pub fn messages(&self) -> impl Iterator<Item = RawMessage<'_>> {
        self.messages.iter().map(|m| RawMessage {
            partition: m.partition,
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            key: m.key.clone().map(|r| &self.bytes[r]),
            payload: m.payload.clone().map(|r| &self.bytes[r]),
        })
    }
}

/// What the poll thread tells the batcher, in order. Revocations go by the
/// context's epoch instead, so the batcher sees them before the chunks
/// queued ahead of them.
pub(super) enum Input {
    Chunk(Chunk),
    Assigned(Vec<(Stream, i32)>),
}

pub(super) struct Poller {
    consumer: Arc<BaseConsumer<SourceContext>>,
    streams: Vec<Stream>,
    chunk_messages: usize,
    tx: SyncSender<Input>,
    /// The batch channel, to resume only once it has room again.
    batches: WeakSender<SourceBatch>,
    stats: Arc<SourceStats>,
    cancel: CancellationToken,
    /// Chunk being filled, per stream (same order as `streams`).
    chunks: Vec<Option<Chunk>>,
    /// Inputs the batcher has not taken yet, oldest first.
    outbox: VecDeque<Input>,
    /// The partitions paused because the batcher is full.
    paused: Option<TopicPartitionList>,
    /// Messages taken since the clock was last read.
    unclocked: u32,
    now: Instant,
    /// Partitions (stream index, partition) with a record taken since their
    /// assignment, and the last one a record came from.
    taken: HashSet<(usize, i32)>,
    last_taken: Option<(usize, i32)>,
}

/// librdkafka retries transient errors itself; report and go on.
fn consumer_error(e: &rdkafka::error::KafkaError) {
    tracing::warn!(error = %e, "Kafka consumer error");
    metrics::counter!("kpiflow_ingest_consumer_errors_total").increment(1);
}

impl Poller {
    /// A poll thread for `streams`, handing chunks of up to `chunk_messages`
    /// to `outputs.0` and watching the batch channel `outputs.1` for room.
    pub fn new(
        consumer: Arc<BaseConsumer<SourceContext>>,
        streams: Vec<Stream>,
        chunk_messages: usize,
        outputs: (SyncSender<Input>, WeakSender<SourceBatch>),
        stats: Arc<SourceStats>,
        cancel: CancellationToken,
    ) -> Poller {
        Poller {
            consumer,
            chunks: streams.iter().map(|_| None).collect(),
            streams,
            chunk_messages,
            tx: outputs.0,
            batches: outputs.1,
            stats,
            cancel,
            outbox: VecDeque::new(),
            paused: None,
            unclocked: 0,
            now: Instant::now(),
            taken: HashSet::new(),
            last_taken: None,
        }
    }

    /// Polls until cancelled or the batcher is gone.
    pub fn run(mut self) {
        let consumer = self.consumer.clone();
        // Per message, only what must be: the cancellation token takes a lock,
        // so it is checked every 64 messages and whenever librdkafka is idle.
        let mut messages = 0u32;
        let mut check = true;
        loop {
            if check && self.cancel.is_cancelled() {
                break;
            }
            if !self.outbox.is_empty() && !self.hand_over() {
                break;
            }
            let blocked = !self.outbox.is_empty();
            if blocked {
                self.pause();
            } else if self.paused.is_some() && self.room_downstream() {
                self.resume();
            }
            let holding = self.chunks.iter().any(Option::is_some);
            let wait = if blocked {
                BLOCKED_WAIT
            } else if holding {
                Duration::ZERO
            } else {
                POLL_WAIT
            };
            check = match consumer.poll(wait) {
                Some(Ok(m)) => {
                    self.take(&m);
                    messages = messages.wrapping_add(1);
                    messages.is_multiple_of(64)
                }
                Some(Err(e)) => {
                    consumer_error(&e);
                    true
                }
                // librdkafka has nothing queued, or served a rebalance (`poll`
                // returns then): hand over what we hold.
                None => {
                    self.now = Instant::now();
                    self.flush(|_| true);
                    self.apply_rebalances();
                    true
                }
            };
        }
        self.consumer.unsubscribe();
    }

    /// Sends queued inputs while the batcher takes them; false once it is
    /// gone. While the batcher is busy decoding this waits for it (librdkafka
    /// keeps prefetching within `queued.max.messages.kbytes`); when it waits
    /// for room downstream, or is busy for longer than [`HAND_OVER_PATIENCE`]
    /// (a slow dead-letter topic), inputs stay queued and the caller pauses,
    /// so rebalances are served and `max.poll.interval.ms` is never exceeded.
    fn hand_over(&mut self) -> bool {
        // Read the clock only once the batcher is found busy.
        let mut since: Option<Instant> = None;
        while let Some(input) = self.outbox.pop_front() {
            let mut input = input;
            loop {
                match self.tx.try_send(input) {
                    Ok(()) => break,
                    Err(TrySendError::Disconnected(_)) => return false,
                    Err(TrySendError::Full(back)) => {
                        if self.stats.downstream_full.load(Ordering::Relaxed)
                            || self.cancel.is_cancelled()
                            || since.get_or_insert_with(Instant::now).elapsed()
                                >= HAND_OVER_PATIENCE
                        {
                            self.outbox.push_front(back);
                            return true;
                        }
                        input = back;
                        std::thread::sleep(HAND_OVER_WAIT);
                    }
                }
            }
        }
        true
    }

    fn take(&mut self, m: &BorrowedMessage<'_>) {
        let topic = m.topic();
        let Some(i) = self.streams.iter().position(|s| s.name() == topic) else {
            return;
        };
        self.unclocked += 1;
        let clocked = self.unclocked >= 32;
        if clocked {
            self.now = Instant::now();
            self.unclocked = 0;
        }
        if let Some(paused) = &mut self.paused
            && paused.find_partition(topic, m.partition()).is_none()
        {
            // Assigned while paused: keep this message, pause the partition.
            let mut one = TopicPartitionList::new();
            one.add_partition(topic, m.partition());
            if let Err(e) = self.consumer.pause(&one) {
                tracing::warn!(error = %e, "cannot pause a partition");
            }
            paused.add_partition(topic, m.partition());
        }
        if self.last_taken != Some((i, m.partition())) {
            self.last_taken = Some((i, m.partition()));
            if self.taken.insert((i, m.partition())) {
                self.consumer.context().taken(topic, m.partition());
            }
        }
        let (stream, capacity, now) = (self.streams[i], self.chunk_messages, self.now);
        let context = self.consumer.context();
        let chunk = self.chunks[i].get_or_insert_with(|| {
            Chunk::new(stream, context.epoch.load(Ordering::SeqCst), capacity, now)
        });
        chunk.push(m);
        chunk.received = now;
        if chunk.len() >= self.chunk_messages || chunk.bytes() >= CHUNK_BYTES {
            let full = self.chunks[i].take().expect("just filled");
            self.queue(full);
        }
        if clocked {
            let now = self.now;
            self.flush(|c| now.duration_since(c.first) >= CHUNK_LINGER);
        }
    }

    /// Queues the chunks that `due` picks for the batcher.
    fn flush(&mut self, due: impl Fn(&Chunk) -> bool) {
        for i in 0..self.chunks.len() {
            if self.chunks[i].as_ref().is_some_and(&due) {
                let chunk = self.chunks[i].take().expect("checked");
                self.queue(chunk);
            }
        }
    }

    /// Queues a chunk for the batcher; its records count as received.
    fn queue(&mut self, chunk: Chunk) {
        self.stats
            .records
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.outbox.push_back(Input::Chunk(chunk));
    }

    fn apply_rebalances(&mut self) {
        for event in self.consumer.context().take_rebalances() {
            let streams = |list: Vec<(String, i32)>| -> Vec<(Stream, i32)> {
                list.into_iter()
                    .filter_map(|(t, p)| t.parse::<Stream>().ok().map(|s| (s, p)))
                    .collect()
            };
            match event {
                Rebalanced::Assigned(list) => {
                    self.stats.assignments.fetch_add(1, Ordering::Relaxed);
                    self.outbox.push_back(Input::Assigned(streams(list)))
                }
                Rebalanced::Revoked(list) => {
                    // Later chunks start in the new epoch.
                    self.flush(|_| true);
                    for (stream, partition) in streams(list) {
                        if let Some(i) = self.streams.iter().position(|s| *s == stream) {
                            self.taken.remove(&(i, partition));
                        }
                    }
                    self.last_taken = None;
                }
            }
        }
    }

    fn pause(&mut self) {
        if self.paused.is_some() {
            return;
        }
        let assignment = self.consumer.assignment().unwrap_or_default();
        if let Err(e) = self.consumer.pause(&assignment) {
            tracing::warn!(error = %e, "cannot pause partitions");
        }
        self.paused = Some(assignment);
        self.stats.paused.store(true, Ordering::Relaxed);
        self.stats.pauses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("kpiflow_ingest_pauses_total").increment(1);
    }

    /// Whether the batch channel is at most half full (resuming at the first
    /// free slot would pause again at once, each time dropping librdkafka's
    /// prefetch).
    fn room_downstream(&self) -> bool {
        !self.stats.downstream_full.load(Ordering::Relaxed)
            && self
                .batches
                .upgrade()
                .is_none_or(|tx| tx.capacity() * 2 >= tx.max_capacity())
    }

    /// Resumes every partition paused, revoked ones included: librdkafka
    /// keeps an application pause on the partition, so one revoked while
    /// paused and assigned again later would otherwise never be fetched.
    fn resume(&mut self) {
        let Some(paused) = self.paused.take() else {
            return;
        };
        if let Err(e) = self.consumer.resume(&paused) {
            tracing::warn!(error = %e, "cannot resume partitions");
        }
        *self
            .stats
            .resumed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.stats.paused.store(false, Ordering::Relaxed);
    }
}
