//! The lenient ISO-8601 parser: never a panic, and whatever parses formats back to the same
//! instant at millisecond precision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::event::timestamp::{format, parse};

fuzz_target!(|text: &str| {
    let Some(t) = parse(text) else {
        return;
    };
    let again = parse(&format(t)).expect("our own format parses");
    // Our format truncates to the millisecond: towards the past, also before 1970.
    let ms = |t: time::OffsetDateTime| t.unix_timestamp_nanos().div_euclid(1_000_000);
    assert_eq!(ms(again), ms(t), "{text:?}");
});
