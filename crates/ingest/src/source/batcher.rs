//! The source's batcher thread, its loop: takes the poll thread's chunks,
//! decodes them into batches and dead letters, and emits a stream's rows
//! when full or lingered (and progress-only batches when quiet), sending
//! downstream (blocking while the bounded channels are full, which fills the
//! poll thread's hand-over and makes it pause the partitions).
//!
//! Its parts live beside it: [`super::progress`] (per-partition progress),
//! [`super::revocation`] (dropping what revoked partitions left),
//! [`super::held_dead_letters`] (dead letters held until the next batch) and
//! [`super::dlq`] (producing them to `<topic>.dlq`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use kpiflow_types::{DeadLetter, SourceBatch, Stream};

use super::context::SourceContext;
use super::dlq::DeadLetterTopics;
use super::held_dead_letters::HeldDeadLetters;
use super::poll::{Chunk, Input};
use super::progress::Part;
use super::revocation::Revocations;
use super::{SourceConfig, SourceStats};
use crate::decode::TopicDecoder;

/// Consecutive messages of one partition in a chunk.
struct Run {
    partition: i32,
    /// Not revoked since the chunk was started.
    ours: bool,
    /// Offsets below this were delivered already (the partition came back).
    delivered_below: i64,
    /// The last offset taken into the decoder.
    last_offset: Option<i64>,
}

/// Why the batcher stopped sending.
pub(super) enum Stopped {
    Cancelled,
    Closed,
}

pub(super) struct Batcher {
    pub(super) config: SourceConfig,
    pub(super) consumer: Arc<BaseConsumer<SourceContext>>,
    pub(super) stats: Arc<SourceStats>,
    /// Per stream (indexed by `Stream as usize`); `None` if not read.
    pub(super) decoders: [Option<TopicDecoder>; 4],
    /// When the oldest held row of each stream arrived (for the linger).
    pub(super) oldest: [Option<Instant>; 4],
    pub(super) parts: HashMap<(Stream, i32), Part>,
    /// Per partition, the offset after the last record sent downstream.
    pub(super) delivered: HashMap<(Stream, i32), i64>,
    last_batch: HashMap<Stream, Instant>,
    /// Records and bytes received since the stream's last batch, for metrics.
    unreported: HashMap<Stream, (u64, u64)>,
    batch_tx: mpsc::Sender<SourceBatch>,
    pub(super) dead_tx: mpsc::Sender<DeadLetter>,
    /// With dead-letter topics on.
    pub(super) dlq: Option<DeadLetterTopics>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) cancel: CancellationToken,
    pub(super) revocations: Revocations,
    pub(super) held: HeldDeadLetters,
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
        let max_rows = config.max_batch_rows;
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
            delivered: HashMap::new(),
            last_batch: HashMap::new(),
            unreported: HashMap::new(),
            batch_tx: outputs.0,
            dead_tx: outputs.1,
            dlq: dlq.map(DeadLetterTopics::new),
            runtime: tokio::runtime::Handle::current(),
            cancel,
            revocations: Revocations::default(),
            held: HeldDeadLetters::new(max_rows),
        }
    }

    /// Takes the poll thread's inputs until cancelled, until the batch
    /// receiver is dropped, or until the poll thread is gone; then gives
    /// the deliveries to dead-letter topics still outstanding a moment.
    pub fn run(mut self, inputs: Receiver<Input>) {
        self.serve(inputs);
        if let Some(dlq) = &mut self.dlq {
            dlq.flush_at_exit();
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
        let mut redelivered = 0u64;
        for m in chunk.messages() {
            if run.as_ref().is_none_or(|r| r.partition != m.partition) {
                self.end_run(stream, run.take(), chunk.received);
                run = Some(Run {
                    partition: m.partition,
                    ours: self
                        .revocations
                        .still_ours(stream, m.partition, chunk.epoch),
                    delivered_below: self.already_delivered(stream, m.partition),
                    last_offset: None,
                });
            }
            let current = run.as_mut().expect("a run was just started");
            if !current.ours {
                dropped += 1;
                continue;
            }
            if m.offset < current.delivered_below {
                redelivered += 1;
                continue;
            }
            current.last_offset = Some(m.offset);
            if let Err(dead) = self.decoder(stream).push(&m) {
                self.held.hold(*dead);
            }
            if self.decoder(stream).is_full() || self.held.is_full() {
                self.end_run(stream, run.take(), chunk.received);
                self.note_held();
                // The emit may apply a revocation: the next message starts a new run.
                self.emit(stream)?;
            }
        }
        self.end_run(stream, run, chunk.received);
        // Held dead letters wait for a batch: the linger bounds that wait
        // even when no row of the stream came with them.
        if !self.decoder(stream).is_empty() || !self.held.is_empty() {
            self.oldest[stream as usize].get_or_insert(chunk.received);
        }
        if dropped > 0 {
            self.stats
                .revoked_records
                .fetch_add(dropped, Ordering::Relaxed);
        }
        if redelivered > 0 {
            self.stats
                .redelivered_records
                .fetch_add(redelivered, Ordering::Relaxed);
            metrics::counter!("kpiflow_ingest_redelivered_records_total", "topic" => stream.name())
                .increment(redelivered);
        }
        self.note_held();
        Ok(())
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
            self.held.hold(d);
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
        self.note_delivered(stream);
        self.last_batch.insert(stream, Instant::now());
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.rows.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("kpiflow_ingest_batches_total", "topic" => stream.name()).increment(1);
        metrics::counter!("kpiflow_ingest_rows_total", "topic" => stream.name()).increment(n);
        Ok(())
    }

    /// Sends downstream, waiting for room while the channel is full (the
    /// poll thread pauses the partitions meanwhile).
    pub(super) fn send<T>(&self, tx: &mpsc::Sender<T>, item: T) -> Result<(), Stopped> {
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
