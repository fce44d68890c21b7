//! The scheduler's rules, driven by hand: no network, no runtime, time passed in.

use super::*;
use crate::delivery::store::{HttpRequest, Request};

fn pos(o: u64) -> Position {
    Position {
        segment: 0,
        offset: o,
    }
}

fn start() -> CursorState {
    CursorState {
        position: pos(0),
        next_seq: 0,
        done: vec![],
    }
}

fn limits(max_in_flight: usize, concurrency: usize) -> Limits {
    Limits {
        max_in_flight,
        concurrency,
        linger_ms: 100,
    }
}

fn pending(seq: u64) -> Pending {
    Pending {
        id: 0,
        seq,
        source: "web".into(),
        message_id: format!("m-{seq}"),
        mapping: "m".into(),
        received_ms: 0,
        request: Request::Http(HttpRequest {
            url: "http://hook/".into(),
            method: "POST".into(),
            headers: vec![],
            body: format!("{{\"n\":{seq}}}"),
            signed: String::new(),
        }),
        attempts: 0,
        next_at_ms: 0,
        last_status: None,
        last_error: None,
        members: Vec::new(),
    }
}

fn one(seq: u64, batch_size: usize) -> Vec<Planned> {
    vec![Planned {
        batch_size,
        delivery: Ok(pending(seq)),
    }]
}

/// Reads record `seq` (at offset `seq * 10`) with one delivery.
fn read(s: &mut Scheduler, seq: u64) {
    let unbuilt = s.record(seq, pos(seq * 10 + 10), || one(seq, 0), 0);
    assert!(unbuilt.is_empty());
}

/// A delivery that was stored for retry, due at `at`.
fn stored(id: u64, at: i64) -> Pending {
    Pending {
        id,
        next_at_ms: at,
        ..pending(1000 + id)
    }
}

#[test]
fn room_shrinks_with_held_records_retries_and_attempts_in_flight() {
    let mut s = Scheduler::new(start(), limits(5, 8));
    assert_eq!(s.room(), 5);
    read(&mut s, 0);
    read(&mut s, 1);
    assert_eq!(s.room(), 3, "two records held");
    s.reload(vec![stored(7, 1_000)]);
    assert_eq!(s.room(), 2, "and a retry waiting");
    let job = s.next_start(0).expect("a live delivery");
    assert_eq!(s.room(), 1, "its attempt in flight counts too");
    s.returned();
    s.complete(&job);
    assert_eq!(s.room(), 3, "record 0 finished, behind the cursor");
    assert!(
        !s.wants_read(pos(1000)),
        "record 1's delivery still waits in the queue"
    );
}

#[test]
fn due_retries_take_turns_with_live_work_and_cannot_starve_it() {
    let mut s = Scheduler::new(start(), limits(100, 4));
    s.reload((1..=4).map(|id| stored(id, 50)).collect());
    for seq in 0..4 {
        read(&mut s, seq);
    }
    let started: Vec<bool> = (0..4)
        .map(|_| s.next_start(100).expect("an attempt").from_log)
        .collect();
    assert_eq!(
        started,
        [false, true, false, true],
        "retry, live, retry, live"
    );
    assert!(s.next_start(100).is_none(), "concurrency 4 is used up");
    s.returned();
    assert!(s.next_start(100).expect("a retry").p.id > 0);
    s.returned();
    assert_eq!(s.next_start(100).expect("live").p.seq, 2);
}

#[test]
fn a_retry_not_yet_due_is_not_started_and_is_the_next_wake() {
    let mut s = Scheduler::new(start(), limits(100, 1));
    s.reload(vec![stored(1, 5_000)]);
    assert!(s.next_start(4_999).is_none());
    assert_eq!(s.next_wake(), Some(5_000));
    read(&mut s, 0);
    assert_eq!(s.next_start(4_999).expect("live work").p.seq, 0);
    assert_eq!(s.next_wake(), None, "no wake while no attempt may start");
    s.returned();
    assert_eq!(s.next_wake(), Some(5_000));
    assert_eq!(s.next_start(5_000).expect("due now").p.id, 1);
}

