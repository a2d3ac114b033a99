//! The payment notification webhook, `POST /api/payment/notification`:
//! a payment provider reports a payment, signed with HMAC-SHA256 of the raw
//! body under `payment.secret` in `X-Callback-Signature`. Idempotent per
//! reference; `paid` makes the account `active`.

use super::parse_money;
use crate::accounts;
use crate::base::Core;
use crate::crypto;
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Map, Value};

pub const STATUSES: &[&str] = &["paid", "failed", "expired"];

/// Whether `signature` (hex, any case) is our HMAC of `body`.
pub fn signature_ok(secret: &str, body: &[u8], signature: Option<&str>) -> bool {
    let Some(given) = signature else { return false };
    !secret.is_empty() && crypto::hmac_sha256_verify(secret.as_bytes(), body, given)
}

fn field<'a>(body: &'a Map<String, Value>, name: &str, errors: &mut FieldErrors) -> Option<&'a str> {
    match body.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim()),
        Some(Value::Number(_)) if name == "amount" => None,
        _ => {
            errors.add(name, Msg::new("validation.required").arg("attribute", name));
            None
        }
    }
}

/// Records the notification; returns the answer body.
/// A notification whose fields all passed their checks.
struct Payment<'a> {
    reference: &'a str,
    email: &'a str,
    currency: &'a str,
    status: &'a str,
    amount: i64,
}

pub fn handle(app: &Core, body: &Map<String, Value>) -> Result<Value, Error> {
    let mut errors = FieldErrors::default();
    let reference = field(body, "reference", &mut errors);
    let email = field(body, "email", &mut errors);
    let currency = field(body, "currency", &mut errors);
    let status = field(body, "status", &mut errors);
    // A payment carries money: `0` would be a free way to lift `unpaid`.
    let amount = body.get("amount").and_then(parse_money).filter(|cents| *cents > 0);
    if amount.is_none() {
        errors.add("amount", Msg::new("validation.money").arg("attribute", "amount"));
    }
    if reference.is_some_and(|r| r.chars().count() > 255) {
        errors.add("reference", Msg::new("validation.max").arg("attribute", "reference").arg("max", 255));
    }
    if email.is_some_and(|e| !crate::text::is_email(e)) {
        errors.add("email", Msg::new("validation.email").arg("attribute", "email"));
    }
    if currency.is_some_and(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_alphabetic())) {
        errors.add("currency", Msg::new("validation.currency").arg("attribute", "currency"));
    }
    if status.is_some_and(|s| !STATUSES.contains(&s)) {
        errors.add("status", Msg::new("validation.in").arg("attribute", "status").arg("values", STATUSES.join(", ")));
    }
    let form = (|| {
        Some(Payment { reference: reference?, email: email?, currency: currency?, status: status?, amount: amount? })
    })();
    let Payment { reference, email, currency, status, amount } = errors.finish(form)?;
    let currency = currency.to_ascii_uppercase();
    let now = app.clock.now();
    app.db.write(|tx| {
        let user_id = accounts::store::id_by_email(tx, email)?;
        let previous: Option<(String, String)> = tx
            .query_row("SELECT status, email FROM payments WHERE reference = ?1", [reference], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // A reference belongs to the account it was first reported for.
        if previous.as_ref().is_some_and(|(_, first)| !first.eq_ignore_ascii_case(email)) {
            return Err(FieldErrors::single("reference", Msg::new("payment.reference_taken")));
        }
        let outcome = match previous.map(|(s, _)| s).as_deref() {
            Some(s) if s == status => "unchanged",
            Some(_) => {
                tx.execute(
                    "UPDATE payments SET status = ?2, amount_cents = ?3, currency = ?4, updated_at = ?5 WHERE reference = ?1",
                    params![reference, status, amount, currency, now],
                )?;
                "updated"
            }
            None => {
                tx.execute(
                    "INSERT INTO payments (reference, user_id, email, amount_cents, currency, status, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    params![reference, user_id, email, amount, currency, status, now],
                )?;
                "created"
            }
        };
        if outcome != "unchanged" && status == "paid" {
            if let Some(id) = user_id {
                accounts::store::activate_after_payment(tx, id, now)?;
            }
        }
        Ok(json!({"message": "Notification processed.", "outcome": outcome, "account_found": user_id.is_some()}))
    })
}
