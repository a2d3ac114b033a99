//! API keys: created with an email code (and an SMS code when a phone is
//! bound), listed, regenerated, deleted. A key signs requests with
//! `X-API-KEY`, `X-API-TIMESTAMP` (unix ms, within 30 s) and
//! `X-API-SIGNATURE` = hex HMAC-SHA256(secret, timestamp + METHOD +
//! path?query + body), and reaches only the routes its permissions name.
//! The signature check and its replay guard are the HTTP layer's
//! (`http::auth`); the keys and their SQL are here.

use crate::accounts::otp;
use crate::accounts::User;
use crate::base::Core;
use crate::clock::{Micros, MINUTE};
use crate::crypto;
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use rusqlite::{params, Connection, OptionalExtension, Row};

pub const PERMISSIONS: &[&str] = &["dashboard:read", "reports:read", "links:read", "links:write", "conversions:write"];
const MAX_KEYS: i64 = 50;
/// How far a request's timestamp may be from our clock, in milliseconds.
pub const WINDOW_MS: i64 = 30_000;
/// `last_used_at` is written at most this often per key, as for tokens.
const TOUCH_EVERY: Micros = MINUTE;

/// The secret of a key: derived from the instance key and the key itself,
/// so it is never stored and changes when the key is regenerated.
pub fn secret_of(app: &Core, api_key: &str) -> String {
    crypto::hex(&crypto::hmac_sha256(&app.signing_key, format!("api-key:{api_key}").as_bytes()))
}

pub struct Key {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub api_key: String,
    pub permissions: Vec<String>,
    pub created_at: Micros,
    pub last_used_at: Option<Micros>,
}

const COLUMNS: &str = "id, user_id, name, api_key, permissions, created_at, last_used_at";

fn key_from_row(r: &Row) -> rusqlite::Result<Key> {
    let perms: String = r.get(4)?;
    Ok(Key {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        api_key: r.get(3)?,
        permissions: perms.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect(),
        created_at: r.get(5)?,
        last_used_at: r.get(6)?,
    })
}

fn new_key() -> String {
    format!("ak_{}", crypto::random_alphanumeric(32))
}

fn not_found() -> Error {
    Error::Missing(Msg::new("api.user_api_key_not_found"))
}

fn refuse(key: &'static str) -> Error {
    Error::Unprocessable(Msg::new(key))
}

/// A key to create, as the form gave it.
pub struct NewKey {
    pub name: String,
    pub email_code: String,
    pub phone_code: Option<String>,
    pub permissions: Vec<String>,
}

/// Creates a key once both codes check out (the phone code only when a
/// phone is bound; then it is required, and its absence is a field error,
/// not a wrong code). Returns the key and its secret, shown this once.
pub fn create(app: &Core, user: &User, new: &NewKey) -> Result<(Key, String), Error> {
    if user.phone.is_some() && new.phone_code.as_deref().is_none_or(|c| c.trim().is_empty()) {
        return Err(FieldErrors::single(
            "phoneOtpCode",
            Msg::new("validation.required").arg("attribute", "phone otp code"),
        ));
    }
    let now = app.clock.now();
    let key = app.db.write_then_refuse(|tx| {
        // At the limit, say so before any code is used up.
        let count: i64 = tx.query_row("SELECT count(*) FROM api_keys WHERE user_id = ?1", [user.id], |r| r.get(0))?;
        if count >= MAX_KEYS {
            return Ok(Err(refuse("api.too_many_api_keys")));
        }
        // Both codes are checked before either is used up.
        if !otp::peek(app, tx, user.id, "email", &user.email, &new.email_code, now)? {
            return Ok(Err(refuse("api.email_otp_error")));
        }
        if let Some(phone) = &user.phone {
            let code = new.phone_code.as_deref().unwrap_or("");
            if !otp::peek(app, tx, user.id, "phone", phone, code, now)? {
                return Ok(Err(refuse("api.otp_verification_code_invalid")));
            }
            otp::consume(tx, user.id, "phone")?;
        }
        otp::consume(tx, user.id, "email")?;
        tx.execute(
            "INSERT INTO api_keys (user_id, name, api_key, permissions, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![user.id, new.name, new_key(), new.permissions.join(","), now],
        )?;
        Ok(find(tx, user.id, tx.last_insert_rowid(), None))
    })?;
    let secret = secret_of(app, &key.api_key);
    Ok((key, secret))
}

fn find(conn: &Connection, user_id: i64, id: i64, api_key: Option<&str>) -> Result<Key, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1 AND user_id = ?2 AND (?3 IS NULL OR api_key = ?3)"),
        params![id, user_id, api_key],
        key_from_row,
    )
    .optional()?
    .ok_or_else(not_found)
}

/// A new key pair for the user's key `id` (the old one, which must be
/// `old_key`, stops working at once) with these permissions.
pub fn regenerate(
    app: &Core,
    user_id: i64,
    id: i64,
    old_key: &str,
    permissions: &[String],
) -> Result<(Key, String), Error> {
    let now = app.clock.now();
    let key = app.db.write(|tx| {
        let key = find(tx, user_id, id, Some(old_key))?;
        tx.execute(
            "UPDATE api_keys SET api_key = ?2, permissions = ?3, updated_at = ?4 WHERE id = ?1",
            params![key.id, new_key(), permissions.join(","), now],
        )?;
        find(tx, user_id, id, None)
    })?;
    let secret = secret_of(app, &key.api_key);
    Ok((key, secret))
}

pub fn delete(app: &Core, user_id: i64, id: i64, api_key: &str) -> Result<(), Error> {
    app.db.write(|tx| {
        let key = find(tx, user_id, id, Some(api_key))?;
        tx.execute("DELETE FROM api_keys WHERE id = ?1", [key.id])?;
        Ok(())
    })
}

/// Sort orders of the list; each names its column, never text from a request.
#[derive(Debug, Clone, Copy)]
pub enum SortBy {
    Id,
    Name,
    CreatedAt,
}

/// One page of the user's keys and how many there are.
pub fn list(
    app: &Core,
    user_id: i64,
    sort_by: SortBy,
    ascending: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Key>, i64), Error> {
    let column = match sort_by {
        SortBy::Id => "id",
        SortBy::Name => "name",
        SortBy::CreatedAt => "created_at",
    };
    let direction = if ascending { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE user_id = ?1 ORDER BY {column} {direction}, id {direction} LIMIT ?2 OFFSET ?3"
    );
    app.db.read(|c| {
        let items = c
            .prepare(&sql)?
            .query_map(params![user_id, limit, offset], key_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let total: i64 = c.query_row("SELECT count(*) FROM api_keys WHERE user_id = ?1", [user_id], |r| r.get(0))?;
        Ok((items, total))
    })
}

/// The key with this public part, if any.
pub fn find_by_api_key(app: &Core, api_key: &str) -> Result<Option<Key>, Error> {
    app.db.read(|c| {
        Ok(c.query_row(&format!("SELECT {COLUMNS} FROM api_keys WHERE api_key = ?1"), [api_key], key_from_row)
            .optional()?)
    })
}

/// Records a use of `key`, at most once a minute: a busy client does not
/// turn every signed read into a write. Bookkeeping only, so a busy
/// database does not fail the request.
pub fn touch(app: &Core, key: &Key) {
    let now = app.clock.now();
    if key.last_used_at.is_some_and(|t| now - t < TOUCH_EVERY) {
        return;
    }
    let write =
        app.db.write(|tx| Ok(tx.execute("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1", params![key.id, now])?));
    if let Err(e) = write {
        app.log.line(format!("warning: could not record last_used_at of API key {}: {e}", key.id));
    }
}
