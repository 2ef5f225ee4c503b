//! `image-build`, `image-upload`, `image-delete` (one-action plans, shown and carried out) and
//! `image-pause` / `image-unpause`.

use super::StateArgs;
use nodepool::ops::images::PauseOutcome;
use nodepool::ops::{self, Workspace};
use nodepool::reconcile::plan::Plan;
use nodepool::reconcile::render::{self, PlanDocument};
use nodepool::state::now_unix;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The diskimage to build now.
    image: String,
}

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    #[command(flatten)]
    state: StateArgs,
    provider: String,
    image: String,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The upload to delete (as `image-list` shows it).
    upload_id: Option<String>,
    /// Delete this build instead (as `dib-image-list` shows it).
    #[arg(long, conflicts_with = "upload_id")]
    build: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The diskimage to pause.
    image: String,
    /// Why (shown in `plan` and `dib-image-list` until it is unpaused).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct UnpauseArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The diskimage to unpause.
    image: String,
}

#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The provider whose cloud holds the images.
    provider: String,
    /// Adopt only the images of this diskimage.
    image: Option<String>,
    /// Show what would be adopted; record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

async fn run(mut ws: Workspace, plan: Plan) -> anyhow::Result<ExitCode> {
    let lease = ops::apply::lease(&mut ws.store, "nodepool image command")?;
    let stamp = ws.store.read().stamp()?;
    print!("{}", render::text(&plan, None));
    let doc = PlanDocument::new(
        plan,
        ws.revision.clone(),
        stamp.lineage,
        stamp.serial,
        now_unix(),
    );
    super::plan::run_apply(ws, doc, lease, 2.0).await
}

pub async fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let planned = ops::images::build_plan(&mut ws, &args.image, now_unix()).await?;
    run(ws, planned.doc.plan).await
}

pub async fn upload(args: UploadArgs) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    let plan = ops::images::upload_plan(&ws, &args.provider, &args.image)?;
    run(ws, plan).await
}

pub async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let ws = Workspace::open(args.state.paths())?;
    let plan = ops::images::delete_plan(&ws, args.upload_id.as_deref(), args.build.as_deref())?;
    run(ws, plan).await
}

pub fn pause(args: PauseArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let name = &args.image;
    match ops::images::pause(&mut ws, name, args.reason.as_deref())? {
        PauseOutcome::Changed => println!(
            "diskimage {name} paused: no build or upload of it is planned until \
             `nodepool image-unpause {name}`"
        ),
        PauseOutcome::Unchanged(p) => println!(
            "diskimage {name} was already paused{}",
            p.map(|p| format!(" ({} ago)", ops::images::paused_for(&p)))
                .unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unpause(args: UnpauseArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let name = &args.image;
    match ops::images::unpause(&mut ws, name)? {
        PauseOutcome::Changed => println!("diskimage {name} unpaused"),
        PauseOutcome::Unchanged(_) => println!("diskimage {name} was not paused"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn adopt(args: AdoptArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let out =
        ops::images::adopt(&mut ws, &args.provider, args.image.as_deref(), args.dry_run).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if out.adopted.is_empty() {
        println!(
            "no image to adopt in provider {}: every image carrying its ownership properties \
             is owned by an upload record already{}",
            args.provider,
            if out.not_adopted.is_empty() {
                ""
            } else {
                " or is left alone below"
            }
        );
    } else {
        println!("{}", nodepool::tables::adoptions(&out.adopted));
        let n = out.adopted.len();
        let s = if n == 1 { "" } else { "s" };
        if args.dry_run {
            println!("{n} image{s} would be adopted (dry run: nothing recorded)");
        } else {
            println!(
                "{n} image{s} adopted as ready upload{s}: labels launch from the newest, and \
                 uploads of new builds replace them"
            );
        }
    }
    for n in &out.not_adopted {
        println!(
            "left alone: {} ({}) in {}: {}",
            n.external_name, n.external_id, n.provider, n.why
        );
    }
    Ok(ExitCode::SUCCESS)
}
