use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use redb::{ReadableTable, TableDefinition};

use super::*;

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

fn init(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(T)?;
    txn.commit()?;
    Ok(())
}

fn fill(db: &Db, n: u64) {
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(T).unwrap();
        for i in 0..n {
            t.insert(i, vec![i as u8; 200].as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

/// Reads every row; the number read or the first error.
fn read_all(db: &Db) -> Result<u64, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let t = txn.open_table(T).map_err(|e| e.to_string())?;
    let mut n = 0;
    for row in t.iter().map_err(|e| e.to_string())? {
        row.map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

#[test]
fn a_store_that_does_not_open_is_quarantined_and_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    let db = Db::open(&path, Builder::new, init).expect("opens");
    assert_eq!(read_all(&db), Ok(0));
    let problems = quarantine::problems(dir.path());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("s.redb: does not open"),
        "{problems:?}"
    );
}

/// Bytes flipped anywhere: the store opens, and either every row reads back (the damage
/// was in unused space) or the file was quarantined and reported. Never a panic.
#[test]
fn flipped_bytes_never_stop_the_store_from_opening() {
    for at_frac in [0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let db = Db::open(&path, Builder::new, init).unwrap();
            fill(&db, 2000);
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let len = f.metadata().unwrap().len();
        let at = ((len as f64) * at_frac) as u64;
        let mut b = [0u8; 16];
        f.read_exact_at(&mut b, at).unwrap();
        for x in &mut b {
            *x ^= 0x5A;
        }
        f.write_all_at(&b, at).unwrap();
        drop(f);
        let db = Db::open(&path, Builder::new, init).expect("opens");
        let (rows, problems) = (read_all(&db), quarantine::problems(dir.path()));
        match rows {
            Ok(2000) => assert!(problems.is_empty(), "{problems:?}"),
            Ok(0) => assert!(
                problems.len() == 1 && problems[0].contains("moved to quarantine/"),
                "{problems:?}"
            ),
            other => panic!("flip at {at} of {len}: read {other:?}, problems {problems:?}"),
        }
    }
}

/// After ENOSPC in a commit redb refuses every later transaction (`PreviousIo`) until it is
/// opened again: `Db` reopens it by itself once there is room.
#[test]
fn a_store_works_again_after_the_disk_was_full() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("SWITCHYARD_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "cannot mount a tmpfs"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let db = Db::open(&dir.path().join("s.redb"), Builder::new, init).unwrap();
    fill(&db, 100);
    let filler = dir.path().join("filler");
    let _ = std::fs::write(&filler, vec![1u8; 4 << 20]);
    let mut failed = false;
    for round in 0..50u64 {
        let ok = db.begin_write().and_then(|txn| {
            {
                let mut t = txn.open_table(T).map_err(redb::Error::from)?;
                for i in 0..100 {
                    t.insert(1000 + round * 100 + i, vec![7u8; 4000].as_slice())
                        .map_err(redb::Error::from)?;
                }
            }
            txn.commit().map_err(redb::Error::from)?;
            Ok(())
        });
        if ok.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "the disk filled up");
    std::fs::remove_file(&filler).unwrap();
    fill(&db, 100);
    assert!(read_all(&db).unwrap() >= 100);
}

#[test]
fn rows_carry_their_format_and_older_rows_still_read() {
    use super::{ROW_FORMAT, StoreError, decode_row, encode_row};
    let row = encode_row(&serde_json::json!({"a": 1})).unwrap();
    assert_eq!(row[0], ROW_FORMAT);
    let back: serde_json::Value = decode_row(&row).unwrap();
    assert_eq!(back, serde_json::json!({"a": 1}));
    // Format 0: bare JSON, as written before rows had a version.
    let old: serde_json::Value = decode_row(br#"{"a":2}"#).unwrap();
    assert_eq!(old["a"], 2);
    let newer = decode_row::<serde_json::Value>(&[2, b'{', b'}']).unwrap_err();
    assert!(matches!(newer, StoreError::Format(Some(2))), "{newer}");
    assert!(matches!(
        decode_row::<serde_json::Value>(&[]),
        Err(StoreError::Format(None))
    ));
}
