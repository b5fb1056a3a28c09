//! How the CLI reaches Outpost servers (SPEC §12, §14): the access token from `OUTPOST_TOKEN` or
//! `--token-file` (never a flag holding the secret, which `ps` would show), and a private CA from
//! `OUTPOST_CA_FILE` or `--ca-file`. Set once from the global options, before any locator is opened.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use outpost_api::{Error, Result};
use outpost_client::{AccessToken, ClientConfig};

/// The environment variable holding a token's secret.
pub const TOKEN_VAR: &str = "OUTPOST_TOKEN";

static REMOTE: OnceLock<ClientConfig> = OnceLock::new();

/// How a download may take: a whole snapshot over a slow link (stalls are caught by the read timeout).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Record the token and CA every remote locator uses: `--token-file` wins over `OUTPOST_TOKEN`.
pub fn configure(token_file: Option<&Path>, ca_file: Option<PathBuf>) -> Result<()> {
    let token = match token_file {
        Some(path) => Some(AccessToken::from_file(path)?),
        None => match std::env::var(TOKEN_VAR) {
            Ok(secret) if !secret.trim().is_empty() => {
                Some(AccessToken::new(secret).map_err(|e| e.context(TOKEN_VAR))?)
            }
            _ => None,
        },
    };
    if let Some(path) = &ca_file {
        if !path.is_file() {
            return Err(Error::invalid(format!("the CA file {} does not exist", path.display())));
        }
    }
    let _ = REMOTE.set(ClientConfig { token, ca_file, ..ClientConfig::default() });
    Ok(())
}

/// The client configuration for remote locators.
pub fn config() -> ClientConfig {
    REMOTE.get().cloned().unwrap_or_default()
}

/// [`config`] with the token of `token_file` instead, when given (one end of a sync).
pub fn config_with(token_file: Option<&Path>) -> Result<ClientConfig> {
    let mut config = config();
    if let Some(path) = token_file {
        config.token = Some(AccessToken::from_file(path)?);
    }
    Ok(config)
}

/// An HTTP client for quicksync downloads: the same token and CA, stalls timed out, not whole files.
pub fn download_client() -> Result<reqwest::Client> {
    ClientConfig { request_timeout: DOWNLOAD_TIMEOUT, read_timeout: Some(Duration::from_secs(60)), ..config() }
        .http_client()
}

/// Whether a token is configured (for the hint on a 401).
pub fn has_token() -> bool {
    REMOTE.get().is_some_and(|c| c.token.is_some())
}
