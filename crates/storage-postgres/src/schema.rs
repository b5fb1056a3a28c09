//! The layout in PostgreSQL: a registry schema `_outpost` listing the Outpost databases, and one schema
//! per database holding its internal tables (names starting with `_`) and, per user table, the views
//! `<table>` and `<table>_history`. Both kinds of schema are brought up to date by versioned migrations
//! recorded in their own `_migrations` table, under an advisory lock so that several processes starting
//! at once migrate exactly once.
//!
//! Every name that reaches SQL text is validated first (outpost-api's name rules) and then quoted as an
//! identifier or literal; values are always bound parameters.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use outpost_api::{names, Error, Result};

use crate::error;

/// The newest per-database format this build reads and writes.
pub const FORMAT_VERSION: i64 = 4;

/// The registry schema. Database names cannot start with `_`, so it never collides with one.
pub const REGISTRY: &str = "_outpost";

/// Notification channel of committed writes; the payload is `<database> <update_seq>`.
pub const CHANGES_CHANNEL: &str = "outpost_changes";

/// Notification channel of deleted databases; the payload is the database name.
pub const DELETED_CHANNEL: &str = "outpost_deleted";

/// The advisory lock (key: "outpost" in ASCII) held while the registry or a schema is created, migrated
/// or dropped.
pub const DDL_LOCK: i64 = 0x006f_7574_706f_7374;

/// Registry migrations; `{schema}` stands for the quoted registry schema.
const REGISTRY_MIGRATIONS: &[&str] = &[
    // 1: the list of databases and the schema each lives in.
    "CREATE TABLE {schema}.databases (
        name text COLLATE \"C\" PRIMARY KEY,
        schema_name text COLLATE \"C\" NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now())",
];

/// Per-database migrations; `{schema}` stands for the database's quoted schema. `tbl`, `id` and `rev`
/// use the "C" collation so that ids order by their UTF-8 bytes, as on SQLite.
const MIGRATIONS: &[&str] = &[
    // 1: the first format.
    "CREATE TABLE {schema}._meta (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        name text NOT NULL, update_seq bigint NOT NULL, chain bytea NOT NULL);
     CREATE TABLE {schema}._epochs (
        position integer PRIMARY KEY, uuid uuid NOT NULL UNIQUE, start_seq bigint NOT NULL);
     CREATE TABLE {schema}._revisions (
        tbl text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT NULL, rev text COLLATE \"C\" NOT NULL,
        parent text, deleted boolean NOT NULL, body text, seq bigint, chain bytea,
        PRIMARY KEY (tbl, id, rev));
     CREATE UNIQUE INDEX _revisions_seq ON {schema}._revisions (seq) WHERE seq IS NOT NULL;
     CREATE TABLE {schema}._records (
        tbl text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT NULL, rev text NOT NULL,
        deleted boolean NOT NULL, body text NOT NULL, leaves text[] NOT NULL, conflicts text[] NOT NULL,
        field_conflicts text NOT NULL, seq bigint NOT NULL,
        PRIMARY KEY (tbl, id));
     CREATE UNIQUE INDEX _records_seq ON {schema}._records (seq);
     CREATE TABLE {schema}._knowledge (
        peer uuid NOT NULL, peer_seq bigint NOT NULL, peer_chain bytea NOT NULL, local_seq bigint NOT NULL,
        via uuid, PRIMARY KEY (peer, peer_seq));
     CREATE INDEX _knowledge_local_seq ON {schema}._knowledge (local_seq);
     CREATE TABLE {schema}._resume (source uuid PRIMARY KEY, source_seq bigint NOT NULL, source_chain bytea NOT NULL);",
    // 2: the live-record count kept with every write, so `info` does not scan the records; NULL until
    // the engine counts, on first open.
    "ALTER TABLE {schema}._meta ADD COLUMN record_count bigint;",
    // 3: each body stored once, events keyed by seq, stubs apart (as SQLite's format 3): `_events`
    // one row per revision event with the revision's body, the only copy of it; `_stubs` the
    // revisions known only by id; a live state's `body` NULL when it is its winner's own. The views
    // read the old tables: they are dropped before and made again after (`migrate_database`).
    "CREATE TABLE {schema}._events (
        seq bigint PRIMARY KEY, tbl text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT NULL,
        rev text COLLATE \"C\" NOT NULL, parent text, deleted boolean NOT NULL, body text, chain bytea NOT NULL);
     INSERT INTO {schema}._events (seq, tbl, id, rev, parent, deleted, body, chain)
        SELECT seq, tbl, id, rev, parent, deleted, body, chain FROM {schema}._revisions WHERE seq IS NOT NULL
        ORDER BY seq;
     CREATE UNIQUE INDEX _events_key ON {schema}._events (tbl, id, rev);
     CREATE TABLE {schema}._stubs (
        tbl text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT NULL, rev text COLLATE \"C\" NOT NULL,
        parent text, PRIMARY KEY (tbl, id, rev));
     INSERT INTO {schema}._stubs (tbl, id, rev, parent)
        SELECT tbl, id, rev, parent FROM {schema}._revisions WHERE seq IS NULL;
     ALTER TABLE {schema}._records ALTER COLUMN body DROP NOT NULL;
     UPDATE {schema}._records r SET body = NULL FROM {schema}._events e
        WHERE e.tbl = r.tbl AND e.id = r.id AND e.rev = r.rev AND NOT r.deleted AND e.body = r.body;
     DROP TABLE {schema}._revisions;",
    // 4: the class of each revision event (SPEC §3): a foreign revision's 16-byte body digest, NULL
    // for a native one; the events whose revision's body a later event replaced (one body per id),
    // without their bodies; and the local documents of CouchDB-protocol peers (§17), never replicated.
    "ALTER TABLE {schema}._events ADD COLUMN digest bytea;
     CREATE TABLE {schema}._superseded (
        seq bigint PRIMARY KEY, tbl text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT NULL,
        rev text COLLATE \"C\" NOT NULL, parent text, deleted boolean NOT NULL, chain bytea NOT NULL, digest bytea);
     CREATE TABLE {schema}._local (
        tbl text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT NULL, rev bigint NOT NULL, body text NOT NULL,
        PRIMARY KEY (tbl, id));",
];

/// The first format whose views read `_events`: migrating to it from before makes them again.
const EVENTS_FORMAT: i64 = 3;

/// `name` as a quoted SQL identifier (`"name"`, inner quotes doubled).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a quoted SQL string literal (inner quotes doubled; standard_conforming_strings is on
/// since PostgreSQL 9.1, so backslashes are plain characters).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The schema of a database: its name, validated, as a quoted identifier. PostgreSQL reserves schema
/// names beginning `pg_`.
pub fn schema_of(db: &str) -> Result<String> {
    names::validate_db_name(db)?;
    if db.starts_with("pg_") {
        return Err(Error::invalid(format!(
            "database name {db:?} is not available on PostgreSQL: names beginning with 'pg_' are reserved for \
             system schemas"
        )));
    }
    Ok(ident(db))
}

/// The migrations `{version+1..}` of a list, with the schema filled in.
fn pending<'a>(list: &'a [&'a str], version: i64, schema: &'a str) -> impl Iterator<Item = (i64, String)> + 'a {
    list.iter().enumerate().skip(version as usize).map(move |(i, sql)| (i as i64 + 1, sql.replace("{schema}", schema)))
}

