//! Upload one built image file to one provider's Glance, like nodepool-builder: name, properties, streamed data, wait for `active`, `post-upload-hook`.
//!
//! The image is named by the provider's `image-name-format` ([`format_image_name`]), typed from
//! the file's format ([`glance_formats`]) and carries the provider diskimage's `meta` plus
//! nodepool's ownership properties (build id, upload id, provider) and the file's checksums
//! under openstacksdk's `owner_specified.openstack.*` keys. The data is streamed from disk
//! (never held in memory). The whole upload, until Glance reports `active`, is bounded by
//! `image-upload-timeout`. Then the provider's `post-upload-hook` runs as
//! `HOOK PROVIDER EXTERNAL_ID FILE`.
//!
//! Whatever fails after the image record was created (the transfer, Glance killing the image,
//! a checksum mismatch, the timeout, the hook), the cloud image is deleted before the error is
//! returned; [`UploadError::leftover_image`] names it if that delete failed too, so the caller
//! can record it for a later delete.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use indexmap::IndexMap;
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;

use super::dib::BuiltFile;
use crate::cloud::{CloudError, CreateImage, ImageStatus, OpenStackClient, ProgressFn};
use crate::config::model::{OpenStackProvider, ProviderDiskImage};
use crate::reconcile::world::meta;

/// The image property holding the file's MD5 (hex), as openstacksdk sets it.
pub const PROP_MD5: &str = "owner_specified.openstack.md5";
/// The image property holding the file's SHA-256 (hex), as openstacksdk sets it.
pub const PROP_SHA256: &str = "owner_specified.openstack.sha256";

/// How much of a failing hook's output an error keeps.
const HOOK_OUTPUT_TAIL: usize = 2048;
/// A delete after a failed upload gets this long.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_FIRST: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(5);

/// What happened to the cloud image after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// No image record had been created.
    NothingCreated,
    /// The image was deleted.
    Deleted,
    /// The delete failed: the image may still exist (see [`UploadError::leftover_image`]).
    DeleteFailed(String),
}

impl std::fmt::Display for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NothingCreated => Ok(()),
            Self::Deleted => f.write_str("; the cloud image was deleted"),
            Self::DeleteFailed(e) => write!(f, "; deleting the cloud image failed too: {e}"),
        }
    }
}

/// Why an upload did not end with an `active` image.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("image-name-format {format:?}: {message}")]
    NameFormat { format: String, message: String },
    #[error("{format} images cannot be uploaded to Glance (supported: {})", GLANCE_FORMATS.iter().map(|f| f.0).collect::<Vec<_>>().join(", "))]
    UnsupportedFormat { format: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The upload was attempted and failed; any image it created was deleted (see `cleanup`).
    #[error(transparent)]
    Failed(Box<UploadFailure>),
}

/// A failed upload attempt: where, the cloud image it had created, why, and what became of it.
#[derive(Debug, thiserror::Error)]
#[error(
    "upload of {image} to {provider}{}: {reason}{cleanup}",
    external_id.as_deref().map(|i| format!(" (image {i})")).unwrap_or_default()
)]
pub struct UploadFailure {
    pub provider: String,
    pub image: String,
    /// The Glance image created, if it got that far.
    pub external_id: Option<String>,
    pub reason: FailureReason,
    pub cleanup: Cleanup,
}

/// What went wrong in an upload attempt.
#[derive(Debug, thiserror::Error)]
pub enum FailureReason {
    #[error(transparent)]
    Cloud(CloudError),
    /// `image-upload-timeout` passed before the image was `active`.
    #[error("did not finish within image-upload-timeout ({} s)", .0.as_secs())]
    Timeout(Duration),
    /// Glance put the image in a terminal state (`killed`, `deleted`, ...).
    #[error("Glance set the image {status} instead of active")]
    NotActive { status: String },
    #[error("Glance stored md5 {stored}, but the file's is {expected}")]
    ChecksumMismatch { stored: String, expected: String },
    /// The `post-upload-hook` failed; `output_tail` is the end of its stdout + stderr.
    #[error("post-upload-hook {hook:?} failed: {status}; output: {output_tail:?}")]
    Hook {
        hook: String,
        status: String,
        output_tail: String,
    },
}

impl UploadError {
    /// The cloud image id that may still exist after this failure (its delete failed).
    pub fn leftover_image(&self) -> Option<&str> {
        match self {
            Self::Failed(f) if matches!(f.cleanup, Cleanup::DeleteFailed(_)) => {
                f.external_id.as_deref()
            }
            _ => None,
        }
    }

