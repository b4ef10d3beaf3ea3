//! An in-process Kafka cluster (librdkafka's mock cluster): the real Kafka
//! protocol on a loopback port, with no outside service. `kpiflow demo` runs
//! on it; tests use it for fault injection.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use kpiflow_types::Stream;

use crate::error::{Error, Result};

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
}
