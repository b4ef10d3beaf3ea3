//! The Kafka source: one consumer-group member reading the stream topics into
//! decoded [`SourceBatch`]es and [`DeadLetter`]s.
//!
//! - Offsets are never committed automatically: only [`SourceHandle::commit`]
//!   commits, and the checkpoint layer calls it once a checkpoint is durable.
//! - Both output channels are bounded. When one is full the source pauses all
//!   its partitions (librdkafka stops fetching) instead of buffering, keeps
//!   serving rebalances, and resumes once there is room.
//! - On revocation, held rows of revoked partitions are dropped uncommitted,
//!   so the partition's next owner reads them again; on assignment the source
//!   starts from the committed offsets, or from those the caller gave.
//! - Each batch carries, per partition, the largest event time seen and
//!   whether the partition is idle (caught up with its end and quiet for the
//!   idle timeout); a paused or lagging partition is never idle. Batches with
//!   no rows carry that progress when nothing arrives.

mod context;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMillisecondType};
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use kpiflow_types::source::PARTITION_COLUMN;
use kpiflow_types::{DeadLetter, PartitionProgress, SourceBatch, Stream};

use crate::decode::{RawMessage, TopicDecoder};
use crate::error::{Error, Result};
use crate::kafka::{client_config, cluster_metadata, config_error, run_blocking};
use context::{Rebalanced, SourceContext};

/// How a source reads its topics.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group; every `kpiflow run` process of a pipeline shares it.
    pub group_id: String,
    /// The streams to read (topic = stream name).
    pub streams: Vec<Stream>,
    /// Rows per batch at most.
    pub max_batch_rows: usize,
    /// A batch goes out at the latest this long after its first row arrived.
    pub linger: Duration,
    /// A caught-up partition with no data for this long is idle.
    pub idle_timeout: Duration,
    /// Batches waiting for the engine, at most.
    pub batch_capacity: usize,
    /// Dead letters waiting for their sink, at most.
    pub dead_letter_capacity: usize,
    /// Also produce every dead letter to `<topic>.dlq`.
    pub dead_letter_topics: bool,
    /// Offsets to start from, overriding committed ones (recovery).
    pub start_offsets: HashMap<(String, i32), i64>,
    /// Where to start without a committed offset: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// Any librdkafka property (`security.protocol`, `sasl.*`, `ssl.*`, …), applied last.
    pub properties: Vec<(String, String)>,
    /// Bound on waiting for the broker at start-up.
    pub connect_timeout: Duration,
}

impl SourceConfig {
    /// A source of all four streams with the default batching and bounds.
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> SourceConfig {
        SourceConfig {
            brokers: brokers.into(),
            group_id: group_id.into(),
            streams: Stream::ALL.to_vec(),
            max_batch_rows: 8192,
            linger: Duration::from_millis(50),
            idle_timeout: Duration::from_secs(5),
            batch_capacity: 8,
            dead_letter_capacity: 4096,
            dead_letter_topics: false,
            start_offsets: HashMap::new(),
            auto_offset_reset: "earliest".into(),
            properties: Vec::new(),
            connect_timeout: Duration::from_secs(10),
        }
    }

    fn validate(&self) -> Result<()> {
        let problem = if self.streams.is_empty() {
            Some("a source needs at least one stream".to_owned())
        } else if self.max_batch_rows == 0 {
            Some("the batch size must be at least 1 row".to_owned())
        } else if self.batch_capacity == 0 || self.dead_letter_capacity == 0 {
            Some("channel capacities must be at least 1".to_owned())
        } else if self.linger.is_zero() {
            Some("the linger must be above zero (e.g. 50ms)".to_owned())
        } else if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            Some(format!(
                "auto.offset.reset must be earliest or latest, got '{}'",
                self.auto_offset_reset
            ))
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(Error::InvalidOption(p)))
    }
}

/// Counters of one source, for tests and the demo (metrics carry the same).
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Records received from Kafka.
    pub records: AtomicU64,
    /// Rows handed downstream in batches.
    pub rows: AtomicU64,
    /// Dead letters handed downstream.
    pub dead_letters: AtomicU64,
    /// Batches handed downstream (progress-only ones included).
    pub batches: AtomicU64,
    /// Times the source paused its partitions because downstream was full.
    pub pauses: AtomicU64,
    /// Records dropped uncommitted because their partition was revoked.
    pub revoked_records: AtomicU64,
    /// Most rows ever held waiting for a batch.
    pub max_held_rows: AtomicU64,
}

