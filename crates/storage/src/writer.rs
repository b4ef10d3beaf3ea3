//! An epoch's files of one table. Rows stream into Parquet files (zstd,
//! statistics) through delta-rs's `RecordBatchWriter`, which splits them by
//! partition and rolls files at the target size; `close` finishes the
//! epoch's files and returns their `add` actions without committing them:
//! written, not yet visible to any reader. Every file carries the pipeline
//! and the epoch in its footer (`kpiflow.pipeline`, `kpiflow.epoch`), which
//! is how recovery knows a crashed epoch's files from anyone else's.

use datafusion::arrow::array::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::Add;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::metadata::KeyValue;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use kpiflow_types::Epoch;

use crate::error::{Result, StorageError};
use crate::tables::TableSpec;

/// Footer key naming the pipeline (application id) that wrote a file.
pub const PIPELINE_KEY: &str = "kpiflow.pipeline";
/// Footer key holding the epoch a file belongs to.
pub const EPOCH_KEY: &str = "kpiflow.epoch";

/// Files roll over at about this size.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// Rows gathered before they go to the Parquet writer: delta-rs's writer
/// costs milliseconds a call whatever the rows (the partition split, the
/// schema checks), and source batches hold a few hundred to a few thousand
/// rows. Bounds what a table holds in memory besides its open files.
const WRITE_CHUNK_ROWS: usize = 65_536;

pub(crate) struct TableWriter {
    pub spec: TableSpec,
    /// Always `Some` between calls (taken to swap its properties).
    writer: Option<RecordBatchWriter>,
    app: String,
    rows: usize,
    /// Rows not yet handed to the writer, fewer than `WRITE_CHUNK_ROWS`.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl TableWriter {
    pub fn new(
        table: &DeltaTable,
        spec: TableSpec,
        app: &str,
        epoch: Epoch,
    ) -> Result<TableWriter> {
        let writer = RecordBatchWriter::for_table(table)
            .map_err(|e| StorageError::delta(spec.relative(), "starting a writer", e))?
            .with_target_file_size(DEFAULT_TARGET_FILE_SIZE)
            .with_writer_properties(properties(app, epoch));
        Ok(TableWriter {
            spec,
            writer: Some(writer),
            app: app.to_owned(),
            rows: 0,
            pending: Vec::new(),
            pending_rows: 0,
        })
    }

    /// Adds rows (partition columns are derived here) to the epoch's files.
    pub async fn write(&mut self, rows: &RecordBatch) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.pending.push(rows.clone());
        self.pending_rows += rows.num_rows();
        self.rows += rows.num_rows();
        if self.pending_rows >= WRITE_CHUNK_ROWS {
            self.write_pending().await?;
        }
        Ok(())
    }

    /// Hands the gathered rows to the writer as one batch.
    async fn write_pending(&mut self) -> Result<()> {
        let Some(first) = self.pending.first() else {
            return Ok(());
        };
        let table = self.spec.relative();
        let rows = datafusion::arrow::compute::concat_batches(&first.schema(), &self.pending)
            .map_err(|e| StorageError::data(format!("gathering the rows of {table}"), e))?;
        self.pending.clear();
        self.pending_rows = 0;
        let batch = self.spec.with_partition_columns(&rows)?;
        self.writer_mut()?
            .write(batch)
            .await
            .map_err(|e| StorageError::delta(table, "writing rows", e))
    }

    /// Finishes the epoch's files and returns their `add` actions; the next
    /// files written belong to `next`.
    pub async fn close(&mut self, next: Epoch) -> Result<Vec<Add>> {
        self.write_pending().await?;
        let adds = if self.rows == 0 {
            Vec::new()
        } else {
            self.writer_mut()?
                .flush()
                .await
                .map_err(|e| StorageError::delta(self.spec.relative(), "closing files", e))?
        };
        self.rows = 0;
        let writer = self.writer.take();
        self.writer = writer.map(|w| w.with_writer_properties(properties(&self.app, next)));
        Ok(adds)
    }

    fn writer_mut(&mut self) -> Result<&mut RecordBatchWriter> {
        let table = self.spec.relative();
        self.writer.as_mut().ok_or_else(|| StorageError::Corrupt {
            path: table,
            problem: "its writer failed earlier".into(),
        })
    }
}

/// zstd, statistics (the default), and the footer keys of `epoch`.
fn properties(app: &str, epoch: Epoch) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("kpiflow {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(PIPELINE_KEY.to_owned(), app.to_owned()),
            KeyValue::new(EPOCH_KEY.to_owned(), epoch.0.to_string()),
        ]))
        .build()
}
