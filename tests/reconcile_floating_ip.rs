//! `auto-floating-ip` (upstream's default) against the simulator: a server on a private
//! network gets a floating IP from the external network before its node is ready, the node is
//! reached on it, and the floating IP is deleted with the node.

#[path = "common/sim.rs"]
mod sim;

use nodepool::ops;
use nodepool::state::NodeState;

fn config(min_ready: u32) -> String {
    sim::config(min_ready, 4).replace("auto-floating-ip: false", "auto-floating-ip: true")
}

async fn floating_ips(env: &sim::Env) -> Vec<nodepool::cloud::FloatingIp> {
    env.workspace().clients["east"]
        .list_floating_ips(&Default::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_server_gets_a_floating_ip_which_goes_with_its_node() {
    let env = sim::start(sim::fast(), &config(1)).await;
    env.converge(3).await;
    let nodes = env.nodes();
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0];
    assert_eq!(n.state, NodeState::Ready);
    let fips = floating_ips(&env).await;
    assert_eq!(fips.len(), 1, "{fips:#?}");
    let fip = &fips[0];
    assert!(fip.port_id.is_some(), "attached: {fip:?}");
    assert_eq!(
        n.details.public_ipv4.as_deref(),
        Some(fip.floating_ip_address.as_str())
    );
    assert_eq!(
        n.details.interface_ip, n.details.public_ipv4,
        "reached on the floating IP"
    );
    assert!(
        n.details
            .private_ipv4
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.0.")),
        "{n:?}"
    );
    assert!(fip.floating_ip_address.starts_with("172.24."), "{fip:?}");

    // A converged world stays so: no second floating IP on the next passes.
    assert_eq!(env.converge(2).await, 0);
    assert_eq!(floating_ips(&env).await.len(), 1);

    // The node goes (and is not replaced): its floating IP goes with it.
    env.set_config(&config(0));
    let mut ws = env.workspace();
    ops::nodes::delete(&mut ws, &n.id).unwrap();
    drop(ws);
    let mut ws = env.workspace();
    let planned = ops::plan::plan(&mut ws, nodepool::state::now_unix())
        .await
        .unwrap();
    assert!(
        planned.doc.plan.actions[0]
            .reason
            .contains(&format!("with its floating IP {}", fip.floating_ip_address)),
        "{:?}",
        planned.doc.plan.actions
    );
    drop(ws);
    env.converge(3).await;
    assert!(env.nodes().is_empty());
    assert!(env.servers().await.is_empty());
    assert!(floating_ips(&env).await.is_empty(), "deleted with the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_without_an_external_network_needs_no_floating_ip() {
    let mut sim_config = sim::fast();
    sim_config.networks.retain(|n| !n.external);
    let env = sim::start(sim_config, &config(1)).await;
    env.converge(3).await;
    let nodes = env.nodes();
    assert_eq!(nodes[0].state, NodeState::Ready);
    assert_eq!(nodes[0].details.public_ipv4, None);
    assert_eq!(nodes[0].details.interface_ip, nodes[0].details.private_ipv4);
    assert!(floating_ips(&env).await.is_empty());
}

/// A server given a floating IP whose SSH never answers is deleted for another attempt (and
/// finally given up): each of its floating IPs goes with it, even with clean-floating-ips off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_gives_back_its_floating_ip() {
    let mut cloud = sim::fast();
    // Floating IPs from a loopback range (nothing listens on the SSH port there); the
    // servers' own addresses stay private (10.0/16), so each attempt needs one.
    for n in cloud.networks.iter_mut().filter(|n| n.external) {
        n.cidr = "127.0.1.0/24".into();
    }
    let config = sim::scanning(&config(1), sim::free_port())
        .replace("    clean-floating-ips: true\n", "")
        .replace("boot-timeout: 30", "boot-timeout: 1")
        .replace("launch-retries: 3", "launch-retries: 2");
    assert!(!config.contains("clean-floating-ips") && config.contains("auto-floating-ip: true"));
    let env = sim::start(cloud, &config).await;
    let (_, report) = env.apply_once().await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0]
            .1
            .contains("no SSH host keys from 127.0.1."),
        "scanned on the floating IP: {report:?}"
    );
    // Two attempts, each with its own floating IP; both given back.
    let nodes = env.nodes();
    assert_eq!(nodes[0].details.launch_attempts, 2, "{nodes:?}");
    let left = floating_ips(&env).await;
    assert!(left.is_empty(), "no floating IP left behind: {left:#?}");
}
