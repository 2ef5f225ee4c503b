//! Apply: carry out a plan's actions, journalling every cloud mutation before it is sent.
//!
//! Invariants:
//! - Every cloud mutation has a journal row (`pending`, committed) and the database records
//!   what is about to exist (a node in `init`, a node in `deleting`) *before* the request is
//!   sent; servers carry their node id in metadata. A crash at any point leaves nothing the
//!   next plan cannot find and finish (adopt, relaunch or delete), and a slot is never
//!   launched twice: the node row is the slot.
//! - Every database write is fenced by the writer lease (`write_under_lease`).
//! - Waiting for servers uses one paginated list per provider per poll, never a GET per server.
//! - A failed action is recorded and the others go on; the caller learns which failed.

use super::launch::{self, LaunchSpec};
use super::plan::{Action, ActionKind, Addresses, Boot, Plan};
use crate::cloud::{CloudError, OpenStackClient, ServerQuery};
use crate::config::Config;
use crate::state::{
    LeakKind, LeaseGuard, NewJournalEntry, NewNode, NodeDetails, NodeState, RequestState,
    StateError, Store, WriteTx,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "no client for provider {0}: it is not configured or its credentials could not be resolved"
    )]
    NoClient(String),
}

/// How apply paces itself.
#[derive(Clone)]
pub struct ApplyOptions {
    /// Time between two server lists while waiting for servers to become ACTIVE or go away.
    pub poll_interval: Duration,
    /// How long to wait for deleted servers to disappear before leaving it to the next run.
    pub delete_wait: Duration,
    /// Cloud operations in flight per provider when the provider sets no `max-concurrency`.
    pub default_concurrency: usize,
    /// Where builds read elements and write images and logs (needed for image actions).
    pub build_dirs: Option<crate::builder::BuildDirs>,
    /// Draw upload progress (e.g. an indicatif bar).
    pub upload_progress: Option<UploadProgressFn>,
    /// How long to follow launched servers before handing them to the next plan (which
    /// goes on with `AwaitServer`); `None`: until each is ready or given up. The daemon sets
    /// it, so that a slow boot never holds the writer lease for long.
    pub launch_wait: Option<Duration>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            poll_interval: Duration::from_secs(2),
            delete_wait: Duration::from_secs(300),
            default_concurrency: 8,
            build_dirs: None,
            upload_progress: None,
            launch_wait: None,
        }
    }
}

/// Progress of one action, for the CLI's output and the daemon's logs.
#[derive(Clone, Debug)]
pub enum ApplyEvent {
    Started { address: String },
    Done { address: String, detail: String },
    Failed { address: String, error: String },
}

pub type Reporter = Arc<dyn Fn(&ApplyEvent) + Send + Sync>;

/// Called with (upload address, bytes sent, total bytes) as an upload goes out.
pub type UploadProgressFn = Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

/// The outcome of an apply.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    pub done: usize,
    pub failed: Vec<(String, String)>,
}

/// What apply works with. The store and lease are shared with the lease renewer.
pub struct Applier {
    pub config: Arc<Config>,
    pub store: Arc<Mutex<Store>>,
    pub lease: Arc<Mutex<LeaseGuard>>,
    pub clients: BTreeMap<String, OpenStackClient>,
    pub plan_id: String,
    pub options: ApplyOptions,
    pub reporter: Reporter,
    /// Builds finished in this apply: image → build id (for uploads of a planned build).
    pub built: Mutex<BTreeMap<String, String>>,
    /// Uploads finished in this apply: upload address → (cloud image id, upload id), for
    /// launches after them.
    pub uploaded: Mutex<BTreeMap<String, (String, String)>>,
}

/// A node launched (or relaunched) in this apply, waited for until ready or failed.
struct Launching {
    node_id: String,
    address: String,
    server_id: String,
    /// How to boot again after a failed boot (`None`: no retry within this apply).
    boot: Option<Boot>,
    journal: i64,
    since: Instant,
    /// The host-key scan of its ACTIVE server (`host-key-checking`), once started.
    scan: Option<Scan>,
    /// Once settled: the floating IP given to its ACTIVE server (`Some(None)`: none needed).
    floating_ip: Option<Option<String>>,
}

/// A host-key scan running beside the wait loop; aborted if the launch is given up.
struct Scan {
    task: tokio::task::JoinHandle<Result<Vec<String>, crate::keyscan::KeyscanError>>,
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lines of a failed server's console logged with `console-log`.
const CONSOLE_LINES: u32 = 50;

/// A server deleted in this apply, waited for until it is gone (then the row goes too).
struct Deleting {
    node_id: String,
    address: String,
    server_id: String,
    journal: i64,
}

impl Applier {
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut store = self.store.lock().expect("store lock");
        let lease = self.lease.lock().expect("lease lock");
        store.write_under_lease(&lease, f)
    }

    fn report(&self, e: ApplyEvent) {
        (self.reporter)(&e);
    }

    fn journal(
        &self,
        w: &WriteTx<'_>,
        seq: i64,
        kind: &str,
        a: &Action,
    ) -> Result<i64, StateError> {
        let payload = serde_json::to_value(&a.kind).unwrap_or_default();
        let entry = w.journal_insert(&NewJournalEntry {
            plan_id: self.plan_id.clone(),
            seq,
            kind: kind.to_owned(),
            address: a.address.clone(),
            reason: a.reason.clone(),
            payload,
        })?;
        Ok(entry.id)
    }

    fn finish(&self, journal: i64, result: &Result<String, String>) {
        let r = self.write(|w| match result {
            Ok(_) => w.journal_done(journal).map(|_| ()),
            Err(e) => w.journal_fail(journal, e).map(|_| ()),
        });
        if let Err(e) = r {
            tracing::error!(journal, error = %e, "cannot record the outcome of a journalled action");
        }
    }

