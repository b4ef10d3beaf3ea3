//! Everything that knows Kafka: the factory simulator and its producer, and
//! the consumers that read the four streams. No other kpiflow crate links
//! rdkafka.

pub mod decode;
pub mod embedded;
pub mod error;
pub mod kafka;
pub mod produce;
pub mod simulator;
pub mod source;

pub use error::{Error, Result};
