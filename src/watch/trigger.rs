//! What says "look at the config again": a poll interval, debounced filesystem events on a local repository's refs, and push-webhook signatures.
//!
//! Triggers carry no state: whoever receives one re-reads [`super::ConfigSource::current`] (or
//! fetches) and compares revisions. So every sender uses `try_send` and drops a trigger when
//! the channel is full — a trigger already waiting covers it — and a burst never queues up work.
//!
//! Filesystem events: [`RefWatcher`] watches `HEAD`, `packed-refs` and `refs/**` of a local
//! repository (the common directory's refs for a linked worktree) and, for a work tree, the
//! config file, with the platform's native watcher (inotify, FSEvents, …; `notify`). Raw events
//! are filtered (reads and attribute changes are ignored, so our own reads of the repository
//! never trigger us) and debounced by [`Debounce`]: one trigger once the repository has been
//! quiet for `quiet`, and at the latest `max_delay` after the first event of a burst. A
//! `git commit` thus triggers about `quiet` after its last write (measured in
//! `benches/watch_latency.rs`), and ten commits in a row trigger once.
//!
//! The debouncer is our own tokio task rather than `notify-debouncer-mini`: that crate times
//! per path on its own thread with the wall clock and reports a long burst as a series of
//! "continuous" batches, whereas this needs one trigger per burst with a bounded delay, and
//! logic testable under tokio's paused time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::WatchError;
use crate::secret::Secret;

/// The default poll interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Largest webhook body accepted, in bytes. Push payloads are a few KiB to a few hundred KiB
/// (GitHub lists at most 20 commits in one); 1 MiB bounds memory per request with room to spare.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 1 << 20;

/// The header carrying the body's HMAC-SHA256, GitHub's name (Gitea and Forgejo send it too).
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// At most this many changed paths are reported with one trigger (the rest are counted).
const MAX_REPORTED_PATHS: usize = 32;

/// Why the config should be looked at again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The poll interval elapsed.
    Poll,
    /// Refs or the config file of a watched local repository changed. `paths` lists (up to 32
    /// of) the changed files, for the log; `more` counts those left out.
    RepoChanged { paths: Vec<PathBuf>, more: usize },
    /// A push webhook with a valid signature arrived; `git_ref` is the payload's `ref`
    /// (`refs/heads/main`) when it had one.
    Webhook { git_ref: Option<String> },
}

/// Send [`Trigger::Poll`] every `every` (the first after one period), until the receiver is
/// dropped. A tick is skipped, not queued, when the channel is full.
pub fn spawn_poll(every: Duration, tx: mpsc::Sender<Trigger>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !offer(&tx, Trigger::Poll) {
                return;
            }
        }
    })
}

/// Hand a trigger over without waiting. Returns false once the receiver is gone.
fn offer(tx: &mpsc::Sender<Trigger>, trigger: Trigger) -> bool {
    match tx.try_send(trigger) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(dropped)) => {
            tracing::trace!(
                ?dropped,
                "trigger channel full; a pending trigger covers this one"
            );
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// How filesystem events are coalesced: one trigger after `quiet` without events, and no
/// later than `max_delay` after the first event of a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Debounce {
    pub quiet: Duration,
    pub max_delay: Duration,
}

impl Default for Debounce {
    /// 150 ms quiet, 1 s at most: a commit is seen within ~0.2 s, and `git` writes all the
    /// files of one commit (or of a scripted series of commits) well within 150 ms of each other.
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(150),
            max_delay: Duration::from_secs(1),
        }
    }
}

/// Turn a stream of changed paths into debounced [`Trigger::RepoChanged`]s. Ends when either
/// side closes (a burst in progress is still reported if the input closes).
async fn debounce(
    mut raw: mpsc::UnboundedReceiver<PathBuf>,
    tx: mpsc::Sender<Trigger>,
    settings: Debounce,
) {
    while let Some(first) = raw.recv().await {
        let hard_deadline = Instant::now() + settings.max_delay;
        let mut paths = BTreeSet::from([first]);
        let mut more = 0usize;
        let mut input_open = true;
        loop {
            let deadline = (Instant::now() + settings.quiet).min(hard_deadline);
            match tokio::time::timeout_at(deadline, raw.recv()).await {
                Ok(Some(path)) => {
                    if paths.len() < MAX_REPORTED_PATHS {
                        paths.insert(path);
                    } else if !paths.contains(&path) {
                        more += 1;
                    }
                }
                Ok(None) => {
                    input_open = false;
                    break;
                }
                Err(_quiet_or_deadline) => break,
            }
        }
        tracing::debug!(changed = paths.len() + more, "config repository changed");
        if !offer(
            &tx,
            Trigger::RepoChanged {
                paths: paths.into_iter().collect(),
                more,
            },
        ) || !input_open
        {
            return;
        }
    }
}

