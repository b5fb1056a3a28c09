//! The server config file (`outpost serve --config FILE`, TOML, SPEC §14): where to listen and what to
//! serve, TLS, tokens, peers, CORS origins and limits. Unknown keys and bad values are errors that
//! name the key; relative paths are relative to the config file's directory. Command-line flags
//! override the file (the CLI applies them), and [`check_exposure`] is the start-up rule that a server
//! reachable from other machines has tokens and TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use outpost_api::{Error, Limits, Result};
use serde::Deserialize;

use crate::access::{Access, TokenConfig};
use crate::connections::ConnectionLimits;
use crate::jobs::{PeerConfig, Peers};
use crate::listen::Tls;

/// The parsed config file. Every key is optional; an empty file is the defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on (`127.0.0.1:7070` when neither the file nor a flag says).
    pub listen: Option<SocketAddr>,
    /// The data directory of SQLite databases.
    pub data: Option<PathBuf>,
    /// A PostgreSQL URL to serve instead of a data directory.
    pub postgres: Option<String>,
    /// The root of the published quicksync files.
    pub quicksync: Option<PathBuf>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsConfig>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy). Warned about.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// The access tokens (`[[tokens]]`); none: loopback callers only, unauthenticated.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// The only remote servers a server-run job may reach (`[[peers]]`).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Browser origins allowed to call the server.
    #[serde(default)]
    pub cors: CorsConfig,
    /// Input limits (SPEC §13).
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// `[tls]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key: PathBuf,
}

/// `[cors]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`https://app.example`) whose pages may call the server with credentials.
    #[serde(default)]
    pub origins: Vec<String>,
}

/// `[limits]`: each left out takes its SPEC §13 default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest record body, in canonical bytes (default 1 MiB).
    pub max_body_bytes: Option<usize>,
    /// Deepest value nesting (default 32).
    pub max_depth: Option<usize>,
    /// Most operations in one bulk request (default 10,000).
    pub max_bulk_ops: Option<usize>,
    /// Largest request body, in bytes (default 16 MiB).
    pub max_request_bytes: Option<usize>,
    /// Longest record id, in bytes (default 256, the most there is).
    pub max_id_bytes: Option<usize>,
    /// Most ids of history a replicated revision keeps (default 1,000; longer ones are cut to stubs).
    pub max_ancestry: Option<usize>,
    /// Most records in one revs-diff or revs/get request, duplicates merged (default 10,000).
    pub max_request_entries: Option<usize>,
    /// Most tables a changes filter names (default 100).
    pub max_filter_tables: Option<usize>,
    /// Seconds a client may take to send request headers; also how long an idle keep-alive connection
    /// stays open (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// Connections served at once; more wait in the listen backlog (default 1,024).
    pub max_connections: Option<usize>,
    /// Long-polls and event streams open at once (default 512).
    pub max_feeds: Option<usize>,
    /// Long-polls and event streams one token may hold at once (default 64).
    pub max_feeds_per_token: Option<usize>,
    /// Request-body bytes read at once across all requests (default 256 MiB; at least
    /// max_request_bytes).
    pub max_upload_bytes: Option<usize>,
}

