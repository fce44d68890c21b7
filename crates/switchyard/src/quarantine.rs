//! Damage found on disk is never silent: whatever is moved or copied aside goes under
//! `data_dir/quarantine/` (log bytes under `data_dir/log/quarantine/`), and every act is
//! recorded three ways: an error log line, the `switchyard_damage_quarantined` counter (by
//! kind), and a line in `data_dir/quarantine/DAMAGE.txt` that `inspect` lists as a problem
//! until an operator has looked at it and removed the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub const DIR: &str = "quarantine";
const NOTES: &str = "DAMAGE.txt";
/// Lines of `DAMAGE.txt` that `inspect` shows (the newest).
const SHOWN: usize = 50;

type Labels = Vec<(&'static str, String)>;

/// Process-wide, so that a log reader deep in a destination can count what it skipped;
/// registered by every `Metrics`.
static QUARANTINED: LazyLock<Family<Labels, Counter>> = LazyLock::new(Family::default);

pub fn counter() -> Family<Labels, Counter> {
    QUARANTINED.clone()
}

/// What kind of store a damage record is about (the metric's `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A damaged region in the middle of a log segment, skipped by readers.
    LogHole,
    Cursor,
    Dedupe,
    Redb,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::LogHole => "log_hole",
            Kind::Cursor => "cursor",
            Kind::Dedupe => "dedupe",
            Kind::Redb => "redb",
        }
    }
}

/// Records one act of quarantine: log line, metric, and a line in `DAMAGE.txt`.
pub fn record(data_dir: &Path, kind: Kind, what: &str) {
    tracing::error!(kind = kind.as_str(), "Damaged data quarantined: {what}");
    QUARANTINED
        .get_or_create(&vec![("kind", kind.as_str().to_owned())])
        .inc();
    let now = crate::event::timestamp::format(time::OffsetDateTime::now_utc());
    let line = format!("{now} {}: {}\n", kind.as_str(), what.replace('\n', " "));
    if let Err(error) = append_note(data_dir, line.as_bytes()) {
        tracing::error!(%error, "Could not write quarantine/{NOTES}");
    }
}

fn append_note(data_dir: &Path, line: &[u8]) -> io::Result<()> {
    let dir = data_dir.join(DIR);
    fs::create_dir_all(&dir)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(NOTES))?;
    f.write_all(line)?;
    f.sync_data()
}

/// Moves a damaged file into `data_dir/quarantine/` under a name no other act uses, and
/// records it (`action` says what was done instead, e.g. "recreated empty").
pub fn move_aside(
    data_dir: &Path,
    path: &Path,
    kind: Kind,
    why: &str,
    action: &str,
) -> io::Result<PathBuf> {
    let dir = data_dir.join(DIR);
    fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let to = dir.join(format!("{name}.{}.bad", crate::event::now_ms()));
    fs::rename(path, &to)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    File::open(&dir)?.sync_all()?;
    let shown = to.strip_prefix(data_dir).unwrap_or(&to).display();
    record(
        data_dir,
        kind,
        &format!("{}: {why}; moved to {shown}; {action}", path.display()),
    );
    Ok(to)
}

/// Writes a copy of damaged bytes cut from `name` into `data_dir/quarantine/` and records it.
pub fn copy_aside(data_dir: &Path, name: &str, bytes: &[u8], kind: Kind, what: &str) {
    let dir = data_dir.join(DIR);
    let to = dir.join(format!("{name}.{}.bad", crate::event::now_ms()));
    let written = fs::create_dir_all(&dir).and_then(|()| {
        let mut f = File::create(&to)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        File::open(&dir)?.sync_all()
    });
    let kept = match written {
        Ok(()) => format!(
            "bytes copied to {DIR}/{}",
            to.file_name().unwrap_or_default().display()
        ),
        Err(error) => format!("the bytes could not be copied aside ({error})"),
    };
    record(data_dir, kind, &format!("{what}; {kept}"));
}

/// What `inspect` reports: the newest lines of `DAMAGE.txt`, oldest first.
pub fn problems(data_dir: &Path) -> Vec<String> {
    let Ok(text) = fs::read_to_string(data_dir.join(DIR).join(NOTES)) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(SHOWN);
    let mut out: Vec<String> = Vec::with_capacity(SHOWN + 1);
    if skip > 0 {
        out.push(format!(
            "{skip} older quarantine record(s) in {DIR}/{NOTES}"
        ));
    }
    out.extend(lines[skip..].iter().map(|l| format!("quarantine: {l}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_aside_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.redb");
        fs::write(&f, b"junk").unwrap();
        let to = move_aside(dir.path(), &f, Kind::Redb, "cannot open", "recreated empty").unwrap();
        assert!(!f.exists() && to.exists());
        let p = problems(dir.path());
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("x.redb: cannot open; moved to quarantine/x.redb."),
            "{p:?}"
        );
    }
}
