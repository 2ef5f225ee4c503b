//! Prometheus metrics of the daemon (prometheus-client): nodes, launches, builds, uploads, leaks, API calls, reconciles, config revisions.
//!
//! Every label is bounded by the config (provider, label, image, pool) or by a fixed
//! vocabulary (state, result, kind): no node ids, request ids or error texts.

use crate::state::Node;
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
    api_calls: Family<ProviderLabel, Counter>,
    /// The client counter values already added to `api_calls`, per provider.
    api_seen: Mutex<HashMap<String, u64>>,
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
            api_calls: Family::default(),
            api_seen: Mutex::new(HashMap::new()),
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
            "Node launch actions by provider and result",
            m.launches.clone(),
        );
        registry.register(
            "launch_duration_seconds",
            "Duration of node launch actions",
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
            "HTTP calls made to each provider's cloud APIs",
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

    /// Refresh the gauges computed from the database and the clients, then render everything
    /// in the Prometheus text format.
    pub fn encode(&self, nodes: &[Node], api_calls: &BTreeMap<String, u64>) -> String {
        self.nodes.clear();
        for n in nodes {
            self.nodes
                .get_or_create(&NodeLabels {
                    provider: n.provider.clone(),
                    label: n.label.clone(),
                    state: n.state.to_string(),
                })
                .inc();
        }
        {
            let mut seen = self.api_seen.lock().unwrap_or_else(|p| p.into_inner());
            for (provider, &now) in api_calls {
                let before = seen.insert(provider.clone(), now).unwrap_or(0);
                // A client replaced on a config reload starts again from zero.
                let delta = if now >= before { now - before } else { now };
                self.api_calls
                    .get_or_create(&ProviderLabel {
                        provider: provider.clone(),
                    })
                    .inc_by(delta);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_calls_accumulate_across_client_replacement() {
        let m = Metrics::new();
        let text = m.encode(&[], &BTreeMap::from([("east".to_owned(), 5)]));
        assert!(text.contains("nodepool_cloud_api_calls_total{provider=\"east\"} 5"));
        let text = m.encode(&[], &BTreeMap::from([("east".to_owned(), 7)]));
        assert!(text.contains("nodepool_cloud_api_calls_total{provider=\"east\"} 7"));
        // A new client (after a reload) counts from zero again: its 3 calls are added.
        let text = m.encode(&[], &BTreeMap::from([("east".to_owned(), 3)]));
        assert!(text.contains("nodepool_cloud_api_calls_total{provider=\"east\"} 10"));
    }

    #[test]
    fn revision_info_keeps_only_the_revision_in_force() {
        let m = Metrics::new();
        m.set_revision("main@1111111");
        m.set_revision("main@2222222");
        let text = m.encode(&[], &BTreeMap::new());
        assert!(text.contains("nodepool_config_revision_info{revision=\"main@2222222\"} 1"));
        assert!(!text.contains("main@1111111"));
    }
}
