//! Appends the same ~900-byte records, in groups, durably, with three engines in one run:
//! a raw `write` + `fdatasync` per group (the floor), switchyard's log (`Log::append`,
//! which also frames, checksums and dedupes), and redb (one durable write transaction per
//! group). Prints a markdown table.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::log::record::{Entry, Kind};
use switchyard::log::{Log, LogOptions};
use switchyard::telemetry::Metrics;

const EVENTS: u64 = 200_000;

fn body(i: u64) -> Vec<u8> {
    let mut b = format!(r#"{{"type":"track","event":"Order Completed","userId":"u-{i}","messageId":"m-{i}","properties":{{"pad":""#).into_bytes();
    b.resize(880, b'x');
    b.extend_from_slice(br#""}}"#);
    b
}

fn raw(dir: &std::path::Path, group: u64) -> Duration {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw.log"))
        .unwrap();
    let start = Instant::now();
    for g in 0..EVENTS / group {
        let mut buf = Vec::new();
        for i in g * group..(g + 1) * group {
            buf.extend_from_slice(&body(i));
        }
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
    }
    start.elapsed()
}

fn switchyard_log(dir: &std::path::Path, group: u64) -> Duration {
    let opts = LogOptions {
        segment_bytes: 64 << 20,
        commit_window: Duration::ZERO,
        queue_requests: 1024,
        queue_bytes: 256 << 20,
        dedupe_window: Duration::from_secs(86_400),
        dedupe_max_keys: 10_000_000,
        clock: Arc::new(switchyard::clock::SystemClock),
    };
    let (log, _) = Log::open(dir, &opts, Arc::new(Metrics::new()), |_| {}).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (source, env): (Arc<str>, Arc<str>) = ("bench".into(), "production".into());
    let start = Instant::now();
    for g in 0..EVENTS / group {
        let entries = (g * group..(g + 1) * group)
            .map(|i| Entry {
                kind: Kind::Accepted,
                received_ms: 1_800_000_000_000,
                source: source.clone(),
                environment: env.clone(),
                message_id: format!("m-{i}"),
                reason: String::new(),
                body: body(i),
            })
            .collect();
        rt.block_on(log.append(entries)).unwrap();
    }
    let took = start.elapsed();
    log.close();
    took
}

fn redb(dir: &std::path::Path, group: u64) -> Duration {
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    let db = redb::Database::create(dir.join("redb.db")).unwrap();
    let start = Instant::now();
    for g in 0..EVENTS / group {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            for i in g * group..(g + 1) * group {
                t.insert(i, body(i).as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    start.elapsed()
}

fn main() {
    println!("| engine | events per commit | events/s | commits/s |");
    println!("|---|---|---|---|");
    for group in [100u64, 1000] {
        for (name, run) in [
            (
                "write + fdatasync (floor)",
                raw as fn(&std::path::Path, u64) -> Duration,
            ),
            ("switchyard log", switchyard_log),
            ("redb", redb),
        ] {
            let dir =
                tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
                    .unwrap();
            let took = run(dir.path(), group).as_secs_f64();
            let events = EVENTS as f64 / took;
            println!(
                "| {name} | {group} | {events:.0} | {:.0} |",
                events / group as f64
            );
        }
    }
}
