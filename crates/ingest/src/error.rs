//! The ingest crate's errors, split by what the caller can do about them.

use std::time::Duration;

/// What went wrong talking to Kafka or with the options given.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option is out of range; the message names it and what is allowed. Fix the input.
    #[error("{0}")]
    InvalidOption(String),

    /// librdkafka refused a client property (unknown name or bad value). Fix the config.
    #[error(
        "Kafka client configuration rejected: {0}; check the property name and value (see librdkafka's CONFIGURATION.md)"
    )]
    ClientConfig(String),

    /// No broker answered within the timeout. Start the broker or fix the address; retrying may help.
    #[error(
        "cannot reach a Kafka broker at {brokers} within {timeout:?} ({reason}); start the broker or pass the right --brokers HOST:PORT"
    )]
    BrokerUnreachable {
        brokers: String,
        timeout: Duration,
        reason: String,
    },

    /// A topic could not be created or described. Fix permissions or create it by hand.
    #[error("topic '{topic}': {reason}")]
    Topic { topic: String, reason: String },

    /// Committing offsets failed (e.g. the partition was revoked). Retry at the next checkpoint.
    #[error("cannot commit offsets: {0}")]
    Commit(String),

    /// Some records were not acknowledged by the broker. Retrying may help.
    #[error("{failed} records were not acknowledged by the broker (first error: {first_error})")]
    Delivery { failed: u64, first_error: String },

    /// A source thread failed; a bug in kpiflow. The message says which.
    #[error("the Kafka source stopped: {0}")]
    Source(String),
}

/// The ingest crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
