//! The names an engine knows: streams, reference tables and views, as the
//! planner asks about them; registering reference tables.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use kpiflow_types::Stream;

use crate::error::{Error, Result};
use crate::plan::Tables;
use crate::view::Kind;
use crate::{Engine, RunningView, WINDOW_END, WINDOW_START};

pub(crate) struct Catalog<'a> {
    pub views: &'a [RunningView],
}

impl Tables for Catalog<'_> {
    fn is_stream(&self, name: &str) -> bool {
        Stream::ALL.iter().any(|s| s.name() == name)
    }

    fn is_view(&self, name: &str) -> bool {
        self.views.iter().any(|v| v.info.name == name)
    }

    fn is_windowed_view(&self, name: &str) -> bool {
        self.views.iter().any(|v| {
            v.info.name == name
                && !matches!(v.kind, Kind::Stateless(_))
                && v.info.schema.column_with_name(WINDOW_START).is_some()
                && v.info.schema.column_with_name(WINDOW_END).is_some()
        })
    }
}

impl Engine {
    pub(crate) fn check_free(&self, name: &str) -> Result<()> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(Error::Name(format!(
                "`{name}` is not a valid name: use lower-case letters, digits and _, not starting with a digit"
            )));
        }
        if Stream::ALL.iter().any(|s| s.name() == name)
            || self.references.iter().any(|r| r == name)
            || self.views.iter().any(|v| v.info.name == name)
        {
            return Err(Error::Name(format!(
                "a table or view named `{name}` already exists"
            )));
        }
        Ok(())
    }

    /// Registers a reference table from rows.
    pub fn register_reference(&mut self, name: &str, batches: Vec<RecordBatch>) -> Result<()> {
        self.check_free(name)?;
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| Error::Reference {
                table: name.to_owned(),
                message: "no rows".into(),
            })?;
        let table = MemTable::try_new(schema, vec![batches]).map_err(|e| Error::Reference {
            table: name.to_owned(),
            message: e.to_string(),
        })?;
        self.ctx
            .register_table(name, Arc::new(table))
            .map_err(|e| Error::Reference {
                table: name.to_owned(),
                message: e.to_string(),
            })?;
        self.references.push(name.to_owned());
        Ok(())
    }

    /// Registers a reference table from CSV text with a header row; column
    /// types are inferred.
    pub fn register_reference_csv(&mut self, name: &str, csv: &str) -> Result<()> {
        let bad = |message: String| Error::Reference {
            table: name.to_owned(),
            message,
        };
        let format = datafusion::arrow::csv::reader::Format::default().with_header(true);
        let (schema, _) = format
            .infer_schema(std::io::Cursor::new(csv.as_bytes()), None)
            .map_err(|e| bad(format!("cannot infer columns: {e}")))?;
        let reader = datafusion::arrow::csv::ReaderBuilder::new(Arc::new(schema))
            .with_format(format)
            .build(std::io::Cursor::new(csv.as_bytes()))
            .map_err(|e| bad(e.to_string()))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        self.register_reference(name, batches)
    }
}
