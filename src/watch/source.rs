//! Where the config lives: a local git work tree, or a remote branch mirrored into the data directory.
//!
//! A [`ConfigSource`] names every state of the config as a [`Revision`]:
//!
//! | state                                         | `Revision::id`                     |
//! |-----------------------------------------------|------------------------------------|
//! | committed (work tree clean for the config)    | `main@1a2b3c4`                     |
//! | config file edited / staged but not committed | `main@1a2b3c4+dirty.<sha256:12>`   |
//! | config file deleted from the work tree        | `main@1a2b3c4+dirty.missing`       |
//! | repository without commits                    | `main@unborn+dirty.<sha256:12>`    |
//! | detached HEAD                                 | `detached@1a2b3c4`                 |
//! | a file outside any git repo ([`describe_path`]) | `file@<sha256:12>`               |
//!
//! The id changes whenever the config's content can have changed, so "is this the revision I
//! applied?" is a string comparison. Dirtiness is judged on the config file only: other files the
//! config refers to (elements directories, the secure file) are read from the same work tree.
//!
//! Remote sources are mirrored into `<data dir>/config.git` (a bare repository) and fetched on
//! demand. Local paths and `file://` URLs are fetched by libgit2 in-process; every other transport
//! (https, ssh, git) is fetched by the `git` binary by default, so the daemon gets git's own
//! credential helpers, proxy settings, `~/.ssh/config` and TLS stack without linking OpenSSL or
//! libssh2 (the same trade-off as Cargo's `net.git-fetch-with-cli`). [`FetchBackend`] overrides it.
//!
//! Everything here is synchronous; async callers use `tokio::task::spawn_blocking`. A
//! `ConfigSource` opens the repository per call (cheap), so it is `Send + Sync` and can be shared,
//! but concurrent [`ConfigSource::fetch`] calls on one mirror should be serialised by the caller.

use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git2::{ErrorCode, ObjectType, Oid, Repository};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::WatchError;

/// The config file read when none is named.
pub const DEFAULT_CONFIG_FILE: &str = "nodepool.yaml";
/// Length of the abbreviated commit id in revision ids (fixed, so ids are stable).
const SHORT_SHA_LEN: usize = 7;
/// Length of the sha256 prefix naming uncommitted content.
const CONTENT_HASH_LEN: usize = 12;
/// Directory name of the bare mirror inside the data directory.
const MIRROR_DIR: &str = "config.git";
/// Remote-tracking ref namespace used in the mirror.
const TRACKING_PREFIX: &str = "refs/remotes/origin/";

/// A repository URL whose `Display` and `Debug` hide credentials embedded in it
/// (`https://user:token@host/…` → `https://user:***@host/…`, `https://token@host/…` →
/// `https://***@host/…`). [`RepoUrl::expose`] gives the real URL to the code that fetches.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl(String);

impl RepoUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL as given, credentials included. Only for handing to git.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password or token replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// True for a local path or a `file://` URL: fetched in-process, no network.
    pub fn is_local(&self) -> bool {
        self.0.starts_with("file://") || !self.0.contains("://") && !is_scp_like(&self.0)
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoUrl({})", self.redacted())
    }
}

/// `user@host:path` (scp-like ssh syntax), as opposed to a local path such as `./a:b` or `/x`.
fn is_scp_like(url: &str) -> bool {
    match url.find(':') {
        Some(colon) => {
            let before = &url[..colon];
            !before.is_empty() && !before.contains('/') && !url.starts_with('/')
        }
        None => false,
    }
}

/// Hide the secret part of a URL's userinfo. A lone user name is kept for ssh-like schemes
/// (`ssh://git@host` is not a secret) but hidden for http(s), where it is commonly a token.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let scheme = &url[..scheme_end];
    let shown = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None if scheme.starts_with("http") => "***".to_owned(),
        None => userinfo.to_owned(),
    };
    format!("{}{}{}", &url[..authority_start], shown, &rest[at..])
}

/// How a remote is fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchBackend {
    /// libgit2 for local paths and `file://`, the `git` binary for everything else.
    #[default]
    Auto,
    /// Always libgit2 (this build has no TLS or ssh in libgit2: local, `file://` and `git://` only).
    Libgit2,
    /// Always the `git` binary found on `PATH`.
    GitCli,
}

