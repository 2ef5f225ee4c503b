//! Following the config repository: where the config comes from, what says it changed, and when to act.
//!
//! The daemon's reconcile loop is built from three pieces that live here:
//!
//! - [`source`]: a [`ConfigSource`] (a local work tree, or a remote URL + branch mirrored into the
//!   data directory) that names each state of the config as a [`Revision`] (`main@1a2b3c4`,
//!   `main@1a2b3c4+dirty.<hash>`, `file@<hash>`) and reads the config, or any file, at it.
//! - [`trigger`]: what says "look again": a poll interval, filesystem events on a local repo's
//!   refs (debounced), and the verifier for GitHub-style push webhooks.
//! - [`scheduler`]: a de-duplicating, per-key scheduler with capped exponential backoff, so each
//!   provider reconciles on its own and one broken cloud never holds up the others.
//!
//! How they fit together (the daemon adds validation, the providers and shutdown):
//!
//! ```no_run
//! use std::time::Duration;
//! use nodepool::watch::{
//!     Action, BackoffPolicy, ConfigSource, Debounce, ReconcileKey, RefWatcher, Scheduler,
//!     SourceSpec, spawn_poll,
//! };
//! use tokio::sync::mpsc;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let source = ConfigSource::open(SourceSpec::local("/srv/nodepool-config"))?;
//! let (tx, mut triggers) = mpsc::channel(8);
//! let _poll = spawn_poll(Duration::from_secs(60), tx.clone());
//! let _refs = RefWatcher::start(source.repo_dir(), Some(source.config_file()), tx, Debounce::default())?;
//!
//! let scheduler = Scheduler::new(BackoffPolicy::default());
//! scheduler.schedule_now(ReconcileKey::Config);
//! let on_trigger = scheduler.clone();
//! tokio::spawn(async move {
//!     while triggers.recv().await.is_some() {
//!         on_trigger.schedule_now(ReconcileKey::Config);
//!     }
//! });
//! scheduler
//!     .run(|key| async move {
//!         match key {
//!             ReconcileKey::Config => { /* fetch, validate, schedule changed providers */ }
//!             ReconcileKey::Provider(_name) => { /* observe, plan, apply one provider */ }
//!         }
//!         Ok::<_, String>(Action::Done)
//!     })
//!     .await;
//! # Ok(())
//! # }
//! ```
//!
//! [`ConfigSource`] is synchronous (libgit2, or the `git` binary for network fetches): async
//! callers run it under `tokio::task::spawn_blocking`. Triggers and the scheduler are tokio
//! tasks and timers.

pub mod scheduler;
pub mod source;
pub mod trigger;

use std::path::PathBuf;

pub use scheduler::{Action, BackoffPolicy, Job, KeyState, KeyStatus, ReconcileKey, Scheduler};
pub use source::{ConfigSource, FetchBackend, RepoUrl, Revision, SourceSpec, describe_path};
pub use trigger::{
    Debounce, MAX_WEBHOOK_BODY_BYTES, RefWatcher, Trigger, accept_webhook, spawn_poll,
    verify_signature,
};

/// Errors from the watch module. Messages name the repository (with any credentials in its URL
/// removed), the branch and the path involved; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{path}: not a git repository (or any parent up to the filesystem root): {message}")]
    NotARepository { path: PathBuf, message: String },

    #[error("{path}: the repository has no commits yet")]
    NoCommits { path: PathBuf },

    #[error("{repo}: branch {branch:?} not found{hint}")]
    BranchNotFound {
        repo: String,
        branch: String,
        hint: String,
    },

    #[error("{repo}: commit {commit} not found (fetch first?)")]
    CommitNotFound { repo: String, commit: String },

    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },

    #[error("{path}: not valid UTF-8 text")]
    NotUtf8 { path: String },

    #[error("{path} not found in revision {revision}")]
    FileNotFound { path: String, revision: String },

    #[error("fetching {url} (branch {branch}) failed: {message}")]
    Fetch {
        url: String,
        branch: String,
        message: String,
    },

    #[error("fetching {url} timed out after {seconds} s")]
    FetchTimeout { url: String, seconds: u64 },

    #[error("invalid source: {0}")]
    InvalidSpec(String),

    #[error(
        "revision {revision} is no longer current (the work tree changed since); read it again"
    )]
    StaleRevision { revision: String },

    #[error("{context}: {message}")]
    Git { context: String, message: String },

    #[error("cannot watch {path}: {message}")]
    Watch { path: PathBuf, message: String },

    #[error("webhook secret is not configured; refusing every delivery")]
    WebhookNotConfigured,

    #[error("webhook body is {size} bytes, over the limit of {limit}")]
    WebhookBodyTooLarge { size: usize, limit: usize },

    #[error("webhook signature header is malformed: {0}")]
    SignatureMalformed(&'static str),

    #[error("webhook signature does not match the body")]
    SignatureMismatch,
}

impl WatchError {
    pub(crate) fn git(context: impl Into<String>, err: git2::Error) -> Self {
        WatchError::Git {
            context: context.into(),
            message: err.message().to_owned(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        WatchError::Io {
            path: path.into(),
            message: err.to_string(),
        }
    }
}
