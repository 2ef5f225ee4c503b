//! Benchmark: one complete observation of a cloud holding 20,000 servers, 5,000 images and
//! 5,000 DOWN ports (the simulator, in-process), through the project's own client. Prints wall
//! time, API calls and peak RSS. Targets (release): < 1 s and < 150 MB.
//! Run: `cargo bench --bench observe`.

use cloudsim::admin::{SeedImage, SeedPort, SeedServer};
use nodepool::config::clouds::CloudsFile;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    // OBSERVE_CLOUDS_YAML=<clouds.yaml with cloud `east`>: observe a cloud served by another
    // process (e.g. the `cloudsim` binary, seeded through /_sim), so that the peak RSS printed
    // is this process's alone.
    if let Ok(path) = std::env::var("OBSERVE_CLOUDS_YAML") {
        observe_rounds(Path::new(&path)).await;
        return;
    }
    let mut cfg = cloudsim::SimConfig::default();
    cfg.quota.instances = 1_000_000;
    cfg.quota.cores = 1_000_000;
    cfg.quota.ram = 1_000_000_000;
    let sim = cloudsim::Simulator::start(cfg).await.unwrap();
    let t = Instant::now();
    for i in 0..20_000 {
        sim.seed_server(SeedServer {
            name: format!("node-{i}"),
            flavor: Some("m1.tiny".into()),
            metadata: [
                ("nodepool_provider_name".to_owned(), "east".to_owned()),
                ("nodepool_node_id".to_owned(), format!("{i:010}")),
            ]
            .into_iter()
            .collect(),
            ..SeedServer::default()
        })
        .unwrap();
    }
    for i in 0..5_000 {
        sim.seed_image(SeedImage {
            name: format!("image-{i}"),
            ..SeedImage::default()
        })
        .unwrap();
        sim.seed_port(SeedPort {
            name: format!("port-{i}"),
            device_owner: "compute:nova".into(),
            device_id: format!("gone-{i}"),
            ..SeedPort::default()
        })
        .unwrap();
    }
    println!(
        "observe: seeded the simulator in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(&clouds, sim.clouds_yaml("east")).unwrap();
    observe_rounds(&clouds).await;
    sim.shutdown().await;
}

async fn observe_rounds(clouds: &Path) {
    let (config, _) = nodepool::config::load_str(
        Path::new("bench.yaml"),
        "providers:\n  - name: east\n    cloud: east\n    rate: 0\n",
        None,
        &BTreeMap::new(),
    )
    .unwrap();
    let clouds = CloudsFile::load(clouds).unwrap();
    let (clients, _) = nodepool::ops::clients_for(&config, Some(&clouds));
    let client = &clients["east"];
    client.authenticate().await.unwrap();
    let rss_before = peak_rss_mb();
    for round in 0..3 {
        let calls = client.api_calls();
        let t = Instant::now();
        let view = nodepool::reconcile::observe::observe_cloud(client)
            .await
            .unwrap();
        let wall = t.elapsed();
        println!(
            "observe: round {round}: {} servers, {} images, {} DOWN ports, {} flavors in {:.0} ms with {} API calls; peak RSS {:.0} MB (before observing {:.0} MB; target < 1 s, < 150 MB)",
            view.servers.len(),
            view.images.len(),
            view.ports.len(),
            view.flavors.len(),
            wall.as_secs_f64() * 1e3,
            client.api_calls() - calls,
            peak_rss_mb(),
            rss_before
        );
    }
}
