//! `switchyard send`: post sample events to a running server over the Tracking API.

use base64::Engine;
use hyper::Method;
use serde_json::json;

use super::{Target, client};
use crate::config::SourceKind;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// The write key (default: the first key in --config, else the demo's key in data_dir).
    #[arg(long)]
    write_key: Option<String>,
    /// The event name of the sample track events.
    #[arg(long, default_value = "Switchyard Test Event")]
    event: String,
    /// The userId of the sample events.
    #[arg(long, default_value = "switchyard-cli")]
    user_id: String,
    /// How many events to send, in one batch (at most 2500).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=2500))]
    count: u16,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let t = args.target.resolve()?;
    let key = match (&args.write_key, &t.config) {
        (Some(k), _) => k.clone(),
        (None, Some(c)) => c
            .sources
            .iter()
            .find_map(|s| match &s.kind {
                SourceKind::HttpApi { write_keys, .. } => {
                    write_keys.first().map(|(_, k)| k.clone())
                }
                SourceKind::Webhook(_) => None,
            })
            .ok_or_else(|| {
                anyhow::anyhow!("the config has no http_api source; pass --write-key")
            })?,
        (None, None) => std::fs::read_to_string(t.data_dir.join("demo_write_key"))
            .map(|k| k.trim().to_owned())
            .map_err(|e| {
                anyhow::anyhow!(
                    "no --write-key and no demo key in {}: {e}",
                    t.data_dir.display()
                )
            })?,
    };
    let now = crate::event::timestamp::format(time::OffsetDateTime::now_utc());
    let batch: Vec<_> = (0..args.count)
        .map(|i| {
            json!({"type": "track", "event": args.event, "userId": args.user_id,
                   "messageId": format!("cli-{}", uuid::Uuid::new_v4()), "timestamp": now,
                   "properties": {"index": i, "sent_by": "switchyard send"},
                   "context": {"library": {"name": "switchyard-cli", "version": env!("CARGO_PKG_VERSION")}}})
        })
        .collect();
    let ids: Vec<String> = batch
        .iter()
        .filter_map(|e| e["messageId"].as_str().map(str::to_owned))
        .collect();
    let body = serde_json::to_vec(&json!({"batch": batch, "sentAt": now}))?;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    );
    let resp = client::call(
        Method::POST,
        &format!("{}/v1/batch", t.url),
        Some(&auth),
        Some(body),
    )
    .await?;
    let text = String::from_utf8_lossy(&resp.body);
    if !resp.status.is_success() {
        anyhow::bail!("{} answered {}: {text}", t.url, resp.status);
    }
    println!("{} {text}", resp.status.as_u16());
    for id in ids {
        println!("sent messageId {id}");
    }
    Ok(())
}