impl ServerConfig {
    /// Read and check the config at `path`. The message of every error names the file and, for a bad
    /// key or value, the key (and its line).
    pub fn load(path: &Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read the config file {}: {e}", path.display())))?;
        warn_if_shared(path);
        let mut config = Self::parse(&text).map_err(|e| e.context(format!("config {}", path.display())))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parse config text (paths as written); InvalidInput naming the bad key.
    pub fn parse(text: &str) -> Result<ServerConfig> {
        let config: ServerConfig =
            toml::from_str(text).map_err(|e| Error::invalid(e.to_string().trim_end().to_owned()))?;
        if config.data.is_some() && config.postgres.is_some() {
            return Err(Error::invalid("data and postgres: give one of them, not both"));
        }
        // Built once here so that a bad token, origin, peer or limit stops start-up, naming it.
        config.access()?;
        config.peers()?;
        config.limits()?;
        config.connection_limits()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.data.iter_mut().for_each(resolve);
        self.quicksync.iter_mut().for_each(resolve);
        if let Some(tls) = &mut self.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        for peer in &mut self.peers {
            peer.token_file.iter_mut().for_each(resolve);
            peer.ca_file.iter_mut().for_each(resolve);
        }
    }

    /// The access policy: tokens and CORS origins.
    pub fn access(&self) -> Result<Access> {
        Access::open()
            .with_tokens(&self.tokens)
            .map_err(|e| e.context("tokens"))?
            .with_origins(&self.cors.origins)
            .map_err(|e| e.context("cors.origins"))
    }

    /// The peers server-run jobs may reach.
    pub fn peers(&self) -> Result<Peers> {
        Peers::new(&self.peers)
    }

    /// The input limits.
    pub fn limits(&self) -> Result<Limits> {
        let defaults = Limits::default();
        let l = &self.limits;
        let limits = Limits {
            max_body_bytes: pick("max_body_bytes", l.max_body_bytes, defaults.max_body_bytes, 64 << 20)?,
            max_depth: pick("max_depth", l.max_depth, defaults.max_depth, outpost_api::names::MAX_DEPTH)?,
            max_bulk_ops: pick("max_bulk_ops", l.max_bulk_ops, defaults.max_bulk_ops, 100_000)?,
            max_request_bytes: pick("max_request_bytes", l.max_request_bytes, defaults.max_request_bytes, 1 << 30)?,
            max_id_bytes: pick(
                "max_id_bytes",
                l.max_id_bytes,
                defaults.max_id_bytes,
                outpost_api::names::MAX_ID_BYTES,
            )?,
            max_ancestry: pick("max_ancestry", l.max_ancestry, defaults.max_ancestry, 100_000)?,
            max_request_entries: pick(
                "max_request_entries",
                l.max_request_entries,
                defaults.max_request_entries,
                100_000,
            )?,
            max_filter_tables: pick("max_filter_tables", l.max_filter_tables, defaults.max_filter_tables, 10_000)?,
        };
        if limits.max_body_bytes > limits.max_request_bytes {
            return Err(Error::invalid(format!(
                "limits.max_body_bytes ({}) is larger than limits.max_request_bytes ({}): no such record could arrive",
                limits.max_body_bytes, limits.max_request_bytes
            )));
        }
        Ok(limits)
    }

    /// The connection-level limits.
    pub fn connection_limits(&self) -> Result<ConnectionLimits> {
        let defaults = ConnectionLimits::default();
        let l = &self.limits;
        let timeout = match l.header_read_timeout_secs {
            None => defaults.header_read_timeout,
            Some(s @ 1..=3600) => std::time::Duration::from_secs(s),
            Some(s) => {
                return Err(Error::invalid(format!("limits.header_read_timeout_secs = {s}: expected 1 to 3600")))
            }
        };
        let limits = ConnectionLimits {
            header_read_timeout: timeout,
            max_connections: pick("max_connections", l.max_connections, defaults.max_connections, 1_000_000)?,
            max_feeds: pick("max_feeds", l.max_feeds, defaults.max_feeds, 1_000_000)?,
            max_feeds_per_token: pick(
                "max_feeds_per_token",
                l.max_feeds_per_token,
                defaults.max_feeds_per_token,
                1_000_000,
            )?,
            max_upload_bytes: pick("max_upload_bytes", l.max_upload_bytes, defaults.max_upload_bytes, 1 << 32)?,
        };
        let request = self.limits()?.max_request_bytes;
        if limits.max_upload_bytes < request {
            return Err(Error::invalid(format!(
                "limits.max_upload_bytes ({}) is smaller than limits.max_request_bytes ({request}): no request of the \
                 largest size could be read",
                limits.max_upload_bytes
            )));
        }
        Ok(limits)
    }

    /// The TLS certificate and key, loaded; None without `[tls]`.
    pub fn tls(&self) -> Result<Option<Tls>> {
        self.tls.as_ref().map(|t| Tls::from_pem_files(&t.cert, &t.key)).transpose()
    }
}

/// `[limits] key`: its value when given (1 to `max`), else `default`.
fn pick(key: &str, value: Option<usize>, default: usize, max: usize) -> Result<usize> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(Error::invalid(format!("limits.{key} = {v}: expected 1 to {max}"))),
    }
}

/// The start-up rule of SPEC §14: a server on a non-loopback address needs tokens, and TLS unless
/// plain HTTP is allowed explicitly (behind a TLS-terminating proxy). Ok with a warning to log when
/// plain HTTP is served that way; InvalidInput saying what to do otherwise.
pub fn check_exposure(
    listen: SocketAddr,
    access: &Access,
    tls: bool,
    allow_plain_http: bool,
) -> Result<Option<String>> {
    if listen.ip().is_loopback() {
        return Ok(None);
    }
    if !access.requires_tokens() {
        return Err(Error::invalid(format!(
            "refusing to listen on {listen} without access tokens: anyone who reaches the port could read and \
             delete every database. Create tokens with `outpost token new --name NAME --role DB=ROLE`, add the \
             [[tokens]] blocks it prints to a config file, and start with --config FILE (or listen on \
             127.0.0.1 for local use only)"
        )));
    }
    if !tls && !allow_plain_http {
        return Err(Error::invalid(format!(
            "refusing to serve plain HTTP on {listen}: tokens would cross the network readable by anyone on the \
             way. Give the config a [tls] section (cert and key PEM files), or set allow_plain_http = true when a \
             TLS-terminating proxy sits in front of this server"
        )));
    }
    Ok((!tls).then(|| {
        format!(
            "serving plain HTTP on {listen} (allow_plain_http = true): tokens and data are not encrypted on the way"
        )
    }))
}

