//! A bounded load generator for Switchyard's Tracking API and webhook sources.
//!
//! Every request carries fresh messageIds (the server would otherwise answer duplicates),
//! bodies are built once per worker and only their ids are rewritten, and the run stops by
//! itself after `--duration` or `--max-events`. It prints one JSON object of results.
//!
//! Latency is measured from the moment a request is sent; in `--rate` mode requests are
//! scheduled on a fixed timetable, so a slow answer delays the next send (coordinated
//! omission). At half of the measured maximum load, queueing is small and this bias is too.

mod body;
mod e2e;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Parser, Debug, Clone)]
#[command(about = "Bounded load generator for the Segment Tracking API")]
struct Args {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    url: String,
    #[arg(long)]
    write_key: String,
    /// `batch` posts /v1/batch with --batch events; `track` posts single /v1/track events;
    /// `webhook` posts a KnoCommerce payload to --path; `kno-track` posts, to /v1/track, the
    /// event the KnoCommerce function makes of that payload.
    #[arg(long, value_parser = ["batch", "track", "webhook", "kno-track"], default_value = "batch")]
    mode: String,
    /// Request path (default: /v1/batch or /v1/track by mode; /webhooks/kno for webhook).
    #[arg(long)]
    path: Option<String>,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Spread the events of a batch over this many event names (`Event 0`, `Event 1`, ...).
    #[arg(long, default_value_t = 1)]
    event_names: usize,
    /// Spread events over this many user ids (default: `user-<position in the batch>`).
    #[arg(long, default_value_t = 0)]
    users: u64,
    /// Approximate size of one event in bytes.
    #[arg(long, default_value_t = 900)]
    event_bytes: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to run (hard bound).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many events were acknowledged.
    #[arg(long)]
    max_events: Option<u64>,
    /// Total requests per second to offer (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// A label for the id space, so several runs never collide.
    #[arg(long, default_value = "lg")]
    run_id: String,
}

struct Totals {
    requests: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
}

/// `loadgen e2e ...` measures delivery end to end; anything else is an ingest run.
#[derive(Parser)]
struct E2eCli {
    #[command(flatten)]
    args: e2e::E2eArgs,
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("e2e") {
        let cli = E2eCli::parse_from(
            std::env::args()
                .enumerate()
                .filter(|(i, _)| *i != 1)
                .map(|(_, a)| a),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        return rt.block_on(e2e::run(cli.args));
    }
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build_http::<Full<Bytes>>();
    let totals = Arc::new(Totals {
        requests: AtomicU64::new(0),
        events: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let (client, totals, args) = (client.clone(), totals.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            worker(w, client, totals, args, deadline).await
        }));
    }
    let mut latencies: Vec<u32> = Vec::new();
    for t in tasks {
        latencies.extend(t.await.context("worker panicked")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let requests = totals.requests.load(Ordering::Relaxed);
    let events = totals.events.load(Ordering::Relaxed);
    let result = serde_json::json!({
        "mode": args.mode, "concurrency": args.concurrency, "offered_rate": args.rate,
        "seconds": elapsed, "requests": requests, "events": events,
        "errors": totals.errors.load(Ordering::Relaxed),
        "requests_per_s": requests as f64 / elapsed, "events_per_s": events as f64 / elapsed,
        "p50_ms": f64::from(pct(0.50)) / 1000.0, "p99_ms": f64::from(pct(0.99)) / 1000.0, "max_ms": f64::from(pct(1.0)) / 1000.0,
    });
    println!("{result}");
    Ok(())
}

async fn worker(
    w: usize,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    totals: Arc<Totals>,
    args: Args,
    deadline: Instant,
) -> anyhow::Result<Vec<u32>> {
    let per_request = if args.mode == "batch" { args.batch } else { 1 };
    let mut template = body::Template::new(
        &args.mode,
        per_request,
        args.event_bytes,
        &format!("{}-{w}", args.run_id),
        args.event_names,
        args.users,
    );
    let path = args.path.as_deref().unwrap_or(match args.mode.as_str() {
        "batch" => "/v1/batch",
        "webhook" => "/webhooks/kno",
        _ => "/v1/track",
    });
    let uri: hyper::Uri = format!("{}{path}", args.url.trim_end_matches('/')).parse()?;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", args.write_key))
    );
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.concurrency as f64 / r));
    let mut next_send = Instant::now()
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(w as f64 / args.concurrency as f64)
        });
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        if args
            .max_events
            .is_some_and(|m| totals.events.load(Ordering::Relaxed) >= m)
        {
            break;
        }
        if let Some(i) = interval {
            tokio::time::sleep_until(next_send.into()).await;
            next_send += i;
        }
        let body = template.next_body();
        let req = Request::post(uri.clone())
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let sent = Instant::now();
        let ok = match client.request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                status.is_success()
            }
            Err(_) => false,
        };
        latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        if ok {
            totals.requests.fetch_add(1, Ordering::Relaxed);
            totals
                .events
                .fetch_add(per_request as u64, Ordering::Relaxed);
        } else {
            totals.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(latencies)
}
