//! The daemon's `nodepool_cloud_api_calls_total{provider,operation,status}` fed by real clients against the simulator, across a client replacement (a config reload).

#[path = "common/sim.rs"]
mod sim;

use cloudsim::{FaultAction, FaultRule, SimConfig, Simulator};
use nodepool::cloud::{ClientOptions, OpenStackClient};
use nodepool::daemon::metrics::Metrics;
use std::time::Duration;

fn client(auth_url: String) -> OpenStackClient {
    let creds = sim::credentials(auth_url);
    let opts = ClientOptions {
        rate: Duration::ZERO,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    OpenStackClient::new(creds, opts).unwrap()
}

/// The value of one sample line of `text`, if present.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn calls(provider: &str, operation: &str, status: &str) -> String {
    format!(
        "nodepool_cloud_api_calls_total{{provider=\"{provider}\",operation=\"{operation}\",status=\"{status}\"}}"
    )
}

#[tokio::test]
async fn api_calls_by_operation_and_status_survive_a_client_replacement() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let m = Metrics::new();

    let old = client(sim.auth_url());
    m.track_client("east", old.call_counter());
    old.limits().await.unwrap();
    let text = m.encode(&[], &[]);
    assert_eq!(
        sample(&text, &calls("east", "identity POST /auth/tokens", "201")),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, &calls("east", "compute GET /limits", "200")),
        Some(1),
        "{text}"
    );
    // Scraping again adds nothing.
    let text = m.encode(&[], &[]);
    assert_eq!(
        sample(&text, &calls("east", "compute GET /limits", "200")),
        Some(1)
    );

    // A reload: a new client is tracked; the old one finishes a call (a pass in flight still
    // holds it), then is dropped. Nothing is lost, nothing counted twice.
    let new = client(sim.auth_url());
    m.track_client("east", new.call_counter());
    old.limits().await.unwrap();
    drop(old);
    sim.add_fault(FaultRule {
        method: Some("GET".into()),
        path: "/compute/v2.1/servers/detail$".into(),
        probability: 1.0,
        count: Some(1),
        action: FaultAction::Error {
            status: 503,
            message: None,
        },
    })
    .unwrap();
    new.list_servers(&Default::default()).await.unwrap();
    new.limits().await.unwrap();
    let text = m.encode(&[], &[]);
    for (op, status, n) in [
        ("identity POST /auth/tokens", "201", 2),
        ("compute GET /limits", "200", 3),
        ("compute GET /servers/detail", "503", 1),
        ("compute GET /servers/detail", "200", 1),
    ] {
        assert_eq!(
            sample(&text, &calls("east", op, status)),
            Some(n),
            "{op} {status}:\n{text}"
        );
    }
    // The dropped client was collected and forgotten; its counts stay in the family.
    assert_eq!(m.tracked_clients(), 1);
    let total: u64 = text
        .lines()
        .filter(|l| l.starts_with("nodepool_cloud_api_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, sim.counters().total, "{text}");
    assert!(
        text.contains("# TYPE nodepool_cloud_api_calls counter"),
        "{text}"
    );
}

#[test]
fn build_gauges_come_from_the_database() {
    use nodepool::daemon::{Daemon, DaemonOptions};
    use nodepool::state::NewBuild;
    use nodepool::watch::SourceSpec;

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("nodepool.yaml"), "labels: []\n").unwrap();
    git(&["add", "nodepool.yaml"]);
    git(&["commit", "-q", "-m", "c"]);
    let d = Daemon::new(DaemonOptions::new(
        SourceSpec::local(&repo),
        dir.path().join("state.db"),
        dir.path().join("data"),
    ))
    .unwrap();
    d.store()
        .write(|w| {
            let new = |image: &str| NewBuild {
                image_name: image.into(),
                ..NewBuild::default()
            };
            let ok = w.insert_build(&new("ubuntu"))?;
            w.finish_build(&ok.id, 0, &["qcow2".into()], Some(123_456_789))?;
            let failed = w.insert_build(&new("ubuntu"))?;
            w.finish_build(&failed.id, 2, &[], None)?;
            w.insert_build(&new("ubuntu"))?;
            let other = w.insert_build(&new("debian"))?;
            w.finish_build(&other.id, 0, &["raw".into()], Some(42))?;
            Ok(())
        })
        .unwrap();
    let text = d.render_metrics().unwrap();
    for (series, value) in [
        ("nodepool_image_build_last_exit_code{image=\"ubuntu\"}", 2),
        (
            "nodepool_image_build_last_size_bytes{image=\"ubuntu\"}",
            123_456_789,
        ),
        ("nodepool_image_build_last_exit_code{image=\"debian\"}", 0),
        ("nodepool_image_build_last_size_bytes{image=\"debian\"}", 42),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
    }
}
