//! Account settings of seed 004: phone binding by SMS code, TOTP 2FA,
//! language and currency, email codes for sensitive actions, and API keys.
//! Every route answers in the envelope
//! `{"success", "code", "message", "data"}`.

pub mod api_keys;
pub mod otp;
pub mod phone;
pub mod prefs;
pub mod twofa;

use crate::http::{respond, Ctx};
use crate::i18n::Msg;
use rouille::Response;
use serde_json::{json, Value};

/// A success in the envelope: 200 with the message of `code`.
pub fn ok(ctx: &Ctx, code: &'static str, data: Value) -> Response {
    let message = Msg::new(code).render(ctx.lang.get());
    respond::json(200, &json!({"success": true, "code": code, "message": message, "data": data}))
}
