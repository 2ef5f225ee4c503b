//! Upstream Nodepool's statsd metrics, so Graphite dashboards built on upstream's names keep
//! working: sent when `STATSD_HOST` is set (`STATSD_PORT`, default 8125; `STATSD_PREFIX`,
//! optional), as upstream's daemons do. Prometheus (`/metrics`) is the primary interface;
//! this is the compatibility path.
//!
//! Sent, with upstream's names:
//! - gauges after every pass: `nodepool.nodes.<state>`, `nodepool.provider.<p>.nodes.<state>`,
//!   `nodepool.label.<l>.nodes.<state>` (every state, zeros included, for every configured
//!   provider and label) and `nodepool.provider.<p>.max_servers`;
//! - a counter and a timer (ms, from the node's creation) per node that becomes ready:
//!   `nodepool.launch.ready`, `nodepool.launch.provider.<p>.<az>.ready`,
//!   `nodepool.launch.image.<image>.ready`; a counter per launch given up, with
//!   `error.unknown` in place of `ready`;
//! - `nodepool.builder.dib_image_build.<image>.<format>.ready|failed` per build,
//!   `nodepool.image_update.<image>.<provider>` (counter and timer) per upload, and
//!   `nodepool.provider.<p>.leaked.<instances|images|floatingips|ports>` per leak deleted.
//!
//! Sending never blocks a pass: metrics queue for a background thread, and a full queue or a
//! send error drops the metric (statsd is fire-and-forget UDP anyway).

use crate::config::Config;
use crate::state::{LeakKind, Node, NodeCount, NodeState};
use cadence::prelude::*;
use cadence::{QueuingMetricSink, StatsdClient, UdpMetricSink};
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

/// Metrics queued for the sender thread at most; more are dropped.
const QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StatsdError {
    #[error("STATSD_PORT {0:?} is not a port number")]
    Port(String),
    #[error("statsd at {addr}: {message}")]
    Socket { addr: String, message: String },
}

/// Where to send: upstream's `STATSD_HOST`, `STATSD_PORT` and `STATSD_PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsdTarget {
    pub host: String,
    pub port: u16,
    pub prefix: Option<String>,
}

impl StatsdTarget {
    /// From the environment as upstream reads it; `None` without `STATSD_HOST`.
    pub fn from_env() -> Result<Option<StatsdTarget>, StatsdError> {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<StatsdTarget>, StatsdError> {
        let Some(host) = var("STATSD_HOST") else {
            return Ok(None);
        };
        let port = match var("STATSD_PORT") {
            Some(p) => p.parse().map_err(|_| StatsdError::Port(p))?,
            None => cadence::DEFAULT_PORT,
        };
        Ok(Some(StatsdTarget {
            host,
            port,
            prefix: var("STATSD_PREFIX"),
        }))
    }
}

pub struct Statsd {
    client: StatsdClient,
}

impl Statsd {
    /// Metrics to the target over UDP, each name under `prefix.` if it has one.
    pub fn connect(target: &StatsdTarget) -> Result<Statsd, StatsdError> {
        let socket_err = |message: String| StatsdError::Socket {
            addr: format!("{}:{}", target.host, target.port),
            message,
        };
        let socket = UdpSocket::bind("0.0.0.0:0")
            .or_else(|_| UdpSocket::bind("[::]:0"))
            .map_err(|e| socket_err(e.to_string()))?;
        let udp = UdpMetricSink::from((target.host.as_str(), target.port), socket)
            .map_err(|e| socket_err(e.to_string()))?;
        let sink = QueuingMetricSink::with_capacity(udp, QUEUE);
        Ok(Statsd {
            client: StatsdClient::from_sink(target.prefix.as_deref().unwrap_or_default(), sink),
        })
    }

    fn count(&self, key: &str) {
        let _ = self.client.count(key, 1);
    }

    fn time(&self, key: &str, took: Duration) {
        let _ = self.client.time(key, took);
    }

    fn gauge(&self, key: &str, value: u64) {
        let _ = self.client.gauge(key, value);
    }

    /// A node became ready: its launch counted and timed from the node's creation.
    pub fn node_ready(&self, node: &Node, now: i64) {
        let took = Duration::from_secs(u64::try_from(now - node.created_at).unwrap_or(0));
        for key in launch_keys(node, "ready") {
            self.count(&key);
            self.time(&key, took);
        }
    }

    /// A launch was given up (after its attempts, or it could not start).
    pub fn launch_failed(&self, provider: &str, az: Option<&str>, image: &str) {
        for key in [
            "nodepool.launch.error.unknown".to_owned(),
            format!(
                "nodepool.launch.provider.{}.{}.error.unknown",
                part(provider),
                part(az.unwrap_or("None"))
            ),
            format!("nodepool.launch.image.{}.error.unknown", part(image)),
        ] {
            self.count(&key);
        }
    }

    pub fn build(&self, image: &str, formats: &[String], ok: bool) {
        let result = if ok { "ready" } else { "failed" };
        for f in formats {
            self.count(&format!(
                "nodepool.builder.dib_image_build.{}.{}.{result}",
                part(image),
                part(f)
            ));
        }
    }

