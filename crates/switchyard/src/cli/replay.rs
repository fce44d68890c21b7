//! `switchyard replay --destination ID [--since T]`: sends a destination's dead letters
//! again through the running server, and follows them until each is delivered or
//! dead-lettered again. A progress bar is drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};

use super::{Target, client};
use crate::inspect::Report;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// The destination whose dead letters to send again.
    #[arg(long)]
    destination: String,
    /// Only dead letters (or, with --from-log, events) from this time on: RFC 3339, or a
    /// duration meaning "that long ago".
    #[arg(long)]
    since: Option<String>,
    /// Backfill: send again every event the destination has already passed that was
    /// received since --since (webhook and segment destinations).
    #[arg(long, requires = "since")]
    from_log: bool,
    /// How long to follow the replayed deliveries before returning.
    #[arg(long, default_value = "5m", value_parser = crate::config::units::parse_duration)]
    wait: Duration,
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    format: String,
}

struct Api {
    url: String,
    auth: Option<String>,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let r = client::call(
            method,
            &format!("{}{path}", self.url),
            self.auth.as_deref(),
            bytes,
        )
        .await?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if !r.status.is_success() {
            anyhow::bail!(
                "{} answered {}: {}",
                self.url,
                r.status,
                v["message"].as_str().unwrap_or("no details")
            );
        }
        Ok(v)
    }

    async fn counts(&self, dest: &str) -> anyhow::Result<(u64, u64)> {
        let report: Report =
            serde_json::from_value(self.call(Method::GET, "/api/v1/inspect", None).await?)?;
        let d = report
            .destinations
            .iter()
            .find(|d| d.id == dest)
            .ok_or_else(|| anyhow::anyhow!("no destination {dest:?}"))?;
        Ok((d.pending_retries, d.dead_letters))
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let t = args.target.resolve()?;
    let api = Api {
        url: t.url.clone(),
        auth: t.token.as_ref().map(|tok| format!("Bearer {tok}")),
    };
    if args.from_log {
        return from_log(&api, &args).await;
    }
    let (retries_before, dead_before) = api.counts(&args.destination).await?;
    let body = match &args.since {
        Some(s) => json!({"since": s}),
        None => json!({}),
    };
    let path = format!(
        "/api/v1/destinations/{}/dead-letters/replay",
        args.destination
    );
    let replayed = api.call(Method::POST, &path, Some(body)).await?["replayed"]
        .as_u64()
        .unwrap_or(0);
    let bar = std::io::stderr().is_terminal();
    let deadline = Instant::now() + args.wait;
    let (mut pending, mut dead) = (replayed, dead_before.saturating_sub(replayed));
    while pending > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (retries, dl) = api.counts(&args.destination).await?;
        pending = retries.saturating_sub(retries_before).min(replayed);
        dead = dl;
        if bar {
            draw(replayed - pending, replayed);
        }
    }
    if bar {
        eprintln!();
    }
    let failed_again = dead.saturating_sub(dead_before.saturating_sub(replayed));
    let delivered = replayed
        .saturating_sub(pending)
        .saturating_sub(failed_again);
    let summary = json!({"destination": args.destination, "replayed": replayed, "delivered": delivered, "dead_lettered_again": failed_again, "still_pending": pending});
    if args.format == "json" {
        println!("{summary}");
    } else {
        println!(
            "replayed {replayed} dead letter(s) of {}: {delivered} delivered, {failed_again} dead-lettered again, {pending} still retrying",
            args.destination
        );
    }
    Ok(())
}

async fn from_log(api: &Api, args: &Args) -> anyhow::Result<()> {
    let path = format!("/api/v1/destinations/{}/replay", args.destination);
    let started = api
        .call(
            Method::POST,
            &path,
            Some(json!({"from_log": true, "since": args.since})),
        )
        .await?;
    let bar = std::io::stderr().is_terminal();
    let deadline = Instant::now() + args.wait;
    let (mut replaying, mut replayed) = (true, 0);
    while replaying && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let report: Report =
            serde_json::from_value(api.call(Method::GET, "/api/v1/inspect", None).await?)?;
        let d = report
            .destinations
            .iter()
            .find(|d| d.id == args.destination)
            .ok_or_else(|| anyhow::anyhow!("no destination {:?}", args.destination))?;
        (replaying, replayed) = (d.replaying, d.replayed);
        if bar {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\rreplaying from the log: {replayed} event(s) sent again"
            );
            let _ = err.flush();
        }
    }
    if bar {
        eprintln!();
    }
    let summary = json!({"destination": args.destination, "from_log": true, "until_seq": started["until_seq"], "replayed": replayed, "finished": !replaying});
    if args.format == "json" {
        println!("{summary}");
    } else {
        let state = if replaying {
            "still running"
        } else {
            "finished"
        };
        println!(
            "replay from the log of {}: {replayed} event(s) sent again, {state}",
            args.destination
        );
    }
    Ok(())
}

fn draw(done: u64, total: u64) {
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width) as usize;
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(width as usize - filled)
    );
    let _ = err.flush();
}
