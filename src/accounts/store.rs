//! SQL for the `users` and `personal_access_tokens` tables.

use crate::clock::Micros;
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub password_hash: String,
    pub email_verified_at: Option<Micros>,
    pub account_status: String,
    pub language: String,
    pub currency: String,
    pub phone: Option<String>,
    pub two_factor_enabled: bool,
    pub created_at: Micros,
    pub postback_secret_version: i64,
    pub postback_allowlist: String,
}

const USER_COLUMNS: &str = "id, name, email, password_hash, email_verified_at, account_status, \
                            language, currency, phone, two_factor_enabled, created_at, \
                            postback_secret_version, postback_allowlist";

fn user_from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        email: r.get(2)?,
        password_hash: r.get(3)?,
        email_verified_at: r.get(4)?,
        account_status: r.get(5)?,
        language: r.get(6)?,
        currency: r.get(7)?,
        phone: r.get(8)?,
        two_factor_enabled: r.get(9)?,
        created_at: r.get(10)?,
        postback_secret_version: r.get(11)?,
        postback_allowlist: r.get(12)?,
    })
}

pub struct NewUser<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub language: &'a str,
    pub verified_at: Option<Micros>,
}

/// Inserts a user; a taken email fails with a UNIQUE constraint error.
pub fn insert_user(conn: &Connection, u: &NewUser, now: Micros) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO users (name, email, password_hash, email_verified_at, language, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![u.name, u.email, u.password_hash, u.verified_at, u.language, now])?;
    Ok(conn.last_insert_rowid())
}

pub fn find_user(conn: &Connection, id: i64) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], user_from_row)
        .optional()
}

/// Case-insensitive, as the column's collation is.
pub fn find_user_by_email(conn: &Connection, email: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"))?
        .query_row([email], user_from_row)
        .optional()
}

pub fn email_taken(conn: &Connection, email: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE email = ?1)")?.query_row([email], |r| r.get(0))
}

pub fn list_users(conn: &Connection) -> rusqlite::Result<Vec<User>> {
    let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?;
    let rows = stmt.query_map([], user_from_row)?;
    rows.collect()
}

/// The `updated` helpers return whether a row matched.
pub fn set_password_hash(conn: &Connection, id: i64, hash: &str, now: Micros) -> rusqlite::Result<bool> {
    let n =
        conn.execute("UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1", params![id, hash, now])?;
    Ok(n == 1)
}

pub fn set_status(conn: &Connection, id: i64, status: &str, now: Micros) -> rusqlite::Result<bool> {
    let n =
        conn.execute("UPDATE users SET account_status = ?2, updated_at = ?3 WHERE id = ?1", params![id, status, now])?;
    Ok(n == 1)
}

/// Marks the email verified; keeps the first verification time.
pub fn mark_verified(conn: &Connection, id: i64, now: Micros) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, ?2), updated_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(n == 1)
}

/// Deletes the user; their tokens go with them (ON DELETE CASCADE).
pub fn delete_user(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM users WHERE id = ?1", [id])? == 1)
}

#[derive(Debug, Clone)]
pub struct Token {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub token_hash: String,
    pub last_used_at: Option<Micros>,
    pub expires_at: Option<Micros>,
    pub created_at: Micros,
}

const TOKEN_COLUMNS: &str = "id, user_id, name, token_hash, last_used_at, expires_at, created_at";

fn token_from_row(r: &Row) -> rusqlite::Result<Token> {
    Ok(Token {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        token_hash: r.get(3)?,
        last_used_at: r.get(4)?,
        expires_at: r.get(5)?,
        created_at: r.get(6)?,
    })
}

pub fn insert_token(
    conn: &Connection,
    user_id: i64,
    name: &str,
    token_hash: &str,
    expires_at: Option<Micros>,
    now: Micros,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO personal_access_tokens (user_id, name, token_hash, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![user_id, name, token_hash, expires_at, now])?;
    Ok(conn.last_insert_rowid())
}

/// Tokens, newest first; all users' when `user_id` is None.
pub fn list_tokens(conn: &Connection, user_id: Option<i64>) -> rusqlite::Result<Vec<Token>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {TOKEN_COLUMNS} FROM personal_access_tokens
         WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([user_id], token_from_row)?;
    rows.collect()
}

/// What a request's token says: its owner and its own state, in one query.
pub struct TokenState {
    pub token_hash: String,
    pub last_used_at: Option<Micros>,
    pub expires_at: Option<Micros>,
}

