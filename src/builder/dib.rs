//! One diskimage build, run like upstream nodepool-builder: `dib-cmd` with nodepool's arguments and environment, a per-build log, a timeout that kills the process group, checksummed outputs.
//!
//! The command is the diskimage's `dib-cmd` (split like a shell would) followed by
//! `-x -t FORMATS --checksum --no-tmpfs -o IMAGES_DIR/NAME-BUILD_ID ELEMENTS...`. It inherits
//! this process's environment plus `DIB_RELEASE`, `DIB_IMAGE_NAME`, `ELEMENTS_PATH`,
//! `DIB_CHECKSUM=1` and then the diskimage's env-vars (public, then secure; they may override).
//!
//! Its stdout and stderr go, line by line, to `BUILD_LOG_DIR/NAME-BUILD_ID.log`, with every
//! secure env-var value replaced by `<redacted>` (a tool run with `-x` may print them). The log
//! starts with the command and the environment nodepool set (secure values redacted) and ends
//! with `Exit code: N`. Only the newest `build-log-retention` logs of an image are kept.
//!
//! The child leads its own process group; a timeout kills the whole group (diskimage-builder
//! runs many subprocesses). Dropping the [`build`] future (cancellation) also kills the group
//! and removes the partial files, so no build outlives its caller. A failed, timed-out or
//! cancelled build leaves no files under `IMAGES_DIR/NAME-BUILD_ID.*`.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use indexmap::IndexMap;
use tokio::io::AsyncWriteExt as _;
use tokio_util::io::ReaderStream;

use crate::config::{Config, DiskImage};
use crate::secret::Secret;

/// After the build command exits, how long to keep reading output its leftover children still
/// write before killing them.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// A line longer than this is written in pieces.
const MAX_LINE: usize = 64 * 1024;
const REDACTED: &[u8] = b"<redacted>";

/// Why a build did not produce its images.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("image {image}: invalid build request: {message}")]
    InvalidRequest { image: String, message: String },
    /// The `dib-cmd` program does not exist (ENOENT).
    #[error(
        "image {image}: build command {command:?} not found (install diskimage-builder, or set the \
         diskimage's dib-cmd, e.g. to the project's tools/nodepool-dib)"
    )]
    CommandNotFound { image: String, command: String },
    #[error("image {image}: cannot start build command {command:?}: {source}")]
    Spawn {
        image: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The command ended unsuccessfully: `exit_code` is `None` when a signal killed it.
    #[error(
        "image {image} build {build_id} failed: {}; log: {}",
        describe_status(*exit_code, *signal),
        log.display()
    )]
    Failed {
        image: String,
        build_id: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
        log: PathBuf,
    },
    /// `build-timeout` passed; the whole process group was killed.
    #[error(
        "image {image} build {build_id} timed out after {} s; its process group was killed; log: {}",
        after.as_secs(),
        log.display()
    )]
    Timeout {
        image: String,
        build_id: String,
        after: Duration,
        log: PathBuf,
    },
    /// The command succeeded but an expected file (image or checksum) is missing or malformed.
    #[error("image {image} build {build_id}: bad output {}: {message}", path.display())]
    BadOutput {
        image: String,
        build_id: String,
        path: PathBuf,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// The command's exit code, for the build record (`None` if it did not exit by itself).
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Failed { exit_code, .. } => *exit_code,
            _ => None,
        }
    }
}

fn describe_status(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "no exit status".into(),
    }
}

/// Where builds read elements and write images and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildDirs {
    pub images_dir: PathBuf,
    pub log_dir: PathBuf,
    /// `ELEMENTS_PATH` entries, in order.
    pub elements_path: Vec<PathBuf>,
    /// Logs kept per image (`build-log-retention`); negative keeps all.
    pub log_retention: i64,
}

impl BuildDirs {
    /// From the config: `elements-dir` (`:`-separated; relative entries are relative to the
    /// config repo `repo_dir`, where the elements live), `images-dir` and `build-log-dir`
    /// (relative ones are relative to `data_dir`; unset: `data_dir/images`, `data_dir/builds`).
    pub fn from_config(cfg: &Config, repo_dir: &Path, data_dir: &Path) -> Self {
        let under = |base: &Path, p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        Self {
            images_dir: under(data_dir, cfg.images_dir.as_deref().unwrap_or("images")),
            log_dir: under(data_dir, cfg.build_log_dir.as_deref().unwrap_or("builds")),
            elements_path: cfg
                .elements_dir
                .as_deref()
                .unwrap_or("")
                .split(':')
                .filter(|s| !s.is_empty())
                .map(|s| under(repo_dir, s))
                .collect(),
            log_retention: cfg.build_log_retention,
        }
    }
}

