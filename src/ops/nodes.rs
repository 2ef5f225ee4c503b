//! Operator commands on nodes and requests: request, release, delete, hold, and erase.
//!
//! These change records only; the cloud side is carried out by the next apply (or the daemon),
//! exactly as if the planner had decided it, so every cloud mutation still goes through the
//! journal. `erase` is a plan of its own: shown first, applied after confirmation.

use super::{OpError, Workspace};
use crate::reconcile::plan::{Action, ActionKind, Plan, node_address};
use crate::reconcile::world::{World, meta};
use crate::state::{LeakKind, NewRequest, Node, NodeRequest, NodeState, RequestState, StateError};
use std::time::Duration;

/// Submit a node request (what Zuul does upstream).
pub fn request(ws: &mut Workspace, new: &NewRequest) -> Result<NodeRequest, OpError> {
    request_in(&ws.loaded.config, &mut ws.store, new)
}

/// [`request`] against a config and a store (the daemon's API holds these, not a workspace).
pub fn request_in(
    config: &crate::config::Config,
    store: &mut crate::state::Store,
    new: &NewRequest,
) -> Result<NodeRequest, OpError> {
    for l in &new.labels {
        if config.label(l).is_none() {
            return Err(OpError::Refused(format!(
                "label {l} is not defined in the config{}",
                crate::config::diagnostic::did_you_mean(
                    l,
                    config.labels.iter().map(|x| x.name.as_str())
                )
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
            )));
        }
    }
    Ok(store.write(|w| w.insert_request(new))?)
}

