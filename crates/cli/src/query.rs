//! `kpiflow query "SQL"`: one read-only statement against the committed
//! tables of a data location (`raw.*`, `views.*`, `late.*`,
//! `deadletters.*`, the reference tables), printed as a table, CSV or JSON
//! lines. It reads committed versions only, so it is safe while a pipeline
//! writes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use arrow::array::RecordBatch;
use clap::Args;
use datafusion::datasource::MemTable;
use kpiflow_storage::{Catalog, DataLocation, StoreOptions};

/// Run read-only SQL over the tables a pipeline wrote.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    kpiflow query \"SELECT * FROM views.production_vs_sales_hourly ORDER BY window_start DESC LIMIT 10\"\n  \
    kpiflow query --data s3://factory/kpiflow \"SELECT count(*) FROM raw.sales\" --format csv\n  \
    kpiflow query \"SELECT table_schema, table_name FROM information_schema.tables\"")]
pub struct QueryArgs {
    /// One SQL statement (SELECT, SHOW, DESCRIBE, EXPLAIN).
    pub sql: String,

    #[command(flatten)]
    pub data: WrittenData,

    /// Output: table (aligned, for people), csv (with a header) or json (one object per line).
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    pub format: String,
}

pub async fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let location = args.data.open()?;
    let catalog = Catalog::open(&location).await?;
    for (name, csv) in crate::views::REFERENCES {
        let batches = csv_batches(csv).with_context(|| format!("reference table {name}"))?;
        let schema = batches[0].schema();
        catalog.register(
            "public",
            name,
            Arc::new(MemTable::try_new(schema, vec![batches])?),
        )?;
    }
    let batches = match catalog.query(&args.sql).await {
        Ok(batches) => batches,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    print(&batches, &args.format)?;
    Ok(ExitCode::SUCCESS)
}

/// `--data`: the data location a pipeline wrote, shared by the commands
/// that read it.
#[derive(Debug, Args)]
pub struct WrittenData {
    /// The data location a pipeline wrote: a directory or an
    /// s3://bucket/prefix URL (S3 settings from the usual AWS_* variables).
    /// Example: --data ./kpiflow-data
    #[arg(
        long,
        value_name = "DIR|URL",
        default_value = "./kpiflow-data",
        env = "KPIFLOW_DATA"
    )]
    pub data: String,
}

impl WrittenData {
    /// Opens it; a local directory that does not exist is an error
    /// (opening would create it empty).
    pub fn open(&self) -> anyhow::Result<DataLocation> {
        let data = &self.data;
        if !data.contains("://") && !std::path::Path::new(data).is_dir() {
            anyhow::bail!(
                "no data at `{data}`: give the directory a pipeline wrote with --data (or KPIFLOW_DATA)"
            );
        }
        Ok(DataLocation::open(data, &StoreOptions::default())?)
    }
}

impl std::fmt::Display for WrittenData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.data)
    }
}

pub fn csv_batches(csv: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (schema, _) = format.infer_schema(std::io::Cursor::new(csv.as_bytes()), None)?;
    let reader = arrow::csv::ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(std::io::Cursor::new(csv.as_bytes()))?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

fn print(batches: &[RecordBatch], format: &str) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        "csv" => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        "json" => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
            writer.finish()?;
        }
        _ => {
            use std::io::Write;
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(batches)?
            )?;
        }
    }
    Ok(())
}
