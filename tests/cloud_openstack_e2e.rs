//! End-to-end: the OpenStack client's whole surface against the real OpenStack kit (testing/openstack).
//!
//! Needs a running kit: `testing/openstack/stack install && testing/openstack/stack up`, then
//! `eval "$(testing/openstack/stack env)"` so `OS_CLIENT_CONFIG_FILE` and `OSKIT_INFO` are set.
//! Without them every test prints why it skipped and passes.

#[path = "common/cloud_surface.rs"]
mod cloud_surface;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cloud_surface::SurfaceTarget;
use nodepool::config::credentials::{AuthMethod, CloudCredentials};
use nodepool::secret::Secret;
use serde::Deserialize;

#[derive(Deserialize)]
struct CloudsYaml {
    clouds: BTreeMap<String, CloudEntry>,
}

#[derive(Deserialize)]
struct CloudEntry {
    auth: AuthEntry,
    region_name: Option<String>,
    interface: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth_url: String,
    username: String,
    password: String,
    project_name: String,
    user_domain_name: Option<String>,
    project_domain_name: Option<String>,
}

#[derive(Deserialize)]
struct KitInfo {
    image_name: String,
    flavor_name: String,
    nohost_flavor_name: String,
    network_name: String,
    nodepool_quota: KitQuota,
    clouds: KitClouds,
}

#[derive(Deserialize)]
struct KitQuota {
    instances: u64,
    cores: u64,
    ram: u64,
}

#[derive(Deserialize)]
struct KitClouds {
    tenant: String,
}

/// The kit's tenant as a target, or `None` (with a message) when no kit is configured.
fn kit_target(test: &str) -> Option<SurfaceTarget> {
    let (Some(clouds), Some(info)) = (
        std::env::var_os("OS_CLIENT_CONFIG_FILE"),
        std::env::var_os("OSKIT_INFO"),
    ) else {
        eprintln!(
            "{test}: skipped: no OpenStack kit (run testing/openstack/stack install && testing/openstack/stack up, \
             then eval \"$(testing/openstack/stack env)\")"
        );
        return None;
    };
    let info: KitInfo =
        serde_json::from_str(&read(Path::new(&info))).expect("OSKIT_INFO is kit.json");
    let clouds: CloudsYaml =
        serde_saphyr::from_str(&read(Path::new(&clouds))).expect("clouds.yaml");
    let name = &info.clouds.tenant;
    let cloud = clouds
        .clouds
        .get(name)
        .unwrap_or_else(|| panic!("cloud {name} in clouds.yaml"));
    let creds = CloudCredentials {
        source: format!("clouds.yaml:{name}"),
        auth_url: cloud.auth.auth_url.clone(),
        auth: AuthMethod::Password {
            username: Some(cloud.auth.username.clone()),
            user_id: None,
            password: Secret::new(cloud.auth.password.clone()),
            user_domain_name: cloud.auth.user_domain_name.clone(),
            user_domain_id: None,
            project_name: Some(cloud.auth.project_name.clone()),
            project_id: None,
            project_domain_name: cloud.auth.project_domain_name.clone(),
            project_domain_id: None,
        },
        region_name: cloud.region_name.clone(),
        interface: cloud.interface.clone().unwrap_or_else(|| "public".into()),
        verify: true,
        cacert: None,
        endpoint_overrides: Vec::new(),
        image_format: None,
    };
    Some(SurfaceTarget {
        creds,
        options: cloud_surface::test_options(),
        flavor: info.flavor_name,
        unschedulable_flavor: Some(info.nohost_flavor_name),
        image: info.image_name,
        network: info.network_name,
        quota: Some((
            info.nodepool_quota.instances,
            info.nodepool_quota.cores,
            info.nodepool_quota.ram,
        )),
        server_timeout: Duration::from_secs(120),
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A real (empty) qcow2 made by `qemu-img`, as Glance inspects uploads.
fn qcow2(dir: &Path) -> PathBuf {
    let path = dir.join("surface.qcow2");
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("64M")
        .status()
        .expect("qemu-img (the kit's `stack install` installs qemu-utils)");
    assert!(status.success());
    path
}

#[tokio::test]
async fn kit_auth_and_catalog() {
    let Some(t) = kit_target("kit_auth_and_catalog") else {
        return;
    };
    cloud_surface::auth_and_catalog(&t).await;
}

#[tokio::test]
async fn kit_bad_password() {
    let Some(t) = kit_target("kit_bad_password") else {
        return;
    };
    cloud_surface::bad_password(&t).await;
}

#[tokio::test]
async fn kit_flavors_limits_zones() {
    let Some(t) = kit_target("kit_flavors_limits_zones") else {
        return;
    };
    cloud_surface::flavors_limits_zones(&t).await;
}

#[tokio::test]
async fn kit_image_lifecycle() {
    let Some(t) = kit_target("kit_image_lifecycle") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    cloud_surface::image_lifecycle(&t, &qcow2(dir.path())).await;
}

#[tokio::test]
async fn kit_server_lifecycle() {
    let Some(t) = kit_target("kit_server_lifecycle") else {
        return;
    };
    cloud_surface::server_lifecycle(&t).await;
}

#[tokio::test]
async fn kit_server_fault() {
    let Some(t) = kit_target("kit_server_fault") else {
        return;
    };
    cloud_surface::server_fault(&t).await;
}

#[tokio::test]
async fn kit_quota_exceeded() {
    let Some(t) = kit_target("kit_quota_exceeded") else {
        return;
    };
    cloud_surface::quota_exceeded(&t).await;
}

#[tokio::test]
async fn kit_floating_ips() {
    let Some(t) = kit_target("kit_floating_ips") else {
        return;
    };
    cloud_surface::floating_ips(&t).await;
}

#[tokio::test]
async fn kit_ports_down() {
    let Some(t) = kit_target("kit_ports_down") else {
        return;
    };
    cloud_surface::ports_down(&t).await;
}

#[tokio::test]
async fn kit_doctor() {
    let Some(t) = kit_target("kit_doctor") else {
        return;
    };
    cloud_surface::doctor(&t).await;
}
