//! The `switchyard` command line. One file per subcommand; each returns `anyhow::Result`
//! and the exit code is decided here.

mod check;
pub mod client;
mod inspect;
mod replay;
mod send;
mod serve;
mod test_function;
mod test_mapping;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Self-hosted, Segment-compatible customer-data event router"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Without --config, start the demo workspace under ./data.
    Serve(serve::Args),
    /// Compile a config file and print every problem as `error|warning <path> <message>`.
    Check(check::Args),
    /// Report backlog per destination, log size, the oldest unconsumed event and integrity.
    Inspect(inspect::Args),
    /// Post sample events to a running server.
    Send(send::Args),
    /// Send a destination's dead letters again, with a progress bar.
    Replay(replay::Args),
    /// Evaluate FQL and mappings against events: JSON lines in, JSON lines out.
    TestMapping(test_mapping::Args),
    /// Run a webhook source's function on a saved request; prints events, logs and error.
    TestFunction(test_function::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init_tracing();
    let result = match cli.command {
        Command::Check(args) => return check::run(&args),
        Command::TestMapping(args) => test_mapping::run(&args),
        Command::TestFunction(args) => match test_function::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(serve::run(args))),
        Command::Inspect(args) => runtime().and_then(|rt| rt.block_on(inspect::run(args))),
        Command::Send(args) => runtime().and_then(|rt| rt.block_on(send::run(args))),
        Command::Replay(args) => runtime().and_then(|rt| rt.block_on(replay::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Where a client subcommand finds the server and its data.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The config file of the server (its listen address, admin token and data_dir).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// The server's base URL, e.g. http://127.0.0.1:8088 (default: from --config, else the demo's).
    #[arg(long)]
    url: Option<String>,
    /// The admin token (default: from --config).
    #[arg(long)]
    token: Option<String>,
    /// The data directory (default: from --config, else ./data).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

pub struct Resolved {
    pub url: String,
    pub token: Option<String>,
    pub data_dir: std::path::PathBuf,
    pub config: Option<crate::config::Config>,
}

impl Target {
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let config = match &self.config {
            Some(path) => Some(
                crate::config::load(path)
                    .map_err(|problems| {
                        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                        anyhow::anyhow!("{} is not valid:\n{}", path.display(), lines.join("\n"))
                    })?
                    .0,
            ),
            None => None,
        };
        let url = self.url.clone().unwrap_or_else(|| match &config {
            Some(c) => format!("http://{}", c.server.listen),
            None => "http://127.0.0.1:8088".to_owned(),
        });
        let token = self
            .token
            .clone()
            .or_else(|| config.as_ref().and_then(|c| c.server.admin_token.clone()));
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| config.as_ref().map(|c| c.server.data_dir.clone()))
            .unwrap_or_else(|| "./data".into());
        Ok(Resolved {
            url: url.trim_end_matches('/').to_owned(),
            token,
            data_dir,
            config,
        })
    }
}