/// Wait until a request is fulfilled or failed (another process — apply or the daemon —
/// serves it), polling the database.
pub async fn wait_request(
    ws: &Workspace,
    id: &str,
    timeout: Duration,
) -> Result<NodeRequest, OpError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = ws
            .store
            .read()
            .request(id)?
            .ok_or_else(|| OpError::Refused(format!("request {id} does not exist")))?;
        if !r.state.is_open() {
            return Ok(r);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(OpError::Refused(format!(
                "request {id} is still {} after {}s",
                r.state,
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn node(ws: &Workspace, id: &str) -> Result<Node, OpError> {
    node_in(&ws.store, id)
}

fn node_in(store: &crate::state::Store, id: &str) -> Result<Node, OpError> {
    store
        .read()
        .node(id)?
        .ok_or_else(|| OpError::Refused(format!("node {id} does not exist")))
}

/// The consumer is done with a node: it becomes `used` (and is deleted by the next apply).
pub fn release(ws: &mut Workspace, id: &str) -> Result<Node, OpError> {
    release_in(&mut ws.store, id)
}

/// [`release`] against a store.
pub fn release_in(store: &mut crate::state::Store, id: &str) -> Result<Node, OpError> {
    let n = node_in(store, id)?;
    let path: &[NodeState] = match n.state {
        NodeState::Ready => &[NodeState::InUse, NodeState::Used],
        NodeState::InUse | NodeState::Hold => &[NodeState::Used],
        NodeState::Used => &[],
        other => {
            return Err(OpError::Refused(format!(
                "node {id} is {other}; only a ready, in-use or held node can be released"
            )));
        }
    };
    Ok(store.write(|w| {
        let mut last = w
            .read()
            .node(id)?
            .ok_or_else(|| StateError::Invalid(format!("node {id} vanished")))?;
        for s in path {
            last = w.set_node_state(id, *s)?;
        }
        Ok(last)
    })?)
}

/// Mark a node for deletion; the next apply deletes its server and then the record.
pub fn delete(ws: &mut Workspace, id: &str) -> Result<Node, OpError> {
    let n = node(ws, id)?;
    if n.state == NodeState::Deleting {
        return Ok(n);
    }
    Ok(ws.store.set_node_state(id, NodeState::Deleting)?)
}

/// Hold a node for an operator, optionally for `expires` seconds.
pub fn hold(
    ws: &mut Workspace,
    id: &str,
    reason: Option<&str>,
    expires: Option<i64>,
) -> Result<Node, OpError> {
    hold_in(&mut ws.store, id, reason, expires)
}

/// [`hold`] against a store.
pub fn hold_in(
    store: &mut crate::state::Store,
    id: &str,
    reason: Option<&str>,
    expires: Option<i64>,
) -> Result<Node, OpError> {
    let n = node_in(store, id)?;
    if !n.state.can_transition_to(NodeState::Hold) {
        return Err(OpError::Refused(format!(
            "node {id} is {}; only a ready or in-use node can be held",
            n.state
        )));
    }
    Ok(store.write(|w| {
        w.update_node(id, |d| {
            d.hold_reason = reason.map(str::to_owned);
            d.hold_expiration = expires;
        })?;
        w.set_node_state(id, NodeState::Hold)
    })?)
}

/// The upstream reset procedure as one plan: delete every server and image of ours in
/// `provider`'s cloud, and every record of that provider.
pub fn erase_plan(world: &World, provider: &str) -> Result<Plan, OpError> {
    let view = world.view(provider).ok_or_else(|| {
        OpError::Refused(format!(
            "provider {provider} could not be observed; erase needs a complete view of its cloud"
        ))
    })?;
    let mut plan = Plan::default();
    let mut nodes: Vec<&Node> = world
        .nodes
        .iter()
        .filter(|n| n.provider == provider)
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    for n in &nodes {
        let server = n
            .details
            .server_id
            .clone()
            .filter(|sid| view.servers.iter().any(|s| &s.id == sid))
            .or_else(|| {
                view.servers
                    .iter()
                    .find(|s| s.node_id() == Some(n.id.as_str()) && s.owner() == Some(provider))
                    .map(|s| s.id.clone())
            });
        plan.actions.push(Action {
            address: node_address(&n.provider, &n.pool, &n.label, &n.id),
            reason: format!("erase {provider}: node in state {}", n.state),
            kind: match server {
                // Its floating IPs: `with_floating_ips` below.
                Some(sid) => ActionKind::DeleteNode {
                    node_id: n.id.clone(),
                    provider: provider.to_owned(),
                    server_id: Some(sid),
                    floating_ips: Vec::new(),
                    gives_up_launch: false,
                },
                None => ActionKind::ForgetNode {
                    node_id: n.id.clone(),
                },
            },
        });
    }
    let known: std::collections::BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.details.server_id.as_deref())
        .collect();
    for s in &view.servers {
        if s.owner() == Some(provider)
            && !known.contains(s.id.as_str())
            && !nodes.iter().any(|n| s.node_id() == Some(n.id.as_str()))
        {
            plan.actions.push(leak(
                provider,
                LeakKind::Server,
                &s.id,
                format!("erase {provider}: server {} is ours", s.name),
            ));
        }
    }
    for u in world.uploads.iter().filter(|u| u.provider == provider) {
        plan.actions.push(Action {
            address: format!("image_upload.{provider}.{}[{}]", u.image_name, u.id),
            reason: format!("erase {provider}: upload in state {}", u.state),
            kind: ActionKind::DeleteUpload {
                provider: provider.to_owned(),
                upload_id: u.id.clone(),
                external_id: u.details.external_id.clone(),
            },
        });
    }
    let uploaded: std::collections::BTreeSet<&str> = world
        .uploads
        .iter()
        .filter_map(|u| u.details.external_id.as_deref())
        .collect();
    for i in &view.images {
        if i.properties.get(meta::PROVIDER).map(String::as_str) == Some(provider)
            && !uploaded.contains(i.id.as_str())
        {
            plan.actions.push(leak(
                provider,
                LeakKind::Image,
                &i.id,
                format!("erase {provider}: image {} is ours", i.name),
            ));
        }
    }
    for f in view.floating_ips.iter().filter(|f| f.port_id.is_none()) {
        plan.actions.push(leak(
            provider,
            LeakKind::FloatingIp,
            &f.id,
            format!(
                "erase {provider}: floating IP {} is attached to nothing",
                f.address
            ),
        ));
    }
    for r in world.requests.iter().filter(|r| r.state.is_open()) {
        let served_here = world.nodes.iter().any(|n| {
            n.provider == provider && n.details.allocated_request.as_deref() == Some(r.id.as_str())
        });
        if served_here && r.state == RequestState::Pending {
            plan.notes.push(crate::reconcile::plan::Note {
                address: format!("request.{}", r.id),
                message: "loses its nodes; the next plan launches replacements".into(),
            });
        }
    }
    crate::reconcile::plan::order(&mut plan);
    crate::reconcile::plan::with_floating_ips(world, &mut plan);
    Ok(plan)
}

fn leak(provider: &str, kind: LeakKind, id: &str, reason: String) -> Action {
    Action {
        address: format!("leak.{provider}.{}.{id}", kind.as_str()),
        reason,
        kind: ActionKind::DeleteLeak {
            provider: provider.to_owned(),
            kind,
            external_id: id.to_owned(),
        },
    }
}
