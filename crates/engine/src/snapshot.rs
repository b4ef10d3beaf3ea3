//! The engine's state as record batches ([`Snapshot`]) and back.
//!
//! Entries: `__partitions` (stream, partition, latest event time, next
//! offset, idle), `__views` (name, SQL, fingerprint of SQL and options,
//! watermark), then per windowed view its state batches under its name and
//! per joined view the rows waiting on each side (`<view>#left`,
//! `<view>#right`). [`Engine::restore`] checks everything — format version,
//! entry names, columns and their types, values that must hold — before it
//! changes anything, so a damaged or foreign snapshot is an error and the
//! engine is left as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use kpiflow_types::{SNAPSHOT_FORMAT_VERSION, Snapshot, Stream};

use crate::error::{Error, Result};
use crate::view::windowed::{RestoredState, check_columns};
use crate::view::{Joined, Kind, LatePolicy, Progress};
use crate::watermark::{PartitionState, Partitions};
use crate::window::in_time_range;
use crate::{Engine, RunningView};

const PARTITIONS: &str = "__partitions";
const VIEWS: &str = "__views";
/// Separates a joined view's name from the side in its snapshot entries.
const JOIN_SIDE: &str = "#";

fn partitions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stream", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("max_event_time", DataType::Int64, true),
        Field::new("next_offset", DataType::Int64, false),
        Field::new("idle", DataType::Boolean, false),
    ]))
}

fn views_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("view", DataType::Utf8, false),
        Field::new("sql", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, false),
        Field::new("watermark", DataType::Int64, true),
    ]))
}

