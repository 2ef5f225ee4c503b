//! Daemon figures against the simulator: `git commit` → first cloud call latency, and idle CPU and RSS with 1,000 nodes in the database.
//!
//! `cargo bench --bench daemon_latency` (runs the release `nodepool` binary; ~80 s). Targets:
//! commit → first cloud call < 1 s (the poll interval is 60 s, so this is the filesystem
//! trigger at work); idle CPU < 1 % of a core over 60 s; RSS < 50 MB.

use cloudsim::admin::SeedServer;
use cloudsim::config::QuotaConfig;
use cloudsim::{SimConfig, Simulator};
use nodepool::state::{NewNode, NodeState, Store};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 1000;

fn git(repo: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=b", "-c", "user.email=b@example.com"])
        .args(args)
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

fn config(comment: usize) -> String {
    format!(
        "# revision {comment}\nlabels:\n  - name: small\n    min-ready: 0\n\
         providers:\n  - name: east\n    cloud: east\n    rate: 0\n    boot-timeout: 30\n\
         \x20   cloud-images: [{{name: cirros}}]\n    pools:\n      - name: main\n\
         \x20       max-servers: 2000\n        networks: [private]\n        auto-floating-ip: false\n        host-key-checking: false\n\
         \x20       labels:\n          - {{name: small, cloud-image: cirros, min-ram: 512}}\n"
    )
}

fn commit(repo: &Path, n: usize) {
    std::fs::write(repo.join("nodepool.yaml"), config(n)).unwrap();
    git(repo, &["commit", "-q", "-a", "-m", &format!("rev {n}")]);
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state field (3).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(SimConfig {
        boot_delay_ms: 10,
        delete_delay_ms: 10,
        host_vcpus: 100_000,
        host_ram_mb: 100_000_000,
        quota: QuotaConfig {
            instances: 10_000,
            cores: 100_000,
            ram: 100_000_000,
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(dir.path().join("clouds.yaml"), sim.clouds_yaml("east")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("nodepool.yaml"), config(0)).unwrap();
    git(&repo, &["add", "nodepool.yaml"]);
    git(&repo, &["commit", "-q", "-m", "initial"]);

    // 1,000 ready nodes, each with its server in the cloud.
    let state = dir.path().join("state.db");
    let seeded = Instant::now();
    {
        let mut store = Store::open(&state).unwrap();
        for i in 0..NODES {
            let mut new = NewNode::new("east", "main", "small");
            new.state = NodeState::Building;
            let node = store.insert_node(&new).unwrap();
            let mut metadata = indexmap::IndexMap::new();
            metadata.insert("nodepool_provider_name".to_owned(), "east".to_owned());
            metadata.insert("nodepool_pool_name".to_owned(), "main".to_owned());
            metadata.insert("nodepool_node_id".to_owned(), node.id.clone());
            metadata.insert("nodepool_node_label".to_owned(), "small".to_owned());
            let server = sim
                .seed_server(SeedServer {
                    name: format!("np{}", node.id),
                    flavor: Some("m1.small".into()),
                    image: Some("cirros".into()),
                    network: Some("private".into()),
                    metadata,
                    ..SeedServer::default()
                })
                .unwrap_or_else(|e| panic!("seeding server {i}: {e:?}"));
            store
                .write(|w| {
                    w.update_node(&node.id, |d| {
                        d.server_id = Some(server);
                        d.interface_ip = Some("10.0.0.1".into());
                    })?;
                    w.set_node_state(&node.id, NodeState::Ready).map(|_| ())
                })
                .unwrap();
        }
    }
    println!(
        "seeded {NODES} ready nodes and servers in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_nodepool"))
        .arg("daemon")
        .arg("-c")
        .arg(&repo)
        .arg("--state")
        .arg(&state)
        .arg("--clouds")
        .arg(dir.path().join("clouds.yaml"))
        .args(["--listen", "127.0.0.1:0", "--poll-interval", "60"])
        .env("NODEPOOL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the daemon");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let pid = child.id();
    let _guard = Kill(child);
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let ok = http
            .get(format!("{url}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "ready (first pass over {NODES} nodes) after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let nodes: serde_json::Value = http
        .get(format!("{url}/node-list"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ready = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "ready")
        .count();
    assert_eq!(ready, NODES, "the seeded nodes stay ready");

    // Commit → first cloud call.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::new();
    for n in 1..=5 {
        let before = sim.counters().total;
        let t0 = Instant::now();
        commit(&repo, n);
        loop {
            if sim.counters().total > before {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no cloud call");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(t0.elapsed());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    latencies.sort();
    println!(
        "git commit -> first cloud call: min {:.0} ms, median {:.0} ms, max {:.0} ms (target < 1000 ms; poll interval 60 s)",
        latencies[0].as_secs_f64() * 1e3,
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );

    // Idle: CPU over 60 s (one poll falls inside) and RSS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (c1, took) = (cpu_ticks(pid), t0.elapsed());
    let cpu = (c1 - c0) as f64 / ticks_per_s / took.as_secs_f64() * 100.0;
    println!(
        "idle CPU with {NODES} nodes: {cpu:.2} % of a core over {:.0} s (target < 1 %)",
        took.as_secs_f64()
    );
    println!(
        "RSS with {NODES} nodes: {:.1} MB (target < 50 MB)",
        rss_kib(pid) as f64 / 1024.0
    );
}
