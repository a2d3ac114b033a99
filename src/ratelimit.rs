//! Fixed-window rate limits kept in the `rate_limits` table, so they hold
//! across threads, restarts and the CLI alike.

use crate::clock::{Micros, DAY, SECOND};
use rusqlite::{params, Connection, OptionalExtension};

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
        assert_eq!(prune(&c, t0 + 2 * DAY).unwrap(), 1);
    }
}
