//! `DeltaSink`: the pipeline's output into Delta tables, two-phase. Rows
//! of an epoch stream into each table's files as they come (source batches
//! into `raw.<topic>`, final and late rows into `views.<view>` and
//! `late.<view>`, dead letters into `deadletters.<topic>`); `prepare_commit`
//! closes them and returns the `add` actions per table — what the
//! checkpoint's manifest records; `commit` appends them to each table's log
//! as the pipeline's application transaction of that epoch, so a repeat
//! (recovery rolling forward) is a no-op. `resume` rolls the last
//! checkpoint forward and deletes a crashed epoch's files.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::Add;
use kpiflow_types::{
    DeadLetter, Emit, Epoch, Prepared, Sink, SinkError, SourceBatch, Stream, ViewRows,
};
use serde::{Deserialize, Serialize};

use crate::delta;
use crate::error::{Result, StorageError};
use crate::location::DataLocation;
use crate::orphans;
use crate::tables::{TableKind, TableSpec};
use crate::writer::TableWriter;

const NAME: &str = "delta";

/// What `prepare_commit` hands the checkpoint: the epoch's files per table.
#[derive(Debug, Serialize, Deserialize)]
struct EpochFiles {
    epoch: u64,
    /// Table (`raw/sales`) → its new files.
    tables: BTreeMap<String, Vec<Add>>,
}

struct Table {
    delta: DeltaTable,
    /// Known for the tables opened by name; those only found on disk get
    /// one with their first rows.
    spec: Option<TableSpec>,
    /// The epoch's files; present once the sink has resumed and knows the spec.
    writer: Option<TableWriter>,
}

/// Delta tables under one data location, written by one pipeline.
pub struct DeltaSink {
    location: DataLocation,
    app: String,
    /// Topics whose source rows go to `raw.<topic>`.
    raw: BTreeSet<Stream>,
    tables: BTreeMap<String, Table>,
    /// The epoch being written; `None` until `resume`.
    epoch: Option<Epoch>,
}

impl DeltaSink {
    /// Opens (creating when missing) the tables of `specs`; others are
    /// created when their first rows arrive (a view added later, a view's
    /// first late rows). `raw`: the topics archived.
    pub async fn open(
        location: DataLocation,
        app: &str,
        specs: Vec<TableSpec>,
        raw: BTreeSet<Stream>,
    ) -> Result<DeltaSink> {
        let mut sink = DeltaSink {
            location,
            app: app.to_owned(),
            raw,
            tables: BTreeMap::new(),
            epoch: None,
        };
        for spec in specs {
            sink.table(spec).await?;
        }
        Ok(sink)
    }

    /// The table of `spec`, opened or created on first use.
    async fn table(&mut self, spec: TableSpec) -> Result<&mut Table> {
        let key = spec.relative();
        if !self.tables.contains_key(&key) {
            let delta = delta::open_or_create(&self.location, &spec).await?;
            self.tables.insert(
                key.clone(),
                Table {
                    delta,
                    spec: Some(spec.clone()),
                    writer: None,
                },
            );
        }
        let table = self.tables.get_mut(&key).expect("inserted above");
        if table.writer.is_none()
            && let Some(epoch) = self.epoch
        {
            let spec = table.spec.clone().unwrap_or(spec);
            table.writer = Some(TableWriter::new(&table.delta, spec, &self.app, epoch)?);
        }
        Ok(table)
    }

    async fn write(&mut self, spec: TableSpec, rows: &RecordBatch) -> Result<()> {
        if self.epoch.is_none() {
            return Err(StorageError::Corrupt {
                path: spec.relative(),
                problem: "rows arrived before the sink was resumed (a bug in the runner)".into(),
            });
        }
        let key = spec.relative();
        match &mut self.table(spec).await?.writer {
            Some(writer) => writer.write(rows).await,
            None => Err(StorageError::Corrupt {
                path: key,
                problem: "no writer for the table (a bug)".into(),
            }),
        }
    }