/// The applied version of a schema's migrations (0 when the schema or its `_migrations` table is new).
async fn version(client: &impl GenericClient, schema: &str, target: &str) -> Result<i64> {
    let name = schema.trim_matches('"');
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = '_migrations')",
            &[&name],
        )
        .await
        .map_err(|e| error::map(e, target))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(&format!("SELECT coalesce(max(version), 0)::bigint FROM {schema}._migrations"), &[])
        .await
        .map_err(|e| error::map(e, target))?;
    Ok(row.get(0))
}

/// Apply a schema's pending migrations. The caller holds [`DDL_LOCK`] in an open transaction, which
/// commits them all or none.
async fn apply(client: &impl GenericClient, schema: &str, list: &[&str], what: &str, target: &str) -> Result<()> {
    let current = version(client, schema, target).await?;
    if current > list.len() as i64 {
        return Err(Error::invalid(format!(
            "{what} has format version {current}, newer than this outpost reads ({}); upgrade outpost to open it",
            list.len()
        )));
    }
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}._migrations (
                version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(|e| error::map(e, target))?;
    for (version, sql) in pending(list, current, schema) {
        client.batch_execute(&sql).await.map_err(|e| error::map(e, target).context(format!("migrating {what}")))?;
        client
            .execute(&format!("INSERT INTO {schema}._migrations (version) VALUES ($1)"), &[&(version as i32)])
            .await
            .map_err(|e| error::map(e, target))?;
    }
    Ok(())
}

/// Take the DDL lock for the rest of the transaction.
pub async fn lock_ddl(client: &impl GenericClient, target: &str) -> Result<()> {
    client.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK]).await.map_err(|e| error::map(e, target))?;
    Ok(())
}

/// Bring a database's schema to [`FORMAT_VERSION`] inside the caller's transaction (which holds the
/// DDL lock); fails clearly on a newer format.
pub async fn migrate_database(client: &impl GenericClient, db: &str, target: &str) -> Result<()> {
    let schema = schema_of(db)?;
    let from = version(client, &schema, target).await?;
    let views = if from > 0 && from < EVENTS_FORMAT { drop_views(client, db, target).await? } else { Vec::new() };
    apply(client, &schema, MIGRATIONS, &format!("database {db:?}"), target).await?;
    for table in views {
        ensure_views(client, db, &table, target).await?;
    }
    Ok(())
}

