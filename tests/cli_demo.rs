//! The README's first command: `nodepool demo` runs the main job on the embedded default
//! (simulated clouds, the example config repo) and ends converged.

use snapbox::cmd::{Command, cargo_bin};

#[test]
fn demo_converges() {
    let out = Command::new(cargo_bin!("nodepool"))
        .arg("demo")
        .env_remove("OS_CLIENT_CONFIG_FILE")
        .env_remove("NODEPOOL_STATE")
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "+ image_build.ubuntu-jammy",
        "+ image_upload.east.ubuntu-jammy",
        "+ node.west.main.ubuntu-jammy[+1]",
        "Plan: 13 to add, 0 to change, 0 to destroy.",
        "Apply complete: 13 done, 0 failed.",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(stdout.trim_end().ends_with("No changes."), "{stdout}");
    assert_eq!(
        stdout.matches("| ready |").count(),
        3 + 5 + 5,
        "3 builds, 5 uploads, 5 nodes:\n{stdout}"
    );
}

/// `nodepool backup` of the demo's database: the copy holds what `dib-image-list` and `list`
/// count, the original is untouched, and an existing copy is never overwritten.
#[test]
fn backup_of_the_demo_database() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    Command::new(cargo_bin!("nodepool"))
        .args(["demo", "--dir"])
        .arg(&work)
        .env_remove("OS_CLIENT_CONFIG_FILE")
        .env_remove("NODEPOOL_STATE")
        .assert()
        .success();
    let db = work.join("state/nodepool.db");
    let copy = dir.path().join("copy.db");
    let out = Command::new(cargo_bin!("nodepool"))
        .args(["backup", "--json", "--state"])
        .arg(&db)
        .arg(&copy)
        .assert()
        .success()
        .get_output()
        .clone();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["nodes"], 5, "{summary}");
    assert_eq!(summary["builds"], 3, "{summary}");
    assert_eq!(summary["uploads"], 5, "{summary}");
    // The copy is a database the CLI reads like the original.
    let listed = Command::new(cargo_bin!("nodepool"))
        .args(["image-list", "--json", "--state"])
        .arg(&copy)
        .env_remove("NODEPOOL_CONFIG")
        .arg("-c")
        .arg(work.join("config-repo"))
        .arg("--clouds")
        .arg(work.join("clouds.yaml"))
        .assert()
        .success()
        .get_output()
        .clone();
    let uploads: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(uploads.as_array().map(Vec::len), Some(5), "{uploads}");
    Command::new(cargo_bin!("nodepool"))
        .args(["backup", "--state"])
        .arg(&db)
        .arg(&copy)
        .assert()
        .failure()
        .stderr_eq(snapbox::str![[r#"
error: state database [..]copy.db: File exists (os error 17)

"#]]);
}
