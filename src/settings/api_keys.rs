//! API keys: created with an email code (and an SMS code when a phone is
//! bound), listed, regenerated, deleted. A key signs requests with
//! `X-API-KEY`, `X-API-TIMESTAMP` (unix ms, within 30 s) and
//! `X-API-SIGNATURE` = hex HMAC-SHA256(secret, timestamp + METHOD +
//! path?query + body), and reaches only the routes its permissions name.

use super::{ok, otp};
use crate::accounts::{self, Session};
use crate::app::App;
use crate::clock::{self, Micros};
use crate::crypto;
use crate::error::{Error, FieldErrors};
use crate::http::Ctx;
use crate::i18n::Msg;
use rouille::Response;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

pub const PERMISSIONS: &[&str] = &["dashboard:read", "reports:read", "links:read", "links:write"];
const MAX_KEYS: i64 = 50;
/// How far a request's timestamp may be from our clock.
const WINDOW_MS: i64 = 30_000;

/// The secret of a key: derived from the instance key and the key itself,
/// so it is never stored and changes when the key is regenerated.
pub fn secret_of(app: &App, api_key: &str) -> String {
    crypto::hex(&crypto::hmac_sha256(&app.signing_key, format!("api-key:{api_key}").as_bytes()))
}

struct Key {
    id: i64,
    name: String,
    api_key: String,
    permissions: Vec<String>,
    created_at: Micros,
}

fn key_from_row(r: &Row) -> rusqlite::Result<Key> {
    let perms: String = r.get(3)?;
    Ok(Key {
        id: r.get(0)?,
        name: r.get(1)?,
        api_key: r.get(2)?,
        permissions: perms.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect(),
        created_at: r.get(4)?,
    })
}

fn key_json(key: &Key, secret: Option<String>) -> Value {
    let mut v = json!({
        "id": key.id,
        "apiName": key.name,
        "apiKey": key.api_key,
        "permissions": key.permissions,
        "createdAt": clock::format(key.created_at),
    });
    if let Some(secret) = secret {
        v["secretKey"] = json!(secret);
    }
    v
}

fn new_key() -> String {
    format!("ak_{}", crypto::random_alphanumeric(32))
}

fn not_found() -> Error {
    Error::Settings { status: 404, msg: Msg::new("api.user_api_key_not_found") }
}

/// `permissions`: a non-empty array of names from the fixed set.
fn read_permissions(input: &crate::http::input::Input, errors: &mut FieldErrors) -> Vec<String> {
    let bad = |errors: &mut FieldErrors| {
        let msg = Msg::new("validation.in").arg("attribute", "permissions").arg("values", PERMISSIONS.join(", "));
        errors.add("permissions", msg);
    };
    match input.0.get("permissions") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut perms: Vec<String> = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(p) if PERMISSIONS.contains(&p) => {
                        if !perms.iter().any(|x| x == p) {
                            perms.push(p.to_string());
                        }
                    }
                    _ => {
                        bad(errors);
                        return Vec::new();
                    }
                }
            }
            perms
        }
        None | Some(Value::Null) => {
            errors.add("permissions", Msg::new("validation.required").arg("attribute", "permissions"));
            Vec::new()
        }
        _ => {
            bad(errors);
            Vec::new()
        }
    }
}

/// `POST /api/user/api-key {apiName, emailOtpCode, phoneOtpCode?, permissions}`.
pub fn create(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let name = input.string("apiName", &mut errors);
    if name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        errors.add("apiName", Msg::new("validation.max").arg("attribute", "api name").arg("max", 100));
    }
    let email_code = input.string("emailOtpCode", &mut errors);
    let phone_code = input.optional_string("phoneOtpCode", &mut errors);
    let permissions = read_permissions(&input, &mut errors);
    errors.into_result()?;
    let user = &ctx.session()?.user;
    let app = ctx.app;
    let now = app.clock.now();
    let created = app.db.write(|tx| {
        // Both codes are checked before either is used up.
        if !otp::peek(app, tx, user.id, "email", &user.email, email_code.as_deref().unwrap_or(""), now)? {
            return Ok(Err(Error::Settings { status: 422, msg: Msg::new("api.email_otp_error") }));
        }
        if let Some(phone) = &user.phone {
            let code = phone_code.as_deref().unwrap_or("");
            if !otp::peek(app, tx, user.id, "phone", phone, code, now)? {
                return Ok(Err(Error::Settings { status: 422, msg: Msg::new("api.otp_verification_code_invalid") }));
            }
            otp::consume(tx, user.id, "phone")?;
        }
        otp::consume(tx, user.id, "email")?;
        let count: i64 = tx.query_row("SELECT count(*) FROM api_keys WHERE user_id = ?1", [user.id], |r| r.get(0))?;
        if count >= MAX_KEYS {
            return Ok(Err(Error::Settings { status: 422, msg: Msg::new("api.too_many_api_keys") }));
        }
        let api_key = new_key();
        tx.execute(
            "INSERT INTO api_keys (user_id, name, api_key, permissions, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![user.id, name, api_key, permissions.join(","), now],
        )?;
        Ok(Ok(find(tx, user.id, tx.last_insert_rowid(), None)?))
    })??;
    let secret = secret_of(app, &created.api_key);
    Ok(ok(ctx, "api.generate_key_successful", key_json(&created, Some(secret))))
}

