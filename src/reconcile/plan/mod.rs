//! The plan: a pure function from (desired config, observed world, time) to ordered actions.
//!
//! Invariant: nothing in this module performs I/O, reads a clock or draws a random number;
//! the same inputs always give the same plan, byte for byte. Every action carries an address
//! and a human reason. Decisions are made per provider, so an unobservable cloud only stops
//! the actions that concern it.

mod boot;
mod capacity;
mod demand;
pub mod images;
mod leaks;
mod nodes;

pub use nodes::with_floating_ips;

use super::world::World;
use crate::config::Config;
use crate::state::LeakKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the plan will do, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Things worth knowing that are not changes (a request waiting for capacity, a cloud
    /// that could not be observed, a leak seen once).
    pub notes: Vec<Note>,
    /// Unowned resources seen in this observation; apply records them so that a resource is
    /// only cleaned up once it has been seen on two consecutive observations.
    pub sightings: Vec<Sighting>,
    /// Providers whose clouds were swept for leaks (their sightings replace the old ones).
    pub swept: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub address: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    pub provider: String,
    pub kind: LeakKind,
    pub external_id: String,
}

/// One change, with where it applies and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// e.g. `node.east.main.ubuntu-jammy[0000000042]`, `leak.east.floating_ip.<id>`.
    pub address: String,
    pub reason: String,
    #[serde(flatten)]
    pub kind: ActionKind,
}

/// Terraform's vocabulary for what an action does to its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Create,
    Update,
    Replace,
    Delete,
}

impl Change {
    pub fn symbol(self) -> &'static str {
        match self {
            Change::Create => "+",
            Change::Update => "~",
            Change::Replace => "-/+",
            Change::Delete => "-",
        }
    }
}

/// Where a server can be reached, as the cloud reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
}

impl Addresses {
    pub fn of(s: &crate::reconcile::world::ObservedServer) -> Addresses {
        Addresses {
            public_ipv4: s.public_ipv4.clone(),
            private_ipv4: s.private_ipv4.clone(),
            public_ipv6: s.public_ipv6.clone(),
            az: s.az.clone(),
        }
    }

    /// The address consumers connect to: public IPv4, else public IPv6, else private IPv4.
    pub fn interface_ip(&self) -> Option<String> {
        self.public_ipv4
            .clone()
            .or_else(|| self.public_ipv6.clone())
            .or_else(|| self.private_ipv4.clone())
    }
}

/// How a new server boots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    /// The cloud's image id.
    pub image_id: String,
    /// The diskimage or cloud-image name (for the record).
    pub image_name: String,
    /// The address of the upload planned in this plan that provides the image; `image_id`
    /// is then known only once that upload is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Our upload record, when booting a diskimage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    pub flavor_id: String,
    pub flavor_name: String,
    pub vcpus: u64,
    pub ram_mb: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
}

/// Which build an upload takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildRef {
    /// A ready build that exists.
    Existing(String),
    /// The build of the same image planned in this plan (applied first).
    Planned,
}

/// What the plan is asked to consider beyond the world itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Diskimages to build now whatever their age (`nodepool image-build`).
    pub force_builds: std::collections::BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    /// Build a diskimage in these formats.
    BuildImage { image: String, formats: Vec<String> },
    /// Upload a build to a provider.
    UploadImage {
        provider: String,
        image: String,
        build: BuildRef,
        /// The file format uploaded (the provider's `image_format`).
        format: String,
    },
    /// Delete an upload: its cloud image (if any) and its record.
    DeleteUpload {
        provider: String,
        upload_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
    },
    /// Delete a build: its local files and its record.
    DeleteBuild { image: String, build_id: String },
    /// Remove the local files of these formats of a build every provider has
    /// (`delete-after-upload`); the record stays.
    PruneBuild {
        image: String,
        build_id: String,
        formats: Vec<String>,
    },
    /// Launch a new node.
    LaunchNode {
        provider: String,
        pool: String,
        label: String,
        boot: Boot,
        /// The request the node is for (`None`: for min-ready).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
    /// Delete a node's failed server and boot it again (another launch attempt).
    RelaunchNode {
        node_id: String,
        provider: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_id: Option<String>,
        boot: Boot,
        /// Whether this attempt counts against `launch-retries` (quota faults do not).
        counts_as_attempt: bool,
    },
    /// A building node's server is ACTIVE: the node becomes ready.
    MarkReady {
        node_id: String,
        server_id: String,
        #[serde(flatten)]
        addresses: Addresses,
    },
    /// A building node's server is still booting: wait for it (until `boot-timeout`).
    AwaitServer {
        node_id: String,
        provider: String,
        server_id: String,
        /// How to boot it again if this boot fails (`None`: the image or flavor is gone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        boot: Option<Boot>,
    },
    /// A node whose launch was interrupted has a server carrying its id: record it.
    AdoptServer { node_id: String, server_id: String },
    /// Delete a node: the floating IPs on its server, its server (if any), then its record.
    DeleteNode {
        node_id: String,
        provider: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_id: Option<String>,
        /// Floating IPs attached to its server (`auto-floating-ip`): deleted with it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        floating_ips: Vec<String>,
        /// The node never became ready and its launch is given up (attempts or time used up):
        /// a launch failure for the metrics.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        gives_up_launch: bool,
    },
    /// A record whose server the cloud no longer has: remove the record only.
    ForgetNode { node_id: String },
    /// Give a ready node to a request.
    AllocateNode { node_id: String, request: String },
    /// Take a ready node back from a request that no longer wants it.
    DeallocateNode { node_id: String, request: String },
    /// Every node of the request is ready.
    FulfillRequest { request: String, nodes: Vec<String> },
    /// The request cannot be served.
    FailRequest { request: String },
    /// Delete a cloud resource that no record owns.
    DeleteLeak {
        provider: String,
        kind: LeakKind,
        external_id: String,
    },
}