    /// Why the attempt failed, if it was attempted.
    pub fn failure(&self) -> Option<&UploadFailure> {
        match self {
            Self::Failed(f) => Some(f),
            _ => None,
        }
    }
}

/// File formats Glance takes, with their `(disk_format, container_format)`.
const GLANCE_FORMATS: &[(&str, (&str, &str))] = &[
    ("qcow2", ("qcow2", "bare")),
    ("raw", ("raw", "bare")),
    ("vhd", ("vhd", "bare")),
    ("vmdk", ("vmdk", "bare")),
    ("vdi", ("vdi", "bare")),
    ("iso", ("iso", "bare")),
];

/// Glance's `(disk_format, container_format)` for a built file's format.
pub fn glance_formats(format: &str) -> Result<(&'static str, &'static str), UploadError> {
    GLANCE_FORMATS
        .iter()
        .find(|(f, _)| *f == format)
        .map(|(_, df)| *df)
        .ok_or_else(|| UploadError::UnsupportedFormat {
            format: format.to_owned(),
        })
}

/// One piece of a parsed `image-name-format`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NamePart {
    Literal(String),
    ImageName,
    Timestamp,
}

/// Parse `image-name-format`, Python `str.format` style as upstream: `{{` and `}}` are literal
/// braces; `{image_name}` and `{timestamp}` are the fields; any other field is an error.
fn name_parts(format: &str) -> Result<Vec<NamePart>, UploadError> {
    let err = |message: String| UploadError::NameFormat {
        format: format.to_owned(),
        message,
    };
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => return Err(err("unbalanced '{'".into())),
                        Some(c) => field.push(c),
                    }
                }
                let part = match field.as_str() {
                    "image_name" => NamePart::ImageName,
                    "timestamp" => NamePart::Timestamp,
                    other => {
                        return Err(err(format!(
                            "unknown field {{{other}}} (known: {{image_name}}, {{timestamp}})"
                        )));
                    }
                };
                if !literal.is_empty() {
                    parts.push(NamePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part);
            }
            '}' => return Err(err("single '}' (write '}}' for a literal brace)".into())),
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(NamePart::Literal(literal));
    }
    Ok(parts)
}

/// `image-name-format` with `{image_name}` and `{timestamp}` replaced (see [`name_parts`]).
pub fn format_image_name(
    format: &str,
    image_name: &str,
    timestamp: i64,
) -> Result<String, UploadError> {
    let mut out = String::with_capacity(format.len() + image_name.len() + 10);
    for part in name_parts(format)? {
        match part {
            NamePart::Literal(l) => out.push_str(&l),
            NamePart::ImageName => out.push_str(image_name),
            NamePart::Timestamp => out.push_str(&timestamp.to_string()),
        }
    }
    if out.is_empty() {
        return Err(UploadError::NameFormat {
            format: format.to_owned(),
            message: "the name is empty".into(),
        });
    }
    Ok(out)
}

/// Whether `name` is one that `format` gives `image_name` for some timestamp (one or more
/// digits): how an image uploaded by upstream Nodepool (or by us) is told apart from another
/// diskimage's. `Some` with the timestamp read from the name (`None` if the format has no
/// `{timestamp}`), `None` if it does not fit. A format that does not parse fits nothing.
pub fn match_image_name(format: &str, image_name: &str, name: &str) -> Option<Option<i64>> {
    fn rest(parts: &[NamePart], image_name: &str, name: &str) -> Option<Option<i64>> {
        let Some((first, tail)) = parts.split_first() else {
            return name.is_empty().then_some(None);
        };
        match first {
            NamePart::Literal(l) => rest(tail, image_name, name.strip_prefix(l.as_str())?),
            NamePart::ImageName => rest(tail, image_name, name.strip_prefix(image_name)?),
            // Digits, as many as leave a fit for the rest (shortest first).
            NamePart::Timestamp => {
                let digits = name.bytes().take_while(u8::is_ascii_digit).count();
                (1..=digits).find_map(|k| {
                    let later = rest(tail, image_name, &name[k..])?;
                    Some(later.or_else(|| name[..k].parse().ok()))
                })
            }
        }
    }
    rest(&name_parts(format).ok()?, image_name, name)
}

