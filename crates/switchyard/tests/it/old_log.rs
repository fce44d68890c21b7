//! Writes a log as an older Switchyard would have, before ingest refused JSON a reader
//! cannot parse: the records go straight into the log, past ingest's checks, so the tests
//! can check what every reader does with them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use switchyard::log::record::{Entry, Kind};
use switchyard::log::{Log, LogOptions};

/// Appends `(kind, messageId, body)` records to the log in `dir` (source `web`, environment
/// `production`, received now: a record received over `backlog.max_age` ago would be
/// dead-lettered as `backlog_overflow` before a destination read it).
pub fn write(dir: &Path, records: &[(Kind, &str, &str)]) {
    let opts = LogOptions {
        segment_bytes: 64 << 20,
        commit_window: Duration::from_millis(1),
        queue_requests: 16,
        queue_bytes: 64 << 20,
        dedupe_window: Duration::from_secs(86_400),
        dedupe_max_keys: 1000,
        clock: Arc::new(switchyard::clock::SystemClock),
    };
    let metrics = Arc::new(switchyard::telemetry::Metrics::new());
    let (log, _) = Log::open(dir, &opts, metrics, |_| {}).expect("open the log");
    let entries = records
        .iter()
        .map(|(kind, id, body)| Entry {
            kind: *kind,
            received_ms: switchyard::event::now_ms(),
            source: "web".into(),
            environment: "production".into(),
            message_id: (*id).to_owned(),
            reason: String::new(),
            body: body.as_bytes().to_vec(),
        })
        .collect();
    // On a thread of its own: the caller may be inside a runtime.
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(log.append(entries)).expect("append");
        });
    });
    log.close();
}