/// Which files of a repository matter, and the directories to watch to see them change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchPaths {
    /// `(directory, recursive)` pairs handed to the native watcher.
    pub watches: Vec<(PathBuf, bool)>,
    head: PathBuf,
    packed_refs: PathBuf,
    refs_dir: PathBuf,
    config_file: Option<PathBuf>,
}

impl WatchPaths {
    /// The paths of the repository at `repo_dir` (work tree or bare). `config_file`, relative
    /// to the work tree, is watched too when given and the repository has a work tree.
    pub fn for_repo(repo_dir: &Path, config_file: Option<&Path>) -> Result<Self, WatchError> {
        let repo = git2::Repository::open(repo_dir).map_err(|e| WatchError::NotARepository {
            path: repo_dir.to_path_buf(),
            message: e.message().to_owned(),
        })?;
        let canonical = |p: &Path| std::fs::canonicalize(p).map_err(|e| WatchError::io(p, e));
        let git_dir = canonical(repo.path())?;
        let common = canonical(repo.commondir())?;
        let refs_dir = common.join("refs");
        let mut watches = vec![(git_dir.clone(), false), (refs_dir.clone(), true)];
        if common != git_dir {
            watches.push((common.clone(), false));
        }
        let config_file = match (repo.workdir(), config_file) {
            (Some(workdir), Some(rel)) => {
                let path = canonical(workdir)?.join(rel);
                let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
                if parent.is_dir() && !watches.iter().any(|(dir, _)| *dir == parent) {
                    watches.push((parent, false));
                }
                Some(path)
            }
            _ => None,
        };
        Ok(Self {
            watches,
            head: git_dir.join("HEAD"),
            packed_refs: common.join("packed-refs"),
            refs_dir,
            config_file,
        })
    }

    /// True when a change to `path` can change the config's revision.
    pub fn is_relevant(&self, path: &Path) -> bool {
        if path == self.head
            || path == self.packed_refs
            || self.config_file.as_deref() == Some(path)
        {
            return true;
        }
        path.starts_with(&self.refs_dir) && path.extension().is_none_or(|ext| ext != "lock")
    }
}

/// Watches a local repository and sends debounced [`Trigger::RepoChanged`]s. Stops when dropped.
pub struct RefWatcher {
    // Dropping the watcher closes the raw channel, which ends the debounce task.
    _watcher: RecommendedWatcher,
    task: JoinHandle<()>,
    paths: WatchPaths,
}

impl RefWatcher {
    /// Start watching. Must be called inside a tokio runtime. For a remote source, watching the
    /// mirror is pointless (only our own fetches change it): use the poll and the webhook.
    pub fn start(
        repo_dir: &Path,
        config_file: Option<&Path>,
        tx: mpsc::Sender<Trigger>,
        settings: Debounce,
    ) -> Result<Self, WatchError> {
        let paths = WatchPaths::for_repo(repo_dir, config_file)?;
        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        let filter = paths.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    if matches!(
                        event.kind,
                        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))
                    ) {
                        return;
                    }
                    for path in event.paths {
                        if filter.is_relevant(&path) {
                            let _ = raw_tx.send(path);
                        }
                    }
                }
                // E.g. the inotify queue overflowed: something changed, we cannot say what.
                Err(error) => {
                    tracing::warn!(%error, "filesystem watcher error; triggering a check");
                    let _ = raw_tx.send(filter.head.clone());
                }
            })
            .map_err(|e| WatchError::Watch {
                path: repo_dir.to_path_buf(),
                message: e.to_string(),
            })?;
        for (dir, recursive) in &paths.watches {
            let mode = if *recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            watcher.watch(dir, mode).map_err(|e| WatchError::Watch {
                path: dir.clone(),
                message: e.to_string(),
            })?;
        }
        let task = tokio::spawn(debounce(raw_rx, tx, settings));
        Ok(Self {
            _watcher: watcher,
            task,
            paths,
        })
    }

    pub fn paths(&self) -> &WatchPaths {
        &self.paths
    }
}

