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

/// The shape of a route's answers, given by the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// §2 of the contract: `{"message"}`, Laravel's `errors`.
    Plain,
    /// Seed 003's link routes: a 400 is `{"success": false, "message"}`.
    Seed003,
    /// Seed 004's settings: `{"success": false, "code", "message", "data"}`.
    Seed004,
}

/// Renders an error in `shape`. The only place an error becomes a status
/// and a body; exhaustive on purpose, with no catch-all arm: a new variant
/// does not compile until it has a status and a body in every shape.
pub fn error(error: &Error, shape: Shape, lang: Lang) -> Response {
    let text = |key: &'static str| Msg::new(key).render(lang);
    // A failure the seeds' envelopes report with its message key as `code`.
    let reported = |status: u16, msg: &Msg| match shape {
        Shape::Seed004 => {
            json(status, &json!({ "success": false, "code": msg.key, "message": msg.render(lang), "data": null }))
        }
        Shape::Seed003 if status == 400 => json(400, &json!({ "success": false, "message": msg.render(lang) })),
        Shape::Seed003 | Shape::Plain => message(status, msg, lang),
    };
    match error {
        Error::BadRequest(msg) => reported(400, msg),
        Error::Unauthenticated => json(401, &json!({ "message": text("http.unauthenticated") })),
        Error::Unverified => json(403, &json!({ "message": text("http.unverified") })),
        Error::Forbidden(msg) => reported(403, msg),
        Error::TwoFactorRequired => {
            json(403, &json!({ "message": text("auth.otp_failed"), "two_factor_required": true }))
        }
        Error::NotFound => json(404, &json!({ "message": text("http.not_found") })),
        Error::Missing(msg) => reported(404, msg),
        Error::MethodNotAllowed { method, allowed } => {
            let msg = Msg::new("http.method_not_allowed").arg("method", method).arg("allowed", allowed);
            message(405, &msg, lang).with_additional_header("Allow", allowed.replace(", ", ","))
        }
        Error::PayloadTooLarge { limit } => {
            // The unread rest of the body is still on the socket: close it.
            message(413, &Msg::new("http.payload_too_large").arg("limit", limit), lang)
                .with_additional_header("Connection", "close")
        }
        Error::Unprocessable(msg) => reported(422, msg),
        Error::Validation(fields) => {
            let errors: Map<String, Value> = fields
                .0
                .iter()
                .map(|(field, msgs)| (field.clone(), msgs.iter().map(|m| Value::from(m.render(lang))).collect()))
                .collect();
            let message = text("http.invalid");
            match shape {
                Shape::Seed004 => json(
                    422,
                    &json!({ "success": false, "code": "api.validation_error", "message": message,
                             "errors": errors, "data": null }),
                ),
                Shape::Seed003 | Shape::Plain => json(422, &json!({ "message": message, "errors": errors })),
            }
        }
        Error::TooManyRequests { message, retry_after } => {
            let body = match shape {
                Shape::Seed004 => json!({ "success": false, "code": message.key, "message": message.render(lang),
                                          "retry_after": retry_after, "data": null }),
                Shape::Seed003 | Shape::Plain => json!({ "message": message.render(lang), "retry_after": retry_after }),
            };
            json(429, &body).with_additional_header("Retry-After", retry_after.to_string())
        }
        Error::Busy => json(503, &json!({ "message": text("http.busy") })).with_additional_header("Retry-After", "1"),
        Error::Config(_) | Error::Internal(_) => json(500, &json!({ "message": text("http.server_error") })),
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
