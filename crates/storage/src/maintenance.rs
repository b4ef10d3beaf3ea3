//! Keeping tables small and bounded while a pipeline writes: compaction
//! (Delta OPTIMIZE) of every partition but each table's newest day, so
//! that 10-s epochs do not leave thousands of small files, and retention
//! (partitions older than a table kind's retention deleted, then VACUUM of
//! the files removed more than a week ago). Both are ordinary Delta
//! commits beside the pipeline's appends; OPTIMIZE never changes data
//! (`dataChange = false`), and the files it reads are committed ones, so
//! an epoch being written is never touched.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Duration;

use deltalake::kernel::schema::partitions::{FilterOp, FilterValue};
use deltalake::operations::vacuum::VacuumMode;

use crate::delta;
use crate::error::{Result, StorageError};
use crate::location::DataLocation;
use crate::tables::{EVENT_DATE, TableKind, WINDOW_DATE};

/// What maintenance does.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// Files are merged up to about this size.
    pub target_file_size: u64,
    /// Per table kind, how long partitions are kept (by their date); absent: forever.
    pub retention: BTreeMap<TableKind, Duration>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub tables: usize,
    /// Small files merged away, and the files they became.
    pub files_compacted: u64,
    pub files_written: u64,
    /// Files of partitions past their retention.
    pub files_expired: u64,
    pub files_vacuumed: u64,
}

/// Compacts and expires every table under `location`.
pub async fn run_once(
    location: &DataLocation,
    config: &MaintenanceConfig,
) -> Result<MaintenanceReport> {
    let mut report = MaintenanceReport::default();
    for kind in TableKind::ALL {
        for name in crate::catalog::table_names(location, kind).await? {
            let relative = format!("{}/{name}", kind.dir());
            let Some(table) = delta::load(location, &relative).await? else {
                continue;
            };
            report.tables += 1;
            let table = expire(table, &relative, kind, config, &mut report).await?;
            compact(table, &relative, config, &mut report).await?;
        }
    }
    Ok(report)
}

/// The date partition column of a table, if it has one.
fn date_column(table: &deltalake::DeltaTable) -> Option<&'static str> {
    let snapshot = table.snapshot().ok()?;
    let columns = snapshot.metadata().partition_columns();
    [EVENT_DATE, WINDOW_DATE]
        .into_iter()
        .find(|c| columns.iter().any(|p| p == c))
}

/// The newest value of `column` among the table's files.
fn newest_date(table: &deltalake::DeltaTable, column: &str) -> Option<String> {
    table
        .snapshot()
        .ok()?
        .log_data()
        .into_iter()
        .filter_map(|file| file.partition_values_map().remove(column).flatten())
        .max()
}

async fn compact(
    table: deltalake::DeltaTable,
    relative: &str,
    config: &MaintenanceConfig,
    report: &mut MaintenanceReport,
) -> Result<()> {
    let target = NonZeroU64::new(config.target_file_size.max(1)).unwrap_or(NonZeroU64::MIN);
    let column = date_column(&table);
    // Every day but the newest: those partitions no longer grow.
    let newest = column.and_then(|c| newest_date(&table, c));
    let filters = match (column, newest.as_deref()) {
        (Some(column), Some(newest)) => vec![(column, FilterOp::Lt, FilterValue::Scalar(newest))],
        (Some(_), None) => return Ok(()),
        (None, _) => Vec::new(),
    };
    let (_, metrics) = table
        .optimize()
        .with_filters(&filters)
        .with_target_size(target)
        .await
        .map_err(|e| StorageError::delta(relative, "compacting", e))?;
    report.files_compacted += metrics.num_files_removed;
    report.files_written += metrics.num_files_added;
    Ok(())
}

async fn expire(
    table: deltalake::DeltaTable,
    relative: &str,
    kind: TableKind,
    config: &MaintenanceConfig,
    report: &mut MaintenanceReport,
) -> Result<deltalake::DeltaTable> {
    let (Some(keep), Some(column)) = (config.retention.get(&kind), date_column(&table)) else {
        return Ok(table);
    };
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(*keep).unwrap_or(chrono::TimeDelta::MAX);
    let cutoff = cutoff.format("%Y-%m-%d").to_string();
    let (table, metrics) = table
        .delete()
        .with_predicate(format!("{column} < '{cutoff}'"))
        .await
        .map_err(|e| {
            StorageError::delta(relative, format!("deleting partitions before {cutoff}"), e)
        })?;
    report.files_expired += metrics.num_removed_files as u64;
    // Files removed over a week ago (Delta's default tombstone retention,
    // which keeps a week of time travel) are deleted for good.
    let (table, vacuumed) = table
        .vacuum()
        .with_mode(VacuumMode::Lite)
        .await
        .map_err(|e| StorageError::delta(relative, "vacuuming", e))?;
    report.files_vacuumed += vacuumed.files_deleted.len() as u64;
    Ok(table)
}