    /// Carry out `plan`. Database-only actions first (they are instant), then each provider's
    /// cloud actions, providers in parallel.
    pub async fn apply(&self, plan: &Plan) -> Result<ApplyReport, ApplyError> {
        let mut report = ApplyReport::default();
        self.record_sightings(plan)?;
        let mut by_provider: BTreeMap<String, Vec<(i64, &Action)>> = BTreeMap::new();
        let mut builds = Vec::new();
        for (seq, a) in plan.actions.iter().enumerate() {
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            if matches!(
                a.kind,
                ActionKind::BuildImage { .. }
                    | ActionKind::DeleteBuild { .. }
                    | ActionKind::PruneBuild { .. }
            ) {
                builds.push((seq, a));
                continue;
            }
            match a.kind.provider() {
                Some(p) => by_provider.entry(p.to_owned()).or_default().push((seq, a)),
                None => {
                    self.report(ApplyEvent::Started {
                        address: a.address.clone(),
                    });
                    match self.apply_local(seq, a) {
                        Ok(detail) => {
                            report.done += 1;
                            self.report(ApplyEvent::Done {
                                address: a.address.clone(),
                                detail,
                            });
                        }
                        Err(e) => {
                            let error = e.to_string();
                            report.failed.push((a.address.clone(), error.clone()));
                            self.report(ApplyEvent::Failed {
                                address: a.address.clone(),
                                error,
                            });
                        }
                    }
                }
            }
        }
        // Builds run one at a time (they are heavy) before any upload that may need them.
        for (seq, a) in builds {
            self.report(ApplyEvent::Started {
                address: a.address.clone(),
            });
            match self.build(seq, a).await {
                Ok(detail) => {
                    report.done += 1;
                    self.report(ApplyEvent::Done {
                        address: a.address.clone(),
                        detail,
                    });
                }
                Err(error) => {
                    report.failed.push((a.address.clone(), error.clone()));
                    self.report(ApplyEvent::Failed {
                        address: a.address.clone(),
                        error,
                    });
                }
            }
        }
        let runs = by_provider
            .into_iter()
            .map(
                |(provider, actions)| async move { self.apply_provider(&provider, actions).await },
            );
        for r in futures_util::future::join_all(runs).await {
            report.done += r.done;
            report.failed.extend(r.failed);
        }
        Ok(report)
    }

    fn record_sightings(&self, plan: &Plan) -> Result<(), StateError> {
        self.write(|w| {
            for provider in &plan.swept {
                for kind in LeakKind::ALL {
                    let seen: Vec<String> = plan
                        .sightings
                        .iter()
                        .filter(|s| &s.provider == provider && s.kind == *kind)
                        .map(|s| s.external_id.clone())
                        .collect();
                    w.observe_leaks(provider, *kind, &seen)?;
                }
            }
            Ok(())
        })
    }

    /// Actions that only change records.
    fn apply_local(&self, seq: i64, a: &Action) -> Result<String, StateError> {
        self.write(|w| {
            let j = self.journal(w, seq, kind_name(&a.kind), a)?;
            w.journal_start(j)?;
            let detail = match &a.kind {
                ActionKind::MarkReady {
                    node_id,
                    server_id,
                    addresses,
                } => {
                    mark_ready(w, node_id, server_id, addresses, &[])?;
                    "ready".to_owned()
                }
                ActionKind::AdoptServer { node_id, server_id } => {
                    w.update_node(node_id, |d| d.server_id = Some(server_id.clone()))?;
                    let n = w.read().node(node_id)?;
                    if n.is_some_and(|n| n.state == NodeState::Init) {
                        w.set_node_state(node_id, NodeState::Building)?;
                    }
                    format!("adopted server {server_id}")
                }
                ActionKind::ForgetNode { node_id } => {
                    let n = w.read().node(node_id)?;
                    if let Some(n) = n {
                        if n.state != NodeState::Deleting {
                            w.set_node_state(node_id, NodeState::Deleting)?;
                        }
                        w.remove_node(node_id)?;
                    }
                    "record removed".to_owned()
                }
                ActionKind::AllocateNode { node_id, request } => {
                    w.update_node(node_id, |d| d.allocated_request = Some(request.clone()))?;
                    to_pending(w, request)?;
                    format!("allocated to {request}")
                }
                ActionKind::DeallocateNode { node_id, .. } => {
                    w.update_node(node_id, |d| d.allocated_request = None)?;
                    "returned to the pool".to_owned()
                }
                ActionKind::FulfillRequest { request, nodes } => {
                    w.set_request_nodes(request, nodes)?;
                    w.set_request_state(request, RequestState::Fulfilled, None)?;
                    "fulfilled".to_owned()
                }
                ActionKind::FailRequest { request } => {
                    w.set_request_state(request, RequestState::Failed, Some(&a.reason))?;
                    "failed".to_owned()
                }
                other => unreachable!("{other:?} touches a cloud"),
            };
            w.journal_done(j)?;
            Ok(detail)
        })
    }