    async fn commit_files(&mut self, epoch: Epoch, files: EpochFiles) -> Result<()> {
        let count = files.tables.len();
        for (i, (key, adds)) in files.tables.into_iter().enumerate() {
            let found = self.ensure_loaded(&key).await?;
            let (Some(table), true) = (self.tables.get_mut(&key), found) else {
                return Err(StorageError::Corrupt {
                    path: key.clone(),
                    problem: format!(
                        "checkpoint {epoch} lists files for this table, which does not exist"
                    ),
                });
            };
            delta::commit_epoch(&mut table.delta, &key, &self.app, epoch, adds).await?;
            if i + 1 < count {
                kpiflow_types::failpoint::hit("storage.table-committed", epoch.0);
            }
        }
        kpiflow_types::failpoint::hit("storage.committed", epoch.0);
        Ok(())
    }

    /// Loads the table at `key` from the store when this run has not
    /// opened it yet; `false` when there is no Delta table there.
    async fn ensure_loaded(&mut self, key: &str) -> Result<bool> {
        if !self.tables.contains_key(key) {
            let Some(delta) = delta::load(&self.location, key).await? else {
                return Ok(false);
            };
            self.tables.insert(
                key.to_owned(),
                Table {
                    delta,
                    spec: None,
                    writer: None,
                },
            );
        }
        Ok(true)
    }

    /// Every table of the data location that this sink may have written.
    async fn existing_tables(&mut self) -> Result<Vec<String>> {
        let store = self.location.store();
        let mut found = Vec::new();
        for kind in TableKind::ALL {
            let dir = self.location.path(kind.dir());
            let listed = store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|e| StorageError::store(format!("listing {dir}"), e))?;
            for prefix in listed.common_prefixes {
                if let Some(name) = prefix.filename() {
                    found.push(format!("{}/{name}", kind.dir()));
                }
            }
        }
        Ok(found)
    }

    async fn resume_after(&mut self, from: Option<(Epoch, &Prepared)>) -> Result<()> {
        let committed = match from {
            Some((epoch, prepared)) => {
                let files = decode(epoch, prepared)?;
                self.commit_files(epoch, files).await?;
                epoch
            }
            None => Epoch(0),
        };
        let mut ahead = Vec::new();
        for key in self.existing_tables().await? {
            if !self.ensure_loaded(&key).await? {
                continue;
            }
            let Some(table) = self.tables.get(&key).map(|t| &t.delta) else {
                continue;
            };
            let deleted =
                orphans::remove(&self.location, &key, table, &self.app, committed).await?;
            if deleted > 0 {
                tracing::warn!(table = %key, files = deleted, "removed the files of an epoch after checkpoint {committed} that was never checkpointed");
            }
            ahead.push(key);
        }
        // A table holding a later epoch than the checkpoint resumed from
        // (the newest one was damaged and skipped) would get that epoch's
        // rows twice.
        for key in ahead {
            let Some(table) = self.tables.get_mut(&key) else {
                continue;
            };
            let has = delta::committed_epoch(&mut table.delta, &key, &self.app).await?;
            if has > committed {
                return Err(StorageError::Inconsistent {
                    table: key,
                    problem: format!(
                        "the table holds epoch {has} of pipeline `{}`, after checkpoint {committed}, \
                         the newest readable one: restore the newer checkpoint's files, or start \
                         this pipeline on a fresh data location",
                        self.app
                    ),
                });
            }
        }
        let epoch = committed.next();
        self.epoch = Some(epoch);
        for table in self.tables.values_mut() {
            if let Some(spec) = &table.spec {
                table.writer = Some(TableWriter::new(
                    &table.delta,
                    spec.clone(),
                    &self.app,
                    epoch,
                )?);
            }
        }
        Ok(())
    }

    async fn prepare(&mut self, epoch: Epoch) -> Result<Prepared> {
        if self.epoch != Some(epoch) {
            return Err(StorageError::Corrupt {
                path: "checkpoints".into(),
                problem: format!(
                    "asked to prepare epoch {epoch} while writing {:?} (a bug in the runner)",
                    self.epoch
                ),
            });
        }
        let mut files = EpochFiles {
            epoch: epoch.0,
            tables: BTreeMap::new(),
        };
        for (key, table) in &mut self.tables {
            if let Some(writer) = &mut table.writer {
                let adds = writer.close(epoch.next()).await?;
                if !adds.is_empty() {
                    files.tables.insert(key.clone(), adds);
                }
            }
        }
        self.epoch = Some(epoch.next());
        let payload = serde_json::to_vec(&files)
            .map_err(|e| StorageError::data("recording the epoch's files", e))?;
        Ok(Prepared {
            sink: NAME.to_owned(),
            payload,
        })
    }
}

