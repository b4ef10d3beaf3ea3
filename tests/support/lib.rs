//! Shared helpers of the integration tests: where the test broker is, an
//! independent Kafka partitioner to check key placement against, and a reader
//! of everything appended to a set of topics.

pub mod broker;
pub mod moto;
pub mod oracle;
pub mod python;
pub mod sales;
pub mod watermark;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The broker `scripts/test` started. Fails (never skips) when there is none.
pub fn test_brokers() -> String {
    std::env::var("KPIFLOW_TEST_BROKERS").unwrap_or_else(|_| {
        panic!(
            "KPIFLOW_TEST_BROKERS is not set: this test needs a Kafka broker. \
             Run the tests with scripts/test (it starts a tansu broker), or start one with \
             `tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
             --storage-engine memory://tansu/` and export KPIFLOW_TEST_BROKERS=127.0.0.1:9092"
        )
    })
}

/// Kafka's murmur2 hash, as the Java client computes it (`Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// High watermarks of every partition of `topics` (topics that do not exist yet have none).
pub fn high_watermarks(brokers: &str, topics: &[&str]) -> HashMap<(String, i32), i64> {
    let consumer = plain_consumer(brokers);
    let mut marks = HashMap::new();
    for topic in topics {
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
            continue;
        };
        for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .expect("watermarks of an existing partition");
                marks.insert((topic.to_string(), p.id()), high);
            }
        }
    }
    marks
}

/// Commits `offsets` for `group` without joining it (as an operator would
/// with `kafka-consumer-groups --reset-offsets`).
pub fn commit_group_offsets(brokers: &str, group: &str, offsets: &HashMap<(String, i32), i64>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer config");
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("valid offset");
    }
    // A broker that has just started may answer with a retriable coordinator
    // error (it failed so once, right after tansu started): retry for 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("committing the group's start offsets: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("cannot commit the group's start offsets within 30 s: {e}"),
        }
    }
}

/// Producer properties that put every record in its own batch.
///
/// tansu 0.6.0 answers a fetch that starts inside a record batch with the
/// *next* batch, so the rest of the containing batch is never delivered
/// (measured: fetching from offsets 3, 33 and 4 records into batches returned
/// the following batch's first offset). A consumer resuming from a committed
/// offset or after a pause lands inside batches; real Kafka returns the
/// containing batch and the client skips the records before the offset. Tests
/// that resume mid-stream produce one record per batch.
pub fn one_record_batches() -> Vec<(String, String)> {
    vec![("batch.num.messages".into(), "1".into())]
}

/// Key of the records [`fence`] writes; [`read_appended`] leaves them out.
pub const FENCE_KEY: &[u8] = b"__kpiflow_test_fence__";

/// Makes everything produced so far to `topics` visible to consumers.
///
/// tansu 0.6.0's memory engine reports a partition's high watermark as the base
/// offset of its newest batch, so that batch stays invisible to consumers until
/// another one arrives (measured: one record, then ten, then one: the watermark
/// moves by 1, 1, 10). A real Kafka broker does not do this. Writing one small
/// fence record to every partition pushes the data before it into view.
pub fn fence(brokers: &str, topics: &[&str]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer config");
    let partitions = high_watermarks(brokers, topics);
    for (topic, partition) in partitions.keys() {
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .partition(*partition)
                    .key(FENCE_KEY)
                    .payload(b"fence".as_slice()),
            )
            .expect("enqueue a fence record");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("fence records acknowledged");
}

