//! Where the PostgreSQL is and how Outpost connects to it: a libpq-style URL (`postgres://user:pw@host:port/db`
//! or `host=… user=…`), TLS, the pool size, and the URL as shown in messages (never with the password).
//!
//! TLS (SPEC §14): `sslmode=require` (or libpq's stricter `verify-ca` / `verify-full`) connects over
//! TLS and verifies the server's certificate against the public (webpki) roots plus the CAs of
//! `sslrootcert=FILE`, and its host name — stricter than libpq's `require`, which checks neither.
//! Any other mode (or none) connects without TLS, as before TLS support existed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use outpost_api::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The pool size when none is chosen: enough for a server's concurrent requests on a small machine.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How to reach one PostgreSQL database (the server's, holding one schema per Outpost database).
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) pool_size: usize,
    /// How TLS connections are made (used only when `pg` asks for TLS).
    pub(crate) tls: MakeRustlsConnect,
    shown: String,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.shown)
            .field("tls", &self.uses_tls())
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PostgresConfig {
    /// Parse a connection URL or key=value string. InvalidInput when it does not parse (the message
    /// never repeats a password).
    pub fn from_url(url: &str) -> Result<Self> {
        let (url, root_cert) = libpq_options(url);
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
        if pg.get_ssl_mode() != SslMode::Require {
            // `prefer` would try TLS without verifying anything; plain is what it always was.
            pg.ssl_mode(SslMode::Disable);
        }
        let tls = tls_connector(root_cert.as_deref())?;
        let shown = shown_url(&pg);
        Ok(PostgresConfig { pg, pool_size: DEFAULT_POOL_SIZE, tls, shown })
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        self.pg.get_ssl_mode() == SslMode::Require
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

/// The URL without the libpq options tokio-postgres does not know, and the `sslrootcert` file if any:
/// `sslrootcert=FILE` is taken out, `sslmode=verify-ca` and `verify-full` become `require` (whose
/// verification here is already theirs).
fn libpq_options(url: &str) -> (String, Option<PathBuf>) {
    let mut root_cert = None;
    let mut keep = |pair: &str| -> Option<String> {
        match pair.split_once('=') {
            Some(("sslrootcert", file)) => {
                root_cert = Some(PathBuf::from(percent_decoded(file)));
                None
            }
            Some(("sslmode", "verify-ca" | "verify-full")) => Some("sslmode=require".to_owned()),
            _ => Some(pair.to_owned()),
        }
    };
    let rewritten = if url.contains("://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let pairs: Vec<String> = query.split('&').filter_map(&mut keep).collect();
                if pairs.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", pairs.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace().filter_map(&mut keep).collect::<Vec<_>>().join(" ")
    };
    (rewritten, root_cert)
}

/// `%XX` escapes of a URL query value decoded (a path may be written escaped).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TLS connector trusting the public roots and the CAs in `root_cert` (InvalidInput when it cannot
/// be read or holds no certificate).
fn tls_connector(root_cert: Option<&std::path::Path>) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = root_cert {
        let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("sslrootcert {}: {e}", path.display()));
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(&e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        if certificates.is_empty() {
            return Err(bad(&"no PEM certificate in the file"));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS for PostgreSQL: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
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
