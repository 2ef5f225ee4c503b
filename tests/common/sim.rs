//! A simulated cloud plus a config repo and database in a temp dir, for reconcile tests.

#![allow(dead_code)]

use cloudsim::{SimConfig, SimHandle, Simulator};
use nodepool::ops::{self, Paths, Workspace};
use nodepool::reconcile::apply::{ApplyOptions, ApplyReport};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Env {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub paths: Paths,
}

/// A simulator whose servers boot in 100 ms and go in 50 ms.
pub fn fast() -> SimConfig {
    SimConfig {
        boot_delay_ms: 100,
        delete_delay_ms: 50,
        ..SimConfig::default()
    }
}

/// `c` with its private network on loopback: servers get 127.0.0.x addresses, which reach a
/// listener bound to all addresses on this host (an SSH server for host-key scans).
pub fn on_loopback(mut c: SimConfig) -> SimConfig {
    c.networks = vec![cloudsim::config::NetworkConfig {
        id: None,
        name: "private".into(),
        cidr: "127.0.0.0/24".into(),
        shared: true,
        external: false,
    }];
    c
}

/// A provider `east` (cloud `east` = the simulator) with pool `main` offering `small`
/// (cloud image cirros); `min_ready` of it; `extra` appended to the provider.
pub fn config(min_ready: u32, max_servers: u32) -> String {
    format!(
        "labels:\n  - name: small\n    min-ready: {min_ready}\n  - name: big\n\
         providers:\n  - name: east\n    cloud: east\n    rate: 0\n    boot-timeout: 30\n    launch-retries: 3\n\
         \x20   clean-floating-ips: true\n    cloud-images: [{{name: cirros}}]\n    pools:\n      - name: main\n\
         \x20       max-servers: {max_servers}\n        networks: [private]\n        auto-floating-ip: false\n        host-key-checking: false\n        node-attributes: {{executor-zone: east-zone}}\n\
         \x20       labels:\n          - {{name: small, cloud-image: cirros, min-ram: 512}}\n\
         \x20         - {{name: big, cloud-image: cirros, min-ram: 4096}}\n"
    )
}

/// The simulator's default account (user, password and project `nodepool`, region
/// `RegionOne`) at `auth_url`.
pub fn credentials(auth_url: String) -> nodepool::config::credentials::CloudCredentials {
    use nodepool::config::credentials::CloudCredentials;
    CloudCredentials {
        region_name: Some("RegionOne".into()),
        ..CloudCredentials::password(
            "cloudsim",
            auth_url,
            "nodepool",
            nodepool::secret::Secret::new("nodepool"),
            "nodepool",
        )
    }
}

/// `config` (of [`config`]'s shape) with host keys scanned (`host-key-checking` on) on `port`
/// of its servers' addresses.
pub fn scanning(config: &str, port: u16) -> String {
    let out = config
        .replace("        host-key-checking: false\n", "")
        .replace(
            "cloud-images: [{name: cirros}]",
            &format!("cloud-images: [{{name: cirros, connection-port: {port}}}]"),
        );
    assert!(
        !out.contains("host-key-checking") && out.contains("connection-port"),
        "{out}"
    );
    out
}

/// A TCP port nothing listens on (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn start(sim: SimConfig, config_text: &str) -> Env {
    let sim = Simulator::start(sim).await.expect("simulator starts");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), sim.clouds_yaml("east")).unwrap();
    std::fs::write(dir.path().join("nodepool.yaml"), config_text).unwrap();
    let paths = Paths {
        config: dir.path().join("nodepool.yaml"),
        secure: None,
        clouds: Some(dir.path().join("clouds.yaml")),
        state: dir.path().join("state.db"),
    };
    Env { sim, dir, paths }
}

impl Env {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn set_config(&self, text: &str) {
        std::fs::write(&self.paths.config, text).unwrap();
    }

    pub fn workspace(&self) -> Workspace {
        Workspace::open(self.paths.clone()).expect("workspace opens")
    }

    /// One plan + apply; returns the number of actions and the report. A plan made while a
    /// cloud could not be observed counts one action (nothing was decided there, so the
    /// world has not been seen to converge).
    pub async fn apply_once(&self) -> (usize, ApplyReport) {
        let (n, report, _) = self
            .apply_once_with(ApplyOptions {
                poll_interval: Duration::from_millis(50),
                delete_wait: Duration::from_secs(20),
                ..ApplyOptions::default()
            })
            .await;
        (n, report)
    }

    /// [`Env::apply_once`] with these options; also returns the plan applied.
    pub async fn apply_once_with(
        &self,
        options: ApplyOptions,
    ) -> (usize, ApplyReport, nodepool::reconcile::plan::Plan) {
        let mut ws = self.workspace();
        let lease = ops::apply::lease(&mut ws.store, "test").unwrap();
        let now = nodepool::state::now_unix();
        let planned = ops::plan::plan(&mut ws, now).await.unwrap();
        let unobserved = planned.world.clouds.values().any(|c| {
            matches!(
                c,
                nodepool::reconcile::world::CloudState::Unavailable { .. }
            )
        });
        let n = planned.doc.plan.actions.len();
        if n == 0 {
            return (
                usize::from(unobserved),
                ApplyReport::default(),
                planned.doc.plan,
            );
        }
        let (report, _) = ops::apply::apply(ws, &planned.doc, lease, options, Arc::new(|_| {}))
            .await
            .unwrap();
        (n, report, planned.doc.plan)
    }

    /// Apply until a plan has no actions; panics after `rounds`.
    pub async fn converge(&self, rounds: usize) -> usize {
        for i in 0..rounds {
            let (n, _) = self.apply_once().await;
            if n == 0 {
                return i;
            }
        }
        let mut ws = self.workspace();
        let planned = ops::plan::plan(&mut ws, nodepool::state::now_unix())
            .await
            .unwrap();
        panic!(
            "not converged after {rounds} rounds; still planned:\n{}",
            nodepool::reconcile::render::text(&planned.doc.plan, None)
        );
    }

    pub fn nodes(&self) -> Vec<nodepool::state::Node> {
        self.workspace().store.read().nodes().unwrap()
    }

    /// Servers in the simulator: (id, name, status, node id metadata).
    pub async fn servers(&self) -> Vec<(String, String, String, Option<String>)> {
        let ws = self.workspace();
        let c = ws.clients.get("east").unwrap();
        c.list_servers(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .map(|s| {
                let nid = s.metadata.get("nodepool_node_id").cloned();
                (s.id, s.name, s.status.as_str().to_owned(), nid)
            })
            .collect()
    }
}