/// One upload of one built file to one provider.
#[derive(Clone)]
pub struct UploadRequest {
    pub provider: String,
    /// The diskimage name (`{image_name}`).
    pub image_name: String,
    pub build_id: String,
    pub upload_id: String,
    /// The provider's `image-name-format`.
    pub name_format: String,
    /// `{timestamp}`: unix seconds, normally the upload's start.
    pub timestamp: i64,
    pub file: BuiltFile,
    /// The provider diskimage's `meta`.
    pub meta: IndexMap<String, String>,
    /// `image-upload-timeout`: create, transfer and wait for `active`.
    pub timeout: Duration,
    /// `post-upload-hook`: a program, run as `HOOK PROVIDER EXTERNAL_ID FILE`.
    pub post_upload_hook: Option<String>,
    /// Called as chunks go out (e.g. to move an indicatif bar).
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for UploadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadRequest")
            .field("provider", &self.provider)
            .field("image_name", &self.image_name)
            .field("build_id", &self.build_id)
            .field("upload_id", &self.upload_id)
            .field("name_format", &self.name_format)
            .field("timestamp", &self.timestamp)
            .field("file", &self.file)
            .field("meta", &self.meta)
            .field("timeout", &self.timeout)
            .field("post_upload_hook", &self.post_upload_hook)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl UploadRequest {
    /// An upload of `file` (of build `build_id`) to `provider` as its diskimage entry
    /// `diskimage` says, stamped with the current time.
    pub fn new(
        provider: &OpenStackProvider,
        diskimage: &ProviderDiskImage,
        build_id: impl Into<String>,
        upload_id: impl Into<String>,
        file: BuiltFile,
    ) -> Self {
        Self {
            provider: provider.name.clone(),
            image_name: diskimage.name.clone(),
            build_id: build_id.into(),
            upload_id: upload_id.into(),
            name_format: provider.image_name_format.clone(),
            timestamp: chrono::Utc::now().timestamp(),
            file,
            meta: diskimage
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            timeout: Duration::from_secs(provider.image_upload_timeout),
            post_upload_hook: provider.post_upload_hook.clone(),
            progress: None,
        }
    }

    /// The image's name in the cloud.
    pub fn external_name(&self) -> Result<String, UploadError> {
        format_image_name(&self.name_format, &self.image_name, self.timestamp)
    }

    /// The `POST /v2/images` request: `meta`, then ownership and checksum properties (which
    /// win over a `meta` key of the same name).
    pub fn create_image(&self) -> Result<CreateImage, UploadError> {
        let (disk_format, container_format) = glance_formats(&self.file.format)?;
        let mut properties: BTreeMap<String, String> = self
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        properties.insert(meta::BUILD_ID.into(), self.build_id.clone());
        properties.insert(meta::UPLOAD_ID.into(), self.upload_id.clone());
        properties.insert(meta::PROVIDER.into(), self.provider.clone());
        properties.insert(PROP_MD5.into(), self.file.md5.clone());
        properties.insert(PROP_SHA256.into(), self.file.sha256.clone());
        Ok(CreateImage {
            name: self.external_name()?,
            disk_format: disk_format.into(),
            container_format: container_format.into(),
            visibility: None,
            properties,
        })
    }
}

/// An `active` image in the provider's cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub external_id: String,
    pub external_name: String,
}

