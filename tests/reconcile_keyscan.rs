//! `host-key-checking` through the reconciler: servers of the simulator get loopback addresses
//! where a real SSH server answers, so a node is ready only with the host keys that server
//! proves it holds; with nothing answering, each attempt ends after boot-timeout and the
//! node is relaunched and finally given up, its servers deleted.

#[path = "common/sim.rs"]
mod sim;
#[path = "common/ssh.rs"]
mod ssh;

use nodepool::state::NodeState;

fn config(min_ready: u32, port: u16, boot_timeout: u32, retries: u32) -> String {
    format!(
        "labels:\n  - name: small\n    min-ready: {min_ready}\n\
         providers:\n  - name: east\n    cloud: east\n    rate: 0\n    boot-timeout: {boot_timeout}\n\
         \x20   launch-retries: {retries}\n\
         \x20   cloud-images:\n      - name: cirros\n        connection-port: {port}\n\
         \x20   pools:\n      - name: main\n        max-servers: 4\n        networks: [private]\n\
         \x20       auto-floating-ip: false\n\
         \x20       labels:\n          - {{name: small, cloud-image: cirros, min-ram: 512}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_ready_with_the_host_keys_their_ssh_server_holds() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ssh::host_keys(dir.path(), &["ed25519", "rsa"]);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    ssh::serve(listener, &keys);

    let env = sim::start(sim::on_loopback(sim::fast()), &config(2, port, 30, 3)).await;
    let mut ws = env.workspace();
    let planned = nodepool::ops::plan::plan(&mut ws, nodepool::state::now_unix())
        .await
        .unwrap();
    assert_eq!(planned.doc.plan.actions.len(), 2, "two launches");
    drop(ws);
    env.converge(3).await;
    let nodes = env.nodes();
    assert_eq!(nodes.len(), 2);
    for n in &nodes {
        assert_eq!(n.state, NodeState::Ready, "{n:?}");
        assert_eq!(n.details.host_keys, keys.public, "{n:?}");
        assert!(
            n.details
                .interface_ip
                .as_deref()
                .is_some_and(|ip| ip.starts_with("127.0.0.")),
            "{n:?}"
        );
        assert_eq!(n.details.connection_port, Some(port));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ssh_each_attempt_times_out_and_the_node_is_given_up() {
    // A port where nothing listens.
    let port = sim::free_port();
    let env = sim::start(sim::on_loopback(sim::fast()), &config(1, port, 1, 2)).await;
    let (_, report) = env.apply_once().await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let why = &report.failed[0].1;
    assert!(
        why.contains("no SSH host keys from 127.0.0.") && why.contains("boot-timeout 1 s"),
        "{why}"
    );
    // Two attempts were made within that apply; the node has failed and its last server is
    // being deleted; nothing of it is ever ready.
    let nodes = env.nodes();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0].details.launch_attempts, 2, "{nodes:?}");
    assert!(
        matches!(nodes[0].state, NodeState::Failed | NodeState::Deleting),
        "{nodes:?}"
    );
    assert!(nodes[0].details.host_keys.is_empty());
}
