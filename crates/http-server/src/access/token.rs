//! Token secrets: how one is made (256 random bits), the hash the config keeps instead of it, and
//! how a request presents one (`Authorization: Bearer TOKEN`, or HTTP Basic with the token as the
//! password, which is what PouchDB and browsers send for `https://user:TOKEN@host/…`).
//!
//! The hash is an unsalted blake3: a secret of 256 random bits cannot be guessed from its hash, so
//! the slow, salted hashes that passwords need buy nothing here.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use outpost_api::{Error, Result};

use super::{Role, TokenConfig};

/// Every secret starts with this, so that a leaked one is easy to recognise (and to scan for).
pub const TOKEN_PREFIX: &str = "opt_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;
/// How a config names the hash function.
const HASH_PREFIX: &str = "blake3:";
/// The longest credentials header looked at; anything longer is no token of ours.
const MAX_CREDENTIALS: usize = 1024;

/// A freshly made token: the secret, shown once, and the config entry that holds only its hash.
pub struct NewToken {
    /// The secret (`opt_` and 43 base64url characters). Shown to the operator once; stored nowhere.
    pub secret: String,
    /// The `[[tokens]]` entry for it.
    pub config: TokenConfig,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("secret", &"<redacted>").field("config", &self.config).finish()
    }
}

impl NewToken {
    /// A new secret from the operating system's random source, for `name` with `roles`.
    /// Unavailable when the system has no random source to give.
    pub fn generate(name: &str, roles: BTreeMap<String, Role>) -> Result<NewToken> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| Error::unavailable(format!("the system's random source failed: {e}")))?;
        let secret = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        let config = TokenConfig { name: name.to_owned(), hash: hash_text(&secret), roles };
        // The same checks as a server's at start-up, so a printed block always loads.
        super::Token::from_config(&config)?;
        Ok(NewToken { secret, config })
    }

    /// The `[[tokens]]` block to paste into the server config.
    pub fn toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let roles: Vec<String> =
            self.config.roles.iter().map(|(db, role)| format!("{} = {}", quote(db), quote(role.as_str()))).collect();
        format!(
            "[[tokens]]\nname = {}\nhash = {}\nroles = {{ {} }}\n",
            quote(&self.config.name),
            quote(&self.config.hash),
            roles.join(", ")
        )
    }
}

/// The hash of a secret.
pub(crate) fn hash(secret: &str) -> blake3::Hash {
    blake3::hash(secret.as_bytes())
}

/// The hash of a secret as the config writes it.
pub(crate) fn hash_text(secret: &str) -> String {
    format!("{HASH_PREFIX}{}", hash(secret).to_hex())
}

/// A config's `blake3:<hex>`.
pub(crate) fn parse_hash(text: &str) -> Result<blake3::Hash> {
    let hex = text.strip_prefix(HASH_PREFIX).ok_or_else(|| {
        Error::invalid("expected blake3:<64 hex digits> as `outpost token new` prints it (never the secret itself)")
    })?;
    blake3::Hash::from_hex(hex).map_err(|_| Error::invalid("expected 64 hex digits after blake3:"))
}

/// The secret a request presents, if any: `Bearer TOKEN`, or `Basic base64(user:TOKEN)` (any user).
/// InvalidInput-free: a malformed header is Unauthorized, like a wrong secret.
pub(crate) fn presented(headers: &HeaderMap) -> Result<Option<String>> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(Error::unauthorized("send one Authorization header, not several"));
    }
    let malformed = || {
        Error::unauthorized("the Authorization header is not `Bearer TOKEN` or `Basic …` with the token as password")
    };
    if value.len() > MAX_CREDENTIALS {
        return Err(malformed());
    }
    let text = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, rest) = text.split_once(' ').ok_or_else(malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (_user, password) = decoded.split_once(':').ok_or_else(malformed)?;
        return Ok(Some(password.to_owned()));
    }
    Err(malformed())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn secrets_are_long_random_and_only_their_hash_is_kept() {
        let roles: BTreeMap<String, Role> = [("*".to_owned(), Role::Read)].into();
        let a = NewToken::generate("ci", roles.clone()).expect("random");
        let b = NewToken::generate("ci", roles).expect("random");
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(TOKEN_PREFIX) && a.secret.len() == TOKEN_PREFIX.len() + 43, "{}", a.secret);
        assert_eq!(parse_hash(&a.config.hash).unwrap(), hash(&a.secret));
        let block = a.toml();
        assert!(!block.contains(&a.secret) && !format!("{a:?}").contains(&a.secret));
        // The block is what a config file holds.
        #[derive(serde::Deserialize)]
        struct File {
            tokens: Vec<TokenConfig>,
        }
        let file: File = toml::from_str(&block).expect("valid TOML");
        assert_eq!(file.tokens, vec![a.config.clone()]);
    }

    #[test]
    fn bearer_and_basic_present_the_token() {
        assert_eq!(presented(&HeaderMap::new()).unwrap(), None);
        assert_eq!(presented(&headers("Bearer opt_x")).unwrap().as_deref(), Some("opt_x"));
        assert_eq!(presented(&headers("bearer  opt_x ")).unwrap().as_deref(), Some("opt_x"));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:opt_y");
        assert_eq!(presented(&headers(&format!("Basic {basic}"))).unwrap().as_deref(), Some("opt_y"));
        for bad in ["opt_x", "Digest x", "Basic !!!", "Basic Zm9v", &format!("Bearer {}", "x".repeat(2000))] {
            assert_eq!(presented(&headers(bad)).unwrap_err().kind, outpost_api::ErrorKind::Unauthorized, "{bad}");
        }
    }

    #[test]
    fn hashes_parse_only_in_their_own_form() {
        assert!(parse_hash(&hash_text("s")).is_ok());
        let bare = hash("s").to_hex().to_string();
        for bad in ["", "blake3:", "blake3:zz", "sha256:00", bare.as_str()] {
            assert!(parse_hash(bad).is_err(), "{bad}");
        }
    }
}
