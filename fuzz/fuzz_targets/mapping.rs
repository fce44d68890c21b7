//! The mapping-kit: any `{"subscribe", "mapping", "event"}` object (the test-mapping input)
//! compiles and evaluates or fails with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let result = switchyard::mapping::test_mapping(&input);
    serde_json::to_string(&result).expect("a result serialises");
    if let Some(mapping) = input.get("mapping")
        && let Ok(m) = switchyard::mapping::Mapping::compile(mapping.clone())
    {
        let _ = m.evaluate(input.get("event").unwrap_or(&Value::Null));
    }
});
