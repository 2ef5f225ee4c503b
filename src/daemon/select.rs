//! Which of a global plan's actions one reconcile pass carries out: by role (launcher, builder) and by scope (one provider, or the image builds).

use crate::reconcile::plan::{ActionKind, BuildRef, Plan};
use crate::reconcile::world::World;
use serde::Serialize;
use std::collections::BTreeSet;

/// What a daemon process does: everything, nodes only, or images only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// `nodepool daemon`: launcher and builder in one process.
    All,
    /// `nodepool launcher`: nodes, requests and leaks; no image builds or uploads.
    Launcher,
    /// `nodepool builder`: image builds and uploads only.
    Builder,
}

impl Role {
    /// Whether this role carries out actions of this kind.
    pub fn admits(self, kind: &ActionKind) -> bool {
        match self {
            Role::All => true,
            Role::Launcher => !is_image_action(kind),
            Role::Builder => is_image_action(kind),
        }
    }

    /// Whether this role builds images (and so has the `images` pass).
    pub fn builds(self) -> bool {
        self != Role::Launcher
    }
}

/// Builds, uploads and their deletions: the builder's work.
pub fn is_image_action(kind: &ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::BuildImage { .. }
            | ActionKind::UploadImage { .. }
            | ActionKind::DeleteUpload { .. }
            | ActionKind::DeleteBuild { .. }
            | ActionKind::PruneBuild { .. }
    )
}

/// The part of the world one pass acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One provider's cloud, its nodes' records, and the database-only request bookkeeping.
    Provider(&'a str),
    /// Image builds (local work: no cloud).
    Images,
}

