//! Bench records on a broker: the simulator's stream spread over the
//! partitions, fence records after them, and a check that the broker kept
//! them all (the mock cluster keeps at most 5 MB per partition).

use std::time::Duration;

use kpiflow_ingest::simulator::{SimConfig, Simulator};
use kpiflow_types::Stream;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The simulator's first `n` records spread round-robin over each topic's
/// `partitions` rather than by key: the mock cluster keeps at most 5 MB per
/// partition, and a few hot keys would fill theirs long before the others.
pub fn produce_spread(brokers: &str, sim: SimConfig, n: u64, partitions: i32) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut next = [0i32; 4];
    for record in Simulator::new(sim).take(n as usize) {
        let slot = &mut next[record.stream as usize];
        let partition = *slot % partitions;
        *slot += 1;
        let mut message = BaseRecord::to(record.stream.name())
            .partition(partition)
            .key(record.key.as_bytes())
            .payload(&record.payload[..]);
        loop {
            match producer.send(message) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                    producer.poll(Duration::from_millis(10));
                    message = m;
                }
                Err((e, _)) => panic!("cannot produce a bench record: {e}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("bench records acknowledged");
}

/// One record per partition after the bench's records. tansu 0.6.0 reports
/// the base offset of a partition's newest batch as its high watermark, so
/// that batch stays invisible until another arrives; on other brokers the
/// fences are just the last records (dead letters to the source; consumers
/// stop at `n` records, so they count at most one per partition).
pub fn fence(brokers: &str, partitions: i32) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("fence producer");
    for s in Stream::ALL {
        for p in 0..partitions {
            producer
                .send(
                    BaseRecord::<[u8], [u8]>::to(s.name())
                        .partition(p)
                        .payload(b"fence".as_slice()),
                )
                .expect("enqueue a fence record");
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("fence records acknowledged");
}

/// Panics unless the stream topics hold at least `n` records.
pub fn assert_kept(brokers: &str, partitions: i32, n: u64) {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("probe consumer");
    let mut kept = 0;
    for s in Stream::ALL {
        for p in 0..partitions {
            let (low, high) = probe
                .fetch_watermarks(s.name(), p, Duration::from_secs(10))
                .expect("partition watermarks");
            kept += high - low;
        }
    }
    assert!(
        kept >= n as i64,
        "the broker kept {kept} of {n} records (the mock cluster keeps 5 MB per partition): lower KPIFLOW_BENCH_RECORDS or raise KPIFLOW_BENCH_PARTITIONS"
    );
}
