//! Fixed-window rate limits kept in the `rate_limits` table, so they hold
//! across threads, restarts and the CLI alike.

use crate::clock::{Micros, DAY, SECOND};
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Micros,
}

/// Counts one attempt under `key`, unless the window is already full, in
/// which case nothing is counted and the seconds until it reopens come back
/// as `Err`. Call it inside the write transaction of the attempt: the check
/// and the count are then one atomic step, so a burst of parallel attempts
/// cannot slip past the limit.
pub fn attempt(conn: &Connection, key: &str, limit: Limit, now: Micros) -> rusqlite::Result<Result<(), u64>> {
    let row: Option<(u32, Micros)> = conn
        .prepare_cached("SELECT hits, window_start FROM rate_limits WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((hits, start)) if start + limit.window > now => {
            if hits >= limit.max {
                let left = start + limit.window - now;
                return Ok(Err(((left + SECOND - 1) / SECOND).max(1) as u64));
            }
            conn.prepare_cached("UPDATE rate_limits SET hits = hits + 1 WHERE key = ?1")?.execute([key])?;
        }
        _ => {
            conn.prepare_cached(
                "INSERT INTO rate_limits (key, hits, window_start) VALUES (?1, 1, ?2)
                 ON CONFLICT (key) DO UPDATE SET hits = 1, window_start = excluded.window_start",
            )?
            .execute(params![key, now])?;
        }
    }
    Ok(Ok(()))
}

/// Forgets `key`, e.g. after a successful login.
pub fn clear(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM rate_limits WHERE key = ?1")?.execute([key])?;
    Ok(())
}

/// Deletes windows that ended more than a day ago (no limit here is longer).
pub fn prune(conn: &Connection, now: Micros) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM rate_limits WHERE window_start < ?1", [now - DAY])
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
            assert_eq!(attempt(&c, "k", limit, t0).unwrap(), Ok(()));
        }
        assert_eq!(attempt(&c, "k", limit, t0 + 20 * SECOND).unwrap(), Err(40));
        assert_eq!(attempt(&c, "other", limit, t0).unwrap(), Ok(()));
        assert_eq!(attempt(&c, "k", limit, t0 + MINUTE).unwrap(), Ok(()));
        clear(&c, "k").unwrap();
        assert_eq!(prune(&c, t0 + 2 * DAY).unwrap(), 1);
    }
}