/// Warn when a config file (which may name token files and hold hashes) is readable by others.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the config file is readable by other users; `chmod 600` it"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_config_is_the_defaults() {
        let config = ServerConfig::parse("").expect("empty");
        assert!(config.listen.is_none() && config.tokens.is_empty() && !config.allow_plain_http);
        assert_eq!(config.limits().unwrap(), Limits::default());
        assert!(!config.access().unwrap().requires_tokens());
    }

    #[test]
    fn a_full_config_parses() {
        let text = r#"
            listen = "0.0.0.0:7443"
            data = "/var/lib/outpost"
            quicksync = "/var/lib/outpost/quicksync"
            allow_plain_http = false
            [tls]
            cert = "tls/cert.pem"
            key = "tls/key.pem"
            [[tokens]]
            name = "hq"
            hash = "blake3:0000000000000000000000000000000000000000000000000000000000000000"
            roles = { "*" = "admin" }
            [[tokens]]
            name = "tablet"
            hash = "blake3:1111111111111111111111111111111111111111111111111111111111111111"
            roles = { "field" = "write", "stock" = "read" }
            [[peers]]
            url = "https://edge.example:7443"
            token_file = "edge.token"
            [cors]
            origins = ["https://app.example"]
            [limits]
            max_body_bytes = 2097152
            max_bulk_ops = 500
        "#;
        let config = ServerConfig::parse(text).expect("valid");
        assert_eq!(config.listen, Some("0.0.0.0:7443".parse().unwrap()));
        assert_eq!(config.tokens.len(), 2);
        assert_eq!(config.limits().unwrap().max_bulk_ops, 500);
        assert_eq!(config.limits().unwrap().max_depth, Limits::default().max_depth);
        assert!(config.access().unwrap().requires_tokens());
        let mut resolved = config.clone();
        resolved.resolve_paths(Path::new("/etc/outpost"));
        assert_eq!(resolved.tls.unwrap().cert, Path::new("/etc/outpost/tls/cert.pem"));
        assert_eq!(resolved.peers[0].token_file.as_deref(), Some(Path::new("/etc/outpost/edge.token")));
        assert_eq!(resolved.data.as_deref(), Some(Path::new("/var/lib/outpost")));
    }

    #[test]
    fn bad_keys_and_values_name_the_key() {
        let cases = [
            ("lisen = \"127.0.0.1:1\"", "lisen"),
            ("listen = \"nowhere\"", "listen"),
            ("[tls]\ncert = \"a\"\nkey = \"b\"\npassword = \"c\"", "password"),
            ("[limits]\nmax_depth = 0", "limits.max_depth"),
            ("[limits]\nmax_depth = 64", "limits.max_depth"),
            ("[limits]\nmax_bodybytes = 5", "max_bodybytes"),
            ("[limits]\nmax_body_bytes = 100\nmax_request_bytes = 10", "limits.max_body_bytes"),
            ("[limits]\nmax_connections = 0", "limits.max_connections"),
            ("[limits]\nheader_read_timeout_secs = 0", "limits.header_read_timeout_secs"),
            ("[limits]\nmax_upload_bytes = 1000", "limits.max_upload_bytes"),
            ("[[tokens]]\nname = \"a\"\nhash = \"secret\"\nroles = { \"*\" = \"read\" }", "tokens"),
            ("[[tokens]]\nname = \"a\"\nhash = \"x\"\nroles = { \"*\" = \"owner\" }", "owner"),
            ("[cors]\norigins = [\"*\"]", "cors.origins"),
            ("[[peers]]\nurl = \"ftp://x\"", "peers: url"),
            ("data = \"a\"\npostgres = \"postgres://x\"", "data and postgres"),
        ];
        for (text, key) in cases {
            let e = ServerConfig::parse(text).expect_err(text);
            assert!(e.message.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn exposure_needs_tokens_and_tls() {
        let open = Access::open();
        let hash = "blake3:0000000000000000000000000000000000000000000000000000000000000000";
        let tokens =
            [TokenConfig { name: "a".into(), hash: hash.into(), roles: [("*".into(), crate::Role::Read)].into() }];
        let with_tokens = Access::open().with_tokens(&tokens).unwrap();
        let local: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert_eq!(check_exposure(local, &open, false, false).unwrap(), None);
        assert!(check_exposure(public, &open, true, true).unwrap_err().message.contains("outpost token new"));
        assert!(check_exposure(public, &with_tokens, false, false).unwrap_err().message.contains("[tls]"));
        assert_eq!(check_exposure(public, &with_tokens, true, false).unwrap(), None);
        assert!(check_exposure(public, &with_tokens, false, true).unwrap().is_some_and(|w| w.contains("plain HTTP")));
    }
}
