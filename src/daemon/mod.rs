//! The long-running reconciler: follows the config repository, reconciles each provider on its own, serves status, and shuts down cleanly.
//!
//! Built from the pieces of [`crate::watch`] in the style of kube-runtime's controller:
//!
//! - **Triggers** (the poll interval, filesystem events on a local repository, the push webhook)
//!   schedule the [`Key::Config`] pass, which fetches the source, loads the new revision and,
//!   when it is valid, puts it in force and schedules every provider. An invalid revision
//!   changes nothing: the last good config stays in force, the attempt is recorded (database
//!   and `/status`) with its errors, and the next good commit is picked up.
//! - **Provider passes** ([`Key::Provider`]) run concurrently, one per provider: observe that
//!   provider's cloud, then — under the database writer lease, one pass at a time — plan
//!   globally (the planner is pure; other providers' clouds are taken from their last
//!   observation) and carry out only the actions of that provider plus the database-only
//!   bookkeeping ([`select`]). A broken cloud fails its own pass, which backs off (capped
//!   exponential) while the others go on. A pass follows the servers it launched for at most
//!   `LAUNCH_WAIT` (slow boots and SSH waits go on in later passes, so the lease is never
//!   held for a whole boot-timeout). A pass that launched or deleted is requeued after a
//!   few seconds to follow the servers; otherwise after the poll interval.
//! - The **images** pass ([`Key::Images`]) builds and deletes local image builds (builder role).
//! - New node requests and releases from the API schedule the provider passes at once; a
//!   periodic full pass schedules every key, to catch anything missed.
//! - **Shutdown**: the scheduler stops handing out work; passes in flight get a bounded time
//!   to finish. A pass cut short (or a `kill -9`) leaves the journal and the lease; the next
//!   apply closes the interrupted journal entries and breaks a dead local holder's lease.

pub mod logging;
pub mod metrics;
pub mod select;
pub mod statsd;
pub mod status;

pub use select::Role;

use crate::cloud::OpenStackClient;
use crate::config::clouds::CloudsFile;
use crate::config::{self, ConfigError, LoadOptions, Loaded};
use crate::ops::{self, OpError, Paths, Workspace};
use crate::reconcile::apply::{ApplyEvent, ApplyOptions, Reporter};
use crate::reconcile::plan::{ActionKind, Plan};
use crate::reconcile::render::PlanDocument;
use crate::reconcile::world::{CloudState, World};
use crate::reconcile::{observe, stale};
use crate::state::{ConfigStatus, LeaseGuard, NewConfigRevision, StateError, Store};

/// How long one pass follows the servers it launched before the next pass takes over.
const LAUNCH_WAIT: Duration = Duration::from_secs(20);
use crate::watch::{
    self, BackoffPolicy, ConfigSource, Debounce, KeyStatus, RefWatcher, Scheduler, SourceSpec,
    Trigger, WatchError,
};
use chrono::Utc;
use metrics::Metrics;
use select::Scope;
use serde::{Serialize, Serializer};
use status::{ConfigProblem, Failing, LoadOutcome, PassReport, RevisionAttempt, StatusBook};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

/// What the daemon schedules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// Fetch and load the config source.
    Config,
    /// Build and delete image builds (builder role).
    Images,
    /// Reconcile one provider.
    Provider(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Config => f.write_str("config"),
            Key::Images => f.write_str("images"),
            Key::Provider(p) => write!(f, "provider:{p}"),
        }
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no valid config has been loaded yet")]
    NoConfig,
    #[error("provider {provider}: cloud unavailable: {error}")]
    Unavailable { provider: String, error: String },
    #[error("{failed} of {total} actions failed: {first}")]
    ActionsFailed {
        failed: usize,
        total: usize,
        first: String,
    },
    #[error("shutting down")]
    ShuttingDown,
    #[error("{what}: {message}")]
    Setup { what: String, message: String },
    #[error("background task failed: {0}")]
    Join(String),
}

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub source: SourceSpec,
    pub secure: Option<PathBuf>,
    /// `clouds.yaml`; `None`: found as openstacksdk does (re-read on every config load).
    pub clouds: Option<PathBuf>,
    pub state: PathBuf,
    /// Materialised config revisions go under `<data_dir>/revisions`.
    pub data_dir: PathBuf,
    pub role: Role,
    /// Poll the source, and re-reconcile idle providers, this often.
    pub poll_interval: Duration,
    /// Requeue a provider this soon after a pass that launched or deleted.
    pub follow_up: Duration,
    /// Schedule every key this often, whatever else happened.
    pub full_pass: Duration,
    /// Apply's wait between server lists (booting and deleting servers).
    pub apply_poll: Duration,
    pub backoff: BackoffPolicy,
    pub debounce: Debounce,
    /// Upstream's statsd metrics go here too (`STATSD_HOST`, ...), if set.
    pub statsd: Option<statsd::StatsdTarget>,
}

