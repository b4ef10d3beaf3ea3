//! One Delta table: opened (or created with its schema and partition
//! columns) on the shared store, and an epoch's files committed with an
//! application transaction (app id = the pipeline's, version = the epoch),
//! so that committing an epoch again is a no-op. Commits go through the
//! default log store: each new log entry is a conditional put, safe beside
//! concurrent writers (no rename, on S3 too).

use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;
use kpiflow_types::Epoch;

use crate::error::{Result, StorageError};
use crate::location::DataLocation;
use crate::tables::TableSpec;

/// delta-rs picks a log store by URL scheme and knows only `file://` and
/// `memory://` without its AWS crate (which brings the AWS SDK and a
/// DynamoDB lock). kpiflow hands it object_store's own S3 client, whose
/// conditional puts (`If-None-Match`) make the default log store's
/// put-if-absent commits safe beside concurrent writers: registered for
/// `s3://` here, once.
pub(crate) fn register_s3_log_store() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(scheme) = url::Url::parse("s3://") {
            deltalake::logstore::logstore_factories()
                .insert(scheme, std::sync::Arc::new(ConditionalPutLogStore));
        }
    });
}

struct ConditionalPutLogStore;

impl deltalake::logstore::LogStoreFactory for ConditionalPutLogStore {
    fn with_options(
        &self,
        prefixed_store: deltalake::logstore::ObjectStoreRef,
        root_store: deltalake::logstore::ObjectStoreRef,
        location: &url::Url,
        options: &deltalake::logstore::StorageConfig,
    ) -> deltalake::DeltaResult<std::sync::Arc<dyn deltalake::logstore::LogStore>> {
        Ok(deltalake::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Loads the table at `relative` (like `raw/sales`), or `None` when there
/// is no Delta table there yet.
pub async fn load(location: &DataLocation, relative: &str) -> Result<Option<DeltaTable>> {
    // delta-rs reports a missing table in several ways (a missing local
    // directory is a kernel error); an empty `_delta_log/` is the one test.
    let log = location.path(&format!("{relative}/_delta_log"));
    let first = location.store().list(Some(&log)).next().await;
    match first {
        None => return Ok(None),
        Some(Err(e)) => return Err(StorageError::store(format!("listing {log}"), e)),
        Some(Ok(_)) => {}
    }
    let url = location.dir_url(relative);
    let mut table = DeltaTableBuilder::from_url(url.clone())
        .and_then(|b| b.with_storage_backend(location.store(), url).build())
        .map_err(|e| StorageError::delta(relative, "opening", e))?;
    match table.load().await {
        Ok(()) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(StorageError::delta(relative, "loading", e)),
    }
}

/// Opens the table of `spec`, creating it (empty, with its schema and
/// partition columns) when missing. Two writers creating it at once both
/// end up with the one that won.
pub async fn open_or_create(location: &DataLocation, spec: &TableSpec) -> Result<DeltaTable> {
    let relative = spec.relative();
    if let Some(table) = load(location, &relative).await? {
        return Ok(table);
    }
    let delta_schema = deltalake::kernel::schema::cast::normalize_for_delta(&spec.table_schema());
    let schema: StructType = delta_schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| StorageError::delta(&relative, "converting its schema", e.into()))?;
    let url = location.dir_url(&relative);
    let log_store = DeltaTableBuilder::from_url(url.clone())
        .and_then(|b| b.with_storage_backend(location.store(), url).build())
        .map_err(|e| StorageError::delta(&relative, "opening", e))?
        .log_store();
    let created = deltalake::operations::create::CreateBuilder::new()
        .with_log_store(log_store)
        .with_table_name(spec.qualified())
        .with_columns(schema.fields().cloned())
        .with_partition_columns(spec.partition_columns())
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(table) => Ok(table),
        // Another writer created it between our look and our create.
        Err(_) if load(location, &relative).await?.is_some() => load(location, &relative)
            .await?
            .ok_or_else(|| StorageError::Corrupt {
                path: relative.clone(),
                problem: "the table vanished while being created".into(),
            }),
        Err(e) => Err(StorageError::delta(&relative, "creating", e)),
    }
}

/// The newest epoch of `app` committed to `table` (0: none), after loading its newest version.
pub async fn committed_epoch(table: &mut DeltaTable, name: &str, app: &str) -> Result<Epoch> {
    table
        .update_state()
        .await
        .map_err(|e| StorageError::delta(name, "loading", e))?;
    let snapshot = table
        .snapshot()
        .map_err(|e| StorageError::delta(name, "reading its snapshot", e))?;
    let version = snapshot
        .transaction_version(table.log_store().as_ref(), app)
        .await
        .map_err(|e| StorageError::delta(name, "reading its application transactions", e))?;
    Ok(Epoch(version.unwrap_or(0).max(0) as u64))
}

/// Commits `adds` as `app`'s `epoch`, unless the table already has that
/// epoch (or a later one) from `app`. Returns whether it committed.
pub async fn commit_epoch(
    table: &mut DeltaTable,
    name: &str,
    app: &str,
    epoch: Epoch,
    adds: Vec<Add>,
) -> Result<bool> {
    if committed_epoch(table, name, app).await? >= epoch {
        return Ok(false);
    }
    let snapshot = table
        .snapshot()
        .map_err(|e| StorageError::delta(name, "reading its snapshot", e))?;
    let properties = CommitProperties::default()
        .with_application_transaction(Transaction::new(app, epoch.0 as i64));
    let operation = DeltaOperation::StreamingUpdate {
        output_mode: OutputMode::Append,
        query_id: app.to_owned(),
        epoch_id: epoch.0 as i64,
    };
    let finalized = CommitBuilder::from(properties)
        .with_actions(adds.into_iter().map(Action::Add).collect())
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(|e| StorageError::delta(name, format!("committing epoch {epoch}"), e))?;
    tracing::debug!(table = name, %epoch, version = finalized.version(), "committed");
    table
        .update_state()
        .await
        .map_err(|e| StorageError::delta(name, "loading", e))?;
    Ok(true)
}
