//! The loop: dead letters and batches from the source into the engine and
//! the sinks, a tick every second, a checkpoint cut every interval and at
//! the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kpiflow_engine::{Engine, LiveStore, SourcePosition};
use kpiflow_ingest::source::SourceHandle;
use kpiflow_types::{Checkpoint, CheckpointStore, DeadLetter, Emit, Epoch, SourceBatch, Stream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{PipelineError, Result};
use crate::progress::Progress;
use crate::sinks::SinkTask;

/// How a pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How often the engine ticks: idle watermarks move, running values refresh.
    pub tick: Duration,
    /// How often a checkpoint is taken; `None`: only at the end, if a
    /// checkpoint store is set.
    pub checkpoint_interval: Option<Duration>,
    /// Messages waiting for each sink before the runner waits for it.
    pub sink_queue: usize,
    /// Longest wait for a sink to prepare an epoch or to finish at the end,
    /// and for a checkpoint to be saved.
    pub sink_timeout: Duration,
    /// Most dead letters handed to the sinks at once.
    pub dead_letter_chunk: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            tick: Duration::from_secs(1),
            checkpoint_interval: None,
            sink_queue: 16,
            sink_timeout: Duration::from_secs(60),
            dead_letter_chunk: 1024,
        }
    }
}

/// What the runner reads: a source's two channels, and optionally its
/// handle, to commit offsets to Kafka after each checkpoint (for lag
/// monitoring only: a restart resumes from the checkpoint's positions).
pub struct Input {
    pub batches: mpsc::Receiver<SourceBatch>,
    pub dead_letters: mpsc::Receiver<DeadLetter>,
    pub handle: Option<SourceHandle>,
}

impl From<&mut kpiflow_ingest::source::Source> for Input {
    /// Takes the source's channels (leaving closed ones behind) and a handle.
    fn from(source: &mut kpiflow_ingest::source::Source) -> Input {
        let (_, empty_batches) = mpsc::channel(1);
        let (_, empty_dead) = mpsc::channel(1);
        Input {
            batches: std::mem::replace(&mut source.batches, empty_batches),
            dead_letters: std::mem::replace(&mut source.dead_letters, empty_dead),
            handle: Some(source.handle.clone()),
        }
    }
}

/// Counters of a running pipeline, readable while it runs.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Rows taken per stream, in [`Stream::ALL`] order.
    pub rows: [AtomicU64; 4],
    pub batches: AtomicU64,
    pub dead_letters: AtomicU64,
    pub final_rows: AtomicU64,
    pub late_rows: AtomicU64,
    pub checkpoints: AtomicU64,
    /// The epoch of the newest checkpoint.
    pub epoch: AtomicU64,
}

impl PipelineStats {
    pub fn rows(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.rows[i].load(Ordering::Relaxed))
    }

    fn summary(&self) -> Summary {
        Summary {
            batches: self.batches.load(Ordering::Relaxed),
            rows: self.rows().iter().sum(),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            final_rows: self.final_rows.load(Ordering::Relaxed),
            late_rows: self.late_rows.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
        }
    }
}

/// What a pipeline did, when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub batches: u64,
    pub rows: u64,
    pub dead_letters: u64,
    pub final_rows: u64,
    pub late_rows: u64,
    pub checkpoints: u64,
}

/// An engine with its sinks and checkpoints, ready to run.
pub struct Pipeline {
    engine: Engine,
    config: PipelineConfig,
    sinks: Vec<SinkTask>,
    checkpoints: Option<Box<dyn CheckpointStore>>,
    epoch: Epoch,
    stats: Arc<PipelineStats>,
    handle: Option<SourceHandle>,
    /// Whether the sinks were told where they resume (`recover`).
    resumed: bool,
    progress: watch::Sender<Progress>,
}

impl Pipeline {
    pub fn new(engine: Engine, config: PipelineConfig) -> Pipeline {
        Pipeline {
            engine,
            config,
            sinks: Vec::new(),
            checkpoints: None,
            epoch: Epoch::default(),
            stats: Arc::default(),
            handle: None,
            resumed: false,
            progress: watch::Sender::new(Progress::default()),
        }
    }

    /// Adds a sink, started on a task of its own (call within a Tokio runtime).
    pub fn add_sink(&mut self, sink: Box<dyn kpiflow_types::Sink>) {
        self.sinks
            .push(SinkTask::spawn(sink, self.config.sink_queue));
    }

