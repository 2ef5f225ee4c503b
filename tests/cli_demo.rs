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
