//! Group commit: many request threads' writes of one kind in one
//! transaction, with no writer thread in between.
//!
//! Leader/follower: a thread submits its item and waits; if no batch is
//! being written, it becomes the leader, takes every queued item, writes
//! them all in one transaction and wakes the others. A commit (and the WAL
//! pages it writes) is then paid once per batch instead of once per item,
//! and the batch can merge work (one rollup update for many clicks).

use super::Db;
use crate::error::Error;
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};

pub struct GroupCommit<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    queue: Vec<(T, Arc<Waiter>)>,
    /// A leader is writing, or has been chosen and is about to.
    leading: bool,
}

/// A submitting thread, parked until its item is settled or it is made
/// the leader. Only the threads that have something to do are woken: the
/// batch's own, and one to lead the next batch.
struct Waiter {
    thread: Thread,
    outcome: AtomicU8,
}

const PENDING: u8 = 0;
const COMMITTED: u8 = 1;
const BUSY: u8 = 2;
const FAILED: u8 = 3;
const LEAD: u8 = 4;

impl Waiter {
    fn settle(&self, outcome: u8) {
        self.outcome.store(outcome, Ordering::Release);
        self.thread.unpark();
    }
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        GroupCommit { state: Mutex::new(State { queue: Vec::new(), leading: false }) }
    }
}

impl<T> GroupCommit<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` and returns once the transaction holding it has
    /// committed. `write` stores a whole batch (it runs on the leader's
    /// thread, inside the transaction). If a batch fails, every item in it
    /// gets the error and none is committed.
    pub fn submit(
        &self,
        db: &Db,
        item: T,
        write: impl FnOnce(&Connection, Vec<T>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let me = Arc::new(Waiter { thread: thread::current(), outcome: AtomicU8::new(PENDING) });
        let lead = {
            let mut state = self.lock();
            state.queue.push((item, Arc::clone(&me)));
            !std::mem::replace(&mut state.leading, true)
        };
        if !lead {
            loop {
                match me.outcome.load(Ordering::Acquire) {
                    PENDING => thread::park(),
                    LEAD => break,
                    outcome => return outcome_result(outcome),
                }
            }
        }
        // Leader: write everything queued (our own item among it) at once.
        let (items, waiters): (Vec<T>, Vec<Arc<Waiter>>) = std::mem::take(&mut self.lock().queue).into_iter().unzip();
        // A panic must not leave the others parked, or `leading` set, forever.
        let result = catch_unwind(AssertUnwindSafe(|| db.write(|tx| write(tx, items))))
            .unwrap_or_else(|_| Err(Error::internal("a grouped write panicked")));
        let outcome = match &result {
            Ok(()) => COMMITTED,
            Err(Error::Busy) => BUSY,
            Err(_) => FAILED,
        };
        for waiter in waiters.iter().filter(|w| !Arc::ptr_eq(w, &me)) {
            waiter.settle(outcome);
        }
        // Whoever queued meanwhile: the first of them leads the next batch.
        let mut state = self.lock();
        match state.queue.first() {
            Some((_, next)) => next.settle(LEAD),
            None => state.leading = false,
        }
        drop(state);
        result
    }
}

fn outcome_result(outcome: u8) -> Result<(), Error> {
    match outcome {
        COMMITTED => Ok(()),
        BUSY => Err(Error::Busy),
        _ => Err(Error::internal("a grouped write failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_submits_all_commit_in_fewer_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Database { path: dir.path().join("g.db"), ..Default::default() };
        let db = Arc::new(Db::open(&cfg).unwrap());
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE g (n INTEGER); CREATE TABLE batches (size INTEGER);")?))
            .unwrap();
        let group = Arc::new(GroupCommit::<i64>::default());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (db, group) = (Arc::clone(&db), Arc::clone(&group));
                std::thread::spawn(move || {
                    for i in 0..50 {
                        group
                            .submit(&db, t * 100 + i, |tx, batch| {
                                tx.execute("INSERT INTO batches VALUES (?1)", [batch.len() as i64])?;
                                for n in batch {
                                    tx.execute("INSERT INTO g VALUES (?1)", [n])?;
                                }
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (rows, distinct, batches): (i64, i64, i64) = db
            .read(|c| {
                Ok(c.query_row("SELECT count(*), count(DISTINCT n), (SELECT count(*) FROM batches) FROM g", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?)
            })
            .unwrap();
        assert_eq!((rows, distinct), (800, 800));
        assert!(batches <= 800, "{batches}");
    }

    #[test]
    fn a_failed_batch_fails_its_items_and_commits_none() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Database { path: dir.path().join("g.db"), ..Default::default() };
        let db = Db::open(&cfg).unwrap();
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE g (n INTEGER);")?)).unwrap();
        let group = GroupCommit::<i64>::default();
        let e = group.submit(&db, 1, |tx, _| {
            tx.execute("INSERT INTO g VALUES (1)", [])?;
            Err(Error::internal("boom"))
        });
        assert!(e.is_err());
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| group.submit(&db, 2, |_, _| panic!("bad job"))));
        assert!(matches!(r, Ok(Err(_))), "a panic becomes an error, not a stuck leader");
        group.submit(&db, 3, |tx, b| Ok(tx.execute("INSERT INTO g VALUES (?1)", [b[0]]).map(|_| ())?)).unwrap();
        let rows: (i64, i64) = db
            .read(|c| Ok(c.query_row("SELECT count(*), sum(n) FROM g", [], |r| Ok((r.get(0)?, r.get(1)?)))?))
            .unwrap();
        assert_eq!(rows, (1, 3), "only the third, good batch was committed");
    }
}
