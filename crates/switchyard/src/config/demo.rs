//! The demo workspace `serve` starts without `--config` (README "The two commands"): one `http_api`
//! source and a `file` destination, on an embedded store under `./data`. Its write key is generated
//! once and kept in the data directory.

use std::fs;
use std::io;
use std::path::Path;

use super::{Config, compile_str};

pub const DEMO_SOURCE: &str = "demo";
const KEY_FILE: &str = "demo_write_key";

/// Reads the demo write key from `data_dir`, creating it on first use.
pub fn write_key(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok(k.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(data_dir)?;
    let key = format!("wk_demo_{}", uuid::Uuid::new_v4().simple());
    let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
    fs::write(&tmp, &key)?;
    fs::rename(&tmp, &path)?;
    Ok(key)
}

/// The demo config for `data_dir`, listening on `listen`.
pub fn config(data_dir: &Path, listen: &str) -> anyhow::Result<Config> {
    let key = write_key(data_dir)?;
    let dir = data_dir.display().to_string();
    let yaml = serde_json::json!({
        "server": { "listen": listen, "data_dir": dir },
        "sources": [{ "id": DEMO_SOURCE, "type": "http_api", "write_keys": { "production": key } }],
        "destinations": [{ "id": "events", "type": "file", "start": "earliest",
                           "settings": { "path": data_dir.join("events.jsonl").display().to_string() } }],
    });
    // JSON is YAML; `$` in a path would be read as a variable, so escape it.
    let text = yaml.to_string().replace("${", "$${");
    let (config, problems) = compile_str(&text, "<demo>", &|_| None);
    config.ok_or_else(|| anyhow::anyhow!("demo config is invalid: {problems:?}"))
}
