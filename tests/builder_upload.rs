//! End-to-end: images built by tools/nodepool-dib, uploaded by `nodepool::builder::upload` to the real OpenStack kit (Glance), booted in real Nova.
//!
//! Needs a running kit: `testing/openstack/stack install && testing/openstack/stack up`, then
//! `eval "$(testing/openstack/stack env)"` so `OS_CLIENT_CONFIG_FILE` and `OSKIT_INFO` are set.
//! Without them every test prints why it skipped and passes.

#[path = "common/cloud_surface.rs"]
mod cloud_surface;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodepool::builder::dib::{BuildDirs, BuildOutput, BuildRequest, build};
use nodepool::builder::upload::{
    Cleanup, FailureReason, PROP_MD5, PROP_SHA256, UploadRequest, upload,
};
use nodepool::cloud::{
    CloudError, CreateServer, ImageStatus, OpenStackClient, ServerNetworks, ServerStatus,
    UploadProgress,
};
use nodepool::config::Config;
use nodepool::config::clouds::{CloudsFile, credentials_for};
use serde::Deserialize;

#[derive(Deserialize)]
struct KitInfo {
    flavor_name: String,
    network_name: String,
    clouds: KitClouds,
}

#[derive(Deserialize)]
struct KitClouds {
    tenant: String,
}

/// The kit as a provider of a config built around `image` (so the config's own types are used
/// to make the client and the upload request), or `None` when no kit is configured.
struct Kit {
    config: Config,
    client: OpenStackClient,
    info: KitInfo,
}

fn kit(test: &str, image: &str, hook: Option<&Path>) -> Option<Kit> {
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
    let info: KitInfo = serde_json::from_str(&std::fs::read_to_string(&info).unwrap())
        .expect("OSKIT_INFO is kit.json");
    let hook = hook
        .map(|h| format!("    post-upload-hook: {}\n", h.display()))
        .unwrap_or_default();
    let yaml = format!(
        "labels: []\n\
         diskimages:\n  - name: {image}\n    elements: [vm, simple-init]\n    release: test\n\
         providers:\n  - name: kit-builder\n    cloud: {cloud}\n    image-upload-timeout: 300\n{hook}\
         \x20   diskimages:\n      - name: {image}\n        meta:\n          hw_rng_model: virtio\n          purpose: builder-e2e\n",
        cloud = info.clouds.tenant
    );
    let (config, _) =
        nodepool::config::load_str(Path::new("nodepool.yaml"), &yaml, None, &Default::default())
            .unwrap_or_else(|e| panic!("test config: {e:?}\n{yaml}"));
    let clouds = CloudsFile::load(Path::new(&clouds)).expect("clouds.yaml");
    let creds = credentials_for(config.provider("kit-builder").unwrap(), Some(&clouds))
        .expect("credentials");
    let client = OpenStackClient::new(creds, cloud_surface::test_options()).expect("client");
    Some(Kit {
        config,
        client,
        info,
    })
}

fn nodepool_dib() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/nodepool-dib")
        .display()
        .to_string()
}

/// Build `image` in `formats` with the real nodepool-dib, as the config describes it.
async fn build_image(kit: &Kit, image: &str, root: &Path, formats: &[&str]) -> BuildOutput {
    let mut di = kit.config.diskimage(image).unwrap().clone();
    di.dib_cmd = nodepool_dib();
    let dirs = BuildDirs {
        images_dir: root.join("images"),
        log_dir: root.join("logs"),
        elements_path: Vec::new(),
        log_retention: -1,
    };
    let req = BuildRequest::new(
        &di,
        "0000000001",
        formats.iter().map(|f| f.to_string()).collect(),
        dirs,
    );
    build(&req).await.unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(req.log_path()).unwrap_or_default()
        )
    })
}

fn request(kit: &Kit, image: &str, out: &BuildOutput, format: &str) -> UploadRequest {
    let provider = kit.config.provider("kit-builder").unwrap();
    let pdi = provider
        .diskimages
        .iter()
        .find(|d| d.name == image)
        .unwrap();
    let file = out
        .files
        .iter()
        .find(|f| f.format == format)
        .unwrap()
        .clone();
    UploadRequest::new(provider, pdi, "0000000001", "0000000042", file)
}

