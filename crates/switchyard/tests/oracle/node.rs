//! Running one of the oracle scripts in `tests/sdk/` with node.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

fn require_services() -> bool {
    std::env::var("SWITCHYARD_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether node and `package` (installed in tests/sdk) are there; otherwise prints a loud
/// SKIPPED line, or panics when services are required.
fn available(package: &str) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = sdk_dir()
        .join("node_modules")
        .join(package)
        .join("package.json")
        .is_file();
    if node && installed {
        return true;
    }
    let what = if node {
        format!("the npm package {package} (cd crates/switchyard/tests/sdk && npm ci)")
    } else {
        "node".to_owned()
    };
    assert!(
        !require_services(),
        "{what} is not installed and SWITCHYARD_REQUIRE_SERVICES=1; run .ci/run"
    );
    eprintln!("SKIPPED: {what} is not installed (run .ci/run to install it)");
    false
}

/// Runs `tests/sdk/<script>` with `input` as JSON on stdin and returns its JSON output;
/// `None` when node or `package` is missing (the test then skips).
pub fn run(script: &str, package: &str, input: &Value) -> Option<Value> {
    if !available(package) {
        return None;
    }
    let mut child = Command::new("node")
        .arg(sdk_dir().join(script))
        .current_dir(sdk_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let body = serde_json::to_vec(input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().expect("running node");
    writer.join().unwrap().expect("writing to node");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the oracle prints JSON"))
}
