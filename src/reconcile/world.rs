//! What the planner sees: the database's records and each cloud's objects, as plain data.
//!
//! `observe` fills a [`World`] from the state store and the clouds; golden tests write one by
//! hand. Times are unix seconds; nothing here refers to a live connection.

use crate::state::{ImageBuild, ImagePause, ImageUpload, LeakSighting, Node, NodeRequest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Server metadata keys that mark a server as ours (the same keys upstream Nodepool sets, so a
/// migration from upstream keeps recognising its servers).
pub mod meta {
    pub const PROVIDER: &str = "nodepool_provider_name";
    pub const POOL: &str = "nodepool_pool_name";
    pub const NODE_ID: &str = "nodepool_node_id";
    pub const LABEL: &str = "nodepool_node_label";
    pub const GROUPS: &str = "groups";
    /// Image properties of our uploads.
    pub const BUILD_ID: &str = "nodepool_build_id";
    pub const UPLOAD_ID: &str = "nodepool_upload_id";
}

/// Which cloud images our upload records own: an image whose id an upload recorded, or one
/// carrying the upload *and* build ids of an upload of ours whose image id is not recorded yet
/// (in flight, or interrupted before the answer was). Both ids, because upstream's ids are
/// sequences too: an upstream image may carry an upload id of ours for another build.
pub struct ImageOwners<'u> {
    recorded: HashSet<(&'u str, &'u str)>,
    in_flight: HashSet<(&'u str, &'u str, &'u str)>,
}

/// How an upload record owns an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageOwner {
    /// An upload recorded its id.
    Recorded,
    /// It carries the ids of an upload of ours still in flight.
    InFlight,
}

impl<'u> ImageOwners<'u> {
    pub fn new(uploads: impl IntoIterator<Item = &'u ImageUpload>) -> Self {
        let mut owners = ImageOwners {
            recorded: HashSet::new(),
            in_flight: HashSet::new(),
        };
        for u in uploads {
            match u.details.external_id.as_deref() {
                Some(id) => {
                    owners.recorded.insert((u.provider.as_str(), id));
                }
                None => {
                    owners.in_flight.insert((
                        u.provider.as_str(),
                        u.id.as_str(),
                        u.build_id.as_deref().unwrap_or_default(),
                    ));
                }
            }
        }
        owners
    }

    /// The owner of image `id` in `provider`, carrying `properties`, if a record owns it.
    pub fn of(
        &self,
        provider: &str,
        id: &str,
        properties: &BTreeMap<String, String>,
    ) -> Option<ImageOwner> {
        if self.recorded.contains(&(provider, id)) {
            return Some(ImageOwner::Recorded);
        }
        let upload = properties.get(meta::UPLOAD_ID)?;
        let build = properties.get(meta::BUILD_ID).map_or("", String::as_str);
        self.in_flight
            .contains(&(provider, upload.as_str(), build))
            .then_some(ImageOwner::InFlight)
    }
}

/// Everything the planner decides from.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct World {
    /// The time the plan is made for (unix seconds).
    pub now: i64,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub requests: Vec<NodeRequest>,
    #[serde(default)]
    pub builds: Vec<ImageBuild>,
    #[serde(default)]
    pub uploads: Vec<ImageUpload>,
    /// Images paused with `nodepool image-pause` (the config's `pause` is the other way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pauses: Vec<ImagePause>,
    #[serde(default)]
    pub leak_sightings: Vec<LeakSighting>,
    /// Per provider name: what its cloud showed, or why it could not be observed.
    #[serde(default)]
    pub clouds: BTreeMap<String, CloudState>,
    /// Per provider name: the image format its cloud takes (clouds.yaml `image_format`);
    /// qcow2 when absent.
    #[serde(default)]
    pub image_formats: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CloudState {
    /// A complete observation (every list call succeeded).
    Observed(CloudView),
    /// The cloud could not be observed: the planner changes nothing there.
    Unavailable { error: String },
}

/// One complete observation of a provider's cloud.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CloudView {
    #[serde(default)]
    pub servers: Vec<ObservedServer>,
    #[serde(default)]
    pub images: Vec<ObservedImage>,
    #[serde(default)]
    pub floating_ips: Vec<ObservedFloatingIp>,
    #[serde(default)]
    pub ports: Vec<ObservedPort>,
    #[serde(default)]
    pub flavors: Vec<ObservedFlavor>,
    #[serde(default)]
    pub limits: ObservedLimits,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedServer {
    pub id: String,
    pub name: String,
    /// Nova's status: BUILD, ACTIVE, ERROR, ...
    pub status: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: i64,
    #[serde(default)]
    pub vcpus: u64,
    #[serde(default)]
    pub ram_mb: u64,
    /// The fault message of a server in ERROR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
}

impl ObservedServer {
    /// The provider this server says it belongs to (our metadata), if any.
    pub fn owner(&self) -> Option<&str> {
        self.metadata.get(meta::PROVIDER).map(String::as_str)
    }
    pub fn node_id(&self) -> Option<&str> {
        self.metadata.get(meta::NODE_ID).map(String::as_str)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedImage {
    pub id: String,
    pub name: String,
    /// Glance's status: queued, saving, active, ...
    pub status: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFloatingIp {
    pub id: String,
    pub address: String,
    /// `None`: attached to nothing.
    #[serde(default)]
    pub port_id: Option<String>,
    #[serde(default)]
    pub status: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedPort {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub device_owner: String,
    #[serde(default)]
    pub device_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFlavor {
    pub id: String,
    pub name: String,
    pub vcpus: u64,
    pub ram_mb: u64,
    #[serde(default)]
    pub disabled: bool,
}

/// A quota: `limit` `None` means unlimited; `used` counts every server of the project.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub used: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLimits {
    #[serde(default)]
    pub instances: Quota,
    #[serde(default)]
    pub cores: Quota,
    #[serde(default)]
    pub ram_mb: Quota,
}

impl World {
    /// The observation of `provider`, if it was observed completely.
    pub fn view(&self, provider: &str) -> Option<&CloudView> {
        match self.clouds.get(provider) {
            Some(CloudState::Observed(v)) => Some(v),
            _ => None,
        }
    }

    /// The operator pause of `image`, if it has one.
    pub fn image_pause(&self, image: &str) -> Option<&ImagePause> {
        self.image_pauses.iter().find(|p| p.image_name == image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{UploadDetails, UploadState};

    fn upload(id: &str, build: &str, image: Option<&str>) -> ImageUpload {
        ImageUpload {
            id: id.into(),
            build_id: Some(build.into()),
            image_name: "ubuntu".into(),
            provider: "east".into(),
            format: None,
            state: UploadState::Uploading,
            state_time: 0,
            created_at: 0,
            details: UploadDetails {
                external_id: image.map(str::to_owned),
                ..UploadDetails::default()
            },
        }
    }

    fn props(upload: &str, build: &str) -> BTreeMap<String, String> {
        [(meta::UPLOAD_ID, upload), (meta::BUILD_ID, build)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn images_are_owned_by_recorded_id_or_by_both_ids_of_an_upload_in_flight() {
        let uploads = [
            upload("0000000001", "0000000001", Some("img-a")),
            upload("0000000002", "0000000001", None),
        ];
        let owners = ImageOwners::new(&uploads);
        let none = BTreeMap::new();
        assert_eq!(
            owners.of("east", "img-a", &none),
            Some(ImageOwner::Recorded)
        );
        assert_eq!(
            owners.of("west", "img-a", &none),
            None,
            "another provider's"
        );
        assert_eq!(
            owners.of("east", "img-b", &props("0000000002", "0000000001")),
            Some(ImageOwner::InFlight)
        );
        // Upstream's upload 0000000001 of its build 0000000042: not ours.
        assert_eq!(
            owners.of("east", "img-c", &props("0000000001", "0000000042")),
            None
        );
        assert_eq!(
            owners.of("east", "img-d", &props("0000000002", "0000000042")),
            None
        );
    }
}
