//! Wire-level behaviour over real TCP: dropped connections, hung responses, the admin API, the binary.

use std::time::{Duration, Instant};

use cloudsim::{SimConfig, Simulator};
use serde_json::{Value, json};

async fn token(client: &reqwest::Client, auth_url: &str) -> String {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
        {"name": "nodepool", "domain": {"id": "default"}, "password": "nodepool"}}},
        "scope": {"project": {"name": "nodepool", "domain": {"id": "default"}}}}});
    let r = client
        .post(format!("{auth_url}/auth/tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.headers()["x-subject-token"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn dropped_connection_and_hung_response() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let client = {
        install_crypto();
        reqwest::Client::builder()
    }
    .timeout(Duration::from_secs(5))
    .build()
    .unwrap();
    let tok = token(&client, &sim.auth_url()).await;
    let admin = format!("{}/_sim/faults", sim.base_url());
    let rules = json!([
        {"method": "GET", "path": "/flavors/detail$", "count": 1, "action": {"kind": "drop"}},
        {"method": "GET", "path": "/os-availability-zone$", "count": 1, "action": {"kind": "hang", "max_ms": 3000}}
    ]);
    let r = client.post(&admin).json(&rules).send().await.unwrap();
    assert_eq!(r.status(), 201);

    let compute = format!("{}/compute/v2.1", sim.base_url());
    let err = client
        .get(format!("{compute}/flavors/detail"))
        .header("x-auth-token", &tok)
        .send()
        .await
        .expect_err("the connection is closed without a response");
    assert!(!err.is_timeout(), "{err:?}");
    let ok = client
        .get(format!("{compute}/flavors/detail"))
        .header("x-auth-token", &tok)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the drop fired once");

    let start = Instant::now();
    let err = client
        .get(format!("{compute}/os-availability-zone"))
        .header("x-auth-token", &tok)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("a hung request never answers");
    assert!(err.is_timeout(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));

    let counters: Value = client
        .get(format!("{}/_sim/counters", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = counters["calls"].as_array().unwrap();
    let dropped = calls
        .iter()
        .find(|c| c["route"] == "/compute/v2.1/flavors/detail" && c["status"] == 0)
        .expect("dropped call counted with status 0");
    assert_eq!(dropped["count"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn version_discovery_roots() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    install_crypto();
    let client = reqwest::Client::new();
    let base = sim.base_url();
    let image = client.get(format!("{base}/image/")).send().await.unwrap();
    assert_eq!(image.status(), 300);
    let v: Value = image.json().await.unwrap();
    assert_eq!(
        v["versions"][0]["links"][0]["href"],
        format!("{base}/image/v2/")
    );
    let compute: Value = client
        .get(format!("{base}/compute/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(compute["versions"][1]["version"], "2.100");
    let identity: Value = client
        .get(format!("{base}/identity/v3/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(identity["version"]["status"], "stable");
    let network: Value = client
        .get(format!("{base}/network/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(network["versions"][0]["id"], "v2.0");
    sim.shutdown().await;
}

#[test]
fn binary_writes_clouds_yaml_and_prints_url() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    let config = dir.path().join("sim.yaml");
    std::fs::write(
        &config,
        "boot_delay_ms: 10\nquota: {instances: 3, cores: 8, ram: 8192}\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cloudsim"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--print-clouds-yaml")
        .arg(&clouds)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    let yaml = std::fs::read_to_string(&clouds).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        yaml.contains(&format!("auth_url: \"{url}/identity/v3\"")),
        "{yaml}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "no_such_key: 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloudsim"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"));
}

/// reqwest is built with rustls in a workspace build (nodepool needs it), which wants a
/// process-wide crypto provider before the first client.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
