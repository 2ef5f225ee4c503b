//! The builder end to end against the simulator: the project's image tool builds, the upload
//! goes to Glance, and a label launches from it — all in one apply; failing uploads, a failing
//! post-upload-hook and failing image deletes are retried until the world converges.

#[path = "common/sim.rs"]
mod sim;

use cloudsim::{FaultAction, FaultRule, SimConfig};
use nodepool::state::{BuildState, NodeState, UploadState};

fn config(hook: Option<&str>, min_ready: u32) -> String {
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/nodepool-dib");
    format!(
        "images-dir: images\nbuild-log-dir: logs\n\
         labels:\n  - name: dimg\n    min-ready: {min_ready}\n\
         diskimages:\n  - name: img\n    dib-cmd: {tool}\n    elements: [vm]\n    release: test\n\
         providers:\n  - name: east\n    cloud: east\n    rate: 0\n    boot-timeout: 30\n{hook}\
         \x20   diskimages:\n      - name: img\n        meta: {{purpose: test}}\n\
         \x20   pools:\n      - name: main\n        max-servers: 5\n        networks: [private]\n\
         \x20       auto-floating-ip: false\n        labels:\n          - {{name: dimg, diskimage: img, min-ram: 512}}\n",
        hook = hook
            .map(|h| format!("    post-upload-hook: {h}\n"))
            .unwrap_or_default()
    )
}

fn fast() -> SimConfig {
    SimConfig {
        boot_delay_ms: 100,
        delete_delay_ms: 50,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_upload_launch_in_one_apply() {
    let env = sim::start(fast(), &config(None, 1)).await;
    let (n, report) = env.apply_once().await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(n, 3, "build, upload, launch");
    assert_eq!(env.converge(2).await, 0, "a second plan has no changes");
    let ws = env.workspace();
    let builds = ws.store.read().builds().unwrap();
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].state, BuildState::Ready);
    assert_eq!(builds[0].formats, ["qcow2"]);
    assert!(
        env.path("images")
            .join(format!("img-{}.qcow2", builds[0].id))
            .exists()
    );
    let log = std::fs::read_to_string(env.path("logs").join(format!("img-{}.log", builds[0].id)))
        .unwrap();
    assert!(log.trim_end().ends_with("Exit code: 0"), "{log}");
    let uploads = ws.store.read().uploads().unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].state, UploadState::Ready);
    let image_id = uploads[0].details.external_id.clone().unwrap();
    let img = ws.clients["east"].get_image(&image_id).await.unwrap();
    assert_eq!(img.status.as_str(), "active");
    assert_eq!(
        img.properties.get("nodepool_upload_id"),
        Some(&uploads[0].id)
    );
    assert_eq!(
        img.properties.get("purpose").map(String::as_str),
        Some("test")
    );
    let nodes = ws.store.read().nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].state, NodeState::Ready);
    assert_eq!(
        nodes[0].details.image_id.as_deref(),
        Some(image_id.as_str())
    );
    assert_eq!(
        nodes[0].details.upload_id.as_deref(),
        Some(uploads[0].id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upload_is_retried() {
    let env = sim::start(fast(), &config(None, 0)).await;
    env.sim
        .add_fault(FaultRule {
            method: Some("PUT".into()),
            path: "/file$".into(),
            probability: 1.0,
            count: Some(1),
            action: FaultAction::Error {
                status: 500,
                message: Some("store unavailable".into()),
            },
        })
        .unwrap();
    env.converge(4).await;
    let uploads = env.workspace().store.read().uploads().unwrap();
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    assert_eq!(uploads[0].state, UploadState::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_post_upload_hook_deletes_the_image() {
    let env = sim::start(fast(), &config(Some("/bin/false"), 0)).await;
    let (_, report) = env.apply_once().await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].1.contains("hook"), "{:?}", report.failed);
    let ws = env.workspace();
    let images = ws.clients["east"]
        .list_images(&Default::default())
        .await
        .unwrap();
    assert!(
        images
            .iter()
            .all(|i| !i.properties.contains_key("nodepool_upload_id")),
        "the hook's image was deleted: {images:#?}"
    );
    let uploads = ws.store.read().uploads().unwrap();
    assert!(uploads.iter().all(|u| u.state == UploadState::Failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_image_delete_is_retried_until_it_succeeds() {
    let env = sim::start(fast(), &config(None, 0)).await;
    env.converge(3).await;
    // The provider stops listing the image: its upload must go, while Glance refuses twice.
    // (Its pool label needs the image listed, so the pool goes too.)
    let cfg = config(None, 0).replace(
        "    diskimages:\n      - name: img\n        meta: {purpose: test}\n",
        "    diskimages: []\n",
    );
    env.set_config(&(cfg.split("    pools:").next().unwrap().to_owned() + "    pools: []\n"));
    env.sim
        .add_fault(FaultRule {
            method: Some("DELETE".into()),
            path: "/image/v2/images/".into(),
            probability: 1.0,
            // More refusals than the client's own retries of one call.
            count: Some(6),
            action: FaultAction::Error {
                status: 503,
                message: None,
            },
        })
        .unwrap();
    let (_, first) = env.apply_once().await;
    assert!(
        !first.failed.is_empty(),
        "the first delete fails: {first:?}"
    );
    env.converge(6).await;
    let ws = env.workspace();
    assert!(ws.store.read().uploads().unwrap().is_empty());
    let images = ws.clients["east"]
        .list_images(&Default::default())
        .await
        .unwrap();
    assert!(
        images
            .iter()
            .all(|i| !i.properties.contains_key("nodepool_upload_id"))
    );
}
