//! Everything that knows Kafka: the factory simulator and its producer, and
//! the consumers that read the four streams. No other kpiflow crate links
//! rdkafka.

pub mod simulator;