#[test]
fn out_of_order_completion_moves_the_cursor_over_finished_records_only() {
    let mut s = Scheduler::new(start(), limits(100, 8));
    for seq in 0..3 {
        read(&mut s, seq);
    }
    let jobs: Vec<Job> = (0..3).filter_map(|_| s.next_start(0)).collect();
    s.complete(&jobs[2]);
    s.complete(&jobs[1]);
    assert_eq!(
        s.cursor(),
        CursorState {
            position: pos(0),
            next_seq: 0,
            done: vec![1, 2]
        },
        "seq 0 holds the cursor; 1 and 2 are remembered"
    );
    s.complete(&jobs[0]);
    assert_eq!(
        s.cursor(),
        CursorState {
            position: pos(30),
            next_seq: 3,
            done: vec![]
        }
    );
    // A retry that was never read by the live cursor does not move it.
    let mut stored = Job::stored(pending(9));
    stored.p.id = 4;
    s.complete(&stored);
    assert_eq!(s.cursor().next_seq, 3);
}

#[test]
fn records_finished_before_a_restart_are_skipped_unplanned() {
    let mut s = Scheduler::new(
        CursorState {
            position: pos(0),
            next_seq: 0,
            done: vec![1],
        },
        limits(100, 8),
    );
    read(&mut s, 0);
    let unbuilt = s.record(1, pos(20), || panic!("a skipped record is not planned"), 0);
    assert!(unbuilt.is_empty());
    read(&mut s, 2);
    let seqs: Vec<u64> = std::iter::from_fn(|| s.next_start(0))
        .map(|j| j.p.seq)
        .collect();
    assert_eq!(seqs, [0, 2]);
    assert_eq!(s.cursor().done, vec![1]);
}

#[test]
fn batches_seal_at_size_or_linger_and_finish_every_member() {
    let mut s = Scheduler::new(start(), limits(100, 8));
    for seq in 0..3 {
        s.record(seq, pos(seq * 10 + 10), || one(seq, 2), 1_000);
    }
    let full = s.next_start(1_000).expect("two make a batch");
    assert_eq!(full.p.members.len(), 2);
    assert!(s.next_start(1_000).is_none(), "the third lingers");
    assert_eq!(s.next_wake(), Some(1_100));
    s.seal_due_batches(1_099);
    assert!(s.next_start(1_099).is_none());
    s.seal_due_batches(1_100);
    let rest = s.next_start(1_100).expect("sealed at the linger deadline");
    assert_eq!(rest.p.members.len(), 1);
    s.complete(&full);
    s.complete(&rest);
    assert_eq!(s.cursor().next_seq, 3);
    assert_eq!(s.window.held(), 0);
}

#[test]
fn unbuilt_deliveries_are_handed_back_and_replay_chunks_are_counted() {
    let mut s = Scheduler::new(start(), limits(100, 8));
    let failed = vec![Planned {
        batch_size: 0,
        delivery: Err((pending(0), "bad url".into())),
    }];
    let unbuilt = s.record(0, pos(10), || failed, 0);
    assert_eq!(unbuilt.len(), 1);
    s.complete(&unbuilt[0].0);
    assert_eq!(s.cursor().next_seq, 1);

    assert!(s.replay_ready());
    assert!(s.replay_chunk(one(0, 0)).is_empty());
    assert!(!s.replay_ready(), "the chunk is queued");
    let job = s.next_start(0).expect("the replayed delivery");
    assert!(job.replay && !job.from_log);
    assert!(!s.replay_ready(), "and in flight");
    s.returned();
    s.retry_at(job, 10);
    assert!(
        !s.replay_ready(),
        "a retry kept only in memory still holds the chunk"
    );
    let job = s.next_start(10).expect("the retry");
    s.returned();
    s.complete(&job);
    assert!(s.replay_ready());
}
