//! The Kafka source: one consumer-group member reading the stream topics into
//! decoded [`SourceBatch`]es and [`DeadLetter`]s.
//!
//! - Offsets are never committed automatically: only [`SourceHandle::commit`]
//!   commits, and the checkpoint layer calls it once a checkpoint is durable.
//! - Two threads: the poll thread ([`poll`]) copies messages into chunks and
//!   serves rebalances; the batcher ([`batcher`]) decodes the chunks and sends
//!   batches downstream, so decoding runs beside librdkafka.
//! - Both output channels are bounded. When one is full the source pauses all
//!   its partitions (librdkafka stops fetching) instead of buffering, keeps
//!   serving rebalances, and resumes once there is room.
//! - On revocation, held rows of revoked partitions are dropped uncommitted,
//!   so the partition's next owner reads them again; on assignment the source
//!   starts from the committed offsets, or from those the caller gave. A
//!   partition that comes back to the member (its session timed out in a
//!   broker outage) starts after the last record the member delivered, and
//!   records before that are skipped if read again: committed offsets lag
//!   the delivered ones by up to a checkpoint, and reading from them would
//!   deliver those records twice.
//! - Each batch carries, per partition, the largest event time seen and
//!   whether the partition is idle (caught up with its end and quiet for the
//!   idle timeout); a paused or lagging partition is never idle. Batches with
//!   no rows carry that progress when nothing arrives.

mod batcher;
mod context;
mod dlq;
mod held_dead_letters;
mod poll;
mod progress;
mod revocation;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use kpiflow_types::time::TimeBounds;
use kpiflow_types::{DeadLetter, SourceBatch, Stream};

use crate::error::{Error, Result};
use crate::kafka::{client_config, cluster_metadata, config_error, run_blocking};
use batcher::Batcher;
use context::SourceContext;
use poll::Poller;

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
    /// A caught-up partition with no data for this long is idle (at least
    /// [`MIN_IDLE_TIMEOUT`]); after a pause, this long since the resume too.
    pub idle_timeout: Duration,
    /// Batches waiting for the engine, at most.
    pub batch_capacity: usize,
    /// Dead letters waiting for their sink, at most.
    pub dead_letter_capacity: usize,
    /// Times accepted: every time field within the range, `event_time` at
    /// most the skew ahead of the wall clock; others become dead letters
    /// (`time_out_of_range`, `future_time`). Default: 2000-01-01T00:00:00Z
    /// to 2100-01-01T00:00:00Z, a day ahead.
    pub time_bounds: TimeBounds,
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
            time_bounds: TimeBounds::default(),
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
        } else if self.idle_timeout < MIN_IDLE_TIMEOUT {
            Some(format!(
                "the idle timeout must be at least {MIN_IDLE_TIMEOUT:?}, got {:?}: partition ends come from librdkafka's statistics (every 500 ms) and fetches that wait up to fetch.wait.max.ms (500 ms), so a shorter timeout could call a partition idle before its newest records are fetched",
                self.idle_timeout
            ))
        } else if self.linger.is_zero() {
            Some("the linger must be above zero (e.g. 50ms)".to_owned())
        } else if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            Some(format!(
                "auto.offset.reset must be earliest or latest, got '{}'",
                self.auto_offset_reset
            ))
        } else if let Err(e) = self.time_bounds.validate() {
            Some(format!("the source's {e}"))
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
    /// Records read again after their partition came back, already
    /// delivered before it was lost: skipped.
    pub redelivered_records: AtomicU64,
    /// Assignments received (the first one, and one after each rebalance).
    pub assignments: AtomicU64,
    /// Most rows ever held waiting for a batch.
    pub max_held_rows: AtomicU64,
    /// The partitions are paused now (downstream is full).
    pub paused: AtomicBool,
    /// The batcher is waiting for room downstream.
    downstream_full: AtomicBool,
    /// When the partitions were last resumed (librdkafka's end offsets are
    /// stale until fetching starts again).
    resumed_at: std::sync::Mutex<Option<Instant>>,
}

/// Commits offsets and reads counters of a running source.
#[derive(Clone)]
pub struct SourceHandle {
    consumer: Arc<BaseConsumer<SourceContext>>,
    stats: Arc<SourceStats>,
}

impl SourceHandle {
    /// Commits `(stream, partition, next offset)` synchronously: after a
    /// restart the group resumes from these offsets.
    ///
    /// Only partitions the member holds now are committed; none at all while
    /// it holds none. A member whose session timed out (a broker outage
    /// longer than `session.timeout.ms`) rejoins with no partitions, and a
    /// commit then fails with "unknown member", which makes librdkafka
    /// restart the join in progress: with a commit after every checkpoint it
    /// never got its partitions back (`tests/broker_outage.rs`).
    pub async fn commit(&self, offsets: &[(Stream, i32, i64)]) -> Result<()> {
        let held: std::collections::HashSet<(String, i32)> =
            self.assignment().into_iter().collect();
        let mut tpl = TopicPartitionList::new();
        for (stream, partition, offset) in offsets {
            if !held.contains(&(stream.name().to_owned(), *partition)) {
                continue;
            }
            tpl.add_partition_offset(stream.name(), *partition, Offset::Offset(*offset))
                .map_err(|e| Error::Commit(e.to_string()))?;
        }
        if tpl.count() == 0 {
            return Ok(());
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
    let consumer: BaseConsumer<SourceContext> =
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
    // Two threads: one polls librdkafka and copies messages into chunks, the
    // other decodes them into batches. Decoding on the poll thread halved the
    // consume rate (bench `consume`).
    let chunk_messages = config.max_batch_rows.clamp(1, CHUNK_MESSAGES);
    // The poll thread stops when the source is cancelled or the batcher is done.
    let stop = cancel.child_token();
    let (input_tx, input_rx) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let poller = Poller::new(
        consumer.clone(),
        config.streams.clone(),
        chunk_messages,
        (input_tx, batch_tx.downgrade()),
        stats.clone(),
        stop.clone(),
    );
    let batcher = Batcher::new(config, consumer, stats, (batch_tx, dead_tx), dlq, cancel);
    let (done_tx, done) = oneshot::channel();
    let threads = std::thread::Builder::new()
        .name("kpiflow-batcher".into())
        .spawn(move || {
            // Stops the poll thread however the batcher ends (a panic included).
            let _stop = stop.drop_guard();
            batcher.run(input_rx);
        })
        .and_then(|batcher| {
            std::thread::Builder::new()
                .name("kpiflow-poll".into())
                .spawn(move || {
                    poller.run();
                    let outcome = batcher
                        .join()
                        .map_err(|_| Error::Source("the batcher thread panicked".into()));
                    let _ = done_tx.send(outcome);
                })
        });
    if let Err(e) = threads {
        return Err(Error::Source(format!(
            "cannot start the source threads: {e}"
        )));
    }
    let task = tokio::spawn(async move {
        done.await
            .map_err(|_| Error::Source("the poll thread panicked".into()))?
    });
    Ok(Source {
        batches,
        dead_letters,
        handle,
        task,
    })
}

/// The shortest idle timeout: longer than a statistics interval plus a fetch wait.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Messages per chunk handed from the poll thread to the batcher, at most.
const CHUNK_MESSAGES: usize = 1024;
/// Chunks waiting for the batcher, at most; when they are full the poll
/// thread pauses the partitions.
const CHUNKS_IN_FLIGHT: usize = 4;
