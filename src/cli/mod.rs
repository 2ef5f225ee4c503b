//! The command line: clap definitions and the thin commands that call library operations.
//!
//! Invariant: only this module knows clap; commands parse arguments, call one operation in the
//! library, and hand its result to a renderer. `anyhow` is used here and nowhere else.

mod config_validate;

use clap::{Parser, Subcommand};
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
#[derive(Debug, clap::Args)]
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the configuration: schema, references, and every problem with file and line.
    ConfigValidate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of nodepool.yaml.
    Schema,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::ConfigValidate { config, json } => config_validate::run(&config, json),
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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NODEPOOL_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
