//! What a replication job does: its definition (what a client posts, and what the jobs file keeps for
//! continuous jobs), and the two ends it names — a database this server hosts, or a URL of another.

use outpost_api::{names, Error, Result};
use outpost_client::Locator;
use serde::{Deserialize, Serialize};

/// Revisions per batch when the request names none (the reconciler's default).
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// A job's definition. Validated by [`JobSpec::endpoints`] before a job starts, whether it comes
/// from a request or from the jobs file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobSpec {
    /// The job's id (a UUID v7: ids sort by creation time).
    pub id: String,
    /// A database name of this server, or `http(s)://host:port/dbs/NAME`.
    pub source: String,
    /// A database name of this server, or `http(s)://host:port/dbs/NAME`.
    pub target: String,
    /// Follow the source until cancelled.
    #[serde(default)]
    pub continuous: bool,
    /// Also replicate target → source.
    #[serde(default)]
    pub bidirectional: bool,
    /// Only these tables; all when `None`.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Changes per page and most revisions per write.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Create the target when it does not exist (each time the job starts).
    #[serde(default)]
    pub create_target: bool,
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

/// One end of a replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A database this server hosts.
    Local(String),
    /// A database of another server.
    Remote(Locator),
}

impl Endpoint {
    /// `text` as a local database name, or as a URL when it has a scheme. InvalidInput says which end
    /// (`role`) is wrong and why.
    pub fn parse(text: &str, role: &str) -> Result<Endpoint> {
        if text.contains("://") {
            Locator::parse(text).map(Endpoint::Remote).map_err(|e| e.context(role))
        } else {
            names::validate_db_name(text).map_err(|e| {
                e.context(format!(
                    "{role}: expected a database name of this server or an http(s)://host:port/dbs/NAME URL"
                ))
            })?;
            Ok(Endpoint::Local(text.to_owned()))
        }
    }
}

impl JobSpec {
    /// The checked ends of the job; InvalidInput for bad names, URLs, tables or batch size.
    pub fn endpoints(&self) -> Result<(Endpoint, Endpoint)> {
        let source = Endpoint::parse(&self.source, "source")?;
        let target = Endpoint::parse(&self.target, "target")?;
        if source == target {
            return Err(Error::invalid(format!("source and target are the same database ({})", self.source)));
        }
        if let Some(tables) = &self.tables {
            if tables.is_empty() {
                return Err(Error::invalid("tables: name at least one table, or leave tables out for all"));
            }
            for table in tables {
                names::validate_table_name(table).map_err(|e| e.context("tables"))?;
            }
        }
        outpost_api::check_page(self.batch_size as u64, "batch_size")?;
        Ok((source, target))
    }
}

#[cfg(test)]
mod tests {
    use outpost_api::ErrorKind;

    use super::*;

    fn spec(source: &str, target: &str) -> JobSpec {
        JobSpec {
            id: "j".into(),
            source: source.into(),
            target: target.into(),
            continuous: false,
            bidirectional: false,
            tables: None,
            batch_size: DEFAULT_BATCH_SIZE,
            create_target: false,
        }
    }

    #[test]
    fn ends_are_local_names_or_database_urls() {
        let (source, target) = spec("a", "http://127.0.0.1:7070/dbs/b").endpoints().expect("valid");
        assert_eq!(source, Endpoint::Local("a".into()));
        assert_eq!(target, Endpoint::Remote(Locator { base: "http://127.0.0.1:7070".into(), name: "b".into() }));
    }

    #[test]
    fn bad_definitions_are_invalid_input_saying_what_is_wrong() {
        let cases = [
            (spec("A", "b"), "source: expected a database name"),
            (spec("a", "../b"), "target: expected a database name"),
            (spec("ftp://h/dbs/a", "b"), "source: invalid URL"),
            (spec("a", "http://h:1/x"), "target: invalid database URL"),
            (spec("a", "a"), "the same database"),
            (spec("http://h:1/dbs/a", "http://h:1/dbs/a/"), "the same database"),
            (JobSpec { tables: Some(vec![]), ..spec("a", "b") }, "at least one table"),
            (JobSpec { tables: Some(vec!["_tables".into()]), ..spec("a", "b") }, "tables: table name"),
            (JobSpec { batch_size: 0, ..spec("a", "b") }, "batch_size"),
            (JobSpec { batch_size: 10_001, ..spec("a", "b") }, "batch_size"),
        ];
        for (spec, reason) in cases {
            let e = spec.endpoints().expect_err(reason);
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{reason}");
            assert!(e.message.contains(reason), "{reason}: {e}");
        }
    }
}
