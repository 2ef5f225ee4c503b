//! Demand: open node requests (priority order) and each label's `min-ready`, met by allocating
//! ready nodes and launching new ones in the pools that offer the label.

use super::capacity::{Capacity, Size, node_size};
use super::{Action, ActionKind, Boot, Note, Plan, boot, node_address};
use crate::config::Config;
use crate::config::model::{OpenStackProvider, Pool, PoolLabel};
use crate::reconcile::world::World;
use crate::state::{Node, NodeRequest, NodeState, RequestState};
use std::collections::{BTreeMap, BTreeSet};

/// A place a label can be launched: provider, pool, pool label, in preference order.
struct Slot<'c> {
    provider: &'c OpenStackProvider,
    pool: &'c Pool,
    label: &'c PoolLabel,
}

fn slots<'c>(config: &'c Config, label: &str) -> Vec<Slot<'c>> {
    let mut out: Vec<Slot<'c>> = config
        .providers
        .iter()
        .flat_map(|p| {
            p.pools.iter().flat_map(move |pool| {
                pool.labels
                    .iter()
                    .filter(move |l| l.name == label)
                    .map(move |l| Slot {
                        provider: p,
                        pool,
                        label: l,
                    })
            })
        })
        .collect();
    // Lower priority numbers first (the pool's, else its provider's); then config order.
    out.sort_by_key(|s| {
        (
            s.pool.priority.unwrap_or(s.provider.priority),
            s.provider.priority,
        )
    });
    out
}

struct Demand<'a, 'c> {
    config: &'c Config,
    boots: &'a boot::Boots<'c>,
    world: &'a World,
    cap: &'a mut Capacity,
    out: &'a mut Plan,
    /// Nodes this plan deletes or forgets: not available to anyone.
    gone: BTreeSet<String>,
    /// Ready, unallocated nodes not yet given to a request in this plan.
    taken: BTreeSet<String>,
    /// New-node counter per (provider, pool, label), for addresses `[+N]`.
    counters: BTreeMap<(String, String, String), usize>,
    /// Resources used per tenant (allocated nodes + planned launches).
    tenant_use: BTreeMap<String, Size>,
}

pub(super) fn plan_demand<'c>(
    config: &'c Config,
    world: &World,
    boots: &boot::Boots<'c>,
    cap: &mut Capacity,
    out: &mut Plan,
) {
    let gone = out
        .actions
        .iter()
        .filter_map(|a| match &a.kind {
            ActionKind::DeleteNode { node_id, .. } | ActionKind::ForgetNode { node_id } => {
                Some(node_id.clone())
            }
            _ => None,
        })
        .collect();
    let mut d = Demand {
        config,
        boots,
        world,
        cap,
        out,
        gone,
        taken: BTreeSet::new(),
        counters: BTreeMap::new(),
        tenant_use: BTreeMap::new(),
    };
    d.count_tenant_use();
    d.release_orphans();
    let mut requests: Vec<&NodeRequest> = world
        .requests
        .iter()
        .filter(|r| r.state.is_open())
        .collect();
    requests
        .sort_by(|a, b| (a.priority, a.created_at, &a.id).cmp(&(b.priority, b.created_at, &b.id)));
    for r in requests {
        d.serve(r);
    }
    // Ready or launching nodes nobody asked for, per label (one pass over the nodes).
    let mut supply: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &world.nodes {
        if d.alive(n) && n.details.allocated_request.is_none() && !d.taken.contains(&n.id) {
            *supply.entry(n.label.as_str()).or_default() += 1;
        }
    }
    for label in &config.labels {
        let have = supply.get(label.name.as_str()).copied().unwrap_or(0);
        d.min_ready(&label.name, label.min_ready, have);
    }
}