    pub fn set_checkpoints(&mut self, store: Box<dyn CheckpointStore>) {
        self.checkpoints = Some(store);
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    /// Where the pipeline stands, updated after every tick and checkpoint.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    fn publish(&self, tick: bool, checkpoint_at_ms: Option<i64>) {
        let views = Progress::views_of(&self.engine);
        let epoch = self.epoch.0;
        self.progress.send_modify(|p| {
            if tick {
                p.tick += 1;
                p.at_ms = chrono::Utc::now().timestamp_millis();
            }
            p.views = views;
            p.epoch = epoch;
            if checkpoint_at_ms.is_some() {
                p.checkpoint_at_ms = checkpoint_at_ms;
            }
        });
    }

    pub fn live(&self) -> LiveStore {
        self.engine.live()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The epoch of the newest checkpoint taken or restored.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Restores the newest checkpoint, if the store has one: the engine's
    /// state, the epoch, and each sink resumed after it (its commit
    /// repeated, so a crash between saving and committing loses nothing;
    /// anything written after it discarded). Returns where the source must
    /// resume, as `SourceConfig::start_offsets` takes it. Call it before
    /// `run` whenever a checkpoint store is set.
    pub async fn recover(&mut self) -> Result<Option<HashMap<(String, i32), i64>>> {
        let checkpoint = match &mut self.checkpoints {
            Some(store) => store.latest().await.map_err(PipelineError::Checkpoint)?,
            None => None,
        };
        let timeout = self.config.sink_timeout;
        let Some(checkpoint) = checkpoint else {
            for sink in &mut self.sinks {
                sink.resume(None, timeout).await?;
            }
            self.resumed = true;
            return Ok(None);
        };
        self.engine.restore(&checkpoint.snapshot)?;
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            let prepared = checkpoint.prepared.get(i).cloned().unwrap_or_default();
            sink.resume(Some((checkpoint.epoch, prepared)), timeout)
                .await?;
        }
        self.resumed = true;
        self.epoch = checkpoint.epoch;
        self.stats
            .epoch
            .store(checkpoint.epoch.0, Ordering::Relaxed);
        self.publish(false, None);
        Ok(Some(
            checkpoint
                .positions
                .into_iter()
                .map(|p| ((p.stream, p.partition), p.next_offset))
                .collect(),
        ))
    }

    /// Runs until the source's batches end or `cancel`, then takes a final
    /// checkpoint (with a store) and waits for the sinks to finish.
    pub async fn run(mut self, mut input: Input, cancel: CancellationToken) -> Result<Summary> {
        self.handle = input.handle.take();
        if !self.resumed {
            if self.checkpoints.is_some() {
                return Err(PipelineError::Internal(
                    "Pipeline::recover must run before Pipeline::run when checkpoints are kept"
                        .into(),
                ));
            }
            self.recover().await?;
        }
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every = self.config.checkpoint_interval;
        let mut checkpoint = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checkpoint.tick().await;
        let mut dead_open = true;
        loop {
            tokio::select! {
                // Dead letters first: the source sends those of a batch's
                // records before the batch, so a cut after the batch has them.
                biased;
                _ = cancel.cancelled() => break,
                dead = input.dead_letters.recv(), if dead_open => match dead {
                    Some(first) => self.dead_letters(first, &mut input.dead_letters).await?,
                    None => dead_open = false,
                },
                batch = input.batches.recv() => match batch {
                    Some(batch) => self.batch(batch).await?,
                    None => break,
                },
                _ = tick.tick() => {
                    self.engine.tick(chrono::Utc::now().timestamp_millis()).await?;
                    self.forward().await?;
                    self.publish(true, None);
                    for sink in &mut self.sinks {
                        if sink.has_stopped() {
                            return Err(sink.failure().await);
                        }
                    }
                }
                _ = checkpoint.tick(), if every.is_some() && self.checkpoints.is_some() => {
                    self.checkpoint().await?;
                }
            }
        }
        // Dead letters already handed over belong before the final cut.
        while let Ok(first) = input.dead_letters.try_recv() {
            self.dead_letters(first, &mut input.dead_letters).await?;
        }
        if self.checkpoints.is_some() {
            self.checkpoint().await?;
        }
        let timeout = self.config.sink_timeout;
        for sink in std::mem::take(&mut self.sinks) {
            sink.finish(timeout).await?;
        }
        Ok(self.stats.summary())
    }

