//! End to end against the real OpenStack kit (Keystone, Glance, Nova with the fake driver):
//! min-ready 2 → two ACTIVE servers with our metadata; raise to 3 → one more; a request and its
//! release → the node is deleted and replaced; `auto-floating-ip` → a floating IP from the
//! external network, shown by Nova, deleted with the node; an upstream upload adopted, booted
//! from, and deleted when no longer listed.
//!
//! Needs `eval "$(testing/openstack/stack env)"` (OS_CLIENT_CONFIG_FILE, OSKIT_INFO); without it
//! the test says why it skipped and passes.

use nodepool::ops::{self, Paths, Workspace};
use nodepool::reconcile::apply::ApplyOptions;
use nodepool::state::{NewRequest, NodeState, RequestState};
use std::sync::Arc;
use std::time::Duration;

#[path = "common/upstream.rs"]
mod upstream;

fn config(min_ready: u32) -> String {
    format!(
        "labels:\n  - name: kit-small\n    min-ready: {min_ready}\n\
         providers:\n  - name: kit\n    cloud: nodepool\n    rate: 0\n    boot-timeout: 120\n\
         \x20   cloud-images: [{{name: cirros, image-name: cirros-fake}}]\n\
         \x20   pools:\n      - name: main\n        max-servers: 4\n        networks: [private]\n\
         \x20       auto-floating-ip: false\n        host-key-checking: false\n        labels:\n\
         \x20         - {{name: kit-small, cloud-image: cirros, flavor-name: m1.small}}\n"
    )
}

