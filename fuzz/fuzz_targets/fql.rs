//! FQL: any source text parses or fails with an error, and a parsed condition evaluates
//! against events of every shape without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|text: &str| {
    let Ok(fql) = switchyard::fql::Fql::parse(text) else {
        return;
    };
    for event in [
        json!({"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"total": 27.5, "items": [{"sku": "a"}], "ok": true, "none": null}}),
        json!({"type": "identify", "traits": {"email": "a@b.c", "age": -1e300}}),
        json!([1, 2, 3]),
        json!(null),
    ] {
        let _ = fql.matches(&event);
    }
});
