//! HTTP adapters for email verification.

use crate::error::{Error, FieldErrors};
use crate::http::respond;
use crate::http::Ctx;
use crate::i18n::Msg;
use crate::verification::{self, LinkOutcome};
use rouille::Response;
use serde_json::json;

/// `POST /api/email/verify {code}`.
pub fn verify_code(ctx: &Ctx) -> Result<Response, Error> {
    let session = ctx.session()?;
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let code = input.string("code", &mut errors);
    if session.user.email_verified_at.is_some() {
        return Err(Error::BadRequest(Msg::new("verify.already")));
    }
    errors.into_result()?;
    verification::verify_code(ctx.app, &session.user, code.as_deref().unwrap_or_default())?;
    let message = Msg::new("verify.code_success").render(ctx.lang.get());
    Ok(respond::json(200, &json!({"message": message, "redirect": "/dashboard"})))
}

/// `POST /api/email/resend`: a new code (and link) by mail.
pub fn resend_code(ctx: &Ctx) -> Result<Response, Error> {
    verification::resend(ctx.app, &ctx.session()?.user, ctx.ip)?;
    Ok(respond::message(200, &Msg::new("verify.code_resent"), ctx.lang.get()))
}

/// `POST /api/email/verification-notification`.
pub fn send_link(ctx: &Ctx) -> Result<Response, Error> {
    link_sent(ctx, "verify.link_sent")
}

/// `POST /api/email/verification-resend`.
pub fn resend_link(ctx: &Ctx) -> Result<Response, Error> {
    link_sent(ctx, "verify.link_resent")
}

/// Seed 003's envelope. The URL itself is shown only with the `log`
/// mailer (local development): anywhere else it would let the caller
/// verify an address they cannot read.
fn link_sent(ctx: &Ctx, message: &'static str) -> Result<Response, Error> {
    let url = verification::resend(ctx.app, &ctx.session()?.user, ctx.ip)?;
    let url = (ctx.app.config.mail.provider == "log").then_some(url);
    let lang = ctx.lang.get();
    Ok(respond::json(
        200,
        &json!({"success": true, "data": {"verification_url": url}, "message": Msg::new(message).render(lang)}),
    ))
}

/// `GET /api/email/verify/{id}/{hash}?expires=&signature=` (public). A
/// browser is sent on to the page the JSON would name.
pub fn verify_link(ctx: &Ctx) -> Result<Response, Error> {
    let (id, hash) = (ctx.segment(3), ctx.segment(4));
    let expires = ctx.req.get_param("expires");
    let signature = ctx.req.get_param("signature");
    let check_only = ctx.req.method() == "HEAD";
    let outcome = verification::verify_link(ctx.app, id, hash, expires.as_deref(), signature.as_deref(), check_only)?;
    let (status, state, key, page) = match outcome {
        LinkOutcome::Verified => (200, "success", "verify.link_success", "/login"),
        LinkOutcome::AlreadyVerified => (400, "error", "verify.already", "/login"),
        LinkOutcome::Invalid => (400, "error", "verify.link_invalid", "/email-verification-error"),
        LinkOutcome::UnknownUser => (404, "error", "verify.user_not_found", "/email-verification-error"),
    };
    let redirect_url = format!("{}{page}", ctx.app.config.app_url());
    if wants_html(ctx) {
        return Ok(Response::redirect_302(redirect_url));
    }
    let message = Msg::new(key).render(ctx.lang.get());
    Ok(respond::json(status, &json!({"status": state, "message": message, "redirect_url": redirect_url})))
}

/// A browser following the mailed link asks for HTML first.
fn wants_html(ctx: &Ctx) -> bool {
    let accept = ctx.req.header("Accept").unwrap_or("");
    accept.contains("text/html") && !accept.trim_start().starts_with("application/json")
}
