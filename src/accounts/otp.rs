//! One-time codes sent by mail or SMS: the email verification code, the
//! phone binding code and the email code for sensitive actions share this
//! one store and check. One live code per user and purpose, stored as an
//! HMAC (never in clear), valid `security.code_ttl_minutes`, dead after
//! five wrong tries, consumed when used.

use crate::base::Core;
use crate::clock::{Micros, MINUTE};
use crate::crypto;
use rusqlite::{params, Connection, OptionalExtension};

pub const MAX_TRIES: u32 = 5;

fn hash(app: &Core, user_id: i64, purpose: &str, target: &str, code: &str) -> String {
    let message = format!("otp:{purpose}:{user_id}:{target}:{}", code.trim());
    crypto::hex(&crypto::hmac_sha256(&app.signing_key, message.as_bytes()))
}

/// A new code for `purpose` sent to `target`, replacing any earlier one.
pub fn issue(
    app: &Core,
    tx: &Connection,
    user_id: i64,
    purpose: &str,
    target: &str,
    now: Micros,
) -> rusqlite::Result<String> {
    let code = format!("{:06}", rand::random_range(0..1_000_000u32));
    let expires = now + i64::from(app.config.security.code_ttl_minutes) * MINUTE;
    tx.execute(
        "INSERT INTO otps (user_id, purpose, target, code_hash, attempts, expires_at) VALUES (?1, ?2, ?3, ?4, 0, ?5)
         ON CONFLICT (user_id, purpose) DO UPDATE SET target = excluded.target, code_hash = excluded.code_hash,
             attempts = 0, expires_at = excluded.expires_at",
        params![user_id, purpose, target, hash(app, user_id, purpose, target, &code), expires],
    )?;
    Ok(code)
}

/// Checks and, when right, consumes the code. A wrong one counts a try.
/// The caller must commit even when this returns false.
pub fn check(
    app: &Core,
    tx: &Connection,
    user_id: i64,
    purpose: &str,
    target: &str,
    code: &str,
    now: Micros,
) -> rusqlite::Result<bool> {
    let right = peek(app, tx, user_id, purpose, target, code, now)?;
    if right {
        consume(tx, user_id, purpose)?;
    }
    Ok(right)
}

/// As [`check`], but a right code stays usable until [`consume`]d.
pub fn peek(
    app: &Core,
    tx: &Connection,
    user_id: i64,
    purpose: &str,
    target: &str,
    code: &str,
    now: Micros,
) -> rusqlite::Result<bool> {
    let row: Option<(String, String, u32, i64)> = tx
        .query_row(
            "SELECT target, code_hash, attempts, expires_at FROM otps WHERE user_id = ?1 AND purpose = ?2",
            params![user_id, purpose],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((stored_target, stored_hash, attempts, expires)) = row else { return Ok(false) };
    if expires <= now || attempts >= MAX_TRIES {
        return Ok(false);
    }
    let given = hash(app, user_id, purpose, target, code);
    if stored_target != target || !crypto::ct_eq(given.as_bytes(), stored_hash.as_bytes()) {
        tx.execute(
            "UPDATE otps SET attempts = attempts + 1 WHERE user_id = ?1 AND purpose = ?2",
            params![user_id, purpose],
        )?;
        return Ok(false);
    }
    Ok(true)
}

/// Whether a live code for `purpose` was sent to `target`.
pub fn pending_for(tx: &Connection, user_id: i64, purpose: &str, target: &str, now: Micros) -> rusqlite::Result<bool> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM otps WHERE user_id = ?1 AND purpose = ?2 AND target = ?3 AND expires_at > ?4 AND attempts < ?5",
            params![user_id, purpose, target, now, MAX_TRIES],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Consumes a code that `check` with `consume = false` accepted.
pub fn consume(tx: &Connection, user_id: i64, purpose: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM otps WHERE user_id = ?1 AND purpose = ?2", params![user_id, purpose])?;
    Ok(())
}

pub fn prune(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM otps WHERE (user_id, purpose) IN (SELECT user_id, purpose FROM otps WHERE expires_at <= ?1 LIMIT ?2)",
        params![now, limit],
    )
}