    pub fn upload(&self, image: &str, provider: &str, took: Duration) {
        let key = format!("nodepool.image_update.{}.{}", part(image), part(provider));
        self.count(&key);
        self.time(&key, took);
    }

    pub fn leak_deleted(&self, provider: &str, kind: LeakKind) {
        let kind = match kind {
            LeakKind::Server => "instances",
            LeakKind::Image => "images",
            LeakKind::FloatingIp => "floatingips",
            LeakKind::Port => "ports",
        };
        self.count(&format!(
            "nodepool.provider.{}.leaked.{kind}",
            part(provider)
        ));
    }

    /// Node counts by state, overall, per provider and per label.
    pub fn gauges(&self, config: &Config, counts: &[NodeCount]) {
        for (key, value) in gauges(config, counts) {
            self.gauge(&key, value);
        }
    }
}

/// The keys a launch result goes to.
fn launch_keys(node: &Node, result: &str) -> [String; 3] {
    [
        format!("nodepool.launch.{result}"),
        format!(
            "nodepool.launch.provider.{}.{}.{result}",
            part(&node.provider),
            part(node.details.az.as_deref().unwrap_or("None"))
        ),
        format!(
            "nodepool.launch.image.{}.{result}",
            part(node.details.image_name.as_deref().unwrap_or("None"))
        ),
    ]
}

/// Every gauge with its value: zeros for every state of every configured provider and label,
/// so a state that empties reads 0 rather than its last count.
fn gauges(config: &Config, counts: &[NodeCount]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let scopes = std::iter::once("nodepool".to_owned())
        .chain(
            config
                .providers
                .iter()
                .map(|p| format!("nodepool.provider.{}", part(&p.name))),
        )
        .chain(
            config
                .labels
                .iter()
                .map(|l| format!("nodepool.label.{}", part(&l.name))),
        );
    for scope in scopes {
        for state in NodeState::ALL {
            out.insert(format!("{scope}.nodes.{state}"), 0);
        }
    }
    for c in counts {
        for scope in [
            "nodepool".to_owned(),
            format!("nodepool.provider.{}", part(&c.provider)),
            format!("nodepool.label.{}", part(&c.label)),
        ] {
            *out.entry(format!("{scope}.nodes.{}", c.state)).or_default() += c.count;
        }
    }
    for p in &config.providers {
        let limits: Option<u64> = p.pools.iter().map(|pool| pool.max_servers).sum();
        if let Some(max) = limits {
            out.insert(
                format!("nodepool.provider.{}.max_servers", part(&p.name)),
                max,
            );
        }
    }
    out
}

/// A name as one part of a metric key: the statsd line's own separators (`:`, `|`, `@`) and
/// whitespace become `_`.
fn part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if matches!(c, ':' | '|' | '@') || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_as_upstream_reads_it() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(StatsdTarget::from_vars(vars(&[])).unwrap(), None);
        assert_eq!(
            StatsdTarget::from_vars(vars(&[("STATSD_HOST", "graphite")])).unwrap(),
            Some(StatsdTarget {
                host: "graphite".into(),
                port: 8125,
                prefix: None
            })
        );
        assert_eq!(
            StatsdTarget::from_vars(vars(&[
                ("STATSD_HOST", "127.0.0.1"),
                ("STATSD_PORT", "9125"),
                ("STATSD_PREFIX", "ci")
            ]))
            .unwrap()
            .map(|t| (t.port, t.prefix)),
            Some((9125, Some("ci".into())))
        );
        let e = StatsdTarget::from_vars(vars(&[("STATSD_HOST", "h"), ("STATSD_PORT", "x")]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "STATSD_PORT \"x\" is not a port number");
    }

    #[test]
    fn every_state_of_every_provider_and_label_is_reported() {
        let (config, _) = crate::config::load_str(
            std::path::Path::new("nodepool.yaml"),
            "labels: [{name: small}]\nproviders:\n  - name: east\n    cloud: east\n    \
             pools: [{name: main, max-servers: 3, labels: [{name: small, cloud-image: c, \
             min-ram: 1}]}, {name: b, max-servers: 2}]\n    cloud-images: [{name: c}]\n",
            None,
            &BTreeMap::new(),
        )
        .unwrap();
        let count = |state: NodeState| NodeCount {
            provider: "east".into(),
            label: "small".into(),
            state,
            count: 1,
        };
        let nodes = [count(NodeState::Ready), count(NodeState::InUse)];
        let g = gauges(&config, &nodes);
        assert_eq!(g["nodepool.nodes.ready"], 1);
        assert_eq!(g["nodepool.nodes.in-use"], 1);
        assert_eq!(g["nodepool.nodes.deleting"], 0);
        assert_eq!(g["nodepool.provider.east.nodes.ready"], 1);
        assert_eq!(g["nodepool.label.small.nodes.in-use"], 1);
        assert_eq!(g["nodepool.label.small.nodes.hold"], 0);
        assert_eq!(g["nodepool.provider.east.max_servers"], 5);
        assert_eq!(g.len(), 3 * NodeState::ALL.len() + 1);
    }

    #[test]
    fn names_stay_one_part_of_a_line() {
        assert_eq!(part("east|1: a@b"), "east_1__a_b");
        assert_eq!(part("rax-dfw.ord"), "rax-dfw.ord");
    }
}