/// Commits offsets and reads counters of a running source.
#[derive(Clone)]
pub struct SourceHandle {
    consumer: Arc<StreamConsumer<SourceContext>>,
    stats: Arc<SourceStats>,
}

impl SourceHandle {
    /// Commits `(stream, partition, next offset)` synchronously: after a
    /// restart the group resumes from these offsets.
    pub async fn commit(&self, offsets: &[(Stream, i32, i64)]) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (stream, partition, offset) in offsets {
            tpl.add_partition_offset(stream.name(), *partition, Offset::Offset(*offset))
                .map_err(|e| Error::Commit(e.to_string()))?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| Error::Commit(e.to_string()))?
            .map_err(|e| Error::Commit(e.to_string()))
    }

    /// The source's counters.
    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    /// The partitions this member holds now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer
            .assignment()
            .map(|tpl| context::pairs(&tpl))
            .unwrap_or_default()
    }
}

/// A running source: its outputs, a handle, and the task (which ends with
/// `Ok` on cancellation or when the batch receiver is dropped).
pub struct Source {
    pub batches: mpsc::Receiver<SourceBatch>,
    pub dead_letters: mpsc::Receiver<DeadLetter>,
    pub handle: SourceHandle,
    pub task: JoinHandle<Result<()>>,
}

/// Connects, checks the topics exist, joins the group and starts reading.
pub async fn start(config: SourceConfig, cancel: CancellationToken) -> Result<Source> {
    config.validate()?;
    let client = client_config(
        &config.brokers,
        &[
            ("group.id", &config.group_id),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", &config.auto_offset_reset),
            ("enable.partition.eof", "false"),
            // Bounds librdkafka's prefetch (default 64 MiB for the consumer queue).
            ("queued.max.messages.kbytes", "16384"),
            // When the prefetch queue is over its bound librdkafka re-checks after
            // this long before fetching again (default 1 s). A source that decodes
            // a little slower than the broker delivers hits the bound all the time;
            // with the default it read 84k records/s, with 10 ms 392k (bench
            // `consume`, mock cluster, 100k records).
            ("fetch.queue.backoff.ms", "10"),
            ("statistics.interval.ms", "500"),
        ],
        &config.properties,
    );
    let context = SourceContext::default();
    *context
        .start_offsets
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = config.start_offsets.clone();
    let consumer: StreamConsumer<SourceContext> =
        client.create_with_context(context).map_err(config_error)?;
    let consumer = Arc::new(consumer);
    {
        let consumer = consumer.clone();
        let brokers = config.brokers.clone();
        let timeout = config.connect_timeout;
        let topics: Vec<&'static str> = config.streams.iter().map(|s| s.name()).collect();
        run_blocking(move || {
            let metadata = cluster_metadata(consumer.client(), &brokers, timeout)?;
            for topic in topics {
                let found = metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none());
                if !found {
                    return Err(Error::Topic {
                        topic: topic.to_owned(),
                        reason: format!(
                            "does not exist on {brokers}; create it (`kpiflow produce` creates the stream topics) or fix the topic name"
                        ),
                    });
                }
            }
            Ok(())
        })
        .await?;
    }
    let topics: Vec<&str> = config.streams.iter().map(|s| s.name()).collect();
    consumer.subscribe(&topics).map_err(|e| Error::Topic {
        topic: topics.join(", "),
        reason: format!("cannot subscribe: {e}"),
    })?;

    let dlq = if config.dead_letter_topics {
        let mut producer_config = client_config(&config.brokers, &[], &config.properties);
        producer_config.set("message.timeout.ms", "30000");
        Some(
            producer_config
                .create::<FutureProducer>()
                .map_err(config_error)?,
        )
    } else {
        None
    };
    let (batch_tx, batches) = mpsc::channel(config.batch_capacity);
    let (dead_tx, dead_letters) = mpsc::channel(config.dead_letter_capacity);
    let stats = Arc::new(SourceStats::default());
    let handle = SourceHandle {
        consumer: consumer.clone(),
        stats: stats.clone(),
    };
    let worker = Worker {
        decoders: config
            .streams
            .iter()
            .map(|&s| (s, TopicDecoder::new(s, config.max_batch_rows)))
            .collect(),
        config,
        consumer,
        stats,
        oldest: HashMap::new(),
        parts: HashMap::new(),
        last_batch: HashMap::new(),
        unreported: HashMap::new(),
        batch_tx,
        dead_tx,
        dlq,
        deferred: Vec::new(),
        paused: false,
        cancel,
    };
    let task = tokio::spawn(worker.run());
    Ok(Source {
        batches,
        dead_letters,
        handle,
        task,
    })
}

