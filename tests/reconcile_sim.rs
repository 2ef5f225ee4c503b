//! Plan and apply against the cloud simulator (real HTTP, real wire formats).

#[path = "common/sim.rs"]
mod sim;

use cloudsim::{FaultAction, FaultRule};
use nodepool::state::{NewRequest, NodeState, RequestState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_converges_and_second_plan_is_empty() {
    let env = sim::start(sim::fast(), &sim::config(3, 10)).await;
    let (n, report) = env.apply_once().await;
    assert_eq!(n, 3);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let nodes = env.nodes();
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes
            .iter()
            .all(|n| n.state == NodeState::Ready && n.details.interface_ip.is_some())
    );
    let (n, _) = env.apply_once().await;
    assert_eq!(n, 0, "a second plan has no changes");
    // Every server carries our metadata naming its node.
    let servers = env.servers().await;
    assert_eq!(servers.len(), 3);
    for n in &nodes {
        assert!(
            servers
                .iter()
                .any(|s| s.3.as_deref() == Some(n.id.as_str()) && s.2 == "ACTIVE")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fulfilled_and_released_nodes_replaced() {
    let env = sim::start(sim::fast(), &sim::config(1, 10)).await;
    env.converge(3).await;
    let mut ws = env.workspace();
    let req = nodepool::ops::nodes::request(
        &mut ws,
        &NewRequest {
            labels: vec!["small".into(), "big".into()],
            requestor: "zuul".into(),
            priority: 100,
            tenant: None,
        },
    )
    .unwrap();
    drop(ws);
    env.converge(4).await;
    let r = env
        .workspace()
        .store
        .read()
        .request(&req.id)
        .unwrap()
        .unwrap();
    assert_eq!(r.state, RequestState::Fulfilled);
    assert_eq!(r.nodes.len(), 2);
    // min-ready is kept apart from the request's nodes.
    let unallocated: Vec<_> = env
        .nodes()
        .into_iter()
        .filter(|n| n.details.allocated_request.is_none() && n.state == NodeState::Ready)
        .collect();
    assert_eq!(unallocated.len(), 1);
    // Release both: they are deleted (servers gone) and min-ready still holds.
    let mut ws = env.workspace();
    for id in &r.nodes {
        nodepool::ops::nodes::release(&mut ws, id).unwrap();
    }
    drop(ws);
    env.converge(4).await;
    let nodes = env.nodes();
    assert!(
        nodes.iter().all(|n| !r.nodes.contains(&n.id)),
        "released nodes are gone"
    );
    let servers = env.servers().await;
    assert_eq!(
        servers.len(),
        nodes.len(),
        "no server without a node: {servers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_deleting_records_do_not_block_spawns() {
    let env = sim::start(sim::fast(), &sim::config(2, 2)).await;
    env.converge(3).await;
    // Servers vanish behind our back (the seed's "kept in delete state while already deleted").
    let ws = env.workspace();
    let client = ws.clients.get("east").unwrap().clone();
    drop(ws);
    let mut store = env.workspace().store;
    for n in env.nodes() {
        store.set_node_state(&n.id, NodeState::Deleting).unwrap();
        client
            .delete_server(n.details.server_id.as_deref().unwrap())
            .await
            .unwrap();
    }
    drop(store);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    env.converge(4).await;
    let nodes = env.nodes();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n.state == NodeState::Ready));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaks_are_cleaned_after_two_sightings() {
    let env = sim::start(sim::fast(), &sim::config(0, 10)).await;
    let leaked = env
        .sim
        .seed_server(cloudsim::admin::SeedServer {
            name: "small-east-0000000099".into(),
            metadata: [
                ("nodepool_provider_name".to_owned(), "east".to_owned()),
                ("nodepool_node_id".to_owned(), "0000000099".to_owned()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        })
        .unwrap();
    let fip = env
        .sim
        .seed_floating_ip(cloudsim::admin::SeedFloatingIp::default())
        .unwrap();
    // First pass: the floating IP goes at once (clean-floating-ips); the server is only sighted.
    let (n, report) = env.apply_once().await;
    assert_eq!(n, 1, "{report:?}");
    assert!(env.servers().await.iter().any(|s| s.0 == leaked));
    // Second pass: seen twice → deleted.
    let (n, report) = env.apply_once().await;
    assert_eq!(n, 1);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!env.servers().await.iter().any(|s| s.0 == leaked));
    let _ = fip;
    assert_eq!(env.converge(2).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_through_injected_faults() {
    let env = sim::start(sim::fast(), &sim::config(4, 10)).await;
    for rule in [
        FaultRule {
            method: None,
            path: "/compute/".into(),
            probability: 0.3,
            count: None,
            action: FaultAction::Error {
                status: 503,
                message: None,
            },
        },
        FaultRule {
            method: Some("GET".into()),
            path: "/servers/detail".into(),
            probability: 0.2,
            count: Some(3),
            action: FaultAction::RateLimit { retry_after: 1 },
        },
        FaultRule {
            method: Some("POST".into()),
            path: "/servers$".into(),
            probability: 1.0,
            count: Some(2),
            action: FaultAction::QuotaExceeded {
                resource: "instances".into(),
            },
        },
        // A hung list (the connection dies after 3 s without an answer): retried, observed.
        FaultRule {
            method: Some("GET".into()),
            path: "/v2.0/ports".into(),
            probability: 1.0,
            count: Some(1),
            action: FaultAction::Hang {
                max_ms: Some(3_000),
            },
        },
        FaultRule {
            method: Some("POST".into()),
            path: "/servers$".into(),
            probability: 1.0,
            count: Some(1),
            action: FaultAction::BootError {
                message: Some("No valid host was found.".into()),
            },
        },
    ] {
        env.sim.add_fault(rule).unwrap();
    }
    env.converge(12).await;
    env.sim.clear_faults();
    let nodes = env.nodes();
    assert_eq!(nodes.len(), 4, "{nodes:#?}");
    assert!(nodes.iter().all(|n| n.state == NodeState::Ready));
    let servers = env.servers().await;
    assert_eq!(
        servers.len(),
        4,
        "no leaked or duplicate server: {servers:?}"
    );
}