pub fn find_session(conn: &Connection, token_id: i64) -> rusqlite::Result<Option<(User, TokenState)>> {
    let user_columns: Vec<String> = USER_COLUMNS.split(',').map(|c| format!("u.{}", c.trim())).collect();
    let sql = format!(
        "SELECT {}, t.token_hash, t.last_used_at, t.expires_at
         FROM personal_access_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?1",
        user_columns.join(", ")
    );
    conn.prepare_cached(&sql)?
        .query_row([token_id], |r| {
            Ok((
                user_from_row(r)?,
                TokenState { token_hash: r.get(13)?, last_used_at: r.get(14)?, expires_at: r.get(15)? },
            ))
        })
        .optional()
}

pub fn touch_token(conn: &Connection, id: i64, now: Micros) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE personal_access_tokens SET last_used_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

pub fn delete_token(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("DELETE FROM personal_access_tokens WHERE id = ?1")?.execute([id])? == 1)
}

pub fn delete_tokens_of_user(conn: &Connection, user_id: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM personal_access_tokens WHERE user_id = ?1", [user_id])
}

pub fn prune_expired_tokens(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM personal_access_tokens WHERE id IN
             (SELECT id FROM personal_access_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
        params![now, limit],
    )
}

/// The TOTP secret's version and the last accepted time step.
pub fn twofa_state(conn: &Connection, user_id: i64) -> rusqlite::Result<(i64, u64)> {
    conn.query_row("SELECT twofa_secret_version, twofa_last_step FROM users WHERE id = ?1", [user_id], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
    })
}

pub fn set_twofa_step(conn: &Connection, user_id: i64, step: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET twofa_last_step = ?2 WHERE id = ?1", params![user_id, step])?;
    Ok(())
}

pub fn enable_twofa(conn: &Connection, user_id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET two_factor_enabled = 1 WHERE id = ?1", [user_id])?;
    Ok(())
}

/// Turns 2FA off and bumps the secret's version, so the next bind shows a new one.
pub fn disable_twofa(conn: &Connection, user_id: i64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE users SET two_factor_enabled = 0, twofa_secret_version = twofa_secret_version + 1, twofa_last_step = 0
         WHERE id = ?1",
        [user_id],
    )?;
    Ok(n == 1)
}

pub fn set_language(conn: &Connection, user_id: i64, language: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET language = ?2 WHERE id = ?1", params![user_id, language])?;
    Ok(())
}

pub fn set_currency(conn: &Connection, user_id: i64, currency: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET currency = ?2 WHERE id = ?1", params![user_id, currency])?;
    Ok(())
}

pub fn set_phone(conn: &Connection, user_id: i64, phone: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET phone = ?2 WHERE id = ?1", params![user_id, phone])?;
    Ok(())
}

/// Whether another user has bound `phone`.
pub fn phone_taken_by_other(conn: &Connection, phone: &str, user_id: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM users WHERE phone = ?1 AND id != ?2", params![phone, user_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// A new postback secret version (the old postback URL stops working); returns it.
pub fn bump_postback_secret(conn: &Connection, user_id: i64) -> rusqlite::Result<i64> {
    conn.query_row(
        "UPDATE users SET postback_secret_version = postback_secret_version + 1 WHERE id = ?1
         RETURNING postback_secret_version",
        [user_id],
        |r| r.get(0),
    )
}

pub fn set_postback_allowlist(conn: &Connection, user_id: i64, allowlist: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE users SET postback_allowlist = ?2 WHERE id = ?1", params![user_id, allowlist])?;
    Ok(())
}

/// The account's id by email (case-insensitively).
pub fn id_by_email(conn: &Connection, email: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM users WHERE email = ?1", [email], |r| r.get(0)).optional()
}

/// A payment lifts `unpaid`; a suspension by an admin stays: only an
/// admin lifts that.
pub fn activate_after_payment(conn: &Connection, user_id: i64, now: Micros) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE users SET account_status = 'active', updated_at = ?2 WHERE id = ?1 AND account_status = 'unpaid'",
        params![user_id, now],
    )?;
    Ok(n == 1)
}

/// The version of the user's postback secret, if the user exists.
pub fn postback_secret_version(conn: &Connection, user_id: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT postback_secret_version FROM users WHERE id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()
}