/// Drop the views Outpost made (`<table>` and `<table>_history` of each table ever defined; other
/// views are left), returning the tables whose views they were in the order the tables were first
/// defined: which decides, as when they were made, who has a name two tables could claim. Reads the
/// format-2 `_revisions`.
async fn drop_views(client: &impl GenericClient, db: &str, target: &str) -> Result<Vec<String>> {
    let schema = schema_of(db)?;
    let views: HashSet<String> = client
        .query("SELECT viewname::text FROM pg_catalog.pg_views WHERE schemaname = $1", &[&db])
        .await
        .map_err(|e| error::map(e, target))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let tables: Vec<String> = client
        .query(
            &format!(
                "SELECT id FROM {schema}._revisions WHERE tbl = $1 AND seq IS NOT NULL GROUP BY id ORDER BY min(seq)"
            ),
            &[&names::TABLES_TABLE],
        )
        .await
        .map_err(|e| error::map(e, target))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut ddl = String::new();
    for table in &tables {
        for view in [table.clone(), format!("{table}_history")] {
            if views.contains(&view) {
                ddl.push_str(&format!("DROP VIEW {schema}.{};", ident(&view)));
            }
        }
    }
    if !ddl.is_empty() {
        client.batch_execute(&ddl).await.map_err(|e| error::map(e, target))?;
    }
    Ok(tables.into_iter().filter(|t| views.contains(t)).collect())
}

/// Whether a database's schema needs migrating (a cheap check made before taking the DDL lock).
pub async fn database_is_current(client: &impl GenericClient, db: &str, target: &str) -> Result<bool> {
    let v = version(client, &schema_of(db)?, target).await?;
    if v > FORMAT_VERSION {
        return Err(Error::invalid(format!(
            "database {db:?} has format version {v}, newer than this outpost reads ({FORMAT_VERSION}); upgrade \
             outpost to open it"
        )));
    }
    Ok(v == FORMAT_VERSION)
}

/// Create or migrate the registry inside the caller's transaction (which holds the DDL lock).
pub async fn migrate_registry(client: &impl GenericClient, target: &str) -> Result<()> {
    apply(client, &ident(REGISTRY), REGISTRY_MIGRATIONS, "the outpost registry", target).await
}

/// Whether the registry is at the newest version this build knows.
pub async fn registry_is_current(client: &impl GenericClient, target: &str) -> Result<bool> {
    Ok(version(client, &ident(REGISTRY), target).await? >= REGISTRY_MIGRATIONS.len() as i64)
}

/// Create the views of a user table in a database's schema: `<table>` (reconciled, live records) and
/// `<table>_history` (every stored revision), with the body as `json`. A view whose name is already taken
/// (by another table's history view) is skipped, as on SQLite. Runs in the write transaction, so a table
/// and its views commit together.
pub async fn ensure_views(client: &impl GenericClient, db: &str, table: &str, target: &str) -> Result<()> {
    names::validate_table_name(table)?;
    let schema = schema_of(db)?;
    let history = format!("{table}_history");
    let taken: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname::text = ANY($2::text[])",
            &[&db, &vec![table.to_owned(), history.clone()]],
        )
        .await
        .map_err(|e| error::map(e, target))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let tbl = literal(table);
    let mut ddl = String::new();
    if !taken.iter().any(|t| t == table) {
        ddl.push_str(&format!(
            "CREATE VIEW {schema}.{} AS SELECT r.id, r.rev, coalesce(r.body, e.body)::json AS attributes, r.seq
             FROM {schema}._records r LEFT JOIN {schema}._events e ON e.tbl = r.tbl AND e.id = r.id AND e.rev = r.rev
             WHERE r.tbl = {tbl} AND NOT r.deleted;",
            ident(table)
        ));
    }
    if !taken.contains(&history) && history.len() <= 63 {
        ddl.push_str(&format!(
            "CREATE VIEW {schema}.{} AS SELECT id, rev, parent, deleted, body::json AS attributes, seq
             FROM {schema}._events WHERE tbl = {tbl}
             UNION ALL SELECT id, rev, parent, false, NULL::json, NULL::bigint FROM {schema}._stubs WHERE tbl = {tbl};",
            ident(&history)
        ));
    }
    if !ddl.is_empty() {
        client.batch_execute(&ddl).await.map_err(|e| error::map(e, target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_validated() {
        assert_eq!(ident("field-a"), "\"field-a\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("o'k"), "'o''k'");
        assert_eq!(schema_of("field-a").unwrap(), "\"field-a\"");
        for bad in ["", "A", "_x", "a\"b", "a;drop", "pg_catalog", "x y"] {
            assert!(schema_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn migrations_fill_in_the_schema() {
        let all: Vec<_> = pending(MIGRATIONS, 0, "\"s\"").collect();
        assert_eq!(all.len() as i64, FORMAT_VERSION);
        assert!(all.iter().all(|(_, sql)| !sql.contains("{schema}") && sql.contains("\"s\"._")));
        assert_eq!(pending(MIGRATIONS, FORMAT_VERSION, "s").count(), 0);
    }
}
