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
use crate::metrics::{self, Histogram};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};

pub struct GroupCommit<T> {
    state: Mutex<State<T>>,
    /// How many items each transaction held.
    pub batch_sizes: Histogram,
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
        GroupCommit {
            state: Mutex::new(State { queue: Vec::new(), leading: false }),
            batch_sizes: Histogram::new(metrics::BATCH_BOUNDS),
        }
    }
}

impl<T> GroupCommit<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` and returns once the transaction holding it has
    /// committed. `write` stores a batch (it runs on the leader's thread,
    /// inside the transaction). If a batch fails for any reason but a busy
    /// database, each of its items is tried again in a transaction of its
    /// own, so one bad item (a click on a link deleted a moment ago) fails
    /// alone instead of taking the others with it.
    pub fn submit(
        &self,
        db: &Db,
        item: T,
        write: impl Fn(&Connection, &[T]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.submit_with(db, item, write, |()| {})
    }

    /// As [`GroupCommit::submit`], with `write` returning a summary of what
    /// it stored that `committed` receives once that transaction has
    /// committed (so a batch that fails and is retried counts once).
    pub fn submit_with<S>(
        &self,
        db: &Db,
        item: T,
        write: impl Fn(&Connection, &[T]) -> Result<S, Error>,
        committed: impl Fn(S),
    ) -> Result<(), Error> {
        let me = Arc::new(Waiter { thread: thread::current(), outcome: AtomicU8::new(PENDING) });
        let lead = {
            let mut state = self.lock();
            state.queue.push((item, Arc::clone(&me)));
            !std::mem::replace(&mut state.leading, true)
        };
        if !lead {
            // A batch often commits within a few scheduler rounds: yielding
            // until then costs less than sleeping and being woken.
            let mut yields = 0;
            loop {
                match me.outcome.load(Ordering::Acquire) {
                    PENDING if yields < YIELDS => {
                        yields += 1;
                        thread::yield_now();
                    }
                    PENDING => thread::park(),
                    LEAD => break,
                    outcome => return outcome_result(outcome),
                }
            }
        }
        // Leader: write everything queued (our own item among it) at once.
        let (items, waiters): (Vec<T>, Vec<Arc<Waiter>>) = std::mem::take(&mut self.lock().queue).into_iter().unzip();
        // A panic must not leave the others parked, or `leading` set, forever.
        let attempt = |items: &[T]| match catch_unwind(AssertUnwindSafe(|| db.write(|tx| write(tx, items)))) {
            Ok(Ok(summary)) => {
                committed(summary);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::internal("a grouped write panicked")),
        };
        self.batch_sizes.observe(items.len() as f64);
        let whole = attempt(&items);
        let retry = outcome_of(&whole) == FAILED && items.len() > 1;
        // The leader keeps its own error (for the log); the others get its kind.
        let mut mine = if retry { Ok(()) } else { whole };
        let batch_outcome = outcome_of(&mine);
        for (i, waiter) in waiters.iter().enumerate() {
            let result = if retry { attempt(&items[i..=i]) } else { Ok(()) };
            let outcome = if retry { outcome_of(&result) } else { batch_outcome };
            if Arc::ptr_eq(waiter, &me) {
                if retry {
                    mine = result;
                }
            } else {
                waiter.settle(outcome);
            }
        }
        // Whoever queued meanwhile: the first of them leads the next batch.
        let mut state = self.lock();
        match state.queue.first() {
            Some((_, next)) => next.settle(LEAD),
            None => state.leading = false,
        }
        drop(state);
        mine
    }
}

/// How many times a waiting thread yields before it sleeps.
const YIELDS: u32 = 32;

fn outcome_of(result: &Result<(), Error>) -> u8 {
    match result {
        Ok(()) => COMMITTED,
        Err(Error::Busy) => BUSY,
        Err(_) => FAILED,
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
    fn a_bad_item_fails_alone_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Database { path: dir.path().join("g.db"), ..Default::default() };
        let db = Arc::new(Db::open(&cfg).unwrap());
        db.write(|tx| Ok(tx.execute_batch("CREATE TABLE g (n INTEGER);")?)).unwrap();
        let group = Arc::new(GroupCommit::<i64>::default());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (db, group) = (Arc::clone(&db), Arc::clone(&group));
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|i| {
                            let n = t * 100 + i;
                            group
                                .submit(&db, n, |tx, batch| {
                                    for &n in batch {
                                        if n == 713 {
                                            return Err(Error::internal("poisoned"));
                                        }
                                        tx.execute("INSERT INTO g VALUES (?1)", [n])?;
                                    }
                                    Ok(())
                                })
                                .is_err()
                        })
                        .count()
                })
            })
            .collect();
        let failures: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(failures, 1, "only the poisoned item fails");
        let (rows, poisoned): (i64, i64) = db
            .read(|c| {
                Ok(c.query_row("SELECT count(*), count(*) FILTER (WHERE n = 713) FROM g", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?)
            })
            .unwrap();
        assert_eq!((rows, poisoned), (799, 0));
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
