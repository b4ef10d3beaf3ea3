//! Kafka client setup shared by producers and consumers: configuration with
//! pass-through properties, and a bounded check that a broker answers.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;

use crate::error::{Error, Result};

/// A client configuration for `brokers`: kpiflow's `defaults` for this
/// client, then the user's `properties` (any librdkafka setting such as
/// `security.protocol` or `sasl.mechanism`), which win.
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    properties: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// Turns librdkafka's refusal of a configuration into an error naming it.
pub fn config_error(error: KafkaError) -> Error {
    match error {
        KafkaError::ClientConfig(_, message, key, value) => {
            Error::ClientConfig(format!("{key}={value}: {message}"))
        }
        other => Error::ClientConfig(other.to_string()),
    }
}

/// Waits (blocking, at most `timeout`) for the cluster's metadata, the proof
/// that a broker answers. Call from a blocking context, e.g. [`run_blocking`].
pub fn cluster_metadata<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    timeout: Duration,
) -> Result<Metadata> {
    client
        .fetch_metadata(None, timeout)
        .map_err(|e| Error::BrokerUnreachable {
            brokers: brokers.to_owned(),
            timeout,
            reason: e.to_string(),
        })
}

/// Runs a blocking librdkafka call (metadata, watermarks) off the async runtime.
pub async fn run_blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| Error::ClientConfig(format!("metadata task failed: {e}")))?
}
