//! Benchmark: seed 20,000 servers + 5,000 images + 5,000 ports, list them all with paginated GETs, print figures.
//!
//! `cargo run --release -p cloudsim --example bench_listing [SERVERS IMAGES PORTS]`

use std::collections::HashMap;
use std::time::Instant;

use cloudsim::admin::{SeedImage, SeedPort, SeedServer};
use cloudsim::{SimConfig, Simulator};
use serde::Deserialize;
use serde_json::json;

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// What an observer reads of each item (the rest of the body is skipped, as a typed client does).
#[derive(Deserialize)]
struct Item {
    id: String,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct Link {
    href: String,
}

/// One page of any of the three listings.
#[derive(Deserialize)]
struct Page {
    #[serde(alias = "servers", alias = "images", alias = "ports", default)]
    items: Vec<Item>,
    #[serde(alias = "servers_links", alias = "ports_links", default)]
    links: Vec<Link>,
    #[serde(default)]
    next: Option<String>,
}

/// Follows `next` links until the last page; returns (items, requests).
async fn list_all(
    client: &reqwest::Client,
    token: &str,
    first: String,
    next: impl Fn(&Page) -> Option<String>,
) -> (usize, usize) {
    let (mut items, mut requests) = (0, 0);
    let mut url = Some(first);
    while let Some(u) = url {
        let resp = client
            .get(&u)
            .header("x-auth-token", token)
            .header("openstack-api-version", "compute 2.79")
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_success(), "{u}: {}", resp.status());
        let page: Page = resp.json().await.expect("json");
        requests += 1;
        items += page.items.iter().filter(|i| !i.id.is_empty()).count();
        url = next(&page);
    }
    (items, requests)
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n_servers, n_images, n_ports) = (
        args.first().copied().unwrap_or(20_000),
        args.get(1).copied().unwrap_or(5_000),
        args.get(2).copied().unwrap_or(5_000),
    );
    let mut config = SimConfig::default();
    config.quota.instances = -1;
    let sim = Simulator::start(config).await.expect("start");

    let t = Instant::now();
    for i in 0..n_servers {
        let mut metadata = indexmap::IndexMap::new();
        metadata.insert("nodepool_node_id".to_string(), format!("{i:010}"));
        metadata.insert("nodepool_provider_name".to_string(), "bench".to_string());
        sim.seed_server(SeedServer {
            name: format!("np-{i:010}"),
            metadata,
            ..Default::default()
        })
        .expect("seed server");
    }
    for i in 0..n_images {
        let mut properties = serde_json::Map::new();
        properties.insert("nodepool_build_id".into(), json!(format!("{i:04}")));
        sim.seed_image(SeedImage {
            name: format!("np-img-{i:06}"),
            properties,
            ..Default::default()
        })
        .expect("seed image");
    }
    for i in 0..n_ports {
        sim.seed_port(SeedPort {
            name: format!("port-{i}"),
            device_owner: "compute:nova".into(),
            ..Default::default()
        })
        .expect("seed port");
    }
    let seeded = t.elapsed();
    let rss_seeded = vm_hwm_kib().unwrap_or(0);

    install_crypto();
    let client = reqwest::Client::new();
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
        {"name": "nodepool", "domain": {"id": "default"}, "password": "nodepool"}}},
        "scope": {"project": {"name": "nodepool", "domain": {"id": "default"}}}}});
    let resp = client
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&body)
        .send()
        .await
        .expect("auth");
    let token = resp.headers()["x-subject-token"]
        .to_str()
        .expect("token")
        .to_string();
    sim.reset_counters();

    let base = sim.base_url().to_string();
    let t = Instant::now();
    let (servers, server_reqs) = list_all(
        &client,
        &token,
        format!("{base}/compute/v2.1/servers/detail?limit=1000"),
        |p| p.links.first().map(|l| l.href.clone()),
    )
    .await;
    let t_servers = t.elapsed();
    let t2 = Instant::now();
    let (images, image_reqs) = list_all(
        &client,
        &token,
        format!("{base}/image/v2/images?limit=1000"),
        |p| p.next.as_ref().map(|n| format!("{base}/image{n}")),
    )
    .await;
    let t_images = t2.elapsed();
    let t3 = Instant::now();
    let (ports, port_reqs) = list_all(
        &client,
        &token,
        format!("{base}/network/v2.0/ports?limit=1000"),
        |p| p.links.first().map(|l| l.href.clone()),
    )
    .await;
    let t_ports = t3.elapsed();
    let wall = t.elapsed();
    let calls = sim.counters().total;

    // The default image (cirros) is listed too.
    assert_eq!(servers, n_servers);
    assert_eq!(images, n_images + 1);
    assert_eq!(ports, n_ports);
    println!("cloudsim listing benchmark");
    println!(
        "  seeded        {n_servers} servers, {n_images} images, {n_ports} ports in {:.2?}",
        seeded
    );
    println!(
        "  servers       {servers:>6} in {server_reqs:>3} requests  {:>8.1?}",
        t_servers
    );
    println!(
        "  images        {images:>6} in {image_reqs:>3} requests  {:>8.1?}",
        t_images
    );
    println!(
        "  ports         {ports:>6} in {port_reqs:>3} requests  {:>8.1?}",
        t_ports
    );
    println!(
        "  wall time     {:.1?} for {} requests (server counted {calls} API calls)",
        wall,
        server_reqs + image_reqs + port_reqs
    );
    println!(
        "  peak RSS      {:.1} MiB after seeding, {:.1} MiB at end (VmHWM, simulator + client in one process)",
        rss_seeded as f64 / 1024.0,
        vm_hwm_kib().unwrap_or(0) as f64 / 1024.0
    );
    sim.shutdown().await;
}

/// reqwest is built with rustls in a workspace build (nodepool needs it), which wants a
/// process-wide crypto provider before the first client.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
