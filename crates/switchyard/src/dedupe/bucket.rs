//! One time bucket of the dedupe index: an append-only key file plus an in-memory map from
//! a keyed 64-bit hash to the entry's offset in that file.
//!
//! Entry format: `seq:u64le len:u16le key[len] crc:u32le` with `crc = crc32c(seq..key)`.
//! A torn or corrupt tail (after a crash) is cut on load; recovery re-adds those keys from
//! the log.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const ENTRY_OVERHEAD: usize = 8 + 2 + 4;
/// How far past damage `load` looks for an intact entry.
const RESYNC_WINDOW: usize = 64 << 10;

/// The map's keys are already keyed SipHash outputs, so they are used as they are.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>;

pub struct Bucket {
    start_ms: i64,
    width_ms: i64,
    path: PathBuf,
    file: File,
    /// Length of the file including `pending`.
    len: u64,
    pending: Vec<u8>,
    map: Map,
    /// Keys whose hash collided with a different key already in `map`.
    overflow: HashSet<Box<[u8]>>,
    dirty: bool,
    /// A failed write may have left bytes past the flushed length; cut before the next.
    torn: bool,
    /// What `load` cut off, if it cut anything.
    pub cut: Option<Cut>,
}

/// A damaged tail cut off on load.
pub struct Cut {
    /// Sequence number of the last intact entry before the damage (entries are appended in
    /// log order, so every key cut off belongs to a later log record).
    pub last_seq: Option<u64>,
    /// Whether intact entries follow the damage: then it is not a torn write but damage.
    pub intact_after: bool,
    pub bytes: Vec<u8>,
}

pub fn parse_name(path: &Path) -> Option<(i64, i64)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".dd")?;
    let (start, width) = stem.split_once('-')?;
    Some((start.parse().ok()?, width.parse().ok()?))
}

impl Bucket {
    pub fn create(dir: &Path, start_ms: i64, width_ms: i64) -> io::Result<Bucket> {
        let path = dir.join(format!("{start_ms}-{width_ms}.dd"));
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        File::open(dir)?.sync_all()?;
        Ok(Bucket {
            start_ms,
            width_ms,
            path,
            file,
            len: 0,
            pending: Vec::new(),
            map: Map::default(),
            overflow: HashSet::new(),
            dirty: false,
            torn: false,
            cut: None,
        })
    }

    /// Loads an existing bucket file, cutting a damaged tail.
    pub fn load(
        path: &Path,
        start_ms: i64,
        width_ms: i64,
        hasher: &impl BuildHasher,
    ) -> io::Result<Bucket> {
        let mut buf = Vec::new();
        File::open(path)?.read_to_end(&mut buf)?;
        let mut map = Map::default();
        let mut overflow = HashSet::new();
        let mut at = 0usize;
        let mut last_seq = None;
        while let Some((key, n)) = parse_entry(&buf[at..]) {
            last_seq = Some(u64::from_le_bytes(
                buf[at..at + 8].try_into().unwrap_or([0; 8]),
            ));
            let h = hasher.hash_one(key);
            match map.get(&h) {
                Some(&off) if entry_key(&buf, off as usize) != Some(key) => {
                    overflow.insert(key.into());
                }
                Some(_) => {}
                None => {
                    map.insert(h, at as u32);
                }
            }
            at += n;
        }
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        let mut cut = None;
        if at < buf.len() {
            tracing::warn!(path = %path.display(), cut_bytes = buf.len() - at, "Cut a torn dedupe index tail");
            file.set_len(at as u64)?;
            file.sync_all()?;
            // Damage, not a torn write, when an intact entry follows closely.
            let window = buf.len().min(at + RESYNC_WINDOW);
            let intact_after = (at + 1..window).any(|i| parse_entry(&buf[i..]).is_some());
            cut = Some(Cut {
                last_seq,
                intact_after,
                bytes: buf[at..].to_vec(),
            });
        }
        let path = path.to_path_buf();
        Ok(Bucket {
            start_ms,
            width_ms,
            path,
            file,
            len: at as u64,
            pending: Vec::new(),
            map,
            overflow,
            dirty: false,
            torn: false,
            cut,
        })
    }

    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.width_ms
    }

    pub fn len(&self) -> usize {
        self.map.len() + self.overflow.len()
    }

    pub fn contains(&self, h: u64, key: &[u8]) -> io::Result<bool> {
        let Some(&off) = self.map.get(&h) else {
            return Ok(false);
        };
        if self.read_key(off)?.as_deref() == Some(key) {
            return Ok(true);
        }
        Ok(self.overflow.contains(key))
    }

    pub fn insert(&mut self, h: u64, key: &[u8], seq: u64) -> io::Result<()> {
        if self.contains(h, key)? {
            return Ok(());
        }
        let off = self.len;
        match self.map.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.overflow.insert(key.into());
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(off as u32);
            }
        }
        let key = &key[..key.len().min(u16::MAX as usize)];
        let start = self.pending.len();
        self.pending.extend_from_slice(&seq.to_le_bytes());
        self.pending
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.pending.extend_from_slice(key);
        let crc = crc32c::crc32c(&self.pending[start..]);
        self.pending.extend_from_slice(&crc.to_le_bytes());
        self.len += (ENTRY_OVERHEAD + key.len()) as u64;
        Ok(())
    }

    /// Reads the key of the entry at `off`, from the file or from the unflushed buffer.
    fn read_key(&self, off: u32) -> io::Result<Option<Vec<u8>>> {
        let flushed = self.len - self.pending.len() as u64;
        let off = u64::from(off);
        if off >= flushed {
            let local = (off - flushed) as usize;
            return Ok(entry_key(&self.pending, local).map(<[u8]>::to_vec));
        }
        let mut head = [0u8; 10];
        self.file.read_exact_at(&mut head, off)?;
        let len = usize::from(u16::from_le_bytes([head[8], head[9]]));
        let mut key = vec![0u8; len];
        self.file.read_exact_at(&mut key, off + 10)?;
        Ok(Some(key))
    }

    /// Writes the pending entries. After a failed write (ENOSPC) they stay pending, and
    /// the file is cut back to its flushed length before they are written again.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let flushed = self.len - self.pending.len() as u64;
        if self.torn {
            self.file.set_len(flushed)?;
            self.torn = false;
        }
        if let Err(e) = self.file.write_all(&self.pending) {
            self.torn = true;
            if self.file.set_len(flushed).is_ok() {
                self.torn = false;
            }
            return Err(e);
        }
        self.pending.clear();
        self.dirty = true;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    pub fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

fn entry_key(buf: &[u8], at: usize) -> Option<&[u8]> {
    parse_entry(buf.get(at..)?).map(|(k, _)| k)
}

/// Parses one entry at the start of `buf`: its key and total size, or `None` if damaged.
fn parse_entry(buf: &[u8]) -> Option<(&[u8], usize)> {
    let len = usize::from(u16::from_le_bytes([*buf.get(8)?, *buf.get(9)?]));
    let body = buf.get(..10 + len)?;
    let crc = buf.get(10 + len..14 + len)?;
    (crc32c::crc32c(body).to_le_bytes() == crc).then_some((&body[10..], 14 + len))
}
