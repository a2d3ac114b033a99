//! Rate limits kept in the database, so they hold across threads,
//! restarts and the CLI alike: fixed windows (`rate_limits`, one row per
//! key) for frequent events such as logins, and sliding windows
//! (`rate_events`, one row per event) where a window's edge must not let
//! twice the limit through, such as registrations and verification mails.

use crate::clock::{Micros, DAY, SECOND};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Micros,
}

/// Seconds until the window of `key` reopens, if it is full.
pub fn blocked(conn: &Connection, key: &str, limit: Limit, now: Micros) -> rusqlite::Result<Option<u64>> {
    let row: Option<(u32, Micros)> = conn
        .prepare_cached("SELECT hits, window_start FROM rate_limits WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((hits, start)) if hits >= limit.max && start + limit.window > now => {
            Some(((start + limit.window - now + SECOND - 1) / SECOND).max(1) as u64)
        }
        _ => None,
    })
}

/// Counts one hit under `key`, starting a new window if the last one ended.
pub fn hit(conn: &Connection, key: &str, limit: Limit, now: Micros) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO rate_limits (key, hits, window_start) VALUES (?1, 1, ?2)
         ON CONFLICT (key) DO UPDATE SET
             hits = CASE WHEN window_start + ?3 > ?2 THEN hits + 1 ELSE 1 END,
             window_start = CASE WHEN window_start + ?3 > ?2 THEN window_start ELSE ?2 END",
    )?
    .execute(params![key, now, limit.window])?;
    Ok(())
}

/// Forgets `key`, e.g. after a successful login.
pub fn clear(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM rate_limits WHERE key = ?1")?.execute([key])?;
    Ok(())
}

/// Deletes up to `limit` windows that ended over a day ago (no limit here
/// is longer); run by the maintenance thread.
pub fn prune(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE window_start < ?1 LIMIT ?2)",
        params![now - DAY, limit],
    )
}

/// Seconds until `key` may count another event, if `limit.max` of them
/// happened in the `limit.window` before `now` (a sliding window: room
/// comes back as the oldest of them leaves it).
pub fn sliding_blocked(conn: &Connection, key: &str, limit: Limit, now: Micros) -> rusqlite::Result<Option<u64>> {
    let nth_newest: Option<Micros> = conn
        .prepare_cached("SELECT at FROM rate_events WHERE key = ?1 AND at > ?2 ORDER BY at DESC LIMIT 1 OFFSET ?3")?
        .query_row(params![key, now - limit.window, i64::from(limit.max.max(1)) - 1], |r| r.get(0))
        .optional()?;
    Ok(nth_newest.map(|at| ((at + limit.window - now + SECOND - 1) / SECOND).max(1) as u64))
}

/// Counts one event under `key` for [`sliding_blocked`].
pub fn sliding_hit(conn: &Connection, key: &str, now: Micros) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO rate_events (key, at) VALUES (?1, ?2)")?.execute(params![key, now])?;
    Ok(())
}

/// Deletes up to `limit` events older than a day (no sliding window is
/// longer); run by the maintenance thread.
pub fn prune_events(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM rate_events WHERE rowid IN (SELECT rowid FROM rate_events WHERE at < ?1 LIMIT ?2)",
        params![now - DAY, limit],
    )
}

/// Values seen within the last `window` milliseconds, in memory: a signed
/// API request is accepted once. Entries leave in the order they came, a
/// few at each call, so a call costs O(1) amortized however many are held.
#[derive(Default)]
pub struct SeenOnce(Mutex<Seen>);

#[derive(Default)]
struct Seen {
    at: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl SeenOnce {
    /// Records `value` at `now_ms`; false if it was seen within `window_ms`.
    pub fn first_use(&self, value: &str, now_ms: i64, window_ms: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((at, _)) = seen.order.front() {
            if now_ms - at <= window_ms {
                break;
            }
            if let Some((at, old)) = seen.order.pop_front() {
                if seen.at.get(&old) == Some(&at) {
                    seen.at.remove(&old);
                }
            }
        }
        match seen.at.get(value) {
            Some(at) if now_ms - at <= window_ms => false,
            _ => {
                seen.at.insert(value.to_string(), now_ms);
                seen.order.push_back((now_ms, value.to_string()));
                true
            }
        }
    }

    /// How many values are held.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MINUTE;

    fn conn() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::db::migrate::upgrade(&mut c, crate::db::migrate::SCHEMA).unwrap();
        c
    }

    #[test]
    fn blocks_after_max_then_reopens() {
        let c = conn();
        let limit = Limit { max: 3, window: MINUTE };
        let t0 = 1_000 * SECOND;
        for _ in 0..3 {
            assert_eq!(blocked(&c, "k", limit, t0).unwrap(), None);
            hit(&c, "k", limit, t0).unwrap();
        }
        assert_eq!(blocked(&c, "k", limit, t0 + 20 * SECOND).unwrap(), Some(40));
        assert_eq!(blocked(&c, "other", limit, t0).unwrap(), None);
        assert_eq!(blocked(&c, "k", limit, t0 + MINUTE).unwrap(), None);
        // A hit after the window starts a new one.
        hit(&c, "k", limit, t0 + MINUTE).unwrap();
        assert_eq!(blocked(&c, "k", limit, t0 + MINUTE).unwrap(), None);
        clear(&c, "k").unwrap();
        hit(&c, "k", limit, t0).unwrap();
        assert_eq!(prune(&c, t0 + 2 * DAY, 5000).unwrap(), 1);
    }

    #[test]
    fn a_value_is_accepted_once_per_window_and_old_ones_leave() {
        let seen = SeenOnce::default();
        assert!(seen.first_use("a", 0, 60_000));
        assert!(!seen.first_use("a", 59_000, 60_000));
        for i in 0..1000 {
            assert!(seen.first_use(&format!("v{i}"), 1_000 + i, 60_000));
        }
        assert_eq!(seen.len(), 1001);
        // A minute later, everything older has left, a few at a time.
        assert!(seen.first_use("a", 70_000, 60_000));
        assert!(seen.first_use("late", 62_000 + 1000, 60_000));
        assert!(seen.len() < 1001, "{}", seen.len());
        assert!(seen.first_use("z", 200_000, 60_000));
        assert_eq!(seen.len(), 1);
    }
}
