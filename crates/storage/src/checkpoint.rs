//! Checkpoints on the object store: `checkpoints/<pipeline>/<epoch>/` holds
//! `state.arrows` (the engine's snapshot, its named batches as Arrow IPC
//! files one after the other) and then `manifest.json` (see `manifest.rs`),
//! written with a conditional put: the commit point. `latest` takes the
//! newest checkpoint whose manifest and state read back whole; a damaged
//! one is reported and the one before it is used. Old checkpoints are
//! deleted by count (the newest `keep`), never by age.

use std::io::Cursor;

use async_trait::async_trait;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use futures::TryStreamExt;
use kpiflow_types::{
    BoxError, Checkpoint, CheckpointStore, Epoch, Prepared, Snapshot, SourcePosition,
};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload};

use crate::error::{Result, StorageError};
use crate::location::DataLocation;
use crate::manifest::{
    MANIFEST_FORMAT, Manifest, Position, PreparedCommit, StateEntry, StateObject,
};

const STATE_FILE: &str = "state.arrows";
const MANIFEST_FILE: &str = "manifest.json";

/// One pipeline's checkpoints under a data location.
pub struct ObjectCheckpoints {
    location: DataLocation,
    pipeline: String,
    keep: usize,
}

impl ObjectCheckpoints {
    /// `keep`: how many of the newest checkpoints to keep (at least 2, so a
    /// damaged newest one has a predecessor).
    pub fn new(location: DataLocation, pipeline: &str, keep: usize) -> ObjectCheckpoints {
        ObjectCheckpoints {
            location,
            pipeline: pipeline.to_owned(),
            keep: keep.max(2),
        }
    }

    fn dir(&self) -> Path {
        self.location
            .path(&format!("checkpoints/{}", self.pipeline))
    }

    fn epoch_dir(&self, epoch: Epoch) -> Path {
        self.dir().clone().join(format!("{:020}", epoch.0))
    }

