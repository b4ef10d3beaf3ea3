//! The exactly-once promise, end to end: `kpiflow run` as a child process
//! on a tansu broker of the test's own, killed with SIGKILL at seeded
//! random moments and at each step of the commit protocol (test-only
//! failpoints), restarted each time; at the end every table's rows (as a
//! multiset) equal those of an uninterrupted run over the same records,
//! and SIGTERM ends a run with exit 0 after a final checkpoint.
//!
//! The stream is seeded: malformed records (dead letters), events out of
//! order within the views' bound, no late events (a second test has them,
//! and checks each is in exactly one of a final window or a late table);
//! one record per Kafka
//! batch (tansu answers a fetch from inside a batch with the next batch,
//! and restarts resume inside batches). A last record per partition two
//! days ahead makes every window of the stream final.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array, RecordBatch};
use kpiflow_ingest::produce::{Limit, ProduceOptions, Progress, produce};
use kpiflow_ingest::simulator::{Scenario, SimConfig};
use kpiflow_storage::{Catalog, DataLocation, ObjectCheckpoints, S3Options, StoreOptions};
use kpiflow_tests::broker::OwnBroker;
use kpiflow_tests::moto::MotoServer;
use tokio_util::sync::CancellationToken;

const TOPICS: [&str; 4] = ["sales", "production", "logistics", "equipment"];
const PARTITIONS: i32 = 2;
const RECORDS: u64 = 30_000;
const PIPELINE: &str = "crash-test";
const BUCKET: &str = "kpiflow-crash";
/// Each step of the commit protocol, in order.
const FAILPOINTS: [&str; 5] = [
    "checkpoint.prepared",
    "checkpoint.state-written",
    "checkpoint.saved",
    "storage.table-committed",
    "storage.committed",
];
/// How long one run may take to consume everything.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a run's tables go: a local directory or a bucket on moto.
struct Target {
    name: String,
    /// The `--data` of `kpiflow run`.
    data: String,
    /// Variables the runs get (the S3 endpoint and credentials).
    env: Vec<(String, String)>,
    options: StoreOptions,
    log: PathBuf,
}

impl Target {
    fn local(work: &Path, name: &str) -> Target {
        Target {
            name: name.to_owned(),
            data: work.join(name).to_string_lossy().into_owned(),
            env: Vec::new(),
            options: StoreOptions::default(),
            log: work.join(format!("{name}.log")),
        }
    }

    fn s3(work: &Path, name: &str, moto: &MotoServer) -> Target {
        let options = StoreOptions {
            s3: S3Options {
                endpoint: Some(moto.endpoint.clone()),
                region: Some("us-east-1".into()),
                access_key_id: Some("test".into()),
                secret_access_key: Some("test".into()),
                session_token: None,
                allow_http: Some(true),
            },
            ..StoreOptions::default()
        };
        Target {
            name: name.to_owned(),
            data: format!("s3://{BUCKET}/{name}"),
            env: moto.env(),
            options,
            log: work.join(format!("{name}.log")),
        }
    }

    fn location(&self) -> DataLocation {
        DataLocation::open(&self.data, &self.options).unwrap()
    }
}

/// The seeded stream: 1 % malformed, 5 % out of order within 3 s, and
/// `late` of the events moved back further (1 s to 10 min past the bound).
fn stream(seed: u64, late: f64) -> SimConfig {
    SimConfig {
        seed,
        scenario: Scenario::Normal,
        malformed: 0.01,
        out_of_order: 0.05,
        late,
        max_out_of_order: Duration::from_secs(3),
        ..SimConfig::default()
    }
}

/// Produces the seeded stream, the records two days ahead and tansu's
/// fences; returns how many records the topics hold.
async fn produce_stream(brokers: &str, sim: SimConfig) -> i64 {
    let mut options = ProduceOptions::new(brokers, sim, 100_000.0, Limit::Count(RECORDS));
    options.partitions = PARTITIONS;
    options.properties = kpiflow_tests::one_record_batches();
    options
        .properties
        .push(("message.timeout.ms".into(), "600000".into()));
    let progress = Progress::default();
    let summary = produce(&options, &progress, &CancellationToken::new())
        .await
        .expect("produce to the test's broker");
    assert_eq!(summary.acked(), RECORDS);
    let ahead = progress
        .event_time_ms
        .load(std::sync::atomic::Ordering::Relaxed)
        + 2 * 86_400_000;
    let ahead = chrono::DateTime::from_timestamp_millis(ahead)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut closing = Vec::new();
    for topic in TOPICS {
        for partition in 0..PARTITIONS {
            closing.push((topic.to_owned(), partition, closing_record(topic, &ahead)));
        }
    }
    kpiflow_tests::send_to_partitions(brokers, &closing);
    kpiflow_tests::fence(brokers, &TOPICS);
    let held: i64 = kpiflow_tests::high_watermarks(brokers, &TOPICS)
        .values()
        .sum();
    assert!(
        held >= RECORDS as i64 + 2 * closing.len() as i64,
        "the topics hold {held} records"
    );
    held
}

