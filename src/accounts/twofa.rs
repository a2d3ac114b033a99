//! Two-factor authentication with an authenticator app (RFC 6238 TOTP:
//! SHA-1, 6 digits, 30 s, ±1 step), plus single-use recovery codes.
//!
//! The secret is derived from the instance key, the user id and a version
//! (unbinding bumps it, so a new secret is shown), never stored; the last
//! accepted time step is, so a code works once.

use super::{store, User};
use crate::base::Core;
use crate::clock::{Micros, MINUTE, SECOND};
use crate::crypto;
use crate::error::Error;
use crate::i18n::Msg;
use crate::ratelimit::{self, Limit};
use rusqlite::{params, Connection};

const RECOVERY_CODES: usize = 8;
/// Wrong codes per user before a pause: guessing 6 digits stays hopeless.
const WRONG_CODES: Limit = Limit { max: 5, window: 5 * MINUTE };

pub fn secret(app: &Core, user_id: i64, version: i64) -> [u8; 20] {
    let mac = crypto::hmac_sha256(&app.signing_key, format!("totp:{user_id}:{version}").as_bytes());
    mac[..20].try_into().unwrap_or([0; 20])
}

fn step(now: Micros) -> u64 {
    (now / SECOND / 30).max(0) as u64
}

/// The `otpauth://` URL an authenticator app scans.
pub fn otpauth_url(app: &Core, user: &User, version: i64) -> String {
    let host =
        app.config.app_url().split("://").nth(1).unwrap_or("apextrack").split(['/', ':']).next().unwrap_or("apextrack");
    let label = crate::net::percent_encode(&format!("apextrack ({host}):{}", user.email));
    let secret = crypto::base32(&secret(app, user.id, version));
    format!("otpauth://totp/{label}?secret={secret}&issuer=apextrack&algorithm=SHA1&digits=6&period=30")
}

pub fn qr_svg(data: &str) -> String {
    match qrcode::QrCode::new(data.as_bytes()) {
        Ok(code) => code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build(),
        Err(_) => String::new(),
    }
}

pub fn version_and_step(conn: &Connection, user_id: i64) -> rusqlite::Result<(i64, u64)> {
    store::twofa_state(conn, user_id)
}

/// Checks a TOTP code (once per time step) or, when `allow_recovery`, an
/// unused recovery code, inside the caller's write transaction. Wrong codes
/// are limited per user; the caller must commit even when this is false.
pub fn check_code(app: &Core, tx: &Connection, user_id: i64, code: &str, allow_recovery: bool) -> Result<bool, Error> {
    let now = app.clock.now();
    let key = format!("totp:{user_id}");
    if let Some(retry_after) = ratelimit::blocked(tx, &key, WRONG_CODES, now)? {
        let message = Msg::new("api.too_many_requests").arg("seconds", retry_after);
        return Err(Error::TooManyRequests { message, retry_after });
    }
    let (version, last_step) = version_and_step(tx, user_id)?;
    if let Some(matched) = crypto::totp_match(&secret(app, user_id, version), code, step(now)) {
        if matched > last_step {
            store::set_twofa_step(tx, user_id, matched as i64)?;
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
fn recovery_hash(app: &Core, user_id: i64, code: &str) -> String {
    crypto::hex(&crypto::hmac_sha256(&app.signing_key, format!("recovery:{user_id}:{code}").as_bytes()))
}

fn normalize_recovery(code: &str) -> String {
    code.trim().to_ascii_lowercase().replace('-', "")
}

/// Replaces the user's recovery codes; returns them in clear, once.
pub fn new_recovery_codes(app: &Core, tx: &Connection, user_id: i64) -> rusqlite::Result<Vec<String>> {
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

/// Turns 2FA off, regenerates the secret and drops the recovery codes.
pub fn disable(tx: &Connection, user_id: i64) -> rusqlite::Result<bool> {
    tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    store::disable_twofa(tx, user_id)
}

/// How many unused recovery codes the user has.
pub fn recovery_left(conn: &Connection, user_id: i64) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL", [user_id], |r| {
        r.get(0)
    })
}

/// What `GET /api/users/twofa` shows while 2FA is unbound: the secret as
/// text, the `otpauth://` URL and its QR code.
pub struct Enrolment {
    pub secret: String,
    pub otpauth_url: String,
    pub qr_svg: String,
}

/// The secret to enrol, or None when 2FA is already bound.
pub fn enrolment(app: &Core, user: &User) -> Result<Option<Enrolment>, Error> {
    if user.two_factor_enabled {
        return Ok(None);
    }
    let (version, _) = app.db.read(|c| Ok(version_and_step(c, user.id)?))?;
    let otpauth_url = otpauth_url(app, user, version);
    let qr_svg = qr_svg(&otpauth_url);
    Ok(Some(Enrolment { secret: crypto::base32(&secret(app, user.id, version)), otpauth_url, qr_svg }))
}

fn otp_failed() -> Error {
    Error::Forbidden(Msg::new("auth.otp_failed"))
}

fn settings_error(key: &'static str) -> Error {
    Error::Unprocessable(Msg::new(key))
}

/// Turns 2FA on with a code from the app; returns 8 recovery codes, shown once.
pub fn bind(app: &Core, user: &User, code: &str) -> Result<Vec<String>, Error> {
    if user.two_factor_enabled {
        return Err(settings_error("api.twofa_already_bound"));
    }
    let codes = app.db.write(|tx| {
        if !check_code(app, tx, user.id, code, false)? {
            return Ok(None);
        }
        store::enable_twofa(tx, user.id)?;
        Ok(Some(new_recovery_codes(app, tx, user.id)?))
    })?;
    codes.ok_or_else(otp_failed)
}

/// Turns 2FA off (with a TOTP or a recovery code) and makes a new secret
/// for the next bind.
pub fn unbind(app: &Core, user: &User, code: &str) -> Result<(), Error> {
    if !user.two_factor_enabled {
        return Err(settings_error("api.twofa_not_bound"));
    }
    let unbound = app.db.write(|tx| {
        if !check_code(app, tx, user.id, code, true)? {
            return Ok(false);
        }
        disable(tx, user.id)?;
        Ok(true)
    })?;
    if unbound {
        Ok(())
    } else {
        Err(otp_failed())
    }
}

/// 8 new recovery codes for a valid TOTP; the old ones stop working.
pub fn regenerate_recovery_codes(app: &Core, user: &User, code: &str) -> Result<Vec<String>, Error> {
    if !user.two_factor_enabled {
        return Err(settings_error("api.twofa_not_bound"));
    }
    let codes = app.db.write(|tx| {
        if !check_code(app, tx, user.id, code, false)? {
            return Ok(None);
        }
        Ok(Some(new_recovery_codes(app, tx, user.id)?))
    })?;
    codes.ok_or_else(otp_failed)
}
