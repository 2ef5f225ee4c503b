//! `nodepool config-validate` as an operator runs it: exit codes, messages, JSON.

use snapbox::cmd::{Command, cargo_bin};
use std::path::Path;

fn nodepool() -> Command {
    Command::new(cargo_bin!("nodepool"))
        .env_remove("NODEPOOL_CONFIG")
        .env_remove("NODEPOOL_SECURE")
}

#[test]
fn valid_repo_exits_zero() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    nodepool()
        .args(["config-validate", "-c"])
        .arg(&repo)
        .assert()
        .success()
        .stdout_eq(format!(
            "{}: configuration is valid (0 warnings)\n",
            repo.join("nodepool.yaml").display()
        ));
}

#[test]
fn invalid_file_exits_one_with_line_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nodepool.yaml");
    std::fs::write(&f, "labels:\n  - name: a\n    min-rady: 1\nbogus: 1\n").unwrap();
    let out = nodepool()
        .args(["config-validate", "-c"])
        .arg(&f)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let file = f.display();
    assert_eq!(
        stderr,
        format!(
            "{file}:3:5: error: labels[0].min-rady: unknown key\n  hint: did you mean `min-ready`?\n\
             {file}:4:1: error: bogus: unknown key\n"
        )
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("invalid: 2 errors, 0 warnings")
    );
}

#[test]
fn json_output_is_versioned_and_secret_free() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nodepool.yaml");
    std::fs::write(
        &f,
        "providers:\n  - name: p\n    auth-url: http://k/v3\n    username: u\n    password: '%(NODEPOOL_PW)'\n    rate: -1\n",
    )
    .unwrap();
    let out = nodepool()
        .env("NODEPOOL_PW", "pw-never-shown")
        .args(["config-validate", "--json", "-c"])
        .arg(&f)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("pw-never-shown"));
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["valid"], false);
    let paths: Vec<&str> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"providers[0].rate"), "{paths:?}");
    assert!(paths.contains(&"providers[0].auth-url"), "{paths:?}"); // no project
}

#[test]
fn missing_file_is_a_clear_error() {
    nodepool()
        .args(["config-validate", "-c", "/nonexistent/nodepool.yaml"])
        .assert()
        .code(1)
        .stderr_eq("error: cannot read /nonexistent/nodepool.yaml: No such file or directory (os error 2)\n");
}
