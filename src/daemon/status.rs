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

/// A key whose last pass failed (a provider whose cloud is down, a build that failed, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failing {
    /// `config`, `images` or `provider:<name>`.
    pub key: String,
    /// The last pass's error.
    pub error: String,
    /// Passes failed in a row.
    pub consecutive_failures: u32,
    /// When the first of them finished.
    pub since: DateTime<Utc>,
    /// When the last success finished (`None`: none since the daemon started).
    pub last_success: Option<DateTime<Utc>>,
}

/// How a key's passes have been going.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub last_success: Option<DateTime<Utc>>,
    /// Set while the last pass failed.
    pub failing: Option<Failing>,
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
    /// Each key's successes and failures.
    pub outcomes: BTreeMap<String, Outcomes>,
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

    /// Record the end of a pass of `key`: `Err` with its error text.
    pub fn finished(&mut self, key: &str, result: Result<(), String>, at: DateTime<Utc>) {
        self.finished_once.insert(key.to_owned());
        let o = self.outcomes.entry(key.to_owned()).or_default();
        match result {
            Ok(()) => {
                o.last_success = Some(at);
                o.failing = None;
            }
            Err(error) => {
                let (consecutive_failures, since) = match &o.failing {
                    Some(f) => (f.consecutive_failures.saturating_add(1), f.since),
                    None => (1, at),
                };
                o.failing = Some(Failing {
                    key: key.to_owned(),
                    error,
                    consecutive_failures,
                    since,
                    last_success: o.last_success,
                });
            }
        }
    }

    /// The keys whose last pass failed, by key.
    pub fn failing(&self) -> Vec<Failing> {
        self.outcomes
            .values()
            .filter_map(|o| o.failing.clone())
            .collect()
    }

    /// Forget a key that is no longer scheduled (a provider removed from the config).
    pub fn forget(&mut self, key: &str) {
        self.outcomes.remove(key);
        self.passes.remove(key);
        self.finished_once.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_in_a_row_and_cleared_by_a_success() {
        let mut book = StatusBook::default();
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        book.finished("provider:east", Ok(()), t(10));
        assert!(book.failing().is_empty());
        book.finished("provider:east", Err("cloud down".into()), t(20));
        book.finished("provider:east", Err("still down".into()), t(30));
        book.finished("provider:west", Ok(()), t(30));
        let failing = book.failing();
        assert_eq!(failing.len(), 1);
        let f = &failing[0];
        assert_eq!(f.key, "provider:east");
        assert_eq!(f.error, "still down");
        assert_eq!(f.consecutive_failures, 2);
        assert_eq!(f.since, t(20));
        assert_eq!(f.last_success, Some(t(10)));
        book.finished("provider:east", Ok(()), t(40));
        assert!(book.failing().is_empty());
        assert!(book.finished_once.contains("provider:east"));
        book.forget("provider:east");
        assert!(!book.finished_once.contains("provider:east"));
    }
}
