//! Clicks of the last 30 seconds per user, for the dashboard's live
//! counter: per-second counts in memory, bumped as batches commit. Counting
//! the rows instead cost a scan of every click of those 30 seconds, a
//! million of them under a flood, on every dashboard refresh.

use crate::clock::{Micros, SECOND};
use std::collections::HashMap;
use std::sync::Mutex;

/// Seconds counted (a few more than shown, so the edge is exact).
const SLOTS: usize = 32;
const WINDOW: i64 = 30;

#[derive(Default)]
pub struct Live {
    /// User → (second, clicks in it) per slot of `second % SLOTS`.
    users: Mutex<HashMap<i64, [(i64, u32); SLOTS]>>,
}

impl Live {
    /// Counts `n` non-bot clicks of `user` at `at`.
    pub fn add(&self, user: i64, n: u32, at: Micros) {
        let second = at / SECOND;
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let slots = users.entry(user).or_insert([(0, 0); SLOTS]);
        let slot = &mut slots[second.rem_euclid(SLOTS as i64) as usize];
        if slot.0 == second {
            slot.1 += n;
        } else {
            *slot = (second, n);
        }
    }

    /// The user's clicks in the 30 seconds up to `now`.
    pub fn count(&self, user: i64, now: Micros) -> u64 {
        let second = now / SECOND;
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.get(&user).map_or(0, |slots| {
            slots.iter().filter(|(s, _)| *s > second - WINDOW && *s <= second).map(|(_, n)| u64::from(*n)).sum()
        })
    }

    /// Forgets users without a click in the window (the upkeep thread).
    pub fn forget_idle(&self, now: Micros) {
        let second = now / SECOND;
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, slots| slots.iter().any(|(s, _)| *s > second - WINDOW));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_thirty_seconds_are_counted() {
        let live = Live::default();
        let t0 = 1_800_000_000 * SECOND;
        live.add(1, 2, t0);
        live.add(1, 1, t0 + 10 * SECOND);
        live.add(2, 5, t0);
        assert_eq!(live.count(1, t0 + 10 * SECOND), 3);
        assert_eq!(live.count(1, t0 + 29 * SECOND), 3);
        assert_eq!(live.count(1, t0 + 30 * SECOND), 1, "the first second left the window");
        assert_eq!(live.count(1, t0 + 40 * SECOND), 0);
        // A slot reused SLOTS seconds later starts over (t0's 2 are gone, t0 + 10 s's 1 is not).
        live.add(1, 7, t0 + SLOTS as i64 * SECOND);
        assert_eq!(live.count(1, t0 + SLOTS as i64 * SECOND), 8);
        live.forget_idle(t0 + 100 * SECOND);
        assert_eq!(live.count(2, t0), 0);
    }
}
