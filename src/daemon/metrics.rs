//! Prometheus metrics of the daemon (prometheus-client): nodes, launches, builds, uploads, leaks, API calls, reconciles, config revisions.
//!
//! Every label is bounded by the config (provider, label, image, pool) or by a fixed
//! vocabulary (state, result, kind, the API operation templates of
//! [`crate::cloud::operation_name`], HTTP status codes): no node ids, request ids or error texts.

use crate::cloud::{ApiCall, ApiCallCounter};
use crate::state::{ImageBuild, NodeCount};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub provider: String,
    pub label: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderResult {
    pub provider: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiCallLabels {
    pub provider: String,
    /// `compute GET /servers/detail`, `image PUT /images/{id}/file`, ...
    pub operation: String,
    /// The HTTP status code, or `timeout` / `error`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabel {
    pub image: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageResult {
    pub image: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UploadResult {
    pub provider: String,
    pub image: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeakLabels {
    pub provider: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabels {
    /// `config`, `images` or `provider:<name>`.
    pub key: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabel {
    pub key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    pub revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

fn seconds_histogram() -> Histogram {
    // 0.1 s … ~55 min.
    Histogram::new(exponential_buckets(0.1, 2.5, 12))
}

/// One client's call counter and what of it `api_calls` already holds.
struct TrackedClient {
    provider: String,
    counter: ApiCallCounter,
    seen: HashMap<ApiCall, u64>,
}

/// The daemon's metrics; [`Metrics::encode`] renders them.
pub struct Metrics {
    registry: Registry,
    nodes: Family<NodeLabels, Gauge>,
    pub launches: Family<ProviderResult, Counter>,
    pub launch_seconds: Family<ProviderLabel, Histogram, fn() -> Histogram>,
    pub node_deletes: Family<ProviderResult, Counter>,
    pub builds: Family<ImageResult, Counter>,
    pub build_seconds: Family<ImageResult, Histogram, fn() -> Histogram>,
    pub uploads: Family<UploadResult, Counter>,
    pub upload_seconds: Family<UploadResult, Histogram, fn() -> Histogram>,
    pub leaks_deleted: Family<LeakLabels, Counter>,
    build_exit_code: Family<ImageLabel, Gauge>,
    build_size_bytes: Family<ImageLabel, Gauge>,
    api_calls: Family<ApiCallLabels, Counter>,
    /// The clients whose calls feed `api_calls`, with the counts already added.
    clients: Mutex<Vec<TrackedClient>>,
    pub passes: Family<PassLabels, Counter>,
    pub pass_seconds: Family<KeyLabel, Histogram, fn() -> Histogram>,
    config_info: Family<RevisionLabels, Gauge>,
    pub config_loads: Family<StatusLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nodepool");
        let m = Metrics {
            nodes: Family::default(),
            launches: Family::default(),
            launch_seconds: Family::new_with_constructor(seconds_histogram),
            node_deletes: Family::default(),
            builds: Family::default(),
            build_seconds: Family::new_with_constructor(seconds_histogram),
            uploads: Family::default(),
            upload_seconds: Family::new_with_constructor(seconds_histogram),
            leaks_deleted: Family::default(),
            build_exit_code: Family::default(),
            build_size_bytes: Family::default(),
            api_calls: Family::default(),
            clients: Mutex::new(Vec::new()),
            passes: Family::default(),
            pass_seconds: Family::new_with_constructor(seconds_histogram),
            config_info: Family::default(),
            config_loads: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "nodes",
            "Nodes in the database by provider, label and state",
            m.nodes.clone(),
        );
        registry.register(
            "launches",
            "Node launches by provider and result: success when the node became ready, failure when the launch was given up",
            m.launches.clone(),
        );
        registry.register(
            "launch_duration_seconds",
            "Time from a node's creation to ready",
            m.launch_seconds.clone(),
        );
        registry.register(
            "node_deletes",
            "Node delete actions by provider and result",
            m.node_deletes.clone(),
        );
        registry.register(
            "image_builds",
            "Image builds by image and result",
            m.builds.clone(),
        );
        registry.register(
            "image_build_duration_seconds",
            "Duration of image builds",
            m.build_seconds.clone(),
        );
        registry.register(
            "image_build_last_exit_code",
            "Exit code of each image's newest finished build (0: success)",
            m.build_exit_code.clone(),
        );
        registry.register(
            "image_build_last_size_bytes",
            "Size in bytes of each image's newest successful build (all its formats)",
            m.build_size_bytes.clone(),
        );
        registry.register(
            "image_uploads",
            "Image uploads by provider, image and result",
            m.uploads.clone(),
        );
        registry.register(
            "image_upload_duration_seconds",
            "Duration of image uploads",
            m.upload_seconds.clone(),
        );
        registry.register(
            "leaked_resources_deleted",
            "Leaked cloud resources deleted, by provider and kind",
            m.leaks_deleted.clone(),
        );
        registry.register(
            "cloud_api_calls",
            "HTTP calls to the providers' cloud APIs (every attempt, retries included) by \
             provider, operation (service, method, path with ids as {id}) and status (HTTP \
             code, timeout or error)",
            m.api_calls.clone(),
        );
        registry.register(
            "reconciles",
            "Reconcile passes by key and result",
            m.passes.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            m.pass_seconds.clone(),
        );
        registry.register(
            "config_revision_info",
            "The config revision in force (value 1)",
            m.config_info.clone(),
        );
        registry.register(
            "config_loads",
            "Config revisions loaded, by outcome (ok, invalid)",
            m.config_loads.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Record a finished pass.
    pub fn pass(&self, key: &str, ok: bool, took: Duration) {
        self.passes
            .get_or_create(&PassLabels {
                key: key.to_owned(),
                result: if ok { "success" } else { "failure" }.into(),
            })
            .inc();
        self.pass_seconds
            .get_or_create(&KeyLabel {
                key: key.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The config revision now in force.
    pub fn set_revision(&self, revision: &str) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&RevisionLabels {
                revision: revision.to_owned(),
            })
            .set(1);
    }

    /// Count the calls of `counter`'s client under `provider` from now on (and those it made
    /// before: the whole count is added at the next scrape). Tracking the same client twice
    /// changes nothing. A client is forgotten once it is dropped and its last calls collected,
    /// so the clients replaced on a config reload neither lose calls nor pile up.
    pub fn track_client(&self, provider: &str, counter: ApiCallCounter) {
        let mut clients = lock(&self.clients);
        if clients
            .iter()
            .any(|t| t.provider == provider && t.counter.same_client(&counter))
        {
            return;
        }
        clients.push(TrackedClient {
            provider: provider.to_owned(),
            counter,
            seen: HashMap::new(),
        });
    }

    /// How many clients are tracked (live ones, and dropped ones not yet collected).
    pub fn tracked_clients(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Add what the tracked clients counted since the last collection.
    fn collect_api_calls(&self) {
        let mut clients = lock(&self.clients);
        clients.retain_mut(|t| {
            // Read liveness first: a client dropped after this read is collected next time.
            let alive = t.counter.client_alive();
            for (call, now) in t.counter.snapshot() {
                let before = t.seen.get(&call).copied().unwrap_or(0);
                if now > before {
                    self.api_calls
                        .get_or_create(&ApiCallLabels {
                            provider: t.provider.clone(),
                            operation: call.operation.clone(),
                            status: call.status.clone(),
                        })
                        .inc_by(now - before);
                    t.seen.insert(call, now);
                }
            }
            alive
        });
    }

    /// Per image: the exit code of the newest finished build, and the size of the newest
    /// successful one (a failed build does not hide the size of the image in use).
    fn set_builds(&self, builds: &[ImageBuild]) {
        fn newer<'a>(map: &mut BTreeMap<&'a str, &'a ImageBuild>, b: &'a ImageBuild) {
            let slot = map.entry(&b.image_name).or_insert(b);
            if (b.started_at, &b.id) > (slot.started_at, &slot.id) {
                *slot = b;
            }
        }
        let mut finished = BTreeMap::new();
        let mut succeeded = BTreeMap::new();
        for b in builds {
            if b.finished_at.is_some() && b.exit_code.is_some() {
                newer(&mut finished, b);
            }
            if b.exit_code == Some(0) && b.size_bytes.is_some() {
                newer(&mut succeeded, b);
            }
        }
        self.build_exit_code.clear();
        self.build_size_bytes.clear();
        let label = |image: &str| ImageLabel {
            image: image.to_owned(),
        };
        for (image, b) in finished {
            let code = b.exit_code.unwrap_or_default();
            self.build_exit_code
                .get_or_create(&label(image))
                .set(i64::from(code));
        }
        for (image, b) in succeeded {
            let size = b.size_bytes.unwrap_or_default();
            self.build_size_bytes.get_or_create(&label(image)).set(size);
        }
    }

    /// Refresh what is computed from the database (nodes, the newest builds) and the clients'
    /// call counts, then render everything in the Prometheus text format.
    pub fn encode(&self, nodes: &[NodeCount], builds: &[ImageBuild]) -> String {
        self.nodes.clear();
        for n in nodes {
            self.nodes
                .get_or_create(&NodeLabels {
                    provider: n.provider.clone(),
                    label: n.label.clone(),
                    state: n.state.to_string(),
                })
                .set(i64::try_from(n.count).unwrap_or(i64::MAX));
        }
        self.set_builds(builds);
        self.collect_api_calls();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{ClientOptions, OpenStackClient};
    use crate::config::credentials::CloudCredentials;
    use crate::state::BuildState;

    fn build(
        id: &str,
        image: &str,
        started: i64,
        exit: Option<i32>,
        size: Option<i64>,
    ) -> ImageBuild {
        ImageBuild {
            id: id.into(),
            image_name: image.into(),
            state: match exit {
                None => BuildState::Building,
                Some(0) => BuildState::Ready,
                Some(_) => BuildState::Failed,
            },
            state_time: started,
            formats: vec!["qcow2".into()],
            builder: None,
            started_at: started,
            finished_at: exit.map(|_| started + 60),
            exit_code: exit,
            log_path: None,
            size_bytes: size,
            pruned_formats: vec![],
        }
    }

    #[test]
    fn newest_build_exit_code_and_newest_successful_size_per_image() {
        let m = Metrics::new();
        let builds = vec![
            build("0000000001", "ubuntu", 100, Some(0), Some(1000)),
            build("0000000002", "ubuntu", 200, Some(0), Some(2000)),
            // The newest finished ubuntu build failed: exit code 1, size of the previous one.
            build("0000000003", "ubuntu", 300, Some(1), None),
            // Still building: ignored.
            build("0000000004", "ubuntu", 400, None, None),
            build("0000000005", "debian", 100, Some(0), Some(500)),
            build("0000000006", "centos", 100, None, None),
        ];
        let text = m.encode(&[], &builds);
        assert!(
            text.contains("nodepool_image_build_last_exit_code{image=\"ubuntu\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("nodepool_image_build_last_size_bytes{image=\"ubuntu\"} 2000"),
            "{text}"
        );
        assert!(
            text.contains("nodepool_image_build_last_exit_code{image=\"debian\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("nodepool_image_build_last_size_bytes{image=\"debian\"} 500"),
            "{text}"
        );
        assert!(!text.contains("centos"), "{text}");
        // Builds deleted from the database disappear from the gauges.
        let text = m.encode(&[], &builds[4..]);
        assert!(!text.contains("ubuntu"), "{text}");
        assert!(text.contains("image=\"debian\""), "{text}");
    }

    fn offline_client() -> OpenStackClient {
        // Never connects: only its call counter is used.
        let creds = CloudCredentials::password(
            "test",
            "http://127.0.0.1:9/v3",
            "u",
            crate::secret::Secret::new("p"),
            "p",
        );
        OpenStackClient::new(creds, ClientOptions::default()).unwrap()
    }

    #[test]
    fn tracked_clients_are_deduplicated_and_forgotten_once_dropped() {
        let m = Metrics::new();
        let a = offline_client();
        m.track_client("east", a.call_counter());
        m.track_client("east", a.clone().call_counter());
        assert_eq!(m.tracked_clients(), 1);
        let b = offline_client();
        m.track_client("east", b.call_counter());
        assert_eq!(m.tracked_clients(), 2);
        m.encode(&[], &[]);
        assert_eq!(m.tracked_clients(), 2);
        drop(a);
        m.encode(&[], &[]);
        assert_eq!(m.tracked_clients(), 1);
    }

    #[test]
    fn revision_info_keeps_only_the_revision_in_force() {
        let m = Metrics::new();
        m.set_revision("main@1111111");
        m.set_revision("main@2222222");
        let text = m.encode(&[], &[]);
        assert!(text.contains("nodepool_config_revision_info{revision=\"main@2222222\"} 1"));
        assert!(!text.contains("main@1111111"));
    }
}
