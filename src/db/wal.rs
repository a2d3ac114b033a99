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

use std::sync::atomic::{AtomicU64, Ordering};
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

/// How long the gate stays open after a restart failed for a reason
/// outside the server (a replicator's reader, another process's
/// checkpoint or writes), which may be gone a moment later.
const BACK_OFF: Duration = Duration::from_secs(1);

/// How long it stays open after one of our own reads outlasted the wait
/// (a backup, a huge report): closing it again soon would hold every
/// other read for as long each time.
const LONG_READ_BACK_OFF: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Wal {
    state: Mutex<State>,
    changed: Condvar,
    /// The round whose checkpoint the writer is to run after its next
    /// commit (0: none).
    wanted: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Reads under way.
    active: usize,
    closed: bool,
    /// Restarts tried, so a late answer is not taken for the current one.
    round: u64,
    /// The writer's answer for this round: (frames in the WAL, frames
    /// copied), or None when another checkpoint was running.
    last: Option<Option<(i64, i64)>>,
    back_off_until: Option<Instant>,
    /// Frames in the WAL when the writer last copied all of it: the next
    /// look finds fewer (it started over), as many (nothing written
    /// since), or more (another process, such as `apextrack purge`, writes
    /// between our commits).
    done_at: Option<i64>,
    /// Frames in the WAL when a try found nothing being written: no use
    /// trying again until that changes.
    idle_at: Option<i64>,
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
    /// Nothing has been written since the last try.
    Idle,
    /// The writer copied everything: its next transaction starts the WAL over.
    Done,
    /// No commit came while the gate was closed.
    NoCommit,
    /// A read under way outlasted the wait: the gate opened again at once.
    ReadsTooLong,
    /// Something still held the WAL open (frames in it, frames copied).
    Blocked(i64, i64),
    /// Another checkpoint was running when the writer tried.
    Busy,
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

    /// The round to checkpoint for, if the writer should checkpoint now,
    /// after a commit.
    pub fn checkpoint_wanted(&self) -> Option<u64> {
        match self.wanted.swap(0, Ordering::AcqRel) {
            0 => None,
            round => Some(round),
        }
    }

    /// The writer's checkpoint for `round`: (frames in the WAL, frames
    /// copied), or None when another checkpoint was running.
    pub fn checkpointed(&self, round: u64, result: Option<(i64, i64)>) {
        let mut state = self.lock();
        if state.round == round {
            state.last = Some(result);
            drop(state);
            self.changed.notify_all();
        }
    }

    /// Called with the frame count of a background passive checkpoint:
    /// when the WAL has grown to [`RESTART_FRAMES`], closes the gate,
    /// waits for the reads under way, has the writer checkpoint, and opens
    /// the gate again.
    pub fn restart(&self, frames: i64) -> Restart {
        let mut state = self.lock();
        let done_at = state.done_at.take();
        if frames < RESTART_FRAMES {
            state.idle_at = None;
            return Restart::NotNeeded;
        }
        let now = Instant::now();
        if state.back_off_until.is_some_and(|t| now < t) {
            return Restart::BackingOff;
        }
        if state.idle_at == Some(frames) {
            return Restart::Idle;
        }
        state.idle_at = None;
        match done_at {
            Some(before) if frames > before => {
                // Checkpoints in our writer would only stall our clicks.
                state.back_off_until = Some(now + BACK_OFF);
                return Restart::NotStartedOver;
            }
            Some(before) if frames == before => {
                state.idle_at = Some(frames);
                return Restart::Idle;
            }
            _ => {}
        }
        state.round += 1;
        let round = state.round;
        state.closed = true;
        state.last = None;
        let deadline = now + DRAIN_WAIT;
        while state.active > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        let outcome = if state.active > 0 {
            // A checkpoint now could not copy past that read: let the others in.
            state.back_off_until = Some(Instant::now() + LONG_READ_BACK_OFF);
            Restart::ReadsTooLong
        } else {
            self.wanted.store(round, Ordering::Release);
            let deadline = Instant::now() + WRITER_WAIT;
            while state.last.is_none() {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
                state = self.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
            }
            self.wanted.store(0, Ordering::Release);
            match state.last.take() {
                None => {
                    state.idle_at = Some(frames);
                    Restart::NoCommit
                }
                Some(Some((frames, copied))) if copied >= frames => {
                    state.done_at = Some(frames);
                    Restart::Done
                }
                Some(Some((frames, copied))) => {
                    state.back_off_until = Some(Instant::now() + BACK_OFF);
                    Restart::Blocked(frames, copied)
                }
                Some(None) => {
                    state.back_off_until = Some(Instant::now() + BACK_OFF);
                    Restart::Busy
                }
            }
        };
        state.closed = false;
        drop(state);
        self.changed.notify_all();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread::{self, JoinHandle};

    /// The writer: answers the next checkpoint asked for with `result`.
    fn writer(wal: &Arc<Wal>, result: Option<(i64, i64)>) -> JoinHandle<()> {
        let wal = Arc::clone(wal);
        thread::spawn(move || loop {
            if let Some(round) = wal.checkpoint_wanted() {
                wal.checkpointed(round, result);
                return;
            }
            thread::yield_now();
        })
    }

    #[test]
    fn a_short_wal_closes_nothing() {
        let wal = Wal::default();
        assert_eq!(wal.restart(RESTART_FRAMES - 1), Restart::NotNeeded);
        assert_eq!(wal.checkpoint_wanted(), None);
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
        assert_eq!(wal.checkpoint_wanted(), None);
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
        let round = loop {
            if let Some(round) = wal.checkpoint_wanted() {
                break round;
            }
            thread::yield_now();
        };
        thread::sleep(Duration::from_millis(50));
        let checkpointed_at = Instant::now();
        wal.checkpointed(round, Some((RESTART_FRAMES, RESTART_FRAMES)));
        assert_eq!(restarter.join().unwrap(), Restart::Done);
        assert!(late.join().unwrap() >= checkpointed_at, "a read went through a closed gate");
    }

    #[test]
    fn a_read_that_outlasts_the_wait_opens_the_gate_at_once_and_asks_no_checkpoint() {
        let wal = Wal::default();
        let _long = wal.enter();
        let started = Instant::now();
        assert_eq!(wal.restart(RESTART_FRAMES), Restart::ReadsTooLong);
        assert!(started.elapsed() < DRAIN_WAIT + Duration::from_millis(300));
        assert_eq!(wal.checkpoint_wanted(), None);
        assert!(!wal.lock().closed);
        assert_eq!(wal.restart(RESTART_FRAMES), Restart::BackingOff);
    }

    #[test]
    fn with_nothing_written_it_asks_once_and_then_waits_for_the_wal_to_change() {
        let wal = Arc::new(Wal::default());
        assert_eq!(wal.restart(RESTART_FRAMES), Restart::NoCommit);
        // A late commit answers the old round: not taken for a new one.
        let round = wal.lock().round;
        wal.checkpointed(round, Some((RESTART_FRAMES, 0)));
        assert_eq!(wal.restart(RESTART_FRAMES), Restart::Idle, "tried again with nothing written");
        let w = writer(&wal, Some((RESTART_FRAMES + 3, RESTART_FRAMES + 3)));
        assert_eq!(wal.restart(RESTART_FRAMES + 3), Restart::Done);
        w.join().unwrap();
        // Nothing committed since, so nothing started over yet: not another process.
        assert_eq!(wal.restart(RESTART_FRAMES + 3), Restart::Idle);
        assert_eq!(wal.restart(RESTART_FRAMES / 2), Restart::NotNeeded);
    }

    #[test]
    fn a_wal_that_grows_on_after_a_restart_backs_off() {
        let wal = Arc::new(Wal::default());
        let w = writer(&wal, Some((RESTART_FRAMES, RESTART_FRAMES)));
        assert_eq!(wal.restart(RESTART_FRAMES), Restart::Done);
        w.join().unwrap();
        // Started over: nothing to say.
        assert_eq!(wal.restart(RESTART_FRAMES / 2), Restart::NotNeeded);
        let w = writer(&wal, Some((RESTART_FRAMES + 5, RESTART_FRAMES + 5)));
        assert_eq!(wal.restart(RESTART_FRAMES + 5), Restart::Done);
        w.join().unwrap();
        // Not started over: someone else writes; leave the gate open.
        assert_eq!(wal.restart(RESTART_FRAMES + 900), Restart::NotStartedOver);
        assert_eq!(wal.restart(RESTART_FRAMES + 1900), Restart::BackingOff);
        assert_eq!(wal.checkpoint_wanted(), None);
    }

    #[test]
    fn a_wal_held_open_from_outside_or_a_busy_checkpoint_backs_off() {
        let wal = Arc::new(Wal::default());
        let w = writer(&wal, Some((RESTART_FRAMES + 10, RESTART_FRAMES)));
        assert_eq!(wal.restart(RESTART_FRAMES + 10), Restart::Blocked(RESTART_FRAMES + 10, RESTART_FRAMES));
        w.join().unwrap();
        assert_eq!(wal.restart(RESTART_FRAMES + 10), Restart::BackingOff);
        // Reads go through meanwhile.
        drop(wal.enter());
        let wal = Arc::new(Wal::default());
        let w = writer(&wal, None);
        assert_eq!(wal.restart(RESTART_FRAMES), Restart::Busy);
        w.join().unwrap();
        assert_eq!(wal.restart(RESTART_FRAMES + 1), Restart::BackingOff);
    }
}
