//! The store's tables across reopen, replay of dead letters, references and the bounded
//! delivery log.

use super::*;

fn pending(seq: u64) -> Pending {
    Pending {
        id: 0,
        seq,
        source: "web".into(),
        message_id: format!("m-{seq}"),
        mapping: "Send".into(),
        received_ms: 1_000,
        request: Request::Http(HttpRequest {
            url: "http://x/".into(),
            method: "POST".into(),
            headers: vec![],
            body: "{}".into(),
            signed: "{}".into(),
        }),
        attempts: 1,
        next_at_ms: 5_000,
        last_status: Some(500),
        last_error: None,
        members: Vec::new(),
    }
}

#[test]
fn retries_dead_letters_and_replay_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.redb");
    let store = DeliveryStore::open(&path).unwrap();
    let (mut a, mut b) = (pending(1), pending(2));
    store.put_retry("hook", &mut a).unwrap();
    store.put_retry("hook", &mut b).unwrap();
    store.put_retry("other", &mut pending(3)).unwrap();
    assert!(a.id > 0 && b.id > a.id);
    store
        .dead_letter(
            "hook",
            DeadLetter {
                delivery: b.clone(),
                reason: "http 400".into(),
                dead_at_ms: 9,
                detail: None,
            },
        )
        .unwrap();
    drop(store);
    let store = DeliveryStore::open(&path).unwrap();
    assert_eq!(store.retries("hook").unwrap(), vec![a.clone()]);
    let dead = store.dead_letters("hook", 10, None).unwrap();
    assert_eq!((dead.len(), dead[0].reason.as_str()), (1, "http 400"));
    let (replayed, _) = store.replay_dead_letters("hook", 42, |_| true).unwrap();
    assert_eq!(
        (replayed.len(), replayed[0].next_at_ms, replayed[0].attempts),
        (1, 42, 0)
    );
    assert!(store.dead_letters("hook", 10, None).unwrap().is_empty());
    assert_eq!(store.retries("hook").unwrap().len(), 2);
    store.remove_retry("hook", a.id).unwrap();
    assert_eq!(store.retries("hook").unwrap().len(), 1);
}

#[test]
fn overflow_references_are_kept_never_replayed_and_found_by_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(&dir.path().join("d.redb")).unwrap();
    let mut reference = pending(7);
    reference.request = Request::default();
    reference.attempts = 0;
    reference.last_status = None;
    let dl = DeadLetter {
        delivery: reference,
        reason: BACKLOG_OVERFLOW.into(),
        dead_at_ms: 9,
        detail: Some("backlog.max_age (7d) exceeded".into()),
    };
    store
        .references("hook", Mark::Overflow, vec![dl.clone()], 8)
        .unwrap();
    store
        .dead_letter(
            "hook",
            DeadLetter {
                delivery: pending(9),
                reason: "HTTP 400".into(),
                dead_at_ms: 10,
                detail: None,
            },
        )
        .unwrap();
    assert_eq!(store.marked_through("hook", Mark::Overflow).unwrap(), 8);
    assert_eq!(store.marked_through("hook", Mark::Damage).unwrap(), 0);
    assert_eq!(store.marked_through("other", Mark::Overflow).unwrap(), 0);
    let listed = store.dead_letters("hook", 10, None).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[1].is_reference() && !listed[0].is_reference());
    assert_eq!(listed[1].detail, dl.detail);
    let (moved, references) = store.replay_dead_letters("hook", 1, |_| true).unwrap();
    assert_eq!((moved.len(), references), (1, 1));
    assert_eq!(store.counts("hook").unwrap(), (1, 1), "the reference stays");
    let lineage = store.lineage("hook", "m-7").unwrap();
    assert_eq!(lineage.dead.len(), 1);
    assert!(store.lineage("hook", "m-").unwrap().dead.is_empty());
    // A dead letter written before these fields existed still reads.
    let old = r#"{"id":3,"seq":1,"source":"web","message_id":"m","mapping":"x","received_ms":1,
        "request":{"url":"http://x/","method":"POST","headers":[],"body":"{}","signed":"{}"},
        "attempts":1,"next_at_ms":0,"last_status":500,"last_error":null,"reason":"HTTP 500","dead_at_ms":2}"#;
    let parsed: DeadLetter = serde_json::from_str(old).unwrap();
    assert!(!parsed.is_reference() && parsed.detail.is_none());
}

#[test]
fn the_delivery_log_is_bounded_and_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(&dir.path().join("d.redb")).unwrap();
    let attempt = |i: u64| Attempt {
        id: 0,
        at_ms: i as i64,
        source: "web".into(),
        message_id: format!("m-{i}"),
        mapping: "m".into(),
        url: "u".into(),
        status: Some(200),
        latency_ms: 1,
        error: None,
        response: String::new(),
        outcome: "delivered".into(),
    };
    for chunk in 0..3 {
        let mut batch: Vec<Attempt> = (0..(MAX_ATTEMPTS / 2))
            .map(|i| attempt(chunk * 10_000 + i))
            .collect();
        store.log_attempts("hook", &mut batch).unwrap();
    }
    let all = store.attempts("hook", usize::MAX, None).unwrap();
    assert_eq!(all.len() as u64, MAX_ATTEMPTS);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(
        store.attempts("hook", 2, Some(all[0].id)).unwrap()[0].id,
        all[1].id
    );
}
