//! `cloudsim` binary: runs the OpenStack simulator until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cloudsim::{SimConfig, Simulator};

/// In-memory OpenStack (Keystone, Nova, Glance, Neutron) over HTTP, for tests and demos.
#[derive(Debug, Parser)]
#[command(name = "cloudsim", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Config file (YAML, or JSON when named *.json); built-in defaults otherwise.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write a clouds.yaml for this simulator here.
    #[arg(long)]
    print_clouds_yaml: Option<PathBuf>,
    /// Cloud name used in the written clouds.yaml.
    #[arg(long, default_value = "cloudsim")]
    cloud_name: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => match SimConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cloudsim: {e}");
                return ExitCode::from(2);
            }
        },
        None => SimConfig::default(),
    };
    let sim = match Simulator::start_on(config, args.listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cloudsim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.print_clouds_yaml
        && let Err(e) = std::fs::write(path, sim.clouds_yaml(&args.cloud_name))
    {
        eprintln!("cloudsim: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    // The first stdout line is the URL, for scripts to read.
    println!("{}", sim.base_url());
    eprintln!(
        "cloudsim: listening on {} (auth_url {})",
        sim.base_url(),
        sim.auth_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}
