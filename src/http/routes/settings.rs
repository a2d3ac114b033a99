//! Seed 004's settings routes, answered in its envelope
//! `{"success", "code", "message", "data"}`: phone, 2FA, language,
//! currency, email codes and API keys.

use super::accounts::user_view;
use crate::accounts::{self, twofa};
use crate::clock;
use crate::error::{Error, FieldErrors};
use crate::http::input::{self, Input};
use crate::http::{respond, Ctx};
use crate::i18n::{Lang, Msg};
use crate::settings::api_keys::{self, Key, NewKey, SortBy, PERMISSIONS};
use crate::settings::{phone, prefs};
use rouille::Response;
use serde_json::{json, Value};

/// A success in the envelope: 200 with the message of `code`.
fn ok(ctx: &Ctx, code: &'static str, data: Value) -> Response {
    let message = Msg::new(code).render(ctx.lang.get());
    respond::json(200, &json!({"success": true, "code": code, "message": message, "data": data}))
}

/// The number (E.164) and, when asked for, the code of a phone form.
fn phone_fields(ctx: &Ctx, with_code: bool) -> Result<(String, String), Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let number = input.string("phone", &mut errors);
    let country = input.string("countryCode", &mut errors);
    let dial = input.string("dialCode", &mut errors);
    let code = if with_code { input.string("otpCode", &mut errors) } else { None };
    let number = phone::normalize(number.as_deref(), country.as_deref(), dial.as_deref(), &mut errors);
    match (errors.into_result(), number) {
        (Ok(()), Some(number)) => Ok((number, code.unwrap_or_default())),
        (Err(e), _) => Err(e),
        (Ok(()), None) => Err(FieldErrors::single("phone", Msg::new("validation.phone").arg("attribute", "phone"))),
    }
}

/// `POST /api/users/phone-otp {phone, countryCode, dialCode}`: texts a code.
pub fn send_phone_code(ctx: &Ctx) -> Result<Response, Error> {
    let (number, _) = phone_fields(ctx, false)?;
    phone::send_code(ctx.app, &ctx.session()?.user, &number, ctx.ip)?;
    Ok(ok(ctx, "api.otp_sent", json!({"phone": number})))
}

/// `POST /api/users/phone-bind {phone, countryCode, dialCode, otpCode}`.
pub fn bind_phone(ctx: &Ctx) -> Result<Response, Error> {
    let (number, code) = phone_fields(ctx, true)?;
    let user = &ctx.session()?.user;
    phone::bind(ctx.app, user, &number, &code)?;
    let user = accounts::find_by_id(ctx.app, user.id)?;
    Ok(ok(ctx, "api.mobile_verified", user_view(ctx, &user)))
}

fn otp_field(ctx: &Ctx) -> Result<String, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let code = input.string("otpCode", &mut errors);
    errors.into_result()?;
    Ok(code.unwrap_or_default())
}

/// `GET /api/users/twofa`: bound or not; while unbound, the secret to add
/// to an authenticator app, as text, `otpauth://` URL and QR code.
pub fn twofa_status(ctx: &Ctx) -> Result<Response, Error> {
    let data = match twofa::enrolment(ctx.app, &ctx.session()?.user)? {
        None => json!({"bound": true}),
        Some(e) => json!({"bound": false, "secret": e.secret, "otpauth_url": e.otpauth_url, "qr_svg": e.qr_svg}),
    };
    Ok(ok(ctx, "api.twofa_status", data))
}

/// `POST /api/users/twofa-bind {otpCode}`: answers with 8 recovery codes, shown this once.
pub fn twofa_bind(ctx: &Ctx) -> Result<Response, Error> {
    let code = otp_field(ctx)?;
    let codes = twofa::bind(ctx.app, &ctx.session()?.user, &code)?;
    Ok(ok(ctx, "api.twofa_binded_successfully", json!({"recovery_codes": codes})))
}

/// `POST /api/users/twofa-unbind {otpCode}`.
pub fn twofa_unbind(ctx: &Ctx) -> Result<Response, Error> {
    let code = otp_field(ctx)?;
    let user = &ctx.session()?.user;
    twofa::unbind(ctx.app, user, &code)?;
    let user = accounts::find_by_id(ctx.app, user.id)?;
    Ok(ok(ctx, "api.twofa_unbinded", user_view(ctx, &user)))
}

/// `POST /api/users/twofa-recovery-codes {otpCode}`.
pub fn twofa_recovery_codes(ctx: &Ctx) -> Result<Response, Error> {
    let code = otp_field(ctx)?;
    let codes = twofa::regenerate_recovery_codes(ctx.app, &ctx.session()?.user, &code)?;
    Ok(ok(ctx, "api.recovery_codes_regenerated", json!({"recovery_codes": codes})))
}

/// `PATCH /api/users/language {language}`: `id` or `en`; this answer already is in it.
pub fn language(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let code = input.string("language", &mut errors);
    errors.into_result()?;
    let lang = code.as_deref().and_then(Lang::parse).ok_or_else(|| {
        FieldErrors::single("language", Msg::new("validation.in").arg("attribute", "language").arg("values", "id, en"))
    })?;
    prefs::set_language(ctx.app, ctx.session()?.user.id, lang)?;
    ctx.lang.set(lang);
    Ok(ok(ctx, "api.language_updated_successfully", json!({"language": lang.code()})))
}

