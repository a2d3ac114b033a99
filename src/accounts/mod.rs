//! Accounts: creation, login with Sanctum-style tokens (and the 2FA gate),
//! logout, the account guards, and the admin operations the CLI offers.
//! Rouille-free: `http::routes::accounts` adapts these to HTTP, `cli` to
//! the command line. Signing up with a verification mail is
//! `verification::register`, which calls down into [`insert_account`].

pub mod otp;
pub mod store;
pub mod twofa;

use crate::base::Core;
use crate::clock::{self, Micros, DAY, MINUTE};
use crate::crypto;
use crate::error::{Error, FieldErrors};
use crate::i18n::{Lang, Msg};
use crate::ratelimit::{self, Limit};
use crate::text::is_email;
use serde_json::{json, Value};
use std::net::IpAddr;
pub use store::{Token, User};

/// Account states. Only `active` accounts may log in or use their tokens.
/// `suspended` is an admin's decision and only an admin lifts it;
/// `unpaid` (set by an admin too) is lifted by a `paid` payment
/// notification carrying an amount.
pub const STATUSES: &[&str] = &["active", "suspended", "unpaid"];
pub const MIN_PASSWORD: usize = 8;
pub const MAX_FIELD: usize = 255;
/// `last_used_at` is written at most this often per token, so a busy
/// client does not turn every read into a write.
const TOUCH_EVERY: Micros = MINUTE;

/// An authenticated request's user and the token it came with.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token_id: i64,
}

/// Adds the rule violations of account fields to `errors`: lengths, email
/// shape, password length, and a taken email. A `None` field was already
/// reported missing or mistyped by the caller.
pub fn validate_account(
    app: &Core,
    name: Option<&str>,
    email: Option<&str>,
    password: Option<&str>,
    errors: &mut FieldErrors,
) -> Result<(), Error> {
    if let Some(name) = name {
        check_length(errors, "name", name);
    }
    if let Some(email) = email {
        check_length(errors, "email", email);
        if !is_email(email) {
            errors.add("email", Msg::new("validation.email").arg("attribute", "email"));
        }
        if !errors.has("email") && app.db.read(|c| Ok(store::email_taken(c, email)?))? {
            errors.add("email", taken());
        }
    }
    if let Some(password) = password {
        if password.chars().count() < MIN_PASSWORD {
            errors.add("password", Msg::new("validation.min").arg("attribute", "password").arg("min", MIN_PASSWORD));
        }
    }
    Ok(())
}

fn check_length(errors: &mut FieldErrors, field: &str, value: &str) {
    if value.chars().count() > MAX_FIELD {
        errors.add(field, Msg::new("validation.max").arg("attribute", field).arg("max", MAX_FIELD));
    }
}

fn taken() -> Msg {
    Msg::new("validation.unique").arg("attribute", "email")
}

/// Creates an account (from fields that passed `validate_account`) that
/// needs no verification mail: verified by an admin, or not yet (the CLI's
/// `user create` without `--verified`, which sends nothing). The password
/// is hashed before the write, so the write lock is held only for the insert.
pub fn create_account(
    app: &Core,
    name: &str,
    email: &str,
    password: &str,
    lang: Lang,
    verified: bool,
) -> Result<User, Error> {
    let hash = crypto::hash_password(password);
    let now = app.clock.now();
    let new = store::NewUser {
        name,
        email,
        password_hash: &hash,
        language: lang.code(),
        verified_at: verified.then_some(now),
    };
    app.db.write(|tx| insert_account(tx, &new, now))
}

/// Inserts an account inside the caller's transaction; an email taken in
/// the meantime comes back as the same 422 as a validation failure.
pub fn insert_account(tx: &rusqlite::Connection, new: &store::NewUser, now: Micros) -> Result<User, Error> {
    let id = match store::insert_user(tx, new, now) {
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            return Err(FieldErrors::single("email", taken()))
        }
        other => other?,
    };
    store::find_user(tx, id)?.ok_or_else(|| Error::internal("inserted user vanished"))
}

