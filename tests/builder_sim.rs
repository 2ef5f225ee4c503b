//! The builder end to end against the simulator: the project's image tool builds, the upload
//! goes to Glance, and a label launches from it — all in one apply; failing uploads, a failing
//! post-upload-hook and failing image deletes are retried until the world converges;
//! `delete-after-upload` prunes local files without causing rebuilds; `image-pause` stops
//! builds until `image-unpause`.

#[path = "common/sim.rs"]
mod sim;
#[path = "common/upstream.rs"]
mod upstream;

use cloudsim::{FaultAction, FaultRule};
use nodepool::ops::{self, OpError};
use nodepool::reconcile::plan::ActionKind;
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
         \x20       auto-floating-ip: false\n        host-key-checking: false\n        labels:\n          - {{name: dimg, diskimage: img, min-ram: 512}}\n",
        hook = hook
            .map(|h| format!("    post-upload-hook: {h}\n"))
            .unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_upload_launch_in_one_apply() {
    let env = sim::start(sim::fast(), &config(None, 1)).await;
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
    let env = sim::start(sim::fast(), &config(None, 0)).await;
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

/// Repeated failures back off: the first failure is retried at once, the second waits
/// (the plan says so), and the failed records stay as the count until an upload succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_upload_failures_back_off() {
    let env = sim::start(sim::fast(), &config(None, 0)).await;
    env.sim
        .add_fault(FaultRule {
            method: Some("PUT".into()),
            path: "/file$".into(),
            probability: 1.0,
            count: Some(2),
            action: FaultAction::Error {
                status: 500,
                message: Some("store unavailable".into()),
            },
        })
        .unwrap();
    let (_, first) = env.apply_once().await;
    assert_eq!(first.failed.len(), 1, "{first:?}");
    let (n, second) = env.apply_once().await;
    assert_eq!(
        (n, second.failed.len()),
        (1, 1),
        "retried at once: {second:?}"
    );
    let mut ws = env.workspace();
    let planned = ops::plan::plan(&mut ws, nodepool::state::now_unix())
        .await
        .unwrap();
    assert!(
        planned.doc.plan.is_empty(),
        "{:?}",
        planned.doc.plan.actions
    );
    assert!(
        planned
            .doc
            .plan
            .notes
            .iter()
            .any(|n| n.address == "image_upload.east.img"
                && n.message.contains("2 uploads of build")
                && n.message.contains("waits 30 s")),
        "{:?}",
        planned.doc.plan.notes
    );
    // 30 s later (planned for that time), the retry goes out and succeeds; the failed records go.
    let later = ops::plan::plan(&mut ws, nodepool::state::now_unix() + 31)
        .await
        .unwrap();
    assert_eq!(
        later.doc.plan.actions.len(),
        1,
        "{:?}",
        later.doc.plan.actions
    );
    let lease = ops::apply::lease(&mut ws.store, "test").unwrap();
    let (report, _) = ops::apply::apply(
        ws,
        &later.doc,
        lease,
        Default::default(),
        std::sync::Arc::new(|_| {}),
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    env.converge(3).await;
    let uploads = env.workspace().store.read().uploads().unwrap();
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    assert_eq!(uploads[0].state, UploadState::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_post_upload_hook_deletes_the_image() {
    let env = sim::start(sim::fast(), &config(Some("/bin/false"), 0)).await;
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
    let env = sim::start(sim::fast(), &config(None, 0)).await;
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

/// `delete-after-upload` with `keep-formats: [raw]`: once the provider has the build, the
/// qcow2 file goes (raw stays), the record says so, and no rebuild follows. A provider added
/// later needs the pruned qcow2: that is a rebuild, uploaded everywhere, pruned again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_upload_prunes_files_and_rebuilds_only_when_needed() {
    let cfg = config(None, 1).replace(
        "    release: test\n",
        "    release: test\n    formats: [raw]\n    delete-after-upload: true\n    keep-formats: [raw]\n",
    );
    let env = sim::start(sim::fast(), &cfg).await;
    // Build + upload + launch, then the pruning, then nothing.
    let rounds = env.converge(4).await;
    assert_eq!(rounds, 2, "one apply builds and uploads, the next prunes");
    let ws = env.workspace();
    let builds = ws.store.read().builds().unwrap();
    assert_eq!(builds.len(), 1, "{builds:#?}");
    let b1 = &builds[0];
    assert_eq!(b1.formats, ["qcow2", "raw"]);
    assert_eq!(b1.pruned_formats, ["qcow2"]);
    let file = |id: &str, ext: &str| env.path("images").join(format!("img-{id}.{ext}"));
    assert!(!file(&b1.id, "qcow2").exists());
    assert!(!file(&b1.id, "qcow2.md5").exists());
    assert!(file(&b1.id, "raw").exists(), "keep-formats keeps raw");
    assert!(file(&b1.id, "raw.sha256").exists());
    assert_eq!(env.nodes().len(), 1);

    // `image-upload` of the pruned build is refused with the reason.
    let err = ops::images::upload_plan(&ws, "east", "img").unwrap_err();
    assert!(
        matches!(&err, OpError::Refused(m) if m.contains("removed after upload")),
        "{err}"
    );

    // A second provider (same cloud account) now takes the image.
    let two = cfg.clone()
        + "  - name: west\n    cloud: east\n    rate: 0\n    diskimages:\n      - name: img\n    pools: []\n";
    env.set_config(&two);
    let mut ws = env.workspace();
    let planned = ops::plan::plan(&mut ws, nodepool::state::now_unix())
        .await
        .unwrap();
    let build = planned
        .doc
        .plan
        .actions
        .iter()
        .find(|a| matches!(a.kind, ActionKind::BuildImage { .. }))
        .expect("a rebuild is planned");
    assert!(
        build.reason.contains("provider west needs newest build")
            && build.reason.contains("removed after upload"),
        "{}",
        build.reason
    );
    env.converge(5).await;
    let ws = env.workspace();
    let builds = ws.store.read().builds().unwrap();
    let newest = builds.iter().max_by_key(|b| &b.id).unwrap();
    assert_ne!(newest.id, b1.id);
    assert_eq!(newest.pruned_formats, ["qcow2"]);
    let uploads = ws.store.read().uploads().unwrap();
    for provider in ["east", "west"] {
        assert!(
            uploads.iter().any(|u| u.provider == provider
                && u.build_id.as_deref() == Some(newest.id.as_str())
                && u.state == UploadState::Ready),
            "{provider} has the new build: {uploads:#?}"
        );
    }
}

/// `image-pause` stops builds (and `image-build` is refused) until `image-unpause`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pause_holds_builds_until_unpaused() {
    let env = sim::start(sim::fast(), &config(None, 0)).await;
    let mut ws = env.workspace();
    assert_eq!(
        ops::images::pause(&mut ws, "img", Some("bad mirror")).unwrap(),
        ops::images::PauseOutcome::Changed
    );
    assert!(matches!(
        ops::images::pause(&mut ws, "img", None).unwrap(),
        ops::images::PauseOutcome::Unchanged(Some(p)) if p.reason.as_deref() == Some("bad mirror")
    ));
    let err = ops::images::pause(&mut ws, "imgg", None).unwrap_err();
    assert!(err.to_string().contains("did you mean"), "{err}");

    let now = nodepool::state::now_unix();
    let planned = ops::plan::plan(&mut ws, now).await.unwrap();
    assert!(
        planned.doc.plan.is_empty(),
        "{:?}",
        planned.doc.plan.actions
    );
    assert!(
        planned
            .doc
            .plan
            .notes
            .iter()
            .any(|n| n.address == "image_build.img" && n.message.contains("bad mirror")),
        "{:?}",
        planned.doc.plan.notes
    );
    match ops::images::build_plan(&mut ws, "img", now).await {
        Err(err) => assert!(err.to_string().contains("image-unpause img"), "{err}"),
        Ok(p) => panic!(
            "image-build of a paused image was planned: {:?}",
            p.doc.plan
        ),
    }

    assert_eq!(
        ops::images::unpause(&mut ws, "img").unwrap(),
        ops::images::PauseOutcome::Changed
    );
    assert_eq!(
        ops::images::unpause(&mut ws, "img").unwrap(),
        ops::images::PauseOutcome::Unchanged(None)
    );
    drop(ws);
    env.converge(3).await;
    let builds = env.workspace().store.read().builds().unwrap();
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].state, BuildState::Ready);
}