/// Everything one build needs. Build it with [`BuildRequest::new`] from a resolved diskimage.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub image_name: String,
    /// The build's id (from the state store); part of file names, so no `-` or `/`.
    pub build_id: String,
    /// `dib-cmd`: a program and optional arguments, split like a shell does.
    pub dib_cmd: String,
    pub elements: Vec<String>,
    pub release: Option<String>,
    pub env_vars: IndexMap<String, String>,
    /// Passed to the command, never logged (and redacted from its output).
    pub secure_env_vars: IndexMap<String, Secret>,
    /// Formats to produce (`qcow2`, `raw`, `vhd`, `tar`, ...), in order.
    pub formats: Vec<String>,
    /// `build-timeout`; `None` waits forever.
    pub timeout: Option<Duration>,
    pub dirs: BuildDirs,
}

impl BuildRequest {
    /// A build of `image` (parent chain already applied) producing `formats`. A
    /// `build-timeout` of 0 means no timeout.
    pub fn new(
        image: &DiskImage,
        build_id: impl Into<String>,
        formats: Vec<String>,
        dirs: BuildDirs,
    ) -> Self {
        Self {
            image_name: image.name.clone(),
            build_id: build_id.into(),
            dib_cmd: image.dib_cmd.clone(),
            elements: image.elements.clone(),
            release: image.release.clone(),
            env_vars: image.env_vars.clone(),
            secure_env_vars: image.secure_env_vars.clone(),
            formats,
            timeout: (image.build_timeout > 0).then(|| Duration::from_secs(image.build_timeout)),
            dirs,
        }
    }

    /// `IMAGES_DIR/NAME-BUILD_ID`: the `-o` argument; outputs are `<base>.<ext>`.
    pub fn output_base(&self) -> PathBuf {
        self.dirs
            .images_dir
            .join(format!("{}-{}", self.image_name, self.build_id))
    }

    /// `BUILD_LOG_DIR/NAME-BUILD_ID.log`.
    pub fn log_path(&self) -> PathBuf {
        self.dirs
            .log_dir
            .join(format!("{}-{}.log", self.image_name, self.build_id))
    }

    /// The program and its arguments.
    pub fn command_line(&self) -> Result<Vec<String>, BuildError> {
        self.validate()?;
        let mut argv = shlex::split(&self.dib_cmd)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                self.invalid(format!(
                    "dib-cmd {:?} is not a valid command line",
                    self.dib_cmd
                ))
            })?;
        argv.extend(
            [
                "-x",
                "-t",
                &self.formats.join(","),
                "--checksum",
                "--no-tmpfs",
                "-o",
            ]
            .map(String::from),
        );
        argv.push(self.output_base().to_string_lossy().into_owned());
        argv.extend(self.elements.iter().cloned());
        Ok(argv)
    }

    /// The variables set on top of the inherited environment, in the order they are applied.
    /// Secure values are exposed here (this goes to the child only); use
    /// [`Self::environment_for_log`] for display.
    fn environment(&self) -> Vec<(String, OsString)> {
        let mut env: Vec<(String, OsString)> = Vec::new();
        if let Some(r) = &self.release {
            env.push(("DIB_RELEASE".into(), r.into()));
        }
        env.push(("DIB_IMAGE_NAME".into(), self.image_name.clone().into()));
        if !self.dirs.elements_path.is_empty() {
            let joined = std::env::join_paths(&self.dirs.elements_path)
                .unwrap_or_else(|_| OsString::from(""));
            env.push(("ELEMENTS_PATH".into(), joined));
        }
        env.push(("DIB_CHECKSUM".into(), "1".into()));
        for (k, v) in &self.env_vars {
            env.push((k.clone(), v.into()));
        }
        for (k, v) in &self.secure_env_vars {
            env.push((k.clone(), v.expose().into()));
        }
        env
    }

    /// `NAME=value` for each variable nodepool sets, secure ones as `NAME=<redacted>`.
    pub fn environment_for_log(&self) -> Vec<String> {
        let secure = |k: &str| self.secure_env_vars.contains_key(k);
        self.environment()
            .into_iter()
            .map(|(k, v)| {
                if secure(&k) {
                    format!("{k}=<redacted>")
                } else {
                    format!("{k}={}", shell_quote(&v.to_string_lossy()))
                }
            })
            .collect()
    }

    fn validate(&self) -> Result<(), BuildError> {
        let name_ok = |s: &str| !s.is_empty() && !s.contains('/') && !s.starts_with('.');
        if !name_ok(&self.image_name) {
            return Err(self
                .invalid("the image name must be non-empty, without '/', not starting with '.'"));
        }
        if !name_ok(&self.build_id) || self.build_id.contains('-') {
            return Err(self.invalid(format!(
                "build id {:?} must be non-empty, without '-' or '/'",
                self.build_id
            )));
        }
        if self.formats.is_empty() {
            return Err(self.invalid("no image formats requested"));
        }
        if let Some(f) = self
            .formats
            .iter()
            .find(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(self.invalid(format!("bad image format {f:?}")));
        }
        if self.elements.is_empty() {
            return Err(self.invalid("no elements (disk-image-create needs at least one)"));
        }
        Ok(())
    }

    fn invalid(&self, message: impl Into<String>) -> BuildError {
        BuildError::InvalidRequest {
            image: self.image_name.clone(),
            message: message.into(),
        }
    }
}

