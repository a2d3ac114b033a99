//! Email verification, both flows of the seeds side by side: a 6-digit code
//! (`POST /api/email/verify`) and a signed link
//! (`GET /api/email/verify/{id}/{hash}?expires=&signature=`). One mail
//! carries both; every send goes through the outbox. Signing up is here
//! too ([`register`]): the account and its first mail commit together.

use crate::accounts::{self, otp, User};
use crate::base::Core;
use crate::clock::{Micros, DAY, MINUTE, SECOND};
use crate::crypto;
use crate::error::Error;
use crate::i18n::{Lang, Msg};
use crate::mail;
use crate::outbox;
use crate::ratelimit::{self, Limit};
use rusqlite::Connection;
use std::net::IpAddr;

/// The purpose of the verification code in `accounts::otp`.
const PURPOSE: &str = "verify-email";
/// Links live 60 minutes (seed 003).
pub const LINK_TTL: Micros = 60 * MINUTE;
/// One verification mail per user per minute, whichever route asks...
const RESEND: Limit = Limit { max: 1, window: MINUTE };
/// ...and ten a day, so nobody can flood an address they registered.
const DAILY_MAILS: Limit = Limit { max: 10, window: DAY };
/// Wrong codes per user per hour, across resends (each new code starts
/// its own five tries, this caps guessing overall).
const WRONG_CODES: Limit = Limit { max: 10, window: 60 * MINUTE };

/// The sliding windows of sign-ups and verification mails.
const HOUR: Micros = 60 * MINUTE;

/// A window a sign-up or a verification mail is counted in, and the
/// message of its 429.
struct Window {
    key: String,
    limit: Limit,
    message: &'static str,
}

/// The hourly budgets of verification mails caused from `ip`: the
/// address's own and the whole server's.
fn mail_windows(app: &Core, ip: IpAddr) -> Vec<Window> {
    let security = &app.config.security;
    let per_ip = security.verification_mails_per_ip_hour;
    let mut windows = vec![
        Window {
            key: format!("verify-mail-ip:{}", crate::net::limit_key(ip)),
            limit: Limit { max: per_ip, window: HOUR },
            message: "verify.mail_budget",
        },
        Window {
            key: "verify-mail-all".into(),
            limit: Limit { max: security.verification_mails_per_hour, window: HOUR },
            message: "verify.mail_budget",
        },
    ];
    // An IPv6 site (/48) gets SITE_SHARE addresses' budgets, however many
    // /64s it holds: one holder cannot spend the server's on its own.
    if let Some(site) = crate::net::site_key(ip) {
        windows.push(Window {
            key: format!("verify-mail-site:{site}"),
            limit: Limit { max: per_ip.saturating_mul(SITE_SHARE), window: HOUR },
            message: "verify.mail_budget",
        });
    }
    windows
}

/// The budget of an IPv6 /48, in addresses' budgets.
const SITE_SHARE: u32 = 4;

fn registration_window(app: &Core, ip: IpAddr) -> Window {
    Window {
        key: format!("register-ip:{}", crate::net::limit_key(ip)),
        limit: Limit { max: app.config.security.registrations_per_ip_hour, window: HOUR },
        message: "register.too_many",
    }
}

/// The 429 of the full window that frees last (waiting less would only
/// meet another 429), if any is full.
fn refusal(conn: &Connection, windows: &[&Window], now: Micros) -> rusqlite::Result<Option<Error>> {
    let mut worst: Option<(u64, &Window)> = None;
    for &w in windows {
        if let Some(wait) = ratelimit::sliding_blocked(conn, &w.key, w.limit, now)? {
            if worst.is_none_or(|(longest, _)| wait > longest) {
                worst = Some((wait, w));
            }
        }
    }
    Ok(worst.map(|(retry_after, w)| Error::TooManyRequests {
        message: Msg::new(w.message).arg("seconds", retry_after),
        retry_after,
    }))
}

/// Counts an event in each of `windows` unless one is full: then the 429
/// of [`refusal`], and nothing counted.
fn count(conn: &Connection, windows: &[&Window], now: Micros) -> rusqlite::Result<Option<Error>> {
    if let Some(refused) = refusal(conn, windows, now)? {
        return Ok(Some(refused));
    }
    for w in windows {
        ratelimit::sliding_hit(conn, &w.key, now)?;
    }
    Ok(None)
}

fn resend_key(user_id: i64) -> String {
    format!("verify-mail:{user_id}")
}

