//! The ingest normaliser on any element, and the round trip the product promises: whatever
//! ingest accepts, every reader of the log can read (a destination's FQL and mapping, the
//! warehouse's rows, the profile store, the debugger's view).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;
use switchyard::event::{EventType, RequestContext, normalize, rejected_display};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // What the webhook pass-through takes: never a panic, whatever the body.
    let _ = switchyard::webhooks::emit::parse_pass_through(rest);
    let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
        return;
    };
    let context: Option<&RawValue> = serde_json::from_str(r#"{"library":{"name":"fuzz"}}"#).ok();
    let cx = RequestContext {
        source: "web",
        environment: "production",
        received_at: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        path_type: (selector & 1 == 1).then_some(EventType::Track),
        sent_at: None,
        context: (selector & 2 == 2).then_some(context).flatten(),
        integrations: None,
    };
    let shown = rejected_display(raw.get());
    serde_json::from_slice::<Value>(&shown).expect("a rejected element's display is JSON");
    let Ok(n) = normalize(raw, &cx) else {
        return;
    };
    let event: Value = serde_json::from_slice(&n.body).expect("an accepted event parses back");
    let Value::Object(map) = &event else {
        panic!("an accepted event is an object");
    };
    let fql = switchyard::fql::Fql::parse(r#"type = "track" and properties.a.b != null"#).unwrap();
    let _ = fql.matches(&event);
    let _ = switchyard::mapping::Mapping::whole_event().evaluate(&event);
    let _ = switchyard::destinations::postgres::rows::rows_for(map, "2026-01-01T00:00:00.000Z");
    assert!(switchyard::profiles::event::ProfileEvent::parse(&n.body).is_some());
});
