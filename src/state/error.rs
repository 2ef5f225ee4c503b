//! Errors of the state store.

use std::path::PathBuf;

use super::age::describe_time;

/// Everything that can go wrong in [`super::Store`]. None of the variants carries a secret:
/// the store never receives one.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database file could not be created, permission-tightened or opened.
    #[error("state database {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// SQLite refused to open or configure the database.
    #[error("state database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The database was written by a newer nodepool whose schema this build does not know.
    #[error(
        "state database {} has schema version {found}, but this nodepool only knows versions up to \
         {supported}; run a newer nodepool (a database is never downgraded)",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// Any other SQLite failure.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// A JSON column could not be encoded.
    #[error("state database: cannot encode JSON column: {0}")]
    Json(#[from] serde_json::Error),

    /// A state machine forbids this change (see `NodeState::can_transition_to` and friends).
    #[error("{kind} {id}: illegal state transition {from} -> {to}")]
    IllegalTransition {
        kind: &'static str,
        id: String,
        from: String,
        to: String,
    },

    /// No row with this id.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },

    /// Another writer holds the lease.
    #[error(
        "the writer lease is held by {holder} since {}; it lapses at {} unless renewed",
        describe_time(*since),
        describe_time(*expires_at)
    )]
    LeaseHeld {
        holder: String,
        /// Unix seconds when the holder acquired it.
        since: i64,
        /// Unix seconds when it lapses unless renewed.
        expires_at: i64,
    },

    /// Our lease expired and was taken by someone else (or released): stop writing.
    #[error("the writer lease of {holder} was lost (expired and taken over, or released)")]
    LeaseLost { holder: String },

    /// An argument the store cannot accept (e.g. an initial node state other than init/building).
    #[error("{0}")]
    Invalid(String),
}

/// A stored or supplied state name that is not one of the known states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct ParseStateError {
    pub kind: &'static str,
    pub value: String,
}
