//! The JavaScript engine's bare call rate: the KnoCommerce seed function called in a loop on
//! one thread, as a pool worker calls it (no HTTP, no log). Prints one JSON line.
//!
//!   cargo bench -p switchyard --bench engine -- [seconds]

use std::rc::Rc;
use std::time::{Duration, Instant};

use switchyard::functions::engine::Engine;
use switchyard::functions::host::FetchHost;
use switchyard::functions::{FnRequest, Limits};

fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let code = include_str!("../../../examples/knocommerce/functions/knocommerce.js");
    let body = include_str!("../../../examples/knocommerce/payloads/survey-response.json");
    let limits = Limits {
        deadline: Duration::from_secs(5),
        memory: 128 << 20,
    };
    let mut engine = Engine::new(
        "knocommerce.js",
        code,
        limits,
        Rc::new(FetchHost::unavailable()),
    )
    .expect("the seed function compiles");
    let req = FnRequest {
        body: body.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        url: "http://127.0.0.1/webhooks/kno".into(),
    };
    let t = Instant::now();
    let mut calls = 0u64;
    while t.elapsed().as_secs_f64() < seconds {
        for _ in 0..1000 {
            let o = engine.call(&req, "{}");
            assert!(o.error.is_none() && o.events.len() == 1, "{:?}", o.error);
        }
        calls += 1000;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"calls\": {calls}, \"seconds\": {secs:.2}, \"calls_per_s\": {:.0}, \"us_per_call\": {:.2}}}",
        calls as f64 / secs,
        secs * 1e6 / calls as f64
    );
}
