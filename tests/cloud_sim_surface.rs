//! The OpenStack client's whole surface (the same checks as against the real kit) against the
//! cloud simulator, so both stay in step.

#[path = "common/sim.rs"]
mod sim;

#[path = "common/cloud_surface.rs"]
mod cloud_surface;

use cloud_surface::SurfaceTarget;
use cloudsim::{SimConfig, SimHandle, Simulator};
use std::path::{Path, PathBuf};
use std::time::Duration;

async fn target() -> (SimHandle, SurfaceTarget) {
    let config = SimConfig {
        boot_delay_ms: 200,
        delete_delay_ms: 100,
        ..SimConfig::default()
    };
    let quota = (
        u64::try_from(config.quota.instances).unwrap(),
        u64::try_from(config.quota.cores).unwrap(),
        u64::try_from(config.quota.ram).unwrap(),
    );
    let sim = Simulator::start(config).await.expect("simulator starts");
    let creds = sim::credentials(sim.auth_url());
    let t = SurfaceTarget {
        creds,
        options: cloud_surface::test_options(),
        flavor: "m1.small".into(),
        unschedulable_flavor: Some("m1.nohost".into()),
        image: "cirros".into(),
        network: "private".into(),
        quota: Some(quota),
        server_timeout: Duration::from_secs(30),
    };
    (sim, t)
}

fn qcow2(dir: &Path) -> PathBuf {
    let path = dir.join("surface.qcow2");
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("64M")
        .status()
        .expect("qemu-img (qemu-utils)");
    assert!(status.success());
    path
}

#[tokio::test]
async fn sim_auth_and_catalog() {
    let (_sim, t) = target().await;
    cloud_surface::auth_and_catalog(&t).await;
}

#[tokio::test]
async fn sim_bad_password() {
    let (_sim, t) = target().await;
    cloud_surface::bad_password(&t).await;
}

#[tokio::test]
async fn sim_flavors_limits_zones() {
    let (_sim, t) = target().await;
    cloud_surface::flavors_limits_zones(&t).await;
}

#[tokio::test]
async fn sim_image_lifecycle() {
    let (_sim, t) = target().await;
    let dir = tempfile::tempdir().unwrap();
    cloud_surface::image_lifecycle(&t, &qcow2(dir.path())).await;
}

#[tokio::test]
async fn sim_server_lifecycle() {
    let (_sim, t) = target().await;
    cloud_surface::server_lifecycle(&t).await;
}

#[tokio::test]
async fn sim_server_fault() {
    let (_sim, t) = target().await;
    cloud_surface::server_fault(&t).await;
}

#[tokio::test]
async fn sim_quota_exceeded() {
    let (_sim, t) = target().await;
    cloud_surface::quota_exceeded(&t).await;
}

#[tokio::test]
async fn sim_floating_ips() {
    let (_sim, t) = target().await;
    cloud_surface::floating_ips(&t).await;
}

#[tokio::test]
async fn sim_ports_down() {
    let (_sim, t) = target().await;
    cloud_surface::ports_down(&t).await;
}

#[tokio::test]
async fn sim_doctor() {
    let (_sim, t) = target().await;
    cloud_surface::doctor(&t).await;
}
