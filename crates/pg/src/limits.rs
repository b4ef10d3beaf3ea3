//! The SQL API's limits on every result of the Postgres port: planning and
//! each row are bounded by one deadline (the SQL timeout, SQLSTATE 57014),
//! and a result longer than the row limit ends in an error (54000) rather
//! than being cut without a word. Dropping the row stream cancels the
//! DataFusion query behind it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion_postgres::DfSessionService;
use futures::{Sink, StreamExt, stream};
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tokio::time::Instant;

use crate::hooks::error;

/// SQLSTATE 57014: query_canceled.
const CANCELED: &str = "57014";
/// SQLSTATE 54000: program_limit_exceeded.
const TOO_MANY_ROWS: &str = "54000";

fn timed_out(timeout: Duration) -> PgWireError {
    error(
        CANCELED,
        format!(
            "canceling statement: it ran longer than the SQL timeout of {} s (server.sql_timeout)",
            timeout.as_secs()
        ),
    )
}

/// datafusion-postgres's handlers with a deadline and a row limit.
pub(crate) struct Limited {
    inner: Arc<DfSessionService>,
    timeout: Duration,
    max_rows: usize,
}

impl Limited {
    pub fn new(inner: Arc<DfSessionService>, timeout: Duration, max_rows: usize) -> Limited {
        Limited {
            inner,
            timeout,
            max_rows,
        }
    }

    /// `response` with its rows under the deadline and the row limit.
    fn limit(&self, response: Response, deadline: Instant) -> Response {
        let Response::Query(mut query) = response else {
            return response;
        };
        let rows = std::mem::replace(&mut query.data_rows, Box::pin(stream::empty()));
        let (max_rows, timeout) = (self.max_rows, self.timeout);
        // State: the rows, how many were sent, whether an error ended them.
        let limited = stream::unfold(
            (rows, 0usize, false),
            move |(mut rows, seen, ended)| async move {
                if ended {
                    return None;
                }
                match tokio::time::timeout_at(deadline, rows.next()).await {
                    Err(_) => Some((Err(timed_out(timeout)), (rows, seen, true))),
                    Ok(None) => None,
                    Ok(Some(_)) if seen == max_rows => Some((
                        Err(error(
                            TOO_MANY_ROWS,
                            format!(
                                "the result has more than {max_rows} rows (server.max_rows): add a LIMIT, a WHERE or an aggregate"
                            ),
                        )),
                        (rows, seen, true),
                    )),
                    Ok(Some(row)) => Some((row, (rows, seen + 1, false))),
                }
            },
        );
        query.data_rows = Box::pin(limited);
        Response::Query(query)
    }
}

#[async_trait]
impl SimpleQueryHandler for Limited {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let deadline = Instant::now() + self.timeout;
        let responses = tokio::time::timeout_at(
            deadline,
            SimpleQueryHandler::do_query(&*self.inner, client, query),
        )
        .await
        .map_err(|_| timed_out(self.timeout))??;
        Ok(responses
            .into_iter()
            .map(|r| self.limit(r, deadline))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Limited {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = <DfSessionService as ExtendedQueryHandler>::QueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.inner.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let deadline = Instant::now() + self.timeout;
        let response = tokio::time::timeout_at(
            deadline,
            ExtendedQueryHandler::do_query(&*self.inner, client, portal, max_rows),
        )
        .await
        .map_err(|_| timed_out(self.timeout))??;
        Ok(self.limit(response, deadline))
    }
}