fn find(conn: &Connection, user_id: i64, id: i64, api_key: Option<&str>) -> Result<Key, Error> {
    conn.query_row(
        "SELECT id, name, api_key, permissions, created_at, last_used_at FROM api_keys
         WHERE id = ?1 AND user_id = ?2 AND (?3 IS NULL OR api_key = ?3)",
        params![id, user_id, api_key],
        key_from_row,
    )
    .optional()?
    .ok_or_else(not_found)
}

/// The `apiKeyId` + `apiKey` pair naming one of the user's keys.
fn key_ref(input: &crate::http::input::Input, errors: &mut FieldErrors) -> (i64, String) {
    let id = match input.0.get("apiKeyId") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        None | Some(Value::Null) => {
            errors.add("apiKeyId", Msg::new("validation.required").arg("attribute", "api key id"));
            None
        }
        _ => None,
    };
    if id.is_none() && !errors.has("apiKeyId") {
        errors.add("apiKeyId", Msg::new("validation.integer").arg("attribute", "api key id"));
    }
    let key = input.string("apiKey", errors).unwrap_or_default();
    (id.unwrap_or(0), key)
}

/// `PUT /api/user/api-key {apiKeyId, apiKey, permissions}`: a new key pair
/// (the old one stops working at once) with these permissions.
pub fn regenerate(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let (id, old_key) = key_ref(&input, &mut errors);
    let permissions = read_permissions(&input, &mut errors);
    errors.into_result()?;
    let user_id = ctx.session()?.user.id;
    let now = ctx.app.clock.now();
    let key = ctx.app.db.write(|tx| {
        let key = find(tx, user_id, id, Some(&old_key))?;
        tx.execute(
            "UPDATE api_keys SET api_key = ?2, permissions = ?3, updated_at = ?4 WHERE id = ?1",
            params![key.id, new_key(), permissions.join(","), now],
        )?;
        find(tx, user_id, id, None)
    })?;
    let secret = secret_of(ctx.app, &key.api_key);
    Ok(ok(ctx, "api.edit_api_key_successful", key_json(&key, Some(secret))))
}

/// `DELETE /api/user/api-key {apiKeyId, apiKey}`.
pub fn delete(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let (id, key) = key_ref(&input, &mut errors);
    errors.into_result()?;
    let user_id = ctx.session()?.user.id;
    ctx.app.db.write(|tx| {
        let key = find(tx, user_id, id, Some(&key))?;
        tx.execute("DELETE FROM api_keys WHERE id = ?1", [key.id])?;
        Ok(())
    })?;
    Ok(ok(ctx, "api.delete_api_key_successful", json!({"id": id})))
}