/// Records taken from librdkafka's queue per wakeup, at most.
const BURST: usize = 4096;

/// librdkafka retries transient errors itself; report and go on.
fn consumer_error(e: &rdkafka::error::KafkaError) {
    tracing::warn!(error = %e, "Kafka consumer error");
    metrics::counter!("kpiflow_ingest_consumer_errors_total").increment(1);
}

/// What the source knows of one partition it holds.
struct Part {
    /// Offset after the last record received.
    next_offset: Option<i64>,
    max_event_time_ms: Option<i64>,
    last_activity: Instant,
}

/// Why a wait for downstream room ended without sending.
enum Stopped {
    Cancelled,
    Closed,
}

struct Worker {
    config: SourceConfig,
    consumer: Arc<StreamConsumer<SourceContext>>,
    stats: Arc<SourceStats>,
    decoders: HashMap<Stream, TopicDecoder>,
    /// When the oldest held row of each stream arrived (for the linger).
    oldest: HashMap<Stream, Instant>,
    parts: HashMap<(Stream, i32), Part>,
    last_batch: HashMap<Stream, Instant>,
    /// Records and bytes received since the stream's last batch, for metrics.
    unreported: HashMap<Stream, (u64, u64)>,
    batch_tx: mpsc::Sender<SourceBatch>,
    dead_tx: mpsc::Sender<DeadLetter>,
    dlq: Option<FutureProducer>,
    /// Records received while paused (from partitions assigned meanwhile); at
    /// most one per partition, since each such partition is paused on sight.
    deferred: Vec<OwnedMessage>,
    paused: bool,
    cancel: CancellationToken,
}

