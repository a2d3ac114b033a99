//! Guards of the route table: who may call a route.

use super::Ctx;
use crate::accounts::{self, Session};
use crate::crypto;
use crate::error::Error;
use crate::i18n::Msg;
use crate::settings::api_keys;

/// What a route requires before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Public,
    /// A valid token (`Authorization: Bearer` or `X-Token`).
    Auth,
    /// A valid token of a user whose email is verified.
    Verified,
    /// As `Verified`, or a request signed with an API key that has this permission.
    Api(&'static str),
}

/// The token sent with the request, if any.
pub fn token(ctx: &Ctx) -> Option<String> {
    token_in(|name| ctx.req.header(name).map(str::to_string))
}

/// The token among a request's headers (`header` looks one up):
/// `Authorization: Bearer <token>`, else `X-Token`.
pub fn token_in(header: impl Fn(&str) -> Option<String>) -> Option<String> {
    let bearer = header("Authorization").and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
    });
    bearer.or_else(|| header("X-Token").map(|t| t.trim().to_string()))
}

/// Whether an `X-API-TIMESTAMP` (unix milliseconds) is within the window
/// of `now_ms`.
pub fn fresh_timestamp(timestamp: &str, now_ms: i64) -> bool {
    timestamp.trim().parse::<i64>().is_ok_and(|ts| now_ms.abs_diff(ts) <= api_keys::WINDOW_MS as u64)
}

/// Runs `guard`, leaving the session in `ctx` for the handler.
pub fn check(ctx: &Ctx, guard: Guard) -> Result<(), Error> {
    if guard == Guard::Public {
        return Ok(());
    }
    if let (Guard::Api(permission), None) = (guard, token(ctx)) {
        if ctx.req.header("X-API-KEY").is_some() {
            let session = api_key(ctx, permission)?;
            ctx.set_session(session);
            return Ok(());
        }
    }
    let raw = token(ctx).ok_or(Error::Unauthenticated)?;
    let session = accounts::authenticate(ctx.app, &raw)?;
    if matches!(guard, Guard::Verified | Guard::Api(_)) {
        accounts::require_verified(&session.user)?;
    }
    ctx.set_session(session);
    Ok(())
}

/// Authenticates a request signed with an API key and checks `permission`.
/// Bad key, signature, stale timestamp or a replay → 401; a key without
/// the permission → 403. A signature is accepted once: the app's replay
/// guard remembers those seen within twice the time window.
fn api_key(ctx: &Ctx, permission: &str) -> Result<Session, Error> {
    let app = ctx.app;
    let header = |name: &str| ctx.req.header(name).map(str::trim).filter(|v| !v.is_empty());
    let (Some(api_key), Some(timestamp), Some(signature)) =
        (header("X-API-KEY"), header("X-API-TIMESTAMP"), header("X-API-SIGNATURE"))
    else {
        return Err(Error::Unauthenticated);
    };
    let now_ms = app.clock.now() / 1000;
    if !fresh_timestamp(timestamp, now_ms) {
        return Err(Error::Unauthenticated);
    }
    let key = api_keys::find_by_api_key(app, api_key)?.ok_or(Error::Unauthenticated)?;
    let mut message = format!("{timestamp}{}{}", ctx.req.method(), ctx.req.raw_url()).into_bytes();
    message.extend_from_slice(ctx.body()?);
    if !crypto::hmac_sha256_verify(api_keys::secret_of(app, api_key).as_bytes(), &message, signature) {
        return Err(Error::Unauthenticated);
    }
    // Remembered in one case, so the same signature in upper case is a replay too.
    if !app.api_replays.first_use(&signature.to_ascii_lowercase(), now_ms, 2 * api_keys::WINDOW_MS) {
        return Err(Error::Unauthenticated);
    }
    let user = accounts::find_by_id(app, key.user_id).map_err(|_| Error::Unauthenticated)?;
    if user.account_status != "active" {
        return Err(Error::Forbidden(Msg::new("auth.suspended")));
    }
    accounts::require_verified(&user)?;
    if !key.permissions.iter().any(|p| p == permission) {
        return Err(Error::Forbidden(Msg::new("api.permission_denied").arg("permission", permission)));
    }
    api_keys::touch(app, &key);
    Ok(Session { user, token_id: 0 })
}
