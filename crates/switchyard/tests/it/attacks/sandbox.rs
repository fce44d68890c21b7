//! Category 5: escaping the function sandbox, running away with it, and forging what the
//! prelude hands the host. One `probe` source evaluates the attack code it is sent (through
//! `POST /api/v1/sources/probe/test-function`, or its webhook for what must not be
//! emitted); an `other` source reports what it sees of the globals. Each attack ends as the
//! documented error, and the server keeps serving.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

const PROBE: &str = r#"async function onRequest(request) {
  const code = request.json().code;
  const run = new Function('request', 'return (async () => {\n' + code + '\n})()');
  const result = await run(request);
  console.log('result', JSON.stringify(result === undefined ? null : result));
}
"#;

const OTHER: &str = r#"async function onRequest(request) {
  console.log('result', JSON.stringify([typeof leaked, ({}).polluted === undefined ? null : ({}).polluted, typeof Array.prototype.sneaky]));
}
"#;

fn yaml(dir: &Path) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, data_dir: "{dir}", shutdown_timeout: 5s, min_free_disk: 1MiB }}
functions: {{ workers: 1, deadline: 1500ms, memory: 32MiB }}
sources:
  - {{ id: probe, type: webhook, public: true, function: "{dir}/probe.js" }}
  - {{ id: other, type: webhook, public: true, function: "{dir}/other.js" }}
destinations:
  - {{ id: archive, type: file, start: earliest, settings: {{ path: "{dir}/events.jsonl" }} }}
"#,
        dir = dir.display()
    )
}

/// What an attack must end as.
enum Want {
    /// Succeeds with this result.
    Is(Value),
    /// Fails with this error kind (`other`, `timeout`, `memory`, ...; empty: any) and
    /// message part.
    Fails(&'static str, &'static str),
}

