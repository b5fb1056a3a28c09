//! Table definitions. A table definition is itself a record of the reserved table `_tables`
//! (id = table name), so it replicates like data; [`TableDef::to_attributes`] and
//! [`TableDef::from_record`] are that mapping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Attributes, Error, RevId, Timestamp, Value, ValueType};

/// How the reconciled state of a record is computed from its revision tree (SPEC §4.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ReconcilePolicy {
    /// The winner's body; conflicts kept and queryable.
    #[default]
    KeepConflicts,
    /// Field-level three-way merge of the non-deleted leaves against their common ancestor.
    MergeFields,
}

impl ReconcilePolicy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcilePolicy::KeepConflicts => "keep-conflicts",
            ReconcilePolicy::MergeFields => "merge-fields",
        }
    }
}

impl std::str::FromStr for ReconcilePolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "keep-conflicts" => Ok(ReconcilePolicy::KeepConflicts),
            "merge-fields" => Ok(ReconcilePolicy::MergeFields),
            _ => {
                Err(Error::invalid(format!("unknown reconcile policy {s:?}: expected keep-conflicts or merge-fields")))
            }
        }
    }
}

/// A declared field: checked on local writes (not on replicated ones, which are history).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldDecl {
    /// The value type the field must have (null is always allowed for a field that is not required).
    #[serde(rename = "type")]
    pub ty: ValueType,
    /// Whether every record must carry the field.
    #[serde(default)]
    pub required: bool,
}

/// A table definition as read back.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableDef {
    /// The table name.
    pub name: String,
    /// The revision of the definition record in `_tables`.
    pub rev: RevId,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// When the table was created.
    pub created_at: Timestamp,
    /// Who created it (free text, e.g. a user or peer name).
    #[serde(default)]
    pub created_by: String,
    /// How records are reconciled.
    #[serde(default)]
    pub policy: ReconcilePolicy,
    /// Declared fields, checked on local writes.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldDecl>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Attributes,
    /// Generations of bodies kept below every leaf when the server compacts the table on its schedule
    /// (SPEC §4.5); `None` (the default) keeps every body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub keep_bodies: Option<u64>,
    /// Whether CouchDB-protocol peers (PouchDB) may replicate the table (SPEC §17), whose revisions
    /// may then be foreign (§3); such a table uses `keep-conflicts`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub couch: bool,
}

/// What to create a table with.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTable {
    /// The table name (`^[a-z][a-z0-9_]{0,62}$`). Over HTTP the path names the table and this may be
    /// left out.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Who creates it.
    #[serde(default)]
    pub created_by: String,
    /// How records are reconciled.
    #[serde(default)]
    pub policy: ReconcilePolicy,
    /// Declared fields.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldDecl>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Attributes,
    /// Generations of bodies to keep below every leaf when the server compacts on its schedule;
    /// absent keeps every body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub keep_bodies: Option<u64>,
    /// Open the table to CouchDB-protocol peers (SPEC §17); needs `keep-conflicts`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub couch: bool,
}

/// A change to a table definition; a field left out keeps the current value.
// The OpenAPI document leaves `null` out of the fields' schemas, though it means the same: a `oneOf`
// of `null` and a pattern or a reference is what Schemathesis cannot negate.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TableUpdate {
    /// The definition revision the update is based on (stale → Conflict); `None` = the current one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub rev: Option<RevId>,
    /// New description.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub description: Option<String>,
    /// New policy.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub policy: Option<ReconcilePolicy>,
    /// New field declarations (replacing all).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub fields: Option<BTreeMap<String, FieldDecl>>,
    /// New metadata (replacing all).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub metadata: Option<Attributes>,
    /// New `keep_bodies`: a number of generations, or `null` to keep every body again; absent leaves
    /// it as it is.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub keep_bodies: Option<Option<u64>>,
    /// Open the table to CouchDB-protocol peers, or close it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub couch: Option<bool>,
}

