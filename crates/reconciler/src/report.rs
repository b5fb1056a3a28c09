//! What a replication pass reports (SPEC §7).

use outpost_api::Uuid;
use serde::Serialize;

use crate::Progress;

/// Where a pass began its walk of the source's feed, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Origin {
    /// No verified point: from the beginning (always correct; `revs_diff` keeps it cheap in data).
    Zero,
    /// The target's resume point for this source.
    Resume,
    /// Knowledge the target learned from the source itself at a drained point.
    Direct,
    /// Knowledge the target imported from a third database that had drained the source.
    Transitive,
}

/// A verified start point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartPoint {
    /// The source seq the pass starts after.
    pub seq: u64,
    /// Where it came from.
    pub origin: Origin,
    /// The source epoch the point was recorded under (`None` for zero).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "uuid"))]
    pub epoch: Option<Uuid>,
    /// For transitive knowledge, the database it was learned through.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "uuid"))]
    pub via: Option<Uuid>,
}

impl StartPoint {
    /// The start of everything.
    pub const ZERO: StartPoint = StartPoint { seq: 0, origin: Origin::Zero, epoch: None, via: None };
}

/// The outcome of one replication from a source to a target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// The source's uuid (current epoch) when the pass began.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub source: Uuid,
    /// The target's uuid (current epoch) when the pass began.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub target: Uuid,
    /// Where the (first) pass started.
    pub start: StartPoint,
    /// The source seq the target holds everything up to, as far as this replication went.
    pub end_seq: u64,
    /// Whether the source's feed was drained (knowledge is recorded only then).
    pub drained: bool,
    /// Whether knowledge was recorded in the target.
    pub knowledge_recorded: bool,
    /// Counters.
    #[serde(flatten)]
    pub progress: Progress,
    /// Changes pages read.
    pub pages: u64,
    /// Calls made to source and target.
    pub requests: u64,
    /// Passes restarted after a transient failure.
    pub restarts: u32,
    /// Wall time, in milliseconds.
    pub duration_ms: u64,
    /// Whether the replication stopped because it was cancelled.
    pub cancelled: bool,
    /// Things an operator should know: discarded start points, detected forks, retried failures.
    pub warnings: Vec<String>,
}

impl Report {
    pub(crate) fn new() -> Self {
        Report {
            source: Uuid::nil(),
            target: Uuid::nil(),
            start: StartPoint::ZERO,
            end_seq: 0,
            drained: false,
            knowledge_recorded: false,
            progress: Progress::default(),
            pages: 0,
            requests: 0,
            restarts: 0,
            duration_ms: 0,
            cancelled: false,
            warnings: Vec::new(),
        }
    }
}
