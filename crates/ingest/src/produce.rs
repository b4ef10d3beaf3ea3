//! `kpiflow produce`: the simulator into Kafka at a steady rate.
//!
//! Records are keyed as DESIGN.md says and partitioned with librdkafka's
//! `murmur2_random`, the Java client's partitioner, so kpiflow's topics are laid
//! out as any Kafka Streams or Flink job would expect. A record counts as sent
//! only once the broker acknowledged it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use kpiflow_types::Stream;

use crate::error::{Error, Result};
use crate::kafka::{client_config, cluster_metadata, config_error, run_blocking};
use crate::simulator::{MalformedKind, SimConfig, SimRecord, Simulator, Timing};

/// When to stop producing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// After this many records.
    Count(u64),
    /// After this much wall time.
    Duration(Duration),
    /// Only when cancelled.
    Unbounded,
}

/// Everything `produce` needs besides the simulator's own options.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub sim: SimConfig,
    /// Records per second, over all topics.
    pub rate: f64,
    pub limit: Limit,
    /// Partitions of topics this command creates (existing topics keep theirs).
    pub partitions: i32,
    pub replication_factor: i32,
    /// Extra librdkafka properties, applied last.
    pub properties: Vec<(String, String)>,
    /// Create missing topics (with `partitions`); when false they must exist.
    pub create_topics: bool,
    /// Bound on waiting for the broker at start-up and for topic creation.
    pub connect_timeout: Duration,
    /// Records sent but not yet acknowledged, at most.
    pub max_in_flight: usize,
}

impl ProduceOptions {
    /// Options with the defaults of `kpiflow produce`.
    pub fn new(brokers: impl Into<String>, sim: SimConfig, rate: f64, limit: Limit) -> Self {
        ProduceOptions {
            brokers: brokers.into(),
            sim,
            rate,
            limit,
            partitions: 4,
            replication_factor: 1,
            create_topics: true,
            properties: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            max_in_flight: 10_000,
        }
    }

    /// Checks every option; the error names the first one out of range and the fix.
    pub fn validate(&self) -> Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(Error::InvalidOption(format!(
                "--rate must be above 0 events per second (e.g. --rate 1000), got {}",
                self.rate
            )));
        }
        if self.partitions < 1 {
            return Err(Error::InvalidOption(format!(
                "--partitions must be at least 1, got {}",
                self.partitions
            )));
        }
        if self.replication_factor < 1 {
            return Err(Error::InvalidOption(format!(
                "--replication-factor must be at least 1, got {}",
                self.replication_factor
            )));
        }
        if let Limit::Count(0) = self.limit {
            return Err(Error::InvalidOption("--count must be at least 1".into()));
        }
        if let Limit::Duration(d) = self.limit
            && d.is_zero()
        {
            return Err(Error::InvalidOption(
                "--duration must be above zero (e.g. --duration 30s)".into(),
            ));
        }
        self.sim.validate().map_err(Error::InvalidOption)
    }
}

/// Live counters, read by the progress display while `produce` runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Set once the broker answered and the topics exist.
    pub connected: std::sync::atomic::AtomicBool,
    /// Records handed to the client.
    pub queued: AtomicU64,
    /// Records the broker acknowledged.
    pub acked: AtomicU64,
    /// Records that failed delivery.
    pub failed: AtomicU64,
    /// Simulated event time of the newest record, epoch milliseconds.
    pub event_time_ms: AtomicI64,
}

/// Acknowledged records of one topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TopicSummary {
    pub partitions: i32,
    /// Well-formed records.
    pub good: u64,
    /// Malformed records, by kind.
    pub malformed: BTreeMap<String, u64>,
    /// Records (good or not) with an event time moved back within the bound.
    pub out_of_order: u64,
    /// Records with an event time moved back beyond the bound.
    pub late: u64,
    /// Records the broker did not acknowledge.
    pub failed: u64,
}

impl TopicSummary {
    /// All malformed records.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }
}

/// What `produce` sent, per topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub brokers: String,
    pub scenario: String,
    pub seed: u64,
    pub elapsed_s: f64,
    pub cancelled: bool,
    pub topics: BTreeMap<String, TopicSummary>,
}

impl Summary {
    /// Acknowledged records over all topics.
    pub fn acked(&self) -> u64 {
        self.topics
            .values()
            .map(|t| t.good + t.malformed_total())
            .sum()
    }

