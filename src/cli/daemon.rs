//! `nodepool daemon`, `launcher`, `builder` (the long-running reconciler and its HTTP API) and `nodepool status`.

use anyhow::{Context, bail};
use clap::ValueEnum;
use nodepool::api::{ApiState, router};
use nodepool::daemon::logging::{self, LogFormat};
use nodepool::daemon::{Daemon, DaemonOptions, Role};
use nodepool::secret::Secret;
use nodepool::watch::SourceSpec;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The config repository: a local git work tree (or a file in one), or a remote URL
    /// (https://, ssh://, git@host:path, file://) mirrored into the data directory.
    #[arg(short = 'c', long = "config", env = "NODEPOOL_CONFIG_REPO")]
    pub config: String,
    /// The branch followed (remote repositories).
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The config file inside the repository.
    #[arg(long = "config-file", default_value = "nodepool.yaml")]
    pub config_file: PathBuf,
    /// The secure file (secrets kept out of the config repo).
    #[arg(short = 's', long = "secure", env = "NODEPOOL_SECURE")]
    pub secure: Option<PathBuf>,
    /// The clouds.yaml with the providers' credentials (default: where openstacksdk looks).
    #[arg(long = "clouds", env = "OS_CLIENT_CONFIG_FILE")]
    pub clouds: Option<PathBuf>,
    /// The state database (SQLite).
    #[arg(
        long = "state",
        env = "NODEPOOL_STATE",
        default_value = "/var/lib/nodepool/nodepool.db"
    )]
    pub state: PathBuf,
    /// Where the HTTP API listens (port 0: any free port; the address is printed on the
    /// first line of stdout). Default: the config's `webapp:` (as upstream), else
    /// 127.0.0.1:8005.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Seconds between polls of the config source and passes over idle providers.
    #[arg(long = "poll-interval", default_value = "60")]
    pub poll_interval: f64,
    /// Seconds between looks at booting or deleting servers while an apply waits for them.
    #[arg(long = "apply-poll-interval", default_value = "2")]
    pub apply_poll_interval: f64,
    /// Mirror of a remote config repo and materialised revisions (default: next to --state).
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: LogFormatArg,
    /// Also write logs to this directory (rotated daily).
    #[arg(long = "log-dir")]
    pub log_dir: Option<PathBuf>,
    /// A file with the API's bearer tokens, one per line (`#` comments allowed).
    #[arg(long = "api-token-file", env = "NODEPOOL_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// A file holding the push webhook's shared secret.
    #[arg(long = "webhook-secret-file", env = "NODEPOOL_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds passes in flight get to finish on SIGTERM/SIGINT.
    #[arg(long = "shutdown-timeout", default_value = "30")]
    pub shutdown_timeout: f64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The daemon's base URL.
    #[arg(long, env = "NODEPOOL_URL", default_value = "http://127.0.0.1:8005")]
    pub url: String,
    /// Print the JSON as the daemon returns it.
    #[arg(long)]
    pub json: bool,
}

fn seconds(what: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{what} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

/// `-c`: a URL (remote) or a local path (a work tree, or a file in one).
fn source_spec(args: &DaemonArgs, data_dir: &Path) -> SourceSpec {
    let c = &args.config;
    let is_url =
        c.contains("://") || (c.contains('@') && c.contains(':') && !Path::new(c).exists());
    if is_url {
        return SourceSpec::remote(c.clone(), args.branch.clone(), data_dir)
            .config_file(&args.config_file);
    }
    let path = PathBuf::from(c);
    if path.is_file() {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file = path.file_name().map(PathBuf::from).unwrap_or_default();
        return SourceSpec::local(dir).config_file(file);
    }
    SourceSpec::local(path).config_file(&args.config_file)
}

fn read_secrets(path: &Path) -> anyhow::Result<Vec<Secret>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::new)
        .collect())
}