/// Sends each `(topic, partition, payload)` and waits for every acknowledgement.
pub fn send_to_partitions(brokers: &str, records: &[(String, i32, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer config");
    for (topic, partition, payload) in records {
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .partition(*partition)
                    .payload(payload.as_slice()),
            )
            .expect("enqueue a record");
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("records acknowledged");
}

/// Reads every record of `topics` from the offsets in `from` (or the start)
/// up to the current high watermarks, within `timeout`.
pub fn read_appended(
    brokers: &str,
    topics: &[&str],
    from: &HashMap<(String, i32), i64>,
    timeout: Duration,
) -> Vec<Consumed> {
    let until = high_watermarks(brokers, topics);
    let consumer = plain_consumer(brokers);
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    for ((topic, partition), &high) in &until {
        let start = from.get(&(topic.clone(), *partition)).copied().unwrap_or(0);
        if high > start {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(start))
                .expect("valid offset");
            remaining += high - start;
        }
    }
    consumer.assign(&assignment).expect("assign partitions");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while remaining > 0 {
        assert!(
            Instant::now() < deadline,
            "timed out with {remaining} records still unread"
        );
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = result.expect("consume from the test broker");
        let high = until[&(m.topic().to_owned(), m.partition())];
        if m.offset() < high {
            remaining -= 1;
            if m.key() == Some(FENCE_KEY) {
                continue;
            }
            out.push(Consumed {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}

fn plain_consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kpiflow-tests-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer config")
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    /// Vectors from Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

/// What a test collected from a source.
#[derive(Debug, Default)]
pub struct Collected {
    /// (topic, partition, offset) of every row, in arrival order.
    pub rows: Vec<(String, i32, i64)>,
    /// Dead letters, fences left out.
    pub dead: Vec<kpiflow_types::DeadLetter>,
    /// Batches received (progress-only ones included).
    pub batches: usize,
}

impl Collected {
    /// Rows plus dead letters of `topic`.
    pub fn records_of(&self, topic: &str) -> usize {
        self.rows.iter().filter(|r| r.0 == topic).count()
            + self.dead.iter().filter(|d| d.topic == topic).count()
    }

    /// Takes one batch's rows.
    pub fn add_batch(&mut self, batch: &kpiflow_types::SourceBatch) {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Int32Type, Int64Type};
        use kpiflow_types::source::{OFFSET_COLUMN, PARTITION_COLUMN};
        self.batches += 1;
        let rows = &batch.rows;
        let partitions = rows
            .column_by_name(PARTITION_COLUMN)
            .unwrap()
            .as_primitive::<Int32Type>();
        let offsets = rows
            .column_by_name(OFFSET_COLUMN)
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..rows.num_rows() {
            self.rows.push((
                batch.stream.name().to_owned(),
                partitions.value(i),
                offsets.value(i),
            ));
        }
    }

    /// Takes a dead letter unless it is a fence record.
    pub fn add_dead(&mut self, dead: kpiflow_types::DeadLetter) {
        if dead.key.as_deref() != Some(FENCE_KEY) {
            self.dead.push(dead);
        }
    }
}

/// Per (topic, partition), the offsets `[from, until)` a test expects to
/// receive.
pub type OffsetRanges = std::collections::BTreeMap<(String, i32), (i64, i64)>;

/// The offsets of the records written between two fences: from the high
/// watermarks `before` the first records (0 for a partition that did not
/// exist) up to the fence record that `after` (the high watermarks read
/// just after the closing [`fence`]) ends with.
pub fn fenced_offsets(
    before: &HashMap<(String, i32), i64>,
    after: &HashMap<(String, i32), i64>,
) -> OffsetRanges {
    after
        .iter()
        .map(|(tp, &high)| {
            let from = before.get(tp).copied().unwrap_or(0);
            (tp.clone(), (from, (high - 1).max(from)))
        })
        .collect()
}

/// Offsets in `ranges`, summed over partitions.
pub fn offset_count(ranges: &OffsetRanges) -> i64 {
    ranges.values().map(|(from, until)| until - from).sum()
}

/// Sorted offsets as `a..b` ranges (half-open), e.g. `"12..15, 40..41"`.
pub fn offset_ranges(offsets: &[i64]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < offsets.len() {
        let start = offsets[i];
        let mut end = start + 1;
        while i + 1 < offsets.len() && offsets[i + 1] == end {
            end += 1;
            i += 1;
        }
        out.push(format!("{start}..{end}"));
        i += 1;
    }
    out.join(", ")
}

/// Receives from `source` until every offset of `expected` arrived as a row
/// or a dead letter, and says, per partition, which never did.
///
/// No fixed deadline: on a loaded machine the source is slow, not lossy. It
/// gives up only when no expected record arrived for `stall`, or after
/// `limit` in all. `pace` is slept after every batch (a slow downstream,
/// which makes the source pause its partitions). Each record costs a hash
/// insert: the earlier collector rescanned everything received for every
/// batch and dead letter (quadratic, ~110 s of CPU for 200k records in a
/// debug build), which made the test, not the source, miss its deadline.
pub async fn collect_offsets(
    source: &mut kpiflow_ingest::source::Source,
    expected: &OffsetRanges,
    stall: Duration,
    limit: Duration,
    pace: Duration,
) -> (Collected, OffsetReport) {
    let mut got = Collected::default();
    let mut seen: HashMap<(String, i32), std::collections::HashSet<i64>> = HashMap::new();
    let mut report = OffsetReport::default();
    let wanted = offset_count(expected);
    let mut have = 0i64;
    let started = tokio::time::Instant::now();
    let mut last_new = started;
    let mut note = |key: (String, i32), o: i64, report: &mut OffsetReport| -> bool {
        let inside = expected
            .get(&key)
            .is_some_and(|&(from, until)| (from..until).contains(&o));
        if !seen.entry(key.clone()).or_default().insert(o) {
            report.duplicates.push((key, o));
        } else if inside {
            return true;
        } else {
            report.unexpected.push((key, o));
        }
        false
    };
    while have < wanted {
        let now = tokio::time::Instant::now();
        let deadline = (last_new + stall).min(started + limit);
        if now >= deadline {
            report.gave_up = Some(format!(
                "{} after {:?}, the last new record {:?} ago; still queued for the test: {} batches, {} dead letters",
                if now >= started + limit {
                    "time limit"
                } else {
                    "no new record"
                },
                now - started,
                now - last_new,
                source.batches.len(),
                source.dead_letters.len(),
            ));
            break;
        }
        let before = have;
        tokio::select! {
            Some(batch) = source.batches.recv() => {
                let start = got.rows.len();
                got.add_batch(&batch);
                for (t, p, o) in &got.rows[start..] {
                    have += i64::from(note((t.clone(), *p), *o, &mut report));
                }
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
            Some(dead) = source.dead_letters.recv() => {
                if dead.key.as_deref() != Some(FENCE_KEY) {
                    have += i64::from(note((dead.topic.clone(), dead.partition), dead.offset, &mut report));
                }
                got.add_dead(dead);
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
        if have > before {
            last_new = tokio::time::Instant::now();
        }
    }
    report.elapsed = started.elapsed();
    for (tp, &(from, until)) in expected {
        let got_here = seen.get(tp);
        let missing: Vec<i64> = (from..until)
            .filter(|o| got_here.is_none_or(|s| !s.contains(o)))
            .collect();
        if !missing.is_empty() {
            report.missing.insert(tp.clone(), missing);
        }
    }
    (got, report)
}

/// What [`collect_offsets`] found.
#[derive(Debug, Default)]
pub struct OffsetReport {
    /// Why it stopped before every offset arrived, if it did.
    pub gave_up: Option<String>,
    /// Per partition, the expected offsets that never arrived.
    pub missing: std::collections::BTreeMap<(String, i32), Vec<i64>>,
    /// Records delivered more than once (each repeat once).
    pub duplicates: Vec<((String, i32), i64)>,
    /// Records outside the expected ranges.
    pub unexpected: Vec<((String, i32), i64)>,
    pub elapsed: Duration,
}

impl OffsetReport {
    /// Every expected offset arrived exactly once and nothing else did.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.duplicates.is_empty() && self.unexpected.is_empty()
    }

    /// One line per partition with missing offsets, then the duplicates and
    /// the unexpected records (the first 20 of each).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.gave_up {
            out.push_str(&format!("gave up: {why}\n"));
        }
        let total: usize = self.missing.values().map(Vec::len).sum();
        if total > 0 {
            out.push_str(&format!(
                "{total} records never arrived, in {} partitions:\n",
                self.missing.len()
            ));
        }
        for ((t, p), offsets) in &self.missing {
            out.push_str(&format!(
                "  {t}/{p}: {} missing: {}\n",
                offsets.len(),
                offset_ranges(offsets)
            ));
        }
        for (what, list) in [
            ("delivered twice", &self.duplicates),
            ("outside the expected offsets", &self.unexpected),
        ] {
            if !list.is_empty() {
                let shown: Vec<String> = list
                    .iter()
                    .take(20)
                    .map(|((t, p), o)| format!("{t}/{p}@{o}"))
                    .collect();
                out.push_str(&format!(
                    "{} records {what}: {}{}\n",
                    list.len(),
                    shown.join(", "),
                    if list.len() > 20 { ", …" } else { "" }
                ));
            }
        }
        out
    }
}

/// An engine's output gathered as a pipeline's sink receives it: call
/// [`Emitted::collect`] to take what the engine emitted since the last time.
#[derive(Debug, Default)]
pub struct Emitted {
    rows: HashMap<(String, kpiflow_types::Emit), Vec<datafusion::arrow::array::RecordBatch>>,
}

impl Emitted {
    /// Takes the engine's output so far; returns `self` to read it.
    pub fn collect(&mut self, engine: &mut kpiflow_engine::Engine) -> &Self {
        for out in engine.take_output() {
            self.rows
                .entry((out.view, out.kind))
                .or_default()
                .push(out.rows);
        }
        self
    }

    /// Everything emitted for `view` of `kind` so far.
    pub fn batches(
        &self,
        view: &str,
        kind: kpiflow_types::Emit,
    ) -> Vec<datafusion::arrow::array::RecordBatch> {
        self.rows
            .get(&(view.to_owned(), kind))
            .cloned()
            .unwrap_or_default()
    }

    pub fn rows(&self, view: &str, kind: kpiflow_types::Emit) -> usize {
        self.batches(view, kind).iter().map(|b| b.num_rows()).sum()
    }
}
