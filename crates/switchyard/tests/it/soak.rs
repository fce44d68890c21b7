//! The soak (issue 10, suite 7): the real binary at a steady load for `SWITCHYARD_SOAK_SECS`
//! (180 s by default, so CI stays short; RELIABILITY.md records a 30-minute run), delivering to
//! a file and to a webhook receiver, sampled every 5 s from `/proc`. Over the second half of
//! the run — after the dedupe window (1 min here, so its steady state is reached within the
//! run) and the other bounded caches have filled — open file descriptors must be flat, RSS
//! must stay under the ceiling its bounds allow and must not grow from the third quarter of
//! the run to the last (by more than `GROWTH_MIB`), and once the load stops the idle server
//! must use at most 1% of a core.
//!
//! It prints the RSS at the first and last sample and its peak; over the second half, the
//! fitted slopes of RSS and of its anonymous part (a slope over the 90 s of a CI run is mostly
//! noise: read it over a dedicated run) and the quarter-to-quarter growth; descriptors; and
//! the idle CPU. Then the RSS/anonymous series every 30 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;
use switchyard::cli::client;

use crate::crash::{spawn_server, wait_drained, wait_ready};
use crate::harness::*;

/// Events per second the load generator sends: 20-event batches, every 20 ms.
const RATE: u64 = 1_000;

fn soak_secs() -> u64 {
    std::env::var("SWITCHYARD_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(180)
}

struct Sample {
    at_s: f64,
    rss_kib: f64,
    /// The anonymous part of RSS (heap, stacks), without file pages mapped in.
    anon_kib: f64,
    fds: f64,
}

fn sample(pid: u32, started: Instant) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let (rss_kib, anon_kib) = (field("VmRSS:"), field("RssAnon:"));
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) as f64;
    Sample {
        at_s: started.elapsed().as_secs_f64(),
        rss_kib,
        anon_kib,
        fds,
    }
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0.0), |(s, n), x| (s + x, n + 1.0));
    if n == 0.0 { 0.0 } else { sum / n }
}

/// How much the last quarter's mean RSS may exceed the third quarter's. jemalloc returns
/// freed pages in bursts, so RSS swings by ±10 MiB around a flat level: in the 30-minute run
/// the means of two adjacent 45 s windows (the quarters of a CI run) differed by up to
/// 11.5 MiB. Twice that, so CI does not flake; a dedicated run's quarters are far steadier.
const GROWTH_MIB: f64 = 24.0;

/// What the samples say about memory and descriptors.
struct Memory {
    first_mib: f64,
    last_mib: f64,
    peak_mib: f64,
    /// Samples in the second half, over which the slopes are fitted.
    half_n: usize,
    rss_slope_mib_h: f64,
    anon_slope_mib_h: f64,
    /// Mean RSS of the last quarter of the run minus that of the third quarter.
    growth_mib: f64,
    fd_min: f64,
    fd_max: f64,
    fd_slope_h: f64,
}

impl Memory {
    fn of(samples: &[Sample], secs: f64) -> Memory {
        let half: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= secs / 2.0).collect();
        let fit = |f: fn(&Sample) -> f64| {
            slope(&half.iter().map(|s| (s.at_s, f(s))).collect::<Vec<_>>()) * 3600.0
        };
        let quarter = |from: f64, to: f64| {
            mean(
                samples
                    .iter()
                    .filter(|s| s.at_s >= secs * from && s.at_s < secs * to)
                    .map(|s| mib(s.rss_kib)),
            )
        };
        Memory {
            first_mib: samples.first().map_or(0.0, |s| mib(s.rss_kib)),
            last_mib: samples.last().map_or(0.0, |s| mib(s.rss_kib)),
            peak_mib: mib(samples.iter().map(|s| s.rss_kib).fold(0.0, f64::max)),
            half_n: half.len(),
            rss_slope_mib_h: fit(|s| mib(s.rss_kib)),
            anon_slope_mib_h: fit(|s| mib(s.anon_kib)),
            growth_mib: quarter(0.75, 1.01) - quarter(0.5, 0.75),
            fd_min: half.iter().map(|s| s.fds).fold(f64::MAX, f64::min),
            fd_max: half.iter().map(|s| s.fds).fold(0.0, f64::max),
            fd_slope_h: fit(|s| s.fds),
        }
    }

    /// Prints the summary line and the RSS/anonymous series every 30 s.
    fn print(&self, secs: u64, acked: u64, idle_cpu: f64, samples: &[Sample]) {
        eprintln!(
            "soak: {secs} s at {RATE} events/s, {acked} acked, RSS {:.1}→{:.1} MiB, peak {:.1} MiB; second half ({} samples): RSS slope {:.1} MiB/h, anonymous slope {:.1} MiB/h, last quarter − third quarter {:+.1} MiB; fds {}–{} (slope {:.1}/h), idle CPU {idle_cpu:.2}%",
            self.first_mib,
            self.last_mib,
            self.peak_mib,
            self.half_n,
            self.rss_slope_mib_h,
            self.anon_slope_mib_h,
            self.growth_mib,
            self.fd_min,
            self.fd_max,
            self.fd_slope_h,
        );
        let series: Vec<String> = samples
            .iter()
            .step_by(6)
            .map(|s| {
                format!(
                    "{:.0}s {:.1}/{:.1}",
                    s.at_s,
                    mib(s.rss_kib),
                    mib(s.anon_kib)
                )
            })
            .collect();
        eprintln!("soak RSS/anonymous MiB every 30 s: {}", series.join(", "));
    }
}