    /// The epochs that have a folder, newest first.
    pub async fn epochs(&self) -> Result<Vec<Epoch>> {
        let dir = self.dir();
        let listed = self
            .location
            .store()
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| StorageError::store(format!("listing {dir}"), e))?;
        let mut epochs: Vec<Epoch> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse().ok().map(Epoch))
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(epochs)
    }

    pub async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let dir = self.epoch_dir(checkpoint.epoch);
        let (state, bytes) = encode_state(&checkpoint.snapshot)?;
        let store = self.location.store();
        let state_path = dir.clone().join(STATE_FILE);
        store
            .put(&state_path, PutPayload::from(bytes))
            .await
            .map_err(|e| StorageError::store(format!("writing {state_path}"), e))?;
        kpiflow_types::failpoint::hit("checkpoint.state-written", checkpoint.epoch.0);
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            pipeline: self.pipeline.clone(),
            epoch: checkpoint.epoch.0,
            created_at: chrono::Utc::now().to_rfc3339(),
            state,
            positions: checkpoint
                .positions
                .iter()
                .map(|p| Position {
                    stream: p.stream.clone(),
                    partition: p.partition,
                    next_offset: p.next_offset,
                })
                .collect(),
            prepared: checkpoint
                .prepared
                .iter()
                .map(|p| PreparedCommit::new(&p.sink, &p.payload))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StorageError::data("writing a manifest", e))?;
        let manifest_path = dir.clone().join(MANIFEST_FILE);
        match store
            .put_opts(
                &manifest_path,
                PutPayload::from(json),
                PutMode::Create.into(),
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(StorageError::Corrupt {
                    path: manifest_path.to_string(),
                    problem: format!(
                        "checkpoint {} already exists: is another process running pipeline `{}` on this data?",
                        checkpoint.epoch, self.pipeline
                    ),
                });
            }
            Err(e) => return Err(StorageError::store(format!("writing {manifest_path}"), e)),
        }
        self.collect_garbage(checkpoint.epoch).await
    }

    /// Deletes checkpoints older than the newest `keep` (up to `newest`).
    async fn collect_garbage(&self, newest: Epoch) -> Result<()> {
        let store = self.location.store();
        for epoch in self.epochs().await?.into_iter().skip(self.keep) {
            if epoch >= newest {
                continue;
            }
            let dir = self.epoch_dir(epoch);
            let objects: Vec<_> = store
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|e| StorageError::store(format!("listing {dir}"), e))?;
            // The manifest first: a half-deleted checkpoint is an incomplete one.
            let mut paths: Vec<Path> = objects.into_iter().map(|o| o.location).collect();
            paths.sort_by_key(|p| p.filename() != Some(MANIFEST_FILE));
            for path in paths {
                store
                    .delete(&path)
                    .await
                    .map_err(|e| StorageError::store(format!("deleting {path}"), e))?;
            }
        }
        Ok(())
    }

    /// Checkpoint `epoch`, read back and checked whole; `Ok(None)` when its
    /// manifest is absent (a checkpoint that never completed).
    pub async fn load(&self, epoch: Epoch) -> Result<Option<Checkpoint>> {
        let dir = self.epoch_dir(epoch);
        let manifest_path = dir.clone().join(MANIFEST_FILE);
        let store = self.location.store();
        let bytes = match store.get(&manifest_path).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(|e| StorageError::store(format!("reading {manifest_path}"), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(StorageError::store(format!("reading {manifest_path}"), e)),
        };
        let corrupt = |problem: String| StorageError::Corrupt {
            path: manifest_path.to_string(),
            problem,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("not a readable manifest: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(corrupt(format!(
                "manifest format {} (this build reads {MANIFEST_FORMAT})",
                manifest.format
            )));
        }
        if manifest.epoch != epoch.0 || manifest.pipeline != self.pipeline {
            return Err(corrupt(format!(
                "says epoch {} of pipeline `{}`",
                manifest.epoch, manifest.pipeline
            )));
        }
        let state_path = dir.clone().join(manifest.state.file.as_str());
        let state = store
            .get(&state_path)
            .await
            .map_err(|e| StorageError::store(format!("reading {state_path}"), e))?
            .bytes()
            .await
            .map_err(|e| StorageError::store(format!("reading {state_path}"), e))?;
        let snapshot =
            decode_state(&manifest.state, &state).map_err(|problem| StorageError::Corrupt {
                path: state_path.to_string(),
                problem,
            })?;
        let prepared = manifest
            .prepared
            .iter()
            .map(|p| {
                Ok(Prepared {
                    sink: p.sink.clone(),
                    payload: p.payload_bytes().map_err(&corrupt)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Checkpoint {
            epoch,
            snapshot,
            positions: manifest
                .positions
                .into_iter()
                .map(|p| SourcePosition {
                    stream: p.stream,
                    partition: p.partition,
                    next_offset: p.next_offset,
                })
                .collect(),
            prepared,
        }))
    }

    /// The newest complete checkpoint. A damaged one is skipped with a
    /// warning naming it; the Delta sink then refuses to resume if a table
    /// already committed the skipped epoch.
    pub async fn newest(&self) -> Result<Option<Checkpoint>> {
        let mut damaged: Option<(Epoch, StorageError)> = None;
        for epoch in self.epochs().await? {
            match self.load(epoch).await {
                Ok(Some(checkpoint)) => {
                    if let Some((bad, error)) = &damaged {
                        tracing::warn!(
                            "checkpoint {bad} is damaged ({error}); falling back to checkpoint {epoch}"
                        );
                    }
                    return Ok(Some(checkpoint));
                }
                Ok(None) => continue,
                Err(e @ StorageError::Corrupt { .. }) => {
                    if damaged.is_none() {
                        damaged = Some((epoch, e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match damaged {
            // No checkpoint to fall back to: starting empty would write the
            // damaged epochs' rows again.
            Some((_, error)) => Err(error),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl CheckpointStore for ObjectCheckpoints {
    async fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), BoxError> {
        Ok(self.save_checkpoint(checkpoint).await?)
    }

    async fn latest(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        Ok(self.newest().await?)
    }
}

fn encode_state(snapshot: &Snapshot) -> Result<(StateObject, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut entries = Vec::with_capacity(snapshot.entries.len());
    for (name, batch) in &snapshot.entries {
        let offset = bytes.len() as u64;
        let mut file = Vec::new();
        let mut writer = FileWriter::try_new(&mut file, &batch.schema())
            .map_err(|e| StorageError::data(format!("encoding state entry {name}"), e))?;
        writer
            .write(batch)
            .and_then(|()| writer.finish())
            .map_err(|e| StorageError::data(format!("encoding state entry {name}"), e))?;
        drop(writer);
        bytes.extend_from_slice(&file);
        entries.push(StateEntry {
            name: name.clone(),
            offset,
            length: file.len() as u64,
            rows: batch.num_rows() as u64,
        });
    }
    let state = StateObject {
        file: STATE_FILE.to_owned(),
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
        snapshot_format: snapshot.format_version,
        entries,
    };
    Ok((state, bytes))
}

fn decode_state(state: &StateObject, bytes: &[u8]) -> std::result::Result<Snapshot, String> {
    if bytes.len() as u64 != state.bytes {
        return Err(format!(
            "{} bytes where the manifest says {}",
            bytes.len(),
            state.bytes
        ));
    }
    if crc32fast::hash(bytes) != state.crc32 {
        return Err("its checksum does not match the manifest".into());
    }
    let mut snapshot = Snapshot {
        format_version: state.snapshot_format,
        entries: Vec::with_capacity(state.entries.len()),
    };
    for entry in &state.entries {
        let start = entry.offset as usize;
        let end = start.saturating_add(entry.length as usize);
        let file = bytes
            .get(start..end)
            .ok_or_else(|| format!("entry {} lies outside the object", entry.name))?;
        let reader = FileReader::try_new(Cursor::new(file), None)
            .map_err(|e| format!("entry {}: {e}", entry.name))?;
        let mut rows = 0;
        for batch in reader {
            let batch = batch.map_err(|e| format!("entry {}: {e}", entry.name))?;
            rows += batch.num_rows() as u64;
            snapshot.entries.push((entry.name.clone(), batch));
        }
        if rows != entry.rows {
            return Err(format!(
                "entry {} has {rows} rows where the manifest says {}",
                entry.name, entry.rows
            ));
        }
    }
    Ok(snapshot)
}
