//! Benchmark: 1,000 nodes to READY against the zero-latency simulator, then drained, with the
//! API calls per node lifecycle. Targets (release): < 10 s to READY; ≤ 3 API calls per node
//! lifecycle (create + delete, with lists amortised: one paginated list per provider per poll).
//! Run: `cargo bench --bench launch` (NODES=200 for a quicker run).

use cloudsim::{SimConfig, Simulator};
use nodepool::ops::{self, Paths, Workspace};
use nodepool::reconcile::apply::ApplyOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(min_ready: usize, max_servers: usize) -> String {
    format!(
        "labels:\n  - name: small\n    min-ready: {min_ready}\n\
         providers:\n  - name: east\n    cloud: east\n    rate: 0\n    max-concurrency: 32\n\
         \x20   cloud-images: [{{name: cirros}}]\n    pools:\n      - name: main\n\
         \x20       max-servers: {max_servers}\n        networks: [private]\n        auto-floating-ip: false\n        host-key-checking: false\n\
         \x20       labels: [{{name: small, cloud-image: cirros, flavor-name: m1.tiny}}]\n"
    )
}

async fn apply(paths: &Paths) -> (usize, usize) {
    let mut ws = Workspace::open(paths.clone()).unwrap();
    let lease = ops::apply::lease(&mut ws.store, "bench").unwrap();
    let planned = ops::plan::plan(&mut ws, nodepool::state::now_unix())
        .await
        .unwrap();
    let n = planned.doc.plan.actions.len();
    let options = ApplyOptions {
        poll_interval: Duration::from_millis(100),
        ..ApplyOptions::default()
    };
    let (report, _) = ops::apply::apply(ws, &planned.doc, lease, options, Arc::new(|_| {}))
        .await
        .unwrap();
    (n, report.failed.len())
}

#[tokio::main]
async fn main() {
    let nodes: usize = std::env::var("NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut sim_config = SimConfig {
        boot_delay_ms: 0,
        delete_delay_ms: 0,
        ..SimConfig::default()
    };
    sim_config.quota.instances = 100_000;
    sim_config.quota.cores = 100_000;
    sim_config.quota.ram = 100_000_000;
    let sim = Simulator::start(sim_config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), sim.clouds_yaml("east")).unwrap();
    let paths = Paths {
        config: dir.path().join("nodepool.yaml"),
        secure: None,
        clouds: Some(dir.path().join("clouds.yaml")),
        state: dir.path().join("state.db"),
    };

    std::fs::write(&paths.config, config(nodes, nodes)).unwrap();
    sim.reset_counters();
    let t = Instant::now();
    let (actions, failed) = apply(&paths).await;
    let to_ready = t.elapsed();
    let up = sim.counters();
    let ready = Workspace::open(paths.clone())
        .unwrap()
        .store
        .read()
        .nodes()
        .unwrap()
        .iter()
        .filter(|n| n.state == nodepool::state::NodeState::Ready)
        .count();

    std::fs::write(&paths.config, config(0, 0)).unwrap();
    sim.reset_counters();
    let t = Instant::now();
    let (drain_actions, drain_failed) = apply(&paths).await;
    let to_gone = t.elapsed();
    let down = sim.counters();

    let creates = up.count("POST", "/compute/v2.1/servers");
    let deletes = down.count("DELETE", "/compute/v2.1/servers/{id}");
    let lists = up.count("GET", "/compute/v2.1/servers/detail")
        + down.count("GET", "/compute/v2.1/servers/detail");
    let per_node = (up.total + down.total) as f64 / nodes as f64;
    let mutations_per_node = (creates + deletes) as f64 / nodes as f64;
    println!(
        "launch: {nodes} nodes: {ready} READY in {:.2} s ({actions} actions, {failed} failed; target < 10 s); \
         drained in {:.2} s ({drain_actions} actions, {drain_failed} failed)",
        to_ready.as_secs_f64(),
        to_gone.as_secs_f64()
    );
    println!(
        "launch: API calls: {} to READY + {} to drain = {per_node:.2} per node lifecycle; \
         server creates {creates}, deletes {deletes} ({mutations_per_node:.2} mutations per node; target <= 3), \
         server list pages {lists} (amortised)",
        up.total, down.total
    );
    for c in up.calls.iter().chain(down.calls.iter()) {
        if c.count >= 5 {
            println!("  {:>6} {} {} {}", c.count, c.method, c.route, c.status);
        }
    }
    sim.shutdown().await;
}