/// One produced image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltFile {
    pub format: String,
    pub path: PathBuf,
    pub size: u64,
    /// Lower-case hex, from the `.md5` file the build tool wrote.
    pub md5: String,
    /// Lower-case hex, from the `.sha256` file.
    pub sha256: String,
}

/// A successful build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOutput {
    /// One per requested format, in request order.
    pub files: Vec<BuiltFile>,
    /// Sum of the image files' sizes (checksum files not counted).
    pub total_size: u64,
    pub log_path: PathBuf,
    pub duration: Duration,
}

/// The file extension diskimage-builder gives a format (`squashfs` images end in `.squash`).
pub fn file_extension(format: &str) -> &str {
    match format {
        "squashfs" => "squash",
        other => other,
    }
}

/// Run the build. On any error the partial files are gone and the log (when it could be
/// written) ends with the exit code. Cancellation-safe: dropping the future kills the build's
/// process group and removes its partial files.
pub async fn build(req: &BuildRequest) -> Result<BuildOutput, BuildError> {
    let argv = req.command_line()?;
    let started = Instant::now();
    let image = req.image_name.clone();
    let log_path = req.log_path();
    let base = req.output_base();
    for dir in [&req.dirs.images_dir, &req.dirs.log_dir] {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| BuildError::Io {
                path: dir.clone(),
                source,
            })?;
    }
    let io_log = |source| BuildError::Io {
        path: log_path.clone(),
        source,
    };
    let mut log = BuildLog::create(&log_path, req).await.map_err(io_log)?;

    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(req.environment())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let command_text = argv[0].clone();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let err = if e.kind() == std::io::ErrorKind::NotFound {
                BuildError::CommandNotFound {
                    image: image.clone(),
                    command: command_text,
                }
            } else {
                BuildError::Spawn {
                    image: image.clone(),
                    command: command_text,
                    source: e,
                }
            };
            log.note(&format!("nodepool: {err}"))
                .await
                .map_err(io_log)?;
            log.finish("Exit code: none (the command did not start)")
                .await
                .map_err(io_log)?;
            prune_logs(&req.dirs.log_dir, &image, req.dirs.log_retention);
            return Err(err);
        }
    };
    tracing::info!(image = %image, build_id = %req.build_id, command = %argv.join(" "), log = %log_path.display(), "build started");
    let mut run = Running::new(child, base.clone(), log_path.clone())?;

    let outcome = run.supervise(&mut log, req.timeout).await.map_err(io_log)?;
    let mut result = match outcome {
        Outcome::TimedOut(after) => Err(BuildError::Timeout {
            image: image.clone(),
            build_id: req.build_id.clone(),
            after,
            log: log_path.clone(),
        }),
        Outcome::Exited(status) if status.success() => collect_outputs(req),
        Outcome::Exited(status) => Err(BuildError::Failed {
            image: image.clone(),
            build_id: req.build_id.clone(),
            exit_code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            log: log_path.clone(),
        }),
    };
    let status = run.status;
    if let Err(e) = &result {
        if !matches!(e, BuildError::Failed { .. }) {
            log.note(&format!("nodepool: {e}")).await.map_err(io_log)?;
        }
        if let Err(rm) = remove_outputs(&base) {
            tracing::warn!(image = %image, error = %rm, "could not remove a failed build's files");
        }
    }
    let last = match status {
        Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(c), _) => format!("Exit code: {c}"),
            (None, Some(sig)) => format!("Exit code: -{sig} (killed by signal {sig})"),
            (None, None) => "Exit code: unknown".into(),
        },
        None => "Exit code: unknown".into(),
    };
    log.finish(&last).await.map_err(io_log)?;
    run.disarm();
    prune_logs(&req.dirs.log_dir, &image, req.dirs.log_retention);
    if let Ok(out) = &mut result {
        out.duration = started.elapsed();
        tracing::info!(image = %image, build_id = %req.build_id, size = out.total_size, secs = out.duration.as_secs_f64(), "build finished");
    } else if let Err(e) = &result {
        tracing::warn!(image = %image, build_id = %req.build_id, error = %e, "build failed");
    }
    result
}