impl Drop for RefWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Check a webhook body against its `X-Hub-Signature-256` header (`sha256=<64 hex digits>`,
/// the HMAC-SHA256 of the raw body keyed with the shared secret). The comparison is constant
/// time. An empty secret refuses everything, and so does a body over
/// [`MAX_WEBHOOK_BODY_BYTES`]. Errors never contain the secret or the expected signature.
pub fn verify_signature(secret: &Secret, body: &[u8], header: &str) -> Result<(), WatchError> {
    if secret.is_empty() {
        return Err(WatchError::WebhookNotConfigured);
    }
    if body.len() > MAX_WEBHOOK_BODY_BYTES {
        return Err(WatchError::WebhookBodyTooLarge {
            size: body.len(),
            limit: MAX_WEBHOOK_BODY_BYTES,
        });
    }
    let hex_digest =
        header
            .trim()
            .strip_prefix("sha256=")
            .ok_or(WatchError::SignatureMalformed(
                "expected \"sha256=\" followed by 64 hex digits",
            ))?;
    if hex_digest.len() != 64 {
        return Err(WatchError::SignatureMalformed(
            "the digest must be 64 hex digits",
        ));
    }
    let expected = hex::decode(hex_digest)
        .map_err(|_| WatchError::SignatureMalformed("the digest is not hexadecimal"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| WatchError::SignatureMismatch)
}

/// Everything the webhook endpoint needs: check the signature (`header` is the value of
/// [`SIGNATURE_HEADER`], `None` when absent) and turn the delivery into a
/// [`Trigger::Webhook`]. Send nothing on error: an unsigned request must not trigger work.
pub fn accept_webhook(
    secret: &Secret,
    body: &[u8],
    header: Option<&str>,
) -> Result<Trigger, WatchError> {
    let header = header.ok_or(WatchError::SignatureMalformed(
        "the X-Hub-Signature-256 header is missing",
    ))?;
    verify_signature(secret, body, header)?;
    Ok(Trigger::Webhook {
        git_ref: push_ref(body),
    })
}

/// The `ref` of a push payload (`refs/heads/main`), to ignore pushes to other branches.
/// `None` for other events (`ping`) or bodies that are not JSON.
pub fn push_ref(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("ref")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Debounce {
        Debounce {
            quiet: Duration::from_millis(150),
            max_delay: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_event_triggers_after_the_quiet_period() {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(debounce(raw_rx, tx, settings()));
        let start = Instant::now();
        raw_tx.send(PathBuf::from("/r/.git/HEAD")).unwrap();
        let trigger = rx.recv().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(150));
        assert_eq!(
            trigger,
            Trigger::RepoChanged {
                paths: vec![PathBuf::from("/r/.git/HEAD")],
                more: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_coalesces_and_max_delay_bounds_it() {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(debounce(raw_rx, tx, settings()));
        let start = Instant::now();
        // An event every 100 ms for 2.5 s: never quiet for 150 ms.
        let feeder = tokio::spawn(async move {
            for i in 0..25 {
                raw_tx
                    .send(PathBuf::from(format!("/r/.git/refs/heads/b{}", i % 3)))
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let first = rx.recv().await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "max_delay caps the wait"
        );
        let Trigger::RepoChanged { paths, more } = first else {
            panic!("{first:?}")
        };
        assert_eq!((paths.len(), more), (3, 0), "paths are de-duplicated");
        feeder.await.unwrap();
        let mut count = 1;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            count += 1;
        }
        assert_eq!(
            count, 3,
            "2.5 s of continuous events: one trigger per second of burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn separate_events_trigger_separately_and_close_ends_the_task() {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(debounce(raw_rx, tx, settings()));
        raw_tx.send(PathBuf::from("/a")).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        raw_tx.send(PathBuf::from("/b")).unwrap();
        drop(raw_tx); // closing mid-burst still reports the burst
        assert!(matches!(rx.recv().await, Some(Trigger::RepoChanged { .. })));
        assert!(matches!(rx.recv().await, Some(Trigger::RepoChanged { .. })));
        assert_eq!(rx.recv().await, None);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn poll_ticks_every_interval_and_skips_when_full() {
        let (tx, mut rx) = mpsc::channel(1);
        let start = Instant::now();
        let task = spawn_poll(Duration::from_secs(60), tx);
        assert_eq!(rx.recv().await, Some(Trigger::Poll));
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        // Nobody reads for 10 minutes: the channel holds one trigger, the rest are dropped.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(rx.try_recv(), Ok(Trigger::Poll));
        assert!(rx.try_recv().is_err());
        drop(rx);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(
            task.is_finished(),
            "the poll stops once the receiver is gone"
        );
    }

    #[test]
    fn push_ref_reads_the_payload() {
        assert_eq!(
            push_ref(br#"{"ref":"refs/heads/main","after":"abc"}"#).as_deref(),
            Some("refs/heads/main")
        );
        assert_eq!(push_ref(br#"{"zen":"Keep it logically awesome."}"#), None);
        assert_eq!(push_ref(b"not json"), None);
    }
}
