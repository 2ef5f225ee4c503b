//! How a label boots in a provider: which image (newest ready upload or cloud image) and flavor.

use super::Boot;
use crate::config::model::{OpenStackProvider, Pool, PoolLabel};
use crate::reconcile::world::{CloudView, ObservedFlavor, World};
use crate::state::UploadState;
use std::cell::RefCell;
use std::collections::HashMap;

/// The image and flavor a pool label boots with: they depend on the world and the config
/// only, so one plan works each out once, however many nodes of the label it decides about.
#[derive(Default)]
pub struct Boots<'c> {
    chosen: RefCell<HashMap<PoolLabelKey<'c>, Result<Choice, String>>>,
}

/// (provider, pool, label) names.
type PoolLabelKey<'c> = (&'c str, &'c str, &'c str);

#[derive(Clone)]
struct Choice {
    image_id: String,
    image_name: String,
    upload_id: Option<String>,
    flavor: ObservedFlavor,
}

impl<'c> Boots<'c> {
    /// Resolve image and flavor for `label` of `pool` in `provider`, or say why it cannot
    /// boot. A diskimage whose upload to this provider is planned in `planned` boots once
    /// that upload is done (`Boot::after`). `nth` picks the availability zone.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        &self,
        world: &World,
        planned: &super::Plan,
        view: &CloudView,
        provider: &'c OpenStackProvider,
        pool: &'c Pool,
        label: &'c PoolLabel,
        nth: u64,
    ) -> Result<Boot, String> {
        let key = (
            provider.name.as_str(),
            pool.name.as_str(),
            label.name.as_str(),
        );
        let chosen = self
            .chosen
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                let (image_id, image_name, upload_id) = image(world, view, provider, label)?;
                let flavor = flavor(view, label)?.clone();
                Ok(Choice {
                    image_id,
                    image_name,
                    upload_id,
                    flavor,
                })
            })
            .clone();
        let (choice, after) = match chosen {
            Ok(c) => (c, None),
            Err(e) => {
                // A diskimage whose upload to this provider is planned above boots once it
                // is done.
                let Some(d) = &label.diskimage else {
                    return Err(e);
                };
                let address = format!("image_upload.{}.{d}", provider.name);
                if !planned.actions.iter().any(|a| a.address == address) {
                    return Err(e);
                }
                let flavor = flavor(view, label)?.clone();
                let c = Choice {
                    image_id: String::new(),
                    image_name: d.clone(),
                    upload_id: None,
                    flavor,
                };
                (c, Some(address))
            }
        };
        let az = (!pool.availability_zones.is_empty()).then(|| {
            let i = usize::try_from(nth).unwrap_or(0) % pool.availability_zones.len();
            pool.availability_zones[i].clone()
        });
        Ok(Boot {
            image_id: choice.image_id,
            image_name: choice.image_name,
            after,
            upload_id: choice.upload_id,
            flavor_id: choice.flavor.id,
            flavor_name: choice.flavor.name,
            vcpus: choice.flavor.vcpus,
            ram_mb: choice.flavor.ram_mb,
            az,
        })
    }
}

fn image(
    world: &World,
    view: &CloudView,
    provider: &OpenStackProvider,
    label: &PoolLabel,
) -> Result<(String, String, Option<String>), String> {
    if let Some(diskimage) = &label.diskimage {
        // The newest READY upload of this image to this provider whose image the cloud has.
        let upload = world
            .uploads
            .iter()
            .filter(|u| {
                u.provider == provider.name
                    && &u.image_name == diskimage
                    && u.state == UploadState::Ready
            })
            .filter(|u| {
                u.details.external_id.as_deref().is_some_and(|id| {
                    view.images
                        .iter()
                        .any(|i| i.id == id && i.status == "active")
                })
            })
            .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        return match upload {
            Some(u) => Ok((
                u.details.external_id.clone().unwrap_or_default(),
                diskimage.clone(),
                Some(u.id.clone()),
            )),
            None => Err(format!(
                "diskimage {diskimage} has no ready upload in provider {}",
                provider.name
            )),
        };
    }
    let name = label.cloud_image.as_deref().unwrap_or_default();
    let ci = provider
        .cloud_images
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("cloud-image {name} is not configured"))?;
    let found = view
        .images
        .iter()
        .filter(|i| i.status == "active")
        .filter(|i| match (&ci.image_id, &ci.image_filters) {
            (Some(id), _) => &i.id == id,
            (None, Some(filters)) => filters
                .iter()
                .all(|(k, v)| i.properties.get(k) == Some(&v.0)),
            (None, None) => i.name == ci.image_name.as_deref().unwrap_or(&ci.name),
        })
        .max_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    match found {
        Some(i) => Ok((i.id.clone(), ci.name.clone(), None)),
        None => Err(format!(
            "cloud image {} ({}) is not in provider {}",
            ci.name,
            ci.image_id
                .as_deref()
                .map(|id| format!("id {id}"))
                .unwrap_or_else(|| format!(
                    "name {}",
                    ci.image_name.as_deref().unwrap_or(&ci.name)
                )),
            provider.name
        )),
    }
}

/// As upstream: with `min-ram`, the smallest flavor with at least that much RAM (whose name
/// contains `flavor-name`, if given); with `flavor-name` only, the flavor of that exact name
/// or id.
pub fn flavor<'v>(view: &'v CloudView, label: &PoolLabel) -> Result<&'v ObservedFlavor, String> {
    let usable = view.flavors.iter().filter(|f| !f.disabled);
    let found = match (label.min_ram, &label.flavor_name) {
        (Some(min), name) => usable
            .filter(|f| {
                f.ram_mb >= min && name.as_ref().is_none_or(|n| f.name.contains(n.as_str()))
            })
            .min_by(|a, b| (a.ram_mb, a.vcpus, &a.name).cmp(&(b.ram_mb, b.vcpus, &b.name))),
        (None, Some(name)) => usable
            .into_iter()
            .find(|f| &f.name == name || &f.id == name),
        (None, None) => None,
    };
    found.ok_or_else(|| match (label.min_ram, &label.flavor_name) {
        (Some(min), Some(n)) => format!("no flavor named like {n} with at least {min} MB of RAM"),
        (Some(min), None) => format!("no flavor with at least {min} MB of RAM"),
        (None, Some(n)) => format!("no flavor named {n}"),
        (None, None) => "no flavor configured".to_owned(),
    })
}