/// `PATCH /api/users/currency {currency}`: an ISO 4217 code, stored uppercase.
pub fn currency(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let code = input.string("currency", &mut errors);
    errors.into_result()?;
    let code = code
        .as_deref()
        .and_then(prefs::parse_currency)
        .ok_or_else(|| FieldErrors::single("currency", Msg::new("validation.currency").arg("attribute", "currency")))?;
    prefs::set_currency(ctx.app, ctx.session()?.user.id, &code)?;
    Ok(ok(ctx, "api.currency_updated_successfully", json!({"currency": code})))
}

/// `POST /api/users/email-otp`: mails a code for a sensitive action.
pub fn email_otp(ctx: &Ctx) -> Result<Response, Error> {
    let user = &ctx.session()?.user;
    prefs::send_email_otp(ctx.app, user)?;
    Ok(ok(ctx, "api.email_otp_sent", json!({"email": user.email})))
}

fn key_json(key: &Key, secret: Option<String>) -> Value {
    let mut v = json!({
        "id": key.id,
        "apiName": key.name,
        "apiKey": key.api_key,
        "permissions": key.permissions,
        "createdAt": clock::format(key.created_at),
    });
    if let Some(secret) = secret {
        v["secretKey"] = json!(secret);
    }
    v
}

/// `permissions`: a non-empty array of names from the fixed set.
fn read_permissions(input: &Input, errors: &mut FieldErrors) -> Vec<String> {
    let bad = |errors: &mut FieldErrors| {
        let msg = Msg::new("validation.in").arg("attribute", "permissions").arg("values", PERMISSIONS.join(", "));
        errors.add("permissions", msg);
    };
    match input.0.get("permissions") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut perms: Vec<String> = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(p) if PERMISSIONS.contains(&p) => {
                        if !perms.iter().any(|x| x == p) {
                            perms.push(p.to_string());
                        }
                    }
                    _ => {
                        bad(errors);
                        return Vec::new();
                    }
                }
            }
            perms
        }
        None | Some(Value::Null) => {
            errors.add("permissions", Msg::new("validation.required").arg("attribute", "permissions"));
            Vec::new()
        }
        _ => {
            bad(errors);
            Vec::new()
        }
    }
}

/// `POST /api/user/api-key {apiName, emailOtpCode, phoneOtpCode?, permissions}`.
pub fn create_api_key(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let name = input.string("apiName", &mut errors);
    if name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        errors.add("apiName", Msg::new("validation.max").arg("attribute", "api name").arg("max", 100));
    }
    let email_code = input.string("emailOtpCode", &mut errors);
    let phone_code = input.optional_string("phoneOtpCode", &mut errors);
    let permissions = read_permissions(&input, &mut errors);
    errors.into_result()?;
    let new =
        NewKey { name: name.unwrap_or_default(), email_code: email_code.unwrap_or_default(), phone_code, permissions };
    let (key, secret) = api_keys::create(ctx.app, &ctx.session()?.user, &new)?;
    Ok(ok(ctx, "api.generate_key_successful", key_json(&key, Some(secret))))
}

/// The `apiKeyId` + `apiKey` pair naming one of the user's keys.
fn key_ref(input: &Input, errors: &mut FieldErrors) -> (i64, String) {
    let id = match input.0.get("apiKeyId") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        None | Some(Value::Null) => {
            errors.add("apiKeyId", Msg::new("validation.required").arg("attribute", "api key id"));
            None
        }
        _ => None,
    };
    if id.is_none() && !errors.has("apiKeyId") {
        errors.add("apiKeyId", Msg::new("validation.integer").arg("attribute", "api key id"));
    }
    let key = input.string("apiKey", errors).unwrap_or_default();
    (id.unwrap_or(0), key)
}

/// `PUT /api/user/api-key {apiKeyId, apiKey, permissions}`.
pub fn regenerate_api_key(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let (id, old_key) = key_ref(&input, &mut errors);
    let permissions = read_permissions(&input, &mut errors);
    errors.into_result()?;
    let (key, secret) = api_keys::regenerate(ctx.app, ctx.session()?.user.id, id, &old_key, &permissions)?;
    Ok(ok(ctx, "api.edit_api_key_successful", key_json(&key, Some(secret))))
}

/// `DELETE /api/user/api-key {apiKeyId, apiKey}`.
pub fn delete_api_key(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let (id, key) = key_ref(&input, &mut errors);
    errors.into_result()?;
    api_keys::delete(ctx.app, ctx.session()?.user.id, id, &key)?;
    Ok(ok(ctx, "api.delete_api_key_successful", json!({"id": id})))
}

/// `GET /api/user/api-key?limit&offset&sortBy&sort`, each checked against
/// a whitelist (never pasted into SQL as sent).
pub fn list_api_keys(ctx: &Ctx) -> Result<Response, Error> {
    let sorts = [("id", SortBy::Id), ("apiName", SortBy::Name), ("createdAt", SortBy::CreatedAt)];
    let page = input::page(|name| ctx.req.get_param(name), 20, 100, &sorts)?;
    let (limit, offset) = (page.limit, page.offset);
    let (keys, total) = api_keys::list(ctx.app, ctx.session()?.user.id, page.sort_by, page.ascending, limit, offset)?;
    let items: Vec<Value> = keys.iter().map(|k| key_json(k, None)).collect();
    Ok(ok(
        ctx,
        "api.list_api_key_successful",
        json!({"items": items, "total": total, "limit": limit, "offset": offset}),
    ))
}
