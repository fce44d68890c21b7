//! `switchyard check --config FILE`: compile without starting anything, print every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Severity};

#[derive(clap::Args)]
pub struct Args {
    /// The config file to check.
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: &Args) -> ExitCode {
    let problems = match config::load(&args.config) {
        Ok((_, warnings)) => warnings,
        Err(problems) => problems,
    };
    for p in &problems {
        println!("{p}");
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    if errors > 0 {
        eprintln!("{}: {errors} error(s)", args.config.display());
        ExitCode::FAILURE
    } else {
        eprintln!("{}: ok", args.config.display());
        ExitCode::SUCCESS
    }
}
