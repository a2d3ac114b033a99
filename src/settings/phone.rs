//! Phone binding: an SMS code to the number, then the number bound to the
//! account once the code is right. Wrong codes are counted per number and
//! account; five within an hour shut that account out of the number for a
//! day (an admin can lift it at once with `apextrack blacklist clear`).

use crate::accounts::otp;
use crate::accounts::{store, User};
use crate::base::Core;
use crate::clock::{Micros, MINUTE};
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use crate::outbox;
use crate::ratelimit::{self, Limit};
use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;

/// One code per user per minute, five per number per hour.
const PER_USER: Limit = Limit { max: 1, window: MINUTE };
const PER_NUMBER: Limit = Limit { max: 5, window: 60 * MINUTE };
/// And twenty per IP address per hour, against SMS pumping from many accounts.
const PER_IP: Limit = Limit { max: 20, window: 60 * MINUTE };
/// Wrong codes for one number from one account within an hour that shut
/// the account out of it.
const WRONG_PER_ACCOUNT: Limit = Limit { max: 5, window: 60 * MINUTE };

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

fn blacklisted(conn: &Connection, number: &str) -> rusqlite::Result<bool> {
    Ok(conn.query_row("SELECT 1 FROM phone_blacklist WHERE phone = ?1", [number], |_| Ok(())).optional()?.is_some())
}

/// How long an account stays shut out of a number it guessed codes for.
const BLOCK_FOR: Micros = 24 * 60 * MINUTE;

/// Whether this account was shut out of `number` for guessing its codes
/// within the last [`BLOCK_FOR`].
fn blocked_for(conn: &Connection, number: &str, user_id: i64, now: Micros) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM phone_blocks WHERE phone = ?1 AND user_id = ?2 AND created_at > ?3",
            params![number, user_id, now - BLOCK_FOR],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn blacklisted_number() -> Error {
    Error::Forbidden(Msg::new("api.phone_number_blacklisted"))
}

fn refuse(key: &'static str) -> Error {
    Error::Unprocessable(Msg::new(key))
}

fn too_many(retry_after: u64) -> Error {
    Error::TooManyRequests { message: Msg::new("api.too_many_requests").arg("seconds", retry_after), retry_after }
}

/// Texts a code to `number` (E.164) for `user`.
pub fn send_code(app: &Core, user: &User, number: &str, ip: IpAddr) -> Result<(), Error> {
    let now = app.clock.now();
    app.db.write(|tx| {
        if blacklisted(tx, number)? || blocked_for(tx, number, user.id, now)? {
            return Err(blacklisted_number());
        }
        if store::phone_taken_by_other(tx, number, user.id)? {
            return Err(refuse("api.phone_number_taken"));
        }
        let (user_key, number_key) = (format!("phone-otp:{}", user.id), format!("phone-otp-number:{number}"));
        let ip_key = format!("phone-otp-ip:{ip}");
        for (key, limit) in [(&user_key, PER_USER), (&number_key, PER_NUMBER), (&ip_key, PER_IP)] {
            if let Some(retry) = ratelimit::blocked(tx, key, limit, now)? {
                return Err(too_many(retry));
            }
        }
        let code = otp::issue(app, tx, user.id, "phone", number, now)?;
        let text = Msg::new("sms.otp").arg("code", &code).arg("minutes", app.config.security.code_ttl_minutes);
        outbox::enqueue_sms(tx, number, &text.render(app.lang_of(&user.language)), now)?;
        ratelimit::hit(tx, &user_key, PER_USER, now)?;
        ratelimit::hit(tx, &number_key, PER_NUMBER, now)?;
        ratelimit::hit(tx, &ip_key, PER_IP, now)?;
        Ok(())
    })?;
    app.outbox_wake.notify();
    Ok(())
}

/// Binds `number` to `user` when `code` is the one sent to it.
///
/// Wrong codes are counted per number and account: five within an hour
/// shut this account out of the number for a day. Nobody else is affected, so a
/// stranger who asks for codes to someone's number and guesses wrong
/// cannot keep its owner from binding it.
pub fn bind(app: &Core, user: &User, number: &str, code: &str) -> Result<(), Error> {
    let now = app.clock.now();
    let wrong_key = format!("phone-bind-wrong:{}:{number}", user.id);
    app.db.write_then_refuse(|tx| {
        if store::phone_taken_by_other(tx, number, user.id)? {
            return Ok(Err(refuse("api.phone_number_taken")));
        }
        if blacklisted(tx, number)? || blocked_for(tx, number, user.id, now)? {
            return Ok(Err(blacklisted_number()));
        }
        // Only guesses at a code really sent to this number count.
        let code_sent = otp::pending_for(tx, user.id, "phone", number, now)?;
        if otp::check(app, tx, user.id, "phone", number, code, now)? {
            store::set_phone(tx, user.id, number)?;
            return Ok(Ok(()));
        }
        if code_sent {
            ratelimit::hit(tx, &wrong_key, WRONG_PER_ACCOUNT, now)?;
            if ratelimit::blocked(tx, &wrong_key, WRONG_PER_ACCOUNT, now)?.is_some() {
                tx.execute(
                    "INSERT INTO phone_blocks (phone, user_id, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (phone, user_id) DO UPDATE SET created_at = excluded.created_at",
                    params![number, user.id, now],
                )?;
            }
        }
        Ok(Err(refuse("api.otp_verification_code_invalid")))
    })
}

/// Refuses `number` for every account (the admin's `blacklist` command).
pub fn blacklist(conn: &Connection, number: &str, reason: &str, now: Micros) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO phone_blacklist (phone, reason, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (phone) DO NOTHING",
        params![number, reason, now],
    )?;
    Ok(())
}
