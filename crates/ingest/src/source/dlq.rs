//! Dead letters produced to `<topic>.dlq`: each is queued to librdkafka
//! without waiting for its delivery, the deliveries still outstanding are
//! kept (at most [`DLQ_MAX_PENDING`]) and reaped as they complete, failures
//! are counted and logged, and at exit the outstanding ones get a short
//! flush. Also the record a dead letter becomes: its key and raw bytes, with
//! its reason, kind, partition and offset as headers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::channel::oneshot::Canceled;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use kpiflow_types::DeadLetter;

use super::batcher::Stopped;

/// How long the batcher waits at exit for its dead-letter deliveries.
const DLQ_FLUSH: Duration = Duration::from_secs(1);
/// How long a dead letter waits for room in librdkafka's queue when no
/// delivery is outstanding.
const DLQ_QUEUE_PATIENCE: Duration = Duration::from_millis(100);
/// Deliveries to the dead-letter topics outstanding at most.
const DLQ_MAX_PENDING: usize = 10_000;

/// The producer to the dead-letter topics and its outstanding deliveries.
pub(super) struct DeadLetterTopics {
    producer: FutureProducer,
    /// Deliveries to the dead-letter topics not yet complete, oldest first.
    deliveries: VecDeque<DeliveryFuture>,
}

impl DeadLetterTopics {
    pub(super) fn new(producer: FutureProducer) -> DeadLetterTopics {
        DeadLetterTopics {
            producer,
            deliveries: VecDeque::new(),
        }
    }

    /// Gives the deliveries still outstanding a moment at exit; those that
    /// do not complete count as failures.
    pub(super) fn flush_at_exit(&mut self) {
        if self.producer.in_flight_count() > 0 {
            if let Err(e) = self.producer.flush(DLQ_FLUSH) {
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

    /// Queues `dead` to their `<topic>.dlq` without waiting for each
    /// delivery: a round trip per batch slowed a source with 1 % bad records
    /// to a tenth of its rate (bench `consume`, `KPIFLOW_BENCH_DLQ=1`).
    /// Deliveries are reaped as they complete and waited for only when
    /// [`DLQ_MAX_PENDING`] are outstanding or librdkafka's queue is full.
    /// The dead-letter sink, not the topic, is the record of a dead letter:
    /// one whose delivery fails is counted and logged, and still handed
    /// downstream.
    pub(super) fn produce(
        &mut self,
        dead: &[DeadLetter],
        runtime: &tokio::runtime::Handle,
        cancel: &CancellationToken,
    ) -> Result<(), Stopped> {
        let producer = self.producer.clone();
        for d in dead {
            let mut full_since: Option<Instant> = None;
            loop {
                self.reap_deliveries();
                if self.deliveries.len() >= DLQ_MAX_PENDING {
                    self.await_oldest_delivery(runtime, cancel)?;
                    continue;
                }
                let topic = format!("{}.dlq", d.topic);
                let queued = match producer.send_result(dead_letter_record(d, &topic)) {
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
                        self.await_oldest_delivery(runtime, cancel)?;
                    }
                    // librdkafka frees a slot just after the delivery it
                    // reported: give it a moment, but not forever (a message
                    // larger than the whole queue never fits).
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
                        if full_since.get_or_insert_with(Instant::now).elapsed()
                            < DLQ_QUEUE_PATIENCE =>
                    {
                        let pause = runtime.block_on(async {
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_millis(10)) => Ok(()),
                                _ = cancel.cancelled() => Err(Stopped::Cancelled),
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
    fn await_oldest_delivery(
        &mut self,
        runtime: &tokio::runtime::Handle,
        cancel: &CancellationToken,
    ) -> Result<(), Stopped> {
        let Some(oldest) = self.deliveries.pop_front() else {
            return Ok(());
        };
        let result = runtime.block_on(async {
            tokio::select! {
                result = oldest => Some(result),
                _ = cancel.cancelled() => None,
            }
        });
        delivered(result.ok_or(Stopped::Cancelled)?);
        Ok(())
    }
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