/// `GET /api/user/api-key?limit&offset&sortBy&sort`, each checked against
/// a whitelist (never pasted into SQL as sent).
pub fn list(ctx: &Ctx) -> Result<Response, Error> {
    let mut errors = FieldErrors::default();
    let param = |name: &str| ctx.req.get_param(name);
    let limit = match param("limit").map(|v| v.trim().parse::<i64>()) {
        None => 20,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            errors.add("limit", Msg::new("validation.between").arg("attribute", "limit").arg("min", 1).arg("max", 100));
            20
        }
    };
    let offset = match param("offset").map(|v| v.trim().parse::<i64>()) {
        None => 0,
        Some(Ok(n)) if n >= 0 => n,
        Some(_) => {
            errors.add("offset", Msg::new("validation.integer").arg("attribute", "offset"));
            0
        }
    };
    let column = match param("sortBy").as_deref() {
        None | Some("id") => "id",
        Some("apiName") => "name",
        Some("createdAt") => "created_at",
        Some(_) => {
            errors.add(
                "sortBy",
                Msg::new("validation.in").arg("attribute", "sort by").arg("values", "id, apiName, createdAt"),
            );
            "id"
        }
    };
    let direction = match param("sort").as_deref() {
        None | Some("desc") => "DESC",
        Some("asc") => "ASC",
        Some(_) => {
            errors.add("sort", Msg::new("validation.in").arg("attribute", "sort").arg("values", "asc, desc"));
            "DESC"
        }
    };
    errors.into_result()?;
    let user_id = ctx.session()?.user.id;
    // `column` and `direction` come from the fixed lists above only.
    let sql = format!(
        "SELECT id, name, api_key, permissions, created_at, last_used_at FROM api_keys WHERE user_id = ?1
         ORDER BY {column} {direction}, id {direction} LIMIT ?2 OFFSET ?3"
    );
    let (items, total) = ctx.app.db.read(|c| {
        let items: Vec<Value> = c
            .prepare(&sql)?
            .query_map(params![user_id, limit, offset], key_from_row)?
            .map(|k| k.map(|k| key_json(&k, None)))
            .collect::<rusqlite::Result<_>>()?;
        let total: i64 = c.query_row("SELECT count(*) FROM api_keys WHERE user_id = ?1", [user_id], |r| r.get(0))?;
        Ok((items, total))
    })?;
    Ok(ok(
        ctx,
        "api.list_api_key_successful",
        json!({"items": items, "total": total, "limit": limit, "offset": offset}),
    ))
}

/// Signatures seen within the time window: a signed request is accepted once.
#[derive(Default)]
pub struct SeenSignatures(Mutex<HashMap<String, i64>>);

impl SeenSignatures {
    /// Records `signature`; false if it was already used.
    fn first_use(&self, signature: &str, now_ms: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, at| now_ms - *at <= 2 * WINDOW_MS);
        }
        match seen.get(signature) {
            Some(at) if now_ms - at <= 2 * WINDOW_MS => false,
            _ => {
                seen.insert(signature.to_string(), now_ms);
                true
            }
        }
    }
}

/// Authenticates a signed request and checks `permission`. Bad key,
/// signature, stale timestamp or a replay → 401; a key without the
/// permission → 403.
pub fn authenticate(ctx: &Ctx, permission: &str) -> Result<Session, Error> {
    let app = ctx.app;
    let header = |name: &str| ctx.req.header(name).map(str::trim).filter(|v| !v.is_empty());
    let (Some(api_key), Some(timestamp), Some(signature)) =
        (header("X-API-KEY"), header("X-API-TIMESTAMP"), header("X-API-SIGNATURE"))
    else {
        return Err(Error::Unauthenticated);
    };
    let ts: i64 = timestamp.parse().map_err(|_| Error::Unauthenticated)?;
    let now_ms = app.clock.now() / 1000;
    if now_ms.abs_diff(ts) > WINDOW_MS as u64 {
        return Err(Error::Unauthenticated);
    }
    let found: Option<(i64, i64, String)> = app.db.read(|c| {
        Ok(c.query_row("SELECT id, user_id, permissions FROM api_keys WHERE api_key = ?1", [api_key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
    })?;
    let Some((key_id, user_id, permissions)) = found else { return Err(Error::Unauthenticated) };
    let mut message = format!("{timestamp}{}{}", ctx.req.method(), ctx.req.raw_url()).into_bytes();
    message.extend_from_slice(ctx.body()?);
    let expected = crypto::hex(&crypto::hmac_sha256(secret_of(app, api_key).as_bytes(), &message));
    if !crypto::ct_eq(expected.as_bytes(), signature.to_ascii_lowercase().as_bytes()) {
        return Err(Error::Unauthenticated);
    }
    if !app.seen_signatures.first_use(&expected, now_ms) {
        return Err(Error::Unauthenticated);
    }
    let user = accounts::find_by_id(app, user_id).map_err(|_| Error::Unauthenticated)?;
    if user.account_status == "suspended" {
        return Err(Error::Forbidden(Msg::new("auth.suspended")));
    }
    accounts::require_verified(&user)?;
    if !permissions.split(',').any(|p| p == permission) {
        return Err(Error::Forbidden(Msg::new("api.permission_denied").arg("permission", permission)));
    }
    let now = app.clock.now();
    let _ =
        app.db.write(|tx| Ok(tx.execute("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1", params![key_id, now])?));
    Ok(Session { user, token_id: 0 })
}
