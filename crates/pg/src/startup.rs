//! Who may connect. With no tokens configured, anyone (the server refuses
//! a non-loopback address without tokens before it gets here, as the HTTP
//! side does). With tokens, a client logs in with a token's name as user
//! and the token as password (cleartext, as Postgres's `password` method);
//! only tokens of the analyst role or above open the port, since it runs
//! SQL. A wrong or unknown one gets 28P01, as from Postgres.

use std::fmt;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use kpiflow_server::Token;

pub(crate) enum Startup {
    Open(Open),
    Tokens(Box<CleartextPasswordAuthStartupHandler<Tokens, DefaultServerParameterProvider>>),
}

impl Startup {
    /// `open`: no auth; otherwise `tokens` (already those allowed SQL).
    pub fn new(open: bool, tokens: Vec<Token>, connections: Arc<ConnectionManager>) -> Startup {
        if open {
            return Startup::Open(Open { connections });
        }
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.default_transaction_read_only = true;
        parameters.is_superuser = false;
        Startup::Tokens(Box::new(
            CleartextPasswordAuthStartupHandler::new(Tokens(tokens), parameters)
                .with_connection_manager(connections),
        ))
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Open(open) => open.on_startup(client, message).await,
            Startup::Tokens(tokens) => tokens.on_startup(client, message).await,
        }
    }
}

/// No authentication.
pub(crate) struct Open {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Open {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

/// The tokens that open the port, by name.
pub(crate) struct Tokens(Vec<Token>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Token's Debug redacts the secret.
        f.debug_list().entries(&self.0).finish()
    }
}

#[async_trait]
impl AuthSource for Tokens {
    // async-trait cannot take the trait's `LoginInfo<'_>` spelled out.
    #[allow(elided_lifetimes_in_paths)]
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.0.iter().find(|t| t.name == user) {
            Some(token) => Ok(Password::new(None, token.token.as_bytes().to_vec())),
            None => {
                tracing::info!(
                    user,
                    "postgres port: login refused (no token of that name with the analyst role)"
                );
                Err(PgWireError::InvalidPassword(user.to_owned()))
            }
        }
    }
}
