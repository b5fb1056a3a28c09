//! Who may do what (SPEC §14): access tokens with a role per database, the caller of a request, and
//! the rules a request passes before any handler runs ([`guard`]). Handlers never check roles
//! themselves: a route's database comes from a [`crate::extract::ReadDb`], `WriteDb` or `AdminDb`
//! extractor, whose type says the role it needs.
//!
//! Without configured tokens the server is open, as on a developer's machine, but only to loopback
//! callers: requests must name a loopback `Host` (DNS rebinding) and carry no foreign `Origin` (CSRF).

mod cors;
mod guard;
mod token;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderValue;
use outpost_api::{Error, Result};
use serde::{Deserialize, Serialize};

pub(crate) use cors::cors;
pub(crate) use guard::{guard, OPEN_PATHS};
pub use token::{NewToken, TOKEN_PREFIX};

/// What a token may do on a database; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every read: records, changes, revs-diff, revs/get, events, chain, knowledge and resume points,
    /// quicksync files.
    Read,
    /// Read, plus record writes, bulk, revs/put and knowledge (replicating into the database).
    Write,
    /// Write, plus creating and deleting the database, its tables, and server-run jobs whose local
    /// ends are this database.
    Admin,
}

impl Role {
    /// `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Role> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(Error::invalid(format!("unknown role {other:?}: expected read, write or admin"))),
        }
    }
}

/// The key of [`TokenConfig::roles`] that stands for every database.
pub const EVERY_DATABASE: &str = "*";

/// One `[[tokens]]` entry of the server config: a name for logs and messages, the hash of the secret
/// (never the secret), and a role per database name or `*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token (shown in messages and logs; not secret).
    pub name: String,
    /// `blake3:<64 hex digits>`, as `outpost token new` prints it.
    pub hash: String,
    /// A role per database name, or `*` for every database.
    pub roles: BTreeMap<String, Role>,
}

/// A token the server accepts.
#[derive(Debug)]
pub struct Token {
    name: String,
    hash: blake3::Hash,
    roles: BTreeMap<String, Role>,
}

impl Token {
    /// The token of a config entry; InvalidInput naming what is wrong.
    pub fn from_config(config: &TokenConfig) -> Result<Token> {
        let name = config.name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(Error::invalid(format!("token name {:?}: 1 to 100 characters, no control characters", name)));
        }
        let hash = token::parse_hash(&config.hash).map_err(|e| e.context(format!("token {name:?}: hash")))?;
        if config.roles.is_empty() {
            return Err(Error::invalid(format!(
                "token {name:?}: roles is empty; give at least one, e.g. {{ \"*\" = \"read\" }}"
            )));
        }
        for db in config.roles.keys() {
            if db != EVERY_DATABASE {
                outpost_api::names::validate_db_name(db).map_err(|e| {
                    e.context(format!("token {name:?}: roles: {db:?} is neither \"*\" nor a database name"))
                })?;
            }
        }
        Ok(Token { name: name.to_owned(), hash, roles: config.roles.clone() })
    }

    /// The token's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token's role on database `db`: its own entry or the `*` one, whichever is stronger.
    pub fn role_on(&self, db: &str) -> Option<Role> {
        self.roles.get(db).copied().max(self.roles.get(EVERY_DATABASE).copied())
    }
}

/// The access policy of a server: its tokens (none: open to loopback callers only) and the browser
/// origins it accepts requests from.
#[derive(Clone, Debug, Default)]
pub struct Access {
    tokens: Arc<[Arc<Token>]>,
    origins: Arc<[HeaderValue]>,
}

impl Access {
    /// No tokens and no origins: loopback callers may do everything; browsers on other origins nothing.
    pub fn open() -> Self {
        Access::default()
    }

    /// Requests need one of `tokens`. InvalidInput for a bad entry, or two entries with one secret.
    pub fn with_tokens(self, tokens: &[TokenConfig]) -> Result<Self> {
        let tokens: Vec<Arc<Token>> =
            tokens.iter().map(|t| Token::from_config(t).map(Arc::new)).collect::<Result<_>>()?;
        for (i, a) in tokens.iter().enumerate() {
            if let Some(b) = tokens[..i].iter().find(|b| b.hash == a.hash) {
                return Err(Error::invalid(format!("tokens {:?} and {:?} have the same hash", b.name, a.name)));
            }
        }
        Ok(Access { tokens: tokens.into(), ..self })
    }

    /// Browsers on these origins (`https://app.example`) may call the server (CORS, with credentials).
    /// InvalidInput for an origin that is not `scheme://host[:port]`.
    pub fn with_origins(self, origins: &[String]) -> Result<Self> {
        let origins = origins.iter().map(|o| guard::parse_origin(o)).collect::<Result<Vec<_>>>()?;
        Ok(Access { origins: origins.into(), ..self })
    }

    /// Whether requests need a token.
    pub fn requires_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The origins browsers may call from.
    pub fn origins(&self) -> &[HeaderValue] {
        &self.origins
    }