/// Identifies what a view's state means: its SQL and the options that
/// change which rows are in it. FNV-1a, stable across builds and platforms.
pub(crate) fn fingerprint(view: &RunningView) -> String {
    let late = match view.info.options.late {
        LatePolicy::Table => "table",
        LatePolicy::Drop => "drop",
    };
    let text = format!(
        "{}\0{}\0{late}",
        view.info.sql.trim(),
        view.out_of_orderness
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn internal(what: &str, e: impl Into<datafusion::error::DataFusionError>) -> Error {
    Error::internal(format!("taking a snapshot ({what})"), e.into())
}

/// What a valid snapshot restores, built before anything is changed.
struct Restored {
    partitions: Partitions,
    watermarks: Vec<Option<i64>>,
    windowed: Vec<(usize, RestoredState)>,
    joined: Vec<(usize, Joined)>,
}

impl Engine {
    /// The engine's state: source progress, watermarks, every open window's
    /// partial aggregates and the rows joins wait on, as record batches. The
    /// engine goes on unchanged. Refused after an internal error, when the
    /// state may be half-applied.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        self.check_running()?;
        let mut snapshot = Snapshot::new();
        let (mut streams, mut partitions, mut maxes, mut offsets, mut idles) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (stream, parts) in &self.partitions {
            for (p, s) in parts {
                streams.push(stream.clone());
                partitions.push(*p);
                maxes.push(s.max_event_time);
                offsets.push(s.next_offset);
                idles.push(s.idle);
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(streams)),
            Arc::new(Int32Array::from(partitions)),
            Arc::new(Int64Array::from(maxes)),
            Arc::new(Int64Array::from(offsets)),
            Arc::new(BooleanArray::from(idles)),
        ];
        snapshot.entries.push((
            PARTITIONS.to_owned(),
            RecordBatch::try_new(partitions_schema(), columns)
                .map_err(|e| internal("partitions", e))?,
        ));
        let (mut names, mut sqls, mut prints, mut watermarks) = (vec![], vec![], vec![], vec![]);
        for view in &mut self.views {
            names.push(view.info.name.clone());
            sqls.push(view.info.sql.clone());
            prints.push(fingerprint(view));
            watermarks.push(view.progress.watermark);
            let name = view.info.name.clone();
            match &mut view.kind {
                Kind::Windowed(w) => {
                    let batches = w.snapshot().map_err(|e| internal(&name, e))?;
                    if let Some(first) = batches.first() {
                        let all = concat_batches(&first.schema(), &batches)
                            .map_err(|e| internal(&name, e))?;
                        snapshot.entries.push((name, all));
                    }
                }
                Kind::Joined(j) => {
                    let (left, right) = j.snapshot();
                    for (side, batches) in [("left", left), ("right", right)] {
                        for batch in batches {
                            snapshot
                                .entries
                                .push((format!("{name}{JOIN_SIDE}{side}"), batch));
                        }
                    }
                }
                Kind::Stateless(_) => {}
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(sqls)),
            Arc::new(StringArray::from(prints)),
            Arc::new(Int64Array::from(watermarks)),
        ];
        snapshot.entries.push((
            VIEWS.to_owned(),
            RecordBatch::try_new(views_schema(), columns).map_err(|e| internal("views", e))?,
        ));
        Ok(snapshot)
    }

    /// Replaces the engine's state with a snapshot's: partitions,
    /// watermarks, window state, waiting join rows. The engine must have
    /// the same views (same SQL and options). Everything is checked first:
    /// on any error nothing has changed.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.check_running()?;
        let restored = self.check_snapshot(snapshot).map_err(Error::Restore)?;
        self.partitions = restored.partitions;
        for (view, watermark) in self.views.iter_mut().zip(restored.watermarks) {
            view.progress = Progress {
                watermark,
                idle_since: None,
            };
        }
        for (i, state) in restored.windowed {
            if let Kind::Windowed(w) = &mut self.views[i].kind {
                w.set_state(state);
            }
        }
        for (i, join) in restored.joined {
            if let Kind::Joined(j) = &mut self.views[i].kind {
                **j = join;
            }
        }
        Ok(())
    }

    fn check_snapshot(&self, snapshot: &Snapshot) -> std::result::Result<Restored, String> {
        if snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(format!(
                "the snapshot has format version {}, this build reads version {SNAPSHOT_FORMAT_VERSION}",
                snapshot.format_version
            ));
        }
        let one = |name: &str, schema: &SchemaRef| -> std::result::Result<RecordBatch, String> {
            let mut found = snapshot.entry(name);
            let batch = found
                .next()
                .ok_or_else(|| format!("the snapshot has no `{name}` entry"))?;
            if found.next().is_some() {
                return Err(format!("the snapshot has more than one `{name}` entry"));
            }
            check_columns(schema, &batch.schema()).map_err(|e| format!("`{name}`: {e}"))?;
            Ok(batch.clone())
        };
        // Known entry names: nothing in the snapshot may go unused.
        let mut known: BTreeSet<String> = [PARTITIONS, VIEWS].map(str::to_owned).into();
        for v in &self.views {
            known.insert(v.info.name.clone());
            known.insert(format!("{}{JOIN_SIDE}left", v.info.name));
            known.insert(format!("{}{JOIN_SIDE}right", v.info.name));
        }
        if let Some((name, _)) = snapshot.entries.iter().find(|(n, _)| !known.contains(n)) {
            return Err(format!(
                "entry `{name}` belongs to no view of this engine: create the same views before restoring"
            ));
        }

        let parts = one(PARTITIONS, &partitions_schema())?;
        let partitions = read_partitions(&parts)?;

        let views = one(VIEWS, &views_schema())?;
        let text = |i: usize| {
            views
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
        };
        let (Some(names), Some(sqls), Some(prints)) = (text(0), text(1), text(2)) else {
            return Err("`__views`: malformed columns".into());
        };
        let marks = views
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or("`__views`: malformed watermark column")?;
        if names.null_count() + sqls.null_count() + prints.null_count() > 0 {
            return Err("`__views`: a view without name, SQL or fingerprint".into());
        }
        if names.len() != self.views.len() {
            return Err(format!(
                "the snapshot has {} views, this engine {}: create the same views before restoring",
                names.len(),
                self.views.len()
            ));
        }
        let mut watermarks = vec![None; self.views.len()];
        let mut seen = BTreeSet::new();
        for row in 0..names.len() {
            let name = names.value(row);
            let i = self
                .views
                .iter()
                .position(|v| v.info.name == name)
                .ok_or_else(|| {
                    format!("view `{name}` is in the snapshot but not in this engine")
                })?;
            if !seen.insert(i) {
                return Err(format!("view `{name}` is in the snapshot twice"));
            }
            let view = &self.views[i];
            if view.info.sql.trim() != sqls.value(row).trim()
                || fingerprint(view) != prints.value(row)
            {
                return Err(format!(
                    "view `{name}` has changed since the snapshot (its SQL or options); its state cannot be reused"
                ));
            }
            if !marks.is_null(row) {
                let w = marks.value(row);
                if !in_time_range(w) {
                    return Err(format!("view `{name}`: watermark {w} is out of range"));
                }
                watermarks[i] = Some(w);
            }
        }

        let mut windowed = Vec::new();
        let mut joined = Vec::new();
        for (i, view) in self.views.iter().enumerate() {
            let name = &view.info.name;
            match &view.kind {
                Kind::Windowed(w) => {
                    let batches: Vec<RecordBatch> = snapshot.entry(name).cloned().collect();
                    let state = w
                        .restored(&batches)
                        .map_err(|e| format!("view `{name}`: {e}"))?;
                    windowed.push((i, state));
                }
                Kind::Joined(j) => {
                    if snapshot.entry(name).next().is_some() {
                        return Err(format!("view `{name}` is a join and has no window state"));
                    }
                    let side = |s: &str| -> Vec<RecordBatch> {
                        snapshot
                            .entry(&format!("{name}{JOIN_SIDE}{s}"))
                            .cloned()
                            .collect()
                    };
                    let schema_of = |input: &str| -> std::result::Result<SchemaRef, String> {
                        self.views
                            .iter()
                            .find(|v| v.info.name == input)
                            .map(|v| v.info.schema.clone())
                            .ok_or_else(|| format!("view `{name}` joins `{input}`, which is gone"))
                    };
                    let (left, right) = (side("left"), side("right"));
                    let (ls, rs) = (schema_of(&j.plan.left)?, schema_of(&j.plan.right)?);
                    let join = j
                        .restored((&ls, &left), (&rs, &right))
                        .map_err(|e| format!("view `{name}`: {e}"))?;
                    joined.push((i, join));
                }
                Kind::Stateless(_) => {
                    if snapshot.entry(name).next().is_some() {
                        return Err(format!(
                            "view `{name}` keeps no state but the snapshot has some"
                        ));
                    }
                }
            }
            if !matches!(view.kind, Kind::Joined(_))
                && snapshot
                    .entries
                    .iter()
                    .any(|(n, _)| n.starts_with(&format!("{name}{JOIN_SIDE}")))
            {
                return Err(format!(
                    "view `{name}` is not a join but the snapshot has join rows for it"
                ));
            }
        }
        Ok(Restored {
            partitions,
            watermarks,
            windowed,
            joined,
        })
    }
}

