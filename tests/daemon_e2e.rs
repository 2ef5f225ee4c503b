//! End to end: the `nodepool daemon` binary follows a git config repo (a local work tree, or a remote URL mirrored into its data directory) and keeps the simulated cloud converged.

mod daemon_support;
#[path = "common/sim.rs"]
mod sim;
#[path = "common/ssh.rs"]
mod ssh;

use daemon_support::{Env, TOKEN, WEBHOOK_SECRET};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn ids(nodes: &[Value]) -> BTreeSet<String> {
    nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_commits_rejects_invalid_ones_serves_requests_and_stops_on_sigterm() {
    let env = Env::start(sim::fast(), &sim::config(2, 10)).await;
    let mut d = env.spawn(0);

    // min-ready 2 → two READY nodes.
    let first = env
        .wait_for(0, "two ready nodes", WAIT, || async {
            let ready = env.ready_nodes(&d).await;
            (ready.len() == 2).then_some(ready)
        })
        .await;
    let ready = env
        .http
        .get(format!("{}/ready", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let status = env.get_json(&d, "/status").await;
    let good = status["revisions"]["in_force"]["revision"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(good.starts_with("main@"), "{status:#}");

    // An invalid commit changes nothing; /status names the file and line.
    let valid = sim::config(2, 10);
    let invalid = valid.replace("max-servers: 10", "max-servers: lots");
    let bad_line = invalid
        .lines()
        .position(|l| l.contains("max-servers: lots"))
        .unwrap() as u64
        + 1;
    env.commit(&invalid, "break it");
    let attempt = env
        .wait_for(0, "the invalid revision in /status", WAIT, || async {
            let s = env.get_json(&d, "/status").await;
            let last = s["revisions"]["last_attempted"].clone();
            (last["outcome"] == "invalid").then_some(s)
        })
        .await;
    let revisions = &attempt["revisions"];
    assert_eq!(
        revisions["in_force"]["revision"],
        good.as_str(),
        "{attempt:#}"
    );
    let errors = revisions["last_attempted"]["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{attempt:#}");
    assert!(
        errors[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("nodepool.yaml"),
        "{attempt:#}"
    );
    assert_eq!(errors[0]["line"], bad_line, "{attempt:#}");
    assert_ne!(revisions["last_attempted"]["revision"], good.as_str());
    // Nothing moved: the same two nodes, still ready.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(&env.ready_nodes(&d).await), ids(&first));
    assert_eq!(env.nodes(&d).await.len(), 2);

    // The fix (min-ready 3) is picked up and converges.
    env.commit(&sim::config(3, 10), "fix it, and one more");
    env.wait_for(0, "three ready nodes", WAIT, || async {
        (env.ready_nodes(&d).await.len() == 3).then_some(())
    })
    .await;
    let status = env.get_json(&d, "/status").await;
    assert_eq!(status["revisions"]["last_attempted"]["outcome"], "ok");
    assert_ne!(status["revisions"]["in_force"]["revision"], good.as_str());

    // The node API refuses callers without a valid token.
    let url = format!("{}/api/v1/requests", d.url);
    let body = json!({"labels": ["small"], "requestor": "zuul", "priority": 100});
    let anon = env.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let wrong = env
        .http
        .post(&url)
        .bearer_auth("not-the-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let bad_label = env
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"labels": ["nope"], "requestor": "zuul"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_label.status(), 400);
    let err: Value = bad_label.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("nope"), "{err}");

    // A request via HTTP is fulfilled.
    let created = env
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let request_id = created["id"].as_str().unwrap().to_owned();
    let request = env
        .wait_for(0, "the request fulfilled", WAIT, || async {
            let r = env
                .get_json(&d, &format!("/api/v1/requests/{request_id}"))
                .await;
            (r["state"] == "fulfilled").then_some(r)
        })
        .await;
    let node = &request["node_details"][0];
    let node_id = node["id"].as_str().unwrap().to_owned();
    assert!(node["interface_ip"].is_string(), "{request:#}");
    assert_eq!(node["label"], "small");
    assert_eq!(
        node["attributes"]["executor-zone"], "east-zone",
        "the pool's node-attributes: {request:#}"
    );

    // Release → the node is deleted and replaced; no server is left behind.
    let released = env
        .http
        .post(format!("{}/api/v1/nodes/{node_id}/release", d.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 200);
    env.wait_for(
        0,
        "the released node deleted and replaced",
        WAIT,
        || async {
            let nodes = env.nodes(&d).await;
            let ready = nodes.iter().filter(|n| n["state"] == "ready").count();
            let servers = env.servers();
            (!ids(&nodes).contains(&node_id) && ready == 3 && servers.len() == nodes.len())
                .then_some(())
        },
    )
    .await;

    // Dashboards: text by default, JSON on request (upstream's objects); metrics without
    // unbounded labels.
    let text = env.get_text(&d, "/node-list").await;
    assert!(text.contains("small") && text.contains("ready"), "{text}");
    let nodes = env.get_json(&d, "/node-list").await;
    let one = nodes[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(nodes[0]["label"], json!(["small"]), "{nodes:#}");
    assert!(
        nodes[0]["AZ"].is_string() && nodes[0]["locked"].is_string(),
        "{nodes:#}"
    );
    let picked = env.get_text(&d, "/node-list?fields=id,state").await;
    assert!(
        picked.contains("| ID ") && picked.contains("State"),
        "{picked}"
    );
    assert!(!picked.contains("Provider"), "{picked}");
    let just = env.get_json(&d, &format!("/node-list?node_id={one}")).await;
    assert_eq!(just.as_array().map(Vec::len), Some(1), "{just:#}");
    let labels = env.get_json(&d, "/label-list").await;
    assert_eq!(labels[0]["label"], "small");
    assert_eq!(labels[0]["min_ready"], 3);
    let metrics = env.get_text(&d, "/metrics").await;
    assert!(
        metrics.contains("nodepool_nodes{provider=\"east\",label=\"small\",state=\"ready\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("nodepool_launches_total{provider=\"east\",result=\"success\"}"));
    for series in [
        "nodepool_cloud_api_calls_total{provider=\"east\",operation=\"identity POST /auth/tokens\",status=\"201\"}",
        "nodepool_cloud_api_calls_total{provider=\"east\",operation=\"compute GET /servers/detail\",status=\"200\"}",
        "nodepool_cloud_api_calls_total{provider=\"east\",operation=\"compute POST /servers\",status=\"202\"}",
        "nodepool_cloud_api_calls_total{provider=\"east\",operation=\"compute DELETE /servers/{id}\",status=\"204\"}",
        "nodepool_reconcile_duration_seconds_count{key=\"provider:east\"}",
        "nodepool_config_revision_info{revision=\"main@",
        "nodepool_config_loads_total{status=\"invalid\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(!metrics.contains(&node_id), "no node ids in metrics");
    for (server, _) in env.servers() {
        assert!(!metrics.contains(&server), "no server ids in metrics");
    }

    // SIGTERM → a clean exit.
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}; log:\n{}", env.log(0));
    assert!(env.log(0).contains("SIGTERM received"));
}

fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn config_runs(status: &Value) -> u64 {
    status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "config")
        .map(|k| k["runs"].as_u64().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_a_wrong_signature_is_refused_and_triggers_nothing() {
    let env = Env::start(sim::fast(), &sim::config(0, 10)).await;
    let d = env.spawn(0);
    env.wait_ready(0, &d, WAIT).await;
    // `nodepool status` reads /status.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nodepool"))
        .args(["status", "--url", &d.url])
        .env_remove("NODEPOOL_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Ready:    yes") && text.contains("provider:east"),
        "{text}"
    );
    assert!(text.contains("In force: main@"), "{text}");

    let before = config_runs(&env.get_json(&d, "/status").await);
    let hook = format!("{}/hooks/git", d.url);
    let body = br#"{"ref": "refs/heads/main"}"#.to_vec();

    let wrong = env
        .http
        .post(&hook)
        .header("X-Hub-Signature-256", sign(&body, "not-the-secret"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let err: Value = wrong.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("signature"),
        "{err}"
    );
    let unsigned = env
        .http
        .post(&hook)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        config_runs(&env.get_json(&d, "/status").await),
        before,
        "a refused delivery must not trigger a pass"
    );

    // Too large: refused before any signature work.
    let huge = vec![b' '; nodepool::watch::MAX_WEBHOOK_BODY_BYTES + 1];
    let too_big = env
        .http
        .post(&hook)
        .header("X-Hub-Signature-256", sign(&huge, WEBHOOK_SECRET))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);

    // The right signature triggers a config pass.
    let good = env
        .http
        .post(&hook)
        .header("X-Hub-Signature-256", sign(&body, WEBHOOK_SECRET))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 202);
    env.wait_for(0, "a config pass after the webhook", WAIT, || async {
        (config_runs(&env.get_json(&d, "/status").await) > before).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_launch_then_restart_converges_without_leaks() {
    let sim_config = cloudsim::SimConfig {
        boot_delay_ms: 1500,
        delete_delay_ms: 50,
        ..cloudsim::SimConfig::default()
    };
    let env = Env::start(sim_config, &sim::config(3, 10)).await;
    let mut d = env.spawn(0);
    // Kill as soon as a server exists but before every node is ready.
    env.wait_for(0, "a server booting", WAIT, || async {
        (!env.servers().is_empty()).then_some(())
    })
    .await;
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5));
    drop(d);
    assert!(
        env.nodes_in_db().iter().any(|s| s != "ready"),
        "the kill should land mid-launch"
    );

    let d = env.spawn(1);
    env.wait_for(1, "three ready nodes after the restart", WAIT, || async {
        let nodes = env.nodes(&d).await;
        let ready = nodes.iter().filter(|n| n["state"] == "ready").count();
        (ready == 3 && nodes.len() == 3).then_some(())
    })
    .await;
    // No leaked server: every server belongs to one node, and there is one per node.
    let nodes = ids(&env.nodes(&d).await);
    let servers = env.servers();
    assert_eq!(servers.len(), 3, "{servers:?}");
    let owners: BTreeSet<String> = servers.iter().filter_map(|s| s.1.clone()).collect();
    assert_eq!(owners, nodes, "{servers:?}");
}

fn in_force(status: &Value) -> String {
    status["revisions"]["in_force"]["revision"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn webhook(env: &Env, d: &daemon_support::Running) {
    let body = br#"{"ref": "refs/heads/main"}"#.to_vec();
    let r = env
        .http
        .post(format!("{}/hooks/git", d.url))
        .header("X-Hub-Signature-256", sign(&body, WEBHOOK_SECRET))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// `git rev-parse --short=7 main` in the work tree.
fn head_short(env: &Env) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(env.repo())
        .args(["rev-parse", "--short=7", "main"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_remote_file_url_via_the_webhook_into_its_data_dir() {
    let env = Env::start(sim::fast(), &sim::config(0, 10)).await;
    env.create_origin();
    // A long poll interval: only the webhook makes the daemon fetch after the first pass.
    let d = env.spawn_with(0, &env.origin_url(), &["--branch", "main"], 30.0);
    let status = env
        .wait_for(0, "the first revision in force", WAIT, || async {
            let s = env.get_json(&d, "/status").await;
            (!in_force(&s).is_empty()).then_some(s)
        })
        .await;
    let first = in_force(&status);
    assert_eq!(first, format!("main@{}", head_short(&env)), "{status:#}");
    assert_eq!(
        status["source"],
        format!("{}#main:nodepool.yaml", env.origin_url()),
        "{status:#}"
    );
    // The clone is a bare mirror inside the data directory (next to the state by default).
    let mirror = env.data_dir().join("config.git");
    let repo = git2::Repository::open_bare(&mirror).expect("a bare mirror in the data dir");
    assert_eq!(
        repo.find_remote("origin").unwrap().url().ok(),
        Some(env.origin_url().as_str())
    );
    assert!(
        repo.refname_to_id("refs/remotes/origin/main").is_ok(),
        "the branch is fetched"
    );

    // A new commit, pushed; the push webhook → fetched, in force, converged.
    env.commit(&sim::config(2, 10), "two ready");
    env.push();
    let pushed = format!("main@{}", head_short(&env));
    webhook(&env, &d).await;
    let ready = env
        .wait_for(
            0,
            "two ready nodes from the pushed commit",
            WAIT,
            || async {
                let ready = env.ready_nodes(&d).await;
                (ready.len() == 2).then_some(ready)
            },
        )
        .await;
    assert_eq!(in_force(&env.get_json(&d, "/status").await), pushed);

    // An invalid commit, pushed: recorded in /status with file and line, nothing changes.
    let invalid = sim::config(5, 10).replace("max-servers: 10", "max-servers: lots");
    env.commit(&invalid, "break it");
    env.push();
    let broken = format!("main@{}", head_short(&env));
    webhook(&env, &d).await;
    let status = env
        .wait_for(0, "the invalid revision in /status", WAIT, || async {
            let s = env.get_json(&d, "/status").await;
            (s["revisions"]["last_attempted"]["revision"] == broken.as_str()).then_some(s)
        })
        .await;
    let last = &status["revisions"]["last_attempted"];
    assert_eq!(last["outcome"], "invalid", "{status:#}");
    assert!(
        last["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("nodepool.yaml"),
        "{status:#}"
    );
    assert_eq!(in_force(&status), pushed, "{status:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(&env.ready_nodes(&d).await), ids(&ready));
    assert_eq!(env.nodes(&d).await.len(), 2);
    // The materialised revisions live in the data directory too.
    assert!(env.data_dir().join("revisions").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_remote_file_url_by_polling() {
    let env = Env::start(sim::fast(), &sim::config(0, 10)).await;
    env.create_origin();
    env.git_branch("stable");
    // The daemon follows `stable`; commits on `main` are not its business.
    let d = env.spawn_with(0, &env.origin_url(), &["--branch", "stable"], 0.5);
    let first = env
        .wait_for(0, "the first revision in force", WAIT, || async {
            let s = env.get_json(&d, "/status").await;
            let r = in_force(&s);
            (!r.is_empty()).then_some(r)
        })
        .await;
    assert!(first.starts_with("stable@"), "{first}");
    env.commit(&sim::config(1, 10), "one ready, on main only");
    env.push();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(in_force(&env.get_json(&d, "/status").await), first);
    assert!(env.nodes(&d).await.is_empty());
    // The same commit on `stable`: picked up by the poll alone.
    env.git_push_to("stable");
    env.wait_for(0, "one ready node after the poll", WAIT, || async {
        (env.ready_nodes(&d).await.len() == 1).then_some(())
    })
    .await;
    let now = in_force(&env.get_json(&d, "/status").await);
    assert_eq!(now, format!("stable@{}", head_short(&env)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_whose_passes_fail_is_ready_but_shown_failing_in_status() {
    let env = Env::start(sim::fast(), &sim::config(1, 10)).await;
    // Keystone refuses every token: each pass of provider east fails at once (no retry).
    let refuse = env
        .sim
        .add_fault(cloudsim::FaultRule {
            method: Some("POST".into()),
            path: "/identity/v3/auth/tokens$".into(),
            probability: 1.0,
            count: None,
            action: cloudsim::FaultAction::Error {
                status: 401,
                message: Some("The request you have made requires authentication.".into()),
            },
        })
        .unwrap();
    let d = env.spawn(0);
    // /ready keeps its meaning: 200 once every provider finished a pass, even a failed one.
    env.wait_ready(0, &d, WAIT).await;
    let status = env.get_json(&d, "/status").await;
    assert_eq!(status["ready"], true, "{status:#}");
    let failing = status["failing"].as_array().unwrap();
    assert_eq!(failing.len(), 1, "{status:#}");
    assert_eq!(failing[0]["key"], "provider:east", "{status:#}");
    let error = failing[0]["error"].as_str().unwrap();
    assert!(error.contains("authentication failed"), "{status:#}");
    assert!(failing[0]["consecutive_failures"].as_u64().unwrap() >= 1);
    assert!(failing[0]["last_success"].is_null(), "{status:#}");
    let metrics = env.get_text(&d, "/metrics").await;
    assert!(
        metrics.contains(
            "nodepool_cloud_api_calls_total{provider=\"east\",operation=\"identity POST /auth/tokens\",status=\"401\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("nodepool_reconciles_total{key=\"provider:east\",result=\"failure\"}"),
        "{metrics}"
    );

    // Keystone recovers: the next (backed-off) pass succeeds and the provider leaves `failing`.
    assert!(env.sim.sim().fault_set().remove(refuse));
    env.wait_for(0, "the provider recovered", WAIT, || async {
        let s = env.get_json(&d, "/status").await;
        let ready = env.ready_nodes(&d).await.len();
        (s["failing"].as_array()?.is_empty() && ready == 1).then_some(())
    })
    .await;
}

/// Without `--listen`, the API listens where the config's `webapp:` section says (upstream's
/// port and listen-address keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_where_the_configs_webapp_says() {
    let port = sim::free_port();
    let config = format!(
        "webapp:\n  port: {port}\n  listen_address: 127.0.0.1\n{}",
        sim::config(0, 10)
    );
    let env = Env::start(sim::fast(), &config).await;
    let d = env.spawn_listening(0, env.repo().to_str().unwrap(), &[], 30.0, None);
    assert_eq!(d.url, format!("http://127.0.0.1:{port}"));
    let live = env
        .http
        .get(format!("{}/livez", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

/// host-key-checking through the daemon: its servers answer SSH (a real SSH server behind the
/// simulator's loopback addresses), and a node requested over the API comes with the host
/// keys that server holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_node_comes_with_its_scanned_host_keys() {
    let keydir = tempfile::tempdir().unwrap();
    let keys = ssh::host_keys(keydir.path(), &["ed25519", "ecdsa"]);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    ssh::serve(listener, &keys);

    let cloud = sim::on_loopback(sim::fast());
    let config = sim::scanning(&sim::config(0, 10), port);
    let env = Env::start(cloud, &config).await;
    let d = env.spawn(0);
    env.wait_ready(0, &d, WAIT).await;
    let created: Value = env
        .http
        .post(format!("{}/api/v1/requests", d.url))
        .bearer_auth(TOKEN)
        .json(&json!({"labels": ["small"], "requestor": "zuul"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let request = env
        .wait_for(0, "the request fulfilled", WAIT, || async {
            let r = env.get_json(&d, &format!("/api/v1/requests/{id}")).await;
            (r["state"] == "fulfilled").then_some(r)
        })
        .await;
    let node = &request["node_details"][0];
    let host_keys: Vec<String> = node["host_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(host_keys, keys.public, "{request:#}");
    assert_eq!(node["connection_port"], port);
    assert!(
        node["interface_ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("127.0.0.")),
        "{request:#}"
    );
}

/// As upstream with `STATSD_HOST` set: statsd lines with upstream's names reach a UDP
/// listener — a counter and a timer per node that becomes ready, and node gauges by state
/// overall, per provider and per label, zeros included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_metrics_with_upstreams_names() {
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut env = Env::start(sim::fast(), &sim::config(2, 10)).await;
    env.daemon_env = vec![
        ("STATSD_HOST".into(), "127.0.0.1".into()),
        ("STATSD_PORT".into(), port.to_string()),
    ];
    let mut d = env.spawn(0);
    env.wait_ready(2, &d, WAIT).await;

    let wanted = [
        "nodepool.nodes.ready:2|g",
        "nodepool.nodes.deleting:0|g",
        "nodepool.provider.east.nodes.ready:2|g",
        "nodepool.label.small.nodes.ready:2|g",
        "nodepool.label.big.nodes.ready:0|g",
        "nodepool.provider.east.max_servers:10|g",
        "nodepool.launch.ready:1|c",
        "nodepool.launch.image.cirros.ready:1|c",
    ];
    let mut lines: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let mut buf = [0u8; 65536];
    while std::time::Instant::now() < deadline
        && !wanted.iter().all(|w| lines.iter().any(|l| l == w))
    {
        if let Ok(n) = listener.recv(&mut buf) {
            lines.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    for w in wanted {
        assert!(lines.iter().any(|l| l == w), "no {w:?} in {lines:#?}");
    }
    let launches = lines
        .iter()
        .filter(|l| l.as_str() == "nodepool.launch.ready:1|c")
        .count();
    assert_eq!(launches, 2, "one per ready node: {lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("nodepool.launch.ready:") && l.ends_with("|ms")),
        "a launch timer: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("nodepool.launch.provider.east.") && l.ends_with(".ready:1|c")),
        "per provider and availability zone: {lines:#?}"
    );
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).success());
}

/// Launch metrics count outcomes, not actions: with every boot ending in ERROR, each launch
/// given up after its attempts counts as a failure and none as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_given_up_count_as_failures() {
    let env = Env::start(sim::fast(), &sim::config(1, 10)).await;
    env.sim
        .add_fault(cloudsim::FaultRule {
            method: Some("POST".into()),
            path: "/servers$".into(),
            probability: 1.0,
            count: None,
            action: cloudsim::FaultAction::BootError { message: None },
        })
        .unwrap();
    let d = env.spawn(0);
    let failure = "nodepool_launches_total{provider=\"east\",result=\"failure\"}";
    let metrics = env
        .wait_for(0, "a failed launch in /metrics", WAIT, || async {
            let m = env.get_text(&d, "/metrics").await;
            m.contains(failure).then_some(m)
        })
        .await;
    assert!(
        !metrics.contains("nodepool_launches_total{provider=\"east\",result=\"success\"}"),
        "{metrics}"
    );
}
