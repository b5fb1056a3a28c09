//! Response lists several routes share, for their OpenAPI annotations: `responses((status = 200,
//! ...), OfDatabase)` instead of the same tuples written again in every handler. The enums are only
//! described, never built.
#![allow(dead_code)]

use outpost_api::Error;
use utoipa::IntoResponses;

/// A route of one database, which may not exist.
#[derive(IntoResponses)]
pub enum OfDatabase {
    /// No such database.
    #[response(status = 404, description = "No such database")]
    NotFound(Error),
}

/// A route of one table, which (or whose database) may not exist.
#[derive(IntoResponses)]
pub enum OfTable {
    /// No such database or table.
    #[response(status = 404, description = "No such database or table")]
    NotFound(Error),
}

/// A route taking a JSON body.
#[derive(IntoResponses)]
pub enum InvalidBody {
    /// The body does not parse or breaks a rule.
    #[response(status = 400, description = "Invalid body")]
    Invalid(Error),
}

/// A route with query parameters.
#[derive(IntoResponses)]
pub enum InvalidParameter {
    /// A parameter does not parse or is out of range.
    #[response(status = 400, description = "Invalid parameter")]
    Invalid(Error),
}

/// A local write of a record (`PUT`, `POST`, `DELETE` of a record).
#[derive(IntoResponses)]
pub enum RecordWrite {
    /// The body, id or attributes break a rule.
    #[response(status = 400, description = "Invalid body, id or attributes")]
    Invalid(Error),
    /// No such database or table.
    #[response(status = 404, description = "No such database or table")]
    NotFound(Error),
    /// The write names a revision that is not a current leaf.
    #[response(status = 409, description = "The named revision is not a current leaf")]
    Conflict(Error),
    /// The body is over the limit.
    #[response(status = 413, description = "Body over the limit")]
    TooLarge(Error),
}