/// A temp dir with the paths of a workspace on the kit's clouds.yaml, or `None` (the test
/// then says why it skipped and passes) when no kit is up.
fn kit_paths(test: &str) -> Option<(tempfile::TempDir, Paths)> {
    let (Some(clouds), Some(_)) = (
        std::env::var_os("OS_CLIENT_CONFIG_FILE"),
        std::env::var_os("OSKIT_INFO"),
    ) else {
        eprintln!("{test}: skipped: no OpenStack kit (see testing/openstack/NODEPOOL.md)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths {
        config: dir.path().join("nodepool.yaml"),
        secure: None,
        clouds: Some(clouds.into()),
        state: dir.path().join("state.db"),
    };
    Some((dir, paths))
}

async fn converge(paths: &Paths) {
    for _ in 0..6 {
        let mut ws = Workspace::open(paths.clone()).unwrap();
        let lease = ops::apply::lease(&mut ws.store, "kit-e2e").unwrap();
        let planned = ops::plan::plan(&mut ws, nodepool::state::now_unix())
            .await
            .unwrap();
        if planned.doc.plan.is_empty() {
            return;
        }
        let options = ApplyOptions {
            poll_interval: Duration::from_millis(500),
            ..ApplyOptions::default()
        };
        let (report, _) = ops::apply::apply(ws, &planned.doc, lease, options, Arc::new(|_| {}))
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
    panic!("not converged against the kit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_min_ready_request_release() {
    let Some((_dir, paths)) = kit_paths("kit_min_ready_request_release") else {
        return;
    };
    std::fs::write(&paths.config, config(2)).unwrap();
    converge(&paths).await;
    let ws = Workspace::open(paths.clone()).unwrap();
    let nodes = ws.store.read().nodes().unwrap();
    assert_eq!(nodes.len(), 2);
    let client = ws.clients["kit"].clone();
    let servers = client.list_servers(&Default::default()).await.unwrap();
    for n in &nodes {
        let s = servers
            .iter()
            .find(|s| Some(&s.id) == n.details.server_id.as_ref())
            .expect("the node's server exists in Nova");
        assert_eq!(s.status.as_str(), "ACTIVE");
        assert_eq!(s.metadata.get("nodepool_node_id"), Some(&n.id));
        assert_eq!(
            s.metadata.get("nodepool_provider_name").map(String::as_str),
            Some("kit")
        );
    }
    drop(ws);

    std::fs::write(&paths.config, config(3)).unwrap();
    converge(&paths).await;
    assert_eq!(
        Workspace::open(paths.clone())
            .unwrap()
            .store
            .read()
            .nodes()
            .unwrap()
            .len(),
        3
    );

    let mut ws = Workspace::open(paths.clone()).unwrap();
    let req = ops::nodes::request(
        &mut ws,
        &NewRequest {
            labels: vec!["kit-small".into()],
            requestor: "e2e".into(),
            priority: 100,
            tenant: None,
        },
    )
    .unwrap();
    drop(ws);
    converge(&paths).await;
    let mut ws = Workspace::open(paths.clone()).unwrap();
    let r = ws.store.read().request(&req.id).unwrap().unwrap();
    assert_eq!(r.state, RequestState::Fulfilled);
    let used = r.nodes[0].clone();
    let used_server = ws
        .store
        .read()
        .node(&used)
        .unwrap()
        .unwrap()
        .details
        .server_id
        .unwrap();
    ops::nodes::release(&mut ws, &used).unwrap();
    drop(ws);
    converge(&paths).await;
    let ws = Workspace::open(paths.clone()).unwrap();
    let nodes = ws.store.read().nodes().unwrap();
    assert!(
        nodes.iter().all(|n| n.id != used),
        "the released node is gone"
    );
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n.state == NodeState::Ready && n.details.allocated_request.is_none())
            .count(),
        3
    );
    let servers = ws.clients["kit"]
        .list_servers(&Default::default())
        .await
        .unwrap();
    assert!(
        servers.iter().all(|s| s.id != used_server),
        "its server was deleted"
    );
    drop(ws);

    // Clean up the shared cloud.
    std::fs::write(
        &paths.config,
        config(0).replace("max-servers: 4", "max-servers: 0"),
    )
    .unwrap();
    converge(&paths).await;
    assert!(
        Workspace::open(paths)
            .unwrap()
            .store
            .read()
            .nodes()
            .unwrap()
            .is_empty()
    );
}

/// `auto-floating-ip` against the kit's Nova and Neutron: the server (on the private network)
/// gets a floating IP from the external network before its node is ready, Nova reports it as
/// the server's floating address, and it is deleted with the node. Its own provider name, so
/// the test above never takes its server for a leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_auto_floating_ip() {
    let Some((_dir, paths)) = kit_paths("kit_auto_floating_ip") else {
        return;
    };
    let config = |min_ready: u32, max_servers: u32| {
        config(min_ready)
            .replace("name: kit\n", "name: kit-fip\n")
            .replace("auto-floating-ip: false", "auto-floating-ip: true")
            .replace("max-servers: 4", &format!("max-servers: {max_servers}"))
    };
    std::fs::write(&paths.config, config(1, 1)).unwrap();
    converge(&paths).await;
    let ws = Workspace::open(paths.clone()).unwrap();
    let nodes = ws.store.read().nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0];
    assert_eq!(n.state, NodeState::Ready);
    let client = ws.clients["kit-fip"].clone();
    let address = n.details.public_ipv4.clone().expect("a floating IP");
    assert_eq!(n.details.interface_ip.as_deref(), Some(address.as_str()));
    let fips = client
        .list_floating_ips(&nodepool::cloud::FloatingIpQuery {
            floating_ip_address: Some(address.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(fips.len(), 1, "{fips:#?}");
    assert!(fips[0].port_id.is_some(), "attached: {:?}", fips[0]);
    // Real Nova learns the address from Neutron (network-changed event, then its cache).
    let server_id = n.details.server_id.clone().unwrap();
    let mut seen = None;
    for _ in 0..40 {
        let s = client.get_server(&server_id).await.unwrap();
        seen = s.public_ipv4.map(|a| a.to_string());
        if seen.as_deref() == Some(address.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        seen.as_deref(),
        Some(address.as_str()),
        "Nova shows the floating IP"
    );
    drop(ws);

    std::fs::write(&paths.config, config(0, 0)).unwrap();
    converge(&paths).await;
    assert!(
        client.get_server(&server_id).await.is_err(),
        "server deleted"
    );
    let left = client
        .list_floating_ips(&nodepool::cloud::FloatingIpQuery {
            floating_ip_address: Some(address.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "the floating IP went with the node: {left:#?}"
    );
}

/// An image upstream Nodepool uploaded to real Glance (its name format and ownership
/// properties) is adopted, a label boots from it in real Nova, and once the provider no longer
/// lists the diskimage the adopted upload is deleted from Glance like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_adopt_upstream_image() {
    let Some((dir, paths)) = kit_paths("kit_adopt_upstream_image") else {
        return;
    };
    let config = |min_ready: u32, listed: bool| {
        format!(
            "labels:\n  - name: kit-adopted\n    min-ready: {min_ready}\n\
             diskimages:\n  - name: adopted\n    pause: true\n\
             providers:\n  - name: kit-adopt\n    cloud: nodepool\n    rate: 0\n    boot-timeout: 120\n\
             \x20   diskimages: [{}]\n\
             \x20   pools:\n      - name: main\n        max-servers: 1\n        networks: [private]\n\
             \x20       auto-floating-ip: false\n        host-key-checking: false\n        labels: [{}]\n",
            if listed { "{name: adopted}" } else { "" },
            if listed {
                "{name: kit-adopted, diskimage: adopted, flavor-name: m1.small}"
            } else {
                ""
            }
        )
    };
    std::fs::write(&paths.config, config(1, true)).unwrap();
    let mut ws = Workspace::open(paths.clone()).unwrap();
    let client = ws.clients["kit-adopt"].clone();
    let image = client
        .create_image(&upstream::image(
            "adopted-1700000000",
            "kit-adopt",
            "0000000005",
            "0000000001",
        ))
        .await
        .unwrap();
    let data = dir.path().join("upstream.raw");
    std::fs::write(&data, vec![0u8; 1 << 20]).unwrap();
    client.upload_image(&image.id, &data, None).await.unwrap();

    let out = ops::images::adopt(&mut ws, "kit-adopt", None, false)
        .await
        .unwrap();
    assert_eq!(out.adopted.len(), 1, "{out:#?}");
    assert_eq!(out.adopted[0].external_id, image.id);
    assert_eq!(out.adopted[0].format.as_deref(), Some("raw"));
    drop(ws);

    converge(&paths).await;
    let ws = Workspace::open(paths.clone()).unwrap();
    let nodes = ws.store.read().nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].state, NodeState::Ready);
    assert_eq!(
        nodes[0].details.image_id.as_deref(),
        Some(image.id.as_str())
    );
    let server = client
        .get_server(nodes[0].details.server_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(server.status.as_str(), "ACTIVE");
    drop(ws);

    std::fs::write(&paths.config, config(0, false)).unwrap();
    converge(&paths).await;
    assert!(
        client.get_image(&image.id).await.is_err(),
        "the adopted upload is deleted once the provider no longer lists its diskimage"
    );
}
