//! The open connections: where each one is (between requests, part-way
//! through a head, or in a request), how many each address holds, and the
//! ways to make room: closing idle ones, evicting stalled heads.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Between requests.
pub(super) const IDLE: u8 = 0;
/// Part of a request head has arrived, not all of it.
pub(super) const HEAD: u8 = 1;
/// The head is in: body, handler, answer.
pub(super) const BUSY: u8 = 2;
/// Just accepted, nothing read yet: its first request is on its way, so it
/// is not closed to make room as an idle one is; it is evicted like a
/// stalled head, and closed at a stop like an idle one.
pub(super) const NEW: u8 = 3;

/// Where a connection is, as its thread tells it.
pub(super) struct Phase {
    state: AtomicU8,
    /// When its current head began, in milliseconds since the server's
    /// start (for `HEAD`: the oldest stalled head is evicted first).
    since: AtomicU64,
    epoch: Instant,
}

impl Phase {
    /// A new connection ([`NEW`]), since now.
    pub(super) fn new(epoch: Instant) -> Phase {
        let since = epoch.elapsed().as_millis() as u64;
        Phase { state: AtomicU8::new(NEW), since: AtomicU64::new(since), epoch }
    }

    pub(super) fn set(&self, state: u8) {
        if state == HEAD {
            self.since.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        self.state.store(state, Ordering::SeqCst);
    }

    pub(super) fn get(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }
}

/// One open connection: its socket (the registry's handle on it keeps the
/// descriptor open as long as the entry exists) and its phase.
pub(super) struct Tracked {
    pub(super) stream: TcpStream,
    pub(super) phase: Phase,
    ip: IpAddr,
}

/// Why a new connection was not taken.
pub(super) struct TooMany;

#[derive(Default)]
struct Inner {
    open: HashMap<u64, Arc<Tracked>>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
}

#[derive(Default)]
pub(super) struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a new connection, unless its address already holds `cap`
    /// (`None`: no cap) and none of them is idle: then an idle one of that
    /// address is closed to make room, or the new one is refused.
    pub(super) fn add(
        &self,
        stream: TcpStream,
        ip: IpAddr,
        epoch: Instant,
        cap: Option<usize>,
    ) -> Result<(u64, Arc<Tracked>), TooMany> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        // One look-up of the address; a refused one already had an entry.
        let held = inner.per_ip.entry(ip).or_insert(0);
        if cap.is_some_and(|cap| *held >= cap) {
            let idle = inner.open.values().find(|t| t.ip == ip && t.phase.get() == IDLE);
            match idle {
                Some(idle) => shut(idle),
                None => return Err(TooMany),
            }
        }
        *held += 1;
        let id = inner.next_id;
        inner.next_id += 1;
        let tracked = Arc::new(Tracked { stream, phase: Phase::new(epoch), ip });
        inner.open.insert(id, Arc::clone(&tracked));
        Ok((id, tracked))
    }

    pub(super) fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(tracked) = inner.open.remove(&id) {
            if let Some(held) = inner.per_ip.get_mut(&tracked.ip) {
                *held -= 1;
                if *held == 0 {
                    inner.per_ip.remove(&tracked.ip);
                }
            }
        }
    }

    /// Ends every connection that is between requests (and, at a stop,
    /// `with_new`, those that have sent nothing yet): its thread's next
    /// read sees the end of the stream. Returns how many.
    pub(super) fn close_idle(&self, with_new: bool) -> usize {
        let inner = self.lock();
        let idle = inner.open.values().filter(|t| t.phase.get() == IDLE || with_new && t.phase.get() == NEW);
        idle.map(|t| shut(t)).count()
    }

    /// Ends the connection whose head has been arriving the longest;
    /// false if no connection is part-way through a head.
    pub(super) fn evict_stalled_head(&self) -> bool {
        let inner = self.lock();
        let oldest = inner
            .open
            .values()
            .filter(|t| matches!(t.phase.get(), HEAD | NEW))
            .min_by_key(|t| t.phase.since.load(Ordering::Relaxed));
        oldest.map(|t| shut(t)).is_some()
    }
}

fn shut(tracked: &Tracked) {
    let _ = tracked.stream.shutdown(Shutdown::Read);
}