/// The actions, sightings and sweeps of `plan` that a pass with `role` over `scope` carries
/// out, in the plan's order.
///
/// - Cloud actions go to the pass of their provider.
/// - Database-only actions on a node (mark ready, adopt, forget) go to the pass of the node's
///   provider: only that pass has just observed the node's server.
/// - Request bookkeeping (allocate, deallocate, fulfil, fail) touches no cloud; any provider
///   pass may do it (passes are serialised, and each plans from the database afresh).
/// - An upload of a build planned in the same plan, and a launch booting an upload that is
///   not carried out in this pass, are left for a later pass (the build or upload first).
pub fn select(plan: &Plan, world: &World, role: Role, scope: Scope<'_>) -> Plan {
    let provider_of_node = |id: &str| {
        world
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.provider.as_str())
    };
    let in_scope = |kind: &ActionKind| -> bool {
        if !role.admits(kind) {
            return false;
        }
        match scope {
            Scope::Images => matches!(
                kind,
                ActionKind::BuildImage { .. }
                    | ActionKind::DeleteBuild { .. }
                    | ActionKind::PruneBuild { .. }
            ),
            Scope::Provider(p) => match kind {
                ActionKind::UploadImage {
                    build: BuildRef::Planned,
                    ..
                } => false,
                ActionKind::BuildImage { .. }
                | ActionKind::DeleteBuild { .. }
                | ActionKind::PruneBuild { .. } => false,
                ActionKind::MarkReady { node_id, .. }
                | ActionKind::AdoptServer { node_id, .. }
                | ActionKind::ForgetNode { node_id } => provider_of_node(node_id) == Some(p),
                ActionKind::AllocateNode { .. }
                | ActionKind::DeallocateNode { .. }
                | ActionKind::FulfillRequest { .. }
                | ActionKind::FailRequest { .. } => true,
                other => other.provider() == Some(p),
            },
        }
    };
    let mut actions: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| in_scope(&a.kind))
        .cloned()
        .collect();
    let kept: BTreeSet<String> = actions.iter().map(|a| a.address.clone()).collect();
    actions.retain(|a| {
        let after = match &a.kind {
            ActionKind::LaunchNode { boot, .. } | ActionKind::RelaunchNode { boot, .. } => {
                boot.after.as_ref()
            }
            ActionKind::AwaitServer {
                boot: Some(boot), ..
            } => boot.after.as_ref(),
            _ => None,
        };
        after.is_none_or(|upload| kept.contains(upload))
    });
    let (sightings, swept) = match scope {
        Scope::Provider(p) if role != Role::Builder => (
            plan.sightings
                .iter()
                .filter(|s| s.provider == p)
                .cloned()
                .collect(),
            plan.swept.iter().filter(|s| *s == p).cloned().collect(),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    Plan {
        actions,
        notes: plan.notes.clone(),
        sightings,
        swept,
    }
}

/// Whether applying `selected` would change nothing: no actions, and the leak sightings it
/// would record are the ones already recorded.
pub fn is_noop(selected: &Plan, world: &World, provider: Option<&str>) -> bool {
    if !selected.actions.is_empty() {
        return false;
    }
    let Some(p) = provider.filter(|p| selected.swept.iter().any(|s| s == p)) else {
        return true;
    };
    let seen: BTreeSet<(&str, &str)> = selected
        .sightings
        .iter()
        .map(|s| (s.kind.as_str(), s.external_id.as_str()))
        .collect();
    let recorded: BTreeSet<(&str, &str)> = world
        .leak_sightings
        .iter()
        .filter(|s| s.provider == p)
        .map(|s| (s.kind.as_str(), s.external_id.as_str()))
        .collect();
    seen == recorded
}

/// Whether the pass started work that must be followed soon (servers booting or going away,
/// uploads in progress), rather than at the next poll.
pub fn needs_follow_up(selected: &Plan) -> bool {
    selected.actions.iter().any(|a| {
        matches!(
            a.kind,
            ActionKind::LaunchNode { .. }
                | ActionKind::RelaunchNode { .. }
                | ActionKind::AwaitServer { .. }
                | ActionKind::DeleteNode { .. }
                | ActionKind::DeleteLeak { .. }
                | ActionKind::UploadImage { .. }
                | ActionKind::DeleteUpload { .. }
                | ActionKind::BuildImage { .. }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::plan::{Action, Sighting};
    use crate::state::LeakKind;

    fn action(address: &str, kind: ActionKind) -> Action {
        Action {
            address: address.into(),
            reason: "test".into(),
            kind,
        }
    }

    fn plan() -> Plan {
        Plan {
            actions: vec![
                action(
                    "node.east.main.small[1]",
                    ActionKind::DeleteNode {
                        node_id: "1".into(),
                        provider: "east".into(),
                        server_id: None,
                        floating_ips: vec![],
                        gives_up_launch: false,
                    },
                ),
                action(
                    "leak.west.server.s",
                    ActionKind::DeleteLeak {
                        provider: "west".into(),
                        kind: LeakKind::Server,
                        external_id: "s".into(),
                    },
                ),
                action(
                    "request.7",
                    ActionKind::FulfillRequest {
                        request: "7".into(),
                        nodes: vec!["2".into()],
                    },
                ),
                action(
                    "diskimage.ubuntu",
                    ActionKind::BuildImage {
                        image: "ubuntu".into(),
                        formats: vec!["qcow2".into()],
                    },
                ),
                action(
                    "image_upload.east.ubuntu[+]",
                    ActionKind::UploadImage {
                        provider: "east".into(),
                        image: "ubuntu".into(),
                        build: BuildRef::Planned,
                        format: "qcow2".into(),
                    },
                ),
                action(
                    "image_upload.east.ubuntu[b1]",
                    ActionKind::UploadImage {
                        provider: "east".into(),
                        image: "ubuntu".into(),
                        build: BuildRef::Existing("b1".into()),
                        format: "qcow2".into(),
                    },
                ),
            ],
            notes: Vec::new(),
            sightings: vec![
                Sighting {
                    provider: "east".into(),
                    kind: LeakKind::Port,
                    external_id: "p".into(),
                },
                Sighting {
                    provider: "west".into(),
                    kind: LeakKind::Port,
                    external_id: "q".into(),
                },
            ],
            swept: vec!["east".into(), "west".into()],
        }
    }

    fn addresses(p: &Plan) -> Vec<&str> {
        p.actions.iter().map(|a| a.address.as_str()).collect()
    }

    #[test]
    fn a_provider_pass_takes_its_cloud_actions_and_the_request_bookkeeping() {
        let world = World::default();
        let east = select(&plan(), &world, Role::All, Scope::Provider("east"));
        assert_eq!(
            addresses(&east),
            [
                "node.east.main.small[1]",
                "request.7",
                "image_upload.east.ubuntu[b1]"
            ]
        );
        assert_eq!(east.swept, ["east"]);
        assert_eq!(east.sightings.len(), 1);
        assert_eq!(east.sightings[0].external_id, "p");
        let west = select(&plan(), &world, Role::All, Scope::Provider("west"));
        assert_eq!(addresses(&west), ["leak.west.server.s", "request.7"]);
    }

    #[test]
    fn roles_split_node_and_image_work() {
        let world = World::default();
        let launcher = select(&plan(), &world, Role::Launcher, Scope::Provider("east"));
        assert_eq!(
            addresses(&launcher),
            ["node.east.main.small[1]", "request.7"]
        );
        let builder = select(&plan(), &world, Role::Builder, Scope::Provider("east"));
        assert_eq!(addresses(&builder), ["image_upload.east.ubuntu[b1]"]);
        assert!(builder.sightings.is_empty() && builder.swept.is_empty());
        let images = select(&plan(), &world, Role::Builder, Scope::Images);
        assert_eq!(addresses(&images), ["diskimage.ubuntu"]);
        let none = select(&plan(), &world, Role::Launcher, Scope::Images);
        assert!(none.actions.is_empty());
    }

    #[test]
    fn nothing_to_do_when_the_sightings_are_already_recorded() {
        let mut world = World::default();
        let mut p = plan();
        p.actions.clear();
        let east = select(&p, &world, Role::All, Scope::Provider("east"));
        assert!(
            !is_noop(&east, &world, Some("east")),
            "a new sighting is recorded"
        );
        world.leak_sightings.push(crate::state::LeakSighting {
            provider: "east".into(),
            kind: LeakKind::Port,
            external_id: "p".into(),
            first_seen: 0,
            last_seen: 0,
            count: 1,
        });
        assert!(is_noop(&east, &world, Some("east")));
        assert!(!needs_follow_up(&east));
        assert!(needs_follow_up(&select(
            &plan(),
            &world,
            Role::All,
            Scope::Provider("west")
        )));
    }
}
