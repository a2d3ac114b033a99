//! Two-factor authentication with an authenticator app (RFC 6238 TOTP:
//! SHA-1, 6 digits, 30 s, ±1 step), plus single-use recovery codes.
//!
//! The secret is derived from the instance key, the user id and a version
//! (unbinding bumps it, so a new secret is shown), never stored; the last
//! accepted time step is, so a code works once.

use super::ok;
use crate::accounts::{self, User};
use crate::app::App;
use crate::clock::{Micros, MINUTE, SECOND};
use crate::crypto;
use crate::error::{Error, FieldErrors};
use crate::http::Ctx;
use crate::i18n::Msg;
use crate::ratelimit::{self, Limit};
use rouille::Response;
use rusqlite::{params, Connection};
use serde_json::json;

const RECOVERY_CODES: usize = 8;
/// Wrong codes per user before a pause: guessing 6 digits stays hopeless.
const WRONG_CODES: Limit = Limit { max: 5, window: 5 * MINUTE };

pub fn secret(app: &App, user_id: i64, version: i64) -> [u8; 20] {
    let mac = crypto::hmac_sha256(&app.signing_key, format!("totp:{user_id}:{version}").as_bytes());
    mac[..20].try_into().unwrap_or([0; 20])
}

fn step(now: Micros) -> u64 {
    (now / SECOND / 30).max(0) as u64
}

/// The `otpauth://` URL an authenticator app scans.
pub fn otpauth_url(app: &App, user: &User, version: i64) -> String {
    let host =
        app.config.app_url().split("://").nth(1).unwrap_or("apextrack").split(['/', ':']).next().unwrap_or("apextrack");
    let label = crate::http::input::percent_encode(&format!("apextrack ({host}):{}", user.email));
    let secret = crypto::base32(&secret(app, user.id, version));
    format!("otpauth://totp/{label}?secret={secret}&issuer=apextrack&algorithm=SHA1&digits=6&period=30")
}

pub fn qr_svg(data: &str) -> String {
    match qrcode::QrCode::new(data.as_bytes()) {
        Ok(code) => code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build(),
        Err(_) => String::new(),
    }
}

fn version_and_step(conn: &Connection, user_id: i64) -> rusqlite::Result<(i64, u64)> {
    conn.query_row("SELECT twofa_secret_version, twofa_last_step FROM users WHERE id = ?1", [user_id], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
    })
}

/// Checks a TOTP code (once per time step) or, when `allow_recovery`, an
/// unused recovery code, inside the caller's write transaction. Wrong codes
/// are limited per user; the caller must commit even when this is false.
pub fn check_code(app: &App, tx: &Connection, user_id: i64, code: &str, allow_recovery: bool) -> Result<bool, Error> {
    let now = app.clock.now();
    let key = format!("totp:{user_id}");
    if let Some(retry_after) = ratelimit::blocked(tx, &key, WRONG_CODES, now)? {
        let message = Msg::new("api.too_many_requests").arg("seconds", retry_after);
        return Err(Error::TooManyRequests { message, retry_after });
    }
    let (version, last_step) = version_and_step(tx, user_id)?;
    if let Some(matched) = crypto::totp_match(&secret(app, user_id, version), code, step(now)) {
        if matched > last_step {
            tx.execute("UPDATE users SET twofa_last_step = ?2 WHERE id = ?1", params![user_id, matched as i64])?;
            return Ok(true);
        }
    } else if allow_recovery {
        let hash = recovery_hash(app, user_id, &normalize_recovery(code));
        let used = tx.execute(
            "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
            params![user_id, hash, now],
        )?;
        if used == 1 {
            return Ok(true);
        }
    }
    ratelimit::hit(tx, &key, WRONG_CODES, now)?;
    Ok(false)
}

/// Recovery codes are kept as an HMAC under the instance key, bound to the user.
fn recovery_hash(app: &App, user_id: i64, code: &str) -> String {
    crypto::hex(&crypto::hmac_sha256(&app.signing_key, format!("recovery:{user_id}:{code}").as_bytes()))
}

fn normalize_recovery(code: &str) -> String {
    code.trim().to_ascii_lowercase().replace('-', "")
}

/// Replaces the user's recovery codes; returns them in clear, once.
fn new_recovery_codes(app: &App, tx: &Connection, user_id: i64) -> rusqlite::Result<Vec<String>> {
    tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    let mut codes = Vec::new();
    for _ in 0..RECOVERY_CODES {
        let raw = crypto::random_alphanumeric(10).to_ascii_lowercase();
        tx.execute(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
            params![user_id, recovery_hash(app, user_id, &raw)],
        )?;
        codes.push(format!("{}-{}", &raw[..5], &raw[5..]));
    }
    Ok(codes)
}

