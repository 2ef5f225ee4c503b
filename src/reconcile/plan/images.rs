//! The builder's half of the plan: diskimage builds, uploads to every provider, rotation and
//! cleanup. Builds and uploads are planned like everything else and shown in `plan`.

use super::{Action, ActionKind, BuildRef, Note, Plan, PlanOptions};
use crate::config::{Config, DiskImage};
use crate::reconcile::world::World;
use crate::state::{BuildState, ImageBuild, ImageUpload, UploadState, format_age};
use std::collections::{BTreeMap, BTreeSet};

/// Ready builds and ready uploads kept per image (and per provider for uploads).
pub const KEEP: usize = 2;

/// How long after a failed build the next automatic attempt waits.
pub const FAILED_BUILD_BACKOFF: i64 = 600;

/// Failed uploads of a build to a provider are retried at once after the first failure, then
/// after this many seconds, doubling per further failure up to [`UPLOAD_RETRY_MAX`].
pub const UPLOAD_RETRY_BASE: i64 = 30;
pub const UPLOAD_RETRY_MAX: i64 = 3600;

/// The wait before the next upload attempt after `failures` consecutive failed ones.
pub fn upload_retry_wait(failures: usize) -> i64 {
    match failures {
        0 | 1 => 0,
        n => {
            let doublings = u32::try_from(n - 2).unwrap_or(u32::MAX).min(16);
            (UPLOAD_RETRY_BASE << doublings).min(UPLOAD_RETRY_MAX)
        }
    }
}

/// Formats each diskimage must be built in: its own `formats` plus what each provider that
/// uploads it needs (its clouds.yaml `image_format`, default qcow2).
pub fn required_formats(config: &Config, world: &World, image: &DiskImage) -> Vec<String> {
    let mut out: BTreeSet<String> = image.formats.iter().cloned().collect();
    for p in &config.providers {
        if p.diskimages.iter().any(|d| d.name == image.name) {
            out.insert(
                world
                    .image_formats
                    .get(&p.name)
                    .cloned()
                    .unwrap_or_else(|| "qcow2".into()),
            );
        }
    }
    out.into_iter().collect()
}

/// Whether the builder handles this image at all: not abstract, and uploaded somewhere or
/// given explicit formats.
fn managed(config: &Config, image: &DiskImage) -> bool {
    !image.r#abstract
        && (!image.formats.is_empty()
            || config
                .providers
                .iter()
                .any(|p| p.diskimages.iter().any(|d| d.name == image.name)))
}

fn newest_first(mut v: Vec<&ImageBuild>) -> Vec<&ImageBuild> {
    v.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    v
}

pub(super) fn plan_images(config: &Config, world: &World, opts: &PlanOptions, out: &mut Plan) {
    let now = world.now;
    let mut builds_by_image: BTreeMap<&str, Vec<&ImageBuild>> = BTreeMap::new();
    for b in &world.builds {
        builds_by_image
            .entry(b.image_name.as_str())
            .or_default()
            .push(b);
    }
    // Build decisions, per diskimage.
    let mut planned_builds: BTreeSet<String> = BTreeSet::new();
    for image in config.diskimages.iter().filter(|d| managed(config, d)) {
        let builds = newest_first(
            builds_by_image
                .get(image.name.as_str())
                .cloned()
                .unwrap_or_default(),
        );
        let formats = required_formats(config, world, image);
        if let Some(reason) = build_reason(config, world, image, &builds, &formats, opts, out) {
            planned_builds.insert(image.name.clone());
            out.actions.push(Action {
                address: format!("image_build.{}", image.name),
                reason,
                kind: ActionKind::BuildImage {
                    image: image.name.clone(),
                    formats,
                },
            });
        }
    }
    // Interrupted or superseded builds, and builds of images no longer managed.
    for (name, builds) in &builds_by_image {
        let image = config.diskimage(name).filter(|d| managed(config, d));
        let builds = newest_first(builds.clone());
        let ready: Vec<&&ImageBuild> = builds
            .iter()
            .filter(|b| b.state == BuildState::Ready)
            .collect();
        for b in &builds {
            let in_use = world
                .uploads
                .iter()
                .any(|u| u.build_id.as_deref() == Some(b.id.as_str()));
            let why = match (image, b.state) {
                (_, BuildState::Deleting) => Some("deleting".to_owned()),
                (None, _) if !in_use => Some(format!(
                    "diskimage {name} is no longer built (removed, abstract or unused)"
                )),
                (Some(img), BuildState::Building)
                    if now - b.started_at
                        > i64::try_from(img.build_timeout).unwrap_or(i64::MAX) =>
                {
                    Some(format!(
                        "interrupted: building since {} ago, beyond build-timeout {} s",
                        format_age(now - b.started_at),
                        img.build_timeout
                    ))
                }
                (Some(_), BuildState::Ready)
                    if !in_use
                        && ready
                            .iter()
                            .position(|r| r.id == b.id)
                            .is_some_and(|i| i >= KEEP) =>
                {
                    Some(format!("only the {KEEP} newest ready builds are kept"))
                }
                (Some(_), BuildState::Failed)
                    if ready.first().is_some_and(|r| r.started_at > b.started_at) =>
                {
                    Some("a newer build succeeded".to_owned())
                }
                _ => None,
            };
            if let Some(reason) = why {
                out.actions.push(Action {
                    address: format!("image_build.{name}[{}]", b.id),
                    reason,
                    kind: ActionKind::DeleteBuild {
                        image: (*name).to_owned(),
                        build_id: b.id.clone(),
                    },
                });
                continue;
            }
            let Some(img) = image else { continue };
            let formats = prunable_formats(config, world, img, b);
            if !formats.is_empty() {
                let providers: Vec<&str> = upload_targets(config, world, name)
                    .map(|(p, _)| p)
                    .collect();
                out.actions.push(Action {
                    address: format!("image_build.{name}[{}]", b.id),
                    reason: format!(
                        "delete-after-upload: every provider has it ({}); remove the local {} \
                         file{}{}",
                        providers.join(", "),
                        formats.join(", "),
                        if formats.len() == 1 { "" } else { "s" },
                        if img.keep_formats.is_empty() {
                            String::new()
                        } else {
                            format!(" (keep-formats: {})", img.keep_formats.join(", "))
                        }
                    ),
                    kind: ActionKind::PruneBuild {
                        image: (*name).to_owned(),
                        build_id: b.id.clone(),
                        formats,
                    },
                });
            }
        }
    }
    plan_uploads(config, world, &builds_by_image, &planned_builds, out);
}

