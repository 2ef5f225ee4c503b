//! Crash safety: `nodepool apply` killed with SIGKILL at random points, then applied again,
//! leaves no leaked server, no duplicate node, and a consistent journal; with
//! `auto-floating-ip`, no floating IP is left behind or given twice.
//!
//! 20 kill points here (seeded, the seed is printed); `testing/kill-soak.sh` runs more.

#[path = "common/sim.rs"]
mod sim;

use cloudsim::SimConfig;
use nodepool::state::{JournalStatus, NodeState};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

fn spawn_apply(env: &sim::Env) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_nodepool"))
        .args(["apply", "--auto-approve", "--poll-interval", "0.05", "-c"])
        .arg(&env.paths.config)
        .arg("--state")
        .arg(&env.paths.state)
        .arg("--clouds")
        .arg(env.paths.clouds.as_ref().unwrap())
        .env_remove("NODEPOOL_CONFIG")
        .env_remove("NODEPOOL_STATE")
        .env_remove("OS_CLIENT_CONFIG_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nodepool apply")
}

async fn check_invariants(env: &sim::Env, expect_nodes: usize, round: usize) {
    let nodes = env.nodes();
    let servers = env.servers().await;
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(nodes.len(), expect_nodes, "round {round}: nodes {nodes:#?}");
    assert!(
        nodes.iter().all(|n| n.state == NodeState::Ready),
        "round {round}: {nodes:#?}"
    );
    // No leaked server: every server belongs to a node record, and no node has two.
    assert_eq!(
        servers.len(),
        nodes.len(),
        "round {round}: servers {servers:#?} nodes {nodes:#?}"
    );
    for s in &servers {
        let nid = s.3.as_deref().expect("our servers carry their node id");
        assert!(ids.contains(nid), "round {round}: server {s:?} has no node");
    }
    let node_ids_of_servers: BTreeSet<&str> =
        servers.iter().filter_map(|s| s.3.as_deref()).collect();
    assert_eq!(
        node_ids_of_servers.len(),
        servers.len(),
        "round {round}: two servers for one node"
    );
    // The journal has nothing left open.
    let ws = env.workspace();
    let open = ws.store.read().unfinished_journal().unwrap();
    assert!(
        open.is_empty(),
        "round {round}: open journal entries {open:#?}"
    );
    let _ = JournalStatus::Done;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_random_points_then_apply_again() {
    let sim_config = SimConfig {
        boot_delay_ms: 300,
        delete_delay_ms: 100,
        ..SimConfig::default()
    };
    let env = sim::start(sim_config, &sim::config(4, 4)).await;
    let seed = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_124_u64);
    let rounds: usize = std::env::var("KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("kill test: seed {seed}, {rounds} rounds");
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..rounds {
        // Alternate growing to 4 nodes and shrinking to 1, so kills hit launches and deletes.
        let (min_ready, max_servers) = if round % 2 == 0 { (4, 4) } else { (1, 1) };
        env.set_config(&sim::config(min_ready, max_servers));
        let mut child = spawn_apply(&env);
        let delay = rng.u64(0..700);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let _ = child.kill();
        let _ = child.wait();
        // The lease of the killed process expires; take over after it.
        wait_for_lease(&env).await;
        env.converge(8).await;
        check_invariants(&env, min_ready as usize, round).await;
    }
}

/// A killed apply leaves its lease behind; the next writer on this host sees that the
/// holder process is gone and takes over at once.
async fn wait_for_lease(env: &sim::Env) {
    let mut ws = env.workspace();
    let l = nodepool::ops::apply::lease(&mut ws.store, "kill-test")
        .expect("the dead holder's lease is broken");
    l.release().unwrap();
}

/// The same with `auto-floating-ip` (and `clean-floating-ips` off, so nothing hides a leak):
/// every floating IP is attached to a node's server, one per node, and it is the node's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_with_floating_ips() {
    let sim_config = SimConfig {
        boot_delay_ms: 300,
        delete_delay_ms: 100,
        ..SimConfig::default()
    };
    let config = |min_ready: u32, max_servers: u32| {
        sim::config(min_ready, max_servers)
            .replace("auto-floating-ip: false", "auto-floating-ip: true")
            .replace("    clean-floating-ips: true\n", "")
    };
    let env = sim::start(sim_config, &config(3, 3)).await;
    let seed = 20_261_125_u64;
    println!("kill test with floating IPs: seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..10 {
        let (min_ready, max_servers) = if round % 2 == 0 { (3, 3) } else { (1, 1) };
        env.set_config(&config(min_ready, max_servers));
        let mut child = spawn_apply(&env);
        tokio::time::sleep(Duration::from_millis(rng.u64(0..900))).await;
        let _ = child.kill();
        let _ = child.wait();
        wait_for_lease(&env).await;
        env.converge(8).await;
        check_invariants(&env, min_ready as usize, round).await;
        let fips = env.workspace().clients["east"]
            .list_floating_ips(&Default::default())
            .await
            .unwrap();
        let nodes = env.nodes();
        assert_eq!(
            fips.len(),
            nodes.len(),
            "round {round}: {fips:#?} {nodes:#?}"
        );
        for f in &fips {
            assert!(f.port_id.is_some(), "round {round}: unattached {f:?}");
            assert!(
                nodes
                    .iter()
                    .any(|n| n.details.public_ipv4.as_deref()
                        == Some(f.floating_ip_address.as_str())),
                "round {round}: {f:?} is no node's address: {nodes:#?}"
            );
        }
    }
}
