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

mod images;
mod nodes;
mod wait;

use wait::{Deleting, Launching};

use super::launch::{self, LaunchSpec};
use super::plan::{Action, ActionKind, Addresses, Boot, Plan};
use crate::cloud::{CloudError, OpenStackClient, ServerQuery};
use crate::config::Config;
use crate::state::{
    LeakKind, LeaseGuard, NewJournalEntry, NewNode, Node, NodeDetails, NodeState, RequestState,
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
    Started {
        address: String,
    },
    Done {
        address: String,
        detail: String,
    },
    Failed {
        address: String,
        error: String,
    },
    /// A node became ready (its record as committed), whichever action got it there: a
    /// launch, a relaunch or an await of a server launched by an earlier pass. For launch
    /// metrics; printers may ignore it (a `Done` says the same to a person).
    NodeReady {
        node: Box<Node>,
    },
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
    /// Per provider, the external network floating IPs come from (`None`: the cloud has
    /// none), looked up once per apply.
    pub external_networks: Mutex<BTreeMap<String, Option<crate::cloud::Network>>>,
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
        let mut ready = None;
        let detail = self.write(|w| {
            let j = self.journal(w, seq, kind_name(&a.kind), a)?;
            w.journal_start(j)?;
            let detail = match &a.kind {
                ActionKind::MarkReady {
                    node_id,
                    server_id,
                    addresses,
                } => {
                    ready = Some(mark_ready(w, node_id, server_id, addresses, &[])?);
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
        })?;
        if let Some(node) = ready {
            self.report(ApplyEvent::NodeReady {
                node: Box::new(node),
            });
        }
        Ok(detail)
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
) -> Result<Node, StateError> {
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
    w.set_node_state(node_id, NodeState::Ready)
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
