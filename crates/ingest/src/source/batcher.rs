//! The source's batcher thread: decodes the poll thread's chunks into
//! batches and dead letters, tracks each partition's progress, and sends
//! downstream (blocking while the bounded channels are full, which fills the
//! poll thread's hand-over and makes it pause the partitions).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMillisecondType};
use futures::FutureExt;
use futures::channel::oneshot::Canceled;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use kpiflow_types::source::PARTITION_COLUMN;
use kpiflow_types::{DeadLetter, PartitionProgress, SourceBatch, Stream};

use super::context::SourceContext;
use super::poll::{Chunk, Input};
use super::{SourceConfig, SourceStats};
use crate::decode::TopicDecoder;

/// What the source knows of one partition it holds.
struct Part {
    /// Offset after the last record received.
    next_offset: Option<i64>,
    max_event_time_ms: Option<i64>,
    last_activity: Instant,
}

impl Part {
    fn new(now: Instant) -> Part {
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

/// Consecutive messages of one partition in a chunk.
struct Run {
    partition: i32,
    /// Not revoked since the chunk was started.
    ours: bool,
    /// The last offset taken into the decoder.
    last_offset: Option<i64>,
}

/// Why the batcher stopped sending.
pub(super) enum Stopped {
    Cancelled,
    Closed,
}

pub(super) struct Batcher {
    config: SourceConfig,
    consumer: Arc<BaseConsumer<SourceContext>>,
    stats: Arc<SourceStats>,
    /// Per stream (indexed by `Stream as usize`); `None` if not read.
    decoders: [Option<TopicDecoder>; 4],
    /// When the oldest held row of each stream arrived (for the linger).
    oldest: [Option<Instant>; 4],
    parts: HashMap<(Stream, i32), Part>,
    last_batch: HashMap<Stream, Instant>,
    /// Records and bytes received since the stream's last batch, for metrics.
    unreported: HashMap<Stream, (u64, u64)>,
    batch_tx: mpsc::Sender<SourceBatch>,
    dead_tx: mpsc::Sender<DeadLetter>,
    dlq: Option<FutureProducer>,
    runtime: tokio::runtime::Handle,
    cancel: CancellationToken,
    /// The newest revocation epoch applied.
    epoch_seen: u64,
    /// The epoch each partition was last revoked in.
    revoked_at: HashMap<(Stream, i32), u64>,
    /// Dead letters not sent yet, in order, and their key and payload bytes.
    dead: Vec<DeadLetter>,
    dead_bytes: usize,
    /// Deliveries to the dead-letter topics not yet complete, oldest first.
    deliveries: VecDeque<DeliveryFuture>,
}

impl Batcher {
    pub fn new(
        config: SourceConfig,
        consumer: Arc<BaseConsumer<SourceContext>>,
        stats: Arc<SourceStats>,
        outputs: (mpsc::Sender<SourceBatch>, mpsc::Sender<DeadLetter>),
        dlq: Option<FutureProducer>,
        cancel: CancellationToken,
    ) -> Batcher {
        Batcher {
            decoders: Stream::ALL.map(|s| {
                config.streams.contains(&s).then(|| {
                    TopicDecoder::with_time_bounds(s, config.max_batch_rows, config.time_bounds)
                })
            }),
            config,
            consumer,
            stats,
            oldest: [None; 4],
            parts: HashMap::new(),
            last_batch: HashMap::new(),
            unreported: HashMap::new(),
            batch_tx: outputs.0,
            dead_tx: outputs.1,
            dlq,
            runtime: tokio::runtime::Handle::current(),
            cancel,
            epoch_seen: 0,
            revoked_at: HashMap::new(),
            dead: Vec::new(),
            dead_bytes: 0,
            deliveries: VecDeque::new(),
        }
    }

    /// Takes the poll thread's inputs until cancelled, until the batch
    /// receiver is dropped, or until the poll thread is gone; then gives
    /// the deliveries to dead-letter topics still outstanding a moment.
    pub fn run(mut self, inputs: Receiver<Input>) {
        self.serve(inputs);
        if let Some(producer) = &self.dlq
            && producer.in_flight_count() > 0
        {
            if let Err(e) = producer.flush(DLQ_FLUSH) {
                tracing::warn!(error = %e, "dead letters still queued for their topics at exit");
            }
            self.reap_deliveries();
            if !self.deliveries.is_empty() {
                tracing::error!(
                    dead_letters = self.deliveries.len(),
                    "dead letters not delivered to their topics at exit"
                );
                metrics::counter!("kpiflow_ingest_dlq_failures_total")
                    .increment(self.deliveries.len() as u64);
            }
        }
    }

    fn serve(&mut self, inputs: Receiver<Input>) {
        // Heartbeats are due every half idle timeout at the most often (at
        // least 500 ms): checking for them every 50 ms is close enough. A
        // stream's held rows go out when their linger ends, to the wake-up.
        let tick = Duration::from_millis(50);
        let mut next_tick = Instant::now() + tick;
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let wake = self.linger_ends().map_or(next_tick, |t| t.min(next_tick));
            let input = inputs.recv_timeout(wake.saturating_duration_since(Instant::now()));
            // Revocations first: they may be newer than the input.
            self.apply_revocations();
            let step = match input {
                Ok(Input::Chunk(chunk)) => self.on_chunk(&chunk),
                Ok(Input::Assigned(list)) => {
                    let now = Instant::now();
                    for key in list {
                        self.parts.insert(key, Part::new(now));
                    }
                    Ok(())
                }
                Err(RecvTimeoutError::Timeout) => Ok(()),
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if step.is_err() {
                return;
            }
            let now = Instant::now();
            if self.emit_lingered(now).is_err() {
                return;
            }
            if now >= next_tick {
                if self.heartbeats(now).is_err() {
                    return;
                }
                next_tick = now + tick;
            }
        }
    }

    /// When the first stream's held rows have waited their linger.
    fn linger_ends(&self) -> Option<Instant> {
        let oldest = self.oldest.iter().flatten().min()?;
        oldest.checked_add(self.config.linger)
    }

    /// Drops the held rows and progress of partitions revoked since the last
    /// call, and remembers when, so rows of theirs still queued in older
    /// chunks are dropped too: they are the next owner's to deliver.
    fn apply_revocations(&mut self) {
        let context = self.consumer.context();
        if context.epoch.load(std::sync::atomic::Ordering::SeqCst) == self.epoch_seen {
            return;
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
        if !revoked.is_empty() {
            self.drop_revoked(&revoked);
        }
    }

    fn drop_revoked(&mut self, revoked: &HashSet<(Stream, i32)>) {
        // Dead letters held are dropped with the rows: the next owner reads
        // those records again from the last committed offset.
        let before = self.dead.len();
        self.dead.retain(|d| {
            !d.topic
                .parse::<Stream>()
                .is_ok_and(|s| revoked.contains(&(s, d.partition)))
        });
        self.dead_bytes = self.dead.iter().map(dead_letter_bytes).sum();
        self.stats
            .revoked_records
            .fetch_add((before - self.dead.len()) as u64, Ordering::Relaxed);
        let holding_dead = !self.dead.is_empty();
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

    fn on_chunk(&mut self, chunk: &Chunk) -> Result<(), Stopped> {
        let stream = chunk.stream;
        // The future-skew bound is measured from the clock once a chunk.
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.decoder(stream).set_wall_clock_ms(now_ms);
        let unreported = self.unreported.entry(stream).or_default();
        unreported.0 += chunk.len() as u64;
        unreported.1 += chunk.payload_bytes() as u64;
        // Consecutive messages mostly share a partition: one lookup per run.
        let mut run: Option<Run> = None;
        let mut dropped = 0u64;
        for m in chunk.messages() {
            if run.as_ref().is_none_or(|r| r.partition != m.partition) {
                self.end_run(stream, run.take(), chunk.received);
                run = Some(Run {
                    partition: m.partition,
                    ours: self.still_ours(stream, m.partition, chunk.epoch),
                    last_offset: None,
                });
            }
            let current = run.as_mut().expect("a run was just started");
            if !current.ours {
                dropped += 1;
                continue;
            }
            current.last_offset = Some(m.offset);
            if let Err(dead) = self.decoder(stream).push(&m) {
                self.hold_dead_letter(*dead);
            }
            if self.decoder(stream).is_full() || self.dead_full() {
                self.end_run(stream, run.take(), chunk.received);
                self.note_held();
                // The emit may apply a revocation: the next message starts a new run.
                self.emit(stream)?;
            }
        }
        self.end_run(stream, run, chunk.received);
        // Held dead letters wait for a batch: the linger bounds that wait
        // even when no row of the stream came with them.
        if !self.decoder(stream).is_empty() || !self.dead.is_empty() {
            self.oldest[stream as usize].get_or_insert(chunk.received);
        }
        if dropped > 0 {
            self.stats
                .revoked_records
                .fetch_add(dropped, Ordering::Relaxed);
        }
        self.note_held();
        Ok(())
    }

    /// Whether records of `partition` from a chunk started in `epoch` are
    /// still this member's (the partition was not revoked since).
    fn still_ours(&self, stream: Stream, partition: i32, epoch: u64) -> bool {
        self.revoked_at.is_empty()
            || self
                .revoked_at
                .get(&(stream, partition))
                .is_none_or(|&e| e <= epoch)
    }

    /// Records the progress of a finished run of one partition's messages.
    fn end_run(&mut self, stream: Stream, run: Option<Run>, at: Instant) {
        if let Some(Run {
            partition,
            last_offset: Some(offset),
            ..
        }) = run
        {
            self.seen(stream, partition, offset, at);
        }
    }

    fn decoder(&mut self, stream: Stream) -> &mut TopicDecoder {
        self.decoders[stream as usize]
            .as_mut()
            .expect("a decoder per subscribed stream")
    }

    /// A record of `partition` at `offset` was received at `at`.
    fn seen(&mut self, stream: Stream, partition: i32, offset: i64, at: Instant) {
        let part = self
            .parts
            .entry((stream, partition))
            .or_insert_with(|| Part::new(at));
        part.next_offset = Some(part.next_offset.map_or(offset + 1, |n| n.max(offset + 1)));
        part.last_activity = at;
    }

    fn note_held(&self) {
        let held: usize = self.decoders.iter().flatten().map(TopicDecoder::len).sum();
        self.stats
            .max_held_rows
            .fetch_max(held as u64, Ordering::Relaxed);
    }

    /// Emits the streams whose held rows have waited their linger.
    fn emit_lingered(&mut self, now: Instant) -> Result<(), Stopped> {
        for stream in Stream::ALL {
            if self.oldest[stream as usize]
                .is_some_and(|t| now.duration_since(t) >= self.config.linger)
            {
                self.emit(stream)?;
            }
        }
        Ok(())
    }

    fn heartbeats(&mut self, now: Instant) -> Result<(), Stopped> {
        // Progress-only batches keep watermarks moving while nothing arrives.
        let heartbeat = self.config.idle_timeout.min(Duration::from_secs(1)) / 2;
        let streams: Vec<Stream> = self.config.streams.clone();
        for stream in streams {
            let quiet = self
                .last_batch
                .get(&stream)
                .is_none_or(|t| now.duration_since(*t) >= heartbeat);
            let holds = self.parts.keys().any(|(s, _)| *s == stream);
            if quiet && holds && self.decoder(stream).is_empty() {
                self.emit(stream)?;
            }
        }
        Ok(())
    }

    /// Sends the stream's held rows (possibly none) with its partitions' progress.
    fn emit(&mut self, stream: Stream) -> Result<(), Stopped> {
        // Dead letters first: sending them may wait (for the dead-letter
        // topic, or for room downstream), and a revocation meanwhile must
        // still keep the revoked partitions' rows and progress out of this batch.
        self.send_dead_letters()?;
        self.apply_revocations();
        self.oldest[stream as usize] = None;
        if let Some((records, bytes)) = self.unreported.remove(&stream) {
            metrics::counter!("kpiflow_ingest_records_total", "topic" => stream.name())
                .increment(records);
            metrics::counter!("kpiflow_ingest_bytes_total", "topic" => stream.name())
                .increment(bytes);
        }
        let decoder = self.decoder(stream);
        let started = Instant::now();
        let (batch, dead) = decoder.finish();
        metrics::histogram!("kpiflow_ingest_decode_seconds", "topic" => stream.name())
            .record(started.elapsed().as_secs_f64());
        for d in dead {
            self.hold_dead_letter(d);
        }
        self.send_dead_letters()?;
        let rows = batch.unwrap_or_else(|| RecordBatch::new_empty(stream.source_schema()));
        self.track_event_times(stream, &rows);
        let partitions = self.progress(stream);
        let n = rows.num_rows() as u64;
        let batch = SourceBatch {
            stream,
            rows,
            partitions,
        };
        let tx = self.batch_tx.clone();
        self.send(&tx, batch)?;
        self.last_batch.insert(stream, Instant::now());
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.rows.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("kpiflow_ingest_batches_total", "topic" => stream.name()).increment(1);
        metrics::counter!("kpiflow_ingest_rows_total", "topic" => stream.name()).increment(n);
        Ok(())
    }

    fn track_event_times(&mut self, stream: Stream, rows: &RecordBatch) {
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

    fn progress(&self, stream: Stream) -> Vec<PartitionProgress> {
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
                let position = part
                    .next_offset
                    .or_else(|| end.and_then(|e| e.position_without_records()));
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

    /// Holds a dead letter until the next batch goes out (see
    /// [`Batcher::send_dead_letters`]).
    fn hold_dead_letter(&mut self, dead: DeadLetter) {
        self.dead_bytes += dead_letter_bytes(&dead);
        self.dead.push(dead);
    }

    /// Enough dead letters are held to send them without waiting for the linger.
    fn dead_full(&self) -> bool {
        self.dead.len() >= self.config.max_batch_rows || self.dead_bytes >= MAX_HELD_DEAD_BYTES
    }

    /// Sends the dead letters held, before any batch whose progress covers
    /// their offsets, together rather than one by one (each send to an idle
    /// receiver wakes its thread). With dead-letter topics, each is first
    /// queued to `<topic>.dlq` (see [`Batcher::produce_dead_letters`]).
    fn send_dead_letters(&mut self) -> Result<(), Stopped> {
        if self.dead.is_empty() {
            return Ok(());
        }
        if self.dlq.is_some() {
            self.produce_dead_letters()?;
            // Waiting for room in librdkafka's queue may have outlasted a
            // partition: its dead letters are then the next owner's.
            self.apply_revocations();
        }
        let dead = std::mem::take(&mut self.dead);
        self.dead_bytes = 0;
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

    /// Queues the held dead letters to their `<topic>.dlq` without waiting
    /// for each delivery: a round trip per batch slowed a source with 1 %
    /// bad records to a tenth of its rate (bench `consume`,
    /// `KPIFLOW_BENCH_DLQ=1`). Deliveries are reaped as they complete and
    /// waited for only when [`DLQ_MAX_PENDING`] are outstanding or
    /// librdkafka's queue is full. The dead-letter sink, not the topic, is
    /// the record of a dead letter: one whose delivery fails is counted and
    /// logged, and still handed downstream.
    fn produce_dead_letters(&mut self) -> Result<(), Stopped> {
        let Some(producer) = self.dlq.clone() else {
            return Ok(());
        };
        for i in 0..self.dead.len() {
            let mut full_since: Option<Instant> = None;
            loop {
                self.reap_deliveries();
                if self.deliveries.len() >= DLQ_MAX_PENDING {
                    self.await_oldest_delivery()?;
                    continue;
                }
                let topic = format!("{}.dlq", self.dead[i].topic);
                let queued = match producer.send_result(dead_letter_record(&self.dead[i], &topic)) {
                    Ok(delivery) => Ok(delivery),
                    Err((e, _)) => Err(e),
                };
                match queued {
                    Ok(delivery) => {
                        self.deliveries.push_back(delivery);
                        break;
                    }
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
                        if !self.deliveries.is_empty() =>
                    {
                        self.await_oldest_delivery()?;
                    }
                    // librdkafka frees a slot just after the delivery it
                    // reported: give it a moment, but not forever (a message
                    // larger than the whole queue never fits).
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
                        if full_since.get_or_insert_with(Instant::now).elapsed()
                            < DLQ_QUEUE_PATIENCE =>
                    {
                        let pause = self.runtime.block_on(async {
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_millis(10)) => Ok(()),
                                _ = self.cancel.cancelled() => Err(Stopped::Cancelled),
                            }
                        });
                        pause?;
                    }
                    Err(e) => {
                        tracing::error!(%topic, error = %e, "cannot produce a dead letter to its topic");
                        metrics::counter!("kpiflow_ingest_dlq_failures_total").increment(1);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes the deliveries that completed, oldest first, without waiting.
    fn reap_deliveries(&mut self) {
        while let Some(oldest) = self.deliveries.front_mut() {
            let Some(result) = oldest.now_or_never() else {
                return;
            };
            self.deliveries.pop_front();
            delivered(result);
        }
    }

    /// Waits for the oldest delivery to a dead-letter topic.
    fn await_oldest_delivery(&mut self) -> Result<(), Stopped> {
        let Some(oldest) = self.deliveries.pop_front() else {
            return Ok(());
        };
        let result = self.runtime.block_on(async {
            tokio::select! {
                result = oldest => Some(result),
                _ = self.cancel.cancelled() => None,
            }
        });
        delivered(result.ok_or(Stopped::Cancelled)?);
        Ok(())
    }

    /// Sends downstream, waiting for room while the channel is full (the
    /// poll thread pauses the partitions meanwhile).
    fn send<T>(&self, tx: &mpsc::Sender<T>, item: T) -> Result<(), Stopped> {
        let item = match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(Stopped::Closed),
            Err(TrySendError::Full(item)) => item,
        };
        self.stats.downstream_full.store(true, Ordering::Relaxed);
        let sent = self.runtime.block_on(async {
            tokio::select! {
                permit = tx.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(item);
                        Ok(())
                    }
                    Err(_) => Err(Stopped::Closed),
                },
                _ = self.cancel.cancelled() => Err(Stopped::Cancelled),
            }
        });
        self.stats.downstream_full.store(false, Ordering::Relaxed);
        sent
    }
}

/// Dead letters' key and payload bytes held at most before they are sent.
const MAX_HELD_DEAD_BYTES: usize = 16 << 20;
/// How long the batcher waits at exit for its dead-letter deliveries.
const DLQ_FLUSH: Duration = Duration::from_secs(1);
/// How long a dead letter waits for room in librdkafka's queue when no
/// delivery is outstanding.
const DLQ_QUEUE_PATIENCE: Duration = Duration::from_millis(100);
/// Deliveries to the dead-letter topics outstanding at most.
const DLQ_MAX_PENDING: usize = 10_000;

fn dead_letter_bytes(d: &DeadLetter) -> usize {
    d.key.as_ref().map_or(0, Vec::len) + d.payload.as_ref().map_or(0, Vec::len)
}

/// The record of `dead` for `topic` (its `<topic>.dlq`): its key and raw
/// bytes, with its reason, kind, partition and offset as headers.
fn dead_letter_record<'a>(dead: &'a DeadLetter, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "kpiflow.reason",
            value: Some(dead.reason.as_str()),
        })
        .insert(Header {
            key: "kpiflow.kind",
            value: Some(dead.kind.name()),
        })
        .insert(Header {
            key: "kpiflow.partition",
            value: Some(&dead.partition.to_string()),
        })
        .insert(Header {
            key: "kpiflow.offset",
            value: Some(&dead.offset.to_string()),
        });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(key) = &dead.key {
        record = record.key(key);
    }
    if let Some(payload) = &dead.payload {
        record = record.payload(payload);
    }
    record
}

/// Counts and logs a failed delivery to a dead-letter topic.
fn delivered(result: Result<OwnedDeliveryResult, Canceled>) {
    let error = match result {
        Ok(Ok(_)) => return,
        Ok(Err((e, _))) => e.to_string(),
        Err(Canceled) => "the producer was dropped".to_owned(),
    };
    tracing::error!(%error, "cannot produce a dead letter to its topic");
    metrics::counter!("kpiflow_ingest_dlq_failures_total").increment(1);
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