async fn image_gone(c: &OpenStackClient, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.get_image(id).await {
            Err(CloudError::NotFound { .. }) => return,
            Ok(img) if img.status == ImageStatus::Deleted => return,
            Ok(img) => assert!(
                Instant::now() < deadline,
                "image {id} still {:?}",
                img.status
            ),
            Err(e) => panic!("get image {id}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn kit_build_upload_boot() {
    let image = cloud_surface::unique("np-build");
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("hook.sh");
    let hook_args = dir.path().join("hook.args");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$@\" > {}\n", hook_args.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let Some(kit) = kit("kit_build_upload_boot", &image, Some(&hook)) else {
        return;
    };
    let out = build_image(&kit, &image, dir.path(), &["qcow2"]).await;
    let file = &out.files[0];

    let seen: Arc<Mutex<Vec<UploadProgress>>> = Arc::default();
    let mut req = request(&kit, &image, &out, "qcow2");
    let s2 = seen.clone();
    req.progress = Some(Arc::new(move |p| s2.lock().unwrap().push(p)));
    let up = upload(&kit.client, &req).await.expect("upload");
    assert_eq!(up.external_name, format!("{image}-{}", req.timestamp));

    let c = &kit.client;
    let img = c.get_image(&up.external_id).await.unwrap();
    assert_eq!(img.status, ImageStatus::Active);
    assert_eq!(img.name.as_deref(), Some(up.external_name.as_str()));
    assert_eq!(
        (img.disk_format.as_deref(), img.container_format.as_deref()),
        (Some("qcow2"), Some("bare"))
    );
    assert_eq!(img.size, Some(file.size));
    assert_eq!(
        img.checksum.as_deref(),
        Some(file.md5.as_str()),
        "Glance's md5 is the file's"
    );
    let props = &img.properties;
    let want = BTreeMap::from([
        ("nodepool_build_id", "0000000001"),
        ("nodepool_upload_id", "0000000042"),
        ("nodepool_provider_name", "kit-builder"),
        ("hw_rng_model", "virtio"),
        ("purpose", "builder-e2e"),
        (PROP_MD5, file.md5.as_str()),
        (PROP_SHA256, file.sha256.as_str()),
    ]);
    for (k, v) in want {
        assert_eq!(
            props.get(k).map(String::as_str),
            Some(v),
            "property {k}: {props:?}"
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.last(),
        Some(&UploadProgress {
            sent: file.size,
            total: file.size
        })
    );
    assert_eq!(
        std::fs::read_to_string(&hook_args).unwrap(),
        format!("kit-builder {} {}\n", up.external_id, file.path.display()),
        "post-upload-hook got PROVIDER ID FILE"
    );

    // Real Nova boots a server from it.
    let flavor = c
        .list_flavors()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == kit.info.flavor_name)
        .expect("flavor");
    let net = c
        .find_network(&kit.info.network_name)
        .await
        .expect("network");
    let mut sreq = CreateServer::new(&image, &flavor.id, &up.external_id);
    sreq.networks = ServerNetworks::Ids(vec![net.id.clone()]);
    let sid = c.create_server(&sreq).await.expect("create server");
    let deadline = Instant::now() + Duration::from_secs(180);
    let server = loop {
        let s = c.get_server(&sid).await.expect("get server");
        assert_ne!(s.status, ServerStatus::Error, "boot failed: {:?}", s.fault);
        if s.status == ServerStatus::Active {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server not ACTIVE: {:?}",
            s.status
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(server.image_id.as_deref(), Some(up.external_id.as_str()));
    c.delete_server(&sid).await.expect("delete server");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match c.get_server(&sid).await {
            Err(CloudError::NotFound { .. }) => break,
            Ok(s) if s.status == ServerStatus::Deleted => break,
            Ok(_) => assert!(Instant::now() < deadline, "server {sid} not deleted"),
            Err(e) => panic!("get server: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    c.delete_image(&up.external_id).await.expect("delete image");
    image_gone(c, &up.external_id).await;
}

#[tokio::test]
async fn kit_raw_and_vhd_are_accepted() {
    let image = cloud_surface::unique("np-fmt");
    let Some(kit) = kit("kit_raw_and_vhd_are_accepted", &image, None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = build_image(&kit, &image, dir.path(), &["raw", "vhd"]).await;
    for format in ["raw", "vhd"] {
        let req = request(&kit, &image, &out, format);
        let up = upload(&kit.client, &req)
            .await
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        let img = kit.client.get_image(&up.external_id).await.unwrap();
        assert_eq!(
            (img.status, img.disk_format.as_deref()),
            (ImageStatus::Active, Some(format))
        );
        kit.client.delete_image(&up.external_id).await.unwrap();
        image_gone(&kit.client, &up.external_id).await;
    }
}

#[tokio::test]
async fn kit_failing_post_upload_hook_deletes_the_image() {
    let image = cloud_surface::unique("np-hook");
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("failing-hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho \"checking $2\"\necho 'image rejected by policy' >&2\nexit 7\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let Some(kit) = kit(
        "kit_failing_post_upload_hook_deletes_the_image",
        &image,
        Some(&hook),
    ) else {
        return;
    };
    let out = build_image(&kit, &image, dir.path(), &["qcow2"]).await;
    let mut req = request(&kit, &image, &out, "qcow2");
    let err = upload(&kit.client, &req).await.unwrap_err();
    let f = err
        .failure()
        .unwrap_or_else(|| panic!("expected a failed attempt, got {err:?}"));
    let FailureReason::Hook {
        status,
        output_tail,
        ..
    } = &f.reason
    else {
        panic!("expected a hook failure, got {err:?}");
    };
    let external_id = f.external_id.as_deref().expect("an image was created");
    assert_eq!(status, "exit code 7");
    assert_eq!(
        output_tail,
        &format!("checking {external_id}\nimage rejected by policy")
    );
    assert_eq!(f.cleanup, Cleanup::Deleted);
    assert_eq!(err.leftover_image(), None);
    image_gone(&kit.client, external_id).await;

    // `false`, as in upstream's docs example of a failing hook.
    req.post_upload_hook = Some("false".into());
    let err = upload(&kit.client, &req).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("post-upload-hook \"false\" failed: exit code 1")
            && msg.ends_with("; the cloud image was deleted"),
        "{msg}"
    );
    let external_id = err
        .failure()
        .and_then(|f| f.external_id.as_deref())
        .unwrap();
    image_gone(&kit.client, external_id).await;
}