async fn test_run(app: &TestApp, source: &str, code: &str) -> (Value, Duration) {
    let started = Instant::now();
    let saved = json!({"body": {"code": code}});
    let (status, report) = app
        .post_with(
            &format!("/api/v1/sources/{source}/test-function"),
            &[],
            saved.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{code}: {report}");
    (report, started.elapsed())
}

fn result_of(report: &Value) -> Option<Value> {
    report["logs"]
        .as_array()?
        .iter()
        .filter_map(|l| l["message"].as_str()?.strip_prefix("result "))
        .next_back()
        .and_then(|r| serde_json::from_str(r).ok())
}

fn check(name: &str, report: &Value, want: &Want) -> Result<(), String> {
    match want {
        Want::Is(v) => match (&report["error"], result_of(report)) {
            (Value::Null, Some(got)) if &got == v => Ok(()),
            _ => Err(format!("{name}: want {v}, got {report}")),
        },
        Want::Fails(kind, part) => {
            let e = &report["error"];
            let text = format!(
                "{}: {}",
                e["name"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
            if !e.is_null() && (kind.is_empty() || e["kind"] == *kind) && text.contains(part) {
                Ok(())
            } else {
                Err(format!(
                    "{name}: want {kind} error with {part:?}, got {report}"
                ))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_the_function_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.js"), PROBE).unwrap();
    std::fs::write(dir.path().join("other.js"), OTHER).unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path())).await;
    let hidden = r#"return ['__host','std','os','process','require','module','exports','print','scriptArgs','Deno','Bun','__loadScript','load','read','readFile','writeFile','environ','getenv','system','exec']
      .filter((n) => n in globalThis || Object.getOwnPropertyNames(globalThis).includes(n));"#;
    let cases: Vec<(&str, &str, Want)> = vec![
        (
            "require",
            "return require('fs')",
            Want::Fails("other", "require is not defined"),
        ),
        (
            "typeof require",
            "return typeof require",
            Want::Is(json!("undefined")),
        ),
        (
            "process.env",
            "return process.env",
            Want::Fails("other", "process is not defined"),
        ),
        (
            "import('fs')",
            "return await import('fs')",
            Want::Fails("other", ""),
        ),
        (
            "import('std')",
            "const s = await import('std'); return typeof s.getenv",
            Want::Fails("other", ""),
        ),
        (
            "import('os')",
            "const o = await import('os'); return typeof o.exec",
            Want::Fails("other", ""),
        ),
        (
            "import('qjs:os')",
            "const o = await import('qjs:os'); return typeof o.exec",
            Want::Fails("other", ""),
        ),
        ("host globals", hidden, Want::Is(json!([]))),
        (
            "std/os/print",
            "return [typeof std, typeof os, typeof print, typeof scriptArgs, typeof __host]",
            Want::Is(json!([
                "undefined",
                "undefined",
                "undefined",
                "undefined",
                "undefined"
            ])),
        ),
        (
            "Function constructor",
            "return Function('return typeof process + typeof require + typeof __host')()",
            Want::Is(json!("undefinedundefinedundefined")),
        ),
        (
            "constructor chain",
            "return (function () { return this; })().constructor.constructor('return typeof std')()",
            Want::Is(json!("undefined")),
        ),
        (
            "indirect eval",
            "return (0, eval)('typeof os')",
            Want::Is(json!("undefined")),
        ),
        (
            "async Function constructor",
            "const AF = (async function () {}).constructor; return await AF('return typeof require')()",
            Want::Is(json!("undefined")),
        ),
        (
            "redefine __poll",
            "Object.defineProperty(globalThis, '__poll', { value: () => null }); return 1",
            Want::Fails("other", "TypeError"),
        ),
        (
            "assign __run",
            "'use strict'; globalThis.__run = null; return 1",
            Want::Fails("other", "TypeError"),
        ),
        (
            "Segment is frozen",
            "'use strict'; Segment.track = () => {}; return 1",
            Want::Fails("other", "TypeError"),
        ),
        (
            "infinite loop",
            "while (true) {}",
            Want::Fails("timeout", "deadline"),
        ),
        (
            "catching the interrupt",
            "for (;;) { try { while (true) {} } catch (e) {} }",
            Want::Fails("timeout", "deadline"),
        ),
        (
            "microtask loop",
            "for (;;) { await null; }",
            Want::Fails("timeout", "deadline"),
        ),
        (
            "timer loop",
            "await new Promise(() => { const again = () => setTimeout(again, 0); again(); })",
            Want::Fails("", ""),
        ),
        (
            "timer flood",
            "for (let i = 0; i < 1001; i++) setTimeout(() => {}, 1e9); return 1",
            Want::Fails("other", "at most 1000 timers"),
        ),
        (
            "memory bomb",
            "const a = []; for (;;) a.push('x'.repeat(1 << 20) + a.length);",
            Want::Fails("memory", ""),
        ),
        (
            "one huge string",
            "return 'x'.repeat(2 ** 30).length",
            Want::Fails("", ""),
        ),
        (
            "recursion bomb",
            "function f(n) { return f(n + 1) + 1; } return f(0);",
            Want::Fails("other", "stack"),
        ),
        (
            "deep JSON.parse",
            "return JSON.parse('['.repeat(200000) + ']'.repeat(200000)).length",
            Want::Fails("", ""),
        ),
        (
            "deep JSON.stringify",
            "let v = []; for (let i = 0; i < 200000; i++) v = [v]; return JSON.stringify(v).length",
            Want::Fails("", ""),
        ),
        (
            "regex backtracking",
            "return /^(a+)+$/.test('a'.repeat(40) + 'b')",
            Want::Fails("timeout", "deadline"),
        ),
        (
            "Atomics.wait",
            "if (typeof SharedArrayBuffer === 'undefined') { while (true) {} } const a = new Int32Array(new SharedArrayBuffer(4)); return Atomics.wait(a, 0, 0, 60000)",
            Want::Fails("", ""),
        ),
        (
            "fetch flood",
            "const r = await Promise.allSettled(Array.from({ length: 101 }, () => fetch('http://127.0.0.1:1/'))); return r.filter((x) => String(x.reason).includes('at most 100')).length",
            Want::Is(json!(1)),
        ),
    ];
    let mut failures = Vec::new();
    for (name, code, want) in &cases {
        let (report, took) = test_run(&app, "probe", code).await;
        if let Err(e) = check(name, &report, want) {
            failures.push(e);
        }
        if took > Duration::from_secs(6) {
            failures.push(format!("{name}: took {took:?}, past the 1.5 s deadline"));
        }
        // The server keeps serving, and the engine is whole again for the next run.
        let (report, _) = test_run(&app, "probe", "return 40 + 2").await;
        if result_of(&report) != Some(json!(42)) {
            failures.push(format!("after {name}: a plain run got {report}"));
        }
    }

    // Console floods: bounded to 100 lines / 16 KiB and a marker, however they are made.
    let floods = [
        (
            "console flood",
            "for (let i = 0; i < 100000; i++) console.log('x'.repeat(10000));",
        ),
        (
            "console flood with one huge line",
            "console.log('y'.repeat(10 << 20));",
        ),
        (
            "console flood through Array.prototype.push",
            "const push = Array.prototype.push; Array.prototype.push = function (...a) { if (a[0] && a[0].level) { Array.prototype.push = push; for (let i = 0; i < 5000; i++) push.call(this, { level: 'log', message: 'z'.repeat(1000) }); } return push.apply(this, a); }; console.log('trigger');",
        ),
    ];
    for (name, code) in floods {
        let (report, _) = test_run(&app, "probe", code).await;
        let logs = report["logs"].as_array().cloned().unwrap_or_default();
        let bytes: usize = logs
            .iter()
            .map(|l| l["message"].as_str().unwrap_or("").len())
            .sum();
        if logs.len() > 101 || bytes > 16_384 + 200 {
            failures.push(format!("{name}: {} lines, {bytes} bytes kept", logs.len()));
        }
    }

    // Globals persist between runs of one function (the contract), never across sources.
    let plant = "globalThis.leaked = 'probe-secret'; Object.prototype.polluted = 'yes'; Array.prototype.sneaky = () => 1; return 1";
    let (report, _) = test_run(&app, "probe", plant).await;
    assert_eq!(result_of(&report), Some(json!(1)), "{report}");
    let (report, _) = test_run(&app, "probe", "return [typeof leaked, ({}).polluted]").await;
    if result_of(&report) != Some(json!(["string", "yes"])) {
        failures.push(format!(
            "globals did not persist within the source: {report}"
        ));
    }
    let (report, _) = test_run(&app, "other", "").await;
    if result_of(&report) != Some(json!(["undefined", null, "undefined"])) {
        failures.push(format!("another source saw probe's globals: {report}"));
    }
    let cleanup = "delete globalThis.leaked; delete Object.prototype.polluted; delete Array.prototype.sneaky; return 1";
    test_run(&app, "probe", cleanup).await;

    // Forging the prelude's output through globals it uses: the emit cap still holds.
    let forged = "const events = []; for (let i = 0; i < 3000; i++) events.push({ type: 'track', event: 'Forged', userId: 'u', messageId: 'forged-' + PREFIX + '-' + i });";
    let through_stringify = format!(
        r#"const stringify = JSON.stringify;
      JSON.stringify = function (v, ...rest) {{
        if (v && typeof v === 'object' && 'no_id' in v) {{
          JSON.stringify = stringify;
          {forged}
          return stringify({{ ok: true, logs: [], events, no_id: [], objects: [] }});
        }}
        return stringify.call(this, v, ...rest);
      }};
      return 1"#
    );
    let through_to_json = format!(
        r#"Array.prototype.toJSON = function () {{
        if (this.length === 1 && this[0] && this[0].event === 'Seed') {{
          delete Array.prototype.toJSON;
          {forged}
          return events;
        }}
        return Array.from(this);
      }};
      Segment.track({{ event: 'Seed', userId: 'u' }});
      return 1"#
    );
    // (JSON.stringify is taken by the prelude before the function runs, so that forgery
    // never reaches the host; toJSON does, and the host's own count refuses it.)
    for (name, code, must_refuse) in [
        ("JSON.stringify", through_stringify, false),
        ("Array.prototype.toJSON", through_to_json, true),
    ] {
        let code = code.replace("PREFIX", &format!("'{}'", name.replace('.', "-")));
        let body = json!({ "code": code }).to_string();
        let (status, resp) = app
            .post_with(
                "/webhooks/probe",
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .await;
        // Refused as over the cap, or the forgery never reached the host at all.
        let refused = status == StatusCode::BAD_REQUEST
            && resp["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("EmitLimitError");
        let ignored = status == StatusCode::OK && resp["emitted"] == 0;
        if !refused && (must_refuse || !ignored) {
            failures.push(format!(
                "3,000 events forged through {name}: {status} {resp}"
            ));
        }
    }
    app.wait_drained().await;
    let forged = app.recent_of("probe", "status=accepted&limit=1000").await;
    if !forged.is_empty() {
        failures.push(format!("{} forged events were accepted", forged.len()));
    }
    let (report, _) = test_run(&app, "probe", "return 40 + 2").await;
    if result_of(&report) != Some(json!(42)) {
        failures.push(format!("after forging: {report}"));
    }
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert!(
        failures.is_empty(),
        "{} sandbox attacks misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "sandbox: {} attacks, all ended as documented",
        cases.len() + floods.len() + 4
    );
    app.stop().await;
}
