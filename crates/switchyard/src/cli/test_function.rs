//! `switchyard test-function --config FILE --source ID --request FILE`: runs a source's
//! function on a saved request and prints `{"events", "logs", "error"}`. Offline: it never
//! opens `data_dir` and stores nothing. Exits 1 when the function threw. The run takes the
//! server's path (`functions::pool`), so awaited `fetch`es and timers settle the same way.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::config::SourceKind;
use crate::delivery::http::HttpClient;
use crate::egress::EgressPolicy;
use crate::functions::pool::Pool;
use crate::functions::saved;

#[derive(clap::Args)]
pub struct Args {
    /// The config file that declares the source and its function.
    #[arg(long)]
    config: PathBuf,
    /// The webhook source whose function runs.
    #[arg(long)]
    source: String,
    /// A saved request: {"headers": {...}, "body": <JSON or string>, "url": "..."}; any other
    /// file is taken as the raw body.
    #[arg(long)]
    request: PathBuf,
    /// `json`: one compact line instead of indented JSON.
    #[arg(long)]
    format: Option<String>,
}

/// Returns whether the function succeeded.
pub fn run(args: &Args) -> anyhow::Result<bool> {
    let config = crate::config::load(&args.config)
        .map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "{} is not valid:\n{}",
                args.config.display(),
                lines.join("\n")
            )
        })?
        .0;
    let spec = config
        .sources
        .iter()
        .find(|s| s.id == args.source)
        .with_context(|| format!("the config has no source {:?}", args.source))?;
    let SourceKind::Webhook(w) = &spec.kind else {
        bail!("source {:?} is not a webhook source", args.source);
    };
    let Some(f) = &w.function else {
        bail!("source {:?} has no function", args.source);
    };
    let bytes = std::fs::read(&args.request)
        .with_context(|| format!("cannot read {}", args.request.display()))?;
    let req = saved::parse(&bytes, &args.source);
    let policy = EgressPolicy {
        allow_private_networks: config.server.allow_private_networks,
        allow: config.server.egress_allow.clone(),
    };
    // The server's path: the function pool (a worker thread owning the engine) whose
    // `fetch`es run on a multi-threaded runtime while this thread waits for the outcome.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let report: saved::Report = rt.block_on(async {
        let client = HttpClient::new(policy).context("cannot load the system's TLS roots")?;
        let pool = Pool::start(
            vec![f.clone()],
            1,
            config.functions.limits,
            client,
            tokio::runtime::Handle::current(),
        )
        .context("cannot start the function worker")?;
        let outcome = pool.run(&args.source, Arc::new(req)).await?;
        anyhow::Ok(outcome.into())
    })?;
    let ok = report.error.is_none();
    let text = match args.format.as_deref() {
        Some("json") => serde_json::to_string(&report)?,
        None | Some("text") => serde_json::to_string_pretty(&report)?,
        Some(other) => bail!("unknown --format {other:?}; expected json"),
    };
    println!("{text}");
    Ok(ok)
}