    /// The token whose secret is `secret`, comparing hashes in constant time (every token is compared,
    /// so the time taken does not depend on which one matches, if any).
    fn token(&self, secret: &str) -> Option<Arc<Token>> {
        let hash = token::hash(secret);
        let mut found = None;
        for token in self.tokens.iter() {
            // `blake3::Hash`'s equality is constant-time.
            if token.hash == hash {
                found = Some(token.clone());
            }
        }
        found
    }
}

/// Who makes a request, as the guard established it (a request extension).
#[derive(Clone, Debug)]
pub enum Caller {
    /// A server without tokens: a loopback caller, who may do everything.
    Local,
    /// The holder of a configured token.
    Token(Arc<Token>),
}

impl Caller {
    /// The caller's role on database `db`, if any.
    pub fn role_on(&self, db: &str) -> Option<Role> {
        match self {
            Caller::Local => Some(Role::Admin),
            Caller::Token(token) => token.role_on(db),
        }
    }

    /// Whether the caller may see database `db` at all.
    pub fn sees(&self, db: &str) -> bool {
        self.role_on(db).is_some()
    }

    /// Ok when the caller has `need` on `db`. A database the caller has no role on is NotFound with
    /// the words storage uses for a missing one (so a token learns nothing of databases it may not
    /// see); a weaker role is Forbidden, naming both.
    pub fn require(&self, db: &str, need: Role) -> Result<()> {
        match (self, self.role_on(db)) {
            (_, Some(role)) if role >= need => Ok(()),
            (_, None) => Err(Error::not_found(format!("database {db:?} does not exist"))),
            (Caller::Token(token), Some(role)) => Err(Error::forbidden(format!(
                "token {:?} has {role} on database {db:?}; this needs {need}",
                token.name
            ))),
            (Caller::Local, Some(_)) => Ok(()),
        }
    }

    /// Ok when the caller has `need` on every database (`*`): for calls that are not about one database.
    pub fn require_everywhere(&self, need: Role) -> Result<()> {
        match self {
            Caller::Local => Ok(()),
            Caller::Token(token) => match token.roles.get(EVERY_DATABASE) {
                Some(role) if *role >= need => Ok(()),
                _ => Err(Error::forbidden(format!(
                    "token {:?} lacks {need} on every database (\"*\"), which this needs",
                    token.name
                ))),
            },
        }
    }

    /// The token's name, for logs (`-` for a local caller).
    pub fn name(&self) -> &str {
        match self {
            Caller::Local => "-",
            Caller::Token(token) => &token.name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, secret: &str, roles: &[(&str, Role)]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            hash: token::hash_text(secret),
            roles: roles.iter().map(|(db, r)| ((*db).to_owned(), *r)).collect(),
        }
    }

    #[test]
    fn a_role_is_the_stronger_of_the_database_entry_and_star() {
        let access = Access::open()
            .with_tokens(&[config("a", "s1", &[("field", Role::Write), ("*", Role::Read)])])
            .expect("valid");
        let caller = Caller::Token(access.token("s1").expect("known"));
        assert_eq!(caller.role_on("field"), Some(Role::Write));
        assert_eq!(caller.role_on("other"), Some(Role::Read));
        assert!(caller.require("field", Role::Write).is_ok());
        let e = caller.require("field", Role::Admin).unwrap_err();
        assert_eq!(e.kind, outpost_api::ErrorKind::Forbidden);
        assert!(e.message.contains("\"a\" has write on database \"field\"; this needs admin"), "{e}");
        assert!(caller.require_everywhere(Role::Read).is_ok());
        assert_eq!(caller.require_everywhere(Role::Admin).unwrap_err().kind, outpost_api::ErrorKind::Forbidden);
        assert!(access.token("s2").is_none());
        assert!(access.token("").is_none());
    }

    #[test]
    fn a_database_without_a_role_looks_absent() {
        let access = Access::open().with_tokens(&[config("a", "s1", &[("field", Role::Read)])]).expect("valid");
        let caller = Caller::Token(access.token("s1").expect("known"));
        let e = caller.require("secret", Role::Read).unwrap_err();
        assert_eq!(e.kind, outpost_api::ErrorKind::NotFound);
        assert_eq!(e.message, "database \"secret\" does not exist");
        assert!(!caller.sees("secret") && caller.sees("field"));
    }

    #[test]
    fn bad_token_entries_are_refused_saying_why() {
        let cases = [
            (config("", "s", &[("*", Role::Read)]), "token name"),
            (TokenConfig { hash: "md5:00".into(), ..config("a", "s", &[("*", Role::Read)]) }, "hash"),
            (config("a", "s", &[]), "roles is empty"),
            (config("a", "s", &[("../x", Role::Read)]), "neither \"*\" nor a database name"),
        ];
        for (entry, why) in cases {
            let e = Access::open().with_tokens(&[entry]).expect_err(why);
            assert!(e.message.contains(why), "{why}: {e}");
        }
        let twice = [config("a", "s", &[("*", Role::Read)]), config("b", "s", &[("*", Role::Read)])];
        assert!(Access::open().with_tokens(&twice).unwrap_err().message.contains("same hash"));
    }

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        for role in [Role::Read, Role::Write, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("owner".parse::<Role>().is_err());
    }
}
