//! `nodepool plan` and `nodepool apply`.

use super::StateArgs;
use anyhow::{Context, bail};
use nodepool::ops::{self, Workspace};
use nodepool::reconcile::apply::{ApplyEvent, ApplyOptions, ApplyReport};
use nodepool::reconcile::render::{self, PlanDocument};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Save the plan to this file, for `nodepool apply FILE`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the plan as a versioned JSON document.
    #[arg(long)]
    json: bool,
    /// Exit 0 when there is nothing to do, 2 when there are changes (1 on errors).
    #[arg(long)]
    detailed_exitcode: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    state: StateArgs,
    /// A plan saved by `nodepool plan --out` (refused if the world has moved since).
    plan_file: Option<PathBuf>,
    /// Apply without asking for confirmation.
    #[arg(long)]
    auto_approve: bool,
    /// Seconds between server lists while waiting for servers.
    #[arg(long, default_value_t = 2.0)]
    poll_interval: f64,
}

fn now() -> i64 {
    nodepool::state::now_unix()
}

fn header(ws: &Workspace) -> anyhow::Result<String> {
    let last = ws.store.read().last_applied_config()?;
    Ok(format!(
        "Config revision: {} (last applied: {})\n\n",
        ws.revision,
        last.map_or_else(|| "none".to_owned(), |r| r.revision)
    ))
}

pub async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let planned = ops::plan::plan(&mut ws, now()).await?;
    if let Some(out) = &args.out {
        write_private(out, &serde_json::to_vec_pretty(&planned.doc)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&planned.doc)?);
    } else {
        print!("{}", header(&ws)?);
        print!(
            "{}",
            render::text(&planned.doc.plan, planned.diff.as_deref())
        );
        if let Some(out) = &args.out {
            println!(
                "\nSaved the plan to {}. Apply it with: nodepool apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(
        match (args.detailed_exitcode, planned.doc.plan.is_empty()) {
            (true, false) => ExitCode::from(2),
            _ => ExitCode::SUCCESS,
        },
    )
}

/// Write a file readable by its owner only (plans name servers and addresses).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(args.state.paths())?;
    let lease = ops::apply::lease(&mut ws.store, "nodepool apply")?;
    let doc: PlanDocument = match &args.plan_file {
        Some(f) => {
            let text = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            let doc: PlanDocument = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a saved plan", f.display()))?;
            if doc.format_version != render::FORMAT_VERSION {
                bail!(
                    "{} has plan format {}, this version reads {}",
                    f.display(),
                    doc.format_version,
                    render::FORMAT_VERSION
                );
            }
            if let Some(why) = ops::apply::staleness(&mut ws, &doc, now()).await? {
                bail!("refusing a stale plan: {why}; run `nodepool plan` again");
            }
            doc
        }
        None => {
            let planned = ops::plan::plan(&mut ws, now()).await?;
            print!("{}", header(&ws)?);
            print!(
                "{}",
                render::text(&planned.doc.plan, planned.diff.as_deref())
            );
            if planned.doc.plan.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            if !args.auto_approve {
                confirm()?;
            }
            planned.doc
        }
    };
    run_apply(ws, doc, lease, args.poll_interval).await
}

/// Carry out `doc` with progress lines and the closing summary.
pub(super) async fn run_apply(
    ws: Workspace,
    doc: PlanDocument,
    lease: nodepool::state::LeaseGuard,
    poll_interval: f64,
) -> anyhow::Result<ExitCode> {
    if doc.plan.is_empty() {
        println!("No changes.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut options = ApplyOptions {
        poll_interval: Duration::from_secs_f64(poll_interval.max(0.05)),
        ..ApplyOptions::default()
    };
    // On a terminal, uploads get progress bars and lines are printed above them.
    let bars = std::io::stdout()
        .is_terminal()
        .then(indicatif::MultiProgress::new);
    if let Some(multi) = &bars {
        let multi = multi.clone();
        let by_address = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
            String,
            indicatif::ProgressBar,
        >::new()));
        options.upload_progress = Some(Arc::new(move |address: &str, sent: u64, total: u64| {
            let mut bars = by_address.lock().expect("progress bars");
            let bar = bars.entry(address.to_owned()).or_insert_with(|| {
                let b = multi.add(indicatif::ProgressBar::new(total));
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("a valid template"),
                );
                b.set_message(address.to_owned());
                b
            });
            bar.set_position(sent);
            if sent >= total {
                bar.finish_and_clear();
            }
        }));
    }
    let printer = bars.clone();
    let reporter = Arc::new(move |e: &ApplyEvent| {
        let line = match e {
            ApplyEvent::Started { address } => format!("{address}: working..."),
            ApplyEvent::Done { address, detail } => format!("{address}: done ({detail})"),
            ApplyEvent::Failed { address, error } => format!("{address}: FAILED: {error}"),
            ApplyEvent::NodeReady { .. } => return,
        };
        match &printer {
            Some(m) => {
                let _ = m.println(line);
            }
            None => println!("{line}"),
        }
    });
    println!();
    let (report, _) = ops::apply::apply(ws, &doc, lease, options, reporter).await?;
    Ok(summary(&doc, &report))
}

pub(super) fn confirm() -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "standard input is not a terminal: refusing to ask for confirmation; use --auto-approve or a saved plan"
        );
    }
    print!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("apply cancelled");
    }
    Ok(())
}

fn summary(doc: &PlanDocument, report: &ApplyReport) -> ExitCode {
    let s = doc.summary;
    if report.failed.is_empty() {
        println!(
            "\nApply complete! Actions: {} added, {} changed, {} destroyed.",
            s.add, s.change, s.destroy
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "\nApply finished with {} failed action(s) of {}; the next run picks them up:",
            report.failed.len(),
            doc.plan.actions.len()
        );
        for (address, error) in &report.failed {
            println!("  {address}: {error}");
        }
        ExitCode::FAILURE
    }
}
