//! Keeping the WAL short while long reads run.
//!
//! SQLite starts the WAL over only when a checkpoint has copied all of it
//! and no reader still looks at an older part of it. Reads that take a
//! tenth of a second, back to back (open dashboards, a CSV report pulled
//! again and again), leave no such moment while clicks keep committing:
//! the WAL grows without bound (1.7 GB in ten seconds of `bench/mixed.sh`
//! with the writer's own checkpoints turned off) and every commit and read
//! pays for its size.
//!
//! So once the WAL holds [`RESTART_FRAMES`], new reads wait at a gate
//! until those under way have ended, the writer checkpoints right after
//! its next commit (on its own connection, so no commit slips in between
//! and its next transaction starts the WAL over), and the gate opens
//! again. Readers wait about as long as the longest read under way;
//! writers never wait. A reader outside the server (a replicator, the
//! `sqlite3` shell) can still hold the WAL open, and another process
//! writing to the file (`apextrack purge`) keeps it from starting over:
//! then the gate stays open for [`BACK_OFF`] before trying again, and the
//! writer's automatic checkpoint remains the backstop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// WAL frames (4 KiB pages) that start a restart: 48 MiB.
pub const RESTART_FRAMES: i64 = 12_000;

/// Longest a closed gate waits for the reads under way to end.
const DRAIN_WAIT: Duration = Duration::from_millis(1500);

/// Longest the gate stays closed waiting for the writer's checkpoint (no
/// commit in that time means nothing is growing the WAL).
const WRITER_WAIT: Duration = Duration::from_millis(500);

/// Longest a read waits at a closed gate, whatever happens to whoever
/// closed it.
const MAX_READ_WAIT: Duration = Duration::from_secs(3);

/// How long the gate stays open after a restart failed for a reason it
/// cannot fix (a reader outside the server).
const BACK_OFF: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Wal {
    state: Mutex<State>,
    changed: Condvar,
    /// The writer is to checkpoint after its next commit.
    wanted: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Reads under way.
    active: usize,
    closed: bool,
    /// The writer's last checkpoint: (frames in the WAL, frames copied).
    last: Option<(i64, i64)>,
    back_off_until: Option<Instant>,
    /// Frames in the WAL when the writer last copied all of it: if the
    /// next look finds as many or more, it did not start over (another
    /// process, such as `apextrack purge`, writes between our commits).
    done_at: Option<i64>,
}

/// A read under way; the gate counts it until dropped.
pub struct Pass<'a>(&'a Wal);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.active -= 1;
        if state.active == 0 {
            self.0.changed.notify_all();
        }
    }
}

/// What [`Wal::restart`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Restart {
    /// The WAL is short enough.
    NotNeeded,
    /// Waiting out a back-off after a failed restart.
    BackingOff,
    /// The writer copied everything: its next transaction starts the WAL over.
    Done,
    /// No commit came while the gate was closed.
    NoCommit,
    /// Something still held the WAL open (frames in it, frames copied).
    Blocked(i64, i64),
    /// The last restart copied everything, yet the WAL went on growing:
    /// another process writes to the file.
    NotStartedOver,
}

impl Wal {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits while the gate is closed (at most [`MAX_READ_WAIT`]), then
    /// counts a read until the pass is dropped.
    pub fn enter(&self) -> Pass<'_> {
        let deadline = Instant::now() + MAX_READ_WAIT;
        let mut state = self.lock();
        while state.closed {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        state.active += 1;
        Pass(self)
    }

