//! `switchyard test-mapping`: Segment's "Test Mapping" button on the command line. Reads
//! JSON lines `{"subscribe", "mapping", "event"}` on stdin and writes one
//! `{"matched", "payload", "error"}` line per input. Never opens `data_dir`; exits 0.

use std::io::{BufRead, Write};

use crate::mapping::{TestResult, test_mapping};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: &Args) -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    for line in stdin.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let result = match serde_json::from_str(&line) {
            Ok(v) => test_mapping(&v),
            Err(e) => TestResult {
                matched: false,
                payload: None,
                error: Some(format!("invalid JSON line: {e}")),
            },
        };
        serde_json::to_writer(&mut out, &result)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
