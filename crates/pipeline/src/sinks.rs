//! Each sink on a task of its own, fed through a bounded channel in the
//! order the runner produced things: a slow sink fills its channel and the
//! runner waits (back-pressure, never a failed push); a failed sink ends its
//! task with the error, which the runner picks up and stops with.

use std::sync::Arc;
use std::time::Duration;

use kpiflow_types::{DeadLetter, Epoch, Prepared, Sink, SinkError, SourceBatch, ViewRows};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{PipelineError, Result};

enum Message {
    Resume(Option<(Epoch, Prepared)>, oneshot::Sender<()>),
    Batch(Arc<SourceBatch>),
    Rows(ViewRows),
    DeadLetters(Arc<[DeadLetter]>),
    Prepare(Epoch, oneshot::Sender<Prepared>),
    Commit(Epoch, Prepared),
}

/// A sink's task and the runner's end of its channel.
pub(crate) struct SinkTask {
    name: String,
    tx: Option<mpsc::Sender<Message>>,
    task: Option<JoinHandle<Result<(), SinkError>>>,
}

impl SinkTask {
    pub fn spawn(mut sink: Box<dyn Sink>, capacity: usize) -> SinkTask {
        let name = sink.name().to_owned();
        let (tx, mut rx) = mpsc::channel::<Message>(capacity.max(1));
        let task = tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                match message {
                    Message::Resume(from, reply) => {
                        sink.resume(from.as_ref().map(|(e, p)| (*e, p))).await?;
                        let _ = reply.send(());
                    }
                    Message::Batch(batch) => sink.write_batch(&batch).await?,
                    Message::Rows(rows) => sink.write_rows(&rows).await?,
                    Message::DeadLetters(dead) => sink.write_dead_letters(&dead).await?,
                    Message::Prepare(epoch, reply) => {
                        let prepared = sink.prepare_commit(epoch).await?;
                        let _ = reply.send(prepared);
                    }
                    Message::Commit(epoch, prepared) => sink.commit(epoch, &prepared).await?,
                }
            }
            Ok(())
        });
        SinkTask {
            name,
            tx: Some(tx),
            task: Some(task),
        }
    }

    async fn send(&mut self, message: Message) -> Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(message).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.failure().await)
        }
    }

    /// The error that ended the sink's task (its channel closed, or
    /// [`SinkTask::has_stopped`]).
    pub async fn failure(&mut self) -> PipelineError {
        self.tx = None;
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => PipelineError::Sink(e),
                Ok(Ok(())) => {
                    PipelineError::Internal(format!("sink `{}` stopped early", self.name))
                }
                Err(e) => PipelineError::Internal(format!("sink `{}` panicked: {e}", self.name)),
            },
            None => PipelineError::Internal(format!("sink `{}` is gone", self.name)),
        }
    }

    /// Resumes the sink after the checkpoint of `from`, waiting at most `timeout`.
    pub async fn resume(
        &mut self,
        from: Option<(Epoch, Prepared)>,
        timeout: Duration,
    ) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Resume(from, reply)).await?;
        self.reply(answer, timeout, "resuming").await
    }

    pub async fn batch(&mut self, batch: Arc<SourceBatch>) -> Result<()> {
        self.send(Message::Batch(batch)).await
    }

    pub async fn rows(&mut self, rows: ViewRows) -> Result<()> {
        self.send(Message::Rows(rows)).await
    }

    pub async fn dead_letters(&mut self, dead: Arc<[DeadLetter]>) -> Result<()> {
        self.send(Message::DeadLetters(dead)).await
    }

    /// Closes the sink's share of `epoch`, waiting at most `timeout`.
    pub async fn prepare(&mut self, epoch: Epoch, timeout: Duration) -> Result<Prepared> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Prepare(epoch, reply)).await?;
        self.reply(answer, timeout, &format!("preparing epoch {epoch}"))
            .await
    }

    /// The sink task's answer to a request, or why there is none.
    async fn reply<T>(
        &mut self,
        answer: oneshot::Receiver<T>,
        timeout: Duration,
        doing: &str,
    ) -> Result<T> {
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(self.failure().await),
            Err(_) => Err(PipelineError::Timeout {
                what: format!("sink `{}` {doing}", self.name),
                seconds: timeout.as_secs(),
            }),
        }
    }

    pub async fn commit(&mut self, epoch: Epoch, prepared: Prepared) -> Result<()> {
        self.send(Message::Commit(epoch, prepared)).await
    }

    /// Whether the task ended (a failure, since the runner still holds the channel).
    pub fn has_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Closes the channel and waits for the sink to finish what it was given.
    pub async fn finish(mut self, timeout: Duration) -> Result<()> {
        self.tx = None;
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result.map_err(PipelineError::Sink),
            Ok(Err(e)) => Err(PipelineError::Internal(format!(
                "sink `{}` panicked: {e}",
                self.name
            ))),
            Err(_) => Err(PipelineError::Timeout {
                what: format!("sink `{}` finishing", self.name),
                seconds: timeout.as_secs(),
            }),
        }
    }
}