impl ActionKind {
    pub fn change(&self) -> Change {
        match self {
            ActionKind::LaunchNode { .. }
            | ActionKind::BuildImage { .. }
            | ActionKind::UploadImage { .. } => Change::Create,
            ActionKind::DeleteUpload { .. } | ActionKind::DeleteBuild { .. } => Change::Delete,
            ActionKind::RelaunchNode { .. } => Change::Replace,
            ActionKind::MarkReady { .. }
            | ActionKind::PruneBuild { .. }
            | ActionKind::AwaitServer { .. }
            | ActionKind::AdoptServer { .. }
            | ActionKind::AllocateNode { .. }
            | ActionKind::DeallocateNode { .. }
            | ActionKind::FulfillRequest { .. }
            | ActionKind::FailRequest { .. } => Change::Update,
            ActionKind::DeleteNode { .. }
            | ActionKind::ForgetNode { .. }
            | ActionKind::DeleteLeak { .. } => Change::Delete,
        }
    }

    /// The provider whose cloud the action touches, if any.
    pub fn provider(&self) -> Option<&str> {
        match self {
            ActionKind::LaunchNode { provider, .. }
            | ActionKind::RelaunchNode { provider, .. }
            | ActionKind::AwaitServer { provider, .. }
            | ActionKind::UploadImage { provider, .. }
            | ActionKind::DeleteUpload { provider, .. }
            | ActionKind::DeleteNode { provider, .. }
            | ActionKind::DeleteLeak { provider, .. } => Some(provider),
            _ => None,
        }
    }
}

/// How many actions of each change kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for a in &self.actions {
            match a.kind.change() {
                Change::Create => s.add += 1,
                Change::Update => s.change += 1,
                Change::Delete => s.destroy += 1,
                Change::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.add + self.change + self.destroy == 0 {
            f.write_str("No changes.")
        } else {
            write!(
                f,
                "Plan: {} to add, {} to change, {} to destroy.",
                self.add, self.change, self.destroy
            )
        }
    }
}

/// Node address: `node.<provider>.<pool>.<label>[<id>]`.
pub fn node_address(provider: &str, pool: &str, label: &str, id: &str) -> String {
    format!("node.{provider}.{pool}.{label}[{id}]")
}

/// Compute the plan. Pure: see the module docs.
pub fn plan(config: &Config, world: &World) -> Plan {
    plan_with(config, world, &PlanOptions::default())
}

/// [`plan`] with options.
pub fn plan_with(config: &Config, world: &World, opts: &PlanOptions) -> Plan {
    let mut out = Plan::default();
    let mut cap = capacity::Capacity::new(config, world);
    let boots = boot::Boots::default();
    // 0. Images: builds, uploads, rotation (launches below may boot a planned upload).
    images::plan_images(config, world, opts, &mut out);
    // 1. Existing nodes: their lifecycle, drains, expiries, stale records.
    nodes::plan_nodes(config, world, &boots, &mut cap, &mut out);
    nodes::with_floating_ips(world, &mut out);
    // 2. Resources in the clouds that nothing owns.
    leaks::plan_leaks(config, world, &mut out);
    // 3. Demand: open requests first (priority order), then min-ready.
    demand::plan_demand(config, world, &boots, &mut cap, &mut out);
    order(&mut out);
    out
}

/// Deletions free capacity, so they come first; then changes, then launches. Within a kind,
/// by address, so the plan reads the same every time.
pub fn order(plan: &mut Plan) {
    plan.actions.sort_by(|a, b| {
        let rank = |x: &Action| match x.kind.change() {
            Change::Delete => 0,
            Change::Replace => 1,
            Change::Update => 2,
            Change::Create => 3,
        };
        (rank(a), &a.address).cmp(&(rank(b), &b.address))
    });
    plan.notes.sort_by(|a, b| a.address.cmp(&b.address));
    plan.sightings.sort_by(|a, b| {
        (&a.provider, a.kind.as_str(), &a.external_id).cmp(&(
            &b.provider,
            b.kind.as_str(),
            &b.external_id,
        ))
    });
}
