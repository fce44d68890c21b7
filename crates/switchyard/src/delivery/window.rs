//! Which log records a destination has finished with, when deliveries complete out of
//! order: the cursor is the oldest unfinished record, plus the finished ones after it (so a
//! restart skips them instead of delivering them twice).

use std::collections::{BTreeMap, BTreeSet};

use crate::cursor::CursorState;
use crate::log::segment::Position;

#[derive(Debug)]
pub struct Window {
    /// Unfinished records: seq → (deliveries left, the record's position).
    open: BTreeMap<u64, (u32, Position)>,
    /// Finished records above the oldest unfinished one.
    finished: BTreeSet<u64>,
    /// The next record to read.
    pub read: CursorState,
}

impl Window {
    pub fn new(cursor: CursorState) -> Window {
        Window {
            open: BTreeMap::new(),
            finished: BTreeSet::new(),
            read: cursor,
        }
    }

    /// Records read but not yet behind the cursor.
    pub fn held(&self) -> usize {
        self.open.len() + self.finished.len()
    }

    /// Records a read record with `deliveries` to make; `next` is the position after it.
    pub fn opened(&mut self, seq: u64, at: Position, next: Position, deliveries: u32) {
        if deliveries == 0 {
            self.finish_seq(seq);
        } else {
            self.open.insert(seq, (deliveries, at));
        }
        self.read.position = next;
        self.read.next_seq = seq + 1;
    }

    /// One delivery of `seq` finished (delivered, stored for retry, or dead-lettered).
    pub fn complete(&mut self, seq: u64) {
        if let Some((left, _)) = self.open.get_mut(&seq) {
            *left -= 1;
            if *left == 0 {
                self.open.remove(&seq);
                self.finish_seq(seq);
            }
        }
    }

    fn finish_seq(&mut self, seq: u64) {
        match self.open.keys().next().copied() {
            // Nothing older is open: everything read so far is behind the cursor.
            None => self.finished.clear(),
            Some(floor) => {
                self.finished.insert(seq);
                self.finished.retain(|s| *s > floor);
            }
        }
    }

    /// The records from `read` up to `to` were passed over unread (a backlog overflow
    /// dead-lettered them): the next read starts at `to`. With no record open the cursor
    /// moves there at once; otherwise it stays at the oldest open record, and the passed-over
    /// ones are not listed in `done` (a crash before the open ones finish passes them over
    /// again, or, under the caps by then, delivers them: at least once, never lost).
    pub fn pass_over(&mut self, to: CursorState) {
        if to.next_seq > self.read.next_seq {
            self.read.position = to.position;
            self.read.next_seq = to.next_seq;
        }
    }

    /// The durable cursor for the current state.
    pub fn cursor(&self, skip_from_restart: &BTreeSet<u64>) -> CursorState {
        match self.open.iter().next() {
            None => CursorState {
                position: self.read.position,
                next_seq: self.read.next_seq,
                done: Vec::new(),
            },
            Some((seq, (_, at))) => {
                let mut done: Vec<u64> =
                    self.finished.iter().copied().filter(|s| s > seq).collect();
                done.extend(
                    skip_from_restart
                        .iter()
                        .copied()
                        .filter(|s| *s > *seq && *s >= self.read.next_seq),
                );
                done.sort_unstable();
                done.dedup();
                CursorState {
                    position: *at,
                    next_seq: *seq,
                    done,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(o: u64) -> Position {
        Position {
            segment: 0,
            offset: o,
        }
    }

    #[test]
    fn the_cursor_waits_for_the_oldest_and_remembers_the_rest() {
        let mut w = Window::new(CursorState {
            position: pos(0),
            next_seq: 0,
            done: vec![],
        });
        w.opened(0, pos(0), pos(10), 2);
        w.opened(1, pos(10), pos(20), 0);
        w.opened(2, pos(20), pos(30), 1);
        assert_eq!(
            w.cursor(&BTreeSet::new()),
            CursorState {
                position: pos(0),
                next_seq: 0,
                done: vec![1]
            }
        );
        w.complete(2);
        w.complete(0);
        assert_eq!(
            w.cursor(&BTreeSet::new()).next_seq,
            0,
            "seq 0 still has a delivery left"
        );
        assert_eq!(w.cursor(&BTreeSet::new()).done, vec![1, 2]);
        w.complete(0);
        assert_eq!(
            w.cursor(&BTreeSet::new()),
            CursorState {
                position: pos(30),
                next_seq: 3,
                done: vec![]
            }
        );
        assert_eq!(w.held(), 0);
    }

    #[test]
    fn passing_over_unread_records_moves_the_cursor_once_nothing_older_is_open() {
        let mut w = Window::new(CursorState {
            position: pos(0),
            next_seq: 0,
            done: vec![],
        });
        w.opened(0, pos(0), pos(10), 1);
        w.pass_over(CursorState {
            position: pos(500),
            next_seq: 50,
            done: vec![],
        });
        assert_eq!(
            w.cursor(&BTreeSet::new()),
            CursorState {
                position: pos(0),
                next_seq: 0,
                done: vec![]
            },
            "the open record holds the cursor"
        );
        w.opened(50, pos(500), pos(510), 1);
        w.complete(0);
        assert_eq!(w.cursor(&BTreeSet::new()).position, pos(500));
        w.complete(50);
        assert_eq!(
            w.cursor(&BTreeSet::new()),
            CursorState {
                position: pos(510),
                next_seq: 51,
                done: vec![]
            }
        );
    }
}
