//! Operator commands: `list`, `request`, `release`, `delete`, `hold`, `erase`, `request-list`,
//! `image-list`, `dib-image-list`, `alien-image-list`, `info`, `doctor`.

use super::StateArgs;
use anyhow::bail;
use nodepool::ops::{self, Workspace};
use nodepool::state::{NewRequest, now_unix};
use nodepool::tables;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    state: StateArgs,
    /// More columns.
    #[arg(long)]
    detail: bool,
    #[arg(long)]
    json: bool,
}

/// Print provider errors; true when there were any.
fn report_errors<T>(results: &BTreeMap<String, Result<T, String>>) -> bool {
    let mut any = false;
    for (p, r) in results {
        if let Err(e) = r {
            eprintln!("provider {p}: {e}");
            any = true;
        }
    }
    any
}

pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    let nodes = ws.store.read().nodes()?;
    let clouds = ops::inventory::servers(&ws).await;
    let failed = report_errors(&clouds);
    if args.json {
        let doc = serde_json::json!({
            "nodes": nodes,
            "cloud_errors": clouds.iter().filter_map(|(p, r)| r.as_ref().err().map(|e| (p.clone(), e.clone()))).collect::<BTreeMap<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let statuses: BTreeMap<String, Option<BTreeMap<String, String>>> =
            clouds.into_iter().map(|(p, r)| (p, r.ok())).collect();
        println!(
            "{}",
            tables::nodes(&nodes, &statuses, now_unix(), args.detail)
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    #[command(flatten)]
    state: StateArgs,
    /// One label per node wanted.
    #[arg(required = true)]
    labels: Vec<String>,
    #[arg(long, default_value = "nodepool-cli")]
    requestor: String,
    /// Lower is served first.
    #[arg(long, default_value_t = 100)]
    priority: i64,
    #[arg(long)]
    tenant: Option<String>,
    /// Wait until the request is fulfilled or failed (served by `apply` or the daemon).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[arg(long)]
    json: bool,
}

pub async fn request(args: RequestArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let mut r = ops::nodes::request(
        &mut ws,
        &NewRequest {
            labels: args.labels.clone(),
            requestor: args.requestor.clone(),
            priority: args.priority,
            tenant: args.tenant.clone(),
        },
    )?;
    if !args.json {
        println!("request {} submitted for {}", r.id, args.labels.join(", "));
    }
    if args.wait {
        r = ops::nodes::wait_request(&ws, &r.id, Duration::from_secs(args.timeout)).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if args.wait {
        println!("request {} {}: nodes {}", r.id, r.state, r.nodes.join(", "));
    }
    Ok(if r.state == nodepool::state::RequestState::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The node id (as `nodepool list` shows it).
    node_id: String,
}

pub fn release(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let n = ops::nodes::release(&mut ws, &args.node_id)?;
    println!("node {} is {}; the next apply deletes it", n.id, n.state);
    Ok(ExitCode::SUCCESS)
}

pub fn delete(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let n = ops::nodes::delete(&mut ws, &args.node_id)?;
    println!(
        "node {} is {}; the next apply deletes its server and record",
        n.id, n.state
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    #[command(flatten)]
    state: StateArgs,
    node_id: String,
    /// Why the node is held.
    #[arg(long)]
    reason: Option<String>,
    /// Release the hold (delete the node) after this many seconds.
    #[arg(long)]
    expires: Option<i64>,
}

pub fn hold(args: HoldArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let n = ops::nodes::hold(&mut ws, &args.node_id, args.reason.as_deref(), args.expires)?;
    println!(
        "node {} is held{}",
        n.id,
        args.expires
            .map(|e| format!(" for {e} s"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct TableArgs {
    #[command(flatten)]
    state: StateArgs,
    #[arg(long)]
    json: bool,
}

pub fn request_list(args: TableArgs) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    let reqs = ws.store.read().requests()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reqs)?);
    } else {
        println!("{}", tables::requests(&reqs, now_unix()));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn image_list(args: TableArgs) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    let ups = ws.store.read().uploads()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ups)?);
    } else {
        println!("{}", tables::uploads(&ups, now_unix()));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn dib_image_list(args: TableArgs) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    let builds = ws.store.read().builds()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&builds)?);
    } else {
        println!("{}", tables::builds(&builds, now_unix()));
        for p in ws.store.read().image_pauses()? {
            println!(
                "paused: {} (with `nodepool image-pause` {} ago{})",
                p.image_name,
                ops::images::paused_for(&p),
                p.reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn alien_image_list(
    args: TableArgs,
    provider: Option<String>,
) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    let mut found = ops::inventory::alien_images(&ws).await;
    if let Some(p) = &provider {
        if !found.contains_key(p) {
            bail!("provider {p} is not configured");
        }
        found.retain(|k, _| k == p);
    }
    let failed = report_errors(&found);
    let rows: Vec<(String, String, String)> = found
        .iter()
        .filter_map(|(p, r)| r.as_ref().ok().map(|v| (p, v)))
        .flat_map(|(p, v)| {
            v.iter()
                .map(move |(n, id)| (p.clone(), n.clone(), id.clone()))
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{}", tables::alien_images(&rows));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn info(args: TableArgs, provider: String) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    if ws.config().provider(&provider).is_none() {
        bail!("provider {provider} is not configured");
    }
    let nodes = ws.store.read().nodes_of_provider(&provider)?;
    let ups = ws.store.read().uploads_of_provider(&provider)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"nodes": nodes, "uploads": ups}))?
        );
    } else {
        println!("Nodes of provider {provider}:");
        println!(
            "{}",
            tables::nodes(&nodes, &BTreeMap::new(), now_unix(), false)
        );
        println!("\nImage uploads of provider {provider}:");
        println!("{}", tables::uploads(&ups, now_unix()));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The provider whose resources and records are all deleted.
    provider: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
}

pub async fn erase(args: EraseArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let lease = ops::apply::lease(&mut ws.store, "nodepool erase")?;
    let now = now_unix();
    let (world, stamp) = ops::plan::observe(&mut ws, now).await?;
    let plan = ops::nodes::erase_plan(&world, &args.provider)?;
    print!("{}", nodepool::reconcile::render::text(&plan, None));
    if plan.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.auto_approve {
        super::plan::confirm()?;
    }
    let doc = nodepool::reconcile::render::PlanDocument::new(
        plan,
        ws.revision.clone(),
        stamp.lineage,
        stamp.serial,
        now,
    );
    super::plan::run_apply(ws, doc, lease, 2.0).await
}

pub async fn doctor(args: TableArgs, provider: Option<String>) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    if let Some(p) = &provider
        && ws.config().provider(p).is_none()
    {
        bail!("provider {p} is not configured");
    }
    let wanted = |p: &str| provider.as_deref().is_none_or(|w| w == p);
    let mut failed = false;
    let mut reports = Vec::new();
    for (name, why) in ws.unresolved.iter().filter(|(p, _)| wanted(p)) {
        eprintln!("provider {name}: FAILED\n  credentials: {why}");
        failed = true;
    }
    for (name, client) in ws.clients.iter().filter(|(p, _)| wanted(p)) {
        let r = nodepool::cloud::doctor::doctor(client).await;
        failed |= r.verdict == nodepool::cloud::doctor::Verdict::Failed;
        if !args.json {
            println!("{}", tables::doctor(name, &r));
        }
        reports.push((name.clone(), r));
    }
    if args.json {
        let doc: BTreeMap<String, _> = reports.into_iter().collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
