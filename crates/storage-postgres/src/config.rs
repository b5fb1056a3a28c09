//! Where the PostgreSQL is and how Outpost connects to it: a libpq-style URL (`postgres://user:pw@host:port/db`
//! or `host=… user=…`), the pool size, and the URL as shown in messages (never with the password).

use std::time::Duration;

use outpost_api::{Error, Result};
use tokio_postgres::config::Host;

/// The pool size when none is chosen: enough for a server's concurrent requests on a small machine.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How to reach one PostgreSQL database (the server's, holding one schema per Outpost database).
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) pool_size: usize,
    shown: String,
}

impl PostgresConfig {
    /// Parse a connection URL or key=value string. InvalidInput when it does not parse (the message
    /// never repeats a password).
    pub fn from_url(url: &str) -> Result<Self> {
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| {
            Error::invalid(format!(
                "not a PostgreSQL connection URL ({e}); expected postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if pg.get_hosts().is_empty() {
            pg.host("localhost");
        }
        if pg.get_application_name().is_none() {
            pg.application_name("outpost");
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        pg.keepalives(true);
        let shown = shown_url(&pg);
        Ok(PostgresConfig { pg, pool_size: DEFAULT_POOL_SIZE, shown })
    }

    /// Use at most `size` pooled connections (at least 1), besides the one that listens for commits.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// The URL without its password, for messages and logs.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// `postgres://user@host:port/dbname`, rebuilt from the parsed configuration so that no password
/// (in the authority or in a `password=` parameter) can leak into a message.
fn shown_url(pg: &tokio_postgres::Config) -> String {
    let user = pg.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let ports = pg.get_ports();
    let mut hosts = Vec::new();
    let mut sockets = Vec::new();
    for (i, host) in pg.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).map(|p| format!(":{p}")).unwrap_or_default();
        match host {
            Host::Tcp(name) => hosts.push(format!("{name}{port}")),
            #[cfg(unix)]
            Host::Unix(dir) => sockets.push(format!("host={}", dir.display())),
        }
    }
    let db = pg.get_dbname().unwrap_or_default();
    let query = if sockets.is_empty() { String::new() } else { format!("?{}", sockets.join("&")) };
    format!("postgres://{user}{}/{db}{query}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_url_never_has_the_password() {
        let cases = [
            ("postgres://ann:secret@db.example:5433/outpost", "postgres://ann@db.example:5433/outpost"),
            ("postgresql://ann@127.0.0.1/x?password=secret", "postgres://ann@127.0.0.1:5432/x"),
            ("host=h1 port=6000 user=bob password=secret dbname=d", "postgres://bob@h1:6000/d"),
            ("postgres://ann:secret@/d?host=/run/postgresql", "postgres://ann@/d?host=/run/postgresql"),
            ("postgres://localhost/d", "postgres://localhost:5432/d"),
        ];
        for (url, want) in cases {
            let config = PostgresConfig::from_url(url).unwrap();
            assert_eq!(config.shown(), want, "{url}");
            assert!(!config.shown().contains("secret"));
        }
    }

    #[test]
    fn a_bad_url_is_invalid_and_not_echoed() {
        let e = PostgresConfig::from_url("postgres://ann:secret@host:notaport/d").unwrap_err();
        assert_eq!(e.kind, outpost_api::ErrorKind::InvalidInput);
        assert!(!e.message.contains("secret"), "{}", e.message);
    }
}
