//! HTTP adapters for accounts: parse, call the domain, render.

use crate::accounts::{self, User};
use crate::error::{Error, FieldErrors};
use crate::http::respond;
use crate::http::Ctx;
use crate::i18n::Msg;
use crate::tracking::postback;
use crate::verification;
use rouille::Response;
use serde_json::{json, Value};

/// The account as `GET /api/user` shows it, with its postback URL.
pub fn user_view(ctx: &Ctx, user: &User) -> Value {
    accounts::user_json(user, &postback::url(ctx.app, user.id, user.postback_secret_version))
}

/// `POST /api/register {name, email, password, password_confirmation}` → 201.
pub fn register(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let name = input.string("name", &mut errors);
    let email = input.string("email", &mut errors);
    let password = input.secret("password", &mut errors);
    let confirmation = input.optional_string("password_confirmation", &mut errors);
    accounts::validate_account(ctx.app, name.as_deref(), email.as_deref(), password.as_deref(), &mut errors)?;
    if password.is_some() && confirmation != password {
        errors.add("password", Msg::new("validation.confirmed").arg("attribute", "password"));
    }
    if errors.0.get("email").is_some_and(|msgs| msgs.iter().any(|m| m.key == "validation.unique")) {
        verification::count_taken_sign_up(ctx.app, ctx.ip)?;
    }
    let (name, email, password) = errors.finish((|| Some((name?, email?, password?)))())?;
    verification::register(ctx.app, &name, &email, &password, ctx.lang.get(), ctx.ip)?;
    Ok(respond::message(201, &Msg::new("register.success"), ctx.lang.get()))
}

/// `POST /api/login {email, password, device_name}` → `{user, token}`.
pub fn login(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let email = input.string("email", &mut errors);
    let password = input.secret("password", &mut errors);
    let device_name = input.string("device_name", &mut errors);
    let otp_code = input.optional_string("otp_code", &mut errors);
    if email.as_ref().is_some_and(|e| e.chars().count() > accounts::MAX_FIELD) {
        errors.add("email", Msg::new("validation.max").arg("attribute", "email").arg("max", accounts::MAX_FIELD));
    }
    if let Some(device_name) = &device_name {
        if device_name.chars().count() > accounts::MAX_FIELD {
            let msg = Msg::new("validation.max").arg("attribute", "device name").arg("max", accounts::MAX_FIELD);
            errors.add("device_name", msg);
        }
    }
    let (email, password, device_name) = errors.finish((|| Some((email?, password?, device_name?)))())?;
    let (user, token) = accounts::login(ctx.app, &email, &password, otp_code.as_deref(), &device_name, ctx.ip)?;
    Ok(respond::json(
        200,
        &json!({
            "user": { "id": user.id, "name": user.name, "email": user.email },
            "token": token,
        }),
    ))
}

/// `POST /api/logout`: revokes the token used for this request only.
pub fn logout(ctx: &Ctx) -> Result<Response, Error> {
    let session = ctx.session()?;
    accounts::revoke_token(ctx.app, session.token_id)?;
    Ok(respond::message(200, &Msg::new("logout.success"), ctx.lang.get()))
}

/// `GET /api/user`.
pub fn me(ctx: &Ctx) -> Result<Response, Error> {
    Ok(respond::json(200, &user_view(ctx, &ctx.session()?.user)))
}
