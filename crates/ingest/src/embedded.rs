//! An in-process Kafka cluster (librdkafka's mock cluster): the real Kafka
//! protocol on a loopback port, with no outside service. `kpiflow demo` runs
//! on it; tests use it for fault injection.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use kpiflow_types::Stream;

use crate::error::{Error, Result};

/// A Kafka API whose requests the embedded cluster can be told to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultyApi {
    Produce,
    Fetch,
    Metadata,
    OffsetCommit,
}

/// A running mock cluster; it stops when dropped.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers on loopback ports.
    pub fn start(brokers: i32) -> Result<EmbeddedKafka> {
        let cluster = MockCluster::new(brokers).map_err(|e| {
            Error::ClientConfig(format!("cannot start the embedded Kafka cluster: {e}"))
        })?;
        Ok(EmbeddedKafka { cluster })
    }

    /// The `bootstrap.servers` list of the cluster.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates the four stream topics with `partitions` partitions each.
    pub fn create_stream_topics(&self, partitions: i32) -> Result<()> {
        for stream in Stream::ALL {
            self.cluster
                .create_topic(stream.name(), partitions, 1)
                .map_err(|e| Error::Topic {
                    topic: stream.name().to_owned(),
                    reason: format!("cannot create it in the embedded cluster: {e}"),
                })?;
        }
        Ok(())
    }

    /// Takes broker `id` (1-based) down: its connections drop and it
    /// answers nothing until [`EmbeddedKafka::broker_up`].
    pub fn broker_down(&self, id: i32) -> Result<()> {
        self.cluster
            .broker_down(id)
            .map_err(|e| Error::ClientConfig(format!("cannot take broker {id} down: {e}")))
    }

    /// Brings broker `id` back up.
    pub fn broker_up(&self, id: i32) -> Result<()> {
        self.cluster
            .broker_up(id)
            .map_err(|e| Error::ClientConfig(format!("cannot bring broker {id} up: {e}")))
    }

    /// Fails the next `count` requests of `api` with retriable errors
    /// (alternately "not leader for partition" and "request timed out"), as a
    /// leader election or an overloaded broker would.
    pub fn fail_requests(&self, api: FaultyApi, count: usize) {
        let key = match api {
            FaultyApi::Produce => RDKafkaApiKey::Produce,
            FaultyApi::Fetch => RDKafkaApiKey::Fetch,
            FaultyApi::Metadata => RDKafkaApiKey::Metadata,
            FaultyApi::OffsetCommit => RDKafkaApiKey::OffsetCommit,
        };
        let errors: Vec<RDKafkaRespErr> = (0..count)
            .map(|i| {
                if i % 2 == 0 {
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION
                } else {
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT
                }
            })
            .collect();
        self.cluster.request_errors(key, &errors);
    }
}
