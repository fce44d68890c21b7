//! Sequential reading of committed records from a position: what every destination cursor
//! uses. Readers run on blocking threads and never see bytes past the committed end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, FRAME_HEADER, Record};

const CHUNK: usize = 256 << 10;
use super::segment::{self, Position};

pub struct LogReader {
    dir: PathBuf,
    pos: Position,
    file: Option<File>,
    chunk: Vec<u8>,
    chunk_start: u64,
    /// Records skipped because they could not be read, oldest first: the caller takes them
    /// (`take_lost`) and dead-letters them, so a skipped record never vanishes unseen.
    lost: Vec<Loss>,
    /// The last record read (or, before the first, the one before the start position), to
    /// name what a damaged region lost.
    last_seq: Option<u64>,
}

/// Records a reader passed over because it could not read them: a damaged region of a
/// segment, or a segment that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The first sequence number lost.
    pub first_seq: u64,
    /// The first record read after the loss, when the reader knows it (the next intact
    /// record of the segment, or the first of the next segment).
    pub next_seq: Option<u64>,
    /// What happened, where, and where the damaged bytes were copied.
    pub what: String,
}

impl Loss {
    /// `first..=last`, or `first..` when the end is not known.
    pub fn range(&self) -> String {
        match self.next_seq {
            Some(n) if n > self.first_seq + 1 => format!("{}..={}", self.first_seq, n - 1),
            Some(_) => self.first_seq.to_string(),
            None => format!("{}..", self.first_seq),
        }
    }
}

/// One record and the position just after it (what a cursor stores once it is handled).
pub struct Read1 {
    pub record: Record,
    pub next: Position,
}

impl LogReader {
    pub fn new(dir: &Path, pos: Position) -> LogReader {
        LogReader {
            dir: dir.to_path_buf(),
            pos,
            file: None,
            chunk: Vec::new(),
            chunk_start: 0,
            lost: Vec::new(),
            last_seq: None,
        }
    }

    /// Starts knowing that the record at the start position is numbered `next_seq` (a
    /// cursor's), so a loss right there is numbered exactly.
    pub fn expecting(mut self, next_seq: u64) -> LogReader {
        self.last_seq = next_seq.checked_sub(1);
        self
    }

    /// The records skipped since the last call, oldest first.
    pub fn take_lost(&mut self) -> Vec<Loss> {
        std::mem::take(&mut self.lost)
    }

    pub fn position(&self) -> Position {
        self.pos
    }

