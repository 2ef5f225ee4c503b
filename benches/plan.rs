//! Benchmark: the planner on a large world — 50 providers, 500 labels, 10,000 nodes and
//! 20,000 cloud objects — and at 10× the nodes and objects. Prints wall time (median of
//! several runs) and the process's peak RSS. Targets (release): < 100 ms and < 100 MB at 1×.
//! Run: `cargo bench --bench plan`.

use nodepool::config::load_str;
use nodepool::reconcile::world::{
    CloudState, CloudView, ObservedFlavor, ObservedFloatingIp, ObservedImage, ObservedLimits,
    ObservedPort, ObservedServer, Quota, World,
};
use nodepool::state::{Node, NodeDetails, NodeState};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const PROVIDERS: usize = 50;
const LABELS: usize = 500;

fn config() -> nodepool::config::Config {
    let mut y = String::from("labels:\n");
    for l in 0..LABELS {
        writeln!(y, "  - name: label-{l}\n    min-ready: {}", l % 3).unwrap();
    }
    y.push_str("providers:\n");
    for p in 0..PROVIDERS {
        writeln!(y, "  - name: p{p}\n    cloud: c{p}\n    cloud-images: [{{name: base}}]\n    pools:\n      - name: main\n        max-servers: 1000\n        labels:").unwrap();
        for l in (p..LABELS).step_by(PROVIDERS) {
            writeln!(
                y,
                "          - {{name: label-{l}, cloud-image: base, min-ram: 1024}}"
            )
            .unwrap();
        }
    }
    load_str(Path::new("bench.yaml"), &y, None, &BTreeMap::new())
        .expect("valid")
        .0
}

fn world(scale: usize) -> World {
    let now = 1_800_000_000;
    let nodes_total = 10_000 * scale;
    let objects_per_provider = 20_000 * scale / PROVIDERS;
    let mut w = World {
        now,
        ..World::default()
    };
    let states = [
        NodeState::Ready,
        NodeState::InUse,
        NodeState::Ready,
        NodeState::Used,
        NodeState::Building,
    ];
    for i in 0..nodes_total {
        let p = i % PROVIDERS;
        let l = p + PROVIDERS * ((i / PROVIDERS) % (LABELS / PROVIDERS));
        w.nodes.push(Node {
            id: format!("{i:010}"),
            provider: format!("p{p}"),
            pool: "main".into(),
            label: format!("label-{l}"),
            hostname: format!("n{i}"),
            state: states[i % states.len()],
            state_time: now - 100,
            created_at: now - 200,
            details: NodeDetails {
                server_id: Some(format!("srv-{i}")),
                cores: Some(1),
                ram: Some(1024),
                ..NodeDetails::default()
            },
        });
    }
    for p in 0..PROVIDERS {
        let mut v = CloudView {
            flavors: vec![ObservedFlavor {
                id: "f1".into(),
                name: "small".into(),
                vcpus: 1,
                ram_mb: 1024,
                disabled: false,
            }],
            limits: ObservedLimits {
                instances: Quota {
                    limit: Some(100_000),
                    used: 0,
                },
                cores: Quota {
                    limit: None,
                    used: 0,
                },
                ram_mb: Quota {
                    limit: None,
                    used: 0,
                },
            },
            images: vec![ObservedImage {
                id: "img".into(),
                name: "base".into(),
                status: "active".into(),
                ..ObservedImage::default()
            }],
            ..CloudView::default()
        };
        // Our servers (one per node of this provider) count toward the objects.
        for n in w.nodes.iter().filter(|n| n.provider == format!("p{p}")) {
            let status = if n.state == NodeState::Building {
                "BUILD"
            } else {
                "ACTIVE"
            };
            v.servers.push(ObservedServer {
                id: n.details.server_id.clone().unwrap(),
                name: n.hostname.clone(),
                status: status.into(),
                metadata: [
                    ("nodepool_provider_name".to_owned(), n.provider.clone()),
                    ("nodepool_node_id".to_owned(), n.id.clone()),
                ]
                .into(),
                created: now - 200,
                vcpus: 1,
                ram_mb: 1024,
                ..ObservedServer::default()
            });
        }
        let rest = objects_per_provider.saturating_sub(v.servers.len());
        for i in 0..rest {
            match i % 3 {
                0 => v.ports.push(ObservedPort {
                    id: format!("port-{p}-{i}"),
                    status: "ACTIVE".into(),
                    device_owner: "compute:nova".into(),
                    device_id: format!("x{i}"),
                }),
                1 => v.floating_ips.push(ObservedFloatingIp {
                    id: format!("fip-{p}-{i}"),
                    address: format!("172.16.{}.{}", i / 250, i % 250),
                    port_id: Some(format!("port-{i}")),
                    status: "ACTIVE".into(),
                }),
                _ => v.images.push(ObservedImage {
                    id: format!("img-{p}-{i}"),
                    name: format!("other-{i}"),
                    status: "active".into(),
                    ..ObservedImage::default()
                }),
            }
        }
        w.clouds.insert(format!("p{p}"), CloudState::Observed(v));
    }
    w
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let config = config();
    for scale in [1, 10] {
        let w = world(scale);
        let objects: usize = w
            .clouds
            .values()
            .map(|c| match c {
                CloudState::Observed(v) => {
                    v.servers.len() + v.images.len() + v.ports.len() + v.floating_ips.len()
                }
                CloudState::Unavailable { .. } => 0,
            })
            .sum();
        let mut times: Vec<Duration> = Vec::new();
        let mut actions = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let p = nodepool::reconcile::plan(&config, &w);
            times.push(t.elapsed());
            actions = p.actions.len();
        }
        times.sort();
        println!(
            "plan: {scale}x — {PROVIDERS} providers, {LABELS} labels, {} nodes, {objects} cloud objects: median {:.1} ms (min {:.1}, max {:.1}), {actions} actions, peak RSS so far {:.0} MB (target at 1x: < 100 ms, < 100 MB)",
            w.nodes.len(),
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            peak_rss_mb()
        );
    }
}
