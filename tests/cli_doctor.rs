//! `nodepool doctor` against the simulator: a healthy provider's real quota, and a wrong
//! password reported as an authentication failure naming the provider, never the password.

use std::process::Command;

fn nodepool(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_quota_and_a_bad_password_without_showing_it() {
    let sim = cloudsim::Simulator::start(cloudsim::SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = sim.clouds_yaml("good");
    let bad = sim
        .clouds_yaml("bad")
        .replace("password: \"nodepool\"", "password: \"wr0ng-Passw0rd\"")
        .replacen("clouds:\n", "", 1);
    assert!(bad.contains("wr0ng-Passw0rd"), "{bad}");
    std::fs::write(dir.path().join("clouds.yaml"), format!("{good}{bad}")).unwrap();
    std::fs::write(
        dir.path().join("nodepool.yaml"),
        "providers:\n  - name: healthy\n    cloud: good\n    rate: 0\n  - name: broken\n    cloud: bad\n    rate: 0\n",
    )
    .unwrap();
    let d = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || nodepool(&d, &["doctor"]))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed provider fails the command:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("provider healthy: OK"), "{stdout}");
    let quota = sim.sim().config.quota.instances;
    assert!(
        stdout.contains(&format!("quota: instances 0 of {quota}")),
        "{stdout}"
    );
    assert!(stdout.contains("provider broken: FAILED"), "{stdout}");
    assert!(stdout.to_lowercase().contains("authentication"), "{stdout}");
    assert!(!stdout.contains("wr0ng-Passw0rd") && !stderr.contains("wr0ng-Passw0rd"));
    sim.shutdown().await;
}