/// A valid record of `topic` at `time`.
fn closing_record(topic: &str, time: &str) -> Vec<u8> {
    let json = match topic {
        "sales" => format!(
            r#"{{"event_time":"{time}","order_id":"close","channel":"online","region":"north","store_id":"ON-NORTH","sku":"SKU-RC-01","quantity":1,"unit_price":1.0,"amount":1.0,"kind":"order"}}"#
        ),
        "production" => format!(
            r#"{{"event_time":"{time}","plant_id":"P1","line_id":"P1-L1","work_order_id":"close","sku":"SKU-RC-01","quantity_good":1,"quantity_scrap":0,"shift":"A"}}"#
        ),
        "logistics" => format!(
            r#"{{"event_time":"{time}","shipment_id":"close","warehouse_id":"W1","destination_region":"north","sku":"SKU-RC-01","quantity":1,"carrier":"C1","status":"picked","promised_time":"{time}"}}"#
        ),
        _ => format!(
            r#"{{"event_time":"{time}","device_id":"D1","plant_id":"P1","line_id":"P1-L1","kind":"telemetry","state":"running","temperature_c":20.0,"vibration_mm_s":1.0}}"#
        ),
    };
    json.into_bytes()
}

/// Starts `kpiflow run` on `target`. Every run has a consumer group of its
/// own: tansu 0.6 keeps a member killed with SIGKILL in its group and goes
/// on assigning it partitions long past `session.timeout.ms` (measured:
/// half the partitions never fetched for minutes), where Kafka would evict
/// it. Recovery takes its offsets from the checkpoint, not from the group,
/// so this changes nothing of what is tested.
fn start(brokers: &str, target: &Target, failpoint: Option<&str>) -> Child {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let group = format!("crash-test-{}-{run}", target.name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&target.log)
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kpiflow"));
    command
        .args(["run", "--brokers", brokers, "--group", &group])
        .args(["--data", &target.data])
        .args(["--pipeline-id", PIPELINE, "--checkpoint-interval", "1s"])
        .env("RUST_LOG", "warn,librdkafka=off,rdkafka=off")
        // Small batches: a run takes several seconds over the stream, so
        // that the kills fall in the middle of it.
        .env("KPIFLOW_SOURCE__MAX_BATCH_ROWS", "32")
        .env_remove("KPIFLOW_FAILPOINT")
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(point) = failpoint {
        command.env("KPIFLOW_FAILPOINT", point);
    }
    command.spawn().expect("start kpiflow run")
}

