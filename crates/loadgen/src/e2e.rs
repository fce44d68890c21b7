//! End-to-end delivery measurement: an in-process receiver stands in for a webhook
//! endpoint. `pipeline` sends events to Switchyard and times each from its ingest 2xx to
//! its arrival at the receiver; `direct` drives the same receiver straight from here, as
//! the baseline. With `--count`, events go out as fast as possible and the receiver's
//! arrival rate is the delivery throughput.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(clap::Args, Debug, Clone)]
pub struct E2eArgs {
    /// Switchyard's base URL (pipeline mode).
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    url: String,
    #[arg(long, default_value = "")]
    write_key: String,
    /// Port of the in-process receiver (Switchyard's webhook URL points here).
    #[arg(long)]
    receiver_port: u16,
    #[arg(long, value_parser = ["pipeline", "direct"], default_value = "pipeline")]
    mode: String,
    /// Events per second offered (ignored with --count).
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Events per ingest request (pipeline mode).
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Concurrent requests from here.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Throughput mode: send this many events as fast as possible.
    #[arg(long)]
    count: Option<u64>,
    #[arg(long, default_value = "e2e")]
    run_id: String,
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receive(arrivals: Arrivals, body: Bytes) -> &'static str {
    let now = Instant::now();
    let text = String::from_utf8_lossy(&body);
    let mut map = arrivals.lock().unwrap_or_else(|p| p.into_inner());
    for part in text.split("\"messageId\":\"").skip(1) {
        if let Some(end) = part.find('"') {
            map.entry(part[..end].to_owned()).or_insert(now);
        }
    }
    "ok"
}

pub async fn run(args: E2eArgs) -> anyhow::Result<()> {
    let arrivals: Arrivals = Arc::default();
    let a = arrivals.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| receive(a.clone(), body));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.receiver_port)).await?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build_http::<Full<Bytes>>();
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = args.count.unwrap_or((args.rate * args.duration) as u64);
    let per_req = if args.mode == "direct" {
        1
    } else {
        args.batch.max(1)
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let (client, acks, args) = (client.clone(), acks.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            sender(w, client, acks, args, total, per_req, started).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let sent_done = started.elapsed();
    // Wait (bounded) for the last arrivals.
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap_or_else(|p| p.into_inner()).len()
        < acks.lock().unwrap_or_else(|p| p.into_inner()).len()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report(&args, &acks, &arrivals, sent_done);
    Ok(())
}

async fn sender(
    w: usize,
    client: Client<HttpConnector, Full<Bytes>>,
    acks: Arc<Mutex<HashMap<String, Instant>>>,
    args: E2eArgs,
    total: u64,
    per_req: usize,
    started: Instant,
) -> anyhow::Result<()> {
    let (path, url) = if args.mode == "direct" {
        (
            "direct".to_owned(),
            format!("http://127.0.0.1:{}/direct", args.receiver_port),
        )
    } else {
        (
            "pipeline".to_owned(),
            format!("{}/v1/batch", args.url.trim_end_matches('/')),
        )
    };
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", args.write_key))
    );
    let requests = total / per_req as u64 / args.concurrency as u64;
    let interval = (args.count.is_none())
        .then(|| Duration::from_secs_f64(per_req as f64 * args.concurrency as f64 / args.rate));
    let mut next = started
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(w as f64 / args.concurrency as f64)
        });
    for n in 0..requests {
        if let Some(i) = interval {
            tokio::time::sleep_until(next.into()).await;
            next += i;
        }
        let ids: Vec<String> = (0..per_req)
            .map(|k| format!("{}-{path}-{w}-{n}-{k}", args.run_id))
            .collect();
        let event = |id: &String| {
            format!(
                r#"{{"type":"track","event":"E2E","userId":"u-{w}","messageId":"{id}","properties":{{"n":{n},"pad":"{}"}}}}"#,
                "x".repeat(700)
            )
        };
        let body = if args.mode == "direct" {
            event(&ids[0])
        } else {
            format!(
                r#"{{"batch":[{}]}}"#,
                ids.iter().map(event).collect::<Vec<_>>().join(",")
            )
        };
        let req = Request::post(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let sent_at = Instant::now();
        if let Ok(resp) = client.request(req).await {
            let ok = resp.status().is_success();
            let _ = resp.into_body().collect().await;
            if ok {
                // Pipeline: from Switchyard's 2xx. Direct: from the send (the arrival comes
                // before the answer), i.e. one request's latency.
                let now = if args.mode == "direct" {
                    sent_at
                } else {
                    Instant::now()
                };
                let mut map = acks.lock().unwrap_or_else(|p| p.into_inner());
                ids.into_iter().for_each(|id| {
                    map.insert(id, now);
                });
            }
        }
    }
    Ok(())
}

fn report(
    args: &E2eArgs,
    acks: &Mutex<HashMap<String, Instant>>,
    arrivals: &Mutex<HashMap<String, Instant>>,
    sent: Duration,
) {
    let acks = acks.lock().unwrap_or_else(|p| p.into_inner());
    let arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
    let mut lat: Vec<f64> = acks
        .iter()
        .filter_map(|(id, ack)| {
            arrivals
                .get(id)
                .map(|at| at.saturating_duration_since(*ack).as_secs_f64() * 1000.0)
        })
        .collect();
    if std::env::var("LOADGEN_SHOW_LATE").is_ok() {
        let start = acks.values().min().copied().unwrap_or_else(Instant::now);
        let mut late: Vec<(f64, f64)> = acks
            .iter()
            .filter_map(|(id, ack)| {
                arrivals.get(id).map(|at| {
                    (
                        ack.duration_since(start).as_secs_f64(),
                        at.saturating_duration_since(*ack).as_secs_f64() * 1000.0,
                    )
                })
            })
            .filter(|(_, l)| *l > 30.0)
            .collect();
        late.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (t, l) in late.iter().step_by((late.len() / 40).max(1)) {
            eprintln!("late: at {t:.3}s latency {l:.1}ms");
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let first = arrivals.values().min();
    let last = arrivals.values().max();
    let span = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(*f).as_secs_f64(),
        _ => 0.0,
    };
    let result = serde_json::json!({
        "mode": args.mode, "acked": acks.len(), "arrived": arrivals.len(), "send_seconds": sent.as_secs_f64(),
        "offered_events_per_s": if args.count.is_some() { serde_json::Value::Null } else { serde_json::json!(args.rate) },
        "arrival_events_per_s": if span > 0.0 { arrivals.len() as f64 / span } else { 0.0 },
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": pct(1.0),
    });
    println!("{result}");
}
