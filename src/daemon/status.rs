//! What `/status` reports: config revisions (in force, last attempted with its errors, a short history) and the last pass of each key.

use crate::config::Diagnostic;
use crate::reconcile::plan::Summary;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many config attempts the status keeps.
pub const HISTORY_LEN: usize = 20;

/// One problem of an invalid config revision, where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// The key path (`providers[0].pools[0].max-servers`).
    pub path: String,
    pub message: String,
}

impl From<&Diagnostic> for ConfigProblem {
    fn from(d: &Diagnostic) -> Self {
        ConfigProblem {
            file: d.file.display().to_string(),
            line: d.line,
            column: d.column,
            path: d.path.clone(),
            message: d.message.clone(),
        }
    }
}

/// The outcome of loading one config revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadOutcome {
    /// Valid: now in force.
    Ok,
    /// Rejected: the previous revision stays in force.
    Invalid,
}

/// One attempt to load a config revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionAttempt {
    pub revision: String,
    pub outcome: LoadOutcome,
    pub at: DateTime<Utc>,
    /// Errors with file and line (empty when valid).
    #[serde(default)]
    pub errors: Vec<ConfigProblem>,
    /// A problem that has no position (the file is missing or unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The last pass of one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassReport {
    pub at: DateTime<Utc>,
    pub revision: String,
    /// The whole (global) plan's summary.
    pub planned: Summary,
    /// Actions this pass carried out (its share of the plan).
    pub selected: usize,
    pub done: usize,
    /// Failed actions: address and error.
    pub failed: Vec<(String, String)>,
    /// Notes of the plan about this provider (waiting requests, unobservable clouds, …).
    pub notes: Vec<String>,
    /// Why the cloud could not be observed, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// The daemon's memory of what happened, behind `/status`.
#[derive(Debug, Default)]
pub struct StatusBook {
    pub in_force: Option<RevisionAttempt>,
    pub last_attempted: Option<RevisionAttempt>,
    pub history: VecDeque<RevisionAttempt>,
    pub passes: BTreeMap<String, PassReport>,
    /// Keys that have finished at least one pass (for `/ready`).
    pub finished_once: BTreeSet<String>,
}

impl StatusBook {
    pub fn attempted(&mut self, attempt: RevisionAttempt) {
        if attempt.outcome == LoadOutcome::Ok {
            self.in_force = Some(attempt.clone());
        }
        self.last_attempted = Some(attempt.clone());
        self.history.push_front(attempt);
        self.history.truncate(HISTORY_LEN);
    }
}
