use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::engine::Engine;
use super::host::FetchHost;
use super::*;

fn limits(deadline_ms: u64) -> Limits {
    Limits {
        deadline: Duration::from_millis(deadline_ms),
        memory: 32 << 20,
    }
}

fn engine(code: &str) -> Engine {
    Engine::new(
        "fn.js",
        code,
        limits(2000),
        Rc::new(FetchHost::unavailable()),
    )
    .unwrap_or_else(|e| panic!("compile: {e:?}"))
}

fn request(body: &str) -> FnRequest {
    FnRequest {
        body: body.into(),
        headers: vec![("X-Kno-Topic".into(), "response/create".into())],
        url: "https://hooks.example.com/webhooks/kno?token=abc&x=1+2".into(),
    }
}

fn events(o: &Outcome) -> Vec<Value> {
    o.events
        .iter()
        .map(|r| serde_json::from_str(r.get()).unwrap())
        .collect()
}

const KNO: &str = include_str!("../../../../examples/knocommerce/functions/knocommerce.js");
const STIGG: &str = include_str!("../../../../examples/stigg/functions/stigg.js");

#[test]
fn knocommerce_seed_names_the_event_and_picks_the_user() {
    let mut e = engine(KNO);
    let o = e.call(&request(r#"{"customerId":"c_42","score":9}"#), "{}");
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(
        events(&o),
        vec![
            json!({"type":"track","event":"KnoCommerce Webhook Event","properties":{"customerId":"c_42","score":9},"userId":"c_42"})
        ]
    );
    let o = e.call(&request(r#"{"score":3}"#), "{}");
    let ev = &events(&o)[0];
    assert_eq!(ev["anonymousId"], "knocommerce-anon");
    assert!(
        ev.get("userId").is_none(),
        "a falsy userId is omitted: {ev}"
    );
}

#[test]
fn stigg_seed_maps_customer_events_and_skips_the_rest() {
    let mut e = engine(STIGG);
    let body = r#"{"type":"customer.updated","customer":{"id":"cus_1"}}"#;
    let o = e.call(&request(body), "{}");
    assert!(o.error.is_none(), "{:?}", o.error);
    let ev = &events(&o)[0];
    assert_eq!(ev["event"], "customer_updated");
    assert_eq!(ev["userId"], "cus_1");
    let o = e.call(&request(r#"{"type":"entitlement.updated"}"#), "{}");
    assert!(o.error.is_none() && o.events.is_empty());
}

#[test]
fn infinite_loop_stops_at_the_deadline_and_poisons_the_engine() {
    let mut e = Engine::new(
        "loop.js",
        "async function onRequest() { while (true) {} }",
        limits(200),
        Rc::new(FetchHost::unavailable()),
    )
    .unwrap();
    let t = Instant::now();
    let o = e.call(&request("{}"), "{}");
    let took = t.elapsed();
    assert_eq!(o.error.as_ref().unwrap().kind, ErrorKind::Timeout);
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(e.poisoned);
}

#[test]
fn a_memory_bomb_is_contained() {
    let code = "async function onRequest() { const a = []; while (true) a.push('x'.repeat(1 << 16) + a.length); }";
    let mut e = Engine::new(
        "bomb.js",
        code,
        limits(5000),
        Rc::new(FetchHost::unavailable()),
    )
    .unwrap();
    let o = e.call(&request("{}"), "{}");
    let err = o.error.unwrap();
    assert_eq!(err.kind, ErrorKind::Memory, "{err:?}");
    assert!(e.poisoned);
}

#[test]
fn error_classes_map_to_kinds() {
    for (class, kind) in [
        ("ValidationError", ErrorKind::Validation),
        ("InvalidEventPayload", ErrorKind::InvalidEventPayload),
        ("EventNotSupported", ErrorKind::EventNotSupported),
        ("RetryError", ErrorKind::Retry),
        ("TypeError", ErrorKind::Other),
    ] {
        let code = format!(
            "async function onRequest() {{ Segment.track({{event:'x',userId:'u'}}); throw new {class}('nope'); }}"
        );
        let o = engine(&code).call(&request("{}"), "{}");
        let err = o.error.unwrap();
        assert_eq!(
            (err.kind, err.name.as_str(), err.message.as_str()),
            (kind, class, "nope")
        );
        assert!(o.events.is_empty(), "a failed run emits nothing");
    }
}

#[test]
fn syntax_errors_point_at_file_line_col() {
    let err = check(
        "functions/bad.js",
        "async function onRequest() {\n  let x = ;\n}",
        limits(1000),
    )
    .unwrap_err();
    assert!(err.location.starts_with("functions/bad.js:2:"), "{err:?}");
    assert!(err.message.contains("SyntaxError"), "{err:?}");
    let err = check("f.js", "function other() {}", limits(1000)).unwrap_err();
    assert!(err.message.contains("onRequest"), "{err:?}");
}

#[test]
fn emulator_rules_for_segment_calls() {
    let code = r#"async function onRequest(request) {
        const which = request.json().which;
        if (which === 'no-event') Segment.track({userId: 'u'});
        if (which === 'no-id') Segment.identify({traits: {a: 1}});
        if (which === 'no-group') Segment.group({userId: 'u'});
        if (which === 'ok') {
          Segment.identify({userId: 'u', traits: {plan: 'pro'}, context: '', timestamp: 0});
          Segment.page({anonymousId: 'a', name: 'Home', properties: {path: '/'}});
          Segment.screen({userId: 'u', name: 'Main'});
          Segment.group({userId: 'u', groupId: 'g1', traits: {n: 2}});
          Segment.alias({userId: 'u', previousId: 'p'});
          Segment.set({collection: 'rooms', id: 7, properties: {size: 3}});
        }
    }"#;
    let mut e = engine(code);
    for (which, msg) in [
        ("no-event", "event is required but not defined"),
        (
            "no-id",
            "One of userId,anonymousId is required but not defined",
        ),
        ("no-group", "groupId is required but not defined"),
    ] {
        let o = e.call(&request(&json!({ "which": which }).to_string()), "{}");
        let err = o.error.unwrap();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Validation, msg)
        );
    }
    let o = e.call(&request(r#"{"which":"ok"}"#), "{}");
    let evs = events(&o);
    let types: Vec<_> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["identify", "page", "screen", "group", "alias"]);
    assert_eq!(
        evs[0],
        json!({"type":"identify","traits":{"plan":"pro"},"userId":"u"})
    );
    let obj: Value = serde_json::from_str(o.objects[0].get()).unwrap();
    assert_eq!(
        obj,
        json!({"collection":"rooms","id":"7","properties":{"size":3}})
    );
}

#[test]
fn request_headers_url_settings_and_globals() {
    let code = r#"async function onRequest(request, settings) {
        const u = request.url;
        const uuid = crypto.randomUUID();
        Segment.track({userId: 'u', event: 'probe', properties: {
          topic: request.headers.get('x-kno-topic'),
          missing: request.headers.get('nope'),
          token: u.searchParams.get('token'),
          x: u.searchParams.get('x'),
          host: u.hostname, path: u.pathname,
          text: request.text(),
          same: request.json() === request.json(),
          b64: btoa('hi!'), back: atob('aGkh'),
          uuid: /^[0-9a-f-]{36}$/.test(uuid),
          setting: settings.defaultEvent,
          built: new URL('/a?b=c d', 'https://x.io').href,
          qs: new URLSearchParams({a: '1 2', b: 'é'}).toString(),
        }});
        console.log('hello', {n: 1});
        console.error(new Error('boom').message);
    }"#;
    let o = engine(code).call(&request(r#"{"k":1}"#), r#"{"defaultEvent":"Kno"}"#);
    assert!(o.error.is_none(), "{:?}", o.error);
    let p = &events(&o)[0]["properties"];
    assert_eq!(
        *p,
        json!({"topic":"response/create","missing":null,"token":"abc","x":"1 2",
               "host":"hooks.example.com","path":"/webhooks/kno","text":"{\"k\":1}","same":true,
               "b64":"aGkh","back":"hi!","uuid":true,"setting":"Kno",
               "built":"https://x.io/a?b=c d","qs":"a=1+2&b=%C3%A9"})
    );
    let logs: Vec<_> = o
        .logs
        .iter()
        .map(|l| (l.level.as_str(), l.message.as_str()))
        .collect();
    assert_eq!(logs, [("log", "hello {\"n\":1}"), ("error", "boom")]);
}

#[test]
fn console_output_is_bounded() {
    let code =
        "async function onRequest() { for (let i = 0; i < 10000; i++) console.log('line ' + i); }";
    let o = engine(code).call(&request("{}"), "{}");
    assert!(o.logs.len() <= 101, "{}", o.logs.len());
    assert!(o.logs.last().unwrap().message.contains("dropped"));
}

#[test]
fn timers_fire_inside_the_deadline() {
    let code = r#"async function onRequest() {
        const order = [];
        const t = setTimeout(() => order.push('cleared'), 10);
        clearTimeout(t);
        setTimeout((x) => order.push(x), 30, 'late');
        await new Promise((r) => setTimeout(r, 20));
        order.push('awaited');
        await new Promise((r) => setTimeout(r, 20));
        Segment.track({event: 'Timers', userId: 'u', properties: {order}});
    }"#;
    let t = Instant::now();
    let o = engine(code).call(&request("{}"), "{}");
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(
        events(&o)[0]["properties"]["order"],
        json!(["awaited", "late"])
    );
    assert!(
        t.elapsed() >= Duration::from_millis(40),
        "{:?}",
        t.elapsed()
    );
    let slow = "async function onRequest() { await new Promise((r) => setTimeout(r, 5000)); }";
    let mut e = Engine::new(
        "slow.js",
        slow,
        limits(200),
        Rc::new(FetchHost::unavailable()),
    )
    .unwrap();
    let t = Instant::now();
    assert_eq!(
        e.call(&request("{}"), "{}").error.unwrap().kind,
        ErrorKind::Timeout
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "a timer past the deadline does not hold the run"
    );
}

#[test]
fn awaiting_something_that_never_settles_is_an_error_not_a_hang() {
    let code = "async function onRequest() { await new Promise(() => {}); }";
    let o = engine(code).call(&request("{}"), "{}");
    assert!(o.error.unwrap().message.contains("never settles"));
}

#[test]
fn invalid_json_body_is_a_plain_error() {
    let o = engine(KNO).call(&request("not json"), "{}");
    let err = o.error.unwrap();
    assert_eq!(
        (err.kind, err.name.as_str()),
        (ErrorKind::Other, "SyntaxError")
    );
}

mod hostile {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        /// Whatever arrives, the seed function ends with an outcome: an event for a JSON
        /// object, a plain error otherwise; the engine never panics or poisons.
        #[test]
        fn arbitrary_bodies_end_in_an_outcome(body in "\\PC{0,300}", obj in proptest::option::of("[a-z]{1,8}")) {
            let mut e = engine(KNO);
            let text = match &obj {
                Some(k) => json!({ k.as_str(): body }).to_string(),
                None => body.clone(),
            };
            let o = e.call(&request(&text), "{}");
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(_)) => prop_assert_eq!(o.events.len(), 1, "{:?}", o.error),
                Ok(_) => {}
                Err(_) => prop_assert_eq!(o.error.map(|e| e.name), Some("SyntaxError".to_owned())),
            }
            prop_assert!(!e.poisoned);
        }
    }
}

/// Regression (100,000 emitted events raised RSS tenfold): events and objects count
/// together against the cap at each emit; a run past it fails even if the function
/// caught the error, and the engine's next run starts from zero.
#[test]
fn the_emit_cap_counts_events_and_objects_and_resets_per_run() {
    let cap = host::MAX_EMITTED_PER_RUN;
    let mut e = engine(
        r#"async function onRequest(request) {
  const n = request.json().n;
  for (let i = 0; i < n; i++) {
    try {
      if (i % 2) Segment.set({collection: 'c', id: String(i)});
      else Segment.identify({userId: 'u' + i});
    } catch (err) { console.log(err.name, i); }
  }
}"#,
    );
    let o = e.call(&request(&format!(r#"{{"n":{}}}"#, cap + 3)), "{}");
    let err = o.error.as_ref().expect("over the cap");
    assert_eq!(
        (err.kind, err.name.as_str()),
        (ErrorKind::Other, "EmitLimitError")
    );
    assert!(o.events.is_empty() && o.objects.is_empty());
    assert_eq!(o.logs[0].message, format!("EmitLimitError {cap}"));
    let o = e.call(&request(&format!(r#"{{"n":{cap}}}"#)), "{}");
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.events.len() + o.objects.len(), cap);
}

/// What `__poll` hands the host passes through globals a function can replace, so the host
/// enforces the limits again on what arrives.
#[test]
fn the_host_bounds_a_forged_poll_result() {
    let line = |m: &str| json!({"level": "log", "message": m});
    let many: Vec<Value> = (0..5000).map(|_| line(&"z".repeat(1000))).collect();
    let events: Vec<Value> = (0..2501)
        .map(|i| json!({"type": "track", "event": "E", "userId": "u", "messageId": i.to_string()}))
        .collect();
    let forged = json!({"ok": true, "logs": many, "events": events, "no_id": [], "objects": []});
    let settled: Settled = serde_json::from_value(forged).unwrap();
    let o = settled.into_outcome();
    assert!(o.events.is_empty());
    let e = o.error.expect("over the emit cap");
    assert_eq!(e.name, "EmitLimitError");
    assert!(e.message.ends_with("nothing was emitted"), "{}", e.message);
    assert_eq!(
        o.logs.len(),
        17,
        "16 lines of 1,000 characters, then the marker"
    );
    assert!(o.logs[16].message.contains("was dropped"));
    let odd = json!({"ok": true, "logs": [{"level": "<script>", "message": "hi"}], "events": []});
    let o = serde_json::from_value::<Settled>(odd)
        .unwrap()
        .into_outcome();
    assert_eq!((o.logs[0].level.as_str(), o.error.is_none()), ("log", true));
}
