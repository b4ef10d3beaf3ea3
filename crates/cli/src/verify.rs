//! `kpiflow verify [VIEW]`: each view's final windows recomputed as one
//! batch query (`kpiflow_engine::batch`: the window call replaced by a join
//! to an explicit table of windows) over the raw archive minus the events
//! in the view's late table, compared with the stored `views.<view>`;
//! every difference is printed (window, key, column, stored vs
//! recomputed). Exit 0 only when everything is equal.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use clap::Args;
use kpiflow_engine::batch::{self, Table};
use kpiflow_storage::{Catalog, ObjectCheckpoints};
use kpiflow_types::Stream;

/// Recompute views from the raw archive and compare with what was stored.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    kpiflow verify --data ./kpiflow-data\n  \
    kpiflow verify production_vs_sales_hourly --from 2026-11-11T00:00:00Z --to 2026-11-12T00:00:00Z")]
pub struct VerifyArgs {
    /// One view (sql/<name>.sql); default every view with a stored table.
    pub view: Option<String>,

    #[command(flatten)]
    pub data: crate::query::WrittenData,

    /// Only windows starting at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub from: Option<DateTime<Utc>>,

    /// Only windows starting before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub to: Option<DateTime<Utc>>,

    /// Most differences printed per view.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_differences: usize,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut engine = crate::views::engine().await?;
    let views = engine.views();
    if let Some(name) = &args.view
        && !views.iter().any(|v| &v.name == name)
    {
        let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
        anyhow::bail!(
            "unknown view `{name}`: expected one of {}",
            names.join(", ")
        );
    }
    let location = args.data.open()?;
    // Only windows final as of the newest checkpoint can be compared: the
    // engine restored from it knows each view's watermark.
    let pipeline = location
        .owner()
        .await?
        .with_context(|| format!("no pipeline has written to {}", args.data))?;
    let checkpoint = ObjectCheckpoints::new(location.clone(), &pipeline, 2)
        .newest()
        .await?
        .with_context(|| {
            format!(
                "pipeline `{pipeline}` has no checkpoint under {}",
                args.data
            )
        })?;
    engine.restore(&checkpoint.snapshot)?;
    println!("checkpoint {} of pipeline `{pipeline}`", checkpoint.epoch);
    let catalog = Catalog::open(&location).await?;
    let has = |table: &str| catalog.tables().iter().any(|t| t == table);

    let mut inputs = Vec::new();
    for stream in Stream::ALL {
        let raw = format!("raw.{stream}");
        let rows = if has(&raw) {
            read(&catalog, &format!("SELECT * FROM {raw}"), &stream.schema()).await?
        } else {
            Vec::new()
        };
        inputs.push(Table::new(stream.name(), stream.schema(), rows));
    }
    for (name, csv) in crate::views::REFERENCES {
        let rows = crate::query::csv_batches(csv)?;
        inputs.push(Table::new(*name, rows[0].schema(), rows));
    }

