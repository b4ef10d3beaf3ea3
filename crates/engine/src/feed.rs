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
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::streaming::PartitionStream;

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