/// A field that is present (`null` included) as `Some`, so that an absent one (`None`, the default)
/// differs from `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl TableDef {
    /// The body of the table's `_tables` record.
    pub fn to_attributes(&self) -> Attributes {
        let fields = self
            .fields
            .iter()
            .map(|(name, decl)| {
                let decl = BTreeMap::from([
                    ("type".to_owned(), Value::string(decl.ty.as_str())),
                    ("required".to_owned(), Value::Bool(decl.required)),
                ]);
                (name.clone(), Value::Map(decl))
            })
            .collect();
        let body = Attributes::new()
            .with("description", Value::string(self.description.clone()))
            .with("created_at", Value::Timestamp(self.created_at))
            .with("created_by", Value::string(self.created_by.clone()))
            .with("policy", Value::string(self.policy.as_str()))
            .with("fields", Value::Map(fields))
            .with("metadata", Value::Map(self.metadata.0.clone()));
        // Left out when not set, so that definitions made before they existed keep their bodies (and ids).
        let body = match self.keep_bodies {
            Some(n) => body.with("keep_bodies", Value::Int(i64::try_from(n).unwrap_or(i64::MAX))),
            None => body,
        };
        if self.couch {
            body.with("couch", Value::Bool(true))
        } else {
            body
        }
    }

    /// Read a definition from its `_tables` record (id = name). Fails with InvalidInput when the
    /// body is not a table definition.
    pub fn from_record(name: &str, rev: RevId, body: &Attributes) -> Result<TableDef, Error> {
        let bad = |what: &str| Error::invalid(format!("table definition {name:?}: {what}"));
        let text = |key: &str| match body.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(&format!("{key} must be a string"))),
        };
        let created_at = match body.get("created_at") {
            Some(Value::Timestamp(t)) => *t,
            _ => return Err(bad("created_at must be a timestamp")),
        };
        let policy = match body.get("policy") {
            None => ReconcilePolicy::default(),
            Some(Value::String(s)) => s.parse()?,
            Some(_) => return Err(bad("policy must be a string")),
        };
        let mut fields = BTreeMap::new();
        match body.get("fields") {
            None => {}
            Some(Value::Map(m)) => {
                for (field, decl) in m {
                    let Value::Map(decl) = decl else { return Err(bad("a field declaration must be a map")) };
                    let ty = match decl.get("type") {
                        Some(Value::String(t)) => serde_json::from_value(serde_json::Value::String(t.clone()))
                            .map_err(|_| bad(&format!("field {field:?} has unknown type {t:?}")))?,
                        _ => return Err(bad(&format!("field {field:?} has no type"))),
                    };
                    let required = matches!(decl.get("required"), Some(Value::Bool(true)));
                    fields.insert(field.clone(), FieldDecl { ty, required });
                }
            }
            Some(_) => return Err(bad("fields must be a map")),
        }
        let metadata = match body.get("metadata") {
            None => Attributes::new(),
            Some(Value::Map(m)) => Attributes(m.clone()),
            Some(_) => return Err(bad("metadata must be a map")),
        };
        let keep_bodies = match body.get("keep_bodies") {
            None => None,
            Some(Value::Int(n)) => Some(u64::try_from(*n).map_err(|_| bad("keep_bodies must not be negative"))?),
            Some(_) => return Err(bad("keep_bodies must be an integer")),
        };
        let couch = match body.get("couch") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("couch must be a boolean")),
        };
        if couch && policy != ReconcilePolicy::KeepConflicts {
            return Err(bad("a table open to CouchDB-protocol peers (couch) uses keep-conflicts"));
        }
        Ok(TableDef {
            name: name.to_owned(),
            rev,
            description: text("description")?,
            created_at,
            created_by: text("created_by")?,
            policy,
            fields,
            metadata,
            keep_bodies,
            couch,
        })
    }

    /// Check attributes against the field declarations (local writes only).
    pub fn check_fields(&self, attributes: &Attributes) -> Result<(), Error> {
        for (name, decl) in &self.fields {
            match attributes.get(name) {
                None if decl.required => {
                    return Err(Error::invalid(format!("table {:?} requires field {name:?}", self.name)))
                }
                None | Some(Value::Null) if !decl.required => {}
                Some(v) if v.value_type() != decl.ty => {
                    return Err(Error::invalid(format!(
                        "field {name:?} of table {:?} must be {}, not {}",
                        self.name,
                        decl.ty,
                        v.value_type()
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_round_trips_through_its_record() {
        let def = TableDef {
            name: "orders".into(),
            rev: "1-00000000000000000000000000000000".parse().unwrap(),
            description: "what was ordered".into(),
            created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            created_by: "ann".into(),
            policy: ReconcilePolicy::MergeFields,
            fields: BTreeMap::from([("qty".into(), FieldDecl { ty: ValueType::Int, required: true })]),
            metadata: Attributes::new().with("owner", Value::string("ops")),
            keep_bodies: Some(3),
            couch: false,
        };
        let back = TableDef::from_record("orders", def.rev, &def.to_attributes()).unwrap();
        assert_eq!(back, def);
    }

    #[test]
    fn field_declarations_are_checked() {
        let def = TableDef {
            name: "t".into(),
            rev: "1-00000000000000000000000000000000".parse().unwrap(),
            description: String::new(),
            created_at: Timestamp::now(),
            created_by: String::new(),
            policy: ReconcilePolicy::KeepConflicts,
            fields: BTreeMap::from([
                ("qty".into(), FieldDecl { ty: ValueType::Int, required: true }),
                ("note".into(), FieldDecl { ty: ValueType::String, required: false }),
            ]),
            metadata: Attributes::new(),
            keep_bodies: None,
            couch: false,
        };
        def.check_fields(&Attributes::new().with("qty", Value::Int(1))).unwrap();
        def.check_fields(&Attributes::new().with("qty", Value::Int(1)).with("note", Value::Null)).unwrap();
        assert!(def.check_fields(&Attributes::new()).is_err());
        assert!(def.check_fields(&Attributes::new().with("qty", Value::string("1"))).is_err());
        assert!(def.check_fields(&Attributes::new().with("qty", Value::Int(1)).with("note", Value::Int(2))).is_err());
    }

    #[test]
    fn keep_bodies_is_in_a_definition_only_when_set() {
        let mut def = TableDef::from_record(
            "t",
            "1-00000000000000000000000000000000".parse().unwrap(),
            &Attributes::new().with("created_at", Value::Timestamp(Timestamp::now())),
        )
        .unwrap();
        assert_eq!(def.keep_bodies, None);
        assert!(def.to_attributes().get("keep_bodies").is_none(), "older definitions keep their bodies and ids");
        def.keep_bodies = Some(0);
        assert_eq!(def.to_attributes().get("keep_bodies"), Some(&Value::Int(0)));
        let bad = def.to_attributes().with("keep_bodies", Value::Int(-1));
        assert!(TableDef::from_record("t", def.rev, &bad).is_err());
    }

    #[test]
    fn an_update_tells_null_keep_bodies_from_an_absent_one() {
        let parse = |json: &str| serde_json::from_str::<TableUpdate>(json).unwrap().keep_bodies;
        assert_eq!(parse("{}"), None);
        assert_eq!(parse(r#"{"keep_bodies": null}"#), Some(None));
        assert_eq!(parse(r#"{"keep_bodies": 5}"#), Some(Some(5)));
        assert!(serde_json::from_str::<TableUpdate>(r#"{"keep_bodies": -5}"#).is_err());
    }

    #[test]
    fn couch_tables_use_keep_conflicts() {
        let rev = "1-00000000000000000000000000000000".parse().unwrap();
        let base = Attributes::new().with("created_at", Value::Timestamp(Timestamp::now()));
        let def = TableDef::from_record("t", rev, &base.clone().with("couch", Value::Bool(true))).unwrap();
        assert!(def.couch);
        assert_eq!(def.to_attributes().get("couch"), Some(&Value::Bool(true)));
        assert!(TableDef::from_record("t", rev, &base).unwrap().to_attributes().get("couch").is_none());
        let merging = base.clone().with("couch", Value::Bool(true)).with("policy", Value::string("merge-fields"));
        assert!(TableDef::from_record("t", rev, &merging).is_err());
        assert!(TableDef::from_record("t", rev, &base.with("couch", Value::string("yes"))).is_err());
    }
}
