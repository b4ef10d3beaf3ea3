//! Dead letters produced to `<topic>.dlq` (mock cluster, which creates
//! those topics on first use): every dead letter the source hands out is
//! also in its topic's `.dlq`, with its raw bytes and its reason, kind,
//! partition and offset as headers, and nothing else is.

use std::collections::BTreeMap;
use std::time::Duration;

use kpiflow_ingest::embedded::EmbeddedKafka;
use kpiflow_ingest::source::start;
use kpiflow_types::Stream;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

mod common;
use common::{mock_source_config, produce_seeded};

/// What a dead letter says: (reason, kind, raw payload).
type Said = (String, String, Option<Vec<u8>>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_produced_to_their_topics_with_the_reason_in_headers() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_stream_topics(2).unwrap();
    let n = 4_000;
    produce_seeded(&kafka, n, 5, 0.1).await;

    let mut config = mock_source_config(&kafka, "dlq");
    config.dead_letter_topics = true;
    // Small batches: held dead letters reach the batch size and go out
    // mid-chunk too, not only with a lingered batch.
    config.max_batch_rows = 50;
    let cancel = CancellationToken::new();
    let mut source = start(config, cancel.clone()).await.expect("source starts");
    let mut rows = 0u64;
    // (topic, partition, offset) → what the dead letter said.
    let mut dead: BTreeMap<(String, i32, i64), Said> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rows + dead.len() as u64 != n {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => panic!(
                "only {rows} rows and {} dead letters of {n} records in 60 s", dead.len()
            ),
            Some(batch) = source.batches.recv() => rows += batch.rows.num_rows() as u64,
            Some(d) = source.dead_letters.recv() => {
                let said = (d.reason, d.kind.name().to_owned(), d.payload);
                assert!(
                    dead.insert((d.topic, d.partition, d.offset), said).is_none(),
                    "a dead letter twice"
                );
            }
        }
    }
    cancel.cancel();
    source.task.await.unwrap().unwrap();
    assert!(
        dead.len() > 200,
        "10 % malformed should give hundreds of dead letters, got {}",
        dead.len()
    );

    // Read every `.dlq` topic to its end.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "dlq-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    // Deliveries to the topics are not awaited one by one: wait for them.
    let topic_partitions: Vec<(String, i32)> = Stream::ALL
        .iter()
        .flat_map(|stream| {
            let topic = format!("{}.dlq", stream.name());
            let metadata = reader
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .unwrap();
            metadata.topics()[0]
                .partitions()
                .iter()
                .map(|p| (topic.clone(), p.id()))
                .collect::<Vec<_>>()
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ends = loop {
        let ends: i64 = topic_partitions
            .iter()
            .map(|(topic, p)| {
                reader
                    .fetch_watermarks(topic, *p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .sum();
        if ends >= dead.len() as i64 || std::time::Instant::now() > deadline {
            break ends;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        ends,
        dead.len() as i64,
        "the .dlq topics hold {ends} records for {} dead letters",
        dead.len()
    );
    let mut assignment = TopicPartitionList::new();
    for (topic, p) in &topic_partitions {
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&assignment).unwrap();
    let mut found = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while found < ends {
        assert!(
            std::time::Instant::now() < deadline,
            "read {found} of {ends} .dlq records in 30 s"
        );
        let Some(m) = reader.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let header = |key: &str| -> String {
            let h = m
                .headers()
                .and_then(|hs| hs.iter().find(|h| h.key == key))
                .unwrap_or_else(|| panic!("no header {key}"));
            String::from_utf8(h.value.expect("a value").to_vec()).unwrap()
        };
        let topic = m
            .topic()
            .strip_suffix(".dlq")
            .expect(".dlq topic")
            .to_owned();
        let partition: i32 = header("kpiflow.partition").parse().unwrap();
        let offset: i64 = header("kpiflow.offset").parse().unwrap();
        let (reason, kind, payload) = dead
            .get(&(topic.clone(), partition, offset))
            .unwrap_or_else(|| {
                panic!("{topic}/{partition}@{offset} is in .dlq but was no dead letter")
            });
        assert_eq!(&header("kpiflow.reason"), reason);
        assert_eq!(&header("kpiflow.kind"), kind);
        assert_eq!(m.payload().map(<[u8]>::to_vec), *payload);
        found += 1;
    }
}