/// The providers that take `image` and are not paused for it, with the format each needs.
fn upload_targets<'c>(
    config: &'c Config,
    world: &World,
    image: &str,
) -> impl Iterator<Item = (&'c str, String)> {
    let formats = &world.image_formats;
    config
        .providers
        .iter()
        .filter(move |p| p.diskimages.iter().any(|d| d.name == image && !d.pause))
        .map(move |p| {
            let f = formats.get(&p.name).cloned();
            (p.name.as_str(), f.unwrap_or_else(|| "qcow2".into()))
        })
}

/// Whether `provider` has (or is getting) an upload of `build`.
fn has_upload(world: &World, provider: &str, build: &ImageBuild, ready_only: bool) -> bool {
    world.uploads.iter().any(|u| {
        u.provider == provider
            && u.build_id.as_deref() == Some(build.id.as_str())
            && (u.state == UploadState::Ready || (!ready_only && u.state == UploadState::Uploading))
    })
}

fn build_reason(
    config: &Config,
    world: &World,
    image: &DiskImage,
    builds: &[&ImageBuild],
    formats: &[String],
    opts: &PlanOptions,
    out: &mut Plan,
) -> Option<String> {
    let now = world.now;
    let forced = opts.force_builds.contains(&image.name);
    if let Some(p) = world.image_pause(&image.name) {
        out.notes.push(Note {
            address: format!("image_build.{}", image.name),
            message: format!(
                "paused with `nodepool image-pause` {} ago{}: no build or upload is planned \
                 until `nodepool image-unpause {}`",
                format_age(now - p.paused_at),
                p.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                image.name
            ),
        });
        return None;
    }
    if image.pause && !forced {
        if !builds.iter().any(|b| b.state == BuildState::Ready) {
            out.notes.push(Note {
                address: format!("image_build.{}", image.name),
                message: "paused: no build will be made".into(),
            });
        }
        return None;
    }
    let timeout = i64::try_from(image.build_timeout).unwrap_or(i64::MAX);
    if builds
        .iter()
        .any(|b| b.state == BuildState::Building && now - b.started_at <= timeout)
    {
        return None;
    }
    if forced {
        return Some("requested with `nodepool image-build`".into());
    }
    let newest_ready = builds.iter().find(|b| b.state == BuildState::Ready);
    let newest = builds.first();
    if let Some(f) = newest.filter(|b| b.state == BuildState::Failed)
        && now - f.finished_at.unwrap_or(f.state_time) < FAILED_BUILD_BACKOFF
    {
        out.notes.push(Note {
            address: format!("image_build.{}", image.name),
            message: format!(
                "build {} failed{} {} ago; the next attempt waits {} s after a failure",
                f.id,
                f.exit_code
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default(),
                format_age(now - f.finished_at.unwrap_or(f.state_time)),
                FAILED_BUILD_BACKOFF
            ),
        });
        return None;
    }
    match newest_ready {
        None => Some("no ready build".into()),
        Some(b) if now - b.started_at > i64::try_from(image.rebuild_age).unwrap_or(i64::MAX) => {
            Some(format!(
                "newest build {} is {} old, older than rebuild-age {} s",
                b.id,
                format_age(now - b.started_at),
                image.rebuild_age
            ))
        }
        Some(b) => {
            let missing: Vec<&String> = formats.iter().filter(|f| !b.formats.contains(f)).collect();
            if !missing.is_empty() {
                return Some(format!(
                    "newest build {} lacks format{} {}",
                    b.id,
                    if missing.len() == 1 { "" } else { "s" },
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            // A provider that still needs the newest build, whose file in that provider's
            // format was removed after the other uploads (delete-after-upload).
            upload_targets(config, world, &image.name)
                .find(|(p, f)| !b.has_file(f) && !has_upload(world, p, b, false))
                .map(|(p, f)| {
                    format!(
                        "provider {p} needs newest build {}, whose {f} file was removed after \
                         upload (delete-after-upload)",
                        b.id
                    )
                })
        }
    }
}

/// `delete-after-upload`: the formats of a ready build whose local files can go, because every
/// provider that takes the image has a ready upload of it (minus `keep-formats`).
fn prunable_formats(
    config: &Config,
    world: &World,
    image: &DiskImage,
    b: &ImageBuild,
) -> Vec<String> {
    if !image.delete_after_upload || b.state != BuildState::Ready {
        return Vec::new();
    }
    let mut targets = upload_targets(config, world, &image.name).peekable();
    if targets.peek().is_none() {
        return Vec::new(); // uploaded nowhere: nothing says the files are done with
    }
    let uploading = world
        .uploads
        .iter()
        .any(|u| u.build_id.as_deref() == Some(b.id.as_str()) && u.state == UploadState::Uploading);
    if uploading || !targets.all(|(p, _)| has_upload(world, p, b, true)) {
        return Vec::new();
    }
    b.formats
        .iter()
        .filter(|f| b.has_file(f) && !image.keep_formats.contains(f))
        .cloned()
        .collect()
}

fn plan_uploads(
    config: &Config,
    world: &World,
    builds_by_image: &BTreeMap<&str, Vec<&ImageBuild>>,
    planned_builds: &BTreeSet<String>,
    out: &mut Plan,
) {
    let now = world.now;
    let mut uploads: BTreeMap<(&str, &str), Vec<&ImageUpload>> = BTreeMap::new();
    for u in &world.uploads {
        uploads
            .entry((u.provider.as_str(), u.image_name.as_str()))
            .or_default()
            .push(u);
    }
    for list in uploads.values_mut() {
        list.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    }
    // New uploads: each provider gets the newest ready build it lacks (or the build planned now).
    for p in &config.providers {
        for pd in &p.diskimages {
            let Some(image) = config.diskimage(&pd.name).filter(|d| managed(config, d)) else {
                continue;
            };
            let existing = uploads
                .get(&(p.name.as_str(), image.name.as_str()))
                .cloned()
                .unwrap_or_default();
            if world.image_pause(&image.name).is_some() {
                continue; // noted once, at image_build
            }
            if pd.pause || image.pause {
                if !existing.iter().any(|u| u.state == UploadState::Ready) {
                    out.notes.push(Note {
                        address: format!("image_upload.{}.{}", p.name, image.name),
                        message: "paused: nothing will be uploaded".into(),
                    });
                }
                continue;
            }
            let timeout = i64::try_from(p.image_upload_timeout).unwrap_or(i64::MAX);
            if existing
                .iter()
                .any(|u| u.state == UploadState::Uploading && now - u.state_time <= timeout)
            {
                continue;
            }
            let newest_ready = builds_by_image.get(image.name.as_str()).and_then(|bs| {
                newest_first(bs.clone())
                    .into_iter()
                    .find(|b| b.state == BuildState::Ready)
            });
            let format = world
                .image_formats
                .get(&p.name)
                .cloned()
                .unwrap_or_else(|| "qcow2".into());
            let (build, reason) = if planned_builds.contains(&image.name) {
                (
                    BuildRef::Planned,
                    format!(
                        "upload the build planned above (image_build.{})",
                        image.name
                    ),
                )
            } else {
                match newest_ready {
                    Some(b)
                        if !existing.iter().any(|u| {
                            u.build_id.as_deref() == Some(b.id.as_str())
                                && match u.state {
                                    UploadState::Failed | UploadState::Deleting => false,
                                    // One stuck past its timeout is being replaced below.
                                    UploadState::Uploading => now - u.state_time <= timeout,
                                    UploadState::Ready => true,
                                }
                        }) =>
                    {
                        if !b.has_file(&format) {
                            continue; // pruned: a rebuild is planned above
                        }
                        let failed: Vec<&&ImageUpload> = existing
                            .iter()
                            .filter(|u| {
                                u.build_id.as_deref() == Some(b.id.as_str())
                                    && u.state == UploadState::Failed
                            })
                            .collect();
                        let wait = upload_retry_wait(failed.len());
                        if let Some(last) = failed.iter().max_by_key(|u| u.state_time)
                            && now - last.state_time < wait
                        {
                            out.notes.push(Note {
                                address: format!("image_upload.{}.{}", p.name, image.name),
                                message: format!(
                                    "{} uploads of build {} failed, the last {} ago{}; the next \
                                     attempt waits {wait} s",
                                    failed.len(),
                                    b.id,
                                    format_age(now - last.state_time),
                                    last.details
                                        .last_error
                                        .as_deref()
                                        .map(|e| format!(" ({e})"))
                                        .unwrap_or_default()
                                ),
                            });
                            continue;
                        }
                        (
                            BuildRef::Existing(b.id.clone()),
                            if failed.is_empty() {
                                format!("build {} is not in provider {} yet", b.id, p.name)
                            } else {
                                format!(
                                    "build {} is not in provider {} yet (attempt {} after {} \
                                     failed)",
                                    b.id,
                                    p.name,
                                    failed.len() + 1,
                                    failed.len()
                                )
                            },
                        )
                    }
                    _ => continue,
                }
            };
            out.actions.push(Action {
                address: format!("image_upload.{}.{}", p.name, image.name),
                reason,
                kind: ActionKind::UploadImage {
                    provider: p.name.clone(),
                    image: image.name.clone(),
                    build,
                    format,
                },
            });
        }
    }
    // Rotation and cleanup of existing uploads.
    for ((provider, image), list) in &uploads {
        let listed = config
            .provider(provider)
            .is_some_and(|p| p.diskimages.iter().any(|d| d.name == *image))
            && config.diskimage(image).is_some_and(|d| managed(config, d));
        let observed = world.view(provider).is_some();
        let mut ready_seen = 0;
        for u in list {
            let timeout = config.provider(provider).map_or(3600, |p| {
                i64::try_from(p.image_upload_timeout).unwrap_or(i64::MAX)
            });
            let why = match u.state {
                UploadState::Deleting => Some("deleting".to_owned()),
                _ if !listed => Some(format!(
                    "provider {provider} no longer lists diskimage {image}"
                )),
                UploadState::Ready => {
                    ready_seen += 1;
                    (ready_seen > KEEP)
                        .then(|| format!("only the {KEEP} newest ready uploads are kept"))
                }
                UploadState::Uploading if now - u.state_time > timeout => Some(format!(
                    "interrupted: uploading since {} ago, beyond image-upload-timeout {timeout} s",
                    format_age(now - u.state_time)
                )),
                // A failed upload is kept as the count of failures (the retry backoff) while
                // it is the newest build's and nothing has replaced it; its cloud leftovers,
                // if any, go at once.
                UploadState::Failed => {
                    let newest = builds_by_image.get(image).and_then(|bs| {
                        newest_first(bs.clone())
                            .into_iter()
                            .find(|b| b.state == BuildState::Ready)
                    });
                    let superseded = list.iter().any(|r| {
                        r.state == UploadState::Ready
                            && (r.build_id == u.build_id || r.created_at > u.created_at)
                    });
                    if u.details.external_id.is_some() {
                        Some("the upload failed and left an image in the cloud".into())
                    } else if superseded {
                        Some("the upload failed; another upload has replaced it".into())
                    } else if newest.map(|b| b.id.as_str()) != u.build_id.as_deref() {
                        Some("the upload failed; its build is no longer the newest".into())
                    } else {
                        None
                    }
                }
                UploadState::Uploading => None,
            };
            let Some(reason) = why else { continue };
            if !observed && u.details.external_id.is_some() {
                continue;
            }
            out.actions.push(Action {
                address: format!("image_upload.{provider}.{image}[{}]", u.id),
                reason,
                kind: ActionKind::DeleteUpload {
                    provider: (*provider).to_owned(),
                    upload_id: u.id.clone(),
                    external_id: u.details.external_id.clone(),
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_retries_back_off_exponentially_up_to_the_cap() {
        let waits: Vec<i64> = (0..10).map(upload_retry_wait).collect();
        assert_eq!(waits, [0, 0, 30, 60, 120, 240, 480, 960, 1920, 3600]);
        assert_eq!(upload_retry_wait(1_000), UPLOAD_RETRY_MAX);
    }
}
