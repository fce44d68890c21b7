//! `switchyard check --config FILE`: compile without starting anything, print every problem.
//! It never opens `data_dir`. For `nats` destinations it asks the NATS server whether a
//! JetStream stream captures the subject (a warning if the server cannot be reached).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config, DestinationKind, Problem, Severity};
use crate::destinations::nats::publish::{NatsPublisher, render_subject};

#[derive(clap::Args)]
pub struct Args {
    /// The config file to check.
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: &Args) -> ExitCode {
    let mut problems = match config::load(&args.config) {
        Ok((config, warnings)) => {
            let mut all = warnings;
            all.extend(check_nats_streams(&config));
            all
        }
        Err(problems) => problems,
    };
    problems.sort_by_key(|p| p.severity == Severity::Warning);
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

/// A nats subject must belong to a JetStream stream unless `core: true`
/// (docs/destinations.md#nats).
fn check_nats_streams(config: &Config) -> Vec<Problem> {
    let targets: Vec<_> = config
        .destinations
        .iter()
        .filter_map(|d| match &d.kind {
            DestinationKind::Nats(_, n) if !n.core => Some((d.id.clone(), n.clone())),
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        return Vec::new();
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    rt.block_on(async {
        let mut out = Vec::new();
        for (id, n) in targets {
            let path = format!("destinations[{id}].settings.subject");
            let sample = render_subject(&n.subject, &serde_json::json!({"type": "track"}));
            match NatsPublisher::connect(&n.url, false).await {
                Err(e) => out.push(Problem::warning(
                    &path,
                    format!("could not verify the JetStream stream: {e}"),
                )),
                Ok(p) => {
                    if let Err(e) = p.stream_for(&sample).await {
                        out.push(Problem::error(&path, e));
                    }
                }
            }
        }
        out
    })
}
