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
                ActionKind::BuildImage { .. } | ActionKind::DeleteBuild { .. }
            ),
            Scope::Provider(p) => match kind {
                ActionKind::UploadImage {
                    build: BuildRef::Planned,
                    ..
                } => false,
                ActionKind::BuildImage { .. } | ActionKind::DeleteBuild { .. } => false,
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
