//! The one place an `Error` becomes a response, plus the JSON and header
//! helpers every handler answers with.

use crate::error::Error;
use crate::i18n::{Lang, Msg};
use rouille::Response;
use serde_json::{json, Map, Value};

pub fn json(status: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::from_data("application/json", bytes).with_status_code(status)
}

/// `{"message": "<localized>"}` with a status.
pub fn message(status: u16, msg: &Msg, lang: Lang) -> Response {
    json(status, &json!({ "message": msg.render(lang) }))
}

/// Renders an error in the contract's shape for its class. Exhaustive on
/// purpose: a new variant does not compile until it has a status and a body.
pub fn error(error: &Error, lang: Lang) -> Response {
    let text = |key: &'static str| Msg::new(key).render(lang);
    match error {
        Error::BadRequest(msg) => message(400, msg, lang),
        Error::Unauthenticated => json(401, &json!({ "message": text("http.unauthenticated") })),
        Error::Unverified => json(403, &json!({ "message": text("http.unverified") })),
        Error::Forbidden(msg) => message(403, msg, lang),
        Error::Settings { status, msg } => {
            json(*status, &json!({ "success": false, "code": msg.key, "message": msg.render(lang), "data": null }))
        }
        Error::TwoFactorRequired => {
            json(403, &json!({ "message": text("auth.otp_failed"), "two_factor_required": true }))
        }
        Error::Envelope { status, msg } => json(*status, &json!({ "success": false, "message": msg.render(lang) })),
        Error::Unprocessable(msg) => message(422, msg, lang),
        Error::NotFound => json(404, &json!({ "message": text("http.not_found") })),
        Error::MethodNotAllowed { method, allowed } => {
            let msg = Msg::new("http.method_not_allowed").arg("method", method).arg("allowed", allowed);
            message(405, &msg, lang).with_additional_header("Allow", allowed.replace(", ", ","))
        }
        Error::PayloadTooLarge { limit } => {
            // The unread rest of the body is still on the socket: close it.
            message(413, &Msg::new("http.payload_too_large").arg("limit", limit), lang)
                .with_additional_header("Connection", "close")
        }
        Error::Validation(fields) => {
            let errors: Map<String, Value> = fields
                .0
                .iter()
                .map(|(field, msgs)| (field.clone(), msgs.iter().map(|m| Value::from(m.render(lang))).collect()))
                .collect();
            json(422, &json!({ "message": text("http.invalid"), "errors": errors }))
        }
        Error::TooManyRequests { message, retry_after } => {
            json(429, &json!({ "message": message.render(lang), "retry_after": retry_after }))
                .with_additional_header("Retry-After", retry_after.to_string())
        }
        Error::Busy => json(503, &json!({ "message": text("http.busy") })).with_additional_header("Retry-After", "1"),
        Error::Internal(_) => json(500, &json!({ "message": text("http.server_error") })),
    }
}

/// Renders an error of a seed 004 route: the failures a handler reports
/// (validation, a wrong code, a refusal, a limit) in the envelope with
/// their message key as `code`; the rest as on every other route.
pub fn envelope_error(error: &Error, lang: Lang) -> Response {
    let envelope = |status: u16, code: &str, message: String| {
        json(status, &json!({ "success": false, "code": code, "message": message, "data": null }))
    };
    match error {
        Error::Validation(fields) => {
            let errors: Map<String, Value> = fields
                .0
                .iter()
                .map(|(field, msgs)| (field.clone(), msgs.iter().map(|m| Value::from(m.render(lang))).collect()))
                .collect();
            json(
                422,
                &json!({ "success": false, "code": "api.validation_error",
                         "message": Msg::new("http.invalid").render(lang), "errors": errors, "data": null }),
            )
        }
        Error::Forbidden(msg) => envelope(403, msg.key, msg.render(lang)),
        Error::Unprocessable(msg) => envelope(422, msg.key, msg.render(lang)),
        Error::BadRequest(msg) => envelope(400, msg.key, msg.render(lang)),
        Error::TooManyRequests { message, retry_after } => json(
            429,
            &json!({ "success": false, "code": message.key, "message": message.render(lang), "retry_after": retry_after, "data": null }),
        )
        .with_additional_header("Retry-After", retry_after.to_string()),
        other => self::error(other, lang),
    }
}

/// Headers every answer carries, API or page.
pub fn with_security_headers(response: Response) -> Response {
    let is_json = response
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Content-Type") && v.starts_with("application/json"));
    let response = response
        .with_unique_header("X-Content-Type-Options", "nosniff")
        .with_unique_header("X-Frame-Options", "DENY")
        .with_unique_header("Referrer-Policy", "no-referrer");
    if is_json {
        response.with_unique_header("Cache-Control", "no-store")
    } else {
        response
    }
}