    /// Reads up to `max_records` / about `max_bytes` of records before `end`.
    pub fn read(
        &mut self,
        end: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<Read1>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_records && bytes < max_bytes && self.pos < end {
            if self.file.is_none() && !self.open_current()? {
                break;
            }
            let limit = if self.pos.segment < end.segment {
                u64::MAX
            } else {
                end.offset
            };
            match self.next_frame(limit) {
                Ok(Some(rec)) => {
                    bytes += rec.entry.body.len();
                    self.last_seq = Some(rec.seq);
                    out.push(Read1 {
                        record: rec,
                        next: self.pos,
                    });
                }
                Ok(None) => {
                    if self.pos.segment >= end.segment || !self.advance_segment()? {
                        break;
                    }
                }
                Err(error) => {
                    if !self.skip_damage(limit, &error)? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Opens the current segment. If it was reclaimed, jumps to the oldest one after it.
    fn open_current(&mut self) -> io::Result<bool> {
        let path = segment::segment_path(&self.dir, self.pos.segment);
        match File::open(&path) {
            Ok(f) => {
                self.file = Some(f);
                self.chunk.clear();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let gone = self.pos.segment;
                tracing::error!(
                    segment = gone,
                    "Cursor's log segment is gone; moving to the next one"
                );
                let first_seq = self.first_lost_seq();
                let more = self.advance_segment()?;
                self.lost.push(Loss {
                    first_seq,
                    next_seq: more.then_some(self.pos.segment),
                    what: format!(
                        "log segment {gone:020} is gone (deleted or lost outside Switchyard) before this destination read it"
                    ),
                });
                Ok(more)
            }
            Err(e) => Err(e),
        }
    }

    fn advance_segment(&mut self) -> io::Result<bool> {
        self.file = None;
        self.chunk.clear();
        let next = segment::list_segments(&self.dir)?
            .into_iter()
            .find(|&b| b > self.pos.segment);
        match next {
            Some(base) => {
                self.pos = Position {
                    segment: base,
                    offset: 0,
                };
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Skips a damaged region: resumes at the next intact record of the segment, or at the
    /// next segment (at `limit` in the active one) when none follows. The region is copied
    /// to `log/quarantine/` and reported once. False when there is nothing more to read.
    fn skip_damage(&mut self, limit: u64, error: &io::Error) -> io::Result<bool> {
        let (base, from) = (self.pos.segment, self.pos.offset);
        let first_seq = self.first_lost_seq();
        let resume = self.resync(from + 1, limit, first_seq)?;
        let end = match resume {
            Some((at, _)) => at,
            None if limit == u64::MAX => self.file_len()?,
            None => limit,
        };
        let hole = segment::Hole {
            offset: from,
            len: end.saturating_sub(from),
            first_seq,
            next_seq: resume.map_or(first_seq, |(_, seq)| seq),
            damage: record::DecodeError::Malformed("damaged record"),
        };
        tracing::error!(segment = base, offset = from, len = hole.len, %error,
            "Damaged region in the log; skipping to the next intact record");
        let copied = self.report(&hole);
        let more = match resume {
            Some((at, _)) => {
                self.pos.offset = at;
                true
            }
            None if limit == u64::MAX => self.advance_segment()?,
            None => {
                self.pos.offset = limit;
                true
            }
        };
        let next_seq = match resume {
            Some((_, seq)) => Some(seq),
            None if limit == u64::MAX && more => Some(self.pos.segment),
            None => None,
        };
        self.lost.push(Loss {
            first_seq,
            next_seq,
            what: format!(
                "{} damaged bytes at byte {from} of log segment {base:020} ({error}){copied}",
                hole.len
            ),
        });
        Ok(more)
    }

    /// The sequence number of the first record not read yet, as far as the reader knows.
    fn first_lost_seq(&self) -> u64 {
        let base = self.pos.segment;
        self.last_seq.map_or(base, |s| (s + 1).max(base))
    }

    /// Copies a skipped region aside and records it, once per region; says where it went.
    fn report(&self, hole: &segment::Hole) -> String {
        let data_dir = self.dir.parent().unwrap_or(&self.dir);
        match segment::quarantine_hole(&self.dir, self.pos.segment, hole) {
            Ok((name, new)) => {
                if new {
                    let what = super::describe_hole(self.pos.segment, hole, &name);
                    crate::quarantine::record(data_dir, crate::quarantine::Kind::LogHole, &what);
                }
                format!("; the bytes are in log/quarantine/{name}")
            }
            Err(error) => {
                tracing::error!(%error, "Could not copy a damaged log region aside");
                String::new()
            }
        }
    }

    /// The first offset from `from` where an intact record numbered `min_seq` or later ends
    /// before `limit`, and its sequence number.
    fn resync(&mut self, from: u64, limit: u64, min_seq: u64) -> io::Result<Option<(u64, u64)>> {
        let end = limit.min(self.file_len()?);
        for at in from..end {
            let Some(head) = self.bytes_at(at, FRAME_HEADER + 10, end)? else {
                return Ok(None);
            };
            if !record::plausible(head, min_seq) {
                continue;
            }
            let len = record::frame_len(head).map_err(invalid)?;
            if let Some(frame) = self.bytes_at(at, FRAME_HEADER + len, end)?
                && let Ok((rec, _)) = record::decode(frame)
            {
                return Ok(Some((at, rec.seq)));
            }
        }
        Ok(None)
    }

    fn file_len(&self) -> io::Result<u64> {
        match &self.file {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(0),
        }
    }

    /// Reads the next frame if it ends at or before `limit`; `Ok(None)` at the end. In the
    /// active segment (`limit` is the committed end, always a frame boundary) a frame that
    /// would cross `limit` is damage, like one that fails its checksum.
    fn next_frame(&mut self, limit: u64) -> io::Result<Option<Record>> {
        let off = self.pos.offset;
        let sealed = limit == u64::MAX;
        let Some(header) = self.bytes_at(off, FRAME_HEADER, limit)? else {
            return if sealed || off >= limit {
                Ok(None)
            } else {
                Err(invalid("a record crosses the committed end"))
            };
        };
        let len = record::frame_len(header).map_err(invalid)?;
        let Some(frame) = self.bytes_at(off, FRAME_HEADER + len, limit)? else {
            return Err(invalid(if sealed {
                "torn record at the end of a sealed segment"
            } else {
                "a record crosses the committed end"
            }));
        };
        let (rec, n) = record::decode(frame).map_err(invalid)?;
        self.pos.offset += n as u64;
        Ok(Some(rec))
    }

    /// Returns `need` bytes at `off`, reading ahead in chunks but never past `limit`, so
    /// bytes of a commit still in progress are never buffered.
    fn bytes_at(&mut self, off: u64, need: usize, limit: u64) -> io::Result<Option<&[u8]>> {
        let end = off + need as u64;
        if end > limit {
            return Ok(None);
        }
        let cached = off >= self.chunk_start && end <= self.chunk_start + self.chunk.len() as u64;
        if !cached {
            let Some(file) = self.file.as_ref() else {
                return Ok(None);
            };
            let want = (need.max(CHUNK) as u64).min(limit - off) as usize;
            self.chunk.resize(want, 0);
            let mut got = 0;
            while got < want {
                match file.read_at(&mut self.chunk[got..], off + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
            self.chunk.truncate(got);
            self.chunk_start = off;
            if got < need {
                return Ok(None);
            }
        }
        let s = (off - self.chunk_start) as usize;
        Ok(Some(&self.chunk[s..s + need]))
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
