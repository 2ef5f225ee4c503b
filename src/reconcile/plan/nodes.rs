//! Existing nodes: launches in progress, expiries, drains, deletions and stale records.

use super::capacity::{Capacity, node_size_in};
use super::{Action, ActionKind, Note, Plan, boot, node_address};
use crate::config::Config;
use crate::config::model::{Label, OpenStackProvider, Pool, PoolLabel};
use crate::reconcile::world::{ObservedServer, World};
use crate::state::{Node, NodeState};
use std::collections::{BTreeMap, HashMap};

/// Where a node stands relative to the config.
enum Place<'c> {
    /// Its provider, pool and label are all still configured.
    Configured(&'c OpenStackProvider, &'c Pool, &'c PoolLabel),
    /// Removed from the config: `why` says what is gone.
    Removed(String),
}

fn place<'c>(config: &'c Config, node: &Node) -> Place<'c> {
    let Some(p) = config.provider(&node.provider) else {
        return Place::Removed(format!(
            "provider {} was removed from the config",
            node.provider
        ));
    };
    let Some(pool) = p.pools.iter().find(|x| x.name == node.pool) else {
        return Place::Removed(format!(
            "pool {}.{} was removed from the config",
            node.provider, node.pool
        ));
    };
    match pool.labels.iter().find(|l| l.name == node.label) {
        Some(l) => Place::Configured(p, pool, l),
        None => Place::Removed(format!(
            "label {} is no longer offered by pool {}.{}",
            node.label, node.provider, node.pool
        )),
    }
}

fn age(now: i64, then: i64) -> String {
    crate::state::format_age((now - then).max(0))
}

pub(super) fn plan_nodes<'c>(
    config: &'c Config,
    world: &World,
    boots: &boot::Boots<'c>,
    cap: &mut Capacity,
    out: &mut Plan,
) {
    let mut nodes: Vec<&Node> = world.nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let mut unavailable_noted = std::collections::BTreeSet::new();
    let mut indexes: BTreeMap<&str, ServerIndex<'_>> = BTreeMap::new();
    let labels: HashMap<&str, &Label> =
        config.labels.iter().map(|l| (l.name.as_str(), l)).collect();
    for node in nodes {
        let addr = node_address(&node.provider, &node.pool, &node.label, &node.id);
        let Some(view) = world.view(&node.provider) else {
            // Nothing is decided about a node whose cloud we cannot see; it keeps its room.
            cap.count(&node.provider, &node.pool, node_size_in(config, node, None));
            if unavailable_noted.insert(node.provider.clone()) {
                let why = match world.clouds.get(&node.provider) {
                    Some(crate::reconcile::world::CloudState::Unavailable { error }) => {
                        error.clone()
                    }
                    _ => "it was not observed".to_owned(),
                };
                out.notes.push(Note {
                    address: format!("provider.{}", node.provider),
                    message: format!("no changes to this provider's nodes: {why}"),
                });
            }
            continue;
        };
        let index = indexes
            .entry(node.provider.as_str())
            .or_insert_with(|| ServerIndex::new(&node.provider, &view.servers));
        let server = index.find(node);
        let size = node_size_in(config, node, Some(view));
        let decision = decide(config, &labels, boots, world, out, node, server, cap);
        match &decision {
            Some(a) if matches!(a.kind, ActionKind::ForgetNode { .. }) => {}
            _ => cap.count(&node.provider, &node.pool, size),
        }
        if let Some(mut a) = decision {
            a.address = addr;
            out.actions.push(a);
        }
    }
    drain_surplus(config, world, out);
}

/// One provider's servers by id and by the node id in our metadata.
#[derive(Default)]
struct ServerIndex<'w> {
    by_id: HashMap<&'w str, &'w ObservedServer>,
    by_node: HashMap<&'w str, &'w ObservedServer>,
}

