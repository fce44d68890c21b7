//! `switchyard test-function --config FILE --source ID --request FILE`: runs a source's
//! function on a saved request and prints `{"events", "logs", "error"}`. Offline: it never
//! opens `data_dir` and stores nothing. Exits 1 when the function threw.

use std::path::PathBuf;
use std::rc::Rc;

use anyhow::{Context, bail};

use crate::config::SourceKind;
use crate::delivery::http::HttpClient;
use crate::egress::EgressPolicy;
use crate::functions::engine::Engine;
use crate::functions::host::FetchHost;
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    // The runtime is driven on a second thread so `fetch` completes while this one waits.
    let driver = rt.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let background = std::thread::spawn(move || {
        driver.block_on(async {
            let _ = stopped.await;
        })
    });
    let client = HttpClient::new(policy).context("cannot load the system's TLS roots")?;
    let fetch = Rc::new(FetchHost::new(client, rt.handle().clone()));
    let mut engine = Engine::new(&f.filename, &f.code, config.functions.limits, fetch)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.location, e.message))?;
    let report: saved::Report = engine.call(&req, &f.settings_json).into();
    let _ = stop.send(());
    let _ = background.join();
    let ok = report.error.is_none();
    let text = match args.format.as_deref() {
        Some("json") => serde_json::to_string(&report)?,
        None | Some("text") => serde_json::to_string_pretty(&report)?,
        Some(other) => bail!("unknown --format {other:?}; expected json"),
    };
    println!("{text}");
    Ok(ok)
}
