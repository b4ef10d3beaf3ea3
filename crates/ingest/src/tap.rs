//! A plain consumer that counts records and bytes per topic without decoding
//! them: what `kpiflow demo` shows as live rates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;

use kpiflow_types::Stream;

use crate::error::{Error, Result};
use crate::kafka::{check_reachable, client_config, config_error};

/// Records and bytes consumed per stream, in [`Stream::ALL`] order.
#[derive(Debug, Default)]
pub struct TapCounts {
    pub records: [AtomicU64; 4],
    pub bytes: [AtomicU64; 4],
}

impl TapCounts {
    /// Records consumed so far, per stream.
    pub fn records(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.records[i].load(Ordering::Relaxed))
    }
}

/// Reads the four topics from the earliest offset as consumer group `group`,
/// counting into `counts`, until `cancel`.
pub async fn count_topics(
    brokers: &str,
    group: &str,
    properties: &[(String, String)],
    counts: &TapCounts,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut config = client_config(brokers, &[]);
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000");
    for (key, value) in properties {
        config.set(key, value);
    }
    let consumer: StreamConsumer = config.create().map_err(config_error)?;
    let consumer = std::sync::Arc::new(consumer);
    {
        let consumer = consumer.clone();
        let brokers = brokers.to_owned();
        tokio::task::spawn_blocking(move || {
            check_reachable(consumer.client(), &brokers, Duration::from_secs(10))
        })
        .await
        .map_err(|e| Error::ClientConfig(format!("metadata task failed: {e}")))??;
    }
    let topics: Vec<&str> = Stream::ALL.iter().map(|s| s.name()).collect();
    consumer.subscribe(&topics).map_err(|e| Error::Topic {
        topic: topics.join(", "),
        reason: format!("cannot subscribe: {e}"),
    })?;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            message = consumer.recv() => match message {
                Ok(m) => {
                    if let Some(i) = Stream::ALL.iter().position(|s| s.name() == m.topic()) {
                        counts.records[i].fetch_add(1, Ordering::Relaxed);
                        let size = m.payload().map_or(0, <[u8]>::len) as u64;
                        counts.bytes[i].fetch_add(size, Ordering::Relaxed);
                    }
                }
                // Transient errors (a broker restarting) are retried by librdkafka.
                Err(e) => tracing::warn!(error = %e, "consumer error"),
            },
        }
    }
}