impl<'w> ServerIndex<'w> {
    fn new(provider: &str, servers: &'w [ObservedServer]) -> Self {
        let mut index = ServerIndex::default();
        for s in servers {
            index.by_id.insert(s.id.as_str(), s);
            if let Some(n) = s.node_id().filter(|_| s.owner() == Some(provider)) {
                index.by_node.insert(n, s);
            }
        }
        index
    }

    /// The server of `node`: by recorded id, else by the node id in our metadata (a launch
    /// that was interrupted after the create was sent but before its answer was recorded).
    fn find(&self, node: &Node) -> Option<&'w ObservedServer> {
        match node.details.server_id.as_deref() {
            Some(id) => self.by_id.get(id).copied(),
            None => self.by_node.get(node.id.as_str()).copied(),
        }
    }
}

fn action(kind: ActionKind, reason: String) -> Option<Action> {
    Some(Action {
        address: String::new(),
        reason,
        kind,
    })
}

fn delete(node: &Node, server: Option<&ObservedServer>, reason: String) -> Option<Action> {
    action(
        ActionKind::DeleteNode {
            node_id: node.id.clone(),
            provider: node.provider.clone(),
            server_id: server
                .map(|s| s.id.clone())
                .or_else(|| node.details.server_id.clone()),
            floating_ips: Vec::new(),
            gives_up_launch: false,
        },
        reason,
    )
}

/// [`delete`] of a node whose launch is given up (it never became ready).
fn give_up(node: &Node, server: Option<&ObservedServer>, reason: String) -> Option<Action> {
    let mut a = delete(node, server, reason)?;
    if let ActionKind::DeleteNode {
        gives_up_launch, ..
    } = &mut a.kind
    {
        *gives_up_launch = true;
    }
    Some(a)
}

/// The floating IPs on the servers of nodes being deleted go with them (as upstream, which
/// deletes a server's IPs with it): those attached and carrying the address recorded for the
/// node or reported for its server.
pub fn with_floating_ips(world: &World, out: &mut Plan) {
    // Indexes built once, and only for providers whose clouds have attached floating IPs.
    let mut attached: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for (provider, state) in &world.clouds {
        if let crate::reconcile::world::CloudState::Observed(view) = state {
            let mut by_address: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for f in view.floating_ips.iter().filter(|f| f.port_id.is_some()) {
                by_address
                    .entry(f.address.as_str())
                    .or_default()
                    .push(f.id.as_str());
            }
            if !by_address.is_empty() {
                attached.insert(provider.as_str(), by_address);
            }
        }
    }
    if attached.is_empty() {
        return;
    }
    let recorded: BTreeMap<&str, &str> = world
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.as_str(), n.details.public_ipv4.as_deref()?)))
        .collect();
    // Servers by id, per provider, indexed the first time a deletion there asks.
    let mut servers: BTreeMap<&str, HashMap<&str, &ObservedServer>> = BTreeMap::new();
    for a in &mut out.actions {
        let ActionKind::DeleteNode {
            node_id,
            provider,
            server_id,
            floating_ips,
            ..
        } = &mut a.kind
        else {
            continue;
        };
        let (Some((&provider, by_address)), Some(view)) = (
            attached.get_key_value(provider.as_str()),
            world.view(provider),
        ) else {
            continue;
        };
        let reported = server_id.as_deref().and_then(|sid| {
            let index = servers
                .entry(provider)
                .or_insert_with(|| view.servers.iter().map(|s| (s.id.as_str(), s)).collect());
            super::Addresses::of(index.get(sid)?).public_ipv4
        });
        let mut addresses: Vec<&str> = recorded
            .get(node_id.as_str())
            .copied()
            .into_iter()
            .collect();
        if let Some(r) = reported.as_deref()
            && !addresses.contains(&r)
        {
            addresses.push(r);
        }
        let mut shown = Vec::new();
        for address in addresses {
            if let Some((&address, ids)) = by_address.get_key_value(address) {
                floating_ips.extend(ids.iter().map(|id| (*id).to_owned()));
                shown.push(address);
            }
        }
        if !shown.is_empty() {
            a.reason = format!("{}; with its floating IP {}", a.reason, shown.join(", "));
        }
    }
}