/// A started build command: kills its process group and removes partial files unless
/// [`Running::disarm`] was called (so dropping the build future cleans up).
struct Running {
    child: tokio::process::Child,
    pgid: libc::pid_t,
    /// Set once the child has been waited for.
    status: Option<ExitStatus>,
    /// Its stdout/stderr are still open: some process of the group may still be running. (After
    /// the leader is reaped, its pid stays reserved as a group id only while members remain;
    /// we signal the group then only while they hold our pipes, i.e. while members exist.)
    output_open: bool,
    base: PathBuf,
    log_path: PathBuf,
    armed: bool,
}

enum Outcome {
    Exited(ExitStatus),
    TimedOut(Duration),
}

impl Running {
    fn new(
        child: tokio::process::Child,
        base: PathBuf,
        log_path: PathBuf,
    ) -> Result<Self, BuildError> {
        let pgid = child
            .id()
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .ok_or_else(|| BuildError::Io {
                path: base.clone(),
                source: std::io::Error::other("the build command has no pid"),
            })?;
        Ok(Self {
            child,
            pgid,
            status: None,
            output_open: true,
            base,
            log_path,
            armed: true,
        })
    }

    /// SIGKILL to every process of the build's group.
    fn kill_group(&self) {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        // The group id is our child's pid; it is still ours because the child is either not yet
        // reaped or, after reaping, only called while group members keep the pipes open.
        let rc = unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                tracing::warn!(pgid = self.pgid, error = %e, "could not kill a build's process group");
            }
        }
    }

    /// Copy output to the log until the command exits and its pipes close (or the timeout).
    async fn supervise(
        &mut self,
        log: &mut BuildLog,
        timeout: Option<Duration>,
    ) -> std::io::Result<Outcome> {
        let stdout = self
            .child
            .stdout
            .take()
            .map(|s| ReaderStream::new(s).map(|c| (Src::Out, c)));
        let stderr = self
            .child
            .stderr
            .take()
            .map(|s| ReaderStream::new(s).map(|c| (Src::Err, c)));
        let mut output = futures_util::stream::select(
            futures_util::stream::iter(stdout).flatten(),
            futures_util::stream::iter(stderr).flatten(),
        );
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut timed_out = None;
        let mut drain_until = None;
        let mut output_done = false;
        loop {
            self.output_open = !output_done;
            if output_done && self.status.is_some() {
                break;
            }
            tokio::select! {
                chunk = output.next(), if !output_done => match chunk {
                    Some((src, Ok(bytes))) => log.output(src, &bytes).await?,
                    Some((src, Err(e))) => {
                        log.note(&format!("nodepool: reading the build's {src:?}: {e}")).await?;
                        output_done = true;
                    }
                    None => output_done = true,
                },
                status = self.child.wait(), if self.status.is_none() => {
                    self.status = Some(status?);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                },
                () = sleep_until(deadline), if self.status.is_none() && timed_out.is_none() => {
                    let after = timeout.unwrap_or_default();
                    log.note(&format!(
                        "nodepool: build-timeout of {} s reached: killing process group {}",
                        after.as_secs(), self.pgid
                    )).await?;
                    self.kill_group();
                    timed_out = Some(after);
                },
                () = sleep_until(drain_until), if self.status.is_some() && !output_done => {
                    log.note("nodepool: the build command exited but left processes writing output: killing them").await?;
                    self.kill_group();
                    output_done = true;
                },
            }
        }
        log.flush_partial().await?;
        let status = self.status.expect("loop ends after wait");
        Ok(match timed_out {
            Some(after) => Outcome::TimedOut(after),
            None => Outcome::Exited(status),
        })
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.status.is_none() || self.output_open {
            self.kill_group();
        }
        let _ = remove_outputs(&self.base);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
        {
            let _ = writeln!(
                f,
                "\nnodepool: build cancelled; process group killed, partial files removed"
            );
        }
        tracing::warn!(base = %self.base.display(), "build cancelled: process group killed, partial files removed");
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    Out,
    Err,
}

/// The per-build log: header, redacted output lines, footer.
struct BuildLog {
    file: tokio::io::BufWriter<tokio::fs::File>,
    redactor: Redactor,
    pending: [Vec<u8>; 2],
}

