//! Our signatures, checked by an independent implementation: Python's `hmac` module.

use std::process::Command;

use switchyard::signing::{StandardWebhooks, segment_signature};

use crate::harness::require_services;

const PY: &str = r#"
import base64, hashlib, hmac, json, sys
for line in sys.stdin:
    c = json.loads(line)
    body = c["body"].encode()
    if c["scheme"] == "segment":
        print(hmac.new(c["secret"].encode(), body, hashlib.sha1).hexdigest())
    else:
        key = base64.b64decode(c["secret"][len("whsec_"):])
        msg = f'{c["id"]}.{c["ts"]}.'.encode() + body
        print("v1," + base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode())
"#;

#[test]
fn signatures_match_pythons_hmac() {
    let python = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&python).arg("--version").output().is_err() {
        assert!(
            !require_services(),
            "python3 is needed for the independent signature check"
        );
        eprintln!("SKIPPED: no python3 for the independent signature check");
        return;
    }
    let sw_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let sw = StandardWebhooks::from_secret(sw_secret).unwrap();
    let bodies = [
        r#"{"cool":true}"#.to_owned(),
        r#"{"name":"Zoë ✓","n":[1,2.5,null]}"#.to_owned(),
        "x".repeat(5000),
        String::new(),
    ];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let secret = format!("s3cr3t-{i}-ünïcode");
        cases.push(serde_json::json!({"scheme": "segment", "secret": secret, "body": body}));
        ours.push(segment_signature(&secret, body.as_bytes()));
        let id = format!("msg_{i:032}");
        cases.push(serde_json::json!({"scheme": "sw", "secret": sw_secret, "id": id, "ts": 1_700_000_000 + i, "body": body}));
        ours.push(sw.sign(&id, 1_700_000_000 + i as i64, body.as_bytes()));
    }
    let input: String = cases.iter().map(|c| format!("{c}\n")).collect();
    let mut child = Command::new(&python)
        .args(["-c", PY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let theirs: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ours, theirs);
}