    async fn batch(&mut self, batch: SourceBatch) -> Result<()> {
        self.engine.push(&batch).await?;
        let i = Stream::ALL
            .iter()
            .position(|s| *s == batch.stream)
            .unwrap_or(0);
        self.stats.rows[i].fetch_add(batch.rows.num_rows() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        if batch.rows.num_rows() > 0 {
            let batch = Arc::new(batch);
            for sink in &mut self.sinks {
                sink.batch(batch.clone()).await?;
            }
        }
        self.forward().await
    }

    async fn dead_letters(
        &mut self,
        first: DeadLetter,
        rest: &mut mpsc::Receiver<DeadLetter>,
    ) -> Result<()> {
        let mut chunk = vec![first];
        while chunk.len() < self.config.dead_letter_chunk {
            match rest.try_recv() {
                Ok(dead) => chunk.push(dead),
                Err(_) => break,
            }
        }
        self.stats
            .dead_letters
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let chunk: Arc<[DeadLetter]> = chunk.into();
        for sink in &mut self.sinks {
            sink.dead_letters(chunk.clone()).await?;
        }
        Ok(())
    }

    /// The engine's output to every sink, in order; waits while a sink's
    /// channel is full.
    async fn forward(&mut self) -> Result<()> {
        for rows in self.engine.take_output() {
            let counter = match rows.kind {
                Emit::Final => &self.stats.final_rows,
                Emit::Late => &self.stats.late_rows,
            };
            counter.fetch_add(rows.rows.num_rows() as u64, Ordering::Relaxed);
            for sink in &mut self.sinks {
                sink.rows(rows.clone()).await?;
            }
        }
        Ok(())
    }

    /// Takes a checkpoint now, between two batches: the engine's snapshot and
    /// source positions, every sink's epoch prepared, the checkpoint saved
    /// (the commit point), then the sinks told to commit and the offsets
    /// committed to Kafka for monitoring. Without a store, the sinks still
    /// prepare and commit the epoch.
    pub async fn checkpoint(&mut self) -> Result<Epoch> {
        let epoch = self.epoch.next();
        let snapshot = self.engine.snapshot()?;
        let positions = self.engine.source_positions();
        let timeout = self.config.sink_timeout;
        let mut prepared = Vec::with_capacity(self.sinks.len());
        for sink in &mut self.sinks {
            prepared.push(sink.prepare(epoch, timeout).await?);
        }
        kpiflow_types::failpoint::hit("checkpoint.prepared", epoch.0);
        let checkpoint = Checkpoint {
            epoch,
            snapshot,
            positions,
            prepared,
        };
        if let Some(store) = &mut self.checkpoints {
            match tokio::time::timeout(timeout, store.save(&checkpoint)).await {
                Ok(saved) => saved.map_err(PipelineError::Checkpoint)?,
                Err(_) => {
                    return Err(PipelineError::Timeout {
                        what: format!("saving checkpoint {epoch}"),
                        seconds: timeout.as_secs(),
                    });
                }
            }
            kpiflow_types::failpoint::hit("checkpoint.saved", epoch.0);
        }
        for (sink, prepared) in self.sinks.iter_mut().zip(checkpoint.prepared) {
            sink.commit(epoch, prepared).await?;
        }
        self.epoch = epoch;
        self.stats.epoch.store(epoch.0, Ordering::Relaxed);
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.publish(false, Some(chrono::Utc::now().timestamp_millis()));
        if let Some(handle) = &self.handle {
            commit_offsets(handle.clone(), &checkpoint.positions);
        }
        Ok(epoch)
    }
}

/// Commits the checkpoint's positions to the consumer group in the
/// background, for lag monitoring; a failure is logged, never fatal.
fn commit_offsets(handle: SourceHandle, positions: &[SourcePosition]) {
    let offsets: Vec<(Stream, i32, i64)> = positions
        .iter()
        .filter_map(|p| {
            let stream = p.stream.parse::<Stream>().ok()?;
            Some((stream, p.partition, p.next_offset))
        })
        .collect();
    if offsets.is_empty() {
        return;
    }
    tokio::spawn(async move {
        if let Err(e) = handle.commit(&offsets).await {
            tracing::warn!(error = %e, "committing offsets to Kafka after a checkpoint failed (monitoring only)");
        }
    });
}