impl DaemonOptions {
    pub fn new(source: SourceSpec, state: PathBuf, data_dir: PathBuf) -> Self {
        DaemonOptions {
            source,
            secure: None,
            clouds: None,
            state,
            data_dir,
            role: Role::All,
            poll_interval: watch::trigger::DEFAULT_POLL_INTERVAL,
            follow_up: Duration::from_secs(3),
            full_pass: Duration::from_secs(600),
            apply_poll: Duration::from_secs(2),
            backoff: BackoffPolicy::default(),
            debounce: Debounce::default(),
            statsd: None,
        }
    }
}

/// The config in force, with the clients made for it.
pub struct Active {
    pub loaded: Loaded,
    pub revision: String,
    pub clients: BTreeMap<String, OpenStackClient>,
    pub unresolved: BTreeMap<String, String>,
}

/// The writer's side of the database: the workspace the passes apply with (one at a time),
/// or just the store before the first valid config.
enum Writer {
    Bare(Store),
    Ready(Box<Workspace>),
    /// Lent to an apply that failed without giving it back; reopened on next use.
    Lost,
}

/// The daemon; cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

struct Inner {
    opts: DaemonOptions,
    source: ConfigSource,
    scheduler: Scheduler<Key>,
    writer: tokio::sync::Mutex<Writer>,
    active: RwLock<Option<Arc<Active>>>,
    /// A second connection for reads and for writes that need no lease (API requests, config
    /// attempts), so they never wait behind an apply.
    aux: Mutex<Store>,
    /// Each provider's last observation, for the passes of the others.
    clouds: Mutex<BTreeMap<String, CloudState>>,
    status: Mutex<StatusBook>,
    metrics: Metrics,
    statsd: Option<statsd::Statsd>,
    triggers: mpsc::Sender<Trigger>,
    trigger_rx: Mutex<Option<mpsc::Receiver<Trigger>>>,
}

/// At most this many plan notes are kept per pass for `/status`.
const MAX_NOTES: usize = 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The JSON of `/status`.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub role: Role,
    pub source: String,
    /// Every provider of the config in force (and the images pass, for a builder) has
    /// finished at least one pass — successfully or not: see `failing`.
    pub ready: bool,
    /// Keys whose last pass failed (`provider:<name>` whose cloud is down, `images`,
    /// `config` when the source cannot be fetched); empty when all is well.
    pub failing: Vec<Failing>,
    pub revisions: Revisions,
    pub keys: Vec<KeyStatus<Key>>,
    pub passes: BTreeMap<String, PassReport>,
}

#[derive(Debug, Serialize)]
pub struct Revisions {
    /// The revision in force (`main@<sha>`), if any was valid.
    pub in_force: Option<RevisionAttempt>,
    pub last_attempted: Option<RevisionAttempt>,
    pub history: Vec<RevisionAttempt>,
}