    /// Failed records over all topics.
    pub fn failed(&self) -> u64 {
        self.topics.values().map(|t| t.failed).sum()
    }
}

/// Runs the simulator into Kafka until the limit or `cancel`, then waits for
/// every record in flight to be acknowledged or to fail.
pub async fn produce(
    options: &ProduceOptions,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Summary> {
    options.validate()?;
    let config = client_config(
        &options.brokers,
        &[
            ("partitioner", "murmur2_random"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "30000"),
            ("queue.buffering.max.messages", "100000"),
        ],
        &options.properties,
    );
    let producer: FutureProducer = config.create().map_err(config_error)?;
    {
        let producer = producer.clone();
        let brokers = options.brokers.clone();
        let timeout = options.connect_timeout;
        run_blocking(move || cluster_metadata(producer.client(), &brokers, timeout)).await?;
    }
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(config_error)?;
    let partitions = ensure_topics(&admin, &producer, options).await?;
    progress.connected.store(true, Ordering::Relaxed);

    let mut summary = Summary {
        brokers: options.brokers.clone(),
        scenario: options.sim.scenario.to_string(),
        seed: options.sim.seed,
        topics: Stream::ALL
            .iter()
            .zip(partitions)
            .map(|(s, partitions)| {
                let topic = TopicSummary {
                    partitions,
                    ..TopicSummary::default()
                };
                (s.name().to_owned(), topic)
            })
            .collect(),
        ..Summary::default()
    };
    let mut first_error: Option<String> = None;
    let mut simulator = Simulator::new(options.sim.clone());
    let mut in_flight = FuturesUnordered::new();
    let started = Instant::now();
    let mut made: u64 = 0;
    let tick = Duration::from_millis(10);

    loop {
        let elapsed = started.elapsed();
        let done = cancel.is_cancelled()
            || match options.limit {
                Limit::Count(n) => made >= n,
                Limit::Duration(d) => elapsed >= d,
                Limit::Unbounded => false,
            };
        if done {
            break;
        }
        let mut due = (elapsed.as_secs_f64() * options.rate) as u64 + 1;
        if let Limit::Count(n) = options.limit {
            due = due.min(n);
        }
        while made < due && in_flight.len() < options.max_in_flight {
            let record = simulator.next().expect("the simulator never ends");
            progress.event_time_ms.store(
                record
                    .event
                    .as_ref()
                    .map_or(0, |e| e.event_time().timestamp_millis()),
                Ordering::Relaxed,
            );
            let meta = Meta::of(&record);
            let send = loop {
                let fr = FutureRecord::to(record.stream.name())
                    .key(record.key.as_bytes())
                    .payload(&record.payload);
                match producer.send_result(fr) {
                    Ok(delivery) => break Ok(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // The client's queue is full: wait for acknowledgements.
                        match in_flight.next().await {
                            Some((meta, outcome)) => {
                                account(&mut summary, &mut first_error, progress, meta, outcome)
                            }
                            None => tokio::time::sleep(tick).await,
                        }
                    }
                    Err((e, _)) => break Err(e),
                }
            };
            made += 1;
            match send {
                Ok(delivery) => {
                    progress.queued.fetch_add(1, Ordering::Relaxed);
                    in_flight.push(async move {
                        let outcome = match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((e, _))) => Err(e.to_string()),
                            Err(_) => Err("producer dropped before delivery".to_owned()),
                        };
                        (meta, outcome)
                    });
                }
                Err(e) => account(
                    &mut summary,
                    &mut first_error,
                    progress,
                    meta,
                    Err(e.to_string()),
                ),
            }
        }
        // Collect acknowledgements until the next tick.
        let sleep = tokio::time::sleep(tick);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = cancel.cancelled() => break,
                Some((meta, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    account(&mut summary, &mut first_error, progress, meta, outcome);
                }
            }
        }
    }
    summary.cancelled = cancel.is_cancelled();
    // Every record in flight resolves within message.timeout.ms.
    while let Some((meta, outcome)) = in_flight.next().await {
        account(&mut summary, &mut first_error, progress, meta, outcome);
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    if let Some(first_error) = first_error {
        tracing::warn!(failed = summary.failed(), %first_error, "some records were not acknowledged");
    }
    Ok(summary)
}

