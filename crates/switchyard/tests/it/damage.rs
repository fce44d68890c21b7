//! A damaged log record at every kind of destination reader: the record after it is read
//! and delivered, and the damaged one is not passed over unseen — each destination gets a
//! `log_damage` dead letter naming the log records it lost, which cannot be replayed.

use std::collections::HashSet;

use hyper::Method;
use serde_json::Value;
use switchyard::cli::client;

use crate::corruption::{flip, segments, write_events};
use crate::disk::delivered;
use crate::harness::*;
use crate::receiver::Receiver;

fn yaml(dir: &std::path::Path, hook: &str, pg: Option<&str>) -> String {
    let warehouse = pg.map_or(String::new(), |url| {
        format!(
            "  - {{ id: wh, type: postgres, start: earliest, settings: {{ url: \"{url}\" }} }}\n"
        )
    });
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB, allow_private_networks: true }}
storage: {{ segment_bytes: 64KiB }}
sources:
  - {{ id: web, type: http_api, write_keys: {{ production: {KEY} }} }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
  - id: hook
    type: webhook
    start: earliest
    mappings: [{{ name: all, subscribe: 'type = "track"', url: "{hook}/in" }}]
{warehouse}"#,
        dir = dir.display()
    )
}

async fn dead_letters(url: &str, dest: &str) -> Vec<Value> {
    let r = client::call(
        Method::GET,
        &format!("{url}/api/v1/destinations/{dest}/dead-letters"),
        None,
        None,
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["dead_letters"].as_array().cloned().unwrap_or_default()
}

/// How many records a `log_damage` detail names (`records 5..=7` or `records 5`).
fn records_named(detail: &str) -> u64 {
    let range = detail
        .strip_prefix("log records ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("a range: {detail}"));
    match range.split_once("..=") {
        Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
        None => {
            range.parse::<u64>().unwrap();
            1
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_a_log_damage_dead_letter_at_every_destination() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_events(dir.path(), false, 11).await;
    let segs = segments(dir.path());
    let len = std::fs::metadata(&segs[1]).unwrap().len();
    flip(&segs[1], len / 2, 4);

    let receiver = Receiver::start().await;
    let pg = crate::warehouse::fresh_db().await;
    let yaml = yaml(dir.path(), &receiver.url, pg.as_ref().map(|p| p.0.as_str()));
    let app = TestApp::start_with(dir.path(), &yaml).await;
    crate::crash::wait_drained(&app.url).await;

    let got = delivered(dir.path());
    let lost: Vec<&String> = acked.iter().filter(|id| !got.contains(*id)).collect();
    assert!(
        (1..=2).contains(&lost.len()),
        "the flipped bytes cost one record (two if they straddle a boundary): {lost:?}"
    );
    let hooked: HashSet<String> = receiver
        .wait_for("every intact event", |r| {
            r.len() + lost.len() >= acked.len()
        })
        .await
        .iter()
        .map(|r| r.json()["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hooked, got, "the webhook got what the archive got");

    let mut dests = vec!["archive", "hook"];
    if let Some((_, client, _)) = &pg {
        dests.push("wh");
        let rows = client
            .query_one("SELECT count(*) FROM web.tracks", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(
            rows as usize,
            got.len(),
            "the warehouse loaded the intact events"
        );
    }
    for dest in dests {
        let dl = dead_letters(&app.url, dest).await;
        let damage: Vec<&Value> = dl.iter().filter(|d| d["reason"] == "log_damage").collect();
        assert_eq!(
            damage.len(),
            1,
            "{dest}: one log_damage dead letter: {dl:?}"
        );
        let detail = damage[0]["detail"].as_str().unwrap();
        assert_eq!(records_named(detail), lost.len() as u64, "{dest}: {detail}");
        assert!(detail.contains("log/quarantine/"), "{dest}: {detail}");
        assert_eq!(damage[0]["request"], Value::Null);
        let id = damage[0]["id"].as_u64().unwrap();
        let replay = client::call(
            Method::POST,
            &format!(
                "{}/api/v1/destinations/{dest}/dead-letters/{id}/replay",
                app.url
            ),
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            replay.status,
            400,
            "{dest}: {}",
            String::from_utf8_lossy(&replay.body)
        );
    }
    app.stop().await;
}

/// Issue 12 item 3: a log read that fails outright (a segment replaced by a directory) is
/// retried by the delivery worker, shown in `inspect` and counted, never a silent stop; once
/// the segment is back every event is delivered and the error clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_read_is_retried_and_shown_by_the_delivery_worker() {
    let dir = tempfile::tempdir().unwrap();
    let acked = write_events(dir.path(), false, 11).await;
    let unreadable = crate::corruption::UnreadableSegment::new(dir.path());
    let receiver = Receiver::start().await;
    let yaml = yaml(dir.path(), &receiver.url, None).replace(
        "  - { id: archive, type: file, start: earliest, settings: { path: \"",
        "  - { id: archive, type: file, start: latest, settings: { path: \"",
    );
    let app = TestApp::start_with(dir.path(), &yaml).await;
    let hook_error = |report: &Value| -> String {
        report["destinations"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] == "hook"))
            .and_then(|d| d["last_error"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, report) = app.get("/api/v1/inspect").await;
        let (_, metrics) = app.get("/metrics").await;
        let counted = metrics
            .as_str()
            .unwrap_or_default()
            .contains("switchyard_destination_log_read_errors_total{destination=\"hook\"}");
        if hook_error(&report).starts_with("reading the log failed") && counted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never shown: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unreadable.restore();
    let got = receiver
        .wait_for("every event", |r| r.len() >= acked.len())
        .await;
    let ids: HashSet<String> = got
        .iter()
        .map(|r| r.json()["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, acked.iter().cloned().collect::<HashSet<_>>());
    let (_, report) = app.get("/api/v1/inspect").await;
    assert_eq!(hook_error(&report), "", "the error clears: {report}");
    app.stop().await;
}
