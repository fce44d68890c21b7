//! What a source function emits, as the host hands it to ingest: any list of JSON values,
//! some without a messageId (which gets the deterministic `fn-` id spliced in), becomes log
//! entries without a panic, and every accepted entry parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;
use switchyard::event::RequestContext;
use switchyard::log::record::Kind;

fuzz_target!(|data: &[u8]| {
    let Ok(events) = serde_json::from_slice::<Vec<Box<RawValue>>>(data) else {
        return;
    };
    let without_id: Vec<usize> = (0..events.len()).filter(|i| data.len() % (i + 2) == 0).collect();
    let cx = RequestContext {
        source: "fn",
        environment: "production",
        received_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        path_type: None,
        sent_at: None,
        context: None,
        integrations: None,
    };
    let entries = switchyard::webhooks::emit::function_entries(&events, &without_id, &cx, data);
    assert_eq!(entries.len(), events.len());
    for e in entries {
        let v: Value = serde_json::from_slice(&e.body).expect("every entry's body is JSON");
        if e.kind == Kind::Accepted {
            assert_eq!(v["messageId"].as_str(), Some(e.message_id.as_str()));
        }
    }
});
