//! The `file` destination's `settings:` as written and compiled.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::config::DestinationKind;
use crate::config::compile::Cx;
use crate::config::raw::Scalar;

#[derive(Debug, Clone)]
pub struct FileSettings {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSettings {
    path: String,
    max_bytes: Option<Scalar>,
    keep: Option<usize>,
}

/// `paths` holds the files already written by earlier destinations: two destinations
/// appending to one file would interleave and rotate each other's lines.
pub(crate) fn compile_file(
    cx: &mut Cx,
    settings: Option<&Value>,
    path: &str,
    paths: &mut HashSet<PathBuf>,
) -> Option<DestinationKind> {
    let spath = format!("{path}.settings");
    if settings.is_none() {
        cx.err(&spath, "a file destination needs settings.path");
        return None;
    }
    let raw: RawFileSettings = cx.section(settings, &spath)?;
    let max_bytes = cx.size(&raw.max_bytes, 256 << 20, &format!("{spath}.max_bytes"));
    if max_bytes < 4096 {
        cx.err(format!("{spath}.max_bytes"), "must be at least 4KiB");
    }
    if raw.path.is_empty() {
        cx.err(format!("{spath}.path"), "must not be empty");
        return None;
    }
    let file = PathBuf::from(raw.path);
    if !paths.insert(file.clone()) {
        cx.err(
            format!("{spath}.path"),
            "another file destination already writes this path",
        );
    }
    Some(DestinationKind::File(FileSettings {
        path: file,
        max_bytes,
        keep: raw.keep.unwrap_or(10),
    }))
}