impl BuildLog {
    async fn create(path: &Path, req: &BuildRequest) -> std::io::Result<Self> {
        let file = tokio::fs::File::create(path).await?;
        let mut log = Self {
            file: tokio::io::BufWriter::new(file),
            redactor: Redactor::new(req.secure_env_vars.values()),
            pending: [Vec::new(), Vec::new()],
        };
        let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let command = req
            .command_line()
            .map(|a| {
                a.iter()
                    .map(|s| shell_quote(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let header = format!(
            "nodepool: build {} of image {} started {started}\nnodepool: command: {command}\nnodepool: environment: {}\n",
            req.build_id,
            req.image_name,
            req.environment_for_log().join(" "),
        );
        log.file.write_all(header.as_bytes()).await?;
        log.file.flush().await?;
        Ok(log)
    }

    /// A chunk of the command's output: complete lines are redacted and written.
    async fn output(&mut self, src: Src, bytes: &[u8]) -> std::io::Result<()> {
        let buf = &mut self.pending[src as usize];
        buf.extend_from_slice(bytes);
        let cut = match buf.iter().rposition(|b| *b == b'\n') {
            Some(nl) => nl + 1,
            None if buf.len() > MAX_LINE => buf.len() - self.redactor.unsafe_suffix(buf),
            None => 0,
        };
        if cut > 0 {
            let ready: Vec<u8> = buf.drain(..cut).collect();
            let clean = self.redactor.redact(&ready);
            self.file.write_all(&clean).await?;
            self.file.flush().await?;
        }
        Ok(())
    }

    /// Whatever is left without a final newline.
    async fn flush_partial(&mut self) -> std::io::Result<()> {
        for i in 0..2 {
            if !self.pending[i].is_empty() {
                let rest = std::mem::take(&mut self.pending[i]);
                let clean = self.redactor.redact(&rest).into_owned();
                self.file.write_all(&clean).await?;
                self.file.write_all(b"\n").await?;
            }
        }
        self.file.flush().await
    }

    async fn note(&mut self, line: &str) -> std::io::Result<()> {
        self.flush_partial().await?;
        let clean = self.redactor.redact(line.as_bytes()).into_owned();
        self.file.write_all(&clean).await?;
        self.file.write_all(b"\n").await?;
        self.file.flush().await
    }

    /// The last line.
    async fn finish(&mut self, last: &str) -> std::io::Result<()> {
        self.note(last).await?;
        self.file.get_ref().sync_all().await
    }
}

/// Replaces secret values in output with `<redacted>`.
struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<Vec<u8>>,
}

impl Redactor {
    fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.expose().as_bytes().to_vec())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    fn redact<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Cow<'a, [u8]> = Cow::Borrowed(text);
        for s in &self.secrets {
            if find(&out, s).is_some() {
                out = Cow::Owned(replace_all(&out, s, REDACTED));
            }
        }
        out
    }

    /// Length of the longest suffix of `buf` that could be the start of a secret: held back
    /// when a long line is written in pieces, so no secret is split across pieces.
    fn unsafe_suffix(&self, buf: &[u8]) -> usize {
        let mut keep = 0;
        for s in &self.secrets {
            for len in (keep + 1..s.len().min(buf.len() + 1)).rev() {
                if buf.ends_with(&s[..len]) {
                    keep = len;
                    break;
                }
            }
        }
        keep
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(i) = find(rest, needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// `s` as a POSIX shell word: unchanged when it needs no quoting, else single-quoted.
fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', "'\\''")))
    }
}

/// The produced files with their checksums, after a successful command.
fn collect_outputs(req: &BuildRequest) -> Result<BuildOutput, BuildError> {
    let base = req.output_base();
    let mut files = Vec::new();
    for format in &req.formats {
        let path = PathBuf::from(format!("{}.{}", base.display(), file_extension(format)));
        let bad = |path: &Path, message: String| BuildError::BadOutput {
            image: req.image_name.clone(),
            build_id: req.build_id.clone(),
            path: path.to_owned(),
            message,
        };
        let meta =
            std::fs::metadata(&path).map_err(|e| bad(&path, format!("{format} image: {e}")))?;
        if !meta.is_file() {
            return Err(bad(&path, "not a regular file".into()));
        }
        let md5 = read_checksum(&path, "md5", 32).map_err(|(p, m)| bad(&p, m))?;
        let sha256 = read_checksum(&path, "sha256", 64).map_err(|(p, m)| bad(&p, m))?;
        files.push(BuiltFile {
            format: format.clone(),
            path,
            size: meta.len(),
            md5,
            sha256,
        });
    }
    Ok(BuildOutput {
        total_size: files.iter().map(|f| f.size).sum(),
        files,
        log_path: req.log_path(),
        duration: Duration::ZERO,
    })
}

/// The hex digest in `<image>.<algo>` (`md5sum`/`sha256sum` format: `HEX  NAME`).
fn read_checksum(image: &Path, algo: &str, hex_len: usize) -> Result<String, (PathBuf, String)> {
    let path = PathBuf::from(format!("{}.{algo}", image.display()));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| (path.clone(), format!("checksum file: {e}")))?;
    parse_checksum(&text, hex_len).ok_or_else(|| {
        (
            path,
            format!(
                "not a {algo} checksum file: {:?}",
                text.chars().take(80).collect::<String>()
            ),
        )
    })
}

fn parse_checksum(text: &str, hex_len: usize) -> Option<String> {
    let digest = text.split_whitespace().next()?.to_ascii_lowercase();
    (digest.len() == hex_len && digest.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digest)
}

/// Remove `<base>` and everything named `<base>.*` (images, checksums, the tool's work dirs).
fn remove_outputs(base: &Path) -> std::io::Result<()> {
    let (Some(dir), Some(stem)) = (base.parent(), base.file_name()) else {
        return Ok(());
    };
    let stem = stem.to_string_lossy().into_owned();
    let prefix = format!("{stem}.");
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut first_err = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != stem && !name.starts_with(&prefix) {
            continue;
        }
        let path = entry.path();
        let res = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(e) = res
            && e.kind() != std::io::ErrorKind::NotFound
        {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Keep the `retention` newest logs of `image` (at least the one just written); negative keeps all.
fn prune_logs(dir: &Path, image: &str, retention: i64) {
    if retention < 0 {
        return;
    }
    let keep = usize::try_from(retention.max(1)).unwrap_or(usize::MAX);
    let mut logs = image_logs(dir, image);
    logs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    for (path, _) in logs.into_iter().skip(keep) {
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!(log = %path.display(), "removed an old build log"),
            Err(e) => {
                tracing::warn!(log = %path.display(), error = %e, "could not remove an old build log")
            }
        }
    }
}

/// `<dir>/<image>-<id>.log` files (ids have no `-`, so `ubuntu` does not claim `ubuntu-jammy`'s).
fn image_logs(dir: &Path, image: &str) -> Vec<(PathBuf, SystemTime)> {
    let prefix = format!("{image}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_prefix(&prefix)?.strip_suffix(".log")?;
            if id.is_empty() || id.contains('-') {
                return None;
            }
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((e.path(), modified))
        })
        .collect()
}

/// The file of an earlier build in `format`, with its checksums (what an upload of an
/// existing build sends).
pub fn built_file(
    dirs: &BuildDirs,
    image: &str,
    build_id: &str,
    format: &str,
) -> Result<BuiltFile, BuildError> {
    let base = dirs.images_dir.join(format!("{image}-{build_id}"));
    let path = PathBuf::from(format!("{}.{}", base.display(), file_extension(format)));
    let bad = |path: &Path, message: String| BuildError::BadOutput {
        image: image.to_owned(),
        build_id: build_id.to_owned(),
        path: path.to_owned(),
        message,
    };
    let meta = std::fs::metadata(&path).map_err(|e| bad(&path, format!("{format} image: {e}")))?;
    let md5 = read_checksum(&path, "md5", 32).map_err(|(p, m)| bad(&p, m))?;
    let sha256 = read_checksum(&path, "sha256", 64).map_err(|(p, m)| bad(&p, m))?;
    Ok(BuiltFile {
        format: format.to_owned(),
        path,
        size: meta.len(),
        md5,
        sha256,
    })
}

/// Remove the file of one format of a build and its checksums (`delete-after-upload`);
/// returns the bytes freed. Files already gone are not an error (a pruning interrupted
/// half-way is finished by the next one).
pub fn remove_format_files(
    dirs: &BuildDirs,
    image: &str,
    build_id: &str,
    format: &str,
) -> std::io::Result<u64> {
    let file = dirs
        .images_dir
        .join(format!("{image}-{build_id}.{}", file_extension(format)));
    let mut freed = 0;
    for path in [
        PathBuf::from(format!("{}.md5", file.display())),
        PathBuf::from(format!("{}.sha256", file.display())),
        file,
    ] {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => freed += size,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(freed)
}

/// Remove every file of a build (images, checksums, leftovers) from `images_dir`.
pub fn remove_build_files(dirs: &BuildDirs, image: &str, build_id: &str) -> std::io::Result<()> {
    remove_outputs(&dirs.images_dir.join(format!("{image}-{build_id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> BuildRequest {
        BuildRequest {
            image_name: "ubuntu-jammy".into(),
            build_id: "0000000007".into(),
            dib_cmd: "disk-image-create".into(),
            elements: vec!["vm".into(), "ubuntu-minimal".into()],
            release: Some("jammy".into()),
            env_vars: IndexMap::from([("DIB_APT_MINIMAL".to_owned(), "0".to_owned())]),
            secure_env_vars: IndexMap::from([("REG_PASSWORD".to_owned(), Secret::new("s3cr3t"))]),
            formats: vec!["qcow2".into(), "raw".into()],
            timeout: None,
            dirs: BuildDirs {
                images_dir: "/var/lib/nodepool/images".into(),
                log_dir: "/var/log/nodepool/builds".into(),
                elements_path: vec!["/etc/nodepool/elements".into(), "/opt/more".into()],
                log_retention: 7,
            },
        }
    }

    #[test]
    fn command_line_follows_nodepool_builder() {
        let r = request();
        assert_eq!(
            r.command_line().unwrap(),
            [
                "disk-image-create",
                "-x",
                "-t",
                "qcow2,raw",
                "--checksum",
                "--no-tmpfs",
                "-o",
                "/var/lib/nodepool/images/ubuntu-jammy-0000000007",
                "vm",
                "ubuntu-minimal"
            ]
        );
        assert_eq!(
            r.log_path(),
            Path::new("/var/log/nodepool/builds/ubuntu-jammy-0000000007.log")
        );
    }

    #[test]
    fn dib_cmd_is_split_like_a_shell() {
        let mut r = request();
        r.dib_cmd = r#"env FOO="a b" /opt/dib/bin/disk-image-create --image-size 5"#.into();
        let argv = r.command_line().unwrap();
        assert_eq!(
            &argv[..6],
            [
                "env",
                "FOO=a b",
                "/opt/dib/bin/disk-image-create",
                "--image-size",
                "5",
                "-x"
            ]
        );
        r.dib_cmd = "dib 'unterminated".into();
        assert!(matches!(
            r.command_line(),
            Err(BuildError::InvalidRequest { .. })
        ));
        r.dib_cmd = "   ".into();
        assert!(matches!(
            r.command_line(),
            Err(BuildError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn requests_are_validated() {
        for (mutate, what) in [
            (
                Box::new(|r: &mut BuildRequest| r.build_id = "a-b".into())
                    as Box<dyn Fn(&mut BuildRequest)>,
                "build id",
            ),
            (
                Box::new(|r: &mut BuildRequest| r.image_name = "../x".into()),
                "image name",
            ),
            (
                Box::new(|r: &mut BuildRequest| r.formats.clear()),
                "formats",
            ),
            (
                Box::new(|r: &mut BuildRequest| r.formats = vec!["qcow2;rm".into()]),
                "bad format",
            ),
            (
                Box::new(|r: &mut BuildRequest| r.elements.clear()),
                "elements",
            ),
        ] {
            let mut r = request();
            mutate(&mut r);
            assert!(
                matches!(r.command_line(), Err(BuildError::InvalidRequest { .. })),
                "{what}"
            );
        }
    }

    #[test]
    fn environment_order_and_redaction() {
        let r = request();
        let env: Vec<(String, String)> = r
            .environment()
            .into_iter()
            .map(|(k, v)| (k, v.into_string().unwrap()))
            .collect();
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "DIB_RELEASE",
                "DIB_IMAGE_NAME",
                "ELEMENTS_PATH",
                "DIB_CHECKSUM",
                "DIB_APT_MINIMAL",
                "REG_PASSWORD"
            ]
        );
        assert_eq!(env[2].1, "/etc/nodepool/elements:/opt/more");
        assert_eq!(env[5].1, "s3cr3t", "the child gets the real value");
        let shown = r.environment_for_log().join(" ");
        assert!(shown.contains("REG_PASSWORD=<redacted>"), "{shown}");
        assert!(!shown.contains("s3cr3t"));
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn redactor_replaces_and_holds_back_partial_secrets() {
        let r = Redactor::new(&[
            Secret::new("hunter2"),
            Secret::new("hunter2-long"),
            Secret::new(""),
        ]);
        assert_eq!(
            &*r.redact(b"pw=hunter2 and hunter2-long!"),
            b"pw=<redacted> and <redacted>!"
        );
        assert_eq!(&*r.redact(b"nothing here"), b"nothing here");
        assert_eq!(r.unsafe_suffix(b"xxxxhunt"), 4);
        assert_eq!(r.unsafe_suffix(b"xxxxhunter2-lon"), 11);
        assert_eq!(r.unsafe_suffix(b"xxxx"), 0);
        assert_eq!(Redactor::new(&[]).unsafe_suffix(b"abc"), 0);
    }

    #[tokio::test]
    async fn long_lines_never_split_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request();
        req.dirs.log_dir = dir.path().into();
        req.secure_env_vars = IndexMap::from([("S".to_owned(), Secret::new("TOPSECRETVALUE"))]);
        let path = dir.path().join("l.log");
        let mut log = BuildLog::create(&path, &req).await.unwrap();
        // A line longer than MAX_LINE arriving in chunks that cut the secret in two.
        let mut line = vec![b'a'; MAX_LINE + 10];
        line.extend_from_slice(b"TOPSECRETVALUE tail\n");
        let cut = MAX_LINE + 15;
        log.output(Src::Out, &line[..cut]).await.unwrap();
        log.output(Src::Err, b"err line\n").await.unwrap();
        log.output(Src::Out, &line[cut..]).await.unwrap();
        log.finish("Exit code: 0").await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("TOPSECRETVALUE"));
        assert!(!text.contains("TOPS\n"));
        assert!(text.contains("<redacted> tail\n"));
        assert!(text.contains("err line\n"));
        assert!(text.ends_with("Exit code: 0\n"));
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_quote("qcow2,raw"), "qcow2,raw");
        assert_eq!(shell_quote("/a/b-c.d"), "/a/b-c.d");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn checksum_files() {
        assert_eq!(
            parse_checksum("D41D8CD98F00B204E9800998ECF8427E  img.qcow2\n", 32).as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(parse_checksum("d41d8cd98f00b204e9800998ecf8427e", 64), None);
        assert_eq!(
            parse_checksum("zz1d8cd98f00b204e9800998ecf8427e  x", 32),
            None
        );
        assert_eq!(parse_checksum("", 32), None);
    }

    #[test]
    fn outputs_and_logs_are_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "img-01.qcow2",
            "img-01.qcow2.md5",
            "img-01.work/x",
            "img-011.qcow2",
            "img-01",
            "other",
        ] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        remove_outputs(&d.join("img-01")).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["img-011.qcow2", "other"]);

        for f in ["u-1.log", "u-2.log", "u-jammy-3.log", "u-.log", "u-4.txt"] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        let mut logs: Vec<String> = image_logs(d, "u")
            .into_iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        logs.sort();
        assert_eq!(logs, ["u-1.log", "u-2.log"]);
    }

    #[test]
    fn pruning_one_format_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BuildDirs {
            images_dir: dir.path().to_owned(),
            log_dir: dir.path().to_owned(),
            elements_path: vec![],
            log_retention: 7,
        };
        for f in [
            "img-01.qcow2",
            "img-01.qcow2.md5",
            "img-01.qcow2.sha256",
            "img-01.raw",
            "img-01.raw.md5",
            "img-01.raw.sha256",
        ] {
            let text = if f.ends_with(".md5") {
                "0".repeat(32)
            } else if f.ends_with(".sha256") {
                "0".repeat(64)
            } else {
                "12345".into()
            };
            std::fs::write(dir.path().join(f), text).unwrap();
        }
        assert_eq!(
            remove_format_files(&dirs, "img", "01", "qcow2").unwrap(),
            5 + 32 + 64
        );
        // Again: nothing left to remove, and that is not an error.
        assert_eq!(remove_format_files(&dirs, "img", "01", "qcow2").unwrap(), 0);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["img-01.raw", "img-01.raw.md5", "img-01.raw.sha256"]);
        assert!(built_file(&dirs, "img", "01", "raw").is_ok());
        assert!(built_file(&dirs, "img", "01", "qcow2").is_err());
    }

    #[test]
    fn dirs_from_config_paths() {
        let yaml = "elements-dir: elements:/abs/elements\nbuild-log-dir: /var/log/np\nbuild-log-retention: -1\nlabels: []\nproviders: []\n";
        let (cfg, _) =
            crate::config::load_str(Path::new("nodepool.yaml"), yaml, None, &Default::default())
                .expect("valid config");
        let dirs = BuildDirs::from_config(&cfg, Path::new("/repo"), Path::new("/data"));
        assert_eq!(
            dirs.elements_path,
            [
                PathBuf::from("/repo/elements"),
                PathBuf::from("/abs/elements")
            ]
        );
        assert_eq!(dirs.images_dir, Path::new("/data/images"));
        assert_eq!(dirs.log_dir, Path::new("/var/log/np"));
        assert_eq!(dirs.log_retention, -1);
    }
}
