//! `nodepool config-validate`: load the config and report every problem.

use super::ConfigArgs;
use nodepool::config::{self, ConfigError, LoadOptions};
use std::process::ExitCode;

pub fn run(args: &ConfigArgs, json: bool) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions::new(&args.config).with_secure(args.secure.clone());
    let (ok, diagnostics, path) = match config::load(&opts) {
        Ok(loaded) => (true, loaded.warnings, loaded.path),
        Err(ConfigError::Invalid(diags)) => (false, diags, opts.config_file()),
        Err(e @ ConfigError::Io { .. }) => return Err(e.into()),
    };
    if json {
        let doc = serde_json::json!({
            "version": 1,
            "file": path,
            "valid": ok,
            "diagnostics": diagnostics,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for d in &diagnostics {
            eprintln!("{d}");
        }
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        let warnings = diagnostics.len() - errors;
        if ok {
            println!(
                "{}: configuration is valid ({warnings} warning{})",
                path.display(),
                plural(warnings)
            );
        } else {
            println!(
                "{}: configuration is invalid: {errors} error{}, {warnings} warning{}",
                path.display(),
                plural(errors),
                plural(warnings)
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