    /// One provider's cloud actions: mutations with bounded concurrency, then a wait loop for
    /// launched servers to become ACTIVE and deleted ones to go away.
    async fn apply_provider(&self, provider: &str, actions: Vec<(i64, &Action)>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let Some(client) = self.clients.get(provider) else {
            for (_, a) in actions {
                let error = ApplyError::NoClient(provider.to_owned()).to_string();
                self.report(ApplyEvent::Failed {
                    address: a.address.clone(),
                    error: error.clone(),
                });
                report.failed.push((a.address.clone(), error));
            }
            return report;
        };
        let concurrency = self
            .config
            .provider(provider)
            .and_then(|p| p.max_concurrency)
            .and_then(|c| usize::try_from(c).ok())
            .filter(|c| *c > 0)
            .unwrap_or(self.options.default_concurrency);
        let networks = match self.network_ids(provider, client, &actions).await {
            Ok(n) => n,
            Err(e) => {
                for (_, a) in &actions {
                    report.failed.push((a.address.clone(), e.to_string()));
                    self.report(ApplyEvent::Failed {
                        address: a.address.clone(),
                        error: e.to_string(),
                    });
                }
                return report;
            }
        };
        use futures_util::StreamExt;
        // Image actions first: launches in this plan may boot what they upload.
        let (images, nodes): (Vec<_>, Vec<_>) = actions.into_iter().partition(|(_, a)| {
            matches!(
                a.kind,
                ActionKind::UploadImage { .. } | ActionKind::DeleteUpload { .. }
            )
        });
        let mut outcomes: Vec<Step> = futures_util::stream::iter(images)
            .map(|(seq, a)| async move {
                self.report(ApplyEvent::Started {
                    address: a.address.clone(),
                });
                self.image_action(client, seq, a).await
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let node_outcomes: Vec<Step> = futures_util::stream::iter(nodes)
            .map(|(seq, a)| {
                let networks = &networks;
                async move {
                    self.report(ApplyEvent::Started {
                        address: a.address.clone(),
                    });
                    self.mutate(client, networks, seq, a).await
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        outcomes.extend(node_outcomes);
        let mut launching = Vec::new();
        let mut deleting = Vec::new();
        for o in outcomes {
            match o {
                Step::Done(address, detail) => {
                    report.done += 1;
                    self.report(ApplyEvent::Done { address, detail });
                }
                Step::Failed(address, error) => {
                    report.failed.push((address.clone(), error.clone()));
                    self.report(ApplyEvent::Failed { address, error });
                }
                Step::Launching(l) => launching.push(*l),
                Step::Deleting(d) => deleting.push(d),
            }
        }
        self.wait(
            provider,
            client,
            &networks,
            launching,
            deleting,
            &mut report,
        )
        .await;
        report
    }

    /// Network names used by this provider's launches → ids (one list per name).
    async fn network_ids(
        &self,
        provider: &str,
        client: &OpenStackClient,
        actions: &[(i64, &Action)],
    ) -> Result<BTreeMap<String, String>, CloudError> {
        let launches = actions.iter().any(|(_, a)| {
            matches!(
                a.kind,
                ActionKind::LaunchNode { .. } | ActionKind::RelaunchNode { .. }
            )
        });
        let mut names = BTreeSet::new();
        if let (true, Some(p)) = (launches, self.config.provider(provider)) {
            for pool in &p.pools {
                names.extend(pool.networks.iter().cloned());
                for l in &pool.labels {
                    names.extend(l.networks.iter().flatten().cloned());
                }
            }
        }
        let mut out = BTreeMap::new();
        for n in names {
            let net = client.find_network(&n).await?;
            out.insert(n, net.id);
        }
        Ok(out)
    }

    async fn mutate(
        &self,
        client: &OpenStackClient,
        networks: &BTreeMap<String, String>,
        seq: i64,
        a: &Action,
    ) -> Step {
        let failed = |e: String| Step::Failed(a.address.clone(), e);
        match &a.kind {
            ActionKind::LaunchNode {
                provider,
                pool,
                label,
                boot,
                request,
            } => {
                let Some((p, pool_config, lb)) = self.place(provider, pool, label) else {
                    return failed(format!("{provider}.{pool}.{label} is no longer configured"));
                };
                let boot = match self.resolve_after(boot) {
                    Ok(b) => b,
                    Err(e) => return failed(e),
                };
                let boot = &boot;
                let (username, ctype, port, python, shell) =
                    launch::connection(&self.config, p, lb);
                let new = NewNode {
                    provider: provider.clone(),
                    pool: pool.clone(),
                    label: label.clone(),
                    hostname: None,
                    state: NodeState::Init,
                    details: NodeDetails {
                        cloud: p.cloud.clone(),
                        region: p.region_name.clone(),
                        allocated_request: request.clone(),
                        username: Some(username),
                        connection_type: Some(ctype),
                        connection_port: Some(port),
                        python_path: Some(python),
                        shell_type: shell,
                        image_name: Some(boot.image_name.clone()),
                        upload_id: boot.upload_id.clone(),
                        image_id: Some(boot.image_id.clone()),
                        flavor: Some(boot.flavor_name.clone()),
                        cores: u32::try_from(boot.vcpus).ok(),
                        ram: u32::try_from(boot.ram_mb).ok(),
                        instances: Some(1),
                        attributes: pool_config
                            .node_attributes
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        ..NodeDetails::default()
                    },
                };
                // The node row (the slot) and the journal entry exist before the create is sent.
                let prepared = self.write(|w| {
                    let node = w.insert_node_named(&new, |id| launch::hostname(p, label, id))?;
                    let j = self.journal(w, seq, "create-server", a)?;
                    w.journal_start(j)?;
                    if let Some(r) = request {
                        to_pending(w, r)?;
                    }
                    Ok((node, j))
                });
                let (node, j) = match prepared {
                    Ok(x) => x,
                    Err(e) => return failed(e.to_string()),
                };
                let address = format!("node.{provider}.{pool}.{label}[{}]", node.id);
                match self.boot_node(client, networks, &node, boot, true).await {
                    Ok(server_id) => Step::Launching(Box::new(Launching {
                        node_id: node.id.clone(),
                        address,
                        server_id,
                        boot: Some(boot.clone()),
                        journal: j,
                        since: Instant::now(),
                        scan: None,
                        floating_ip: None,
                    })),
                    Err(e) => {
                        let msg = e.to_string();
                        self.finish(j, &Err(msg.clone()));
                        Step::Failed(address, msg)
                    }
                }
            }
            ActionKind::RelaunchNode {
                node_id,
                server_id,
                boot,
                counts_as_attempt,
                ..
            } => {
                let node = match self.store.lock().expect("store").read().node(node_id) {
                    Ok(Some(n)) => n,
                    Ok(None) => return failed(format!("node {node_id} no longer exists")),
                    Err(e) => return failed(e.to_string()),
                };
                if self
                    .place(&node.provider, &node.pool, &node.label)
                    .is_none()
                {
                    return failed("the node's pool label is no longer configured".into());
                }
                let boot = match self.resolve_after(boot) {
                    Ok(b) => b,
                    Err(e) => return failed(e),
                };
                let boot = &boot;
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, "relaunch-server", a)?;
                    w.journal_start(j)?;
                    w.update_node(node_id, |d| {
                        d.image_id = Some(boot.image_id.clone());
                        d.upload_id = boot.upload_id.clone();
                        d.flavor = Some(boot.flavor_name.clone());
                    })?;
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                if let Some(old) = server_id {
                    self.log_console(client, &node, old, &a.reason).await;
                }
                if let Some(old) = server_id
                    && let Err(e) = delete_server(client, old).await
                {
                    let msg = e.to_string();
                    self.finish(j, &Err(msg.clone()));
                    return failed(msg);
                }
                match self
                    .boot_node(client, networks, &node, boot, *counts_as_attempt)
                    .await
                {
                    Ok(sid) => Step::Launching(Box::new(Launching {
                        node_id: node_id.clone(),
                        address: a.address.clone(),
                        server_id: sid,
                        boot: Some(boot.clone()),
                        journal: j,
                        since: Instant::now(),
                        scan: None,
                        floating_ip: None,
                    })),
                    Err(e) => {
                        let msg = e.to_string();
                        self.finish(j, &Err(msg.clone()));
                        failed(msg)
                    }
                }
            }
            ActionKind::DeleteNode {
                node_id,
                server_id,
                floating_ips,
                ..
            } => {
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, "delete-server", a)?;
                    w.journal_start(j)?;
                    if let Some(n) = w.read().node(node_id)?
                        && n.state != NodeState::Deleting
                    {
                        w.set_node_state(node_id, NodeState::Deleting)?;
                    }
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                // Its floating IPs first: once the server is gone they would be attached to
                // nothing, and nothing would say they were this node's.
                for fip in floating_ips {
                    match client.delete_floating_ip(fip).await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => {
                            let msg = format!("floating IP {fip}: {e}");
                            self.finish(j, &Err(msg.clone()));
                            return failed(msg);
                        }
                    }
                }
                match server_id {
                    Some(sid) => match delete_server(client, sid).await {
                        Ok(()) => Step::Deleting(Deleting {
                            node_id: node_id.clone(),
                            address: a.address.clone(),
                            server_id: sid.clone(),
                            journal: j,
                        }),
                        Err(e) => {
                            let msg = e.to_string();
                            self.finish(j, &Err(msg.clone()));
                            failed(msg)
                        }
                    },
                    None => {
                        let r = self.write(|w| {
                            w.remove_node(node_id)?;
                            w.journal_done(j).map(|_| ())
                        });
                        match r {
                            Ok(()) => {
                                Step::Done(a.address.clone(), "record removed (no server)".into())
                            }
                            Err(e) => failed(e.to_string()),
                        }
                    }
                }
            }
            ActionKind::AwaitServer {
                node_id,
                server_id,
                boot,
                ..
            } => {
                let node = match self.store.lock().expect("store").read().node(node_id) {
                    Ok(Some(n)) => n,
                    Ok(None) => return failed(format!("node {node_id} no longer exists")),
                    Err(e) => return failed(e.to_string()),
                };
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, "await-server", a)?;
                    w.journal_start(j)?;
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                // The launch-timeout counts from when this attempt started.
                let elapsed = Duration::from_secs(
                    u64::try_from(crate::state::now_unix() - node.state_time).unwrap_or(0),
                );
                Step::Launching(Box::new(Launching {
                    node_id: node_id.clone(),
                    address: a.address.clone(),
                    server_id: server_id.clone(),
                    boot: boot.clone(),
                    journal: j,
                    since: Instant::now()
                        .checked_sub(elapsed)
                        .unwrap_or_else(Instant::now),
                    scan: None,
                    floating_ip: None,
                }))
            }
            ActionKind::DeleteLeak {
                kind, external_id, ..
            } => {
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, &format!("delete-{}", kind.as_str()), a)?;
                    w.journal_start(j)?;
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                let r = match kind {
                    LeakKind::Server => client.delete_server(external_id).await,
                    LeakKind::FloatingIp => client.delete_floating_ip(external_id).await,
                    LeakKind::Port => client.delete_port(external_id).await,
                    LeakKind::Image => client.delete_image(external_id).await,
                };
                let r = match r {
                    Err(e) if e.is_not_found() => Ok(()),
                    other => other,
                };
                let result = r.map(|()| "deleted".to_owned()).map_err(|e| e.to_string());
                self.finish(j, &result);
                match result {
                    Ok(d) => Step::Done(a.address.clone(), d),
                    Err(e) => failed(e),
                }
            }
            other => unreachable!("{other:?} is database-only"),
        }
    }