/// Where the config repository is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A repository on this machine: a work tree (the config is read from the work tree,
    /// uncommitted edits included) or a bare repository (read at its HEAD).
    Local(PathBuf),
    /// A remote branch, mirrored into `data_dir/config.git` and fetched on demand. Credentials
    /// are best left to git (a credential helper, an ssh key); a token in the URL works, is
    /// redacted from every message, and is stored in the mirror's `config` (mode 0600).
    Remote {
        url: RepoUrl,
        branch: String,
        data_dir: PathBuf,
    },
}

/// What [`ConfigSource::open`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSpec {
    pub location: Location,
    /// The config file, relative to the repository root (default `nodepool.yaml`).
    pub config_file: PathBuf,
    pub fetch_backend: FetchBackend,
    /// Upper bound on one fetch by the `git` binary (default 120 s).
    pub fetch_timeout: Duration,
}

impl SourceSpec {
    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self::with_location(Location::Local(path.into()))
    }

    pub fn remote(
        url: impl Into<String>,
        branch: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self::with_location(Location::Remote {
            url: RepoUrl::new(url),
            branch: branch.into(),
            data_dir: data_dir.into(),
        })
    }

    fn with_location(location: Location) -> Self {
        Self {
            location,
            config_file: PathBuf::from(DEFAULT_CONFIG_FILE),
            fetch_backend: FetchBackend::Auto,
            fetch_timeout: Duration::from_secs(120),
        }
    }

    pub fn config_file(mut self, relative: impl Into<PathBuf>) -> Self {
        self.config_file = relative.into();
        self
    }

    pub fn fetch_backend(mut self, backend: FetchBackend) -> Self {
        self.fetch_backend = backend;
        self
    }

    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }
}

/// One state of the config, named for humans and compared by [`Revision::id`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revision {
    /// `main@1a2b3c4`, `main@1a2b3c4+dirty.0123456789ab`, `file@0123456789ab`, … (module docs).
    pub id: String,
    /// The full commit id, when the state is (based on) a commit.
    pub commit: Option<String>,
    /// The branch followed; `None` for a detached HEAD or a file outside git.
    pub branch: Option<String>,
    /// Prefix of the sha256 of the config file's content when that content is not the
    /// commit's (uncommitted edits, or no git at all); `missing` when the work tree lacks it.
    pub content_hash: Option<String>,
}

impl Revision {
    /// True when the config was read from uncommitted (or unversioned) content.
    pub fn is_dirty(&self) -> bool {
        self.content_hash.is_some()
    }

