//! `nodepool image-pause` / `image-unpause` through the binary: messages, exit codes, the pause
//! shown by `dib-image-list` and `plan`, and refusals naming the image.

use std::process::{Command, Output};

#[path = "common/upstream.rs"]
mod upstream;

fn nodepool(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodepool"))
        .args(args)
        .arg("-c")
        .arg(dir.join("nodepool.yaml"))
        .arg("--clouds")
        .arg(dir.join("clouds.yaml"))
        .arg("--state")
        .arg(dir.join("state.db"))
        .env_remove("NODEPOOL_CONFIG")
        .output()
        .expect("run nodepool")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn pause_and_unpause_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("clouds.yaml"), "clouds: {}\n").unwrap();
    std::fs::write(
        d.join("nodepool.yaml"),
        "diskimages:\n  - name: base\n    abstract: true\n  - name: ubuntu-noble\n    parent: base\n    formats: [raw]\n",
    )
    .unwrap();

    let o = nodepool(
        d,
        &["image-pause", "ubuntu-noble", "--reason", "mirror broken"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("diskimage ubuntu-noble paused"),
        "{}",
        text(&o)
    );
    let o = nodepool(d, &["image-pause", "ubuntu-noble"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already paused"), "{}", text(&o));

    let o = nodepool(d, &["dib-image-list"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("paused: ubuntu-noble (with `nodepool image-pause`")
            && text(&o).contains("mirror broken"),
        "{}",
        text(&o)
    );
    let o = nodepool(d, &["plan"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("image_build.ubuntu-noble: paused with `nodepool image-pause`"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("+ image_build"), "{}", text(&o));

    // Refusals: an unknown image (with a hint), an abstract one.
    let o = nodepool(d, &["image-pause", "ubuntu-nobel"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("diskimage ubuntu-nobel is not defined")
            && text(&o).contains("ubuntu-noble"),
        "{}",
        text(&o)
    );
    let o = nodepool(d, &["image-pause", "base"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("abstract"), "{}", text(&o));

    let o = nodepool(d, &["image-unpause", "ubuntu-noble"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("diskimage ubuntu-noble unpaused"),
        "{}",
        text(&o)
    );
    let o = nodepool(d, &["plan"]);
    assert!(
        text(&o).contains("+ image_build.ubuntu-noble"),
        "{}",
        text(&o)
    );
    let o = nodepool(d, &["image-unpause", "ubuntu-noble"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("was not paused"), "{}", text(&o));
}

/// `image-adopt` through the binary: the dry run lists the image and records nothing, the
/// run records it (`image-list` shows it), `plan` stops calling it a leak, and a second run
/// finds nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_an_upstream_upload() {
    let sim = cloudsim::Simulator::start(cloudsim::SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    std::fs::write(d.join("clouds.yaml"), sim.clouds_yaml("east")).unwrap();
    std::fs::write(
        d.join("nodepool.yaml"),
        "diskimages:\n  - name: ubuntu-noble\n    pause: true\n\
         providers:\n  - name: east\n    cloud: east\n    rate: 0\n    diskimages: [{name: ubuntu-noble}]\n",
    )
    .unwrap();
    let ws = nodepool::ops::Workspace::open(nodepool::ops::Paths {
        config: d.join("nodepool.yaml"),
        secure: None,
        clouds: Some(d.join("clouds.yaml")),
        state: d.join("state.db"),
    })
    .unwrap();
    let client = ws.clients["east"].clone();
    drop(ws);
    let image = client
        .create_image(&upstream::image(
            "ubuntu-noble-1700000000",
            "east",
            "0000000012",
            "0000000003",
        ))
        .await
        .unwrap();
    std::fs::write(d.join("data.raw"), b"upstream").unwrap();
    client
        .upload_image(&image.id, &d.join("data.raw"), None)
        .await
        .unwrap();

    let run = |args: &'static [&'static str]| {
        let d = d.clone();
        tokio::task::spawn_blocking(move || nodepool(&d, args))
    };
    let o = run(&["plan"]).await.unwrap();
    assert!(
        text(&o).contains("`nodepool image-adopt east` keeps it"),
        "{}",
        text(&o)
    );
    let o = run(&["image-adopt", "east", "--dry-run"]).await.unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&image.id) && text(&o).contains("1 image would be adopted"),
        "{}",
        text(&o)
    );
    let o = run(&["image-list"]).await.unwrap();
    assert!(!text(&o).contains(&image.id), "{}", text(&o));

    let o = run(&["image-adopt", "east", "ubuntu-noble"]).await.unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 image adopted") && text(&o).contains("0000000012"),
        "{}",
        text(&o)
    );
    let o = run(&["image-list"]).await.unwrap();
    assert!(text(&o).contains(&image.id), "{}", text(&o));
    let o = run(&["plan"]).await.unwrap();
    assert!(!text(&o).contains("leak.east.image"), "{}", text(&o));
    let o = run(&["image-adopt", "east"]).await.unwrap();
    assert!(
        o.status.success() && text(&o).contains("no image to adopt in provider east"),
        "{}",
        text(&o)
    );
    let o = run(&["image-adopt", "west"]).await.unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("provider west is not configured"),
        "{}",
        text(&o)
    );
    sim.shutdown().await;
}
