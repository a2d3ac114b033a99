//! Guards of the route table: who may call a route.

use super::Ctx;
use crate::accounts;
use crate::error::Error;

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
    let bearer = ctx.req.header("Authorization").and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
    });
    bearer.or_else(|| ctx.req.header("X-Token").map(|t| t.trim().to_string()))
}

/// Runs `guard`, leaving the session in `ctx` for the handler.
pub fn check(ctx: &Ctx, guard: Guard) -> Result<(), Error> {
    if guard == Guard::Public {
        return Ok(());
    }
    if let (Guard::Api(permission), None) = (guard, token(ctx)) {
        if ctx.req.header("X-API-KEY").is_some() {
            let session = crate::settings::api_keys::authenticate(ctx, permission)?;
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