fn already_verified() -> Error {
    Error::BadRequest(Msg::new("verify.already"))
}

/// The URL a link's signature covers: always built from `server.app_url`,
/// so it checks out whichever host name the request came in on.
fn signed_part(app: &Core, user_id: i64, hash: &str, expires: i64) -> String {
    format!("{}/api/email/verify/{user_id}/{hash}?expires={expires}", app.config.app_url())
}

fn signature(app: &Core, user_id: i64, hash: &str, expires: i64) -> String {
    crypto::hex(&crypto::hmac_sha256(&app.signing_key, signed_part(app, user_id, hash, expires).as_bytes()))
}

/// A verification link for `user`, valid for [`LINK_TTL`] from `now`.
pub fn link(app: &Core, user: &User, now: Micros) -> String {
    let hash = crypto::sha1_hex(user.email.to_lowercase().as_bytes());
    let expires = (now + LINK_TTL) / SECOND;
    format!("{}&signature={}", signed_part(app, user.id, &hash, expires), signature(app, user.id, &hash, expires))
}

/// Issues a fresh code and link and queues the mail carrying both, inside
/// the caller's transaction (so the code and its mail commit together).
/// Returns the link.
pub fn queue_mail(app: &Core, tx: &Connection, user: &User, now: Micros) -> Result<String, Error> {
    let code = otp::issue(app, tx, user.id, PURPOSE, &user.email, now)?;
    let ttl_minutes = app.config.security.code_ttl_minutes;
    let url = link(app, user, now);
    let lang = app.lang_of(&user.language);
    let mail = mail::verification(lang, &user.email, &user.name, &code, &url, ttl_minutes);
    outbox::enqueue(tx, &mail, now)?;
    ratelimit::hit(tx, &resend_key(user.id), RESEND, now)?;
    ratelimit::hit(tx, &format!("verify-mail-day:{}", user.id), DAILY_MAILS, now)?;
    Ok(url)
}

/// Signs up: creates the account (through `accounts`, which checks the
/// email is free) and queues its verification mail in the same
/// transaction, so there is never an account without its mail. A sign-up
/// past the address's hourly limit, or whose mail would pass the
/// address's or the server's hourly budget, is a 429 and creates nothing;
/// that is looked at before the password is hashed, so a refused flood
/// costs no hashing. Every sign-up that reaches the database counts
/// against its address, one for an email already taken too.
pub fn register(app: &Core, name: &str, email: &str, password: &str, lang: Lang, ip: IpAddr) -> Result<User, Error> {
    let (sign_up, mails) = (registration_window(app, ip), mail_windows(app, ip));
    let windows: Vec<&Window> = mails.iter().chain([&sign_up]).collect();
    if let Some(refused) = app.db.read(|c| Ok(refusal(c, &windows, app.clock.now())?))? {
        return Err(refused);
    }
    let hash = crypto::hash_password(password);
    let now = app.clock.now();
    let new = accounts::store::NewUser { name, email, password_hash: &hash, language: lang.code(), verified_at: None };
    let user = app.db.write_then_refuse(|tx| {
        if let Some(refused) = refusal(tx, &windows, now)? {
            return Ok(Err(refused));
        }
        ratelimit::sliding_hit(tx, &sign_up.key, now)?;
        let user = match accounts::insert_account(tx, &new, now) {
            // Taken: refused, but counted against the address.
            Err(e @ Error::Validation(_)) => return Ok(Err(e)),
            other => other?,
        };
        for w in &mails {
            ratelimit::sliding_hit(tx, &w.key, now)?;
        }
        queue_mail(app, tx, &user, now)?;
        Ok(Ok(user))
    })?;
    app.outbox_wake.notify();
    Ok(user)
}

/// Counts a sign-up refused because its email is taken against its
/// address, as [`register`] counts the others: trying addresses one after
/// another is sign-up traffic too. A 429 when the address is over.
pub fn count_taken_sign_up(app: &Core, ip: IpAddr) -> Result<(), Error> {
    let window = registration_window(app, ip);
    let now = app.clock.now();
    app.db.write_then_refuse(|tx| Ok(count(tx, &[&window], now)?.map_or(Ok(()), Err)))
}

