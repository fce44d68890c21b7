//! Issue 12 item 5: time that decides behaviour comes from the injected clock, so a test
//! moves time instead of waiting for it. A function re-run (`RetryError`) an hour away runs
//! as soon as the clock is moved past it.

use std::time::Duration;

use hyper::StatusCode;
use switchyard::clock::{Clock, ManualClock};

use crate::harness::*;

const JSON: (&str, &str) = ("content-type", "application/json");

const LATE: &str = "async function onRequest(request) { if (!globalThis.ok) { globalThis.ok = true; throw new RetryError('later'); } Segment.track({event: 'Late', userId: 'u'}); }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_retry_waits_for_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = d.join("late.js");
    std::fs::write(&f, LATE).unwrap();
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", min_free_disk: 1MiB }}
functions: {{ workers: 1, retry: {{ attempts: 3, initial: 1h, max: 1h }} }}
sources:
  - {{ id: late, type: webhook, public: true, function: "{f}" }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
"#,
        dir = d.display(),
        f = f.display()
    );
    let clock = ManualClock::new(switchyard::event::now_ms());
    let app = TestApp::start_with_clock(d, &yaml, clock.clone()).await;
    let (status, _) = app.post_with("/webhooks/late", &[JSON], b"{}").await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "stored for a re-run in an hour"
    );
    let (_, stored) = app.get("/api/v1/sources/late/function-logs").await;
    assert_eq!(stored["runs"][0]["events"], 0, "{stored}");
    // An hour passes on the clock, not on the wall: the re-run happens now.
    clock.advance(Duration::from_secs(3601));
    assert!(clock.now_ms() > switchyard::event::now_ms() + 3_500_000);
    let events = app.delivered(1).await;
    assert_eq!(events[0]["event"], "Late");
    app.stop().await;
}
