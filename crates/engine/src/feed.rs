//! The tables a view's plan reads its input from.
//!
//! A view's per-row part (projection, filters, unions, joins with reference
//! tables) is planned once by DataFusion over tables whose scans read from a
//! [`Feed`]. To run it on a batch, the engine puts the batch in the feed under
//! its table's name, executes the plan (DataFusion's scans yield what the feed
//! holds at that moment, and nothing for the other tables) and takes the feed
//! back. Nothing is retained between batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::TryStreamExt;

/// Batches waiting to be read, by table name.
#[derive(Debug, Default, Clone)]
pub(crate) struct Feed {
    slots: Arc<Mutex<HashMap<String, Vec<RecordBatch>>>>,
}

impl Feed {
    /// Makes `batches` what scans of `table` read until [`Feed::clear`].
    pub fn set(&self, table: &str, batches: Vec<RecordBatch>) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(table.to_owned(), batches);
    }

    pub fn clear(&self) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn get(&self, table: &str) -> Vec<RecordBatch> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
            .cloned()
            .unwrap_or_default()
    }

    /// A DataFusion table reading `table`'s slot.
    pub fn table(
        &self,
        table: &str,
        schema: SchemaRef,
    ) -> datafusion::common::Result<StreamingTable> {
        StreamingTable::try_new(schema.clone(), vec![self.partition(table, schema)])
    }

    /// A partition stream reading `table`'s slot, for plans built by hand.
    pub fn partition(&self, table: &str, schema: SchemaRef) -> Arc<dyn PartitionStream> {
        Arc::new(FeedPartition {
            feed: self.clone(),
            table: table.to_owned(),
            schema,
        })
    }
}

#[derive(Debug)]
struct FeedPartition {
    feed: Feed,
    table: String,
    schema: SchemaRef,
}

impl PartitionStream for FeedPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = self.feed.get(&self.table);
        match MemoryStream::try_new(batches, self.schema.clone(), None) {
            Ok(stream) => Box::pin(stream),
            Err(e) => Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    self.schema.clone(),
                    futures::stream::once(async move { Err(e) }),
                ),
            ),
        }
    }
}

/// Runs a plan reading the feed to completion, over all its partitions.
async fn run(plan: &Arc<dyn ExecutionPlan>, ctx: &Arc<TaskContext>) -> DfResult<Vec<RecordBatch>> {
    // Joins keep their build side between executions (HashJoinExec's
    // OnceAsync): reset them, or a stream on the build side would be joined
    // again with every later batch.
    let joins = plan
        .exists(|node| Ok(node.children().len() > 1))
        .unwrap_or(true);
    let plan = if joins {
        reset_plan_states(plan.clone())?
    } else {
        plan.clone()
    };
    let mut out = Vec::new();
    let partitions = plan.properties().partitioning.partition_count();
    for p in 0..partitions {
        let stream = plan.execute(p, ctx.clone())?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        out.extend(batches.into_iter().filter(|b| b.num_rows() > 0));
    }
    Ok(out)
}

/// A plan with the batches its feed scans will read. Owns what it needs, so
/// running it borrows no view state across the await.
pub(crate) struct Run {
    plan: Arc<dyn ExecutionPlan>,
    slots: Vec<(String, Vec<RecordBatch>)>,
}

impl Run {
    pub fn new(plan: &Arc<dyn ExecutionPlan>, slots: Vec<(&str, Vec<RecordBatch>)>) -> Run {
        Run {
            plan: plan.clone(),
            slots: slots
                .into_iter()
                .map(|(slot, batches)| (slot.to_owned(), batches))
                .collect(),
        }
    }

    /// Runs the plan with each slot's batches in the feed.
    pub async fn execute(self, feed: &Feed, ctx: &Arc<TaskContext>) -> DfResult<Vec<RecordBatch>> {
        for (slot, batches) in self.slots {
            feed.set(&slot, batches);
        }
        let out = run(&self.plan, ctx).await;
        feed.clear();
        out
    }
}
