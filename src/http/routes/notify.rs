//! HTTP adapters for notifications (SPEC §13). Session only: an API key
//! never reads or changes where a user's alerts and secrets go.

use crate::error::Error;
use crate::http::respond;
use crate::http::Ctx;
use crate::tracking::notify;
use rouille::Response;
use serde_json::json;

/// `GET /api/notifications`: the channels, secrets masked.
pub fn show(ctx: &Ctx) -> Result<Response, Error> {
    let user = ctx.session()?.user.id;
    let settings = ctx.app.db.read(|c| Ok(notify::load(c, user)?))?;
    Ok(respond::json(200, &notify::to_json(ctx.app, user, &settings, None)?))
}

/// `PUT /api/notifications`: a key left out stays; the answer carries a
/// webhook secret whole only when this request made it.
pub fn update(ctx: &Ctx) -> Result<Response, Error> {
    let user = ctx.session()?.user.id;
    let input = ctx.json()?;
    let saved = notify::update(ctx.app, user, &input.0)?;
    Ok(respond::json(200, &notify::to_json(ctx.app, user, &saved.settings, saved.new_secret.as_deref())?))
}

/// `POST /api/notifications/test`: what each provider answered.
pub fn test(ctx: &Ctx) -> Result<Response, Error> {
    let user = ctx.session()?.user.id;
    let results = notify::test(ctx.app, user)?;
    Ok(respond::json(200, &json!({"results": results})))
}
