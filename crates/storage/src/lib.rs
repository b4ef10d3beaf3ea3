//! Storage: every table kpiflow keeps is a Delta Lake table on an
//! `object_store` store (a local directory or an S3-compatible bucket), so
//! that any Delta reader sees exactly the committed rows; checkpoints sit
//! beside them. The only crate that writes files.
//!
//! - `location.rs`: the data location, opened once, checked and claimed at start.
//! - `tables.rs`: which tables exist, their columns and partitioning.
//! - `delta.rs`: a table opened or created; an epoch committed idempotently.
//! - `writer.rs`: an epoch's files of one table, written but not committed.
//! - `sink.rs`: `DeltaSink`, the pipeline's two-phase sink over all tables.
//! - `orphans.rs`: recovery's clean-up of a crashed epoch's files.
//! - `manifest.rs`, `checkpoint.rs`: checkpoints (state, offsets, files to
//!   add) and the manifest that commits them.
//! - `maintenance.rs`: compaction (OPTIMIZE) and retention (delete + VACUUM).
//! - `catalog.rs`: the tables as one DataFusion catalog, read-only SQL.

mod catalog;
mod checkpoint;
mod delta;
mod error;
mod location;
mod maintenance;
mod manifest;
mod orphans;
mod sink;
mod tables;
mod writer;

pub use catalog::{Catalog, QueryError, limited_runtime, session_config};
pub use checkpoint::ObjectCheckpoints;
pub use error::{Result, StorageError};
pub use location::{DataLocation, S3Options, StoreOptions};
pub use maintenance::{MaintenanceConfig, MaintenanceReport, run_once as maintain};
pub use manifest::{MANIFEST_FORMAT, Manifest};
pub use sink::DeltaSink;
pub use tables::{Partitioning, TableKind, TableSpec, dead_letter_schema};
pub use writer::{DEFAULT_TARGET_FILE_SIZE, EPOCH_KEY, PIPELINE_KEY};
