//! The `[server]` section: where `kpiflow run` serves the dashboards and
//! APIs (off by default), its tokens and the SQL API's limits. Listening on
//! a non-loopback address needs tokens, or `insecure = true` said out loud.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::value::Value;
use serde::Serialize;

use kpiflow_server::{Role, ServerConfig, Token};

use super::Secret;
use super::check::{Checker, Found, path};
use super::values::{self, shown};

/// `[server]`, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSettings {
    /// `None`: serve nothing ("off").
    #[serde(serialize_with = "ser_listen")]
    pub listen: Option<SocketAddr>,
    /// Allow a non-loopback `listen` without tokens.
    pub insecure: bool,
    #[serde(serialize_with = "values::ser_duration")]
    pub sql_timeout: Duration,
    #[serde(serialize_with = "values::ser_size")]
    pub sql_memory_limit: u64,
    pub max_rows: usize,
    /// `None`: the built-in dashboards.
    #[serde(serialize_with = "ser_dashboards")]
    pub dashboards: Option<PathBuf>,
    pub tokens: Vec<TokenSetting>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenSetting {
    pub name: String,
    pub role: String,
    pub token: Secret,
}

fn ser_listen<S: serde::Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_str("off"),
    }
}

fn ser_dashboards<S: serde::Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_str("built-in"),
    }
}

impl ServerSettings {
    /// Whether serving on `addr` would let other machines in without auth:
    /// a non-loopback address, no tokens, and `insecure` not said.
    fn unguarded(&self, addr: SocketAddr) -> bool {
        !addr.ip().is_loopback() && self.tokens.is_empty() && !self.insecure
    }

    /// As the server takes it; `checkpoint_interval` for `/readyz`.
    pub fn server_config(&self, checkpoint_interval: Option<Duration>) -> ServerConfig {
        ServerConfig {
            tokens: self
                .tokens
                .iter()
                .map(|t| Token {
                    name: t.name.clone(),
                    role: role(&t.role).unwrap_or(Role::Viewer),
                    token: t.token.expose().to_owned(),
                })
                .collect(),
            sql_timeout: self.sql_timeout,
            sql_memory_limit: self.sql_memory_limit as usize,
            max_rows: self.max_rows,
            checkpoint_interval,
            dashboards_dir: self.dashboards.clone(),
            ..ServerConfig::default()
        }
    }
}

fn role(name: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| r.name() == name)
}

/// An address to listen on, or "off".
pub fn listen(value: &Value) -> Result<Option<SocketAddr>, String> {
    let text = values::non_empty(value)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse::<SocketAddr>().map(Some).map_err(|_| {
        format!("{text:?} is not an address to listen on: give host:port with an IP (e.g. \"127.0.0.1:8080\", \"0.0.0.0:8080\"), or \"off\"")
    })
}