impl Worker {
    async fn run(mut self) -> Result<()> {
        let consumer = self.consumer.clone();
        let mut messages = consumer.stream();
        let mut tick = tokio::time::interval(self.config.linger.min(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            self.apply_rebalances();
            let mut stopped = false;
            for m in std::mem::take(&mut self.deferred) {
                if self.on_message(&m).await.is_err() {
                    stopped = true;
                    break;
                }
            }
            if stopped {
                break Ok(());
            }
            let step = tokio::select! {
                _ = self.cancel.cancelled() => Err(Stopped::Cancelled),
                m = messages.next() => match m {
                    Some(Ok(m)) => {
                        // Take what librdkafka already has queued without going
                        // back through the select: per-wakeup costs (timer,
                        // cancellation, waker registration) then amortize over
                        // up to BURST records.
                        let mut step = self.on_message(&m).await;
                        let mut taken = 1;
                        while step.is_ok() && taken < BURST {
                            match messages.next().now_or_never() {
                                Some(Some(Ok(m))) => {
                                    self.apply_rebalances();
                                    step = self.on_message(&m).await;
                                    taken += 1;
                                }
                                Some(Some(Err(e))) => {
                                    consumer_error(&e);
                                    break;
                                }
                                _ => break,
                            }
                        }
                        step
                    }
                    Some(Err(e)) => {
                        consumer_error(&e);
                        Ok(())
                    }
                    None => Err(Stopped::Closed),
                },
                _ = tick.tick() => self.on_tick().await,
            };
            match step {
                Ok(()) => {}
                Err(Stopped::Cancelled) | Err(Stopped::Closed) => break Ok(()),
            }
        };
        drop(messages);
        self.consumer.unsubscribe();
        outcome
    }

    fn apply_rebalances(&mut self) {
        for event in self.consumer.context().take_rebalances() {
            match event {
                Rebalanced::Assigned(list) => {
                    for (topic, partition) in list {
                        if let Ok(stream) = topic.parse::<Stream>() {
                            self.parts.insert(
                                (stream, partition),
                                Part {
                                    next_offset: None,
                                    max_event_time_ms: None,
                                    last_activity: Instant::now(),
                                },
                            );
                        }
                    }
                }
                Rebalanced::Revoked(list) => {
                    let revoked: HashSet<(String, i32)> = list.into_iter().collect();
                    for (stream, decoder) in &mut self.decoders {
                        let before = decoder.len();
                        decoder.retain_partitions(|p| {
                            !revoked.contains(&(stream.name().to_owned(), p))
                        });
                        let dropped = (before - decoder.len()) as u64;
                        self.stats
                            .revoked_records
                            .fetch_add(dropped, Ordering::Relaxed);
                        if decoder.is_empty() {
                            self.oldest.remove(stream);
                        }
                    }
                    self.deferred
                        .retain(|m| !revoked.contains(&(m.topic().to_owned(), m.partition())));
                    self.parts.retain(|(stream, partition), _| {
                        !revoked.contains(&(stream.name().to_owned(), *partition))
                    });
                    tracing::info!(partitions = revoked.len(), "partitions revoked");
                }
            }
        }
    }

    async fn on_message<M: Message>(&mut self, m: &M) -> Result<(), Stopped> {
        let Ok(stream) = m.topic().parse::<Stream>() else {
            return Ok(());
        };
        let size = m.payload().map_or(0, <[u8]>::len) as u64;
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        let unreported = self.unreported.entry(stream).or_default();
        unreported.0 += 1;
        unreported.1 += size;
        let now = Instant::now();
        let part = self.parts.entry((stream, m.partition())).or_insert(Part {
            next_offset: None,
            max_event_time_ms: None,
            last_activity: now,
        });
        part.next_offset = Some(m.offset() + 1);
        part.last_activity = now;
        let raw = RawMessage {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key(),
            payload: m.payload(),
        };
        let decoder = self
            .decoders
            .get_mut(&stream)
            .expect("a decoder per subscribed stream");
        match decoder.push(&raw) {
            Ok(()) => {
                self.oldest.entry(stream).or_insert(now);
                let held: usize = self.decoders.values().map(TopicDecoder::len).sum();
                self.stats
                    .max_held_rows
                    .fetch_max(held as u64, Ordering::Relaxed);
            }
            Err(dead) => self.dead_letter(*dead).await?,
        }
        if self.decoders[&stream].is_full() {
            self.emit(stream).await?;
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<(), Stopped> {
        let now = Instant::now();
        let due: Vec<Stream> = self
            .oldest
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= self.config.linger)
            .map(|(s, _)| *s)
            .collect();
        for stream in due {
            self.emit(stream).await?;
        }
        // Progress-only batches keep watermarks moving while nothing arrives.
        let heartbeat = self.config.idle_timeout.min(Duration::from_secs(1)) / 2;
        let streams: Vec<Stream> = self.config.streams.clone();
        for stream in streams {
            let quiet = self
                .last_batch
                .get(&stream)
                .is_none_or(|t| now.duration_since(*t) >= heartbeat);
            let holds = self.parts.keys().any(|(s, _)| *s == stream);
            if quiet && holds && self.decoders[&stream].is_empty() {
                self.emit(stream).await?;
            }
        }
        Ok(())
    }

    /// Sends the stream's held rows (possibly none) with its partitions' progress.
    async fn emit(&mut self, stream: Stream) -> Result<(), Stopped> {
        self.oldest.remove(&stream);
        if let Some((records, bytes)) = self.unreported.remove(&stream) {
            metrics::counter!("kpiflow_ingest_records_total", "topic" => stream.name())
                .increment(records);
            metrics::counter!("kpiflow_ingest_bytes_total", "topic" => stream.name())
                .increment(bytes);
        }
        let decoder = self
            .decoders
            .get_mut(&stream)
            .expect("a decoder per subscribed stream");
        let started = Instant::now();
        let (batch, dead) = decoder.finish();
        metrics::histogram!("kpiflow_ingest_decode_seconds", "topic" => stream.name())
            .record(started.elapsed().as_secs_f64());
        for d in dead {
            self.dead_letter(d).await?;
        }
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
        self.send(&tx, batch).await?;
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
        let mut max: HashMap<i32, i64> = HashMap::new();
        for (t, p) in times.values().iter().zip(partitions.values()) {
            let m = max.entry(*p).or_insert(*t);
            *m = (*m).max(*t);
        }
        for (p, t) in max {
            if let Some(part) = self.parts.get_mut(&(stream, p)) {
                part.max_event_time_ms = Some(part.max_event_time_ms.map_or(t, |m| m.max(t)));
            }
        }
    }

    fn progress(&self, stream: Stream) -> Vec<PartitionProgress> {
        let ends = self
            .consumer
            .context()
            .ends
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<PartitionProgress> = self
            .parts
            .iter()
            .filter(|((s, _), _)| *s == stream)
            .map(|(&(_, partition), part)| {
                let end = ends.get(&(stream.name().to_owned(), partition));
                let position = part
                    .next_offset
                    .or(end.map(|e| e.position).filter(|p| *p >= 0));
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
                    idle: !self.paused
                        && caught_up
                        && part.last_activity.elapsed() >= self.config.idle_timeout,
                }
            })
            .collect();
        list.sort_by_key(|p| p.partition);
        list
    }

    async fn dead_letter(&mut self, dead: DeadLetter) -> Result<(), Stopped> {
        metrics::counter!(
            "kpiflow_ingest_dead_letters_total",
            "topic" => dead.topic.clone(),
            "reason" => dead.kind.name()
        )
        .increment(1);
        if let Some(producer) = &self.dlq {
            let topic = format!("{}.dlq", dead.topic);
            let partition = dead.partition.to_string();
            let offset = dead.offset.to_string();
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
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "kpiflow.offset",
                    value: Some(offset.as_str()),
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
            if let Some(key) = &dead.key {
                record = record.key(key);
            }
            if let Some(payload) = &dead.payload {
                record = record.payload(payload);
            }
            if let Err((e, _)) = producer.send(record, Duration::from_secs(5)).await {
                tracing::error!(%topic, error = %e, "cannot produce a dead letter to its topic");
                metrics::counter!("kpiflow_ingest_dlq_failures_total").increment(1);
            }
        }
        let tx = self.dead_tx.clone();
        self.send(&tx, dead).await?;
        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends downstream; when the channel is full, pauses every partition
    /// until there is room, still serving rebalances.
    async fn send<T>(&mut self, tx: &mpsc::Sender<T>, item: T) -> Result<(), Stopped> {
        let item = match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(Stopped::Closed),
            Err(TrySendError::Full(item)) => item,
        };
        let mut paused = self.consumer.assignment().unwrap_or_default();
        if let Err(e) = self.consumer.pause(&paused) {
            tracing::warn!(error = %e, "cannot pause partitions");
        }
        self.paused = true;
        self.stats.pauses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("kpiflow_ingest_pauses_total").increment(1);
        let consumer = self.consumer.clone();
        let outcome = loop {
            tokio::select! {
                permit = tx.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(item);
                        break Ok(());
                    }
                    Err(_) => break Err(Stopped::Closed),
                },
                _ = self.cancel.cancelled() => break Err(Stopped::Cancelled),
                m = consumer.recv() => match m {
                    // Only partitions assigned while paused still deliver: pause
                    // each on sight and keep its one record for later.
                    Ok(m) => {
                        let mut one = TopicPartitionList::new();
                        one.add_partition(m.topic(), m.partition());
                        let _ = consumer.pause(&one);
                        let _ = paused.add_partition(m.topic(), m.partition());
                        self.deferred.push(m.detach());
                    }
                    Err(e) => tracing::warn!(error = %e, "Kafka consumer error while paused"),
                },
            }
        };
        // Partitions revoked meanwhile are no longer ours to resume.
        let assigned: HashSet<(String, i32)> = self
            .consumer
            .assignment()
            .map(|tpl| context::pairs(&tpl).into_iter().collect())
            .unwrap_or_default();
        let mut resume = TopicPartitionList::new();
        for e in paused.elements() {
            if assigned.contains(&(e.topic().to_owned(), e.partition())) {
                resume.add_partition(e.topic(), e.partition());
            }
        }
        if let Err(e) = self.consumer.resume(&resume) {
            tracing::warn!(error = %e, "cannot resume partitions");
        }
        self.paused = false;
        outcome
    }
}