/// Checks credentials and issues a token. Failures per email+IP are counted
/// and limited (a burst of parallel guesses can overshoot the limit by at
/// most the number of server threads, then is refused for the window); an unknown email costs the same time and gets the same
/// answer as a wrong password. The suspension is told only to someone who
/// knows the password.
pub fn login(
    app: &Core,
    email: &str,
    password: &str,
    otp_code: Option<&str>,
    device_name: &str,
    ip: IpAddr,
) -> Result<(User, String), Error> {
    let key = format!("login:{}|{ip}", email.to_lowercase());
    let limit = Limit { max: app.config.security.login_max_attempts, window: MINUTE };
    // One address trying many accounts is limited too, ten times as loosely.
    let ip_key = format!("login-ip:{ip}");
    let ip_limit = Limit { max: limit.max.saturating_mul(10), window: MINUTE };
    // And one account, from all addresses together (guesses spread over
    // many IPs), with back-off: four times the per-IP limit in 15 minutes,
    // then twenty times in a day.
    let account = email.to_lowercase();
    let account_limits = [
        (format!("login-account:{account}"), Limit { max: limit.max.saturating_mul(4), window: 15 * MINUTE }),
        (format!("login-account-day:{account}"), Limit { max: limit.max.saturating_mul(20), window: DAY }),
    ];
    let now = app.clock.now();
    let blocked = app.db.read(|c| {
        let mut worst = ratelimit::blocked(c, &key, limit, now)?.max(ratelimit::blocked(c, &ip_key, ip_limit, now)?);
        for (k, l) in &account_limits {
            worst = worst.max(ratelimit::blocked(c, k, *l, now)?);
        }
        Ok(worst)
    })?;
    if let Some(retry_after) = blocked {
        let message = Msg::new("auth.throttle").arg("seconds", retry_after);
        return Err(Error::TooManyRequests { message, retry_after });
    }
    let user = app.db.read(|c| Ok(store::find_user_by_email(c, email)?))?;
    let user = match user {
        Some(user) if crypto::verify_password(password, &user.password_hash) => Some(user),
        Some(_) => None,
        None => {
            crypto::burn_password_check(password);
            None
        }
    };
    let Some(user) = user else {
        app.db.write(|tx| {
            ratelimit::hit(tx, &key, limit, now)?;
            for (k, l) in &account_limits {
                ratelimit::hit(tx, k, *l, now)?;
            }
            Ok(ratelimit::hit(tx, &ip_key, ip_limit, now)?)
        })?;
        return Err(bad_credentials());
    };
    if user.account_status != "active" {
        return Err(suspended());
    }
    // With 2FA, a TOTP (or a recovery code) is needed too; the password
    // was right, so the failure counts against the code, not the login.
    let token = app.db.write(|tx| {
        if user.two_factor_enabled {
            let Some(code) = otp_code.filter(|c| !c.trim().is_empty()) else { return Ok(None) };
            if !twofa::check_code(app, tx, user.id, code, true)? {
                return Ok(None);
            }
        }
        ratelimit::clear(tx, &key)?;
        Ok(Some(issue_token(app, tx, user.id, device_name, now)?))
    })?;
    let token = token.ok_or(Error::TwoFactorRequired)?;
    Ok((user, token))
}

fn bad_credentials() -> Error {
    FieldErrors::single("email", Msg::new("auth.failed"))
}

fn suspended() -> Error {
    Error::Forbidden(Msg::new("auth.suspended"))
}

/// Stores a new token and returns its plain text `<id>|<40 characters>`,
/// which is shown once and never stored.
fn issue_token(
    app: &Core,
    conn: &rusqlite::Connection,
    user_id: i64,
    name: &str,
    now: Micros,
) -> Result<String, Error> {
    let secret = crypto::random_alphanumeric(40);
    let ttl = app.config.security.token_ttl_days;
    let expires_at = (ttl > 0).then(|| now + i64::from(ttl) * DAY);
    let id = store::insert_token(conn, user_id, name, &crypto::sha256_hex(secret.as_bytes()), expires_at, now)?;
    Ok(format!("{id}|{secret}"))
}