    fn describe(branch: Option<&str>, commit: Option<Oid>, content_hash: Option<String>) -> Self {
        let label = branch.unwrap_or("detached");
        let mut id = match commit {
            Some(oid) => format!("{label}@{}", &oid.to_string()[..SHORT_SHA_LEN]),
            None => format!("{label}@unborn"),
        };
        if let Some(hash) = &content_hash {
            id.push_str("+dirty.");
            id.push_str(hash);
        }
        Self {
            id,
            commit: commit.map(|c| c.to_string()),
            branch: branch.map(str::to_owned),
            content_hash,
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// The config repository, local or mirrored. See the module docs.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    spec: SourceSpec,
    /// The work tree root or bare repository (local), or the bare mirror (remote).
    repo_dir: PathBuf,
}

impl ConfigSource {
    /// Open a local repository, or create/reuse the mirror of a remote one. No network access:
    /// a new mirror is empty until the first [`ConfigSource::fetch`].
    pub fn open(spec: SourceSpec) -> Result<Self, WatchError> {
        check_relative(&spec.config_file)?;
        let repo_dir = match &spec.location {
            Location::Local(path) => {
                let repo = Repository::open(path).map_err(|e| WatchError::NotARepository {
                    path: path.clone(),
                    message: e.message().to_owned(),
                })?;
                repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf()
            }
            Location::Remote {
                url,
                branch,
                data_dir,
            } => {
                let full = format!("refs/heads/{branch}");
                if branch.is_empty() || !git2::Reference::is_valid_name(&full) {
                    return Err(WatchError::InvalidSpec(format!(
                        "{branch:?} is not a valid branch name"
                    )));
                }
                if url.expose().trim().is_empty() {
                    return Err(WatchError::InvalidSpec(
                        "the repository URL is empty".into(),
                    ));
                }
                let mirror = data_dir.join(MIRROR_DIR);
                std::fs::create_dir_all(data_dir).map_err(|e| WatchError::io(data_dir, e))?;
                let repo = match Repository::open_bare(&mirror) {
                    Ok(repo) => repo,
                    Err(e) if e.code() == ErrorCode::NotFound => Repository::init_bare(&mirror)
                        .map_err(|e| {
                            WatchError::git(format!("creating mirror {}", mirror.display()), e)
                        })?,
                    Err(e) => {
                        return Err(WatchError::git(
                            format!("opening mirror {}", mirror.display()),
                            e,
                        ));
                    }
                };
                let context = || format!("configuring mirror {}", mirror.display());
                match repo.find_remote("origin") {
                    Ok(remote) if remote.url().ok() == Some(url.expose()) => {}
                    Ok(_) => {
                        tracing::info!(url = %url, "config repository URL changed; re-pointing the mirror");
                        repo.remote_set_url("origin", url.expose())
                            .map_err(|e| WatchError::git(context(), e))?;
                        // What was fetched from the old URL is not the new source's state.
                        let stale: Vec<String> = repo
                            .references_glob(&format!("{TRACKING_PREFIX}*"))
                            .map_err(|e| WatchError::git(context(), e))?
                            .filter_map(|r| r.ok()?.name().ok().map(str::to_owned))
                            .collect();
                        for name in stale {
                            if let Ok(mut reference) = repo.find_reference(&name) {
                                reference
                                    .delete()
                                    .map_err(|e| WatchError::git(context(), e))?;
                            }
                        }
                    }
                    Err(_) => {
                        repo.remote_with_fetch(
                            "origin",
                            url.expose(),
                            "+refs/heads/*:refs/remotes/origin/*",
                        )
                        .map_err(|e| WatchError::git(context(), e))?;
                    }
                }
                // The remote URL (credentials included, if the URL has them) lives in the
                // mirror's config, as in any clone: keep that file private.
                #[cfg(unix)]
                if url_secret(url.expose()).is_some() {
                    use std::os::unix::fs::PermissionsExt;
                    let config = mirror.join("config");
                    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| WatchError::io(&config, e))?;
                }
                mirror
            }
        };
        Ok(Self { spec, repo_dir })
    }

    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// The directory whose refs change when the config does: the work tree root or bare
    /// repository of a local source, the mirror of a remote one. (See [`super::RefWatcher`].)
    pub fn repo_dir(&self) -> &Path {
        &self.repo_dir
    }

    /// Where the config comes from, for status and the revision journal, without credentials:
    /// `/srv/config:nodepool.yaml`, `https://***@git.example.com/ops/config.git#main:nodepool.yaml`.
    pub fn describe(&self) -> String {
        let file = self.spec.config_file.display();
        match &self.spec.location {
            Location::Local(path) => format!("{}:{file}", path.display()),
            Location::Remote { url, branch, .. } => format!("{}#{branch}:{file}", url.redacted()),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.spec.location, Location::Local(_))
    }

    /// The config file's path relative to the repository root.
    pub fn config_file(&self) -> &Path {
        &self.spec.config_file
    }

    /// The current revision without touching the network: the work tree's state for a local
    /// source, the last fetched commit for a remote one.
    pub fn current(&self) -> Result<Revision, WatchError> {
        let repo = self.repo()?;
        match &self.spec.location {
            Location::Local(_) => describe_repo_file(&repo, &self.spec.config_file),
            Location::Remote { branch, url, .. } => {
                let name = format!("{TRACKING_PREFIX}{branch}");
                match repo.refname_to_id(&name) {
                    Ok(oid) => Ok(Revision::describe(Some(branch), Some(oid), None)),
                    Err(e) if e.code() == ErrorCode::NotFound => Err(WatchError::BranchNotFound {
                        repo: url.redacted(),
                        branch: branch.clone(),
                        hint: " in the local mirror (not fetched yet?)".into(),
                    }),
                    Err(e) => Err(WatchError::git(format!("resolving {name}"), e)),
                }
            }
        }
    }

    /// Bring the source up to date and return its revision. A remote source fetches its branch;
    /// a local one has nothing to fetch and returns [`ConfigSource::current`].
    pub fn fetch(&self) -> Result<Revision, WatchError> {
        let Location::Remote { url, branch, .. } = &self.spec.location else {
            return self.current();
        };
        let refspec = format!("+refs/heads/{branch}:{TRACKING_PREFIX}{branch}");
        let started = Instant::now();
        let backend = match self.spec.fetch_backend {
            FetchBackend::Auto if url.is_local() => FetchBackend::Libgit2,
            FetchBackend::Auto => FetchBackend::GitCli,
            other => other,
        };
        match backend {
            FetchBackend::GitCli => self.fetch_git_cli(url, branch, &refspec)?,
            _ => self.fetch_libgit2(url, branch, &refspec)?,
        }
        let revision = self.current().map_err(|e| match e {
            WatchError::BranchNotFound { repo, branch, .. } => WatchError::BranchNotFound {
                repo,
                branch,
                hint: " on the remote".into(),
            },
            other => other,
        })?;
        tracing::debug!(url = %url, revision = %revision, elapsed_ms = started.elapsed().as_millis() as u64, "fetched config repository");
        Ok(revision)
    }

    fn fetch_libgit2(&self, url: &RepoUrl, branch: &str, refspec: &str) -> Result<(), WatchError> {
        let repo = self.repo()?;
        let fail = |e: git2::Error| WatchError::Fetch {
            url: url.redacted(),
            branch: branch.to_owned(),
            message: scrub(e.message(), url),
        };
        let mut remote = repo.find_remote("origin").map_err(fail)?;
        let mut options = git2::FetchOptions::new();
        options.download_tags(git2::AutotagOption::None);
        remote
            .fetch(
                &[refspec],
                Some(&mut options),
                Some("nodepool: fetch config"),
            )
            .map_err(fail)?;
        // libgit2 succeeds quietly when the branch does not exist; `current` then reports it.
        Ok(())
    }

    fn fetch_git_cli(&self, url: &RepoUrl, branch: &str, refspec: &str) -> Result<(), WatchError> {
        let fail = |message: String| WatchError::Fetch {
            url: url.redacted(),
            branch: branch.to_owned(),
            message,
        };
        let mut child = Command::new("git")
            .arg("--git-dir")
            .arg(&self.repo_dir)
            .args([
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "origin",
                refspec,
            ])
            // Never prompt (there is no terminal), never inherit a caller's repository.
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GCM_INTERACTIVE", "never")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_OBJECT_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run git: {e}")))?;
        // Drain stderr on a thread so a chatty git cannot block on a full pipe.
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + self.spec.fetch_timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(WatchError::FetchTimeout {
                        url: url.redacted(),
                        seconds: self.spec.fetch_timeout.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(fail(format!("waiting for git: {e}"))),
            }
        };
        let stderr = reader.join().unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let text = scrub(stderr.trim(), url);
        if text.contains("couldn't find remote ref") {
            return Err(WatchError::BranchNotFound {
                repo: url.redacted(),
                branch: branch.to_owned(),
                hint: " on the remote".into(),
            });
        }
        let last_lines: Vec<&str> = text.lines().rev().take(4).collect();
        let message = last_lines.into_iter().rev().collect::<Vec<_>>().join("; ");
        Err(fail(if message.is_empty() {
            format!("git exited with {status}")
        } else {
            message
        }))
    }

    /// The config file's text at `revision`. For an uncommitted revision of a local work tree
    /// the file is read from the work tree and checked against the revision's content hash;
    /// if it changed since, this is [`WatchError::StaleRevision`] (ask for `current()` again).
    pub fn read_config(&self, revision: &Revision) -> Result<String, WatchError> {
        let rel = self.spec.config_file.clone();
        match &revision.content_hash {
            Some(expected) => {
                let path = self.workdir_for(revision)?.join(&rel);
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(file_not_found(&rel, revision));
                    }
                    Err(e) => return Err(WatchError::io(path, e)),
                };
                if content_hash(&bytes) != *expected {
                    return Err(WatchError::StaleRevision {
                        revision: revision.id.clone(),
                    });
                }
                into_text(bytes, &rel)
            }
            None => {
                let commit = revision
                    .commit
                    .as_deref()
                    .ok_or_else(|| file_not_found(&rel, revision))?;
                self.read_file_at(commit, &rel)?
                    .ok_or_else(|| file_not_found(&rel, revision))
            }
        }
    }

    /// Any file at `revision`: from the work tree for an uncommitted local revision, from the
    /// commit otherwise. `None` when the file does not exist there.
    pub fn read_file(
        &self,
        revision: &Revision,
        relative: &Path,
    ) -> Result<Option<String>, WatchError> {
        check_relative(relative)?;
        if revision.is_dirty() {
            let path = self.workdir_for(revision)?.join(relative);
            return match std::fs::read(&path) {
                Ok(bytes) => into_text(bytes, relative).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(WatchError::io(path, e)),
            };
        }
        match &revision.commit {
            Some(commit) => self.read_file_at(commit, relative),
            None => Ok(None),
        }
    }

    /// A file's text at a commit (full or abbreviated id), e.g. the config at the last applied
    /// revision, to show what changed since. `None` when the file is not in that commit.
    pub fn read_file_at(
        &self,
        commit: &str,
        relative: &Path,
    ) -> Result<Option<String>, WatchError> {
        check_relative(relative)?;
        let repo = self.repo()?;
        let commit_obj = repo
            .revparse_single(commit)
            .and_then(|o| o.peel_to_commit())
            .map_err(|_| WatchError::CommitNotFound {
                repo: self.display_name(),
                commit: commit.to_owned(),
            })?;
        let tree = commit_obj
            .tree()
            .map_err(|e| WatchError::git(format!("reading commit {commit}"), e))?;
        let entry = match tree.get_path(relative) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => {
                return Err(WatchError::git(
                    format!("looking up {}", relative.display()),
                    e,
                ));
            }
        };
        let object = entry
            .to_object(&repo)
            .map_err(|e| WatchError::git("reading blob", e))?;
        let Some(blob) = object.as_blob() else {
            return Ok(None);
        };
        into_text(blob.content().to_vec(), relative).map(Some)
    }

    /// A directory holding the full tree of `revision`, for a loader that follows paths relative
    /// to the config (elements directories, the secure file, …).
    ///
    /// For the current state of a local work tree this is the work tree itself (nothing is
    /// copied; [`WatchError::StaleRevision`] if the work tree moved on). Any other revision is
    /// checked out once into `scratch/<commit>` (atomically: a directory there is complete) and
    /// reused afterwards; [`ConfigSource::prune_materialized`] removes old ones.
    pub fn materialize(&self, revision: &Revision, scratch: &Path) -> Result<PathBuf, WatchError> {
        if let (Location::Local(_), Some(workdir)) = (&self.spec.location, self.repo()?.workdir()) {
            let current = self.current()?;
            if current.id == revision.id {
                return Ok(workdir.to_path_buf());
            }
            if revision.is_dirty() {
                return Err(WatchError::StaleRevision {
                    revision: revision.id.clone(),
                });
            }
        }
        let commit = revision
            .commit
            .as_deref()
            .ok_or_else(|| WatchError::StaleRevision {
                revision: revision.id.clone(),
            })?;
        let target = scratch.join(commit);
        if target.is_dir() {
            return Ok(target);
        }
        std::fs::create_dir_all(scratch).map_err(|e| WatchError::io(scratch, e))?;
        let staging = scratch.join(format!(
            ".staging-{commit}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let result = self.checkout_into(commit, &staging).and_then(|()| {
            match std::fs::rename(&staging, &target) {
                Ok(()) => Ok(()),
                // Someone else materialised it meanwhile: theirs is complete too.
                Err(_) if target.is_dir() => Ok(()),
                Err(e) => Err(WatchError::io(&target, e)),
            }
        });
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result.map(|()| target)
    }

    fn checkout_into(&self, commit: &str, dir: &Path) -> Result<(), WatchError> {
        let repo = self.repo()?;
        let object = repo
            .revparse_single(commit)
            .and_then(|o| o.peel(ObjectType::Commit))
            .map_err(|_| WatchError::CommitNotFound {
                repo: self.display_name(),
                commit: commit.to_owned(),
            })?;
        std::fs::create_dir_all(dir).map_err(|e| WatchError::io(dir, e))?;
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout
            .target_dir(dir)
            .force()
            .update_index(false)
            .recreate_missing(true);
        repo.checkout_tree(&object, Some(&mut checkout))
            .map_err(|e| {
                WatchError::git(format!("checking out {commit} into {}", dir.display()), e)
            })
    }

    /// Remove materialised checkouts under `scratch` except those of `keep`.
    pub fn prune_materialized(scratch: &Path, keep: &[&Revision]) -> Result<usize, WatchError> {
        let entries = match std::fs::read_dir(scratch) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(WatchError::io(scratch, e)),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_checkout = name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if is_checkout
                && !keep
                    .iter()
                    .any(|r| r.commit.as_deref() == Some(name.as_str()))
            {
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| WatchError::io(entry.path(), e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn repo(&self) -> Result<Repository, WatchError> {
        let open = match self.spec.location {
            Location::Local(_) => Repository::open(&self.repo_dir),
            Location::Remote { .. } => Repository::open_bare(&self.repo_dir),
        };
        open.map_err(|e| WatchError::NotARepository {
            path: self.repo_dir.clone(),
            message: e.message().to_owned(),
        })
    }

    /// The work tree an uncommitted revision lives in.
    fn workdir_for(&self, revision: &Revision) -> Result<PathBuf, WatchError> {
        match self.repo()?.workdir() {
            Some(dir) if self.is_local() => Ok(dir.to_path_buf()),
            _ => Err(WatchError::StaleRevision {
                revision: revision.id.clone(),
            }),
        }
    }

    fn display_name(&self) -> String {
        match &self.spec.location {
            Location::Local(path) => path.display().to_string(),
            Location::Remote { url, .. } => url.redacted(),
        }
    }
}

/// Describe a config file for the CLI: `path` is the file, or a directory holding
/// `nodepool.yaml`. Inside a git work tree this is the same revision a local [`ConfigSource`]
/// would report (an untracked file counts as differing from HEAD: `+dirty`); outside git it
/// is `file@<sha256 prefix>`.
pub fn describe_path(path: &Path) -> Result<Revision, WatchError> {
    let file = if path.is_dir() {
        path.join(DEFAULT_CONFIG_FILE)
    } else {
        path.to_path_buf()
    };
    let file = std::fs::canonicalize(&file).map_err(|e| WatchError::io(&file, e))?;
    let parent = file.parent().unwrap_or(Path::new("/"));
    let in_git = Repository::discover(parent).ok().and_then(|repo| {
        let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
        let rel = file.strip_prefix(&workdir).ok()?.to_path_buf();
        // A file inside `.git` is not part of the work tree.
        if rel.components().next() == Some(Component::Normal(".git".as_ref())) {
            return None;
        }
        Some((repo, rel))
    });
    match in_git {
        Some((repo, rel)) => describe_repo_file(&repo, &rel),
        None => {
            let bytes = std::fs::read(&file).map_err(|e| WatchError::io(&file, e))?;
            let hash = content_hash(&bytes);
            Ok(Revision {
                id: format!("file@{hash}"),
                commit: None,
                branch: None,
                content_hash: Some(hash),
            })
        }
    }
}

/// The revision of `rel` in `repo`: HEAD's branch and commit, plus a content hash when the
/// work tree's copy differs from HEAD's (or HEAD has none, or the work tree lost it).
fn describe_repo_file(repo: &Repository, rel: &Path) -> Result<Revision, WatchError> {
    let head_ref = repo
        .find_reference("HEAD")
        .map_err(|e| WatchError::git("reading HEAD", e))?;
    let branch = head_ref
        .symbolic_target()
        .ok()
        .flatten()
        .and_then(|target| target.strip_prefix("refs/heads/"))
        .map(str::to_owned);
    let head = match repo.head() {
        Ok(reference) => Some(
            reference
                .peel_to_commit()
                .map_err(|e| WatchError::git("reading HEAD commit", e))?,
        ),
        Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => None,
        Err(e) => return Err(WatchError::git("reading HEAD", e)),
    };
    let committed: Option<Vec<u8>> = match &head {
        Some(commit) => {
            let tree = commit
                .tree()
                .map_err(|e| WatchError::git("reading HEAD tree", e))?;
            match tree.get_path(rel) {
                Ok(entry) => entry
                    .to_object(repo)
                    .ok()
                    .and_then(|o| o.as_blob().map(|b| b.content().to_vec())),
                Err(_) => None,
            }
        }
        None => None,
    };
    let content_hash = match repo.workdir() {
        None => None, // bare: HEAD is all there is
        Some(workdir) => {
            let path = workdir.join(rel);
            match std::fs::read(&path) {
                Ok(bytes) if committed.as_deref() == Some(bytes.as_slice()) => None,
                Ok(bytes) => Some(content_hash(&bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    committed.as_ref().map(|_| "missing".to_owned())
                }
                Err(e) => return Err(WatchError::io(path, e)),
            }
        }
    };
    Ok(Revision::describe(
        branch.as_deref(),
        head.map(|c| c.id()),
        content_hash,
    ))
}

fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(digest)[..CONTENT_HASH_LEN].to_owned()
}

fn into_text(bytes: Vec<u8>, rel: &Path) -> Result<String, WatchError> {
    String::from_utf8(bytes).map_err(|_| WatchError::NotUtf8 {
        path: rel.display().to_string(),
    })
}

fn file_not_found(rel: &Path, revision: &Revision) -> WatchError {
    WatchError::FileNotFound {
        path: rel.display().to_string(),
        revision: revision.id.clone(),
    }
}

/// Paths inside the repository must be relative and stay inside it.
fn check_relative(rel: &Path) -> Result<(), WatchError> {
    let ok = !rel.as_os_str().is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(WatchError::InvalidSpec(format!(
            "{}: a path in the config repository must be relative and must not leave it",
            rel.display()
        )))
    }
}

/// Replace the URL's credentials wherever git echoed them.
fn scrub(text: &str, url: &RepoUrl) -> String {
    let mut out = text.replace(url.expose(), &url.redacted());
    if let Some(secret) = url_secret(url.expose()) {
        out = out.replace(&secret, "***");
    }
    out
}

/// The part of a URL's userinfo that `redact_url` hides, if any.
fn url_secret(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    match userinfo.split_once(':') {
        Some((_, password)) if !password.is_empty() => Some(password.to_owned()),
        None if url.starts_with("http") && !userinfo.is_empty() => Some(userinfo.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(
            redact_url("https://user:tok3n@example.com/org/repo.git"),
            "https://user:***@example.com/org/repo.git"
        );
        assert_eq!(
            redact_url("https://ghp_abc@example.com/r"),
            "https://***@example.com/r"
        );
        assert_eq!(
            redact_url("ssh://git@example.com/r"),
            "ssh://git@example.com/r"
        );
        assert_eq!(
            redact_url("https://example.com/a@b"),
            "https://example.com/a@b"
        );
        assert_eq!(
            redact_url("git@example.com:org/repo"),
            "git@example.com:org/repo"
        );
        let url = RepoUrl::new("https://u:s3cret@h/r");
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        assert_eq!(
            scrub(
                "fatal: could not read from https://u:s3cret@h/r (s3cret)",
                &url
            ),
            "fatal: could not read from https://u:***@h/r (***)"
        );
    }

    #[test]
    fn classifies_local_urls() {
        assert!(RepoUrl::new("/srv/git/config.git").is_local());
        assert!(RepoUrl::new("file:///srv/git/config.git").is_local());
        assert!(RepoUrl::new("./relative").is_local());
        assert!(!RepoUrl::new("https://example.com/r.git").is_local());
        assert!(!RepoUrl::new("git@example.com:org/r.git").is_local());
        assert!(!RepoUrl::new("ssh://git@example.com/r.git").is_local());
    }

    #[test]
    fn rejects_paths_leaving_the_repository() {
        assert!(check_relative(Path::new("nodepool.yaml")).is_ok());
        assert!(check_relative(Path::new("./etc/nodepool.yaml")).is_ok());
        assert!(check_relative(Path::new("../nodepool.yaml")).is_err());
        assert!(check_relative(Path::new("/etc/nodepool.yaml")).is_err());
        assert!(check_relative(Path::new("")).is_err());
    }

    #[test]
    fn revision_ids() {
        let oid = Oid::from_str("1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d").unwrap();
        assert_eq!(
            Revision::describe(Some("main"), Some(oid), None).id,
            "main@1a2b3c4"
        );
        let dirty = Revision::describe(Some("main"), Some(oid), Some("0123456789ab".into()));
        assert_eq!(dirty.id, "main@1a2b3c4+dirty.0123456789ab");
        assert!(dirty.is_dirty());
        assert_eq!(
            Revision::describe(None, Some(oid), None).id,
            "detached@1a2b3c4"
        );
        assert_eq!(
            Revision::describe(Some("main"), None, Some("ab".into())).id,
            "main@unborn+dirty.ab"
        );
        assert_eq!(content_hash(b"").len(), CONTENT_HASH_LEN);
        // sha256("") = e3b0c442 98fc1c14 …
        assert_eq!(content_hash(b""), "e3b0c44298fc");
    }
}