/// CPU time (user + system) of the process in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// A webhook receiver that only counts (a 30-minute run would not fit in memory otherwise).
async fn counting_receiver() -> (u16, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let c = count.clone();
    let app = axum::Router::new().fallback(move || {
        c.fetch_add(1, Ordering::Relaxed);
        async { StatusCode::OK }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, count)
}

/// Sends the load for `secs` seconds, sampling the server every 5 s; returns the events acked
/// and the samples.
async fn drive(url: &str, pid: u32, secs: u64) -> (u64, Vec<Sample>) {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = Instant::now();
    let (mut acked, mut n) = (0u64, 0u64);
    let (auth, batch_url) = (basic(KEY), format!("{url}/v1/batch"));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let events: Vec<_> = (0..RATE / 50)
            .map(|i| json!({"type": "track", "event": "Soak", "userId": format!("u{}", i % 100), "messageId": format!("soak-{n}-{i}"), "properties": {"n": n, "pad": "x".repeat(200)}}))
            .collect();
        n += 1;
        let body = serde_json::to_vec(&json!({ "batch": events })).unwrap();
        if let Ok(r) = client::call(Method::POST, &batch_url, Some(&auth), Some(body)).await
            && r.status == StatusCode::OK
        {
            acked += RATE / 50;
        }
        if Instant::now() >= next_sample {
            samples.push(sample(pid, started));
            next_sample += Duration::from_secs(5);
        }
    }
    (acked, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_steady_load_keeps_memory_bounded_and_descriptors_flat() {
    let secs = soak_secs();
    let (port, received) = counting_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{d}", shutdown_timeout: 5s, min_free_disk: 1MiB, egress_allow: ["127.0.0.1:{port}"] }}
storage: {{ segment_bytes: 8MiB, retention: {{ max_age: 30s, max_bytes: 64MiB }} }}
dedupe: {{ window: 1m }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{d}/events.jsonl", max_bytes: 8MiB, keep: 2 }} }}
  - id: hook
    type: webhook
    mappings:
      - {{ name: All, subscribe: 'type = "track"', url: "http://127.0.0.1:{port}/soak" }}
"#,
        d = dir.path().display(),
    );
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut server = spawn_server(&config);
    wait_ready(&server.url).await;
    let pid = server.child.id();

    let (acked, samples) = drive(&server.url, pid, secs).await;
    wait_drained(&server.url).await;

    // Idle: give housekeeping a moment, then measure 10 s of CPU.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let idle_cpu = (cpu_ticks(pid) - c0) as f64 / ticks_per_s / t0.elapsed().as_secs_f64() * 100.0;
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let m = Memory::of(&samples, secs as f64);
    m.print(secs, acked, idle_cpu, &samples);
    assert!(acked >= RATE * secs / 2, "the load ran: {acked} acked");
    let delivered = received.load(Ordering::Relaxed);
    assert!(delivered >= acked, "the webhook got {delivered} of {acked}");
    // The live heap is ~10 MiB and flat (heaptrack, RELIABILITY.md); RSS is that, the
    // allocator's not yet returned pages and ~28 MiB of file pages. The ceiling is what the
    // bounds allow; the growth bound holds RSS from climbing once warm (a slope over the
    // 90 s of a CI run is mostly noise, so it is reported, not asserted).
    assert!(m.peak_mib <= 160.0, "RSS peaked at {:.1} MiB", m.peak_mib);
    assert!(
        m.growth_mib <= GROWTH_MIB,
        "RSS grew {:.1} MiB from the third quarter to the last",
        m.growth_mib
    );
    assert!(
        m.fd_max - m.fd_min <= 16.0,
        "descriptors vary {}–{}",
        m.fd_min,
        m.fd_max
    );
    assert!(idle_cpu <= 1.0, "idle CPU {idle_cpu:.2}%");
}
