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
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard};

pub struct GroupCommit<T> {
    state: Mutex<State<T>>,
    done: Condvar,
}

struct State<T> {
    queue: Vec<T>,
    next_ticket: u64,
    /// Every ticket below this has been committed or has failed.
    done: u64,
    leading: bool,
    /// Recent failed batches: ticket range and whether the database was busy.
    failed: VecDeque<(u64, u64, bool)>,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                queue: Vec::new(),
                next_ticket: 0,
                done: 0,
                leading: false,
                failed: VecDeque::new(),
            }),
            done: Condvar::new(),
        }
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
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push(item);
        let mut write = Some(write);
        loop {
            if ticket < state.done {
                return match state.failed.iter().find(|(from, to, _)| (*from..*to).contains(&ticket)) {
                    Some((_, _, true)) => Err(Error::Busy),
                    Some((_, _, false)) => Err(Error::internal("a grouped write failed")),
                    None => Ok(()),
                };
            }
            if state.leading {
                state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Our ticket is still queued and nobody leads: we do.
            let Some(write) = write.take() else { return Err(Error::internal("group commit led twice")) };
            state.leading = true;
            let batch = std::mem::take(&mut state.queue);
            let (from, to) = (state.done, state.next_ticket);
            drop(state);
            // A panic must not leave `leading` set forever.
            let result = catch_unwind(AssertUnwindSafe(|| db.write(|tx| write(tx, batch))))
                .unwrap_or_else(|_| Err(Error::internal("a grouped write panicked")));
            state = self.lock();
            if let Err(e) = &result {
                state.failed.push_back((from, to, matches!(e, Error::Busy)));
                if state.failed.len() > 256 {
                    state.failed.pop_front();
                }
            }
            state.done = to;
            state.leading = false;
            self.done.notify_all();
        }
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
