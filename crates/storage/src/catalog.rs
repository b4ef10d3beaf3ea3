//! The tables as analysts query them: one DataFusion `SessionContext` with
//! a schema per table kind (`raw.sales`, `views.top_skus_5min`,
//! `late.<view>`, `deadletters.<topic>`), each table read at its newest
//! committed version when the catalog is opened — never an epoch's files
//! before their commit. Other tables (reference data, live views) can be
//! added. `information_schema` is on, so tools can list what is there.
//! Queries are read-only: DDL, DML, COPY and statements are refused.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::delta;
use crate::error::{Result, StorageError};
use crate::location::DataLocation;
use crate::tables::TableKind;

/// Why a query gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The statement would change something; queries here only read.
    #[error("{0} is refused: queries are read-only (use SELECT, SHOW, DESCRIBE or EXPLAIN)")]
    Refused(&'static str),
    /// The SQL is wrong (syntax, an unknown table or column, a type error).
    #[error("{0}")]
    Sql(#[source] DataFusionError),
}

/// Every Delta table under a data location, as a DataFusion catalog.
pub struct Catalog {
    ctx: SessionContext,
    tables: Vec<String>,
}

impl Catalog {
    /// Opens every table found under `location` at its newest committed version.
    pub async fn open(location: &DataLocation) -> Result<Catalog> {
        Catalog::open_with_runtime(location, Arc::new(RuntimeEnv::default())).await
    }

    /// As [`Catalog::open`], on `runtime` (its memory pool bounds the
    /// queries; its object stores are where the tables' stores are
    /// registered): catalogs opened on one runtime, and other sessions
    /// made on it ([`session_config`]), share both.
    pub async fn open_with_runtime(
        location: &DataLocation,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<Catalog> {
        let ctx = SessionContext::new_with_config_rt(session_config(), runtime);
        ctx.register_object_store(location.url(), location.store());
        let catalog = ctx.catalog("kpiflow").ok_or_else(|| {
            StorageError::data("opening the catalog", "the default catalog is missing")
        })?;
        let mut tables = Vec::new();
        for kind in TableKind::ALL {
            let schema = Arc::new(MemorySchemaProvider::new());
            catalog
                .register_schema(kind.dir(), schema.clone())
                .map_err(|e| StorageError::data("opening the catalog", e))?;
            for name in table_names(location, kind).await? {
                let relative = format!("{}/{name}", kind.dir());
                let Some(table) = delta::load(location, &relative).await? else {
                    continue;
                };
                table
                    .update_datafusion_session(&ctx.state())
                    .map_err(|e| StorageError::delta(&relative, "registering its store", e))?;
                let provider = table
                    .table_provider()
                    .await
                    .map_err(|e| StorageError::data(format!("reading {relative}"), e))?;
                schema
                    .register_table(name.clone(), provider)
                    .map_err(|e| StorageError::data(format!("registering {relative}"), e))?;
                tables.push(format!("{}.{name}", kind.dir()));
            }
        }
        Ok(Catalog { ctx, tables })
    }

    /// `raw.sales`, … : the Delta tables found.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Adds a table (reference data, live views) under `schema.name`.
    pub fn register(
        &self,
        schema: &str,
        name: &str,
        provider: Arc<dyn TableProvider>,
    ) -> Result<()> {
        let catalog = self.ctx.catalog("kpiflow").ok_or_else(|| {
            StorageError::data("opening the catalog", "the default catalog is missing")
        })?;
        let provider_schema = match catalog.schema(schema) {
            Some(existing) => existing,
            None => {
                let created: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog
                    .register_schema(schema, created.clone())
                    .map_err(|e| StorageError::data(format!("adding schema {schema}"), e))?;
                created
            }
        };
        provider_schema
            .register_table(name.to_owned(), provider)
            .map_err(|e| StorageError::data(format!("adding {schema}.{name}"), e))?;
        Ok(())
    }

    /// Runs one read-only statement and returns its rows.
    pub async fn query(&self, sql: &str) -> std::result::Result<Vec<RecordBatch>, QueryError> {
        let frame = self.dataframe(sql).await?;
        frame.collect().await.map_err(QueryError::Sql)
    }

    /// Plans one read-only statement (refusing any other), to run as the
    /// caller likes (streamed, limited, with a timeout).
    pub async fn dataframe(&self, sql: &str) -> std::result::Result<DataFrame, QueryError> {
        let plan = self
            .ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(QueryError::Sql)?;
        match &plan {
            LogicalPlan::Ddl(_) => return Err(QueryError::Refused("DDL (CREATE, DROP, ALTER)")),
            LogicalPlan::Dml(_) => return Err(QueryError::Refused("DML (INSERT, UPDATE, DELETE)")),
            LogicalPlan::Copy(_) => return Err(QueryError::Refused("COPY")),
            LogicalPlan::Statement(_) => {
                return Err(QueryError::Refused(
                    "a statement (SET, transactions, PREPARE)",
                ));
            }
            _ => {}
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        options.verify_plan(&plan).map_err(QueryError::Sql)?;
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(QueryError::Sql)
    }
}

/// The session settings of a catalog: `information_schema` on, `kpiflow`
/// the default catalog and `public` its default schema.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("kpiflow", "public")
}

/// A runtime whose queries may use `bytes` of memory together, with
/// spilling off: under a bound a query fails the same way on every run (a
/// spilling aggregate passed or failed with the scheduling), and analysts'
/// queries never fill the disk.
pub fn limited_runtime(bytes: usize) -> Result<Arc<RuntimeEnv>> {
    RuntimeEnvBuilder::new()
        .with_memory_limit(bytes, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| StorageError::data("making the query runtime", e))
}

/// The tables of one kind: the folders under `<data>/<kind>/`.
pub(crate) async fn table_names(location: &DataLocation, kind: TableKind) -> Result<Vec<String>> {
    let dir = location.path(kind.dir());
    let listed = location
        .store()
        .list_with_delimiter(Some(&dir))
        .await
        .map_err(|e| StorageError::store(format!("listing {dir}"), e))?;
    let mut names: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}
