//! `nodepool demo`: the main job on the embedded default — two simulated clouds on loopback,
//! the example config repo pointed at them, then plan, apply, list, and a second plan.

use anyhow::Context;
use nodepool::ops::{self, Paths, Workspace};
use nodepool::reconcile::apply::{ApplyEvent, ApplyOptions};
use nodepool::reconcile::render;
use nodepool::state::now_unix;
use nodepool::tables;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The example config repo and the project's image tool, embedded so the demo runs anywhere.
const EXAMPLE_CONFIG: &str = include_str!("../../examples/config-repo/nodepool.yaml");
const EXAMPLE_ELEMENTS_README: &str = include_str!("../../examples/config-repo/elements/README.md");
const NODEPOOL_DIB: &str = include_str!("../../tools/nodepool-dib");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Work here (config repo, database, images) instead of a temporary directory, and keep it.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn section(title: &str) {
    println!("\n==> {title}\n");
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Commit everything in `repo` (a new repository on first use).
fn commit_all(repo: &Path, message: &str) -> anyhow::Result<String> {
    let r = git2::Repository::open(repo).or_else(|_| git2::Repository::init(repo))?;
    let mut index = r.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = r.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("nodepool demo", "demo@localhost")?;
    let parent = r.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    Ok(
        r.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)?
            .to_string(),
    )
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::Builder::new()
        .prefix("nodepool-demo-")
        .tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let repo = dir.join("config-repo");
    let tool = dir.join("bin/nodepool-dib");
    write(&tool, NODEPOOL_DIB)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))?;
    }

    section("Starting two simulated OpenStack clouds on loopback (sim-east, sim-west)");
    let sim_config = cloudsim::SimConfig {
        boot_delay_ms: 500,
        delete_delay_ms: 200,
        ..cloudsim::SimConfig::default()
    };
    let east = cloudsim::Simulator::start(sim_config.clone()).await?;
    let west = cloudsim::Simulator::start(sim_config).await?;
    println!(
        "sim-east: {}\nsim-west: {}",
        east.auth_url(),
        west.auth_url()
    );
    let clouds = format!(
        "{}{}",
        east.clouds_yaml("sim-east"),
        west.clouds_yaml("sim-west").replacen("clouds:\n", "", 1)
    );
    write(&dir.join("clouds.yaml"), &clouds)?;

    section("The example config repo (examples/config-repo), pointed at them");
    let config = EXAMPLE_CONFIG
        .replace(
            "images-dir: /var/lib/nodepool/images",
            &format!("images-dir: {}", dir.join("images").display()),
        )
        .replace(
            "build-log-dir: /var/log/nodepool/builds",
            &format!("build-log-dir: {}", dir.join("builds").display()),
        )
        .replace(
            "dib-cmd: nodepool-dib",
            &format!("dib-cmd: {}", tool.display()),
        );
    write(&repo.join("nodepool.yaml"), &config)?;
    write(&repo.join("elements/README.md"), EXAMPLE_ELEMENTS_README)?;
    let sha = commit_all(&repo, "Example config for the demo")?;
    println!("{} at {}", repo.display(), &sha[..7]);

    let paths = Paths {
        config: repo.clone(),
        secure: None,
        clouds: Some(dir.join("clouds.yaml")),
        state: dir.join("state/nodepool.db"),
    };
    let options = ApplyOptions {
        poll_interval: Duration::from_millis(250),
        ..ApplyOptions::default()
    };

    section("nodepool plan");
    let mut ws = Workspace::open(paths.clone())?;
    let lease = ops::apply::lease(&mut ws.store, "nodepool demo")?;
    let planned = ops::plan::plan(&mut ws, now_unix()).await?;
    print!(
        "{}",
        render::text(&planned.doc.plan, planned.diff.as_deref())
    );

    section("nodepool apply --auto-approve");
    let reporter = Arc::new(|e: &ApplyEvent| match e {
        ApplyEvent::Started { .. } | ApplyEvent::NodeReady { .. } => {}
        ApplyEvent::Done { address, detail } => println!("{address}: {detail}"),
        ApplyEvent::Failed { address, error } => println!("{address}: FAILED: {error}"),
    });
    let (report, _) = ops::apply::apply(ws, &planned.doc, lease, options.clone(), reporter).await?;
    println!(
        "\nApply complete: {} done, {} failed.",
        report.done,
        report.failed.len()
    );

    let ws = Workspace::open(paths.clone())?;
    section("nodepool dib-image-list");
    println!("{}", tables::builds(&ws.store.read().builds()?, now_unix()));
    section("nodepool image-list");
    println!(
        "{}",
        tables::uploads(&ws.store.read().uploads()?, now_unix())
    );
    section("nodepool list");
    let clouds_now = ops::inventory::servers(&ws).await;
    let statuses: BTreeMap<String, Option<BTreeMap<String, String>>> =
        clouds_now.into_iter().map(|(p, r)| (p, r.ok())).collect();
    println!(
        "{}",
        tables::nodes(&ws.store.read().nodes()?, &statuses, now_unix(), false)
    );
    drop(ws);

    section("nodepool plan (again: the world has converged)");
    let mut ws = Workspace::open(paths)?;
    let again = ops::plan::plan(&mut ws, now_unix()).await?;
    print!("{}", render::text(&again.doc.plan, again.diff.as_deref()));

    east.shutdown().await;
    west.shutdown().await;
    if args.dir.is_some() {
        println!("\nEverything is in {}", dir.display());
    }
    Ok(if report.failed.is_empty() && again.doc.plan.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
