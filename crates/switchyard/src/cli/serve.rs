//! `switchyard serve [--config FILE]`: run everything in one process.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{self, Config, demo};

#[derive(clap::Args)]
pub struct Args {
    /// The config file; without it, the demo workspace runs under --data-dir.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the listen address (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    listen: Option<String>,
    /// The demo workspace's data directory.
    #[arg(long, default_value = "./data", conflicts_with = "config")]
    data_dir: PathBuf,
    /// Benchmark baseline: the same HTTP stack, auth, parsing and normalisation, but
    /// nothing is stored. For bench/run.sh only; never use it to serve real traffic.
    #[arg(long, hide = true)]
    bench_no_store: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (mut config, demo_key) = match &args.config {
        Some(path) => {
            let (config, warnings) = config::load(path).map_err(|problems| {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("{} is not valid:\n{}", path.display(), lines.join("\n"))
            })?;
            for w in warnings {
                tracing::warn!(problem = %w, "Config warning");
            }
            (config, None)
        }
        None => {
            let listen = args.listen.as_deref().unwrap_or("127.0.0.1:8088");
            let config = demo::config(&args.data_dir, listen)?;
            let key = demo::write_key(&args.data_dir)?;
            (config, Some(key))
        }
    };
    config.server.bench_no_store = args.bench_no_store;
    if args.bench_no_store {
        tracing::warn!("--bench-no-store: events are NOT stored; this is the benchmark baseline");
    }
    if let Some(listen) = &args.listen {
        config.server.listen = listen
            .parse()
            .with_context(|| format!("invalid --listen {listen:?}"))?;
        let token = config.server.admin_token.as_deref();
        if let Some(why) = config::public_admin_token_problem(config.server.listen, token) {
            anyhow::bail!("refusing to listen on {listen}: server.admin_token {why}");
        }
    }
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    if let Err(error) = print_banner(&config, &listener, demo_key.as_deref()) {
        // A closed stdout must not stop the server; the same facts are in the log.
        tracing::warn!(%error, "Could not print the start-up lines to stdout");
    }
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.server.data_dir.display(), "Serving");
    crate::app::run(config, listener, shutdown_signal()).await
}

fn print_banner(
    config: &Config,
    listener: &TcpListener,
    demo_key: Option<&str>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    if let Some(key) = demo_key {
        writeln!(out, "write_key: {key}")?;
    }
    writeln!(out, "ingest_url: http://{addr}")?;
    writeln!(out, "data_dir: {}", config.server.data_dir.display())?;
    out.flush()?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
