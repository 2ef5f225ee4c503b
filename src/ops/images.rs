//! Operator commands on images: build one now, upload the newest build now, delete an upload
//! or a build (each a one-action plan carried out by the same apply as everything else), and
//! pause or unpause an image (a record the planner reads).

use super::{OpError, Workspace};
use crate::config::diagnostic::did_you_mean;
use crate::reconcile::plan::{Action, ActionKind, BuildRef, Plan, PlanOptions};
use crate::state::{BuildState, ImagePause, Store, UploadState, format_age, now_unix};

fn known_image<'w>(ws: &'w Workspace, name: &str) -> Result<&'w crate::config::DiskImage, OpError> {
    ws.config().diskimage(name).ok_or_else(|| {
        OpError::Refused(format!(
            "diskimage {name} is not defined in the config{}",
            did_you_mean(name, ws.config().diskimages.iter().map(|d| d.name.as_str()))
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        ))
    })
}

/// The build of `name` the plan would make if forced (refused for an unknown, abstract or
/// paused image).
pub async fn build_plan(
    ws: &mut Workspace,
    name: &str,
    now: i64,
) -> Result<super::plan::Planned, OpError> {
    let image = known_image(ws, name)?;
    if image.r#abstract {
        return Err(OpError::Refused(format!(
            "diskimage {name} is abstract: it is never built"
        )));
    }
    if image.pause {
        return Err(OpError::Refused(format!(
            "diskimage {name} is paused (`pause: true` in the config); unpause it in the config repo first"
        )));
    }
    if let Some(p) = operator_pause(&mut ws.store, name)? {
        return Err(OpError::Refused(format!(
            "diskimage {name} was paused with `nodepool image-pause` {} ago; run \
             `nodepool image-unpause {name}` first",
            format_age(now - p.paused_at)
        )));
    }
    let opts = PlanOptions {
        force_builds: [name.to_owned()].into(),
    };
    let mut planned = super::plan::plan_with(ws, now, &opts).await?;
    planned
        .doc
        .plan
        .actions
        .retain(|a| matches!(&a.kind, ActionKind::BuildImage { image, .. } if image == name));
    planned.doc.summary = planned.doc.plan.summary();
    if planned.doc.plan.is_empty() {
        return Err(OpError::Refused(format!(
            "a build of {name} is already running"
        )));
    }
    Ok(planned)
}

/// Upload the newest ready build of `image` to `provider` now.
pub fn upload_plan(ws: &Workspace, provider: &str, image: &str) -> Result<Plan, OpError> {
    known_image(ws, image)?;
    let p = ws
        .config()
        .provider(provider)
        .ok_or_else(|| OpError::Refused(format!("provider {provider} is not configured")))?;
    if !p.diskimages.iter().any(|d| d.name == image) {
        return Err(OpError::Refused(format!(
            "provider {provider} does not list diskimage {image}"
        )));
    }
    let builds = ws.store.read().builds_of_image(image)?;
    let build = builds
        .iter()
        .filter(|b| b.state == BuildState::Ready)
        .max_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)))
        .ok_or_else(|| {
            OpError::Refused(format!(
                "diskimage {image} has no ready build; run `nodepool image-build {image}`"
            ))
        })?;
    let format = ws
        .clients
        .get(provider)
        .and_then(|c| c.credentials().image_format.clone())
        .unwrap_or_else(|| "qcow2".into());
    if !build.has_file(&format) {
        return Err(OpError::Refused(format!(
            "build {} of {image} has no {format} file{}; run `nodepool image-build {image}`",
            build.id,
            if build.pruned_formats.contains(&format) {
                " any more (removed after upload: delete-after-upload)"
            } else {
                ""
            }
        )));
    }
    Ok(Plan {
        actions: vec![Action {
            address: format!("image_upload.{provider}.{image}"),
            reason: format!(
                "requested with `nodepool image-upload` (build {})",
                build.id
            ),
            kind: ActionKind::UploadImage {
                provider: provider.to_owned(),
                image: image.to_owned(),
                build: BuildRef::Existing(build.id.clone()),
                format,
            },
        }],
        ..Plan::default()
    })
}

