//! SQL for `email_codes`.

use crate::clock::Micros;
use rusqlite::{params, Connection, OptionalExtension};

pub struct Code {
    pub code_hash: String,
    pub attempts: u32,
    pub expires_at: Micros,
}

/// Replaces the user's code: there is one live code per user.
pub fn put_code(
    conn: &Connection,
    user_id: i64,
    code_hash: &str,
    expires_at: Micros,
    now: Micros,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO email_codes (user_id, code_hash, attempts, expires_at, created_at) VALUES (?1, ?2, 0, ?3, ?4)
         ON CONFLICT (user_id) DO UPDATE SET code_hash = excluded.code_hash, attempts = 0,
             expires_at = excluded.expires_at, created_at = excluded.created_at",
    )?
    .execute(params![user_id, code_hash, expires_at, now])?;
    Ok(())
}

pub fn find_code(conn: &Connection, user_id: i64) -> rusqlite::Result<Option<Code>> {
    conn.prepare_cached("SELECT code_hash, attempts, expires_at FROM email_codes WHERE user_id = ?1")?
        .query_row([user_id], |r| Ok(Code { code_hash: r.get(0)?, attempts: r.get(1)?, expires_at: r.get(2)? }))
        .optional()
}

pub fn count_attempt(conn: &Connection, user_id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE email_codes SET attempts = attempts + 1 WHERE user_id = ?1")?.execute([user_id])?;
    Ok(())
}

pub fn delete_code(conn: &Connection, user_id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM email_codes WHERE user_id = ?1")?.execute([user_id])?;
    Ok(())
}

pub fn prune(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM email_codes WHERE rowid IN (SELECT rowid FROM email_codes WHERE expires_at <= ?1 LIMIT ?2)",
        rusqlite::params![now, limit],
    )
}
