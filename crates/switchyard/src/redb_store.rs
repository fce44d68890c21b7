//! Opening the redb stores (`deliveries.redb`, `profiles.redb`, `webhooks.redb`) so that
//! neither damage nor a passing I/O error keeps one down:
//!
//! - A file that does not open, or whose tables do not read, is damage: it is moved to
//!   `data_dir/quarantine/` (reported: log line, metric, `inspect`) and a new empty store
//!   is created in its place. What it held is lost; the server starts.
//! - After a failed write (ENOSPC), redb refuses every later transaction of that `Database`
//!   (`PreviousIo`) until it is opened again. `Db` reopens it then, at the next
//!   transaction, so the store works again once the disk has room, without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{
    Builder, Database, ReadTransaction, ReadableDatabase, StorageError, TransactionError,
    WriteTransaction,
};
use thiserror::Error;

use crate::quarantine;

#[derive(Debug, Error)]
pub enum DbError {
    #[error(transparent)]
    Open(#[from] redb::Error),
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    #[error("cannot move the damaged store aside: {0}")]
    Quarantine(std::io::Error),
    #[error("the store is being reopened after an I/O error; retry")]
    Reopening,
}

/// What an operation on one of the stores (`deliveries.redb`, `profiles.redb`,
/// `webhooks.redb`) fails with: redb's error, with its source kept, or a stored row that does
/// not read.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    #[error(transparent)]
    Table(#[from] redb::TableError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Commit(#[from] redb::CommitError),
    #[error(transparent)]
    Durability(#[from] redb::SetDurabilityError),
    /// The profile store reads the log as it applies it.
    #[error("reading the log: {0}")]
    Log(#[from] std::io::Error),
    #[error("a stored row does not read: {0}")]
    Row(#[from] serde_json::Error),
    #[error(
        "a stored row has format {0:?}, which this version does not read (a newer Switchyard wrote it?)"
    )]
    Format(Option<u8>),
}

/// The format of the rows the stores write: JSON behind this one-byte version, so a later
/// change can tell its rows from older ones. A row that starts with `{` or `"` was written
/// before rows carried a version (format 0: the same JSON, no prefix).
pub const ROW_FORMAT: u8 = 1;

/// A row as stored: [`ROW_FORMAT`], then the value as JSON.
pub fn encode_row<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![ROW_FORMAT];
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// A stored row of any format this version reads (0 or 1).
pub fn decode_row<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.first() {
        Some(&ROW_FORMAT) => Ok(serde_json::from_slice(&bytes[1..])?),
        Some(b'{' | b'"' | b'[') => Ok(serde_json::from_slice(bytes)?),
        other => Err(StoreError::Format(other.copied())),
    }
}

/// `.map_err(store_err)`: any of the errors above as a `StoreError`.
pub fn store_err(err: impl Into<StoreError>) -> StoreError {
    err.into()
}

/// redb's page cache defaults to 1 GiB per database, which would let the delivery log's
/// churn grow the server's memory with traffic. Every store gets this much instead; what does
/// not fit is read from the file (and the OS page cache).
pub const CACHE_BYTES: usize = 16 << 20;

/// A redb builder with the page cache capped at [`CACHE_BYTES`].
pub fn capped() -> Builder {
    let mut b = Database::builder();
    b.set_cache_size(CACHE_BYTES);
    b
}

/// Prepares a freshly opened store (creates its tables, reads what it must): damage found
/// here counts as damage of the file.
pub type Init = fn(&Database) -> Result<(), redb::Error>;

pub struct Db {
    path: PathBuf,
    builder: fn() -> Builder,
    init: Init,
    db: RwLock<Option<Arc<Database>>>,
}

impl Db {
    /// Opens the store at `path`, quarantining a damaged file.
    pub fn open(path: &Path, builder: fn() -> Builder, init: Init) -> Result<Db, DbError> {
        let db = match open_once(path, builder, init) {
            Ok(db) => db,
            Err(error) if is_damage(&error) => {
                let data_dir = path.parent().unwrap_or(Path::new("."));
                quarantine::move_aside(
                    data_dir,
                    path,
                    quarantine::Kind::Redb,
                    &format!("does not open ({error})"),
                    "a new empty store was created in its place: what it held is lost",
                )
                .map_err(DbError::Quarantine)?;
                open_once(path, builder, init)?
            }
            Err(error) => return Err(error),
        };
        Ok(Db {
            path: path.to_path_buf(),
            builder,
            init,
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    pub fn begin_write(&self) -> Result<WriteTransaction, DbError> {
        self.with(|db| db.begin_write())
    }

    pub fn begin_read(&self) -> Result<ReadTransaction, DbError> {
        self.with(|db| db.begin_read())
    }

    /// Runs `f` on the database, reopening it first when a failed write poisoned it.
    fn with<T>(&self, f: impl Fn(&Database) -> Result<T, TransactionError>) -> Result<T, DbError> {
        let current = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(db) = &current {
            match f(db) {
                Err(TransactionError::Storage(StorageError::PreviousIo)) => {}
                other => return Ok(other?),
            }
        }
        let db = self.reopen(current)?;
        Ok(f(&db)?)
    }

    /// Drops the poisoned database `stale` and opens the file again (redb repairs it), unless
    /// another caller did already. Fails while a transaction of the old one is still alive
    /// or the disk is still full; the next transaction tries again.
    fn reopen(&self, stale: Option<Arc<Database>>) -> Result<Arc<Database>, DbError> {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        match (guard.as_ref(), &stale) {
            (Some(now), Some(old)) if !Arc::ptr_eq(now, old) => return Ok(now.clone()),
            (Some(now), None) => return Ok(now.clone()),
            _ => {}
        }
        drop(stale);
        guard.take();
        let db = Arc::new(open_once(&self.path, self.builder, self.init)?);
        tracing::info!(path = %self.path.display(), "Reopened a store after an I/O error");
        *guard = Some(db.clone());
        Ok(db)
    }
}

fn open_once(path: &Path, builder: fn() -> Builder, init: Init) -> Result<Database, DbError> {
    let opened = std::panic::catch_unwind(|| open_checked(path, builder, init));
    opened.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(DbError::Open(redb::Error::Corrupted(format!(
            "redb panicked while opening it: {msg}"
        ))))
    })
}

fn open_checked(path: &Path, builder: fn() -> Builder, init: Init) -> Result<Database, DbError> {
    let mut db = builder().create(path).map_err(redb::Error::from)?;
    if !db.check_integrity().map_err(redb::Error::from)? {
        let data_dir = path.parent().unwrap_or(Path::new("."));
        quarantine::record(
            data_dir,
            quarantine::Kind::Redb,
            &format!(
                "{}: failed its integrity check at start and was repaired by redb (rows in damaged pages may be lost)",
                path.display()
            ),
        );
    }
    init(&db)?;
    Ok(db)
}

/// Damage, as opposed to a condition that passes (the disk is full, another process holds
/// the file, permissions): only damage is quarantined.
fn is_damage(error: &DbError) -> bool {
    let DbError::Open(e) = error else {
        return false;
    };
    match e {
        redb::Error::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        redb::Error::DatabaseAlreadyOpen
        | redb::Error::PreviousIo
        | redb::Error::DatabaseClosed
        | redb::Error::LockPoisoned(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests;