    let mut differing = 0;
    let mut checked = 0;
    for view in &views {
        if args.view.as_ref().is_some_and(|v| v != &view.name) {
            continue;
        }
        let stored_table = format!("views.{}", view.name);
        if !has(&stored_table) {
            if args.view.is_some() {
                anyhow::bail!("no table {stored_table} under {}", args.data);
            }
            continue;
        }
        let window = window_filter(&args);
        let stored = read(
            &catalog,
            &format!("SELECT * FROM {stored_table}{window}"),
            &view.schema,
        )
        .await?;
        let late_table = format!("late.{}", view.name);
        let late = if has(&late_table) {
            // The table's own columns (a query of no rows has no batches).
            let frame = catalog.context().table(late_table.as_str()).await?;
            let schema = without_partition(&Arc::new(frame.schema().as_arrow().clone()));
            read(&catalog, &format!("SELECT * FROM {late_table}"), &schema).await?
        } else {
            Vec::new()
        };
        let recomputed = batch::batch_query(&view.name, &view.sql, &inputs, &late)
            .await
            .with_context(|| format!("recomputing {}", view.name))?;
        let watermark = engine
            .stats(&view.name)
            .and_then(|s| s.watermark)
            .unwrap_or(i64::MIN);
        let recomputed = filter_windows(recomputed, &args, watermark)?;
        // Tables may hold windows past the checkpoint's watermark (a
        // damaged newest checkpoint was skipped): compare up to it.
        let stored = filter_windows(stored, &args, watermark)?;
        let keys = batch::key_columns(&view.name, &view.sql, &inputs).await?;
        let differences = batch::compare(&view.name, &keys, &stored, &recomputed);
        let rows: usize = stored.iter().map(RecordBatch::num_rows).sum();
        checked += 1;
        if differences.is_empty() {
            println!(
                "{}: {rows} final rows, equal to the batch recomputation",
                view.name
            );
        } else {
            differing += 1;
            println!(
                "{}: {} differences in {rows} final rows",
                view.name,
                differences.len()
            );
            for d in differences.iter().take(args.max_differences) {
                println!("  {d}");
            }
        }
    }
    if checked == 0 {
        anyhow::bail!("no view table under {}: nothing to verify", args.data);
    }
    Ok(if differing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn window_filter(args: &VerifyArgs) -> String {
    let mut conditions = Vec::new();
    if let Some(from) = args.from {
        conditions.push(format!("window_start >= TIMESTAMP '{}'", from.to_rfc3339()));
    }
    if let Some(to) = args.to {
        conditions.push(format!("window_start < TIMESTAMP '{}'", to.to_rfc3339()));
    }
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// The recomputed windows within --from/--to that end by `watermark`.
fn filter_windows(
    batches: Vec<RecordBatch>,
    args: &VerifyArgs,
    watermark: i64,
) -> anyhow::Result<Vec<RecordBatch>> {
    let (from, to) = (
        args.from.map(|t| t.timestamp_millis()),
        args.to.map(|t| t.timestamp_millis()),
    );
    let mut out = Vec::new();
    for batch in batches {
        let (Some(start), Some(end)) = (
            batch.column_by_name(kpiflow_engine::WINDOW_START),
            batch.column_by_name(kpiflow_engine::WINDOW_END),
        ) else {
            out.push(batch);
            continue;
        };
        let (start, end) = (cast(start, &DataType::Int64)?, cast(end, &DataType::Int64)?);
        let as_millis = |a: &arrow::array::ArrayRef| {
            a.as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .cloned()
                .context("window bounds as milliseconds")
        };
        let (start, end) = (as_millis(&start)?, as_millis(&end)?);
        let keep: arrow::array::BooleanArray = start
            .iter()
            .zip(end.iter())
            .map(|(s, e)| {
                Some(s.zip(e).is_some_and(|(s, e)| {
                    e <= watermark && from.is_none_or(|f| s >= f) && to.is_none_or(|t| s < t)
                }))
            })
            .collect();
        out.push(arrow::compute::filter_record_batch(&batch, &keep)?);
    }
    Ok(out)
}

/// The table's columns without the storage's partition columns.
fn without_partition(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| !["window_date", "event_date", "event_hour"].contains(&f.name().as_str()))
        .map(|f| f.as_ref().clone())
        .collect();
    Arc::new(Schema::new(fields))
}

/// Rows of `sql`, cast to `schema`'s columns and types (Delta keeps
/// timestamps in microseconds, the engine in milliseconds).
async fn read(
    catalog: &Catalog,
    sql: &str,
    schema: &SchemaRef,
) -> anyhow::Result<Vec<RecordBatch>> {
    let batches = catalog.query(sql).await.with_context(|| sql.to_owned())?;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column = batch
                .column_by_name(field.name())
                .with_context(|| format!("{sql}: no column {}", field.name()))?;
            let target = match field.data_type() {
                DataType::Timestamp(_, tz) => {
                    DataType::Timestamp(TimeUnit::Millisecond, tz.clone())
                }
                other => other.clone(),
            };
            columns.push(cast(column, &target)?);
        }
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true))
            .collect();
        out.push(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?);
    }
    Ok(out)
}