fn otp_field(ctx: &Ctx) -> Result<String, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let code = input.string("otpCode", &mut errors);
    errors.into_result()?;
    Ok(code.unwrap_or_default())
}

fn otp_failed() -> Error {
    Error::Forbidden(Msg::new("auth.otp_failed"))
}

/// `GET /api/users/twofa`: bound or not; while unbound, the secret to add
/// to an authenticator app, as text, `otpauth://` URL and QR code.
pub fn status(ctx: &Ctx) -> Result<Response, Error> {
    let user = &ctx.session()?.user;
    if user.two_factor_enabled {
        return Ok(ok(ctx, "api.twofa_status", json!({"bound": true})));
    }
    let (version, _) = ctx.app.db.read(|c| Ok(version_and_step(c, user.id)?))?;
    let url = otpauth_url(ctx.app, user, version);
    let data = json!({
        "bound": false,
        "secret": crypto::base32(&secret(ctx.app, user.id, version)),
        "otpauth_url": url,
        "qr_svg": qr_svg(&url),
    });
    Ok(ok(ctx, "api.twofa_status", data))
}

/// `POST /api/users/twofa-bind {otpCode}`: turns 2FA on with a code from
/// the app; answers with 8 recovery codes, shown this once.
pub fn bind(ctx: &Ctx) -> Result<Response, Error> {
    let code = otp_field(ctx)?;
    let user = &ctx.session()?.user;
    if user.two_factor_enabled {
        return Err(Error::Settings { status: 422, msg: Msg::new("api.twofa_already_bound") });
    }
    let app = ctx.app;
    let codes = app.db.write(|tx| {
        if !check_code(app, tx, user.id, &code, false)? {
            return Ok(None);
        }
        tx.execute("UPDATE users SET two_factor_enabled = 1 WHERE id = ?1", [user.id])?;
        Ok(Some(new_recovery_codes(app, tx, user.id)?))
    })?;
    let codes = codes.ok_or_else(otp_failed)?;
    Ok(ok(ctx, "api.twofa_binded_successfully", json!({"recovery_codes": codes})))
}

/// `POST /api/users/twofa-unbind {otpCode}`: turns 2FA off and makes a new
/// secret for the next bind.
pub fn unbind(ctx: &Ctx) -> Result<Response, Error> {
    let code = otp_field(ctx)?;
    let user = &ctx.session()?.user;
    if !user.two_factor_enabled {
        return Err(Error::Settings { status: 422, msg: Msg::new("api.twofa_not_bound") });
    }
    let app = ctx.app;
    let unbound = app.db.write(|tx| {
        if !check_code(app, tx, user.id, &code, true)? {
            return Ok(false);
        }
        disable(tx, user.id)?;
        Ok(true)
    })?;
    if !unbound {
        return Err(otp_failed());
    }
    let user = accounts::find_by_id(app, user.id)?;
    Ok(ok(ctx, "api.twofa_unbinded", accounts::user_json(app, &user)))
}

/// Turns 2FA off, regenerates the secret and drops the recovery codes.
pub fn disable(tx: &Connection, user_id: i64) -> rusqlite::Result<bool> {
    tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    let n = tx.execute(
        "UPDATE users SET two_factor_enabled = 0, twofa_secret_version = twofa_secret_version + 1, twofa_last_step = 0
         WHERE id = ?1",
        [user_id],
    )?;
    Ok(n == 1)
}

/// `POST /api/users/twofa-recovery-codes {otpCode}`: 8 new recovery codes
/// for a valid TOTP; the old ones stop working.
pub fn recovery_codes(ctx: &Ctx) -> Result<Response, Error> {
    let code = otp_field(ctx)?;
    let user = &ctx.session()?.user;
    if !user.two_factor_enabled {
        return Err(Error::Settings { status: 422, msg: Msg::new("api.twofa_not_bound") });
    }
    let app = ctx.app;
    let codes = app.db.write(|tx| {
        if !check_code(app, tx, user.id, &code, false)? {
            return Ok(None);
        }
        Ok(Some(new_recovery_codes(app, tx, user.id)?))
    })?;
    let codes: Vec<String> = codes.ok_or_else(otp_failed)?;
    Ok(ok(ctx, "api.recovery_codes_regenerated", json!({"recovery_codes": codes})))
}

/// How many unused recovery codes the user has.
pub fn recovery_left(conn: &Connection, user_id: i64) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL", [user_id], |r| {
        r.get(0)
    })
}
