//! Cloud resources no record owns: leaked servers, images, floating IPs and DOWN ports.
//!
//! Something that merely looks like a leak may be a launch whose record is being written at
//! this very moment, so (except where an operator opted into an age rule or upstream's
//! floating-IP rule) a resource is only deleted when it was also seen on the previous
//! observation. The plan lists what it saw (`sightings`); apply records them.

use super::{Action, ActionKind, Note, Plan, Sighting};
use crate::builder::match_image_name;
use crate::config::Config;
use crate::reconcile::world::{ImageOwners, World, meta};
use crate::state::LeakKind;
use std::collections::HashSet;

pub(super) fn plan_leaks(config: &Config, world: &World, out: &mut Plan) {
    let node_ids: HashSet<&str> = world.nodes.iter().map(|n| n.id.as_str()).collect();
    let server_ids: HashSet<&str> = world
        .nodes
        .iter()
        .filter_map(|n| n.details.server_id.as_deref())
        .collect();
    let owners = ImageOwners::new(&world.uploads);

    for p in &config.providers {
        let Some(view) = world.view(&p.name) else {
            continue;
        };
        out.swept.push(p.name.clone());
        let mut candidates: Vec<(LeakKind, String, String)> = Vec::new();
        let seen_before = |kind: LeakKind, id: &str| {
            world.leak_sightings.iter().find(|s| {
                s.provider == p.name && s.kind == kind && s.external_id == id && s.count >= 1
            })
        };
        let mut delete = |kind: LeakKind, id: &str, reason: String| {
            out.actions.push(Action {
                address: format!("leak.{}.{}.{}", p.name, kind.as_str(), id),
                reason,
                kind: ActionKind::DeleteLeak {
                    provider: p.name.clone(),
                    kind,
                    external_id: id.to_owned(),
                },
            });
        };

        for s in &view.servers {
            if server_ids.contains(s.id.as_str()) {
                continue;
            }
            match s.owner() {
                Some(owner) if owner == p.name => {
                    let node = s.node_id().unwrap_or("?");
                    if !node_ids.contains(node) {
                        candidates.push((
                            LeakKind::Server,
                            s.id.clone(),
                            format!("server {} carries our metadata (node {node}) but no node record owns it", s.name),
                        ));
                    }
                }
                Some(_) => {}
                None => {
                    if let Some(max) = p.leaked_server_age {
                        let age = world.now - s.created;
                        if age > i64::try_from(max).unwrap_or(i64::MAX) {
                            delete(
                                LeakKind::Server,
                                &s.id,
                                format!(
                                    "untracked server {} is {} old, older than leaked-server-age {max} s",
                                    s.name,
                                    crate::state::format_age(age)
                                ),
                            );
                        }
                    }
                }
            }
        }
        if p.clean_floating_ips {
            for f in view.floating_ips.iter().filter(|f| f.port_id.is_none()) {
                delete(
                    LeakKind::FloatingIp,
                    &f.id,
                    format!(
                        "floating IP {} is attached to nothing (clean-floating-ips)",
                        f.address
                    ),
                );
            }
        }
        if p.port_cleanup_interval > 0 {
            for port in view
                .ports
                .iter()
                .filter(|x| x.status == "DOWN" && x.device_owner.starts_with("compute:"))
            {
                candidates.push((
                    LeakKind::Port,
                    port.id.clone(),
                    format!("port is DOWN with device owner {}", port.device_owner),
                ));
            }
        }
        for i in &view.images {
            let ours =
                i.properties.get(meta::PROVIDER).map(String::as_str) == Some(p.name.as_str());
            let upload = i.properties.get(meta::UPLOAD_ID).map(String::as_str);
            if ours && owners.of(&p.name, &i.id, &i.properties).is_none() {
                // Upstream Nodepool's uploads look like this to a fresh database.
                let adoptable = p
                    .diskimages
                    .iter()
                    .find(|d| match_image_name(&p.image_name_format, &d.name, &i.name).is_some())
                    .map(|d| {
                        format!(
                            " (named for diskimage {}: `nodepool image-adopt {}` keeps it as an \
                             upload instead)",
                            d.name, p.name
                        )
                    })
                    .unwrap_or_default();
                candidates.push((
                    LeakKind::Image,
                    i.id.clone(),
                    format!(
                        "image {} carries our properties (upload {}) but no upload record owns \
                         it{adoptable}",
                        i.name,
                        upload.unwrap_or("?")
                    ),
                ));
            }
        }

        for (kind, id, why) in candidates {
            out.sightings.push(Sighting {
                provider: p.name.clone(),
                kind,
                external_id: id.clone(),
            });
            let ripe = match seen_before(kind, &id) {
                // Ports wait at least `port-cleanup-interval` between the two sightings.
                Some(s) if kind == LeakKind::Port => {
                    world.now - s.first_seen
                        >= i64::try_from(p.port_cleanup_interval).unwrap_or(i64::MAX)
                }
                Some(_) => true,
                None => false,
            };
            if ripe {
                delete(
                    kind,
                    &id,
                    format!("{why}; seen on two consecutive observations"),
                );
            } else {
                out.notes.push(Note {
                    address: format!("leak.{}.{}.{}", p.name, kind.as_str(), id),
                    message: format!("{why}; seen once, deleted if still there next time"),
                });
            }
        }
    }
}