    fn dirs(&self) -> Result<&crate::builder::BuildDirs, String> {
        self.options
            .build_dirs
            .as_ref()
            .ok_or_else(|| "no build directories configured for image actions".to_owned())
    }

    /// Build a diskimage, or delete a build's files and record.
    async fn build(&self, seq: i64, a: &Action) -> Result<String, String> {
        let dirs = self.dirs()?.clone();
        match &a.kind {
            ActionKind::BuildImage { image, formats } => {
                let Some(di) = self.config.diskimage(image) else {
                    return Err(format!("diskimage {image} is no longer configured"));
                };
                let builder = crate::ops::apply::hostname();
                let (row, j) = self
                    .write(|w| {
                        let row = w.insert_build(&crate::state::NewBuild {
                            image_name: image.clone(),
                            builder: Some(builder.clone()),
                            log_path: None,
                        })?;
                        let j = self.journal(w, seq, "build-image", a)?;
                        w.journal_start(j)?;
                        Ok((row, j))
                    })
                    .map_err(|e| e.to_string())?;
                let req = crate::builder::BuildRequest::new(di, &row.id, formats.clone(), dirs);
                let log = req.log_path().display().to_string();
                let _ = self.write(|w| w.set_build_log(&row.id, &log));
                match crate::builder::build(&req).await {
                    Ok(out) => {
                        let formats: Vec<String> =
                            out.files.iter().map(|f| f.format.clone()).collect();
                        self.write(|w| {
                            w.finish_build(
                                &row.id,
                                0,
                                &formats,
                                i64::try_from(out.total_size).ok(),
                            )?;
                            w.journal_done(j).map(|_| ())
                        })
                        .map_err(|e| e.to_string())?;
                        self.built
                            .lock()
                            .expect("built lock")
                            .insert(image.clone(), row.id.clone());
                        Ok(format!(
                            "build {} ready: {} ({}) in {:.1}s",
                            row.id,
                            formats.join(", "),
                            human_size(out.total_size),
                            out.duration.as_secs_f64()
                        ))
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let code = e.exit_code().unwrap_or(-1);
                        let _ = self.write(|w| {
                            w.finish_build(&row.id, code, &[], None)?;
                            w.journal_fail(j, &msg).map(|_| ())
                        });
                        Err(format!("build {} failed: {msg} (log: {log})", row.id))
                    }
                }
            }
            ActionKind::DeleteBuild { image, build_id } => {
                let j = self
                    .write(|w| {
                        let j = self.journal(w, seq, "delete-build", a)?;
                        w.journal_start(j)?;
                        if let Some(b) = w.read().build(build_id)?
                            && b.state != crate::state::BuildState::Deleting
                        {
                            w.set_build_state(build_id, crate::state::BuildState::Deleting)?;
                        }
                        Ok(j)
                    })
                    .map_err(|e| e.to_string())?;
                let r = crate::builder::dib::remove_build_files(&dirs, image, build_id)
                    .map_err(|e| format!("cannot remove the files of build {build_id}: {e}"));
                let r = r.and_then(|()| {
                    self.write(|w| {
                        w.remove_build(build_id)?;
                        w.journal_done(j).map(|_| ())
                    })
                    .map_err(|e| e.to_string())
                });
                self.finish_if_err(j, &r);
                r.map(|()| "files and record removed".to_owned())
            }
            ActionKind::PruneBuild {
                image,
                build_id,
                formats,
            } => {
                let j = self
                    .write(|w| {
                        let j = self.journal(w, seq, "prune-build", a)?;
                        w.journal_start(j)?;
                        Ok(j)
                    })
                    .map_err(|e| e.to_string())?;
                // Files first, then the record: a crash in between leaves the record saying
                // the files exist, and the next plan prunes again (removing nothing).
                let mut freed = 0;
                let r = formats
                    .iter()
                    .try_for_each(|f| {
                        freed +=
                            crate::builder::dib::remove_format_files(&dirs, image, build_id, f)?;
                        Ok(())
                    })
                    .map_err(|e: std::io::Error| {
                        format!("cannot remove the files of build {build_id}: {e}")
                    })
                    .and_then(|()| {
                        self.write(|w| {
                            w.prune_build_formats(build_id, formats)?;
                            w.journal_done(j).map(|_| ())
                        })
                        .map_err(|e| e.to_string())
                    });
                self.finish_if_err(j, &r);
                r.map(|()| format!("removed {} ({})", formats.join(", "), human_size(freed)))
            }
            other => unreachable!("{other:?} is not a build action"),
        }
    }