impl Checker<'_> {
    pub(super) fn server(&mut self) -> Option<ServerSettings> {
        let listen_at = self.setting("server.listen", |v, _| listen(v));
        let insecure = self.setting("server.insecure", values::boolean);
        let sql_timeout = self.setting("server.sql_timeout", |v, _| {
            let d = values::duration(v)?;
            if d.is_zero() {
                return Err("must be above zero".into());
            }
            Ok(d)
        });
        let sql_memory_limit = self.setting("server.sql_memory_limit", |v, text| {
            let bytes = values::byte_size(v, text)?;
            if !(1 << 20..=1 << 40).contains(&bytes) {
                return Err(format!(
                    "{} is not between 1MiB and 1TiB",
                    values::format_size(bytes)
                ));
            }
            Ok(bytes)
        });
        let max_rows = self.setting("server.max_rows", |v, text| {
            let n = values::integer(v, text)?;
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=10_000_000).contains(n))
                .ok_or_else(|| format!("{n} is not between 1 and 10000000 rows"))
        });
        let dashboards = self.setting("server.dashboards", |v, _| {
            let text = values::non_empty(v)?;
            if text == "built-in" {
                return Ok(None);
            }
            let dir = PathBuf::from(&text);
            if !dir.is_dir() {
                return Err(format!(
                    "{text:?} is not a directory of dashboard files (*.toml), or \"built-in\""
                ));
            }
            Ok(Some(dir))
        });
        let tokens = self.tokens();
        let settings = ServerSettings {
            listen: listen_at?,
            insecure: insecure?,
            sql_timeout: sql_timeout?,
            sql_memory_limit: sql_memory_limit?,
            max_rows: max_rows?,
            dashboards: dashboards?,
            tokens: tokens?,
        };
        if let Some(addr) = settings.listen
            && settings.unguarded(addr)
        {
            self.report_at(
                "server.listen",
                format!("{addr} is reachable from other machines and no tokens are set: add [[server.tokens]] (name, role, token), or pass --insecure (server.insecure = true) to serve without auth"),
            );
            return None;
        }
        Some(settings)
    }

    fn tokens(&mut self) -> Option<Vec<TokenSetting>> {
        let key = path("server.tokens");
        self.known.insert(key.clone());
        let items = match self.lookup(&key) {
            Found::Absent => return Some(Vec::new()),
            Found::Blocked => return None,
            Found::Value(Value::Array(_, items)) => items,
            Found::Value(other) => {
                let message = format!(
                    "expected a list of tokens ([[server.tokens]] with name, role and token), got {}",
                    shown(other)
                );
                self.report(&key, Some(other), message);
                return None;
            }
        };
        let mut tokens = Vec::new();
        let mut valid = true;
        for (i, item) in items.iter().enumerate() {
            let mut at = key.clone();
            at.push(i.to_string());
            let Value::Dict(_, dict) = item else {
                self.report(
                    &at,
                    Some(item),
                    format!(
                        "expected a table with name, role and token, got {}",
                        shown(item)
                    ),
                );
                valid = false;
                continue;
            };
            let field = |name: &str| dict.get(name).and_then(|v| values::non_empty(v).ok());
            let unknown: Vec<&String> = dict
                .keys()
                .filter(|k| !["name", "role", "token"].contains(&k.as_str()))
                .collect();
            let problem = if !unknown.is_empty() {
                Some(format!(
                    "unknown key {:?}: a token has name, role and token",
                    unknown[0]
                ))
            } else {
                match (field("name"), field("role"), field("token")) {
                    (Some(_), Some(r), Some(_)) if role(&r).is_none() => Some(format!(
                        "role {r:?}: expected viewer, analyst, planner or admin"
                    )),
                    (Some(_), Some(_), Some(t)) if t.len() < 16 => Some(
                        "the token is shorter than 16 characters: use a long random one (e.g. openssl rand -hex 24)".to_owned(),
                    ),
                    (Some(name), Some(r), Some(t)) => {
                        if tokens.iter().any(|x: &TokenSetting| x.token.expose() == t) {
                            Some(format!("token of {name:?}: the same token is given twice"))
                        } else {
                            tokens.push(TokenSetting {
                                name,
                                role: r,
                                token: Secret::new(t),
                            });
                            None
                        }
                    }
                    _ => Some("a token needs name, role and token, each a non-empty string".to_owned()),
                }
            };
            if let Some(message) = problem {
                self.report(&at, Some(item), message);
                valid = false;
            }
        }
        valid.then_some(tokens)
    }
}

/// `[pg]`, checked: the Postgres wire protocol (off by default).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PgSettings {
    /// `None`: not served ("off").
    #[serde(serialize_with = "ser_listen")]
    pub listen: Option<SocketAddr>,
    pub max_connections: usize,
}

impl Checker<'_> {
    /// `[pg]`; a non-loopback address needs `server`'s tokens or insecure.
    pub(super) fn pg(&mut self, server: Option<&ServerSettings>) -> Option<PgSettings> {
        let listen_at = self.setting("pg.listen", |v, _| listen(v));
        let max_connections = self.setting("pg.max_connections", |v, text| {
            let n = values::integer(v, text)?;
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| format!("{n} is not between 1 and 10000 connections"))
        });
        let settings = PgSettings {
            listen: listen_at?,
            max_connections: max_connections?,
        };
        if let (Some(addr), Some(server)) = (settings.listen, server)
            && server.unguarded(addr)
        {
            self.report_at(
                "pg.listen",
                format!("{addr} is reachable from other machines and no tokens are set: add [[server.tokens]] (name, role, token; clients log in with name and token), or pass --insecure (server.insecure = true) to serve without auth"),
            );
            return None;
        }
        Some(settings)
    }
}
