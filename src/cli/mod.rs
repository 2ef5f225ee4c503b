//! The command line: clap definitions and the thin commands that call library operations.
//!
//! Invariant: only this module knows clap; commands parse arguments, call one operation in the
//! library, and hand its result to a renderer. `anyhow` is used here and nowhere else.

mod config_validate;
mod daemon;
mod demo;
mod images;
mod nodes;
mod plan;

use clap::{Parser, Subcommand};
use nodepool::ops::Paths;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "nodepool",
    version,
    about = "Nodepool as a declarative GitOps reconciler for OpenStack CI nodes"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command that reads the config takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// The config: a nodepool.yaml file, or a config repo directory holding one.
    #[arg(
        short = 'c',
        long = "config",
        env = "NODEPOOL_CONFIG",
        default_value = "/etc/nodepool/nodepool.yaml"
    )]
    pub config: PathBuf,
    /// The secure file (secrets kept out of the config repo).
    #[arg(short = 's', long = "secure", env = "NODEPOOL_SECURE")]
    pub secure: Option<PathBuf>,
}

/// Options of commands that also use the database and the clouds.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
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
}

impl StateArgs {
    pub fn paths(&self) -> Paths {
        Paths {
            config: self.config.config.clone(),
            secure: self.config.secure.clone(),
            clouds: self.clouds.clone(),
            state: self.state.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job on an embedded default: two simulated clouds, the example config repo,
    /// plan, apply, list, and a second plan that says "No changes.".
    Demo(demo::DemoArgs),
    /// Check the configuration: schema, references, and every problem with file and line.
    ConfigValidate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what apply would do: the config change since the last apply, then every action.
    Plan(plan::PlanArgs),
    /// Carry out a plan (a saved one, or a fresh one after confirmation).
    Apply(plan::ApplyArgs),
    /// List nodes (and what their clouds say of each server).
    List(nodes::ListArgs),
    /// Ask for nodes, as Zuul does.
    Request(nodes::RequestArgs),
    /// The consumer is done with a node: it is deleted by the next apply.
    Release(nodes::NodeArgs),
    /// Delete a node (its server is deleted by the next apply).
    Delete(nodes::NodeArgs),
    /// Hold a node for an operator.
    Hold(nodes::HoldArgs),
    /// Delete every resource of ours in a provider's cloud and all its records (shown first).
    Erase(nodes::EraseArgs),
    /// List node requests.
    RequestList(nodes::TableArgs),
    /// List image uploads.
    ImageList(nodes::TableArgs),
    /// List image builds.
    DibImageList(nodes::TableArgs),
    /// List images in the clouds that look like ours but no upload record owns.
    AlienImageList {
        #[command(flatten)]
        args: nodes::TableArgs,
        provider: Option<String>,
    },
    /// Write a consistent copy of the database (safe while the daemon runs); restore by
    /// stopping the daemon and putting the copy in the database's place.
    Backup {
        #[command(flatten)]
        state: StateArgs,
        /// Where to write the copy (must not exist).
        dest: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A provider's nodes and image uploads.
    Info {
        #[command(flatten)]
        args: nodes::TableArgs,
        provider: String,
    },
    /// Check each provider end to end: credentials, permissions, quota, latency, leftovers.
    Doctor {
        #[command(flatten)]
        args: nodes::TableArgs,
        provider: Option<String>,
    },
    /// Build a diskimage now (whatever its age).
    ImageBuild(images::BuildArgs),
    /// Upload the newest build of a diskimage to a provider now.
    ImageUpload(images::UploadArgs),
    /// Delete an image upload (or, with --build, a build).
    ImageDelete(images::DeleteArgs),
    /// Pause a diskimage: no build or upload of it is planned until it is unpaused.
    ImagePause(images::PauseArgs),
    /// Lift a pause made with image-pause.
    ImageUnpause(images::UnpauseArgs),
    /// Take over images upstream Nodepool uploaded (our ownership properties, no record here)
    /// as ready uploads, so that switching over neither deletes them as leaks nor waits for
    /// new builds.
    ImageAdopt(images::AdoptArgs),
    /// Print the JSON Schema of nodepool.yaml.
    Schema,
    /// Follow the config repo and keep the world converged; serve the node API (both roles).
    Daemon(daemon::DaemonArgs),
    /// The daemon for nodes only (no image builds or uploads).
    Launcher(daemon::DaemonArgs),
    /// The daemon for images only (builds and uploads).
    Builder(daemon::DaemonArgs),
    /// Show a running daemon's status (its /status endpoint).
    Status(daemon::StatusArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The long-running commands set up their own logging (format, files).
    if !matches!(
        cli.command,
        Command::Daemon(_) | Command::Launcher(_) | Command::Builder(_)
    ) {
        init_tracing();
    }
    let result = match cli.command {
        Command::ConfigValidate { config, json } => config_validate::run(&config, json),
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(demo::run(args))),
        Command::Plan(args) => runtime().and_then(|rt| rt.block_on(plan::plan(args))),
        Command::Apply(args) => runtime().and_then(|rt| rt.block_on(plan::apply(args))),
        Command::List(args) => runtime().and_then(|rt| rt.block_on(nodes::list(args))),
        Command::Request(args) => runtime().and_then(|rt| rt.block_on(nodes::request(args))),
        Command::Release(args) => nodes::release(args),
        Command::Delete(args) => nodes::delete(args),
        Command::Hold(args) => nodes::hold(args),
        Command::Erase(args) => runtime().and_then(|rt| rt.block_on(nodes::erase(args))),
        Command::RequestList(args) => nodes::request_list(args),
        Command::ImageList(args) => nodes::image_list(args),
        Command::DibImageList(args) => nodes::dib_image_list(args),
        Command::AlienImageList { args, provider } => {
            runtime().and_then(|rt| rt.block_on(nodes::alien_image_list(args, provider)))
        }
        Command::Info { args, provider } => nodes::info(args, provider),
        Command::Backup { state, dest, json } => backup(&state, &dest, json),
        Command::ImageBuild(args) => runtime().and_then(|rt| rt.block_on(images::build(args))),
        Command::ImageUpload(args) => runtime().and_then(|rt| rt.block_on(images::upload(args))),
        Command::ImageDelete(args) => runtime().and_then(|rt| rt.block_on(images::delete(args))),
        Command::ImagePause(args) => images::pause(args),
        Command::ImageUnpause(args) => images::unpause(args),
        Command::ImageAdopt(args) => runtime().and_then(|rt| rt.block_on(images::adopt(args))),
        Command::Doctor { args, provider } => {
            runtime().and_then(|rt| rt.block_on(nodes::doctor(args, provider)))
        }
        Command::Daemon(args) => daemon::run(args, nodepool::daemon::Role::All),
        Command::Launcher(args) => daemon::run(args, nodepool::daemon::Role::Launcher),
        Command::Builder(args) => daemon::run(args, nodepool::daemon::Role::Builder),
        Command::Status(args) => daemon::status(args),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&nodepool::config::schema::generate())
                    .expect("schema serialises")
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NODEPOOL_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn backup(state: &StateArgs, dest: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let s = nodepool::ops::backup::backup(&state.state, dest)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "backed up {} to {}: schema v{}, serial {} of lineage {}; {} nodes, {} requests, \
             {} builds, {} uploads",
            state.state.display(),
            dest.display(),
            s.schema_version,
            s.stamp.serial,
            s.stamp.lineage,
            s.nodes,
            s.requests,
            s.builds,
            s.uploads
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// An error and its causes on one line, as `{:#}` would print them, except that a cause an
/// outer message already quotes (many of ours name their cause in the text and also keep it
/// as the source) is not said twice.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "File exists");
        let e = anyhow::Error::new(nodepool::state::StateError::Io {
            path: "/tmp/x.db".into(),
            source: io,
        });
        assert_eq!(error_chain(&e), "state database /tmp/x.db: File exists");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