/// Upload `req.file` to the cloud behind `client`; see the module docs.
pub async fn upload(
    client: &OpenStackClient,
    req: &UploadRequest,
) -> Result<Uploaded, UploadError> {
    let create = req.create_image()?;
    let path = &req.file.path;
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|source| UploadError::Io {
            path: path.clone(),
            source,
        })?;
    if !meta.is_file() {
        return Err(UploadError::Io {
            path: path.clone(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    let deadline = Instant::now() + req.timeout;
    let failed = |external_id: Option<&str>, reason, cleanup| {
        UploadError::Failed(Box::new(UploadFailure {
            provider: req.provider.clone(),
            image: req.image_name.clone(),
            external_id: external_id.map(str::to_owned),
            reason,
            cleanup,
        }))
    };
    tracing::info!(provider = %req.provider, image = %req.image_name, name = %create.name, file = %path.display(), size = meta.len(), "upload started");
    let image = match tokio::time::timeout_at(deadline, client.create_image(&create)).await {
        Err(_) => {
            return Err(failed(
                None,
                FailureReason::Timeout(req.timeout),
                Cleanup::NothingCreated,
            ));
        }
        Ok(Err(e)) => {
            return Err(failed(
                None,
                FailureReason::Cloud(e),
                Cleanup::NothingCreated,
            ));
        }
        Ok(Ok(image)) => image,
    };
    let id = image.id;
    // From here on a failure deletes the image: the guard does it if this future is dropped.
    let mut guard = DeleteOnDrop::new(client, &id);

    let sent = tokio::time::timeout_at(deadline, async {
        client.upload_image(&id, path, req.progress.clone()).await?;
        wait_active(client, &id).await
    })
    .await;
    let problem = match sent {
        Err(_) => Some(FailureReason::Timeout(req.timeout)),
        Ok(Err(WaitError::Cloud(e))) => Some(FailureReason::Cloud(e)),
        Ok(Err(WaitError::Status(status))) => Some(FailureReason::NotActive { status }),
        Ok(Ok(active)) => match active.checksum {
            Some(stored) if !stored.eq_ignore_ascii_case(&req.file.md5) => {
                Some(FailureReason::ChecksumMismatch {
                    stored,
                    expected: req.file.md5.clone(),
                })
            }
            _ => None,
        },
    };
    let problem = match (problem, &req.post_upload_hook) {
        (None, Some(hook)) => run_hook(hook, req, &id)
            .await
            .err()
            .map(|(status, output_tail)| FailureReason::Hook {
                hook: hook.clone(),
                status,
                output_tail,
            }),
        (problem, _) => problem,
    };
    if let Some(reason) = problem {
        let cleanup = guard.delete_now().await;
        let err = failed(Some(&id), reason, cleanup);
        tracing::warn!(error = %err, "upload failed");
        return Err(err);
    }
    guard.disarm();
    tracing::info!(provider = %req.provider, image = %req.image_name, id = %id, name = %create.name, "upload active");
    Ok(Uploaded {
        external_id: id,
        external_name: create.name,
    })
}

enum WaitError {
    Cloud(CloudError),
    Status(String),
}

impl From<CloudError> for WaitError {
    fn from(e: CloudError) -> Self {
        Self::Cloud(e)
    }
}

/// Poll until Glance says `active` (backoff 0.25 s doubling to 5 s); a terminal state fails.
async fn wait_active(client: &OpenStackClient, id: &str) -> Result<crate::cloud::Image, WaitError> {
    let mut delay = POLL_FIRST;
    loop {
        let image = client.get_image(id).await?;
        match image.status {
            ImageStatus::Active => return Ok(image),
            ImageStatus::Killed
            | ImageStatus::Deleted
            | ImageStatus::PendingDelete
            | ImageStatus::Deactivated => {
                return Err(WaitError::Status(image.status.as_str().to_owned()));
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(POLL_MAX);
    }
}

/// Run the hook; `Err((status, output tail))` unless it exits 0. Bounded like the upload.
async fn run_hook(hook: &str, req: &UploadRequest, id: &str) -> Result<(), (String, String)> {
    let mut cmd = tokio::process::Command::new(hook);
    cmd.arg(&req.provider)
        .arg(id)
        .arg(&req.file.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tracing::info!(hook = %hook, provider = %req.provider, id = %id, "running post-upload-hook");
    let mut child = cmd
        .spawn()
        .map_err(|e| (format!("could not start: {e}"), String::new()))?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let mut buf_out = Vec::new();
        let mut buf_err = Vec::new();
        let read_out = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut buf_out).await;
            }
        };
        let read_err = async {
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut buf_err).await;
            }
        };
        let ((), (), status) = tokio::join!(read_out, read_err, child.wait());
        buf_out.extend_from_slice(&buf_err);
        (status, buf_out)
    };
    match tokio::time::timeout(req.timeout, run).await {
        Err(_) => Err((
            format!("did not finish within {} s", req.timeout.as_secs()),
            String::new(),
        )),
        Ok((Err(e), _)) => Err((format!("could not wait for it: {e}"), String::new())),
        Ok((Ok(status), output)) if !status.success() => {
            let status = match status.code() {
                Some(c) => format!("exit code {c}"),
                None => format!(
                    "killed by signal {}",
                    std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
                ),
            };
            Err((status, tail(&output, HOOK_OUTPUT_TAIL)))
        }
        Ok(_) => Ok(()),
    }
}

/// The last `max` bytes of `output` as text (cut at a character boundary), trimmed.
fn tail(output: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    if start > 0 {
        format!("...{cut}")
    } else {
        cut.to_owned()
    }
}

