//! The pipeline runner: a slow sink makes it wait instead of failing, a
//! failed sink stops it with the cause, and a checkpoint taken at the end
//! restores into a fresh pipeline with the source's positions.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kpiflow_engine::{Emit, Engine, EngineConfig};
use kpiflow_pipeline::{
    CheckpointStore, Input, MemoryCheckpoints, MemorySink, Pipeline, PipelineConfig, PipelineError,
};
use kpiflow_tests::sales::*;
use kpiflow_types::{DeadLetter, DeadLetterKind, Sink, SinkError, SourceBatch, Stream, ViewRows};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

const PER_MINUTE: &str = "SELECT sku, count(*) AS orders FROM sales \
                          GROUP BY tumble(event_time, INTERVAL '1 minute'), sku";
const T0: i64 = 1_790_000_000_000;
const MINUTE: i64 = 60_000;
const WAIT: Duration = Duration::from_secs(30);

async fn pipeline(config: PipelineConfig) -> Pipeline {
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    engine.create_view("v", PER_MINUTE).await.unwrap();
    Pipeline::new(engine, config)
}

/// Minute `m`'s one sale; each batch closes the window before it.
fn minute(m: i64) -> SourceBatch {
    let t = T0 + m * MINUTE;
    batch(
        Stream::Sales,
        sales_rows(&[sale(t, 0, "A", "online", 1, 1.0)], m),
        vec![kpiflow_types::PartitionProgress {
            partition: 0,
            max_event_time_ms: Some(t),
            next_offset: m + 1,
            idle: false,
        }],
    )
}

fn input(capacity: usize) -> (mpsc::Sender<SourceBatch>, mpsc::Sender<DeadLetter>, Input) {
    let (batches_tx, batches) = mpsc::channel(capacity);
    let (dead_tx, dead_letters) = mpsc::channel(capacity);
    (
        batches_tx,
        dead_tx,
        Input {
            batches,
            dead_letters,
            handle: None,
        },
    )
}

/// A sink that takes one permit per write.
struct Gated {
    gate: Arc<Semaphore>,
    inner: MemorySink,
}

#[async_trait]
impl Sink for Gated {
    fn name(&self) -> &str {
        "gated"
    }

    async fn write_rows(&mut self, rows: &ViewRows) -> Result<(), SinkError> {
        self.gate.acquire().await.unwrap().forget();
        self.inner.write_rows(rows).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_makes_the_runner_wait_and_nothing_is_lost() {
    let mut pipeline = pipeline(PipelineConfig {
        sink_queue: 1,
        ..PipelineConfig::default()
    })
    .await;
    let gate = Arc::new(Semaphore::new(0));
    let sink = MemorySink::default();
    pipeline.add_sink(Box::new(Gated {
        gate: gate.clone(),
        inner: sink.clone(),
    }));
    let (tx, _dead, input) = input(2);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(input, cancel.clone()));
    // The sink takes nothing: the runner stops taking batches after the
    // sink's queue and its own hand are full, then the input channel fills.
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tx.try_send(minute(sent)) {
            Ok(()) => sent += 1,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if tx.try_send(minute(sent)).is_err() {
                    break;
                }
                sent += 1;
            }
            Err(e) => panic!("the runner stopped: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no back-pressure after {sent} batches"
        );
    }
    assert!(sent < 10, "took {sent} batches with the sink stalled");
    assert!(!run.is_finished(), "the runner gave up on a slow sink");
    // Let the sink go: everything arrives.
    gate.add_permits(1_000);
    for m in sent..sent + 5 {
        tokio::time::timeout(WAIT, tx.send(minute(m)))
            .await
            .unwrap()
            .unwrap();
    }
    drop(tx);
    let summary = tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.batches, (sent + 5) as u64);
    // Every minute but the last is final.
    assert_eq!(sink.rows("v", Emit::Final), (sent + 4) as usize);
}

struct Failing;

#[async_trait]
impl Sink for Failing {
    fn name(&self) -> &str {
        "failing"
    }

    async fn write_rows(&mut self, _rows: &ViewRows) -> Result<(), SinkError> {
        Err(SinkError::new(
            "failing",
            "write rows",
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no write permission"),
        ))
    }
}

#[tokio::test]
async fn a_failed_sink_stops_the_pipeline_with_its_cause() {
    let mut pipeline = pipeline(PipelineConfig::default()).await;
    pipeline.add_sink(Box::new(Failing));
    let (tx, _dead, input) = input(8);
    let run = tokio::spawn(pipeline.run(input, CancellationToken::new()));
    for m in 0..3 {
        // The runner may have stopped already: sending then fails.
        let _ = tx.send(minute(m)).await;
    }
    let err = tokio::time::timeout(WAIT, run)
        .await
        .expect("the runner did not stop")
        .unwrap()
        .unwrap_err();
    let PipelineError::Sink(e) = &err else {
        panic!("not a sink error: {err}");
    };
    assert_eq!(e.sink, "failing");
    let io = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the cause is kept");
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("no write permission"), "{err}");
}

#[tokio::test]
async fn a_final_checkpoint_restores_into_a_fresh_pipeline() {
    let store = MemoryCheckpoints::default();
    let mut first = pipeline(PipelineConfig::default()).await;
    let sink = MemorySink::default();
    first.add_sink(Box::new(sink.clone()));
    first.set_checkpoints(Box::new(store.clone()));
    assert!(
        first.recover().await.unwrap().is_none(),
        "a fresh store has no checkpoint"
    );
    let (tx, dead_tx, feed) = input(8);
    let run = tokio::spawn(first.run(feed, CancellationToken::new()));
    for m in 0..3 {
        tx.send(minute(m)).await.unwrap();
    }
    dead_tx
        .send(DeadLetter {
            topic: "sales".into(),
            partition: 0,
            offset: 3,
            timestamp_ms: None,
            key: None,
            payload: Some(b"{".to_vec()),
            kind: DeadLetterKind::InvalidJson,
            reason: "invalid JSON at byte 1".into(),
        })
        .await
        .unwrap();
    drop((tx, dead_tx));
    let summary = tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.checkpoints, 1);
    assert_eq!(sink.dead_letters().len(), 1);
    let checkpoint = store.clone().latest().await.unwrap().expect("a checkpoint");
    assert_eq!(checkpoint.epoch.0, 1);
    assert_eq!(checkpoint.prepared.len(), 1);

    let mut second = pipeline(PipelineConfig::default()).await;
    let resumed = MemorySink::default();
    second.add_sink(Box::new(resumed.clone()));
    second.set_checkpoints(Box::new(store.clone()));
    let positions = second.recover().await.unwrap().expect("positions");
    assert_eq!(positions.get(&("sales".to_owned(), 0)), Some(&3));
    assert_eq!(second.epoch().0, 1);
    // The restored engine closes the open minute exactly once.
    let (tx, _dead, feed) = input(8);
    let run = tokio::spawn(second.run(feed, CancellationToken::new()));
    tx.send(minute(5)).await.unwrap();
    drop(tx);
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        sink.rows("v", Emit::Final) + resumed.rows("v", Emit::Final),
        3
    );
}
