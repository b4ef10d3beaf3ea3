//! The Kafka source against a real broker (tansu): every record ends in a
//! batch or a dead letter, back-pressure pauses instead of buffering, and
//! two members of a group hand partitions over without losing records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, Summary, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_ingest::source::{SourceConfig, start};
use kpiflow_tests::{collect_until, fence, high_watermarks, test_brokers};
use kpiflow_types::{DeadLetterKind, Stream};
use tokio_util::sync::CancellationToken;

const TOPICS: [&str; 4] = ["sales", "production", "logistics", "equipment"];

/// The tests share the broker's stream topics and count records by offset
/// ranges, so they take turns.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn group(name: &str) -> String {
    format!("kpiflow-test-{name}-{}", std::process::id())
}

/// Produces `n` records and returns the summary and the offsets they start at.
async fn produce_fenced(
    brokers: &str,
    n: u64,
    malformed: f64,
    seed: u64,
) -> (Summary, HashMap<(String, i32), i64>) {
    fence(brokers, &TOPICS);
    let before = high_watermarks(brokers, &TOPICS);
    let sim = SimConfig {
        seed,
        scenario: Scenario::Peak,
        malformed,
        ..SimConfig::default()
    };
    let mut options = ProduceOptions::new(brokers, sim, 200_000.0, Limit::Count(n));
    options.partitions = 4;
    // One record per batch: tansu 0.6.0 skips the rest of a batch when a fetch
    // starts inside it (see `kpiflow_tests::one_record_batches`).
    options.properties = kpiflow_tests::one_record_batches();
    let summary = produce(&options, &Progress::default(), &CancellationToken::new())
        .await
        .expect("produce to the test broker");
    assert_eq!(summary.acked(), n);
    fence(brokers, &TOPICS);
    (summary, before)
}