/// Delete an upload (its cloud image and record) or a build (its files and record; refused
/// while uploads of it remain).
pub fn delete_plan(
    ws: &Workspace,
    upload: Option<&str>,
    build: Option<&str>,
) -> Result<Plan, OpError> {
    let action = match (upload, build) {
        (Some(id), None) => {
            let u = ws
                .store
                .read()
                .upload(id)?
                .ok_or_else(|| OpError::Refused(format!("upload {id} does not exist")))?;
            Action {
                address: format!("image_upload.{}.{}[{}]", u.provider, u.image_name, u.id),
                reason: "requested with `nodepool image-delete`".into(),
                kind: ActionKind::DeleteUpload {
                    provider: u.provider.clone(),
                    upload_id: u.id.clone(),
                    external_id: u.details.external_id.clone(),
                },
            }
        }
        (None, Some(id)) => {
            let b = ws
                .store
                .read()
                .build(id)?
                .ok_or_else(|| OpError::Refused(format!("build {id} does not exist")))?;
            let uploads = ws.store.read().uploads_of_build(id)?;
            if let Some(u) = uploads.iter().find(|u| u.state != UploadState::Deleting) {
                return Err(OpError::Refused(format!(
                    "build {id} still has upload {} in provider {}; delete its uploads first",
                    u.id, u.provider
                )));
            }
            Action {
                address: format!("image_build.{}[{}]", b.image_name, b.id),
                reason: "requested with `nodepool image-delete`".into(),
                kind: ActionKind::DeleteBuild {
                    image: b.image_name.clone(),
                    build_id: b.id.clone(),
                },
            }
        }
        _ => {
            return Err(OpError::Refused(
                "give exactly one of an upload id or --build".into(),
            ));
        }
    };
    Ok(Plan {
        actions: vec![action],
        ..Plan::default()
    })
}

fn operator_pause(store: &mut Store, name: &str) -> Result<Option<ImagePause>, OpError> {
    Ok(store
        .read()
        .image_pauses()?
        .into_iter()
        .find(|p| p.image_name == name))
}

/// What `image-pause` / `image-unpause` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PauseOutcome {
    /// The pause was recorded (or lifted) now.
    Changed,
    /// It was already so; for a pause, since this record.
    Unchanged(Option<ImagePause>),
}

/// `nodepool image-pause NAME`: no build or upload of the image is planned until it is
/// unpaused (refused for an unknown or abstract image).
pub fn pause(
    ws: &mut Workspace,
    name: &str,
    reason: Option<&str>,
) -> Result<PauseOutcome, OpError> {
    let image = known_image(ws, name)?;
    if image.r#abstract {
        return Err(OpError::Refused(format!(
            "diskimage {name} is abstract: it is never built, so there is nothing to pause"
        )));
    }
    if ws.store.write(|w| w.pause_image(name, reason))? {
        Ok(PauseOutcome::Changed)
    } else {
        Ok(PauseOutcome::Unchanged(operator_pause(
            &mut ws.store,
            name,
        )?))
    }
}

/// `nodepool image-unpause NAME`: lift an operator pause. Works for an image no longer in the
/// config too, so that a stale pause can always be removed.
pub fn unpause(ws: &mut Workspace, name: &str) -> Result<PauseOutcome, OpError> {
    if ws.store.write(|w| w.unpause_image(name))? {
        return Ok(PauseOutcome::Changed);
    }
    known_image(ws, name)?;
    Ok(PauseOutcome::Unchanged(None))
}

/// How long ago an operator pause was made, for messages.
pub fn paused_for(p: &ImagePause) -> String {
    format_age(now_unix() - p.paused_at)
}