/// Switching from upstream Nodepool: its uploads (our ownership properties, no record here)
/// would be deleted as leaks; `image-adopt` records them as ready uploads instead, a label
/// launches from the newest at once, and images of other diskimages or not yet active are
/// left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_uploads_are_adopted_instead_of_deleted() {
    let env = sim::start(sim::fast(), &config(None, 1)).await;
    let client = env.workspace().clients["east"].clone();
    let file = env.path("upstream.raw");
    std::fs::write(&file, b"upstream image data").unwrap();
    let mut active = Vec::new();
    for (name, build, upload) in [
        ("img-1700000000", "0000000007", "0000000001"),
        ("img-1700086400", "0000000008", "0000000001"),
        ("other-1700000000", "0000000003", "0000000001"),
    ] {
        let i = client
            .create_image(&upstream::image(name, "east", build, upload))
            .await
            .unwrap();
        client.upload_image(&i.id, &file, None).await.unwrap();
        active.push(i.id);
    }
    let queued = client
        .create_image(&upstream::image(
            "img-1700090000",
            "east",
            "0000000009",
            "0000000001",
        ))
        .await
        .unwrap();

    // Unadopted, the plan calls them leaks.
    let mut ws = env.workspace();
    let planned = ops::plan::plan(&mut ws, nodepool::state::now_unix())
        .await
        .unwrap();
    assert!(
        planned
            .doc
            .plan
            .notes
            .iter()
            .any(|n| n.address == format!("leak.east.image.{}", active[0])),
        "{:#?}",
        planned.doc.plan.notes
    );

    // A dry run records nothing.
    let dry = ops::images::adopt(&mut ws, "east", None, true)
        .await
        .unwrap();
    assert_eq!(dry.adopted.len(), 2, "{dry:#?}");
    assert!(ws.store.read().uploads().unwrap().is_empty());

    let out = ops::images::adopt(&mut ws, "east", None, false)
        .await
        .unwrap();
    let mut adopted: Vec<(&str, &str, Option<&str>)> = out
        .adopted
        .iter()
        .map(|a| {
            (
                a.image.as_str(),
                a.external_name.as_str(),
                a.upstream_build_id.as_deref(),
            )
        })
        .collect();
    adopted.sort();
    assert_eq!(
        adopted,
        [
            ("img", "img-1700000000", Some("0000000007")),
            ("img", "img-1700086400", Some("0000000008")),
        ]
    );
    let mut left: Vec<(&str, &str)> = out
        .not_adopted
        .iter()
        .map(|n| (n.external_name.as_str(), n.why.as_str()))
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:#?}");
    assert_eq!(left[0].0, "img-1700090000");
    assert!(left[0].1.contains("queued, not active"), "{left:#?}");
    assert_eq!(left[1].0, "other-1700000000");
    assert!(left[1].1.contains("image-name-format"), "{left:#?}");
    let uploads = ws.store.read().uploads().unwrap();
    assert_eq!(uploads.len(), 2);
    assert!(
        uploads
            .iter()
            .all(|u| u.state == UploadState::Ready && u.build_id.is_none())
    );

    // Adopting again finds nothing new; the same image cannot be recorded twice.
    let again = ops::images::adopt(&mut ws, "east", Some("img"), false)
        .await
        .unwrap();
    assert!(again.adopted.is_empty(), "{again:#?}");

    // Paused, so no build of ours replaces them in this test: the label launches from the
    // newest adopted image, and nothing adopted is deleted.
    ops::images::pause(&mut ws, "img", Some("switching over")).unwrap();
    env.converge(3).await;
    let ws = env.workspace();
    let nodes = ws.store.read().nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].state, NodeState::Ready);
    assert_eq!(
        nodes[0].details.image_id.as_deref(),
        Some(active[1].as_str())
    );
    for id in &active[..2] {
        assert_eq!(
            client.get_image(id).await.unwrap().status.as_str(),
            "active",
            "adopted images stay"
        );
    }
    // What was not adopted is still a leak, and goes.
    let left: Vec<String> = client
        .list_images(&nodepool::cloud::ImageQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(
        !left.contains(&active[2]) && !left.contains(&queued.id),
        "{left:?}"
    );

    // Refusals name what is wrong.
    let mut ws = env.workspace();
    let e = ops::images::adopt(&mut ws, "eats", None, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("provider eats is not configured") && e.contains("east"),
        "{e}"
    );
    let e = ops::images::adopt(&mut ws, "east", Some("imag"), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not list diskimage imag"), "{e}");
}

/// An image of an upload of ours still in flight (its record has no image id yet, the image
/// carries its upload and build ids) is never adopted, even when an upstream image carries
/// the same upload id for another build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_ours_in_flight_is_not_adopted() {
    let env = sim::start(sim::fast(), &config(None, 0)).await;
    let mut ws = env.workspace();
    let (build, upload) = ws
        .store
        .write(|w| {
            let b = w.insert_build(&nodepool::state::NewBuild {
                image_name: "img".into(),
                ..Default::default()
            })?;
            let u = w.insert_upload(&nodepool::state::NewUpload {
                build_id: Some(b.id.clone()),
                image_name: "img".into(),
                provider: "east".into(),
                format: Some("raw".into()),
                external_name: "img-1700000500".into(),
            })?;
            Ok((b.id, u.id))
        })
        .unwrap();
    let client = ws.clients["east"].clone();
    let ours = client
        .create_image(&upstream::image("img-1700000500", "east", &build, &upload))
        .await
        .unwrap();
    let theirs = client
        .create_image(&upstream::image(
            "img-1700000400",
            "east",
            "0000000099",
            &upload,
        ))
        .await
        .unwrap();
    let file = env.path("data.raw");
    std::fs::write(&file, b"data").unwrap();
    for id in [&ours.id, &theirs.id] {
        client.upload_image(id, &file, None).await.unwrap();
    }
    let out = ops::images::adopt(&mut ws, "east", None, false)
        .await
        .unwrap();
    let adopted: Vec<&str> = out.adopted.iter().map(|a| a.external_id.as_str()).collect();
    assert_eq!(adopted, [theirs.id.as_str()], "{out:#?}");
    assert_eq!(out.not_adopted.len(), 1, "{out:#?}");
    assert_eq!(out.not_adopted[0].external_id, ours.id);
    assert!(
        out.not_adopted[0].why.contains("not recorded as done yet"),
        "{out:#?}"
    );
}