    /// Whether the writer should checkpoint now, after a commit.
    pub fn checkpoint_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }

    /// The writer's checkpoint result: (frames in the WAL, frames copied).
    pub fn checkpointed(&self, frames: i64, copied: i64) {
        self.lock().last = Some((frames, copied));
        self.changed.notify_all();
    }

    /// Called with the frame count of a background passive checkpoint:
    /// when the WAL has grown to [`RESTART_FRAMES`], closes the gate,
    /// waits for the reads under way, has the writer checkpoint, and opens
    /// the gate again.
    pub fn restart(&self, frames: i64) -> Restart {
        let mut state = self.lock();
        let done_at = state.done_at.take();
        if frames < RESTART_FRAMES {
            return Restart::NotNeeded;
        }
        if state.back_off_until.is_some_and(|t| Instant::now() < t) {
            return Restart::BackingOff;
        }
        if done_at.is_some_and(|before| frames >= before) {
            // Checkpoints in our writer would only stall our clicks.
            state.back_off_until = Some(Instant::now() + BACK_OFF);
            return Restart::NotStartedOver;
        }
        state.closed = true;
        state.last = None;
        let deadline = Instant::now() + DRAIN_WAIT;
        while state.active > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        self.wanted.store(true, Ordering::Release);
        let deadline = Instant::now() + WRITER_WAIT;
        while state.last.is_none() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        state.closed = false;
        let outcome = match state.last {
            None => Restart::NoCommit,
            Some((frames, copied)) if copied >= frames => {
                state.done_at = Some(frames);
                Restart::Done
            }
            Some((frames, copied)) => {
                state.back_off_until = Some(Instant::now() + BACK_OFF);
                Restart::Blocked(frames, copied)
            }
        };
        drop(state);
        self.changed.notify_all();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn a_short_wal_closes_nothing() {
        let wal = Wal::default();
        assert_eq!(wal.restart(RESTART_FRAMES - 1), Restart::NotNeeded);
        assert!(!wal.checkpoint_wanted());
    }

    #[test]
    fn the_gate_waits_for_reads_under_way_and_holds_new_ones_until_the_writer_checkpointed() {
        let wal = Arc::new(Wal::default());
        let pass = wal.enter();
        let restarter = {
            let wal = Arc::clone(&wal);
            thread::spawn(move || wal.restart(RESTART_FRAMES))
        };
        // The gate closes; the checkpoint is not asked for while a read is under way.
        while !wal.lock().closed {
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(50));
        assert!(!wal.checkpoint_wanted());
        // A new read waits at the gate.
        let late = {
            let wal = Arc::clone(&wal);
            thread::spawn(move || {
                let _pass = wal.enter();
                Instant::now()
            })
        };
        drop(pass);
        // The writer's next commit checkpoints.
        while !wal.checkpoint_wanted() {
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(50));
        let checkpointed_at = Instant::now();
        wal.checkpointed(RESTART_FRAMES, RESTART_FRAMES);
        assert_eq!(restarter.join().unwrap(), Restart::Done);
        assert!(late.join().unwrap() >= checkpointed_at, "a read went through a closed gate");
    }

    #[test]
    fn a_wal_that_grows_on_after_a_restart_backs_off() {
        let wal = Arc::new(Wal::default());
        let writer = {
            let wal = Arc::clone(&wal);
            thread::spawn(move || {
                while !wal.checkpoint_wanted() {
                    thread::yield_now();
                }
                wal.checkpointed(RESTART_FRAMES, RESTART_FRAMES);
            })
        };
        assert_eq!(wal.restart(RESTART_FRAMES), Restart::Done);
        writer.join().unwrap();
        // Started over: nothing to say.
        assert_eq!(wal.restart(RESTART_FRAMES / 2), Restart::NotNeeded);
        let writer = {
            let wal = Arc::clone(&wal);
            thread::spawn(move || {
                while !wal.checkpoint_wanted() {
                    thread::yield_now();
                }
                wal.checkpointed(RESTART_FRAMES + 5, RESTART_FRAMES + 5);
            })
        };
        assert_eq!(wal.restart(RESTART_FRAMES + 5), Restart::Done);
        writer.join().unwrap();
        // Not started over: someone else writes; leave the gate open.
        assert_eq!(wal.restart(RESTART_FRAMES + 900), Restart::NotStartedOver);
        assert_eq!(wal.restart(RESTART_FRAMES + 1900), Restart::BackingOff);
        assert!(!wal.checkpoint_wanted());
    }

    #[test]
    fn a_wal_held_open_from_outside_backs_off() {
        let wal = Arc::new(Wal::default());
        let writer = {
            let wal = Arc::clone(&wal);
            thread::spawn(move || {
                while !wal.checkpoint_wanted() {
                    thread::yield_now();
                }
                wal.checkpointed(RESTART_FRAMES + 10, RESTART_FRAMES);
            })
        };
        assert_eq!(wal.restart(RESTART_FRAMES + 10), Restart::Blocked(RESTART_FRAMES + 10, RESTART_FRAMES));
        writer.join().unwrap();
        assert_eq!(wal.restart(RESTART_FRAMES + 10), Restart::BackingOff);
        // Reads go through meanwhile.
        drop(wal.enter());
    }
}
