//! Fingerprints of what a plan touches, so a saved plan is refused once the world has moved.
//!
//! A fingerprint is a short description of the observed object an action acts on (a node
//! row's state and time, a server's status, a floating IP's attachment). `apply PLAN_FILE`
//! observes again and refuses the plan when any fingerprint differs.

use super::plan::{ActionKind, Plan};
use super::world::World;
use crate::state::LeakKind;
use std::collections::BTreeMap;

pub fn fingerprints(plan: &Plan, world: &World) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in &plan.actions {
        if let Some(f) = fingerprint(&a.kind, world) {
            out.insert(a.address.clone(), f);
        }
    }
    out
}

fn node_fp(world: &World, id: &str) -> String {
    match world.nodes.iter().find(|n| n.id == id) {
        None => "absent".to_owned(),
        Some(n) => {
            let server = n
                .details
                .server_id
                .as_deref()
                .and_then(|sid| {
                    world
                        .view(&n.provider)?
                        .servers
                        .iter()
                        .find(|s| s.id == sid)
                })
                .map_or_else(|| "no-server".to_owned(), |s| s.status.clone());
            format!(
                "{}@{} alloc={} server={server}",
                n.state,
                n.state_time,
                n.details.allocated_request.as_deref().unwrap_or("-")
            )
        }
    }
}

fn fingerprint(kind: &ActionKind, world: &World) -> Option<String> {
    Some(match kind {
        ActionKind::LaunchNode { .. }
        | ActionKind::BuildImage { .. }
        | ActionKind::UploadImage { .. } => return None,
        ActionKind::DeleteUpload { upload_id, .. } => world
            .uploads
            .iter()
            .find(|u| &u.id == upload_id)
            .map_or_else(
                || "absent".to_owned(),
                |u| format!("{}@{}", u.state, u.state_time),
            ),
        ActionKind::DeleteBuild { build_id, .. } => {
            world.builds.iter().find(|b| &b.id == build_id).map_or_else(
                || "absent".to_owned(),
                |b| format!("{}@{}", b.state, b.state_time),
            )
        }
        ActionKind::PruneBuild { build_id, .. } => {
            world.builds.iter().find(|b| &b.id == build_id).map_or_else(
                || "absent".to_owned(),
                |b| {
                    format!(
                        "{}@{} pruned [{}]",
                        b.state,
                        b.state_time,
                        b.pruned_formats.join(",")
                    )
                },
            )
        }
        ActionKind::RelaunchNode { node_id, .. }
        | ActionKind::MarkReady { node_id, .. }
        | ActionKind::AwaitServer { node_id, .. }
        | ActionKind::AdoptServer { node_id, .. }
        | ActionKind::DeleteNode { node_id, .. }
        | ActionKind::ForgetNode { node_id }
        | ActionKind::AllocateNode { node_id, .. }
        | ActionKind::DeallocateNode { node_id, .. } => node_fp(world, node_id),
        ActionKind::FulfillRequest { request, .. } | ActionKind::FailRequest { request } => world
            .requests
            .iter()
            .find(|r| &r.id == request)
            .map_or_else(
                || "absent".to_owned(),
                |r| format!("{}@{}", r.state, r.state_time),
            ),
        ActionKind::DeleteLeak {
            provider,
            kind,
            external_id,
        } => {
            let v = world.view(provider)?;
            let id = external_id.as_str();
            let found = match kind {
                LeakKind::Server => v
                    .servers
                    .iter()
                    .find(|s| s.id == id)
                    .map(|s| s.status.clone()),
                LeakKind::FloatingIp => v
                    .floating_ips
                    .iter()
                    .find(|f| f.id == id)
                    .map(|f| format!("port={}", f.port_id.as_deref().unwrap_or("-"))),
                LeakKind::Port => v
                    .ports
                    .iter()
                    .find(|p| p.id == id)
                    .map(|p| p.status.clone()),
                LeakKind::Image => v
                    .images
                    .iter()
                    .find(|i| i.id == id)
                    .map(|i| i.status.clone()),
            };
            found.unwrap_or_else(|| "absent".to_owned())
        }
    })
}