impl Daemon {
    /// Open the source and the database. Nothing runs until [`Daemon::run`].
    pub fn new(opts: DaemonOptions) -> Result<Daemon, DaemonError> {
        let source = ConfigSource::open(opts.source.clone())?;
        if let Some(dir) = opts.state.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DaemonError::Setup {
                what: format!("creating {}", dir.display()),
                message: e.to_string(),
            })?;
        }
        let writer = Store::open(&opts.state)?;
        let aux = Store::open(&opts.state)?;
        let (triggers, rx) = mpsc::channel(8);
        let statsd = match &opts.statsd {
            Some(target) => {
                Some(
                    statsd::Statsd::connect(target).map_err(|e| DaemonError::Setup {
                        what: "statsd".into(),
                        message: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        Ok(Daemon {
            inner: Arc::new(Inner {
                scheduler: Scheduler::new(opts.backoff),
                opts,
                source,
                writer: tokio::sync::Mutex::new(Writer::Bare(writer)),
                active: RwLock::new(None),
                aux: Mutex::new(aux),
                clouds: Mutex::new(BTreeMap::new()),
                status: Mutex::new(StatusBook::default()),
                metrics: Metrics::new(),
                statsd,
                triggers,
                trigger_rx: Mutex::new(Some(rx)),
            }),
        })
    }

    pub fn options(&self) -> &DaemonOptions {
        &self.inner.opts
    }

    /// Where upstream's `webapp:` section (port, default 8005; listen-address, default
    /// 0.0.0.0) of the config at the source's head asks the HTTP API to listen; `None` when
    /// it has none or cannot be read. Read once, before the first pass (`--listen` wins).
    pub fn configured_listen(&self) -> Option<std::net::SocketAddr> {
        let source = &self.inner.source;
        let revision = source.fetch().or_else(|_| source.current()).ok()?;
        let text = source.read_config(&revision).ok()?;
        let (value, _) = config::yaml::parse(&text).ok()?;
        let webapp: config::model::Webapp =
            serde_json::from_value(value.get("webapp")?.clone()).ok()?;
        let ip: std::net::IpAddr = webapp.listen_address.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, webapp.port))
    }

    /// The config in force.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.inner
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The secondary database connection (reads, and writes that need no lease).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.inner.aux)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The last observation of each provider's cloud.
    pub fn clouds(&self) -> BTreeMap<String, CloudState> {
        lock(&self.inner.clouds).clone()
    }

    /// The branch followed: the remote's, or the local work tree's current branch.
    pub fn followed_branch(&self) -> Option<String> {
        match &self.inner.source.spec().location {
            watch::source::Location::Remote { branch, .. } => Some(branch.clone()),
            watch::source::Location::Local(_) => {
                self.inner.source.current().ok().and_then(|r| r.branch)
            }
        }
    }

    /// Hand a trigger to the config pass (dropped when one is already waiting).
    pub fn trigger(&self, trigger: Trigger) {
        let _ = self.inner.triggers.try_send(trigger);
    }

    /// Something in the database changed that the providers should act on (a new request, a
    /// released node): schedule every provider now.
    pub fn nudge_providers(&self) {
        if let Some(active) = self.active() {
            for p in &active.loaded.config.providers {
                self.inner
                    .scheduler
                    .schedule_now(Key::Provider(p.name.clone()));
            }
        }
    }

    /// Schedule one provider now (its node was released).
    pub fn nudge_provider(&self, provider: &str) {
        self.inner
            .scheduler
            .schedule_now(Key::Provider(provider.to_owned()));
    }

    /// Ready once every provider of the config in force (and the images pass, for a builder)
    /// has finished a pass — successful or not: a broken cloud shows in `/status`.
    pub fn is_ready(&self) -> bool {
        let Some(active) = self.active() else {
            return false;
        };
        let book = lock(&self.inner.status);
        let images = !self.inner.opts.role.builds()
            || active.loaded.config.diskimages.is_empty()
            || book.finished_once.contains(&Key::Images.to_string());
        images
            && active.loaded.config.providers.iter().all(|p| {
                book.finished_once
                    .contains(&Key::Provider(p.name.clone()).to_string())
            })
    }

    pub fn status(&self) -> StatusReport {
        let ready = self.is_ready();
        let book = lock(&self.inner.status);
        StatusReport {
            role: self.inner.opts.role,
            source: self.inner.source.describe(),
            ready,
            failing: book.failing(),
            revisions: Revisions {
                in_force: book.in_force.clone(),
                last_attempted: book.last_attempted.clone(),
                history: book.history.iter().cloned().collect(),
            },
            keys: self.inner.scheduler.status(),
            passes: book.passes.clone(),
        }
    }

    /// The `/metrics` text: the database's nodes and builds, the clients' call counts and
    /// everything recorded by the passes.
    pub fn render_metrics(&self) -> Result<String, DaemonError> {
        let (nodes, builds) = {
            let store = self.store();
            let read = store.read();
            (read.node_counts()?, read.builds()?)
        };
        Ok(self.inner.metrics.encode(&nodes, &builds))
    }

    /// Run until `shutdown` resolves, then stop taking work and give the passes in flight
    /// `grace` to finish.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> Result<(), DaemonError> {
        let inner = &self.inner;
        let mut rx = lock(&inner.trigger_rx)
            .take()
            .ok_or_else(|| DaemonError::Setup {
                what: "daemon".into(),
                message: "run() was called twice".into(),
            })?;
        let _poll = watch::spawn_poll(inner.opts.poll_interval, inner.triggers.clone());
        let _refs = if inner.source.is_local() {
            Some(RefWatcher::start(
                inner.source.repo_dir(),
                Some(inner.source.config_file()),
                inner.triggers.clone(),
                inner.opts.debounce,
            )?)
        } else {
            None
        };
        let on_trigger = {
            let scheduler = inner.scheduler.clone();
            tokio::spawn(async move {
                while let Some(t) = rx.recv().await {
                    tracing::debug!(trigger = ?t, "config trigger");
                    scheduler.schedule_now(Key::Config);
                }
            })
        };
        let full_pass = {
            let daemon = self.clone();
            let every = inner.opts.full_pass;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    tracing::debug!("periodic full pass");
                    daemon.inner.scheduler.schedule_now(Key::Config);
                    if daemon.inner.opts.role.builds() {
                        daemon.inner.scheduler.schedule_now(Key::Images);
                    }
                    daemon.nudge_providers();
                }
            })
        };
        inner.scheduler.schedule_now(Key::Config);
        let runner = {
            let daemon = self.clone();
            tokio::spawn(async move {
                let scheduler = daemon.inner.scheduler.clone();
                scheduler
                    .run(move |key| {
                        let daemon = daemon.clone();
                        async move { daemon.pass(key).await }
                    })
                    .await;
            })
        };
        tracing::info!(source = %inner.source.describe(), role = ?inner.opts.role, "daemon started");
        shutdown.await;
        tracing::info!(
            in_flight = inner.scheduler.running(),
            grace_s = grace.as_secs_f64(),
            "shutting down: no new work; waiting for passes in flight"
        );
        inner.scheduler.close();
        on_trigger.abort();
        full_pass.abort();
        let abort = runner.abort_handle();
        match tokio::time::timeout(grace, runner).await {
            Ok(Ok(())) => tracing::info!("all passes finished"),
            Ok(Err(e)) => return Err(DaemonError::Join(e.to_string())),
            Err(_) => {
                abort.abort();
                tracing::warn!(
                    "passes still running after the grace period were cut short; \
                     the journal lets the next start finish them"
                );
            }
        }
        Ok(())
    }

    /// One pass of `key`, timed, logged in its own span, and recorded.
    async fn pass(&self, key: Key) -> Result<watch::Action, DaemonError> {
        let span = tracing::info_span!("reconcile", key = %key);
        let started = Instant::now();
        let result = async {
            let r = match &key {
                Key::Config => self.config_pass().await,
                Key::Images => self.plan_pass(Scope::Images).await,
                Key::Provider(p) => self.plan_pass(Scope::Provider(p)).await,
            };
            match &r {
                Ok(next) => tracing::debug!(
                    ?next,
                    took_ms = started.elapsed().as_millis() as u64,
                    "pass done"
                ),
                Err(e) => tracing::warn!(error = %e, "pass failed"),
            }
            r
        }
        .instrument(span)
        .await;
        let name = key.to_string();
        self.inner
            .metrics
            .pass(&name, result.is_ok(), started.elapsed());
        self.send_gauges();
        if !matches!(result, Err(DaemonError::ShuttingDown)) {
            let outcome = match &result {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            lock(&self.inner.status).finished(&name, outcome, Utc::now());
        }
        result
    }

    /// Fetch the source; load a new revision; put it in force if valid.
    async fn config_pass(&self) -> Result<watch::Action, DaemonError> {
        let inner = &self.inner;
        let source = inner.source.clone();
        let revision = tokio::task::spawn_blocking(move || source.fetch())
            .await
            .map_err(|e| DaemonError::Join(e.to_string()))??;
        if self.active().is_some_and(|a| a.revision == revision.id) {
            return Ok(watch::Action::Done);
        }
        if lock(&inner.status)
            .last_attempted
            .as_ref()
            .is_some_and(|a| a.revision == revision.id && a.outcome == LoadOutcome::Invalid)
        {
            return Ok(watch::Action::Done);
        }
        let source = inner.source.clone();
        let scratch = inner.opts.data_dir.join("revisions");
        let secure = inner.opts.secure.clone();
        let rev = revision.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let dir = source.materialize(&rev, &scratch)?;
            let result =
                config::load(&LoadOptions::new(dir.join(source.config_file())).with_secure(secure));
            Ok::<_, WatchError>(result)
        })
        .await
        .map_err(|e| DaemonError::Join(e.to_string()));
        let loaded = match loaded? {
            Ok(l) => l,
            // The work tree moved on while we read it: look again.
            Err(WatchError::StaleRevision { .. }) => {
                return Ok(watch::Action::RequeueAfter(Duration::from_millis(100)));
            }
            Err(e) => return Err(e.into()),
        };
        match loaded {
            Ok(loaded) => self.install(loaded, revision.id).await,
            Err(e) => {
                self.reject(&revision.id, &e)?;
                Ok(watch::Action::Done)
            }
        }
    }

    /// Record an invalid revision; the config in force stays.
    fn reject(&self, revision: &str, e: &ConfigError) -> Result<(), DaemonError> {
        let errors: Vec<ConfigProblem> = e
            .diagnostics()
            .iter()
            .filter(|d| d.is_error())
            .map(ConfigProblem::from)
            .collect();
        let message = errors.is_empty().then(|| e.to_string());
        let in_force = self.active().map(|a| a.revision.clone());
        tracing::error!(
            revision,
            errors = errors.len(),
            in_force = in_force.as_deref().unwrap_or("none"),
            "config revision is invalid; the config in force stays\n{e}"
        );
        self.inner
            .metrics
            .config_loads
            .get_or_create(&metrics::StatusLabel {
                status: "invalid".into(),
            })
            .inc();
        self.store().write(|w| {
            w.record_config_revision(&NewConfigRevision {
                revision: revision.to_owned(),
                source: self.inner.source.describe(),
                status: ConfigStatus::Invalid,
                errors: Some(e.to_string()),
            })
            .map(|_| ())
        })?;
        lock(&self.inner.status).attempted(RevisionAttempt {
            revision: revision.to_owned(),
            outcome: LoadOutcome::Invalid,
            at: Utc::now(),
            errors,
            message,
        });
        Ok(())
    }

    /// Put a valid config in force: new clients, the writer's workspace, the provider keys.
    async fn install(
        &self,
        loaded: Loaded,
        revision: String,
    ) -> Result<watch::Action, DaemonError> {
        let inner = &self.inner;
        let clouds = match &inner.opts.clouds {
            Some(p) => Some(CloudsFile::load(p).map_err(OpError::from)?),
            None => CloudsFile::discover().map_err(OpError::from)?,
        };
        let (clients, unresolved) = ops::clients_for(&loaded.config, clouds.as_ref());
        for (p, why) in &unresolved {
            tracing::error!(provider = %p, error = %why, "provider credentials do not resolve");
        }
        for (p, c) in &clients {
            inner.metrics.track_client(p, c.call_counter());
        }
        let old = self.active();
        let active = Arc::new(Active {
            loaded: loaded.clone(),
            revision: revision.clone(),
            clients: clients.clone(),
            unresolved: unresolved.clone(),
        });
        {
            let mut writer = inner.writer.lock().await;
            let store = match std::mem::replace(&mut *writer, Writer::Lost) {
                Writer::Bare(s) => s,
                Writer::Ready(ws) => ws.store,
                Writer::Lost => Store::open(&inner.opts.state)?,
            };
            *writer = Writer::Ready(Box::new(self.workspace(&active, store)));
            *inner.active.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&active));
        }
        self.store().write(|w| {
            w.record_config_revision(&NewConfigRevision {
                revision: revision.clone(),
                source: inner.source.describe(),
                status: ConfigStatus::Ok,
                errors: None,
            })
            .map(|_| ())
        })?;
        inner.metrics.set_revision(&revision);
        inner
            .metrics
            .config_loads
            .get_or_create(&metrics::StatusLabel {
                status: "ok".into(),
            })
            .inc();
        lock(&inner.status).attempted(RevisionAttempt {
            revision: revision.clone(),
            outcome: LoadOutcome::Ok,
            at: Utc::now(),
            errors: Vec::new(),
            message: None,
        });
        tracing::info!(
            revision = %revision,
            previous = old.as_ref().map(|a| a.revision.as_str()).unwrap_or("none"),
            warnings = loaded.warnings.len(),
            "config revision in force"
        );
        // Providers removed from the config stop being reconciled (their nodes stay in the
        // database until the provider is put back to drain them).
        if let Some(old) = &old {
            for p in &old.loaded.config.providers {
                if loaded.config.provider(&p.name).is_none() {
                    let key = Key::Provider(p.name.clone());
                    inner.scheduler.remove(&key);
                    lock(&inner.clouds).remove(&p.name);
                    lock(&inner.status).forget(&key.to_string());
                }
            }
        }
        for p in &loaded.config.providers {
            let key = Key::Provider(p.name.clone());
            inner.scheduler.reset_backoff(&key);
            inner.scheduler.schedule_now(key);
        }
        if inner.opts.role.builds() {
            inner.scheduler.reset_backoff(&Key::Images);
            inner.scheduler.schedule_now(Key::Images);
        }
        let scratch = inner.opts.data_dir.join("revisions");
        if let Ok(current) = inner.source.current() {
            let _ = ConfigSource::prune_materialized(&scratch, &[&current]);
        }
        Ok(watch::Action::Done)
    }

    fn workspace(&self, active: &Active, store: Store) -> Workspace {
        Workspace {
            paths: Paths {
                config: active.loaded.path.clone(),
                secure: self.inner.opts.secure.clone(),
                clouds: self.inner.opts.clouds.clone(),
                state: self.inner.opts.state.clone(),
            },
            loaded: active.loaded.clone(),
            revision: active.revision.clone(),
            store,
            clients: active.clients.clone(),
            unresolved: active.unresolved.clone(),
        }
    }

    /// Observe one provider's cloud.
    async fn observe(&self, active: &Active, provider: &str) -> CloudState {
        if let Some(why) = active.unresolved.get(provider) {
            return CloudState::Unavailable {
                error: format!("credentials: {why}"),
            };
        }
        let Some(client) = active.clients.get(provider) else {
            return CloudState::Unavailable {
                error: "no client for this provider".into(),
            };
        };
        let one = BTreeMap::from([(provider.to_owned(), client.clone())]);
        observe::observe_clouds(&one)
            .await
            .remove(provider)
            .unwrap_or(CloudState::Unavailable {
                error: "not observed".into(),
            })
    }

    fn serial(&self) -> Result<i64, DaemonError> {
        Ok(self.store().read().stamp()?.serial)
    }

    /// Take the writer lease, waiting (not failing) while another process — a CLI `apply` —
    /// holds it.
    async fn lease(&self, store: &mut Store) -> Result<LeaseGuard, DaemonError> {
        let mut waited = false;
        loop {
            match ops::apply::lease(store, "nodepool daemon") {
                Ok(l) => return Ok(l),
                Err(OpError::State(StateError::LeaseHeld { holder, .. })) => {
                    if !waited {
                        tracing::info!(%holder, "waiting for the writer lease");
                        waited = true;
                    }
                    if self.inner.scheduler.is_closed() {
                        return Err(DaemonError::ShuttingDown);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The world for a plan: the database, the fresh observation of `fresh` (if any), and
    /// every other provider's last observation.
    fn world(
        &self,
        ws: &mut Workspace,
        active: &Active,
        now: i64,
    ) -> Result<(World, crate::state::Stamp), DaemonError> {
        let (mut world, stamp) = observe::read_store(&mut ws.store, now)?;
        let cached = lock(&self.inner.clouds).clone();
        for p in &active.loaded.config.providers {
            let state = cached
                .get(&p.name)
                .cloned()
                .unwrap_or(CloudState::Unavailable {
                    error: "not observed yet".into(),
                });
            world.clouds.insert(p.name.clone(), state);
        }
        for (provider, client) in &active.clients {
            if let Some(f) = &client.credentials().image_format {
                world.image_formats.insert(provider.clone(), f.clone());
            }
        }
        for n in &world.nodes {
            if !world.clouds.contains_key(&n.provider) {
                world.clouds.insert(
                    n.provider.clone(),
                    CloudState::Unavailable {
                        error: format!(
                            "provider {} is no longer in the config; put it back with \
                             max-servers: 0 to drain its nodes",
                            n.provider
                        ),
                    },
                );
            }
        }
        Ok((world, stamp))
    }

    /// A provider pass or the images pass: observe, plan, apply this pass's share.
    async fn plan_pass(&self, scope: Scope<'_>) -> Result<watch::Action, DaemonError> {
        let inner = &self.inner;
        let active = self.active().ok_or(DaemonError::NoConfig)?;
        let provider = match scope {
            Scope::Provider(p) => {
                if active.loaded.config.provider(p).is_none() {
                    inner.scheduler.remove(&Key::Provider(p.to_owned()));
                    return Ok(watch::Action::Done);
                }
                Some(p)
            }
            Scope::Images => None,
        };
        let key = match provider {
            Some(p) => Key::Provider(p.to_owned()),
            None => Key::Images,
        };
        // Observe outside the writer lock: a slow cloud holds up only its own pass.
        let serial_before = self.serial()?;
        let mut fresh = match provider {
            Some(p) => Some(self.observe(&active, p).await),
            None => None,
        };
        let mut writer = inner.writer.lock().await;
        let mut ws = match std::mem::replace(&mut *writer, Writer::Lost) {
            Writer::Ready(ws) if ws.revision == active.revision => *ws,
            Writer::Ready(ws) => self.workspace(&active, ws.store),
            Writer::Bare(store) => self.workspace(&active, store),
            Writer::Lost => self.workspace(&active, Store::open(&inner.opts.state)?),
        };
        let lease = match self.lease(&mut ws.store).await {
            Ok(l) => l,
            Err(e) => {
                *writer = Writer::Ready(Box::new(ws));
                return Err(e);
            }
        };
        // The database changed while we observed (another pass, or a CLI apply that held the
        // lease): observe again, so the plan never pairs old servers with new records.
        if let Some(p) = provider
            && self.serial()? != serial_before
        {
            fresh = Some(self.observe(&active, p).await);
        }
        if let (Some(p), Some(state)) = (provider, &fresh) {
            lock(&inner.clouds).insert(p.to_owned(), state.clone());
        }
        let unavailable = match &fresh {
            Some(CloudState::Unavailable { error }) => Some(error.clone()),
            _ => None,
        };
        let now = crate::state::now_unix();
        let (world, stamp) = match self.world(&mut ws, &active, now) {
            Ok(w) => w,
            Err(e) => {
                drop(lease);
                *writer = Writer::Ready(Box::new(ws));
                return Err(e);
            }
        };
        let whole = crate::reconcile::plan::plan(&active.loaded.config, &world);
        let selected = select::select(&whole, &world, inner.opts.role, scope);
        let notes: Vec<String> = selected
            .notes
            .iter()
            .filter(|n| provider.is_none_or(|p| n.address.contains(p) || n.message.contains(p)))
            .take(MAX_NOTES)
            .map(|n| format!("{}: {}", n.address, n.message))
            .collect();
        let mut report = PassReport {
            at: Utc::now(),
            revision: active.revision.clone(),
            planned: whole.summary(),
            selected: selected.actions.len(),
            done: 0,
            failed: Vec::new(),
            notes,
            unavailable: unavailable.clone(),
        };
        let follow_up = select::needs_follow_up(&selected)
            || provider.is_some_and(|p| {
                world.nodes.iter().any(|n| {
                    n.provider == p
                        && matches!(
                            n.state,
                            crate::state::NodeState::Building | crate::state::NodeState::Deleting
                        )
                })
            });
        if select::is_noop(&selected, &world, provider) {
            drop(lease);
            *writer = Writer::Ready(Box::new(ws));
        } else {
            tracing::info!(
                actions = selected.actions.len(),
                plan = %whole.summary(),
                "applying"
            );
            let doc = PlanDocument::new(
                selected.clone(),
                active.revision.clone(),
                stamp.lineage,
                stamp.serial,
                now,
            )
            .with_fingerprints(stale::fingerprints(&selected, &world));
            let options = ApplyOptions {
                poll_interval: inner.opts.apply_poll,
                // A pass holds the writer lease: slow boots and SSH waits go on in later
                // passes (AwaitServer) instead of keeping the other providers waiting.
                launch_wait: Some(LAUNCH_WAIT),
                ..ApplyOptions::default()
            };
            let reporter = self.reporter(&selected);
            match run_apply(ws, doc, lease, options, reporter).await {
                Ok((applied, ws)) => {
                    *writer = Writer::Ready(Box::new(ws));
                    report.done = applied.done;
                    report.failed = applied.failed;
                }
                Err(e) => {
                    *writer = Writer::Lost;
                    lock(&inner.status).passes.insert(key.to_string(), report);
                    return Err(e);
                }
            }
        }
        drop(writer);
        let failed = report.failed.clone();
        let total = report.selected;
        lock(&inner.status).passes.insert(key.to_string(), report);
        if let Some(error) = unavailable {
            return Err(DaemonError::Unavailable {
                provider: provider.unwrap_or_default().to_owned(),
                error,
            });
        }
        if let Some((addr, err)) = failed.first() {
            return Err(DaemonError::ActionsFailed {
                failed: failed.len(),
                total,
                first: format!("{addr}: {err}"),
            });
        }
        Ok(watch::Action::RequeueAfter(if follow_up {
            inner.opts.follow_up
        } else {
            inner.opts.poll_interval
        }))
    }

    /// Log each action in its own span and feed the metrics.
    fn reporter(&self, plan: &Plan) -> Reporter {
        let kinds: HashMap<String, ActionKind> = plan
            .actions
            .iter()
            .map(|a| (a.address.clone(), a.kind.clone()))
            .collect();
        let started: Mutex<HashMap<String, (Instant, tracing::Span)>> = Mutex::new(HashMap::new());
        let daemon = self.clone();
        Arc::new(move |event: &ApplyEvent| match event {
            ApplyEvent::Started { address } => {
                let kind = kinds.get(address).map(kind_name).unwrap_or("action");
                let span = tracing::info_span!("action", %address, kind);
                span.in_scope(|| tracing::info!("started"));
                lock(&started).insert(address.clone(), (Instant::now(), span));
            }
            ApplyEvent::Done { address, detail } => {
                let (planned, took, span) = finish(&started, address);
                span.in_scope(
                    || tracing::info!(%detail, took_ms = took.as_millis() as u64, "done"),
                );
                if let Some(kind) = kinds.get(&planned) {
                    daemon.record_action(kind, true, took);
                }
            }
            ApplyEvent::Failed { address, error } => {
                let (planned, took, span) = finish(&started, address);
                span.in_scope(
                    || tracing::warn!(%error, took_ms = took.as_millis() as u64, "failed"),
                );
                if let Some(kind) = kinds.get(&planned) {
                    daemon.record_action(kind, false, took);
                }
            }
            ApplyEvent::NodeReady { node } => daemon.record_ready(node),
        })
    }

    /// A node became ready: its launch succeeded (whichever pass's action got it there), timed
    /// from the node's creation.
    fn record_ready(&self, node: &crate::state::Node) {
        let now = crate::state::now_unix();
        let m = &self.inner.metrics;
        m.launches
            .get_or_create(&metrics::ProviderResult {
                provider: node.provider.clone(),
                result: "success".into(),
            })
            .inc();
        m.launch_seconds
            .get_or_create(&metrics::ProviderLabel {
                provider: node.provider.clone(),
            })
            .observe((now - node.created_at).max(0) as f64);
        if let Some(s) = &self.inner.statsd {
            s.node_ready(node, now);
        }
    }

    /// Upstream's node gauges to statsd, if it is configured: counted from the database.
    fn send_gauges(&self) {
        let (Some(statsd), Some(active)) = (&self.inner.statsd, self.active()) else {
            return;
        };
        match self.store().read().node_counts() {
            Ok(counts) => statsd.gauges(&active.loaded.config, &counts),
            Err(e) => tracing::warn!(error = %e, "cannot count nodes for statsd"),
        }
    }

    fn record_action(&self, kind: &ActionKind, ok: bool, took: Duration) {
        if let Some(s) = &self.inner.statsd {
            statsd_action(s, kind, ok, took);
        }
        let m = &self.inner.metrics;
        let result = if ok { "success" } else { "failure" }.to_owned();
        match kind {
            // Successes are counted when the node is ready (`record_ready`): a launch action
            // may hand its server over to a later pass.
            ActionKind::LaunchNode { provider, .. }
            | ActionKind::RelaunchNode { provider, .. }
            | ActionKind::AwaitServer { provider, .. }
                if !ok =>
            {
                m.launches
                    .get_or_create(&metrics::ProviderResult {
                        provider: provider.clone(),
                        result,
                    })
                    .inc();
            }
            ActionKind::DeleteNode {
                provider,
                gives_up_launch,
                ..
            } => {
                if *gives_up_launch && ok {
                    m.launches
                        .get_or_create(&metrics::ProviderResult {
                            provider: provider.clone(),
                            result: "failure".into(),
                        })
                        .inc();
                }
                m.node_deletes
                    .get_or_create(&metrics::ProviderResult {
                        provider: provider.clone(),
                        result,
                    })
                    .inc();
            }
            ActionKind::BuildImage { image, .. } => {
                let labels = metrics::ImageResult {
                    image: image.clone(),
                    result,
                };
                m.builds.get_or_create(&labels).inc();
                m.build_seconds
                    .get_or_create(&labels)
                    .observe(took.as_secs_f64());
            }
            ActionKind::UploadImage {
                provider, image, ..
            } => {
                let labels = metrics::UploadResult {
                    provider: provider.clone(),
                    image: image.clone(),
                    result,
                };
                m.uploads.get_or_create(&labels).inc();
                m.upload_seconds
                    .get_or_create(&labels)
                    .observe(took.as_secs_f64());
            }
            ActionKind::DeleteLeak { provider, kind, .. } if ok => {
                m.leaks_deleted
                    .get_or_create(&metrics::LeakLabels {
                        provider: provider.clone(),
                        kind: kind.as_str().to_owned(),
                    })
                    .inc();
            }
            _ => {}
        }
    }
}

/// Upstream's statsd counters for one finished action (ready nodes come as
/// [`ApplyEvent::NodeReady`], whichever action got them there).
fn statsd_action(s: &statsd::Statsd, kind: &ActionKind, ok: bool, took: Duration) {
    match kind {
        ActionKind::LaunchNode { provider, boot, .. }
        | ActionKind::RelaunchNode { provider, boot, .. }
            if !ok =>
        {
            s.launch_failed(provider, boot.az.as_deref(), &boot.image_name);
        }
        ActionKind::AwaitServer { provider, boot, .. } if !ok => s.launch_failed(
            provider,
            boot.as_ref().and_then(|b| b.az.as_deref()),
            boot.as_ref().map_or("None", |b| b.image_name.as_str()),
        ),
        ActionKind::DeleteNode {
            provider,
            gives_up_launch: true,
            ..
        } if ok => s.launch_failed(provider, None, "None"),
        ActionKind::BuildImage { image, formats } => s.build(image, formats, ok),
        ActionKind::UploadImage {
            provider, image, ..
        } if ok => s.upload(image, provider, took),
        ActionKind::DeleteLeak { provider, kind, .. } if ok => s.leak_deleted(provider, *kind),
        _ => {}
    }
}

/// `ops::apply::apply` on a blocking thread of the runtime. Its future is not provably `Send`
/// (a higher-ranked lifetime in the applier's per-action closures defeats the auto-trait
/// check), so it cannot be polled from a spawned task; `Handle::block_on` needs no `Send`.
async fn run_apply(
    ws: Workspace,
    doc: PlanDocument,
    lease: LeaseGuard,
    options: ApplyOptions,
    reporter: Reporter,
) -> Result<(crate::reconcile::apply::ApplyReport, Workspace), DaemonError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        handle.block_on(ops::apply::apply(ws, &doc, lease, options, reporter))
    })
    .await
    .map_err(|e| DaemonError::Join(e.to_string()))?
    .map_err(DaemonError::from)
}

/// The planned address, duration and span of the action an event finishes. A launch is
/// planned as `node.<provider>.<pool>.<label>[+n]` and finishes under its node's real id, so
/// an address not started as such is matched to the oldest launch started for that slot.
fn finish(
    started: &Mutex<HashMap<String, (Instant, tracing::Span)>>,
    address: &str,
) -> (String, Duration, tracing::Span) {
    let mut started = lock(started);
    let planned = if started.contains_key(address) {
        Some(address.to_owned())
    } else {
        address.split_once('[').and_then(|(slot, _)| {
            let prefix = format!("{slot}[+");
            started
                .iter()
                .filter(|(a, _)| a.starts_with(&prefix))
                .min_by_key(|(_, (at, _))| *at)
                .map(|(a, _)| a.clone())
        })
    };
    match planned.and_then(|a| started.remove(&a).map(|v| (a, v))) {
        Some((planned, (at, span))) => (planned, at.elapsed(), span),
        None => (
            address.to_owned(),
            Duration::ZERO,
            tracing::info_span!("action", address, kind = "action"),
        ),
    }
}

fn kind_name(kind: &ActionKind) -> &'static str {
    match kind {
        ActionKind::BuildImage { .. } => "build_image",
        ActionKind::UploadImage { .. } => "upload_image",
        ActionKind::DeleteUpload { .. } => "delete_upload",
        ActionKind::DeleteBuild { .. } => "delete_build",
        ActionKind::PruneBuild { .. } => "prune_build",
        ActionKind::LaunchNode { .. } => "launch_node",
        ActionKind::RelaunchNode { .. } => "relaunch_node",
        ActionKind::MarkReady { .. } => "mark_ready",
        ActionKind::AwaitServer { .. } => "await_server",
        ActionKind::AdoptServer { .. } => "adopt_server",
        ActionKind::DeleteNode { .. } => "delete_node",
        ActionKind::ForgetNode { .. } => "forget_node",
        ActionKind::AllocateNode { .. } => "allocate_node",
        ActionKind::DeallocateNode { .. } => "deallocate_node",
        ActionKind::FulfillRequest { .. } => "fulfill_request",
        ActionKind::FailRequest { .. } => "fail_request",
        ActionKind::DeleteLeak { .. } => "delete_leak",
    }
}