pub fn run(args: DaemonArgs, role: Role) -> anyhow::Result<ExitCode> {
    let format = match args.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    let _logs = logging::init(format, args.log_dir.as_deref()).context("setting up logs")?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        args.state
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("nodepool-data")
    });
    let mut opts = DaemonOptions::new(source_spec(&args, &data_dir), args.state.clone(), data_dir);
    opts.secure = args.secure.clone();
    opts.clouds = args.clouds.clone();
    opts.role = role;
    opts.poll_interval = seconds("--poll-interval", args.poll_interval)?;
    opts.apply_poll = seconds("--apply-poll-interval", args.apply_poll_interval)?;
    // As upstream: statsd metrics when STATSD_HOST is set.
    opts.statsd = nodepool::daemon::statsd::StatsdTarget::from_env()?;
    let grace = seconds("--shutdown-timeout", args.shutdown_timeout)?;
    let mut tokens = match &args.api_token_file {
        Some(p) => read_secrets(p)?,
        None => Vec::new(),
    };
    // The secure file may hold them too (`api-tokens:`, `webhook-secret:`).
    let secure = match &args.secure {
        Some(p) => Some(nodepool::config::load_secure(
            p,
            &nodepool::config::LoadOptions::new(p).env,
        )?),
        None => None,
    };
    tokens.extend(secure.iter().flat_map(|s| s.api_tokens.iter().cloned()));
    let from_secure = secure.and_then(|s| s.webhook_secret);
    let webhook_secret = match &args.webhook_secret_file {
        Some(p) => Some(
            read_secrets(p)?
                .into_iter()
                .next()
                .with_context(|| format!("{} holds no secret", p.display()))?,
        ),
        None => from_secure,
    };
    if tokens.is_empty() {
        tracing::warn!(
            "no API tokens configured (--api-token-file or api-tokens in the secure file): the node API refuses every call"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let daemon = Daemon::new(opts)?;
        let listen = match args.listen {
            Some(a) => a,
            None => {
                let d = daemon.clone();
                tokio::task::spawn_blocking(move || d.configured_listen())
                    .await?
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8005)))
            }
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            out.flush()?;
        }
        tracing::info!(%addr, "HTTP API listening");
        let app = router(Arc::new(ApiState {
            daemon: daemon.clone(),
            tokens,
            webhook_secret,
        }));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = {
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            })
        };
        daemon
            .run(
                async {
                    shutdown_signal().await;
                },
                grace,
            )
            .await?;
        let _ = stop_tx.send(true);
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
            Ok(_) => {}
            Err(_) => tracing::warn!("HTTP connections still open after 5 s; closing"),
        }
        tracing::info!("stopped");
        anyhow::Ok(())
    });
    // Applies cut short at the grace period may still hold a blocking thread: do not wait.
    rt.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// `nodepool status`: the daemon's `/status`, summarised.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}/status", args.url.trim_end_matches('/'));
    let value: serde_json::Value = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        if !response.status().is_success() {
            bail!("{url}: HTTP {}", response.status());
        }
        Ok(response.json().await?)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_status(&value));
    let ready = value["ready"].as_bool().unwrap_or(false);
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn render_status(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    let _ = writeln!(out, "Source:   {}", s(&v["source"]));
    let _ = writeln!(out, "Role:     {}", s(&v["role"]));
    let _ = writeln!(
        out,
        "Ready:    {}",
        if v["ready"].as_bool().unwrap_or(false) {
            "yes"
        } else {
            "no"
        }
    );
    let rev = &v["revisions"];
    let _ = writeln!(out, "In force: {}", s(&rev["in_force"]["revision"]));
    let last = &rev["last_attempted"];
    if !last.is_null() {
        let _ = writeln!(
            out,
            "Last attempted: {} ({})",
            s(&last["revision"]),
            s(&last["outcome"])
        );
        for e in last["errors"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {}:{}:{}: {}",
                s(&e["file"]),
                e["line"],
                e["column"],
                s(&e["message"])
            );
        }
        if let Some(m) = last["message"].as_str() {
            let _ = writeln!(out, "  {m}");
        }
    }
    let _ = writeln!(
        out,
        "\nKey                      State        Runs  Failures  Last error"
    );
    for k in v["keys"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:>4}  {:>8}  {}",
            s(&k["key"]),
            s(&k["state"]),
            k["runs"],
            k["consecutive_failures"],
            k["last_error"].as_str().unwrap_or("")
        );
    }
    let failing: Vec<&serde_json::Value> = v["failing"].as_array().into_iter().flatten().collect();
    if !failing.is_empty() {
        let _ = writeln!(out, "\nFailing:");
        for f in failing {
            let _ = writeln!(
                out,
                "  {}: {} failure(s) in a row since {}; last success {}: {}",
                s(&f["key"]),
                f["consecutive_failures"],
                s(&f["since"]),
                f["last_success"].as_str().unwrap_or("never (since start)"),
                s(&f["error"])
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_failing_keys() {
        let v = serde_json::json!({
            "source": "file:///srv/config.git main",
            "role": "daemon",
            "ready": true,
            "revisions": {"in_force": {"revision": "main@0123abcd"}},
            "keys": [{"key": "provider:east", "state": "backoff", "runs": 3,
                      "consecutive_failures": 2, "last_error": "authentication failed"}],
            "failing": [{"key": "provider:east", "error": "authentication failed",
                         "consecutive_failures": 2, "since": "2026-11-24T04:00:00Z",
                         "last_success": null}],
        });
        let text = render_status(&v);
        assert!(
            text.contains("Failing:\n  provider:east: 2 failure(s) in a row since 2026-11-24T04:00:00Z; last success never (since start): authentication failed"),
            "{text}"
        );
        let healthy = serde_json::json!({"ready": true, "keys": [], "failing": []});
        assert!(!render_status(&healthy).contains("Failing"));
    }
}