/// Deletes the image unless disarmed: awaited explicitly on failures ([`Self::delete_now`]);
/// if the upload future is dropped mid-way, a detached task deletes it (when a runtime runs).
struct DeleteOnDrop<'a> {
    client: &'a OpenStackClient,
    id: Option<String>,
}

impl<'a> DeleteOnDrop<'a> {
    fn new(client: &'a OpenStackClient, id: &str) -> Self {
        Self {
            client,
            id: Some(id.to_owned()),
        }
    }

    fn disarm(&mut self) {
        self.id = None;
    }

    async fn delete_now(&mut self) -> Cleanup {
        let Some(id) = self.id.take() else {
            return Cleanup::Deleted;
        };
        match tokio::time::timeout(CLEANUP_TIMEOUT, self.client.delete_image(&id)).await {
            Ok(Ok(())) | Ok(Err(CloudError::NotFound { .. })) => Cleanup::Deleted,
            Ok(Err(e)) => {
                tracing::warn!(id = %id, error = %e, "could not delete a failed upload's image");
                Cleanup::DeleteFailed(e.to_string())
            }
            Err(_) => {
                Cleanup::DeleteFailed(format!("no answer within {} s", CLEANUP_TIMEOUT.as_secs()))
            }
        }
    }
}

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(id = %id, "upload cancelled: its image was left in the cloud");
            return;
        };
        let client = self.client.clone();
        tracing::warn!(id = %id, "upload cancelled: deleting its image");
        rt.spawn(async move {
            if let Err(e) = tokio::time::timeout(CLEANUP_TIMEOUT, client.delete_image(&id)).await {
                tracing::warn!(id = %id, error = %e, "could not delete a cancelled upload's image");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_format() {
        let f = |fmt: &str| format_image_name(fmt, "ubuntu-jammy", 1_700_000_000);
        assert_eq!(
            f("{image_name}-{timestamp}").unwrap(),
            "ubuntu-jammy-1700000000"
        );
        assert_eq!(f("np-{image_name}").unwrap(), "np-ubuntu-jammy");
        assert_eq!(f("{{x}}-{image_name}").unwrap(), "{x}-ubuntu-jammy");
        assert_eq!(f("{timestamp}{timestamp}").unwrap(), "17000000001700000000");
        for bad in ["{image}", "{image_name", "a}b", "{}", "{timestamp:08}", ""] {
            assert!(
                matches!(f(bad), Err(UploadError::NameFormat { .. })),
                "{bad:?}"
            );
        }
        let e = f("{build}").unwrap_err().to_string();
        assert!(e.contains("unknown field {build}"), "{e}");
    }

    #[test]
    fn names_match_their_diskimage_only() {
        let m = |fmt: &str, image: &str, name: &str| match_image_name(fmt, image, name).is_some();
        let upstream = "{image_name}-{timestamp}";
        assert!(m(upstream, "ubuntu-jammy", "ubuntu-jammy-1700000000"));
        // Another diskimage whose name extends this one's is not this one's.
        assert!(!m(upstream, "ubuntu", "ubuntu-jammy-1700000000"));
        assert!(!m(upstream, "ubuntu-jammy", "ubuntu-jammy-"));
        assert!(!m(upstream, "ubuntu-jammy", "ubuntu-jammy-17x"));
        assert!(!m(
            upstream,
            "ubuntu-jammy",
            "ubuntu-jammy-1700000000.qcow2"
        ));
        // Digits may be followed by more of the format, even more digits.
        assert!(m("{image_name}-{timestamp}-1", "centos", "centos-123-1"));
        assert!(m("np {{{image_name}}} {timestamp}", "f40", "np {f40} 99"));
        assert!(m("{image_name}", "plain", "plain"));
        assert!(!m("{image_name", "plain", "plain"));
        // Round trip with the formatter.
        let name = format_image_name(upstream, "debian", 1_700_000_123).unwrap();
        assert_eq!(
            match_image_name(upstream, "debian", &name),
            Some(Some(1_700_000_123))
        );
        assert_eq!(
            match_image_name("{image_name}", "plain", "plain"),
            Some(None)
        );
    }

    #[test]
    fn format_mapping() {
        assert_eq!(glance_formats("qcow2").unwrap(), ("qcow2", "bare"));
        assert_eq!(glance_formats("raw").unwrap(), ("raw", "bare"));
        assert_eq!(glance_formats("vhd").unwrap(), ("vhd", "bare"));
        let e = glance_formats("tar").unwrap_err().to_string();
        assert!(e.starts_with("tar images cannot be uploaded"), "{e}");
        assert!(e.contains("qcow2, raw, vhd"), "{e}");
    }

    fn request() -> UploadRequest {
        UploadRequest {
            provider: "east".into(),
            image_name: "ubuntu-jammy".into(),
            build_id: "0000000003".into(),
            upload_id: "0000000011".into(),
            name_format: "{image_name}-{timestamp}".into(),
            timestamp: 1_700_000_123,
            file: BuiltFile {
                format: "qcow2".into(),
                path: "/images/ubuntu-jammy-0000000003.qcow2".into(),
                size: 1,
                md5: "d41d8cd98f00b204e9800998ecf8427e".into(),
                sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            },
            meta: IndexMap::from([
                ("hw_rng_model".to_owned(), "virtio".to_owned()),
                (meta::PROVIDER.to_owned(), "spoofed".to_owned()),
            ]),
            timeout: Duration::from_secs(60),
            post_upload_hook: None,
            progress: None,
        }
    }

    #[test]
    fn create_request_properties() {
        let c = request().create_image().unwrap();
        assert_eq!(c.name, "ubuntu-jammy-1700000123");
        assert_eq!(
            (c.disk_format.as_str(), c.container_format.as_str()),
            ("qcow2", "bare")
        );
        assert_eq!(c.visibility, None);
        let props: Vec<(&str, &str)> = c
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            props,
            [
                ("hw_rng_model", "virtio"),
                ("nodepool_build_id", "0000000003"),
                ("nodepool_provider_name", "east"),
                ("nodepool_upload_id", "0000000011"),
                (
                    "owner_specified.openstack.md5",
                    "d41d8cd98f00b204e9800998ecf8427e"
                ),
                (
                    "owner_specified.openstack.sha256",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                ),
            ]
        );
        let mut tar = request();
        tar.file.format = "tar".into();
        assert!(matches!(
            tar.create_image(),
            Err(UploadError::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn leftover_only_when_delete_failed() {
        let hook = |cleanup| {
            UploadError::Failed(Box::new(UploadFailure {
                provider: "p".into(),
                image: "img".into(),
                external_id: Some("img-1".into()),
                reason: FailureReason::Hook {
                    hook: "false".into(),
                    status: "exit code 1".into(),
                    output_tail: String::new(),
                },
                cleanup,
            }))
        };
        assert_eq!(hook(Cleanup::Deleted).leftover_image(), None);
        assert_eq!(
            hook(Cleanup::DeleteFailed("503".into())).leftover_image(),
            Some("img-1")
        );
        assert_eq!(
            hook(Cleanup::Deleted).to_string(),
            "upload of img to p (image img-1): post-upload-hook \"false\" failed: exit code 1; \
             output: \"\"; the cloud image was deleted"
        );
        assert!(hook(Cleanup::Deleted).failure().is_some());
        assert!(glance_formats("tar").unwrap_err().failure().is_none());
    }

    #[test]
    fn output_tail() {
        assert_eq!(tail(b"abc\n", 10), "abc");
        assert_eq!(tail(b"0123456789abcdef", 4), "...cdef");
        assert_eq!(tail("ééé".as_bytes(), 3), "...é");
    }

    #[tokio::test]
    async fn hook_gets_provider_id_and_file_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hook.sh");
        let out = dir.path().join("args");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$@\" > {}\nexit 0\n", out.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let req = request();
        run_hook(script.to_str().unwrap(), &req, "img-9")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "east img-9 /images/ubuntu-jammy-0000000003.qcow2\n"
        );
        let (status, output) = run_hook("false", &req, "img-9").await.unwrap_err();
        assert_eq!((status.as_str(), output.as_str()), ("exit code 1", ""));
        let sh = dir.path().join("fail.sh");
        std::fs::write(
            &sh,
            "#!/bin/sh\necho first\necho 'quota gone' >&2\nexit 4\n",
        )
        .unwrap();
        std::fs::set_permissions(&sh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (status, output) = run_hook(sh.to_str().unwrap(), &req, "i").await.unwrap_err();
        assert_eq!(status, "exit code 4");
        assert_eq!(output, "first\nquota gone");
        let (status, _) = run_hook("/nonexistent/hook", &req, "i").await.unwrap_err();
        assert!(status.starts_with("could not start"), "{status}");
    }
}