fn wait(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Committed rows of every `raw.*` and `deadletters.*` table.
async fn consumed(target: &Target) -> i64 {
    let Ok(catalog) = Catalog::open(&target.location()).await else {
        return 0;
    };
    let mut total = 0;
    for table in catalog.tables() {
        if table.starts_with("raw.") || table.starts_with("deadletters.") {
            total += count(&catalog, &format!("SELECT count(*) FROM {table}")).await;
        }
    }
    total
}

/// Runs until every record is committed somewhere, then stops it with
/// SIGTERM and checks it exits 0 after a final checkpoint.
async fn run_to_the_end(brokers: &str, target: &Target, held: i64) {
    let log = target.log.display();
    let mut child = start(brokers, target, None);
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    loop {
        let now = consumed(target).await;
        if now == held {
            break;
        }
        assert!(now < held, "{now} records committed of {held}: some twice");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kpiflow run exited early ({status}); see {log}");
        }
        assert!(
            Instant::now() < deadline,
            "{now} of {held} records committed after {CONSUME_TIMEOUT:?}; see {log}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = newest_checkpoint(target).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait(&mut child, Duration::from_secs(60)).expect("exits within 60 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "SIGTERM → exit 0; see {log}");
    assert!(
        newest_checkpoint(target).await > before,
        "a checkpoint after SIGTERM; see {log}"
    );
}

async fn newest_checkpoint(target: &Target) -> u64 {
    ObjectCheckpoints::new(target.location(), PIPELINE, 2)
        .epochs()
        .await
        .unwrap()
        .first()
        .map_or(0, |e| e.0)
}

/// One kill at each step of the commit protocol, then five at seeded
/// moments, then a run to the end.
async fn crash_repeatedly(brokers: &str, target: &Target, held: i64, seed: u64) {
    let log = target.log.display();
    for point in FAILPOINTS {
        let mut child = start(brokers, target, Some(point));
        let status = wait(&mut child, Duration::from_secs(120)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("failpoint {point} was not reached within 120 s; see {log}")
        });
        assert_eq!(
            status.signal(),
            Some(6),
            "the run should abort at failpoint {point}, not {status}; see {log}"
        );
    }
    let mut random = Seeded(seed);
    let mut mid_stream = 0;
    for _ in 0..5 {
        let mut child = start(brokers, target, None);
        tokio::time::sleep(Duration::from_millis(500 + random.below(3000))).await;
        if child.try_wait().unwrap().is_some() {
            panic!("kpiflow run exited by itself; see {log}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if consumed(target).await < held {
            mid_stream += 1;
        }
    }
    assert!(
        mid_stream >= 3,
        "only {mid_stream} of the 5 kills came before the stream was consumed: slow the runs down"
    );
    run_to_the_end(brokers, target, held).await;
}

async fn tables(target: &Target) -> Vec<(String, Vec<RecordBatch>)> {
    let catalog = Catalog::open(&target.location()).await.unwrap();
    let mut out = Vec::new();
    for table in catalog.tables() {
        let rows = catalog
            .query(&format!("SELECT * FROM {table}"))
            .await
            .unwrap();
        out.push((table.clone(), rows));
    }
    out
}

/// A small seeded generator for the kill moments.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Every table of `got` equals `want`'s as a multiset of rows.
fn assert_same_tables(
    got: &[(String, Vec<RecordBatch>)],
    want: &[(String, Vec<RecordBatch>)],
    what: &str,
) {
    let names =
        |t: &[(String, Vec<RecordBatch>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the same tables");
    let mut final_rows = 0;
    for ((name, got), (_, want)) in got.iter().zip(want) {
        kpiflow_tests::oracle::assert_same_rows(got, want, &format!("{what}: {name}"));
        if name.starts_with("views.") {
            final_rows += want.iter().map(RecordBatch::num_rows).sum::<usize>();
        }
        assert!(
            !name.starts_with("late."),
            "no late events in this stream, yet {name} exists"
        );
    }
    assert!(
        final_rows > 100,
        "the views have final windows ({final_rows} rows)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_moment_the_tables_equal_an_uninterrupted_run() {
    let broker = OwnBroker::start();
    let moto = MotoServer::start(BUCKET);
    let brokers = broker.brokers.clone();
    let held = produce_stream(&brokers, stream(11, 0.0)).await;
    // Kept when the test fails, for its logs and tables; deleted at the end.
    let work = tempfile::Builder::new()
        .prefix("kpiflow-crash-")
        .tempdir()
        .unwrap()
        .keep();
    let whole = Target::local(&work, "whole");
    run_to_the_end(&brokers, &whole, held).await;
    let want = tables(&whole).await;

    let local = Target::local(&work, "crashed");
    crash_repeatedly(&brokers, &local, held, 20261202).await;
    assert_same_tables(&tables(&local).await, &want, "killed, on a local directory");

    let s3 = Target::s3(&work, "crashed-s3", &moto);
    crash_repeatedly(&brokers, &s3, held, 7).await;
    assert_same_tables(&tables(&s3).await, &want, "killed, on S3 (moto)");

    assert_verify_passes(&local);
    std::fs::remove_dir_all(&work).unwrap();
}

/// With late events, which events are late depends on when each partition's
/// records arrived, so runs differ; what must hold is that every event is
/// in exactly one of a final window or a late table. Every record is once
/// in `raw.*` or `deadletters.*` (they do not depend on timing), and
/// `kpiflow verify` recomputes every final window from `raw.*` minus the
/// events in `late.*`: an event in both, or in neither, fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_late_events_every_event_is_in_a_final_window_or_a_late_table() {
    let broker = OwnBroker::start();
    let brokers = broker.brokers.clone();
    let held = produce_stream(&brokers, stream(12, 0.02)).await;
    let work = tempfile::Builder::new()
        .prefix("kpiflow-crash-late-")
        .tempdir()
        .unwrap()
        .keep();
    let target = Target::local(&work, "late");
    crash_repeatedly(&brokers, &target, held, 4242).await;

    let catalog = Catalog::open(&target.location()).await.unwrap();
    let mut late = 0;
    for table in catalog.tables() {
        let (partition, offset) = if table.starts_with("raw.") {
            ("_partition", "_offset")
        } else if table.starts_with("deadletters.") {
            ("\"partition\"", "\"offset\"")
        } else {
            if table.starts_with("late.") {
                late += count(&catalog, &format!("SELECT count(*) FROM {table}")).await;
            }
            continue;
        };
        let rows = count(&catalog, &format!("SELECT count(*) FROM {table}")).await;
        let distinct = count(
            &catalog,
            &format!("SELECT count(*) FROM (SELECT DISTINCT {partition}, {offset} FROM {table})"),
        )
        .await;
        assert_eq!(rows, distinct, "{table}: every record once");
    }
    assert!(late > 100, "the stream has late events ({late} in late.*)");
    assert_verify_passes(&target);
    std::fs::remove_dir_all(&work).unwrap();
}

async fn count(catalog: &Catalog, sql: &str) -> i64 {
    let rows = catalog.query(sql).await.unwrap();
    rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

fn assert_verify_passes(target: &Target) {
    let verify = Command::new(env!("CARGO_BIN_EXE_kpiflow"))
        .args(["verify", "--data", &target.data])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "kpiflow verify on the crashed run's tables ({}):\n{}{}",
        target.data,
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
