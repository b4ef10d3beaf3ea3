//! Recovery's clean-up: the files a crashed epoch wrote before its
//! checkpoint was saved are in no Delta log and no manifest; they are found
//! by listing each table and deleted before the epoch is written again. A
//! file is deleted only when the log does not reference it and its footer
//! says it is this pipeline's and of an epoch after the last checkpoint, so
//! files of other writers (another worker's epoch in progress, a compaction)
//! are never touched.

use std::collections::HashSet;

use deltalake::DeltaTable;
use deltalake::parquet::file::metadata::ParquetMetaDataReader;
use futures::TryStreamExt;
use kpiflow_types::Epoch;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::error::{Result, StorageError};
use crate::location::DataLocation;
use crate::writer::{EPOCH_KEY, PIPELINE_KEY};

/// Deletes `app`'s files of epochs after `committed` that `table` (at
/// `relative`) does not reference. Returns how many it deleted.
pub async fn remove(
    location: &DataLocation,
    relative: &str,
    table: &DeltaTable,
    app: &str,
    committed: Epoch,
) -> Result<usize> {
    let active: HashSet<String> = table
        .snapshot()
        .map_err(|e| StorageError::delta(relative, "reading its snapshot", e))?
        .log_data()
        .into_iter()
        .map(|add| add.object_store_path().to_string())
        .collect();
    let root = location.path(relative);
    let store = location.store();
    let listed: Vec<_> = store
        .list(Some(&root))
        .try_collect()
        .await
        .map_err(|e| StorageError::store(format!("listing {root}"), e))?;
    let mut deleted = 0;
    for object in listed {
        let Some(inside) = object.location.prefix_match(&root) else {
            continue;
        };
        let inside: Vec<_> = inside.map(|p| p.as_ref().to_owned()).collect();
        if inside.first().is_some_and(|p| p == "_delta_log")
            || !inside.last().is_some_and(|name| name.ends_with(".parquet"))
        {
            continue;
        }
        let relative_path = Path::from_iter(inside.iter().map(String::as_str));
        if active.contains(relative_path.as_ref()) {
            continue;
        }
        match writer_of(location, &object.location, object.size).await {
            Some((owner, epoch)) if owner == app && epoch > committed => {
                store
                    .delete(&object.location)
                    .await
                    .map_err(|e| StorageError::store(format!("deleting {}", object.location), e))?;
                tracing::info!(file = %object.location, %epoch, "deleted a file of an epoch that was never checkpointed");
                deleted += 1;
            }
            _ => {}
        }
    }
    Ok(deleted)
}

/// The pipeline and epoch in a file's footer, if it has them.
async fn writer_of(location: &DataLocation, path: &Path, size: u64) -> Option<(String, Epoch)> {
    let metadata = match footer(location, path, size).await {
        Ok(metadata) => metadata,
        Err(e) => {
            tracing::warn!(file = %path, error = %e, "an unreferenced file has no readable footer; left alone");
            return None;
        }
    };
    let metadata = metadata.file_metadata().key_value_metadata()?;
    let value = |key: &str| {
        metadata
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    let owner = value(PIPELINE_KEY)?;
    let epoch = value(EPOCH_KEY)?.parse().ok()?;
    Some((owner, Epoch(epoch)))
}

/// A Parquet file's metadata, read with two ranged gets: the 8-byte tail
/// (metadata length, `PAR1`), then the metadata.
async fn footer(
    location: &DataLocation,
    path: &Path,
    size: u64,
) -> std::result::Result<deltalake::parquet::file::metadata::ParquetMetaData, String> {
    let store = location.store();
    if size < 12 {
        return Err(format!("{size} bytes is too short for Parquet"));
    }
    let tail = store
        .get_range(path, size - 8..size)
        .await
        .map_err(|e| e.to_string())?;
    if &tail[4..] != b"PAR1" {
        return Err("no Parquet magic at the end".into());
    }
    let length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if length + 8 > size {
        return Err("the footer is longer than the file".into());
    }
    let metadata = store
        .get_range(path, size - 8 - length..size - 8)
        .await
        .map_err(|e| e.to_string())?;
    ParquetMetaDataReader::decode_metadata(&metadata).map_err(|e| e.to_string())
}
