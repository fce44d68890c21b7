use std::fs::OpenOptions;
use std::io::Write;

use super::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn key(i: u64) -> Vec<u8> {
    crate::log::record::dedupe_key("web", "production", &format!("msg-{i}"))
}

#[test]
fn finds_what_it_stored_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let now = 100 * DAY;
    let mut idx = DedupeIndex::open(dir.path(), DAY, 1_000_000, now).unwrap();
    for i in 0..5000 {
        idx.insert(&key(i), i, now).unwrap();
    }
    idx.flush().unwrap();
    for i in 0..5000 {
        assert!(idx.contains(&key(i), now).unwrap(), "key {i} must be found");
    }
    for i in 5000..10000 {
        assert!(
            !idx.contains(&key(i), now).unwrap(),
            "key {i} was never stored"
        );
    }
    assert_eq!(idx.len(), 5000);
}

#[test]
fn survives_reopen_and_keeps_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let now = 100 * DAY;
    let mut idx = DedupeIndex::open(dir.path(), DAY, 1_000_000, now).unwrap();
    for i in 0..100 {
        idx.insert(&key(i), i, now - i as i64 * HOUR / 10).unwrap();
    }
    idx.sync(99).unwrap();
    drop(idx);
    let idx = DedupeIndex::open(dir.path(), DAY, 1_000_000, now).unwrap();
    assert_eq!(idx.checkpoint(), Some(99));
    assert!((0..100).all(|i| idx.contains(&key(i), now).unwrap()));
    assert!(!idx.contains(&key(100), now).unwrap());
}

#[test]
fn keys_expire_with_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 100 * DAY;
    let mut idx = DedupeIndex::open(dir.path(), DAY, 1_000_000, t0).unwrap();
    idx.insert(&key(1), 1, t0).unwrap();
    idx.flush().unwrap();
    assert!(
        idx.contains(&key(1), t0 + DAY - HOUR).unwrap(),
        "still inside the window"
    );
    assert!(
        !idx.contains(&key(1), t0 + DAY + 2 * HOUR).unwrap(),
        "outside the window"
    );
    idx.expire(t0 + DAY + 2 * HOUR).unwrap();
    assert_eq!(idx.len(), 0);
}

#[test]
fn max_keys_evicts_the_oldest_bucket_early() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 100 * DAY;
    let mut idx = DedupeIndex::open(dir.path(), DAY, 10, t0).unwrap();
    for i in 0..10 {
        idx.insert(&key(i), i, t0).unwrap();
    }
    idx.insert(&key(10), 10, t0 + 2 * HOUR).unwrap();
    idx.flush().unwrap();
    assert_eq!(idx.evicted_early, 1);
    assert!(!idx.contains(&key(0), t0 + 2 * HOUR).unwrap());
    assert!(idx.contains(&key(10), t0 + 2 * HOUR).unwrap());
}

#[test]
fn torn_tail_is_cut_and_earlier_keys_survive() {
    let dir = tempfile::tempdir().unwrap();
    let now = 100 * DAY;
    let mut idx = DedupeIndex::open(dir.path(), DAY, 1_000_000, now).unwrap();
    for i in 0..10 {
        idx.insert(&key(i), i, now).unwrap();
    }
    idx.sync(9).unwrap();
    drop(idx);
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "dd"))
        .unwrap();
    OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&[1, 2, 3, 4, 5, 6, 7, 8, 200, 0, 9])
        .unwrap();
    let mut idx = DedupeIndex::open(dir.path(), DAY, 1_000_000, now).unwrap();
    assert!((0..10).all(|i| idx.contains(&key(i), now).unwrap()));
    idx.insert(&key(10), 10, now).unwrap();
    idx.sync(10).unwrap();
    drop(idx);
    let idx = DedupeIndex::open(dir.path(), DAY, 1_000_000, now).unwrap();
    assert!((0..=10).all(|i| idx.contains(&key(i), now).unwrap()));
}
