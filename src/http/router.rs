//! The route table: path, then method (a known path with another method is
//! a 405), each path with the shape its answers take (plain §2, seed 003's
//! or seed 004's envelope) and each method with the guard it needs.

use super::assets;
use super::auth::{self, Guard};
use super::respond::{self, Shape};
use super::routes::{accounts, metrics, notify, settings, tracking, verification};
use super::{input, Ctx};
use crate::error::Error;
use rouille::Response;
use serde_json::json;

type Handler = fn(&Ctx) -> Result<Response, Error>;
type Methods = &'static [(&'static str, Guard, Handler)];

fn routes(segments: &[&str]) -> Option<(Shape, Methods)> {
    use Guard::*;
    use Shape::*;
    Some(match segments {
        [page] if assets::PAGES.contains(page) => (Plain, &[("GET", Public, assets::page)]),
        ["assets", _file] => (Plain, &[("GET", Public, assets::asset)]),
        ["api", "health"] => (Plain, &[("GET", Public, health)]),
        // Its own bearer token (server.metrics_token), checked by the handler.
        ["metrics"] => (Plain, &[("GET", Public, metrics::serve)]),
        ["api", "openapi.json"] => (Plain, &[("GET", Public, super::openapi::serve)]),
        ["api", "register"] => (Plain, &[("POST", Public, accounts::register)]),
        ["api", "login"] => (Plain, &[("POST", Public, accounts::login)]),
        ["api", "logout"] => (Plain, &[("POST", Auth, accounts::logout)]),
        ["api", "user"] => (Plain, &[("GET", Auth, accounts::me)]),
        ["api", "email", "verify"] => (Plain, &[("POST", Auth, verification::verify_code)]),
        ["api", "email", "resend"] => (Plain, &[("POST", Auth, verification::resend_code)]),
        ["api", "email", "verification-notification"] => (Seed003, &[("POST", Auth, verification::send_link)]),
        ["api", "email", "verification-resend"] => (Seed003, &[("POST", Auth, verification::resend_link)]),
        ["api", "email", "verify", _id, _hash] => (Plain, &[("GET", Public, verification::verify_link)]),
        ["api", "links"] => (
            Plain,
            &[("GET", Api("links:read"), tracking::list_links), ("POST", Api("links:write"), tracking::create_link)],
        ),
        ["api", "links", _id] => (
            Plain,
            &[
                ("GET", Api("links:read"), tracking::show_link),
                ("PUT", Api("links:write"), tracking::update_link),
                ("DELETE", Api("links:write"), tracking::delete_link),
            ],
        ),
        ["api", "links", _id, "routing"] => (
            Plain,
            &[
                ("GET", Api("links:read"), tracking::show_routing),
                ("PUT", Api("links:write"), tracking::update_routing),
            ],
        ),
        ["api", "links", _id, "stats"] => (Plain, &[("GET", Api("reports:read"), tracking::link_stats)]),
        ["go", _slug] => (Plain, &[("GET", Public, tracking::click)]),
        ["click", _clickid] => (Plain, &[("GET", Public, tracking::leave_lander)]),
        ["api", "postback", "conversion"] => {
            (Plain, &[("GET", Public, tracking::conversion), ("POST", Public, tracking::conversion)])
        }
        ["api", "costs"] => (
            Plain,
            &[
                ("GET", Api("reports:read"), tracking::list_costs),
                ("POST", Api("conversions:write"), tracking::set_cost),
            ],
        ),
        ["api", "costs", "import"] => (Plain, &[("POST", Api("conversions:write"), tracking::import_costs)]),
        ["api", "costs", _id] => (Plain, &[("DELETE", Api("conversions:write"), tracking::delete_cost)]),
        ["api", "conversions", "import"] => {
            (Plain, &[("POST", Api("conversions:write"), tracking::import_conversions)])
        }
        ["api", "postbacks"] => (Plain, &[("GET", Verified, tracking::postback_log)]),
        ["api", "notifications"] => (Plain, &[("GET", Verified, notify::show), ("PUT", Verified, notify::update)]),
        ["api", "notifications", "test"] => (Plain, &[("POST", Verified, notify::test)]),
        ["api", "payment", "notification"] => (Plain, &[("POST", Public, tracking::payment_notification)]),
        ["api", "dashboard-data"] => (Plain, &[("GET", Api("dashboard:read"), tracking::dashboard_data)]),
        ["api", "reports"] => (Plain, &[("GET", Api("reports:read"), tracking::reports)]),
        ["api", "user", "postback-secret"] => (Plain, &[("POST", Verified, tracking::rotate_secret)]),
        ["api", "user", "postback-allowlist"] => (Plain, &[("PUT", Verified, tracking::set_allowlist)]),
        // Seed 004: account settings, in its envelope; never reachable with an API key.
        ["api", "users", "phone-otp"] => (Seed004, &[("POST", Verified, settings::send_phone_code)]),
        ["api", "users", "phone-bind"] => (Seed004, &[("POST", Verified, settings::bind_phone)]),
        ["api", "users", "twofa"] => (Seed004, &[("GET", Verified, settings::twofa_status)]),
        ["api", "users", "twofa-bind"] => (Seed004, &[("POST", Verified, settings::twofa_bind)]),
        ["api", "users", "twofa-unbind"] => (Seed004, &[("POST", Verified, settings::twofa_unbind)]),
        ["api", "users", "twofa-recovery-codes"] => (Seed004, &[("POST", Verified, settings::twofa_recovery_codes)]),
        ["api", "users", "language"] => (Seed004, &[("PATCH", Verified, settings::language)]),
        ["api", "users", "currency"] => (Seed004, &[("PATCH", Verified, settings::currency)]),
        ["api", "users", "email-otp"] => (Seed004, &[("POST", Verified, settings::email_otp)]),
        ["api", "user", "api-key"] => (
            Seed004,
            &[
                ("GET", Verified, settings::list_api_keys),
                ("POST", Verified, settings::create_api_key),
                ("PUT", Verified, settings::regenerate_api_key),
                ("DELETE", Verified, settings::delete_api_key),
            ],
        ),
        _ => return None,
    })
}

pub fn dispatch(ctx: &Ctx) -> Result<Response, Error> {
    let path = input::raw_path(ctx.req);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (shape, methods) = routes(&segments).ok_or(Error::NotFound)?;
    ctx.shape.set(shape);
    let method = ctx.req.method();
    // HEAD is answered as GET; the connection layer leaves the body out.
    let wanted = if method == "HEAD" { "GET" } else { method };
    let Some((_, guard, handler)) = methods.iter().find(|(m, _, _)| *m == wanted) else {
        let allowed: Vec<&str> = methods.iter().map(|(m, _, _)| *m).collect();
        return Err(Error::MethodNotAllowed { method: method.to_string(), allowed: allowed.join(", ") });
    };
    auth::check(ctx, *guard)?;
    handler(ctx)
}

/// `GET /api/health`: answers 200 only when the database answers; names
/// the GeoIP database in use (the web UI credits it as its licence asks).
fn health(ctx: &Ctx) -> Result<Response, Error> {
    let schema_version = ctx.app.db.schema_version()?;
    let geoip = ctx.app.tracking.geoip.loaded().map(|(database, built)| {
        json!({"database": database, "built": crate::clock::local_date(built as i64 * crate::clock::SECOND, 0)})
    });
    Ok(respond::json(
        200,
        &json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "database": "ok",
            "schema_version": schema_version,
            "geoip": geoip,
        }),
    ))
}