/// Resolves a bearer token to its session. Anything malformed, unknown,
/// expired or forged is `Unauthenticated`; a suspended owner is refused.
pub fn authenticate(app: &Core, raw: &str) -> Result<Session, Error> {
    let (id, secret) = raw.trim().split_once('|').ok_or(Error::Unauthenticated)?;
    let id: i64 = id.parse().map_err(|_| Error::Unauthenticated)?;
    let found = app.db.read(|c| Ok(store::find_session(c, id)?))?;
    let (user, token) = found.ok_or(Error::Unauthenticated)?;
    let hash = crypto::sha256_hex(secret.as_bytes());
    let now = app.clock.now();
    if !crypto::ct_eq(hash.as_bytes(), token.token_hash.as_bytes()) || token.expires_at.is_some_and(|t| t <= now) {
        return Err(Error::Unauthenticated);
    }
    if user.account_status != "active" {
        return Err(suspended());
    }
    if token.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY) {
        // Bookkeeping only: a busy database must not fail the request.
        if let Err(e) = app.db.write(|tx| Ok(store::touch_token(tx, id, now)?)) {
            app.log.line(format!("warning: could not record last_used_at of token {}: {e}", id));
        }
    }
    Ok(Session { user, token_id: id })
}

/// The `verified` guard of later routes.
pub fn require_verified(user: &User) -> Result<(), Error> {
    match user.email_verified_at {
        Some(_) => Ok(()),
        None => Err(Error::Unverified),
    }
}

/// Revokes one token; the owner's other sessions stay.
pub fn revoke_token(app: &Core, token_id: i64) -> Result<bool, Error> {
    app.db.write(|tx| Ok(store::delete_token(tx, token_id)?))
}

/// `GET /api/user`: the seed's fields plus the account settings and the
/// postback URL (with the user's secret, made by `tracking`) to paste into
/// a network.
pub fn user_json(user: &User, postback_url: &str) -> Value {
    json!({
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "email_verified_at": user.email_verified_at.map(clock::format),
        "account_status": user.account_status,
        "language": user.language,
        "currency": user.currency,
        "phone": user.phone,
        "two_factor_enabled": user.two_factor_enabled,
        "postback_url": postback_url,
        "postback_allowlist": user.postback_allowlist.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "created_at": clock::format(user.created_at),
    })
}

/// The user with this id, or 404.
pub fn find_by_id(app: &Core, id: i64) -> Result<User, Error> {
    app.db.read(|c| Ok(store::find_user(c, id)?))?.ok_or(Error::NotFound)
}

/// Finds a user by numeric id or by email, for the CLI.
pub fn find(app: &Core, who: &str) -> Result<User, Error> {
    let user = app.db.read(|c| {
        Ok(match who.parse::<i64>() {
            Ok(id) => store::find_user(c, id)?,
            Err(_) => store::find_user_by_email(c, who)?,
        })
    })?;
    user.ok_or(Error::NotFound)
}

/// Sets a new password and revokes every token of the user, so a leaked
/// password stops working everywhere at once.
pub fn set_password(app: &Core, user_id: i64, password: &str) -> Result<(), Error> {
    let mut errors = FieldErrors::default();
    if password.chars().count() < MIN_PASSWORD {
        errors.add("password", Msg::new("validation.min").arg("attribute", "password").arg("min", MIN_PASSWORD));
    }
    errors.into_result()?;
    let hash = crypto::hash_password(password);
    let now = app.clock.now();
    app.db.write(|tx| {
        if !store::set_password_hash(tx, user_id, &hash, now)? {
            return Err(Error::NotFound);
        }
        store::delete_tokens_of_user(tx, user_id)?;
        Ok(())
    })
}

pub fn set_status(app: &Core, user_id: i64, status: &str) -> Result<(), Error> {
    if !STATUSES.contains(&status) {
        let msg = Msg::new("validation.in").arg("attribute", "status").arg("values", STATUSES.join(", "));
        return Err(FieldErrors::single("status", msg));
    }
    let now = app.clock.now();
    app.db.write(|tx| if store::set_status(tx, user_id, status, now)? { Ok(()) } else { Err(Error::NotFound) })
}

pub fn mark_verified(app: &Core, user_id: i64) -> Result<(), Error> {
    let now = app.clock.now();
    app.db.write(|tx| if store::mark_verified(tx, user_id, now)? { Ok(()) } else { Err(Error::NotFound) })
}

pub fn delete(app: &Core, user_id: i64) -> Result<(), Error> {
    app.db.write(|tx| if store::delete_user(tx, user_id)? { Ok(()) } else { Err(Error::NotFound) })
}

/// Deletes expired tokens, in batches; run by the maintenance thread.
pub fn prune(conn: &rusqlite::Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    store::prune_expired_tokens(conn, now, limit)
}
