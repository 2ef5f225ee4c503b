//! Operator commands on images: build one now, upload the newest build now, delete an upload
//! or a build (each a one-action plan carried out by the same apply as everything else), and
//! pause or unpause an image (a record the planner reads).

use super::{OpError, Workspace};
use crate::builder::match_image_name;
use crate::cloud::{ImageQuery, ImageStatus};
use crate::config::diagnostic::did_you_mean;
use crate::reconcile::plan::{Action, ActionKind, BuildRef, Plan, PlanOptions};
use crate::reconcile::world::{ImageOwner, ImageOwners, meta};
use crate::state::{
    AdoptedUpload, BuildState, ImagePause, Store, UploadState, format_age, now_unix,
};
use std::collections::BTreeMap;

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

/// One cloud image `image-adopt` takes over as a ready upload (or would, on a dry run).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Adoption {
    pub provider: String,
    /// The diskimage its name belongs to (by the provider's `image-name-format`).
    pub image: String,
    pub external_id: String,
    pub external_name: String,
    /// Glance's `disk_format`.
    pub format: Option<String>,
    /// The ids upstream Nodepool gave it (image properties), for the operator's records.
    pub upstream_build_id: Option<String>,
    pub upstream_upload_id: Option<String>,
    /// When the cloud created it (unix seconds).
    pub created_at: i64,
    /// The upload record made for it; `None` on a dry run.
    pub upload_id: Option<String>,
}

/// A candidate left alone, with why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NotAdopted {
    pub provider: String,
    pub external_id: String,
    pub external_name: String,
    pub why: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AdoptOutcome {
    pub adopted: Vec<Adoption>,
    pub not_adopted: Vec<NotAdopted>,
}

/// `nodepool image-adopt PROVIDER [IMAGE]`: take over the images in `provider`'s cloud that
/// carry our ownership properties (as upstream Nodepool's uploads do) but that no upload
/// record owns, and whose name is one the provider's `image-name-format` gives a diskimage it
/// lists. Each becomes a `ready` upload of no build of ours, so labels launch from it at
/// once, leak cleanup leaves it alone, and rotation replaces it once builds of ours are
/// uploaded. Images in another state, or named for no listed diskimage, are reported and
/// left alone. Nothing in the cloud changes.
pub async fn adopt(
    ws: &mut Workspace,
    provider: &str,
    image: Option<&str>,
    dry_run: bool,
) -> Result<AdoptOutcome, OpError> {
    let config = &ws.loaded.config;
    let Some(p) = config.provider(provider) else {
        return Err(OpError::Refused(format!(
            "provider {provider} is not configured{}",
            did_you_mean(provider, config.providers.iter().map(|p| p.name.as_str()))
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        )));
    };
    if let Some(name) = image
        && !p.diskimages.iter().any(|d| d.name == name)
    {
        return Err(OpError::Refused(format!(
            "provider {provider} does not list diskimage {name}{}",
            did_you_mean(name, p.diskimages.iter().map(|d| d.name.as_str()))
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        )));
    }
    let Some(client) = ws.clients.get(provider) else {
        let why = ws.unresolved.get(provider).cloned().unwrap_or_default();
        return Err(OpError::Refused(format!(
            "provider {provider} has no usable credentials: {why}"
        )));
    };
    // Held from before the listing to the last write: an apply running meanwhile could
    // otherwise record one of these images itself (an upload finishing) or delete it as a leak.
    let lease = if dry_run {
        None
    } else {
        Some(super::apply::lease(&mut ws.store, "nodepool image-adopt")?)
    };
    let query = ImageQuery {
        properties: BTreeMap::from([(meta::PROVIDER.to_owned(), provider.to_owned())]),
        ..ImageQuery::default()
    };
    let found = client.list_images(&query).await?;
    let ours = ws.store.read().uploads_of_provider(provider)?;
    let owners = ImageOwners::new(&ours);

    let mut out = AdoptOutcome::default();
    for i in &found {
        let name = i.name.clone().unwrap_or_default();
        let left = |why: String| NotAdopted {
            provider: provider.to_owned(),
            external_id: i.id.clone(),
            external_name: name.clone(),
            why,
        };
        match owners.of(provider, &i.id, &i.properties) {
            Some(ImageOwner::Recorded) => continue,
            Some(ImageOwner::InFlight) => {
                out.not_adopted.push(left(format!(
                    "it is upload {} of ours, not recorded as done yet",
                    i.properties
                        .get(meta::UPLOAD_ID)
                        .map_or("?", String::as_str)
                )));
                continue;
            }
            None => {}
        }
        let fits: Vec<(&str, Option<i64>)> = p
            .diskimages
            .iter()
            .filter(|d| image.is_none_or(|want| d.name == want))
            .filter_map(|d| {
                let stamp = match_image_name(&p.image_name_format, &d.name, &name)?;
                Some((d.name.as_str(), stamp))
            })
            .collect();
        let (diskimage, stamp) = match fits.as_slice() {
            [one] => *one,
            // Named for another diskimage than the one asked for: not a candidate.
            [] if image.is_some() => continue,
            [] => {
                out.not_adopted.push(left(format!(
                    "its name is not one image-name-format {:?} gives a diskimage of provider {provider}",
                    p.image_name_format
                )));
                continue;
            }
            many => {
                out.not_adopted.push(left(format!(
                    "its name fits several diskimages ({})",
                    many.iter().map(|(d, _)| *d).collect::<Vec<_>>().join(", ")
                )));
                continue;
            }
        };
        if i.status != ImageStatus::Active {
            out.not_adopted
                .push(left(format!("it is {}, not active", i.status.as_str())));
            continue;
        }
        out.adopted.push(Adoption {
            provider: provider.to_owned(),
            image: diskimage.to_owned(),
            external_id: i.id.clone(),
            external_name: name.clone(),
            upstream_build_id: i.properties.get(meta::BUILD_ID).cloned(),
            upstream_upload_id: i.properties.get(meta::UPLOAD_ID).cloned(),
            // Upstream's own record of the upload time is the name's timestamp.
            created_at: stamp
                .or(i.created_at.map(|t| t.timestamp()))
                .unwrap_or_else(now_unix),
            upload_id: None,
            format: i.disk_format.clone(),
        });
    }
    let Some(lease) = lease.filter(|_| !out.adopted.is_empty()) else {
        return Ok(out);
    };
    let adopted = &mut out.adopted;
    ws.store.write_under_lease(&lease, |w| {
        for a in adopted.iter_mut() {
            let u = w.adopt_upload(&AdoptedUpload {
                image_name: a.image.clone(),
                provider: a.provider.clone(),
                format: a.format.clone(),
                external_id: a.external_id.clone(),
                external_name: a.external_name.clone(),
                created_at: a.created_at,
            })?;
            a.upload_id = Some(u.id);
        }
        Ok(())
    })?;
    drop(lease);
    Ok(out)
}