fn decode(epoch: Epoch, prepared: &Prepared) -> Result<EpochFiles> {
    if prepared.payload.is_empty() {
        return Ok(EpochFiles {
            epoch: epoch.0,
            tables: BTreeMap::new(),
        });
    }
    let files: EpochFiles =
        serde_json::from_slice(&prepared.payload).map_err(|e| StorageError::Corrupt {
            path: format!("checkpoint {epoch}"),
            problem: format!("its list of files is unreadable: {e}"),
        })?;
    if files.epoch != epoch.0 {
        return Err(StorageError::Corrupt {
            path: format!("checkpoint {epoch}"),
            problem: format!("its list of files is of epoch {}", files.epoch),
        });
    }
    Ok(files)
}

#[async_trait]
impl Sink for DeltaSink {
    fn name(&self) -> &str {
        NAME
    }

    async fn resume(&mut self, from: Option<(Epoch, &Prepared)>) -> Result<(), SinkError> {
        self.resume_after(from)
            .await
            .map_err(|e| e.into_sink(NAME, "resume after the last checkpoint"))
    }

    async fn write_batch(&mut self, batch: &SourceBatch) -> Result<(), SinkError> {
        if !self.raw.contains(&batch.stream) {
            return Ok(());
        }
        let spec = TableSpec::raw(batch.stream.name(), batch.rows.schema());
        self.write(spec, &batch.rows)
            .await
            .map_err(|e| e.into_sink(NAME, format!("archive {} rows", batch.stream)))
    }

    async fn write_rows(&mut self, rows: &ViewRows) -> Result<(), SinkError> {
        let kind = match rows.kind {
            Emit::Final => TableKind::View,
            Emit::Late => TableKind::Late,
        };
        let spec = TableSpec::view(kind, &rows.view, rows.rows.schema());
        self.write(spec, &rows.rows).await.map_err(|e| {
            e.into_sink(
                NAME,
                format!("write {} rows of {}", rows.kind.name(), rows.view),
            )
        })
    }

    async fn write_dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError> {
        let mut by_topic: BTreeMap<&str, Vec<&DeadLetter>> = BTreeMap::new();
        for d in dead {
            by_topic.entry(&d.topic).or_default().push(d);
        }
        for (topic, dead) in by_topic {
            let batch = crate::tables::dead_letter_batch(&dead)
                .map_err(|e| e.into_sink(NAME, "write dead letters"))?;
            self.write(TableSpec::dead_letters(topic), &batch)
                .await
                .map_err(|e| e.into_sink(NAME, format!("write dead letters of {topic}")))?;
        }
        Ok(())
    }

    async fn prepare_commit(&mut self, epoch: Epoch) -> Result<Prepared, SinkError> {
        self.prepare(epoch)
            .await
            .map_err(|e| e.into_sink(NAME, format!("close epoch {epoch}")))
    }

    async fn commit(&mut self, epoch: Epoch, prepared: &Prepared) -> Result<(), SinkError> {
        let files = decode(epoch, prepared)
            .map_err(|e| e.into_sink(NAME, format!("commit epoch {epoch}")))?;
        self.commit_files(epoch, files)
            .await
            .map_err(|e| e.into_sink(NAME, format!("commit epoch {epoch}")))
    }
}