fn forget(node: &Node, reason: String) -> Option<Action> {
    action(
        ActionKind::ForgetNode {
            node_id: node.id.clone(),
        },
        reason,
    )
}

#[allow(clippy::too_many_arguments)]
fn decide<'c>(
    config: &'c Config,
    labels: &HashMap<&str, &Label>,
    boots: &boot::Boots<'c>,
    world: &World,
    planned: &Plan,
    node: &Node,
    server: Option<&ObservedServer>,
    cap: &Capacity,
) -> Option<Action> {
    let now = world.now;
    let since = age(now, node.state_time);
    let place = place(config, node);
    match node.state {
        NodeState::Deleting => match server {
            Some(s) => delete(
                node,
                Some(s),
                format!("deleting for {since}; server {} is still there", s.id),
            ),
            None => forget(
                node,
                format!(
                    "stale record: deleting for {since} and the cloud no longer has its server"
                ),
            ),
        },
        NodeState::Used => delete(node, server, "used by a job; nodes are never reused".into()),
        NodeState::Failed => delete(
            node,
            server,
            format!(
                "launch failed{}",
                node.details
                    .last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        ),
        NodeState::Init | NodeState::Building => {
            launching(boots, world, planned, node, server, &place, cap)
        }
        NodeState::Ready | NodeState::InUse | NodeState::Hold => {
            let Some(s) = server else {
                return forget(
                    node,
                    format!(
                        "server {} vanished from the cloud",
                        node.details.server_id.as_deref().unwrap_or("?")
                    ),
                );
            };
            if s.status == "ERROR" {
                return delete(node, Some(s), format!("server went to ERROR{}", fault(s)));
            }
            match node.state {
                NodeState::Ready if node.details.allocated_request.is_none() => {
                    if let Place::Removed(why) = &place {
                        return delete(node, Some(s), format!("unused; {why}"));
                    }
                    let max_age = labels
                        .get(node.label.as_str())
                        .map_or(0, |l| l.max_ready_age);
                    if max_age > 0
                        && now - node.state_time > i64::try_from(max_age).unwrap_or(i64::MAX)
                    {
                        return delete(
                            node,
                            Some(s),
                            format!("ready for {since}, longer than max-ready-age {max_age} s"),
                        );
                    }
                    None
                }
                NodeState::Hold => {
                    let own = node.details.hold_expiration.filter(|e| *e > 0);
                    let global = config.max_hold_age.and_then(|a| i64::try_from(a).ok());
                    let limit = match (own, global) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    match limit {
                        Some(l) if now - node.state_time > l => delete(
                            node,
                            Some(s),
                            format!("held for {since}, past its hold expiry of {l} s"),
                        ),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
    }
}

fn fault(s: &ObservedServer) -> String {
    s.fault
        .as_deref()
        .map(|f| format!(": {f}"))
        .unwrap_or_default()
}

/// A node being launched: adopt, mark ready, retry or give up.
fn launching<'c>(
    boots: &boot::Boots<'c>,
    world: &World,
    planned: &Plan,
    node: &Node,
    server: Option<&ObservedServer>,
    place: &Place<'c>,
    cap: &Capacity,
) -> Option<Action> {
    let (provider, pool, label) = match place {
        Place::Configured(p, pool, l) => (*p, *pool, *l),
        Place::Removed(why) => return delete(node, server, format!("launch abandoned; {why}")),
    };
    let now = world.now;
    let attempts = node.details.launch_attempts;
    let retries = provider.launch_retries.max(1);
    // Each attempt may take launch-timeout to become ACTIVE and boot-timeout more for SSH; a
    // node older than all its attempts together is given up whatever it is doing.
    let budget = u64::from(retries).saturating_mul(provider.launch_timeout + provider.boot_timeout);
    if now - node.created_at > i64::try_from(budget).unwrap_or(i64::MAX) {
        return give_up(
            node,
            server,
            format!(
                "not ready after {} ({retries} attempts of launch-timeout {} s + boot-timeout {} s; \
                 {attempts} made)",
                age(now, node.created_at),
                provider.launch_timeout,
                provider.boot_timeout
            ),
        );
    }
    // A failed attempt: retry while attempts remain (a quota fault does not use one up).
    let retry = |why: String, server: Option<&ObservedServer>, counts: bool| -> Option<Action> {
        if counts && attempts >= retries {
            return give_up(
                node,
                server,
                format!("launch failed after {attempts} of {retries} attempts: {why}"),
            );
        }
        let view = world.view(&node.provider)?;
        let nth = cap.pool_servers(&node.provider, &node.pool);
        match boots.resolve(world, planned, view, provider, pool, label, nth) {
            Ok(boot) => action(
                ActionKind::RelaunchNode {
                    node_id: node.id.clone(),
                    provider: node.provider.clone(),
                    server_id: server.map(|s| s.id.clone()),
                    boot,
                    counts_as_attempt: counts,
                },
                if counts {
                    format!("attempt {} of {retries} ({why})", attempts + 1)
                } else {
                    format!("{why}; retrying without using up an attempt")
                },
            ),
            Err(e) => give_up(node, server, format!("{why}; cannot launch again: {e}")),
        }
    };
    // Wait for the server (it is booting, or its SSH host keys are being scanned).
    let await_server = |s: &ObservedServer, why: String| -> Option<Action> {
        let view = world.view(&node.provider)?;
        let nth = cap.pool_servers(&node.provider, &node.pool);
        action(
            ActionKind::AwaitServer {
                node_id: node.id.clone(),
                provider: node.provider.clone(),
                server_id: s.id.clone(),
                boot: boots
                    .resolve(world, planned, view, provider, pool, label, nth)
                    .ok(),
            },
            why,
        )
    };
    match server {
        Some(s) if node.details.server_id.is_none() => action(
            ActionKind::AdoptServer {
                node_id: node.id.clone(),
                server_id: s.id.clone(),
            },
            "an interrupted launch created this server (it carries the node id)".into(),
        ),
        Some(s) if s.status == "ACTIVE" => {
            let addresses = super::Addresses::of(s);
            // What stands between ACTIVE and ready (both done by the applier's wait).
            let mut steps = Vec::new();
            let floating = pool.auto_floating_ip
                && addresses.public_ipv4.is_none()
                && addresses.public_ipv6.is_none();
            if floating {
                steps.push("a floating IP is attached (auto-floating-ip)".to_owned());
            }
            if let Some(port) = crate::reconcile::launch::keyscan_port(pool, &node.details) {
                // An earlier pass recorded when it saw the server ACTIVE (its addresses and
                // the state time); boot-timeout counts from then.
                if node.details.interface_ip.is_some()
                    && now - node.state_time
                        > i64::try_from(provider.boot_timeout).unwrap_or(i64::MAX)
                {
                    return retry(
                        format!(
                            "no SSH host keys from server {} on {}:{port} within boot-timeout {} s \
                             of ACTIVE",
                            s.id,
                            node.details.interface_ip.as_deref().unwrap_or("?"),
                            provider.boot_timeout
                        ),
                        Some(s),
                        true,
                    );
                }
                steps.push(format!(
                    "its SSH host keys are scanned on {} (host-key-checking, up to boot-timeout \
                     {} s)",
                    match addresses.interface_ip() {
                        Some(ip) if !floating => format!("{ip}:{port}"),
                        _ => format!("port {port}"),
                    },
                    provider.boot_timeout
                ));
            }
            if steps.is_empty() {
                action(
                    ActionKind::MarkReady {
                        node_id: node.id.clone(),
                        server_id: s.id.clone(),
                        addresses,
                    },
                    format!("server {} is ACTIVE", s.id),
                )
            } else {
                await_server(
                    s,
                    format!(
                        "server {} is ACTIVE; ready once {}",
                        s.id,
                        steps.join(" and ")
                    ),
                )
            }
        }
        Some(s) if s.status == "ERROR" => {
            let quota = s
                .fault
                .as_deref()
                .is_some_and(|f| f.to_ascii_lowercase().contains("quota"));
            retry(format!("server went to ERROR{}", fault(s)), Some(s), !quota)
        }
        Some(s)
            if now - node.state_time
                > i64::try_from(provider.launch_timeout).unwrap_or(i64::MAX) =>
        {
            retry(
                format!(
                    "server {} not ACTIVE after launch-timeout {} s (status {})",
                    s.id, provider.launch_timeout, s.status
                ),
                Some(s),
                true,
            )
        }
        Some(s) => await_server(
            s,
            format!(
                "server {} is {} for {}; waiting up to launch-timeout {} s",
                s.id,
                s.status,
                age(now, node.state_time),
                provider.launch_timeout
            ),
        ),
        None if node.state == NodeState::Init => {
            retry("the create request was never confirmed".into(), None, false)
        }
        None => retry(
            format!(
                "server {} vanished while building",
                node.details.server_id.as_deref().unwrap_or("?")
            ),
            None,
            true,
        ),
    }
}

/// Pools holding more nodes than `max-servers` (lowered in the config) give up unused ones:
/// unallocated ready nodes, oldest first.
fn drain_surplus(config: &Config, world: &World, out: &mut Plan) {
    let deleting: std::collections::BTreeSet<&str> = out
        .actions
        .iter()
        .filter_map(|a| match &a.kind {
            ActionKind::DeleteNode { node_id, .. } | ActionKind::ForgetNode { node_id } => {
                Some(node_id.as_str())
            }
            _ => None,
        })
        .collect();
    let mut by_pool: BTreeMap<(&str, &str), Vec<&Node>> = BTreeMap::new();
    for n in world
        .nodes
        .iter()
        .filter(|n| !deleting.contains(n.id.as_str()))
    {
        if !matches!(
            n.state,
            NodeState::Deleting | NodeState::Used | NodeState::Failed
        ) {
            by_pool
                .entry((n.provider.as_str(), n.pool.as_str()))
                .or_default()
                .push(n);
        }
    }
    let mut extra = Vec::new();
    for ((provider, pool), nodes) in by_pool {
        let Some(max) = config
            .provider(provider)
            .and_then(|p| p.pools.iter().find(|x| x.name == pool))
            .and_then(|p| p.max_servers)
        else {
            continue;
        };
        let count = nodes.len() as u64;
        if count <= max || world.view(provider).is_none() {
            continue;
        }
        let mut spare: Vec<&&Node> = nodes
            .iter()
            .filter(|n| n.state == NodeState::Ready && n.details.allocated_request.is_none())
            .collect();
        spare.sort_by(|a, b| (a.state_time, &a.id).cmp(&(b.state_time, &b.id)));
        for n in spare
            .into_iter()
            .take(usize::try_from(count - max).unwrap_or(usize::MAX))
        {
            extra.push(Action {
                address: node_address(&n.provider, &n.pool, &n.label, &n.id),
                reason: format!(
                    "pool {provider}.{pool} holds {count} nodes, more than max-servers {max}"
                ),
                kind: ActionKind::DeleteNode {
                    node_id: n.id.clone(),
                    provider: n.provider.clone(),
                    server_id: n.details.server_id.clone(),
                    floating_ips: Vec::new(),
                    gives_up_launch: false,
                },
            });
        }
    }
    out.actions.extend(extra);
}