impl<'c> Demand<'_, 'c> {
    fn alive(&self, n: &Node) -> bool {
        !self.gone.contains(&n.id)
            && matches!(
                n.state,
                NodeState::Init | NodeState::Building | NodeState::Ready
            )
    }

    fn count_tenant_use(&mut self) {
        let tenants: BTreeMap<&str, &str> = self
            .world
            .requests
            .iter()
            .filter_map(|r| Some((r.id.as_str(), r.tenant.as_deref()?)))
            .collect();
        for n in &self.world.nodes {
            let Some(t) = n
                .details
                .allocated_request
                .as_deref()
                .and_then(|r| tenants.get(r))
            else {
                continue;
            };
            if self.gone.contains(&n.id) || matches!(n.state, NodeState::Deleting | NodeState::Used)
            {
                continue;
            }
            let size = node_size(n, self.world.view(&n.provider));
            self.tenant_use
                .entry((*t).to_owned())
                .or_default()
                .add(size);
        }
    }

    /// Ready nodes allocated to a request that no longer exists or failed go back to the pool.
    fn release_orphans(&mut self) {
        let open: BTreeMap<&str, RequestState> = self
            .world
            .requests
            .iter()
            .map(|r| (r.id.as_str(), r.state))
            .collect();
        for n in &self.world.nodes {
            let Some(req) = n.details.allocated_request.as_deref() else {
                continue;
            };
            if n.state != NodeState::Ready || self.gone.contains(&n.id) {
                continue;
            }
            let why = match open.get(req) {
                None => "no longer exists",
                Some(RequestState::Failed) => "failed",
                Some(_) => continue,
            };
            self.out.actions.push(Action {
                address: node_address(&n.provider, &n.pool, &n.label, &n.id),
                reason: format!("request {req} {why}; the node returns to the ready pool"),
                kind: ActionKind::DeallocateNode {
                    node_id: n.id.clone(),
                    request: req.to_owned(),
                },
            });
        }
    }

    fn note(&mut self, address: String, message: String) {
        self.out.notes.push(Note { address, message });
    }

    fn launch(&mut self, slot: &Slot<'_>, boot: Boot, request: Option<&str>, mut reason: String) {
        if let Some(after) = &boot.after {
            reason.push_str(&format!("; boots once {after} is done"));
        }
        let key = (
            slot.provider.name.clone(),
            slot.pool.name.clone(),
            slot.label.name.clone(),
        );
        let n = self.counters.entry(key).or_default();
        *n += 1;
        let size = Size::server(boot.vcpus, boot.ram_mb).with_volume_of(Some(slot.label));
        self.cap.count(&slot.provider.name, &slot.pool.name, size);
        self.out.actions.push(Action {
            address: node_address(
                &slot.provider.name,
                &slot.pool.name,
                &slot.label.name,
                &format!("+{n}"),
            ),
            reason,
            kind: ActionKind::LaunchNode {
                provider: slot.provider.name.clone(),
                pool: slot.pool.name.clone(),
                label: slot.label.name.clone(),
                boot,
                request: request.map(str::to_owned),
            },
        });
    }

    /// Where one more node of `slot` would boot, if it fits.
    fn try_slot(&self, slot: &Slot<'c>, extra: Size) -> Result<Boot, String> {
        let view = self
            .world
            .view(&slot.provider.name)
            .ok_or_else(|| format!("provider {} could not be observed", slot.provider.name))?;
        let nth = self.cap.pool_servers(&slot.provider.name, &slot.pool.name);
        let boot = self.boots.resolve(
            self.world,
            self.out,
            view,
            slot.provider,
            slot.pool,
            slot.label,
            nth,
        )?;
        let size = Size::server(boot.vcpus, boot.ram_mb).with_volume_of(Some(slot.label));
        let mut with_extra = size;
        with_extra.add(extra);
        self.cap
            .fits(&slot.provider.name, &slot.pool.name, with_extra)
            .map_err(|e| e.0)?;
        Ok(boot)
    }

    /// Launch what `label` lacks of `min_ready`, given `supply` ready or launching nodes.
    fn min_ready(&mut self, label: &str, min_ready: u32, supply: usize) {
        if min_ready == 0 {
            return;
        }
        let want = usize::try_from(min_ready).unwrap_or(usize::MAX);
        if supply >= want {
            return;
        }
        let slots = slots(self.config, label);
        for i in supply..want {
            let mut last = format!("no pool offers label {label}");
            let mut launched = false;
            for slot in &slots {
                match self.try_slot(slot, Size::default()) {
                    Ok(boot) => {
                        let reason = format!(
                            "label {label} has {i} of min-ready {min_ready} (ready or launching)"
                        );
                        self.launch(slot, boot, None, reason);
                        launched = true;
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            if !launched {
                self.note(
                    format!("label.{label}"),
                    format!(
                        "{} of min-ready {min_ready} cannot be launched now: {last}",
                        want - i
                    ),
                );
                return;
            }
        }
    }

    fn serve(&mut self, r: &NodeRequest) {
        let addr = format!("request.{}", r.id);
        let allocated: Vec<&Node> = self
            .world
            .nodes
            .iter()
            .filter(|n| {
                n.details.allocated_request.as_deref() == Some(r.id.as_str()) && self.alive(n)
            })
            .collect();
        if allocated.is_empty() && r.state == RequestState::Requested {
            return self.serve_new(r, &addr);
        }
        // Pending: replace lost nodes, fulfil when every node is ready.
        let mut missing: Vec<&str> = r.labels.iter().map(String::as_str).collect();
        for n in &allocated {
            if let Some(i) = missing.iter().position(|l| *l == n.label) {
                missing.remove(i);
            }
        }
        let provider = allocated.first().map(|n| n.provider.clone());
        let mut waiting = false;
        for label in missing {
            let candidates: Vec<Slot<'_>> = slots(self.config, label)
                .into_iter()
                .filter(|s| provider.as_deref().is_none_or(|p| p == s.provider.name))
                .collect();
            match candidates
                .iter()
                .find_map(|s| self.try_slot(s, Size::default()).ok().map(|b| (s, b)))
            {
                Some((slot, boot)) => {
                    let reason = format!(
                        "request {} lost its {label} node; launching a replacement",
                        r.id
                    );
                    self.launch(slot, boot, Some(&r.id), reason);
                }
                None => waiting = true,
            }
        }
        let all_ready = allocated.len() == r.labels.len()
            && allocated.iter().all(|n| n.state == NodeState::Ready);
        if all_ready {
            self.out.actions.push(Action {
                address: addr,
                reason: format!("all {} node(s) are ready", allocated.len()),
                kind: ActionKind::FulfillRequest {
                    request: r.id.clone(),
                    nodes: allocated.iter().map(|n| n.id.clone()).collect(),
                },
            });
        } else if waiting {
            self.note(addr, "waits for capacity to replace a lost node".into());
        }
    }

    fn serve_new(&mut self, r: &NodeRequest, addr: &str) {
        if r.labels.is_empty() {
            return self.fail(r, addr, "it asks for no labels".into());
        }
        if let Some(missing) = r.labels.iter().find(|l| slots(self.config, l).is_empty()) {
            return self.fail(r, addr, format!("no pool offers label {missing}"));
        }
        // All nodes of a request come from one provider (as upstream): the first, by
        // priority, that offers every label and has room for what must be launched.
        let mut providers: Vec<&OpenStackProvider> = self
            .config
            .providers
            .iter()
            .filter(|p| {
                r.labels.iter().all(|l| {
                    p.pools
                        .iter()
                        .any(|pool| pool.labels.iter().any(|x| &x.name == l))
                })
            })
            .collect();
        if providers.is_empty() {
            return self.fail(
                r,
                addr,
                format!("no single provider offers all of {}", r.labels.join(", ")),
            );
        }
        providers.sort_by_key(|p| p.priority);
        let mut last = String::new();
        for p in providers {
            match self.assign(r, p) {
                Ok(()) => return,
                Err(e) => last = e,
            }
        }
        self.note(addr.to_owned(), format!("waits: {last}"));
    }

    /// Try to serve `r` entirely from provider `p`; on success the actions are emitted.
    fn assign(&mut self, r: &NodeRequest, p: &OpenStackProvider) -> Result<(), String> {
        let mut ready: Vec<&Node> = Vec::new();
        let mut launches: Vec<(Slot<'_>, Boot)> = Vec::new();
        let mut extra = BTreeMap::<(String, String), Size>::new();
        let mut total = Size::default();
        for label in &r.labels {
            let free = self.world.nodes.iter().filter(|n| {
                n.provider == p.name
                    && &n.label == label
                    && n.state == NodeState::Ready
                    && n.details.allocated_request.is_none()
                    && !self.gone.contains(&n.id)
                    && !self.taken.contains(&n.id)
                    && !ready.iter().any(|x| x.id == n.id)
            });
            if let Some(n) = free.min_by(|a, b| (a.state_time, &a.id).cmp(&(b.state_time, &b.id))) {
                ready.push(n);
                continue;
            }
            let mut last = format!("provider {} has no room for {label}", p.name);
            let mut found = None;
            for slot in slots(self.config, label)
                .into_iter()
                .filter(|s| s.provider.name == p.name)
            {
                let key = (slot.provider.name.clone(), slot.pool.name.clone());
                match self.try_slot(&slot, extra.get(&key).copied().unwrap_or_default()) {
                    Ok(boot) => {
                        found = Some((slot, boot));
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let (slot, boot) = found.ok_or(last)?;
            let size = Size::server(boot.vcpus, boot.ram_mb).with_volume_of(Some(slot.label));
            extra
                .entry((slot.provider.name.clone(), slot.pool.name.clone()))
                .or_default()
                .add(size);
            total.add(size);
            launches.push((slot, boot));
        }
        if let Some(tenant) = &r.tenant {
            self.check_tenant(tenant, total)?;
            self.tenant_use
                .entry(tenant.clone())
                .or_default()
                .add(total);
        }
        for n in &ready {
            self.taken.insert(n.id.clone());
            self.out.actions.push(Action {
                address: node_address(&n.provider, &n.pool, &n.label, &n.id),
                reason: format!("allocated to request {} ({})", r.id, r.requestor),
                kind: ActionKind::AllocateNode {
                    node_id: n.id.clone(),
                    request: r.id.clone(),
                },
            });
        }
        let ready_count = ready.len();
        for (slot, boot) in launches {
            let reason = format!(
                "for request {} ({}, priority {})",
                r.id, r.requestor, r.priority
            );
            self.launch(&slot, boot, Some(&r.id), reason);
        }
        if ready_count == r.labels.len() {
            self.out.actions.push(Action {
                address: format!("request.{}", r.id),
                reason: format!("served by {ready_count} ready node(s)"),
                kind: ActionKind::FulfillRequest {
                    request: r.id.clone(),
                    nodes: ready.iter().map(|n| n.id.clone()).collect(),
                },
            });
        }
        Ok(())
    }

    /// A request over its tenant's limit waits (it is not declined).
    fn check_tenant(&self, tenant: &str, add_size: Size) -> Result<(), String> {
        let Some(limit) = self
            .config
            .tenant_resource_limits
            .iter()
            .find(|t| t.tenant_name == tenant)
        else {
            return Ok(());
        };
        let used = self.tenant_use.get(tenant).copied().unwrap_or_default();
        for (what, max, now, more) in [
            (
                "max-servers",
                limit.max_servers,
                used.instances,
                add_size.instances,
            ),
            ("max-cores", limit.max_cores, used.cores, add_size.cores),
            ("max-ram", limit.max_ram, used.ram_mb, add_size.ram_mb),
        ] {
            if let Some(max) = max
                && now + more > max
            {
                return Err(format!(
                    "tenant {tenant} would exceed its {what} {max} (uses {now}, needs {more} more)"
                ));
            }
        }
        Ok(())
    }

    fn fail(&mut self, r: &NodeRequest, addr: &str, why: String) {
        self.out.actions.push(Action {
            address: addr.to_owned(),
            reason: format!("cannot be served: {why}"),
            kind: ActionKind::FailRequest {
                request: r.id.clone(),
            },
        });
    }
}