/// What to count when a record is acknowledged.
#[derive(Debug, Clone, Copy)]
struct Meta {
    stream: Stream,
    malformed: Option<MalformedKind>,
    timing: Timing,
}

impl Meta {
    fn of(record: &SimRecord) -> Meta {
        Meta {
            stream: record.stream,
            malformed: record.malformed,
            timing: record.timing,
        }
    }
}

fn account(
    summary: &mut Summary,
    first_error: &mut Option<String>,
    progress: &Progress,
    meta: Meta,
    outcome: std::result::Result<(), String>,
) {
    let topic = summary
        .topics
        .entry(meta.stream.name().to_owned())
        .or_default();
    match outcome {
        Ok(()) => {
            progress.acked.fetch_add(1, Ordering::Relaxed);
            match meta.malformed {
                None => topic.good += 1,
                Some(kind) => *topic.malformed.entry(kind.name().to_owned()).or_default() += 1,
            }
            match meta.timing {
                Timing::InOrder => {}
                Timing::OutOfOrder => topic.out_of_order += 1,
                Timing::Late => topic.late += 1,
            }
        }
        Err(e) => {
            progress.failed.fetch_add(1, Ordering::Relaxed);
            topic.failed += 1;
            first_error.get_or_insert(e);
        }
    }
}

/// Creates the four topics where missing and returns their partition counts.
async fn ensure_topics(
    admin: &AdminClient<DefaultClientContext>,
    producer: &FutureProducer,
    options: &ProduceOptions,
) -> Result<Vec<i32>> {
    if options.create_topics {
        create_topics(admin, options).await?;
    }
    topic_partitions(producer, options).await
}

async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    options: &ProduceOptions,
) -> Result<()> {
    let new_topics: Vec<NewTopic<'_>> = Stream::ALL
        .iter()
        .map(|s| {
            NewTopic::new(
                s.name(),
                options.partitions,
                TopicReplication::Fixed(options.replication_factor),
            )
        })
        .collect();
    let admin_options = AdminOptions::new()
        .operation_timeout(Some(options.connect_timeout))
        .request_timeout(Some(options.connect_timeout));
    let results = tokio::time::timeout(
        options.connect_timeout + Duration::from_secs(1),
        admin.create_topics(&new_topics, &admin_options),
    )
    .await
    .map_err(|_| Error::Topic {
        topic: "sales, production, logistics, equipment".into(),
        reason: format!(
            "creating topics timed out after {:?}",
            options.connect_timeout
        ),
    })?
    .map_err(|e| Error::Topic {
        topic: "sales, production, logistics, equipment".into(),
        reason: format!("cannot create topics: {e}"),
    })?;
    for result in results {
        if let Err((topic, code)) = result
            && code != RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(Error::Topic {
                topic,
                reason: format!("cannot create it: {code}; create it by hand or check permissions"),
            });
        }
    }
    Ok(())
}

/// Waits until the four topics show in metadata and returns their partition counts.
async fn topic_partitions(producer: &FutureProducer, options: &ProduceOptions) -> Result<Vec<i32>> {
    let producer = producer.clone();
    let timeout = options.connect_timeout;
    let wanted = options.partitions;
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        Stream::ALL
            .iter()
            .map(|s| {
                loop {
                    let found = producer
                        .client()
                        .fetch_metadata(Some(s.name()), Duration::from_secs(2))
                        .ok()
                        .and_then(|m| {
                            m.topics()
                                .iter()
                                .find(|t| t.name() == s.name() && t.error().is_none())
                                .map(|t| t.partitions().len() as i32)
                        })
                        .filter(|&n| n > 0);
                    match found {
                        Some(n) => {
                            if n != wanted {
                                tracing::warn!(
                                    topic = s.name(),
                                    partitions = n,
                                    wanted,
                                    "topic exists with another partition count; keeping it"
                                );
                            }
                            break Ok(n);
                        }
                        None if Instant::now() >= deadline => {
                            break Err(Error::Topic {
                                topic: s.name().to_owned(),
                                reason: format!(
                                    "not visible in metadata {timeout:?} after creation"
                                ),
                            });
                        }
                        None => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })
            .collect()
    })
    .await
    .map_err(|e| Error::Topic {
        topic: "*".into(),
        reason: format!("metadata task failed: {e}"),
    })?
}