    fn finish_if_err(&self, journal: i64, r: &Result<(), String>) {
        if let Err(e) = r {
            self.finish(journal, &Err(e.clone()));
        }
    }

    /// Upload a build to this provider, or delete an upload.
    async fn image_action(&self, client: &OpenStackClient, seq: i64, a: &Action) -> Step {
        let failed = |e: String| Step::Failed(a.address.clone(), e);
        match &a.kind {
            ActionKind::UploadImage {
                provider,
                image,
                build,
                format,
            } => {
                let dirs = match self.dirs() {
                    Ok(d) => d,
                    Err(e) => return failed(e),
                };
                let build_id = match build {
                    super::plan::BuildRef::Existing(id) => id.clone(),
                    super::plan::BuildRef::Planned => {
                        match self.built.lock().expect("built lock").get(image) {
                            Some(id) => id.clone(),
                            None => {
                                return failed(format!(
                                    "image_build.{image} did not complete, so there is nothing to upload"
                                ));
                            }
                        }
                    }
                };
                let Some(p) = self.config.provider(provider) else {
                    return failed(format!("provider {provider} is no longer configured"));
                };
                let Some(pd) = p.diskimages.iter().find(|d| &d.name == image) else {
                    return failed(format!("provider {provider} no longer lists {image}"));
                };
                let file = match crate::builder::dib::built_file(dirs, image, &build_id, format) {
                    Ok(f) => f,
                    Err(e) => return failed(e.to_string()),
                };
                let prepared = self.write(|w| {
                    let row = w.insert_upload(&crate::state::NewUpload {
                        build_id: Some(build_id.clone()),
                        image_name: image.clone(),
                        provider: provider.clone(),
                        format: Some(format.clone()),
                        external_name: String::new(),
                    })?;
                    let j = self.journal(w, seq, "upload-image", a)?;
                    w.journal_start(j)?;
                    Ok((row, j))
                });
                let (row, j) = match prepared {
                    Ok(x) => x,
                    Err(e) => return failed(e.to_string()),
                };
                let mut req = crate::builder::UploadRequest::new(p, pd, &build_id, &row.id, file);
                if let Some(progress) = &self.options.upload_progress {
                    let progress = Arc::clone(progress);
                    let address = a.address.clone();
                    req.progress = Some(Arc::new(move |u: crate::cloud::UploadProgress| {
                        progress(&address, u.sent, u.total)
                    }));
                }
                match crate::builder::upload(client, &req).await {
                    Ok(up) => {
                        let r = self.write(|w| {
                            w.update_upload(&row.id, |d| {
                                d.external_id = Some(up.external_id.clone());
                                d.external_name = up.external_name.clone();
                                d.attempts += 1;
                            })?;
                            w.set_upload_state(&row.id, crate::state::UploadState::Ready)?;
                            w.journal_done(j).map(|_| ())
                        });
                        if let Err(e) = r {
                            return failed(e.to_string());
                        }
                        self.uploaded
                            .lock()
                            .expect("uploaded lock")
                            .insert(a.address.clone(), (up.external_id.clone(), row.id.clone()));
                        Step::Done(
                            a.address.clone(),
                            format!(
                                "upload {} ready: {} ({})",
                                row.id, up.external_name, up.external_id
                            ),
                        )
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let leftover = e.leftover_image().map(str::to_owned);
                        let _ = self.write(|w| {
                            w.update_upload(&row.id, |d| {
                                d.last_error = Some(msg.clone());
                                d.external_id = leftover.clone();
                                d.attempts += 1;
                            })?;
                            w.set_upload_state(&row.id, crate::state::UploadState::Failed)?;
                            w.journal_fail(j, &msg).map(|_| ())
                        });
                        failed(format!("upload {} failed: {msg}", row.id))
                    }
                }
            }
            ActionKind::DeleteUpload {
                upload_id,
                external_id,
                ..
            } => {
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, "delete-image", a)?;
                    w.journal_start(j)?;
                    if let Some(u) = w.read().upload(upload_id)?
                        && u.state != crate::state::UploadState::Deleting
                    {
                        w.set_upload_state(upload_id, crate::state::UploadState::Deleting)?;
                    }
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                if let Some(id) = external_id {
                    let r = match client.delete_image(id).await {
                        Err(e) if e.is_not_found() => Ok(()),
                        other => other,
                    };
                    if let Err(e) = r {
                        // The record stays `deleting`: the next plan tries again.
                        let msg = e.to_string();
                        self.finish(j, &Err(msg.clone()));
                        return failed(msg);
                    }
                }
                match self.write(|w| {
                    if w.read().upload(upload_id)?.is_some() {
                        w.remove_upload(upload_id)?;
                    }
                    w.journal_done(j).map(|_| ())
                }) {
                    Ok(()) => Step::Done(a.address.clone(), "image and record removed".into()),
                    Err(e) => failed(e.to_string()),
                }
            }
            other => unreachable!("{other:?} is not an image action"),
        }
    }

    /// A boot that waits for an upload of this apply gets that upload's image id.
    fn resolve_after(&self, boot: &Boot) -> Result<Boot, String> {
        let Some(after) = &boot.after else {
            return Ok(boot.clone());
        };
        let uploaded = self.uploaded.lock().expect("uploaded lock");
        match uploaded.get(after) {
            Some((image_id, upload_id)) => {
                let mut b = boot.clone();
                b.image_id = image_id.clone();
                b.upload_id = Some(upload_id.clone());
                b.after = None;
                Ok(b)
            }
            None => Err(format!(
                "{after} did not complete, so there is no image to boot"
            )),
        }
    }

    fn place(
        &self,
        provider: &str,
        pool: &str,
        label: &str,
    ) -> Option<(
        &crate::config::model::OpenStackProvider,
        &crate::config::model::Pool,
        &crate::config::model::PoolLabel,
    )> {
        let p = self.config.provider(provider)?;
        let pl = p.pools.iter().find(|x| x.name == pool)?;
        let lb = pl.labels.iter().find(|x| x.name == label)?;
        Some((p, pl, lb))
    }

    /// Boot `node` (its row exists) with `boot`: the create request comes from the config of
    /// its pool label and the request it is allocated to.
    async fn boot_node(
        &self,
        client: &OpenStackClient,
        networks: &BTreeMap<String, String>,
        node: &crate::state::Node,
        boot: &Boot,
        counts: bool,
    ) -> Result<String, String> {
        let (provider, pool, label) = self
            .place(&node.provider, &node.pool, &node.label)
            .ok_or_else(|| "the node's pool label is no longer configured".to_owned())?;
        let request = node
            .details
            .allocated_request
            .as_ref()
            .and_then(|r| self.store.lock().ok()?.read().request(r).ok().flatten());
        let spec = LaunchSpec {
            config: &self.config,
            provider,
            pool,
            label,
            node_id: &node.id,
            hostname: &node.hostname,
            boot,
            request: request.as_ref(),
            network_ids: networks,
        };
        self.create(client, &spec, &node.id, counts)
            .await
            .map_err(|e| e.to_string())
    }

    /// Send the create. On success the node is `building` with its server id; a quota refusal
    /// leaves it `init` without using an attempt (the next plan retries); an ambiguous failure
    /// (timeout, dropped connection) also leaves it `init`, so the next plan adopts the server
    /// if the create did happen (it carries the node id) or launches again if it did not.
    async fn create(
        &self,
        client: &OpenStackClient,
        spec: &LaunchSpec<'_>,
        node_id: &str,
        counts: bool,
    ) -> Result<String, CloudError> {
        let req = launch::create_request(spec);
        match client.create_server(&req).await {
            Ok(server_id) => {
                let r = self.write(|w| {
                    w.update_node(node_id, |d| {
                        d.server_id = Some(server_id.clone());
                        d.az = spec.boot.az.clone();
                        // A new server: the addresses of an earlier attempt's are gone.
                        d.public_ipv4 = None;
                        d.private_ipv4 = None;
                        d.public_ipv6 = None;
                        d.interface_ip = None;
                        if counts {
                            d.launch_attempts += 1;
                        }
                    })?;
                    match w.read().node(node_id)? {
                        Some(n) if n.state == NodeState::Building => {
                            w.restart_attempt(node_id)?;
                        }
                        Some(_) => {
                            w.set_node_state(node_id, NodeState::Building)?;
                        }
                        None => {}
                    }
                    Ok(())
                });
                if let Err(e) = r {
                    tracing::error!(node = node_id, error = %e, "server created but not recorded; the next plan adopts it");
                }
                Ok(server_id)
            }
            Err(e) => {
                let definite = !(e.is_quota()
                    || matches!(
                        e,
                        CloudError::Timeout { .. } | CloudError::Transport { connect: false, .. }
                    ));
                let msg = e.to_string();
                let _ = self.write(|w| {
                    w.update_node(node_id, |d| d.last_error = Some(msg.clone()))?;
                    if definite {
                        let n = w.read().node(node_id)?;
                        if n.is_some_and(|n| n.state.can_transition_to(NodeState::Failed)) {
                            w.set_node_state(node_id, NodeState::Failed)?;
                        }
                    }
                    Ok(())
                });
                Err(e)
            }
        }
    }

    /// Poll the provider's server list until every launched node is ready (or failed) and
    /// every deleted server is gone, retrying failed boots within `launch-retries`.
    async fn wait(
        &self,
        provider: &str,
        client: &OpenStackClient,
        networks: &BTreeMap<String, String>,
        mut launching: Vec<Launching>,
        mut deleting: Vec<Deleting>,
        report: &mut ApplyReport,
    ) {
        let Some(p) = self.config.provider(provider) else {
            return;
        };
        let launch_timeout = Duration::from_secs(p.launch_timeout);
        let delete_deadline = Instant::now() + self.options.delete_wait;
        let hand_over_at = self.options.launch_wait.map(|w| Instant::now() + w);
        while !launching.is_empty() || !deleting.is_empty() {
            if hand_over_at.is_some_and(|t| Instant::now() >= t) && !launching.is_empty() {
                // The rest is the next plan's (AwaitServer): the creates are done; waiting
                // is not a mutation. Scans in progress stop (their deadline is recorded).
                for l in launching.drain(..) {
                    let detail = format!(
                        "server {} created; the next pass follows it to ready",
                        l.server_id
                    );
                    self.finish(l.journal, &Ok(detail.clone()));
                    report.done += 1;
                    self.report(ApplyEvent::Done {
                        address: l.address.clone(),
                        detail,
                    });
                }
                if deleting.is_empty() {
                    break;
                }
            }
            tokio::time::sleep(self.options.poll_interval).await;
            let servers = match client.list_servers(&ServerQuery::default()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(provider, error = %e, "server list failed while waiting; trying again");
                    continue;
                }
            };
            let by_id: BTreeMap<&str, &crate::cloud::Server> =
                servers.iter().map(|s| (s.id.as_str(), s)).collect();
            // Deletions: gone → the record goes too.
            let mut still = Vec::new();
            for d in deleting.drain(..) {
                if by_id.contains_key(d.server_id.as_str()) && Instant::now() < delete_deadline {
                    still.push(d);
                    continue;
                }
                if by_id.contains_key(d.server_id.as_str()) {
                    let msg = format!(
                        "server {} still exists after {:?}; the next run finishes the delete",
                        d.server_id, self.options.delete_wait
                    );
                    self.finish(d.journal, &Err(msg.clone()));
                    report.failed.push((d.address.clone(), msg.clone()));
                    self.report(ApplyEvent::Failed {
                        address: d.address,
                        error: msg,
                    });
                    continue;
                }
                let r = self.write(|w| {
                    if w.read().node(&d.node_id)?.is_some() {
                        w.remove_node(&d.node_id)?;
                    }
                    w.journal_done(d.journal).map(|_| ())
                });
                match r {
                    Ok(()) => {
                        report.done += 1;
                        self.report(ApplyEvent::Done {
                            address: d.address,
                            detail: format!("server {} deleted", d.server_id),
                        });
                    }
                    Err(e) => report.failed.push((d.address, e.to_string())),
                }
            }
            deleting = still;
            // Launches: ACTIVE → ready; ERROR or too slow → retry or give up.
            let mut still = Vec::new();
            for mut l in launching.drain(..) {
                let server = by_id.get(l.server_id.as_str());
                let status = server.map(|s| s.status.as_str().to_owned());
                let failure = match (server, status.as_deref()) {
                    (Some(s), Some("ACTIVE")) => {
                        let mut addrs = Addresses {
                            public_ipv4: s.public_ipv4.map(|a| a.to_string()),
                            private_ipv4: s.private_ipv4.map(|a| a.to_string()),
                            public_ipv6: s.public_ipv6.map(|a| a.to_string()),
                            az: s.availability_zone.clone(),
                        };
                        if l.floating_ip.is_none() {
                            match self.floating_ip(client, &l, &addrs).await {
                                Ok(fip) => l.floating_ip = Some(fip),
                                Err(why) => {
                                    // Not this attempt's fault: the next poll tries again,
                                    // within launch-timeout.
                                    tracing::warn!(node = %l.node_id, error = %why, "cannot attach a floating IP yet");
                                    if l.since.elapsed() > launch_timeout {
                                        let msg = format!("launch failed: {why}");
                                        self.finish(l.journal, &Err(msg.clone()));
                                        report.failed.push((l.address.clone(), msg.clone()));
                                        self.report(ApplyEvent::Failed {
                                            address: l.address.clone(),
                                            error: msg,
                                        });
                                    } else {
                                        still.push(l);
                                    }
                                    continue;
                                }
                            }
                        }
                        if let Some(Some(ip)) = &l.floating_ip {
                            addrs.public_ipv4 = Some(ip.clone());
                        }
                        let keys = match self.host_keys(&mut l, &addrs, p).await {
                            std::task::Poll::Pending => {
                                still.push(l);
                                continue;
                            }
                            std::task::Poll::Ready(r) => r,
                        };
                        match keys {
                            Ok(keys) => {
                                let r = self.write(|w| {
                                    mark_ready(w, &l.node_id, &l.server_id, &addrs, &keys)?;
                                    w.journal_done(l.journal).map(|_| ())
                                });
                                match r {
                                    Ok(()) => {
                                        report.done += 1;
                                        self.report(ApplyEvent::Done {
                                            address: l.address.clone(),
                                            detail: format!(
                                                "ready at {}{}",
                                                addrs
                                                    .interface_ip()
                                                    .unwrap_or_else(|| "no address".into()),
                                                if keys.is_empty() {
                                                    String::new()
                                                } else {
                                                    format!(" ({} SSH host keys)", keys.len())
                                                }
                                            ),
                                        });
                                    }
                                    Err(e) => {
                                        report.failed.push((l.address.clone(), e.to_string()))
                                    }
                                }
                                continue;
                            }
                            Err(why) => Some((why, false)),
                        }
                    }
                    (Some(s), Some("ERROR")) => Some((
                        format!(
                            "server went to ERROR{}",
                            s.fault
                                .as_ref()
                                .map(|f| format!(": {}", f.message))
                                .unwrap_or_default()
                        ),
                        s.fault.as_ref().is_some_and(|f| f.is_quota()),
                    )),
                    (None, _) => Some(("server vanished while building".to_owned(), false)),
                    _ if l.since.elapsed() > launch_timeout => Some((
                        format!("not ACTIVE after launch-timeout {} s", p.launch_timeout),
                        false,
                    )),
                    _ => None,
                };
                let Some((why, quota)) = failure else {
                    still.push(l);
                    continue;
                };
                l.scan = None;
                l.floating_ip = None;
                match self.retry_launch(client, networks, &l, &why, quota).await {
                    Ok(Some(new_server)) => {
                        l.server_id = new_server;
                        l.since = Instant::now();
                        still.push(l);
                    }
                    Ok(None) | Err(_) => {
                        let msg = format!("launch failed: {why}");
                        self.finish(l.journal, &Err(msg.clone()));
                        report.failed.push((l.address.clone(), msg.clone()));
                        self.report(ApplyEvent::Failed {
                            address: l.address.clone(),
                            error: msg,
                        });
                    }
                }
            }
            launching = still;
        }
    }

    /// `console-log`: the end of a failed server's console, logged before the server goes
    /// (best effort: a server that never ran has none).
    async fn log_console(
        &self,
        client: &OpenStackClient,
        node: &crate::state::Node,
        server_id: &str,
        why: &str,
    ) {
        let wanted = self
            .place(&node.provider, &node.pool, &node.label)
            .is_some_and(|(_, _, label)| label.console_log);
        if !wanted {
            return;
        }
        match client.console_output(server_id, Some(CONSOLE_LINES)).await {
            Ok(console) => tracing::warn!(
                node = %node.id,
                server = server_id,
                reason = why,
                %console,
                "console log of a failed launch"
            ),
            Err(e) => tracing::info!(
                node = %node.id,
                server = server_id,
                error = %e,
                "no console log of the failed launch"
            ),
        }
    }

    /// When a launching node's server was first seen ACTIVE: recorded now (its addresses,
    /// and the state time restarted) unless an earlier pass did.
    fn note_active(&self, node_id: &str, addrs: &Addresses) -> Result<i64, String> {
        self.write(|w| {
            let node = w
                .read()
                .node(node_id)?
                .ok_or_else(|| StateError::Invalid(format!("node {node_id} is gone")))?;
            if node.details.interface_ip.is_some() {
                return Ok(node.state_time);
            }
            w.update_node(node_id, |d| {
                d.public_ipv4 = addrs.public_ipv4.clone();
                d.private_ipv4 = addrs.private_ipv4.clone();
                d.public_ipv6 = addrs.public_ipv6.clone();
                d.interface_ip = addrs.interface_ip();
            })?;
            Ok(w.restart_attempt(node_id)?.state_time)
        })
        .map_err(|e| e.to_string())
    }

    /// A node's current record (`None` if it is gone or cannot be read).
    fn node(&self, id: &str) -> Option<crate::state::Node> {
        self.store
            .lock()
            .expect("store")
            .read()
            .node(id)
            .ok()
            .flatten()
    }

    /// `auto-floating-ip` (upstream's default): an ACTIVE server with no public address gets a
    /// floating IP from the cloud's external network on its port. Returns the address, or
    /// `None` when the pool does not want one or the server has a public address.
    ///
    /// Idempotent, so an interrupted attempt never allocates two: an address already on the
    /// server's port is used. No journal entry of its own: the node's launch entry is still
    /// open, and the node's deletion deletes the floating IPs on its server.
    async fn floating_ip(
        &self,
        client: &OpenStackClient,
        l: &Launching,
        addrs: &Addresses,
    ) -> Result<Option<String>, String> {
        let wanted = self.node(&l.node_id).is_some_and(|n| {
            self.place(&n.provider, &n.pool, &n.label)
                .is_some_and(|(_, pool, _)| pool.auto_floating_ip)
        });
        if !wanted || addrs.public_ipv4.is_some() || addrs.public_ipv6.is_some() {
            return Ok(None);
        }
        let ports = client
            .list_ports(&crate::cloud::PortQuery {
                device_id: Some(l.server_id.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("auto-floating-ip: ports of server {}: {e}", l.server_id))?;
        let Some(port) = ports.first() else {
            return Err(format!(
                "auto-floating-ip: server {} has no port yet",
                l.server_id
            ));
        };
        let on_port = client
            .list_floating_ips(&crate::cloud::FloatingIpQuery {
                port_id: Some(port.id.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("auto-floating-ip: floating IPs of port {}: {e}", port.id))?;
        if let Some(f) = on_port.first() {
            return Ok(Some(f.floating_ip_address.clone()));
        }
        let external = client
            .list_networks(None, true)
            .await
            .map_err(|e| format!("auto-floating-ip: external networks: {e}"))?;
        let Some(net) = external.first() else {
            // A cloud without floating IPs (as openstacksdk decides it): the server is
            // reached on the address it has.
            tracing::debug!(node = %l.node_id, "no external network: no floating IP");
            return Ok(None);
        };
        let fip = client
            .create_floating_ip(&net.id, Some(&port.id))
            .await
            .map_err(|e| format!("auto-floating-ip: on network {}: {e}", net.name))?;
        tracing::info!(node = %l.node_id, address = %fip.floating_ip_address, "floating IP attached");
        Ok(Some(fip.floating_ip_address))
    }

    /// The SSH host keys of a launching node's ACTIVE server: `Ready(Ok([]))` when its pool
    /// does not check them; otherwise a scan is started (bounded by `boot-timeout`) and polled.
    async fn host_keys(
        &self,
        l: &mut Launching,
        addrs: &Addresses,
        provider: &crate::config::model::OpenStackProvider,
    ) -> std::task::Poll<Result<Vec<String>, String>> {
        use std::task::Poll;
        if l.scan.is_none() {
            let port = self.node(&l.node_id).and_then(|n| {
                let (_, pool, _) = self.place(&n.provider, &n.pool, &n.label)?;
                launch::keyscan_port(pool, &n.details)
            });
            let Some(port) = port else {
                return Poll::Ready(Ok(Vec::new()));
            };
            let Some(ip) = addrs
                .interface_ip()
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            else {
                return Poll::Ready(Err(
                    "server is ACTIVE without an address to scan its SSH host keys on".into(),
                ));
            };
            let target = std::net::SocketAddr::new(ip, port);
            // boot-timeout counts from when the server was first seen ACTIVE (recorded, so a
            // scan handed over to a later pass keeps its deadline).
            let active_at = match self.note_active(&l.node_id, addrs) {
                Ok(t) => t,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let left = active_at
                .saturating_add(i64::try_from(provider.boot_timeout).unwrap_or(i64::MAX))
                .saturating_sub(crate::state::now_unix());
            let within = Duration::from_secs(u64::try_from(left).unwrap_or(0));
            let interval = self
                .options
                .poll_interval
                .clamp(Duration::from_millis(200), Duration::from_secs(2));
            tracing::debug!(node = %l.node_id, %target, "scanning SSH host keys");
            l.scan = Some(Scan {
                task: tokio::spawn(crate::keyscan::wait_for_host_keys(target, within, interval)),
            });
        }
        let scan = l.scan.as_mut().expect("scan started above");
        if !scan.task.is_finished() {
            return Poll::Pending;
        }
        let out = match (&mut scan.task).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(crate::keyscan::KeyscanError::TimedOut { addr, last, .. })) => Err(format!(
                "no SSH host keys from {addr} within boot-timeout {} s of ACTIVE ({last})",
                provider.boot_timeout
            )),
            Ok(Err(e)) => Err(format!("{e} (boot-timeout {} s)", provider.boot_timeout)),
            Err(e) => Err(format!("host-key scan stopped: {e}")),
        };
        l.scan = None;
        Poll::Ready(out)
    }

    /// Another attempt for a failed boot, or `None` when the attempts are used up (the node
    /// then goes to `failed` with its server being deleted; the next plan finishes the delete).
    async fn retry_launch(
        &self,
        client: &OpenStackClient,
        networks: &BTreeMap<String, String>,
        l: &Launching,
        why: &str,
        quota: bool,
    ) -> Result<Option<String>, String> {
        let Some(node) = self.node(&l.node_id) else {
            return Ok(None);
        };
        let Some(provider) = self.config.provider(&node.provider) else {
            return Ok(None);
        };
        let Some(boot) = &l.boot else { return Ok(None) };
        self.log_console(client, &node, &l.server_id, why).await;
        let _ = delete_server(client, &l.server_id).await;
        if !quota && node.details.launch_attempts >= provider.launch_retries.max(1) {
            let _ = self.write(|w| {
                w.update_node(&l.node_id, |d| d.last_error = Some(why.to_owned()))?;
                w.set_node_state(&l.node_id, NodeState::Failed)?;
                Ok(())
            });
            return Ok(None);
        }
        tracing::info!(node = %node.id, reason = why, "launching again");
        self.boot_node(client, networks, &node, boot, !quota)
            .await
            .map(Some)
    }
}

enum Step {
    Done(String, String),
    Failed(String, String),
    Launching(Box<Launching>),
    Deleting(Deleting),
}

/// `123 B`, `704 KiB`, `1.2 GiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

async fn delete_server(client: &OpenStackClient, id: &str) -> Result<(), CloudError> {
    match client.delete_server(id).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

fn mark_ready(
    w: &WriteTx<'_>,
    node_id: &str,
    server_id: &str,
    a: &Addresses,
    host_keys: &[String],
) -> Result<(), StateError> {
    w.update_node(node_id, |d| {
        if !host_keys.is_empty() {
            d.host_keys = host_keys.to_vec();
        }
        d.server_id = Some(server_id.to_owned());
        d.public_ipv4 = a.public_ipv4.clone();
        d.private_ipv4 = a.private_ipv4.clone();
        d.public_ipv6 = a.public_ipv6.clone();
        d.interface_ip = a.interface_ip();
        if a.az.is_some() {
            d.az = a.az.clone();
        }
    })?;
    let n = w.read().node(node_id)?;
    if n.is_some_and(|n| n.state == NodeState::Init) {
        w.set_node_state(node_id, NodeState::Building)?;
    }
    w.set_node_state(node_id, NodeState::Ready)?;
    Ok(())
}

fn to_pending(w: &WriteTx<'_>, request: &str) -> Result<(), StateError> {
    if let Some(r) = w.read().request(request)?
        && r.state == RequestState::Requested
    {
        w.set_request_state(request, RequestState::Pending, None)?;
    }
    Ok(())
}

fn kind_name(k: &ActionKind) -> &'static str {
    match k {
        ActionKind::LaunchNode { .. } => "create-server",
        ActionKind::RelaunchNode { .. } => "relaunch-server",
        ActionKind::MarkReady { .. } => "mark-ready",
        ActionKind::BuildImage { .. } => "build-image",
        ActionKind::UploadImage { .. } => "upload-image",
        ActionKind::DeleteUpload { .. } => "delete-image",
        ActionKind::DeleteBuild { .. } => "delete-build",
        ActionKind::PruneBuild { .. } => "prune-build",
        ActionKind::AwaitServer { .. } => "await-server",
        ActionKind::AdoptServer { .. } => "adopt-server",
        ActionKind::DeleteNode { .. } => "delete-server",
        ActionKind::ForgetNode { .. } => "forget-node",
        ActionKind::AllocateNode { .. } => "allocate-node",
        ActionKind::DeallocateNode { .. } => "deallocate-node",
        ActionKind::FulfillRequest { .. } => "fulfill-request",
        ActionKind::FailRequest { .. } => "fail-request",
        ActionKind::DeleteLeak { .. } => "delete-leak",
    }
}
