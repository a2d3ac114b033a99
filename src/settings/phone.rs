//! Phone binding: an SMS code to the number, then the number bound to the
//! account once the code is right. Wrong codes are counted per IP address;
//! five within an hour blacklist the number.

use super::{ok, otp};
use crate::accounts;
use crate::clock::{Micros, MINUTE};
use crate::error::{Error, FieldErrors};
use crate::http::Ctx;
use crate::i18n::Msg;
use crate::outbox;
use crate::ratelimit::{self, Limit};
use rouille::Response;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

/// One code per user per minute, five per number per hour.
const PER_USER: Limit = Limit { max: 1, window: MINUTE };
const PER_NUMBER: Limit = Limit { max: 5, window: 60 * MINUTE };
/// And twenty per IP address per hour, against SMS pumping from many accounts.
const PER_IP: Limit = Limit { max: 20, window: 60 * MINUTE };
/// Wrong codes for one number from one IP within an hour that blacklist it.
const WRONG_PER_IP: Limit = Limit { max: 5, window: 60 * MINUTE };

/// The number in E.164 (`+628123456789`) from the seed's three fields, or
/// the field errors.
pub fn normalize(
    phone: Option<&str>,
    country: Option<&str>,
    dial: Option<&str>,
    errors: &mut FieldErrors,
) -> Option<String> {
    let dial_digits: String = dial.unwrap_or("").chars().filter(char::is_ascii_digit).collect();
    if dial.is_some() && !(1..=4).contains(&dial_digits.len()) {
        errors.add("dialCode", Msg::new("validation.phone").arg("attribute", "dial code"));
    }
    if country.is_some_and(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic())) {
        errors.add(
            "countryCode",
            Msg::new("validation.in").arg("attribute", "country code").arg("values", "ISO 3166 alpha-2"),
        );
    }
    let raw = phone?;
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let ok_chars = raw.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    // A number written in full (`+62 812…`) stands as it is; a national
    // one (`0812…`) gets the dial code in front.
    let full = if raw.trim_start().starts_with('+') {
        digits.clone()
    } else {
        format!("{dial_digits}{}", digits.trim_start_matches('0'))
    };
    if !ok_chars || !(8..=15).contains(&full.len()) {
        errors.add("phone", Msg::new("validation.phone").arg("attribute", "phone"));
        return None;
    }
    Some(format!("+{full}"))
}

fn fields(ctx: &Ctx, with_code: bool) -> Result<(String, String), Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let phone = input.string("phone", &mut errors);
    let country = input.string("countryCode", &mut errors);
    let dial = input.string("dialCode", &mut errors);
    let code = if with_code { input.string("otpCode", &mut errors) } else { None };
    let number = normalize(phone.as_deref(), country.as_deref(), dial.as_deref(), &mut errors);
    errors.into_result()?;
    Ok((number.unwrap_or_default(), code.unwrap_or_default()))
}

fn blacklisted(conn: &Connection, number: &str) -> rusqlite::Result<bool> {
    Ok(conn.query_row("SELECT 1 FROM phone_blacklist WHERE phone = ?1", [number], |_| Ok(())).optional()?.is_some())
}

fn taken_by_other(conn: &Connection, number: &str, user_id: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM users WHERE phone = ?1 AND id != ?2", params![number, user_id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn refuse(status: u16, key: &'static str) -> Error {
    Error::Settings { status, msg: Msg::new(key) }
}

fn too_many(retry_after: u64) -> Error {
    Error::TooManyRequests { message: Msg::new("api.too_many_requests").arg("seconds", retry_after), retry_after }
}

/// `POST /api/users/phone-otp {phone, countryCode, dialCode}`: texts a code.
pub fn send_code(ctx: &Ctx) -> Result<Response, Error> {
    let (number, _) = fields(ctx, false)?;
    let user = &ctx.session()?.user;
    let app = ctx.app;
    let now = app.clock.now();
    app.db.write(|tx| {
        if blacklisted(tx, &number)? {
            return Err(refuse(403, "api.phone_number_blacklisted"));
        }
        if taken_by_other(tx, &number, user.id)? {
            return Err(refuse(422, "api.phone_number_taken"));
        }
        let (user_key, number_key) = (format!("phone-otp:{}", user.id), format!("phone-otp-number:{number}"));
        let ip_key = format!("phone-otp-ip:{}", ctx.ip);
        for (key, limit) in [(&user_key, PER_USER), (&number_key, PER_NUMBER), (&ip_key, PER_IP)] {
            if let Some(retry) = ratelimit::blocked(tx, key, limit, now)? {
                return Err(too_many(retry));
            }
        }
        let code = otp::issue(app, tx, user.id, "phone", &number, now)?;
        let text = Msg::new("sms.otp").arg("code", &code).arg("minutes", app.config.security.code_ttl_minutes);
        let lang = crate::i18n::Lang::parse(&user.language).unwrap_or(app.default_lang);
        outbox::enqueue_sms(tx, &number, &text.render(lang), now)?;
        ratelimit::hit(tx, &user_key, PER_USER, now)?;
        ratelimit::hit(tx, &number_key, PER_NUMBER, now)?;
        ratelimit::hit(tx, &ip_key, PER_IP, now)?;
        Ok(())
    })?;
    app.outbox_wake.notify();
    Ok(ok(ctx, "api.otp_sent", json!({"phone": number})))
}

/// `POST /api/users/phone-bind {phone, countryCode, dialCode, otpCode}`.
pub fn bind(ctx: &Ctx) -> Result<Response, Error> {
    let (number, code) = fields(ctx, true)?;
    let user = &ctx.session()?.user;
    let app = ctx.app;
    let now = app.clock.now();
    let ip_key = format!("phone-bind-ip:{}:{number}", ctx.ip);
    let outcome = app.db.write(|tx| {
        if taken_by_other(tx, &number, user.id)? {
            return Ok(Err(refuse(422, "api.phone_number_taken")));
        }
        if blacklisted(tx, &number)? {
            return Ok(Err(refuse(403, "api.phone_number_blacklisted")));
        }
        // Only guesses at a code really sent to this number count towards
        // its blacklisting: nobody can block a number by naming it.
        let code_sent = otp::pending_for(tx, user.id, "phone", &number, now)?;
        if otp::check(app, tx, user.id, "phone", &number, &code, now)? {
            tx.execute("UPDATE users SET phone = ?2 WHERE id = ?1", params![user.id, number])?;
            return Ok(Ok(()));
        }
        if !code_sent {
            return Ok(Err(refuse(422, "api.otp_verification_code_invalid")));
        }
        ratelimit::hit(tx, &ip_key, WRONG_PER_IP, now)?;
        if ratelimit::blocked(tx, &ip_key, WRONG_PER_IP, now)?.is_some() {
            blacklist(tx, &number, &format!("{} wrong codes from {} within an hour", WRONG_PER_IP.max, ctx.ip), now)?;
        }
        Ok(Err(refuse(422, "api.otp_verification_code_invalid")))
    })?;
    outcome?;
    let user = accounts::find_by_id(app, user.id)?;
    Ok(ok(ctx, "api.mobile_verified", accounts::user_json(app, &user)))
}

pub fn blacklist(conn: &Connection, number: &str, reason: &str, now: Micros) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO phone_blacklist (phone, reason, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (phone) DO NOTHING",
        params![number, reason, now],
    )?;
    Ok(())
}