fn read_partitions(batch: &RecordBatch) -> std::result::Result<Partitions, String> {
    let bad = |m: &str| format!("`{PARTITIONS}`: {m}");
    let col = |i: usize| batch.column(i).as_any();
    let (Some(streams), Some(partitions), Some(maxes), Some(offsets), Some(idles)) = (
        col(0).downcast_ref::<StringArray>(),
        col(1).downcast_ref::<Int32Array>(),
        col(2).downcast_ref::<Int64Array>(),
        col(3).downcast_ref::<Int64Array>(),
        col(4).downcast_ref::<BooleanArray>(),
    ) else {
        return Err(bad("malformed columns"));
    };
    if streams.null_count() + partitions.null_count() + offsets.null_count() + idles.null_count()
        > 0
    {
        return Err(bad(
            "a partition without stream, number, offset or idle flag",
        ));
    }
    let mut out: Partitions = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let stream = streams.value(row);
        if Stream::ALL.iter().all(|s| s.name() != stream) {
            return Err(bad(&format!("unknown stream `{stream}`")));
        }
        let (partition, offset) = (partitions.value(row), offsets.value(row));
        // -1: the source did not know the partition's position yet.
        if partition < 0 || offset < -1 {
            return Err(bad(&format!(
                "{stream} partition {partition} at offset {offset}"
            )));
        }
        let max_event_time = (!maxes.is_null(row)).then(|| maxes.value(row));
        if max_event_time.is_some_and(|t| !in_time_range(t)) {
            return Err(bad(&format!(
                "{stream}/{partition}: event time out of range"
            )));
        }
        let previous = out.entry(stream.to_owned()).or_default().insert(
            partition,
            PartitionState {
                max_event_time,
                next_offset: offset,
                idle: idles.value(row),
            },
        );
        if previous.is_some() {
            return Err(bad(&format!("{stream}/{partition} is listed twice")));
        }
    }
    Ok(out)
}
