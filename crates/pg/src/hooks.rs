//! Query hooks, run before datafusion-postgres plans a statement, on the
//! simple and the extended query path alike:
//! - `CatalogRefresh` puts the newest committed catalog's schemas into the
//!   shared session (once per checkpoint), then lets the statement on.
//! - `ReadOnly` refuses anything but queries, `SHOW`, `EXPLAIN` of a query,
//!   cursors and transaction control: DDL, DML and COPY would change
//!   tables the pipeline alone writes, and `SET datafusion.*` would change
//!   the engine settings of every connection at once.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::results::Response;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use tokio::sync::Mutex;

use kpiflow_server::SqlService;
use kpiflow_storage::Catalog;

/// SQLSTATE 25006: read_only_sql_transaction.
const READ_ONLY: &str = "25006";
/// SQLSTATE 58000: system_error (the catalog could not be read).
const SYSTEM_ERROR: &str = "58000";

pub(crate) fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// Keeps the session's tables those of the newest checkpoint.
pub(crate) struct CatalogRefresh {
    sql: SqlService,
    /// The catalog whose schemas the session holds now.
    current: Mutex<Option<Arc<Catalog>>>,
}

impl CatalogRefresh {
    pub fn new(sql: SqlService) -> CatalogRefresh {
        CatalogRefresh {
            sql,
            current: Mutex::new(None),
        }
    }

    async fn refresh(&self, ctx: &SessionContext) -> PgWireResult<()> {
        let newest = self
            .sql
            .newest_catalog()
            .await
            .map_err(|e| error(SYSTEM_ERROR, e.to_string()))?;
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &newest)) {
            return Ok(());
        }
        let (Some(from), Some(into)) =
            (newest.context().catalog("kpiflow"), ctx.catalog("kpiflow"))
        else {
            return Err(error(
                SYSTEM_ERROR,
                "the kpiflow catalog is missing (a bug)".into(),
            ));
        };
        for name in from.schema_names() {
            if name == "pg_catalog" || name == "information_schema" {
                continue;
            }
            if let Some(schema) = from.schema(&name) {
                into.register_schema(&name, schema)
                    .map_err(|e| error(SYSTEM_ERROR, format!("schema {name}: {e}")))?;
            }
        }
        *current = Some(newest);
        Ok(())
    }
}

#[async_trait]
impl QueryHook for CatalogRefresh {
    async fn handle_simple_query(
        &self,
        _statement: &Statement,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.refresh(ctx).await.err().map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.refresh(ctx).await.err().map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}

/// Refuses every statement but a read.
pub(crate) struct ReadOnly;

/// Why `statement` is refused, if it is.
pub(crate) fn refusal(statement: &Statement) -> Option<String> {
    let what = match statement {
        Statement::Query(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ExplainTable { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. } => return None,
        Statement::Explain { statement, .. } => return refusal(statement),
        Statement::Set(set) => match set {
            Set::SingleAssignment { variable, .. }
                if variable
                    .to_string()
                    .to_ascii_lowercase()
                    .starts_with("datafusion.") =>
            {
                return Some(format!(
                    "SET {variable} is refused: the engine's settings are shared by every connection to kpiflow's Postgres port"
                ));
            }
            _ => return None,
        },
        Statement::Insert(_)
        | Statement::Update { .. }
        | Statement::Delete(_)
        | Statement::Merge { .. } => "DML (INSERT, UPDATE, DELETE, MERGE) is refused".to_owned(),
        Statement::Copy { .. } => "COPY is refused".to_owned(),
        other => {
            let text = other.to_string();
            let head: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            format!("{head} is refused")
        }
    };
    Some(format!(
        "{what}: kpiflow's Postgres port is read-only (use SELECT, SHOW or EXPLAIN; the pipeline alone writes the tables)"
    ))
}

fn refused<T>(statement: &Statement) -> Option<PgWireResult<T>> {
    refusal(statement).map(|message| Err(error(READ_ONLY, message)))
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refused(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        refused(statement)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refused(statement)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::refusal;

    fn check(sql: &str) -> Option<String> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        refusal(&statements[0])
    }

    #[test]
    fn reads_pass_and_writes_are_refused() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "SHOW server_version",
            "EXPLAIN SELECT 1",
            "BEGIN",
            "COMMIT",
            "SET extra_float_digits = 3",
            "DECLARE c CURSOR FOR SELECT 1",
        ] {
            assert_eq!(check(sql), None, "{sql}");
        }
        for (sql, named) in [
            ("CREATE TABLE t (a INT)", "CREATE TABLE"),
            ("DROP TABLE views.x", "DROP TABLE"),
            ("INSERT INTO t VALUES (1)", "DML"),
            ("DELETE FROM t", "DML"),
            ("COPY t TO '/tmp/x'", "COPY"),
            ("EXPLAIN INSERT INTO t VALUES (1)", "DML"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ] {
            let message = check(sql).unwrap_or_else(|| panic!("{sql} passed"));
            assert!(message.contains(named), "{sql}: {message}");
            assert!(message.contains("read-only"), "{sql}: {message}");
        }
        let set = check("SET datafusion.execution.batch_size = 1").expect("refused");
        assert!(
            set.contains("datafusion.execution.batch_size is refused"),
            "{set}"
        );
    }
}
