//! Following the log: the one implementation every consumer of the log uses (the file
//! runner, the delivery worker, the warehouse runner, the profile store and replays from
//! the log) for what they share — waiting for records past the committed end, reading on a
//! blocking thread, the backlog gauge, and one policy for a failed read:
//! retry with backoff (`BACKOFF_MIN` doubling to `BACKOFF_MAX`), the error logged, counted
//! in the reader's metric, shown on its status (`inspect`'s `last_error`) and listed by
//! `/readyz` (`Readers`) until a read succeeds. A reader never stops on a read error.
//!
//! What each consumer does with the records it reads (a window of deliveries, a warehouse
//! batch, a profile transaction) stays with the consumer, and so does saving its cursor:
//! each saves it on its blocking thread right after its own write is durable (the file
//! sink's fdatasync, the warehouse commit, the delivery log, the profile transaction that
//! also holds the position), which is the ordering that makes it at-least-once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::Committed;
use super::reader::LogReader;
use super::segment::Position;
use crate::cursor::CursorState;

/// The first wait after a failed read; it doubles per failure in a row, up to `BACKOFF_MAX`.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How a failed read shows in a reader's `last_error` (and how it is recognised there).
pub const READ_FAILED: &str = "reading the log failed";

/// The log's readers whose last read failed, by name, with the error: `/readyz` lists them.
#[derive(Debug, Default)]
pub struct Readers {
    failing: Mutex<BTreeMap<String, String>>,
}

impl Readers {
    pub fn failing(&self) -> BTreeMap<String, String> {
        self.lock().clone()
    }
    fn set(&self, name: &str, error: Option<String>) {
        let mut failing = self.lock();
        match error {
            Some(e) => failing.insert(name.to_owned(), e),
            None => failing.remove(name),
        };
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where else a reader's read error shows (a destination's status, for `inspect`).
pub trait ShowError: Send + Sync {
    /// `Some` on a failed read; `None` once a read succeeds again (clear only a read error).
    fn show_read_error(&self, error: Option<&str>);
}

/// What the wait for more records ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The log has records past the position (or the wait was cut short by a wake-up).
    Ready,
    Cancelled,
}

/// One consumer's way through the log.
pub struct Tail {
    name: String,
    log_dir: PathBuf,
    committed: watch::Receiver<Committed>,
    backlog: Gauge,
    read_errors: Counter,
    readers: Arc<Readers>,
    shown: Option<Arc<dyn ShowError>>,
    /// The wait after the next failed read (a reader may be shared by `&`: a lock).
    backoff: Mutex<Duration>,
}

/// What a `Tail` reports to: the metrics of its reader and the shared registry.
pub struct TailParts {
    pub name: String,
    pub log_dir: PathBuf,
    pub committed: watch::Receiver<Committed>,
    pub backlog: Gauge,
    pub read_errors: Counter,
    pub readers: Arc<Readers>,
    pub shown: Option<Arc<dyn ShowError>>,
}

impl Tail {
    pub fn new(p: TailParts) -> Tail {
        Tail {
            name: p.name,
            log_dir: p.log_dir,
            committed: p.committed,
            backlog: p.backlog,
            read_errors: p.read_errors,
            readers: p.readers,
            shown: p.shown,
            backoff: Mutex::new(BACKOFF_MIN),
        }
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// A receiver of the committed end, for a consumer that waits on it among other things.
    pub fn watch(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    /// The committed end now.
    pub fn committed(&self) -> Committed {
        *self.committed.borrow()
    }

    /// The committed end now, marking it seen (a later `wait_past` waits for the next one).
    pub fn committed_seen(&mut self) -> Committed {
        *self.committed.borrow_and_update()
    }

    /// A reader from `from`, checking that its first record is `from.next_seq` (what it
    /// skips as damaged before that is reported by `take_lost`).
    pub fn reader(&self, from: &CursorState) -> LogReader {
        LogReader::new(&self.log_dir, from.position).expecting(from.next_seq)
    }

    /// Waits until the log has records past `position`, `wake` is notified, or `cancel`.
    pub async fn wait_past(
        &mut self,
        position: Position,
        wake: Option<&Notify>,
        cancel: &CancellationToken,
    ) -> Wait {
        loop {
            if cancel.is_cancelled() {
                return Wait::Cancelled;
            }
            if self.committed.borrow_and_update().end > position {
                return Wait::Ready;
            }
            let woken = async {
                match wake {
                    Some(w) => w.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.committed.changed() => if changed.is_err() { return Wait::Cancelled },
                () = woken => return Wait::Ready,
                () = cancel.cancelled() => return Wait::Cancelled,
            }
        }
    }

    /// Waits until a change of the committed end, `d`, or `cancel`; false when cancelled.
    pub async fn pause(&mut self, d: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::timeout(d, self.committed.changed()) => !cancel.is_cancelled(),
            () = cancel.cancelled() => false,
        }
    }

    /// Runs `read(work, committed end)` on a blocking thread; `work` carries the reader
    /// (and whatever else the read needs) there and back. `None` only if that thread was
    /// lost (the runtime is shutting down).
    pub async fn read<W: Send + 'static, T: Send + 'static>(
        &self,
        work: W,
        read: impl FnOnce(W, Position) -> T + Send + 'static,
    ) -> Option<T> {
        let end = self.committed().end;
        tokio::task::spawn_blocking(move || read(work, end))
            .await
            .ok()
    }

    /// Waits for a change of the committed end; false once the log is closed.
    pub async fn changed(&mut self) -> bool {
        self.committed.changed().await.is_ok()
    }

    /// The one policy for a failed read: logged, counted, shown, listed by `/readyz`.
    /// Returns how long to wait before reading again (doubling per failure in a row).
    pub fn read_failed(&self, error: &dyn std::fmt::Display) -> Duration {
        let wait = {
            let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            let wait = *backoff;
            *backoff = (wait * 2).min(BACKOFF_MAX);
            wait
        };
        let msg = format!("{READ_FAILED}; retrying in {wait:?}: {error}");
        tracing::error!(reader = %self.name, "{msg}");
        self.read_errors.inc();
        if let Some(s) = &self.shown {
            s.show_read_error(Some(&msg));
        }
        self.readers.set(&self.name, Some(msg));
        wait
    }

    /// A read succeeded: the backoff starts over and a shown read error is cleared.
    pub fn read_ok(&self) {
        let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if *backoff == BACKOFF_MIN {
            return;
        }
        *backoff = BACKOFF_MIN;
        if let Some(s) = &self.shown {
            s.show_read_error(None);
        }
        self.readers.set(&self.name, None);
    }

    /// Sets the backlog gauge: committed records this reader has not passed.
    pub fn gauge(&self, next_seq: u64) {
        let committed = self.committed().next_seq;
        self.backlog.set(committed.saturating_sub(next_seq) as i64);
    }
}

#[cfg(test)]
mod tests;
