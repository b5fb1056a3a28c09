//! The only remote ends a server-run job may reach (SPEC §14, `[[peers]]`): each a server base URL,
//! with the token file the job authenticates with and the CA file it trusts. A job naming any other
//! URL is refused before a connection is made, so a job cannot be used to probe the network the
//! server sits in.

use std::path::PathBuf;
use std::sync::Arc;

use outpost_api::{Error, Result};
use outpost_client::{AccessToken, ClientConfig};
use serde::{Deserialize, Serialize};

/// One `[[peers]]` entry of the server config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's base URL, `https://host:port` (a job's URL is this plus `/dbs/NAME`).
    pub url: String,
    /// A file holding the token the job sends to the peer (read each time a job starts, so a rotated
    /// token is picked up). None: the peer needs no token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A PEM file of the CAs that the peer's certificate may chain to, besides the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug)]
struct Peer {
    /// Normalised as `outpost_client::base_url` does, so that it compares with a locator's base.
    base: String,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

/// The configured peers. Cloning is cheap.
#[derive(Clone, Debug, Default)]
pub struct Peers {
    list: Arc<[Peer]>,
}

impl Peers {
    /// No peers: jobs run between this server's own databases only.
    pub fn none() -> Self {
        Peers::default()
    }

    /// The peers of a config; InvalidInput naming a bad URL.
    pub fn new(configs: &[PeerConfig]) -> Result<Self> {
        let mut list = Vec::with_capacity(configs.len());
        for config in configs {
            let base = outpost_client::base_url(&config.url).map_err(|e| e.context("peers: url"))?;
            if base.contains("/dbs/") || base.ends_with("/dbs") {
                return Err(Error::invalid(format!(
                    "peers: url {base:?} names a database; give the server's base URL (https://host:port)"
                )));
            }
            if config.token_file.is_some() && base.starts_with("http://") {
                tracing::warn!(peer = %base, "the token for this peer travels over plain HTTP: use https://");
            }
            list.push(Peer { base, token_file: config.token_file.clone(), ca_file: config.ca_file.clone() });
        }
        Ok(Peers { list: list.into() })
    }

    /// How a job talks to the server at `base` (a locator's base URL): Forbidden when it is not a
    /// configured peer; Unavailable when the token or CA file the config names for it cannot be read
    /// (the server's own configuration: the file's path and the OS's words go to the log only).
    pub(crate) fn client_config(&self, base: &str) -> Result<ClientConfig> {
        let peer = self.list.iter().find(|p| p.base == base).ok_or_else(|| {
            Error::forbidden(format!(
                "{base} is not a configured peer; a server-run job reaches only the [[peers]] of the server's config"
            ))
        })?;
        let unreadable = |what: &str, e: Error| {
            tracing::error!(peer = %base, error = %e.message, "the {what} file configured for a peer cannot be used");
            Error::unavailable(format!(
                "the {what} file configured for peer {base} cannot be used; its operator has been told"
            ))
        };
        let token =
            peer.token_file.as_deref().map(AccessToken::from_file).transpose().map_err(|e| unreadable("token", e))?;
        let config = ClientConfig { token, ca_file: peer.ca_file.clone(), ..ClientConfig::default() };
        // The CA file is read here too, so that a bad one is this error rather than a client error later.
        config.http_client().map_err(|e| unreadable("CA", e))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(url: &str) -> PeerConfig {
        PeerConfig { url: url.into(), token_file: None, ca_file: None }
    }

    #[test]
    fn only_configured_bases_are_reachable() {
        let peers = Peers::new(&[peer("https://HQ.example:7443/"), peer("http://127.0.0.1:7070")]).expect("valid");
        assert!(peers.client_config("https://hq.example:7443").is_ok());
        assert!(peers.client_config("http://127.0.0.1:7070").is_ok());
        let e = peers.client_config("http://127.0.0.1:22").unwrap_err();
        assert_eq!(e.kind, outpost_api::ErrorKind::Forbidden);
        assert!(e.message.contains("not a configured peer"), "{e}");
    }

    #[test]
    fn bad_peer_urls_are_refused() {
        for bad in ["ftp://h", "https://h/dbs/a", "https://user:pw@h", "not a url"] {
            assert!(Peers::new(&[peer(bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_is_read_from_its_file_when_a_job_starts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hq.token");
        let peers = Peers::new(&[PeerConfig { token_file: Some(file.clone()), ..peer("https://hq:1") }]).unwrap();
        let unreadable = peers.client_config("https://hq:1").unwrap_err();
        assert_eq!(unreadable.kind, outpost_api::ErrorKind::Unavailable);
        assert!(unreadable.message.contains("token file configured for peer https://hq:1"), "{unreadable}");
        assert!(!unreadable.message.contains(&*dir.path().to_string_lossy()), "no server path: {unreadable}");
        std::fs::write(&file, "opt_one\n").unwrap();
        assert_eq!(peers.client_config("https://hq:1").unwrap().token, Some(AccessToken::new("opt_one").unwrap()));
        std::fs::write(&file, "opt_two").unwrap();
        assert_eq!(peers.client_config("https://hq:1").unwrap().token, Some(AccessToken::new("opt_two").unwrap()));
    }
}