fn expected(summary: &Summary) -> BTreeMap<String, (usize, usize)> {
    summary
        .topics
        .iter()
        .map(|(t, s)| (t.clone(), (s.good as usize, s.malformed_total() as usize)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_lands_in_a_batch_or_a_dead_letter() {
    let _turn = BROKER.lock().await;
    let brokers = test_brokers();
    let n = 200_000;
    let (summary, before) = produce_fenced(&brokers, n, 0.10, 31).await;
    let expected = expected(&summary);

    let mut config = SourceConfig::new(&brokers, group("all"));
    config.start_offsets = before;
    let cancel = CancellationToken::new();
    let mut source = start(config, cancel.clone()).await.expect("source starts");
    let got = collect_until(&mut source, Duration::from_secs(180), |got| {
        expected
            .iter()
            .all(|(topic, (good, bad))| got.records_of(topic) >= good + bad)
    })
    .await;

    for (topic, (good, bad)) in &expected {
        let rows = got.rows.iter().filter(|r| &r.0 == topic).count();
        let dead = got.dead.iter().filter(|d| &d.topic == topic).count();
        assert_eq!(
            (rows, dead),
            (*good, *bad),
            "{topic}: rows and dead letters vs produced"
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (t, p, o) in got.rows.iter().cloned().chain(
        got.dead
            .iter()
            .map(|d| (d.topic.clone(), d.partition, d.offset)),
    ) {
        assert!(
            seen.insert((t.clone(), p, o)),
            "{t}/{p}@{o} delivered twice"
        );
    }
    let mut kinds: BTreeMap<DeadLetterKind, usize> = BTreeMap::new();
    for d in &got.dead {
        *kinds.entry(d.kind).or_default() += 1;
        let named = match d.kind {
            DeadLetterKind::InvalidJson => d.reason.starts_with("invalid JSON at byte"),
            _ => d.reason.contains("field `"),
        };
        assert!(named, "{:?}: {}", d.kind, d.reason);
    }
    for kind in [
        DeadLetterKind::InvalidJson,
        DeadLetterKind::WrongType,
        DeadLetterKind::MissingField,
        DeadLetterKind::BadTimestamp,
    ] {
        let share = kinds.get(&kind).copied().unwrap_or(0) as f64 / n as f64;
        assert!((share - 0.025).abs() < 0.005, "{kind}: {share}");
    }
    cancel.cancel();
    source.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_downstream_pauses_the_consumer_and_loses_nothing() {
    let _turn = BROKER.lock().await;
    let brokers = test_brokers();
    let (summary, before) = produce_fenced(&brokers, 30_000, 0.02, 32).await;
    let expected = expected(&summary);

    let mut config = SourceConfig::new(&brokers, group("slow"));
    config.start_offsets = before;
    config.max_batch_rows = 500;
    config.batch_capacity = 1;
    let cancel = CancellationToken::new();
    let mut source = start(config, cancel.clone()).await.expect("source starts");
    let mut got = kpiflow_tests::Collected::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while !expected
        .iter()
        .all(|(topic, (good, bad))| got.records_of(topic) >= good + bad)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {} rows",
            got.rows.len()
        );
        // The slow consumer: a pause after every batch.
        tokio::select! {
            Some(batch) = source.batches.recv() => {
                got.add_batch(&batch);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            Some(dead) = source.dead_letters.recv() => got.add_dead(dead),
        }
    }
    for (topic, (good, bad)) in &expected {
        assert_eq!(got.records_of(topic), good + bad, "{topic}");
    }
    let stats = source.handle.stats();
    let pauses = stats.pauses.load(std::sync::atomic::Ordering::Relaxed);
    let held = stats
        .max_held_rows
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(pauses > 0, "the consumer never paused");
    // Never more than one batch per stream waiting in the decoders.
    assert!(held <= 4 * 500, "held {held} rows");
    cancel.cancel();
    source.task.await.unwrap().unwrap();
}

/// One group member's deliveries and commits, readable while it runs.
#[derive(Default)]
struct Member {
    got: kpiflow_tests::Collected,
    committed: HashMap<(String, i32), i64>,
}

/// Reads and commits after every batch until `stop`.
async fn member_loop(
    mut source: kpiflow_ingest::source::Source,
    shared: Arc<Mutex<Member>>,
    stop: CancellationToken,
) -> kpiflow_ingest::source::Source {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(batch) = source.batches.recv() => {
                shared.lock().unwrap().got.add_batch(&batch);
                let offsets: Vec<(Stream, i32, i64)> = batch
                    .partitions
                    .iter()
                    .filter(|p| p.next_offset >= 0)
                    .map(|p| (batch.stream, p.partition, p.next_offset))
                    .collect();
                if source.handle.commit(&offsets).await.is_ok() {
                    let mut member = shared.lock().unwrap();
                    for (s, p, o) in offsets {
                        member.committed.insert((s.name().to_owned(), p), o);
                    }
                }
            }
            Some(dead) = source.dead_letters.recv() => shared.lock().unwrap().got.add_dead(dead),
        }
    }
    source
}

fn distinct_rows(members: &[&Arc<Mutex<Member>>]) -> usize {
    let mut all = std::collections::HashSet::new();
    for m in members {
        all.extend(m.lock().unwrap().got.rows.iter().cloned());
    }
    all.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_member_hands_its_partitions_over_without_gaps() {
    let _turn = BROKER.lock().await;
    let brokers = test_brokers();
    fence(&brokers, &TOPICS);
    let before = high_watermarks(&brokers, &TOPICS);
    let group_id = group("pair");
    // The group starts where this test's records start.
    kpiflow_tests::commit_group_offsets(&brokers, &group_id, &before);
    let member = |name: &str| {
        let mut config = SourceConfig::new(&brokers, &group_id);
        config.max_batch_rows = 1000;
        config.properties = vec![("client.id".into(), name.into())];
        config
    };
    let (a_shared, b_shared) = (
        Arc::new(Mutex::new(Member::default())),
        Arc::new(Mutex::new(Member::default())),
    );
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let (cancel_a, cancel_b) = (CancellationToken::new(), CancellationToken::new());
    let a = start(member("a"), cancel_a.clone())
        .await
        .expect("member a");
    let b = start(member("b"), cancel_b.clone())
        .await
        .expect("member b");
    let (a_handle, b_handle) = (a.handle.clone(), b.handle.clone());
    let a_task = tokio::spawn(member_loop(a, a_shared.clone(), stop_a.clone()));
    let b_task = tokio::spawn(member_loop(b, b_shared.clone(), stop_b.clone()));

    // Both members hold partitions before any record is written.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while a_handle.assignment().is_empty() || b_handle.assignment().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the two members never shared the partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        a_handle.assignment().len() + b_handle.assignment().len(),
        16
    );
    let (first, _) = produce_fenced(&brokers, 20_000, 0.0, 33).await;

    // b reads its share, then leaves the group.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while b_shared.lock().unwrap().got.rows.len() < 2_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "member b received too little"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_b.cancel();
    let b = b_task.await.unwrap();
    cancel_b.cancel();
    b.task.await.unwrap().unwrap();
    drop(b.handle);
    drop(b_handle);

    // More records after b left: a must take over b's partitions.
    let (second, _) = produce_fenced(&brokers, 10_000, 0.0, 34).await;
    let wanted = (first.acked() + second.acked()) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while distinct_rows(&[&a_shared, &b_shared]) < wanted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after b left, {} of {wanted} distinct rows arrived",
            distinct_rows(&[&a_shared, &b_shared])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_a.cancel();
    assert_eq!(
        a_handle.assignment().len(),
        16,
        "a did not take over b's partitions"
    );
    let a = a_task.await.unwrap();
    cancel_a.cancel();
    a.task.await.unwrap().unwrap();

    // Per partition: the union of delivered offsets has no gap (fence records
    // between the two runs are dead letters, one offset each), and a record
    // delivered by both members was committed by at most one of them.
    let a_member = a_shared.lock().unwrap();
    let b_member = b_shared.lock().unwrap();
    let mut delivered: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    for (t, p, o) in a_member.got.rows.iter().chain(b_member.got.rows.iter()) {
        delivered.entry((t.clone(), *p)).or_default().push(*o);
    }
    let committed_by = |member: &Member, tp: &(String, i32), o: i64| {
        member.committed.get(tp).is_some_and(|&c| o < c)
            && member
                .got
                .rows
                .iter()
                .any(|r| r.0 == tp.0 && r.1 == tp.1 && r.2 == o)
    };
    let mut distinct = 0;
    let mut duplicates = 0;
    for (tp, offsets) in &mut delivered {
        offsets.sort_unstable();
        for w in offsets.windows(2) {
            assert!(
                w[1] - w[0] <= 3,
                "{tp:?}: gap between {} and {}",
                w[0],
                w[1]
            );
            if w[0] == w[1] {
                duplicates += 1;
                let both = committed_by(&a_member, tp, w[0]) && committed_by(&b_member, tp, w[0]);
                assert!(!both, "{tp:?}@{} committed by both members", w[0]);
            }
        }
        offsets.dedup();
        distinct += offsets.len();
        let start = before.get(tp).copied().unwrap_or(0);
        assert!(
            offsets[0] <= start + 1,
            "{tp:?} starts at {} not {start}",
            offsets[0]
        );
    }
    println!("{duplicates} records delivered twice (uncommitted at a handover)");
    assert_eq!(distinct, wanted, "distinct rows delivered vs produced");
}