/// Sends a new verification mail (new code, new link), at most once a
/// minute per user, within the hourly mail budgets. Returns the link.
pub fn resend(app: &Core, user: &User, ip: IpAddr) -> Result<String, Error> {
    if user.email_verified_at.is_some() {
        return Err(already_verified());
    }
    let now = app.clock.now();
    let url = app.db.write(|tx| {
        if let Some(retry_after) = ratelimit::blocked(tx, &resend_key(user.id), RESEND, now)? {
            return Err(Error::TooManyRequests { message: Msg::new("verify.resend_wait"), retry_after });
        }
        let daily_key = format!("verify-mail-day:{}", user.id);
        if let Some(retry_after) = ratelimit::blocked(tx, &daily_key, DAILY_MAILS, now)? {
            let message = Msg::new("verify.daily_limit").arg("seconds", retry_after);
            return Err(Error::TooManyRequests { message, retry_after });
        }
        let mails = mail_windows(app, ip);
        if let Some(refused) = count(tx, &mails.iter().collect::<Vec<_>>(), now)? {
            return Err(refused);
        }
        queue_mail(app, tx, user, now)
    })?;
    app.outbox_wake.notify();
    Ok(url)
}

/// Checks a code. Wrong, expired or exhausted codes all get the seed's one
/// answer; every wrong try counts, and the fifth kills the code.
pub fn verify_code(app: &Core, user: &User, code: &str) -> Result<(), Error> {
    if user.email_verified_at.is_some() {
        return Err(already_verified());
    }
    let now = app.clock.now();
    let wrong_key = format!("verify-code:{}", user.id);
    app.db.write_then_refuse(|tx| {
        if let Some(retry_after) = ratelimit::blocked(tx, &wrong_key, WRONG_CODES, now)? {
            let message = Msg::new("verify.too_many_tries").arg("seconds", retry_after);
            return Ok(Err(Error::TooManyRequests { message, retry_after }));
        }
        let live = otp::pending_for(tx, user.id, PURPOSE, &user.email, now)?;
        if !otp::check(app, tx, user.id, PURPOSE, &user.email, code, now)? {
            // A wrong guess at a live code counts (and sticks) towards the hour's limit.
            if live {
                ratelimit::hit(tx, &wrong_key, WRONG_CODES, now)?;
            }
            return Ok(Err(Error::Unprocessable(Msg::new("verify.code_invalid"))));
        }
        accounts::store::mark_verified(tx, user.id, now)?;
        Ok(Ok(()))
    })
}

/// What a link check found.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkOutcome {
    Verified,
    AlreadyVerified,
    Invalid,
    UnknownUser,
}

/// Checks a verification link: the user exists, `hash` is the SHA-1 of
/// their email, the signature is ours over id, hash and expiry, and it has
/// not expired. Any tampered part is `Invalid`. `check_only` (a HEAD
/// request, as link scanners in mail clients send) verifies nothing.
pub fn verify_link(
    app: &Core,
    id: &str,
    hash: &str,
    expires: Option<&str>,
    signature_hex: Option<&str>,
    check_only: bool,
) -> Result<LinkOutcome, Error> {
    let Ok(user_id) = id.parse::<i64>() else { return Ok(LinkOutcome::UnknownUser) };
    let Some(user) = app.db.read(|c| Ok(accounts::store::find_user(c, user_id)?))? else {
        return Ok(LinkOutcome::UnknownUser);
    };
    let (Some(expires), Some(given)) = (expires.and_then(|e| e.parse::<i64>().ok()), signature_hex) else {
        return Ok(LinkOutcome::Invalid);
    };
    let email_hash = crypto::sha1_hex(user.email.to_lowercase().as_bytes());
    let now = app.clock.now();
    let signed = signed_part(app, user_id, hash, expires);
    let genuine = crypto::hmac_sha256_verify(&app.signing_key, signed.as_bytes(), given)
        & crypto::ct_eq(email_hash.as_bytes(), hash.to_ascii_lowercase().as_bytes());
    if !genuine || expires.saturating_mul(SECOND) <= now {
        return Ok(LinkOutcome::Invalid);
    }
    // Only a genuine link learns whether the account is verified.
    if user.email_verified_at.is_some() {
        return Ok(LinkOutcome::AlreadyVerified);
    }
    if check_only {
        return Ok(LinkOutcome::Verified);
    }
    app.db.write(|tx| {
        accounts::store::mark_verified(tx, user_id, now)?;
        otp::consume(tx, user_id, PURPOSE)?;
        Ok(())
    })?;
    Ok(LinkOutcome::Verified)
}
