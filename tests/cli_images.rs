//! `nodepool image-pause` / `image-unpause` through the binary: messages, exit codes, the pause
//! shown by `dib-image-list` and `plan`, and refusals naming the image.

use std::process::{Command, Output};

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
