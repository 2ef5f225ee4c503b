//! Running the real `nodepool daemon` binary against the in-process simulator, on a git config repo in a temp dir.

#![allow(dead_code)]

use cloudsim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789";
pub const WEBHOOK_SECRET: &str = "webhook-secret-abcdef";

pub struct Env {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// Extra environment of the daemons this env spawns.
    pub daemon_env: Vec<(String, String)>,
}

pub struct Running {
    pub child: Child,
    pub url: String,
}

pub fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Env {
    pub async fn start(sim: SimConfig, config: &str) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = Simulator::start(sim).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clouds.yaml"), sim.clouds_yaml("east")).unwrap();
        std::fs::write(dir.path().join("tokens"), format!("# tokens\n{TOKEN}\n")).unwrap();
        std::fs::write(dir.path().join("webhook-secret"), WEBHOOK_SECRET).unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        let env = Env {
            sim,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            daemon_env: Vec::new(),
        };
        env.commit(config, "initial config");
        env
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    pub fn commit(&self, config: &str, message: &str) {
        std::fs::write(self.repo().join("nodepool.yaml"), config).unwrap();
        git(&self.repo(), &["add", "nodepool.yaml"]);
        git(&self.repo(), &["commit", "-q", "-m", message]);
    }

    /// The bare repository `origin.git` next to the work tree, which the work tree pushes to.
    pub fn origin(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    /// `file://` URL of [`Env::origin`].
    pub fn origin_url(&self) -> String {
        format!("file://{}", self.origin().display())
    }

    /// Create [`Env::origin`] and push the work tree's `main` to it.
    pub fn create_origin(&self) {
        git(
            self.dir.path(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        let origin = self.origin();
        git(
            &self.repo(),
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        self.push();
    }

    /// Push the work tree's `main` to [`Env::origin`].
    pub fn push(&self) {
        git(&self.repo(), &["push", "-q", "origin", "main"]);
    }

    /// Create branch `name` on [`Env::origin`] at the work tree's `main`.
    pub fn git_branch(&self, name: &str) {
        self.git_push_to(name);
    }

    /// Push the work tree's `main` to branch `name` of [`Env::origin`].
    pub fn git_push_to(&self, name: &str) {
        git(
            &self.repo(),
            &["push", "-q", "origin", &format!("main:refs/heads/{name}")],
        );
    }

    /// The default data directory of a daemon started by [`Env::spawn`] (next to the state).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("nodepool-data")
    }

    /// Start the daemon on the local work tree; its log goes to `daemon-<n>.log` in the temp dir.
    pub fn spawn(&self, n: usize) -> Running {
        self.spawn_with(n, self.repo().to_str().unwrap(), &[], 30.0)
    }

    /// Start the daemon with `-c <source>` and `extra` arguments (`--branch`, ...), polling
    /// the source every `poll_interval` seconds.
    pub fn spawn_with(
        &self,
        n: usize,
        source: &str,
        extra: &[&str],
        poll_interval: f64,
    ) -> Running {
        self.spawn_listening(n, source, extra, poll_interval, Some("127.0.0.1:0"))
    }

    /// [`Env::spawn_with`], with `--listen` only if `listen` is given (otherwise the daemon
    /// takes its address from the config's `webapp:`).
    pub fn spawn_listening(
        &self,
        n: usize,
        source: &str,
        extra: &[&str],
        poll_interval: f64,
        listen: Option<&str>,
    ) -> Running {
        let log = std::fs::File::create(self.dir.path().join(format!("daemon-{n}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nodepool"))
            .arg("daemon")
            .arg("-c")
            .arg(source)
            .args(extra)
            .arg("--poll-interval")
            .arg(poll_interval.to_string())
            .arg("--state")
            .arg(self.state())
            .arg("--clouds")
            .arg(self.dir.path().join("clouds.yaml"))
            .args(listen.into_iter().flat_map(|l| ["--listen", l]))
            .args(["--apply-poll-interval", "0.1", "--shutdown-timeout", "10"])
            .arg("--api-token-file")
            .arg(self.dir.path().join("tokens"))
            .arg("--webhook-secret-file")
            .arg(self.dir.path().join("webhook-secret"))
            .env_remove("NODEPOOL_CONFIG_REPO")
            .env_remove("NODEPOOL_SECURE")
            .env_remove("NODEPOOL_STATE")
            .env_remove("OS_CLIENT_CONFIG_FILE")
            .env_remove("STATSD_HOST")
            .env("NODEPOOL_LOG", "info,nodepool=debug")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn nodepool daemon");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}; log:\n{}", self.log(n)))
            .to_owned();
        Running { child, url }
    }

    pub fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("daemon-{n}.log"))).unwrap_or_default()
    }

    pub async fn get_json(&self, d: &Running, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", d.url))
            .header("accept", "application/json")
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `path`'s body as text (no `Accept`, no token: what a dashboard or scraper sends).
    pub async fn get_text(&self, d: &Running, path: &str) -> String {
        self.http
            .get(format!("{}{path}", d.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn nodes(&self, d: &Running) -> Vec<Value> {
        self.get_json(d, "/node-list")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn ready_nodes(&self, d: &Running) -> Vec<Value> {
        self.nodes(d)
            .await
            .into_iter()
            .filter(|n| n["state"] == "ready")
            .collect()
    }

    /// The states of the nodes in the database, read directly.
    pub fn nodes_in_db(&self) -> Vec<String> {
        let store = nodepool::state::Store::open(self.state()).unwrap();
        store
            .read()
            .nodes()
            .unwrap()
            .into_iter()
            .map(|n| n.state.to_string())
            .collect()
    }

    /// Live servers in the simulator (not the tombstones of deleted ones) with their node id.
    pub fn servers(&self) -> Vec<(String, Option<String>)> {
        let store = self.sim.sim().store();
        store
            .servers
            .values()
            .filter(|s| s.is_live())
            .map(|s| (s.id.clone(), s.metadata.get("nodepool_node_id").cloned()))
            .collect()
    }

    /// Poll `check` until it returns `Some`, or panic with the daemon's log after `timeout`.
    /// Wait until daemon `n` answers `/ready` with 200.
    pub async fn wait_ready(&self, n: usize, d: &Running, timeout: Duration) {
        self.wait_for(n, "ready", timeout, || async {
            let r = self
                .http
                .get(format!("{}/ready", d.url))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    pub async fn wait_for<T, F, Fut>(
        &self,
        n: usize,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; daemon log:\n{}", self.log(n));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Running {
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill");
    }

    /// Wait for exit (bounded); the exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the daemon did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
