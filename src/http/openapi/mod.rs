//! The OpenAPI 3.1 description of the JSON API, served at
//! `GET /api/openapi.json`. `tests/openapi.rs` calls every operation it
//! lists against the running server and checks the statuses it documents.

use super::{respond, Ctx};
use crate::error::Error;
use rouille::Response;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

mod ops;
use ops::ops;

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn body(schema_value: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema_value}}})
}

fn reply(description: &str, schema_value: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema_value}}})
}

/// One operation: summary, security (None = public), request body,
/// success (status, schema), and the other statuses it answers with.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    request: Option<Value>,
    success: (u16, Value),
    errors: &'static [u16],
    params: Vec<Value>,
}

#[derive(Clone, Copy)]
enum Auth {
    Public,
    Token,
    /// A token, or an API key with this permission.
    Key(&'static str),
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
}

fn path_param(name: &str) -> Value {
    let mut param = json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    if name == "id" {
        // The first link of a new database: lets a fuzzer reach a real one.
        param["example"] = json!("1");
    }
    param
}

fn obj(props: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Map<String, Value> = props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn s() -> Value {
    json!({"type": "string"})
}

fn n() -> Value {
    json!({"type": "number"})
}

fn components() -> Value {
    json!({
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "`<id>|<40 characters>` from /api/login"},
            "xToken": {"type": "apiKey", "in": "header", "name": "X-Token"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY",
                       "description": "With X-API-TIMESTAMP (unix ms) and X-API-SIGNATURE = hex HMAC-SHA256(secret, timestamp + METHOD + path?query + body)"},
        },
        "schemas": {
            "Message": obj(&[("message", s())], &["message"]),
            "Error": obj(&[("message", s()), ("errors", json!({"type": "object"})), ("retry_after", n())], &["message"]),
            "Envelope": obj(&[("success", json!({"type": "boolean"})), ("code", s()), ("message", s()), ("data", json!({})),
                              ("errors", json!({"type": "object"})), ("retry_after", n())], &["success", "code", "message"]),
            "LinkSent": obj(&[("success", json!({"type": "boolean"})), ("message", s()),
                              ("data", obj(&[("verification_url", json!({"type": ["string", "null"]}))], &[]))], &["success", "message"]),
            "LinkResult": obj(&[("status", s()), ("message", s()), ("redirect_url", s())], &["status", "message"]),
            "User": obj(&[("id", n()), ("name", s()), ("email", s()), ("email_verified_at", json!({"type": ["string", "null"]})),
                          ("account_status", s()), ("language", s()), ("currency", s()), ("phone", json!({"type": ["string", "null"]})),
                          ("two_factor_enabled", json!({"type": "boolean"})), ("postback_url", s())], &["id", "name", "email", "account_status"]),
            "Link": obj(&[("id", n()), ("name", s()), ("url", s()), ("slug", s()), ("tracking_url", s()), ("payout", n()),
                          ("status", s()), ("source_postback_url", s()), ("fallback_url", json!({"type": ["string", "null"]})),
                          ("cost_model", json!({"enum": ["none", "cpc", "param"]})), ("cost_value", n()),
                          ("created_at", s()), ("clicks", json!({"type": "integer", "description": "all time; in lists"}))],
                        &["id", "name", "url", "slug", "tracking_url", "payout", "status"]),
            "LinkInput": obj(&[("name", s()), ("url", s()), ("payout", json!({"type": ["string", "number"]})), ("status", s()),
                               ("slug", s()), ("source_postback_url", s()), ("fallback_url", s()),
                               ("cost_model", json!({"enum": ["none", "cpc", "param"]})),
                               ("cost_value", json!({"type": ["string", "number"], "description": "per click, 0 to 1000"}))], &[]),
            "Destination": obj(&[("id", n()), ("kind", json!({"enum": ["offer", "lander"]})), ("name", s()), ("url", s()),
                                 ("weight", json!({"type": "integer", "minimum": 0, "maximum": 1000})),
                                 ("payout", json!({"type": ["number", "string", "null"]})),
                                 ("daily_cap", json!({"type": ["integer", "null"], "minimum": 1})),
                                 ("status", json!({"enum": ["active", "paused"]})),
                                 ("monitor", json!({"type": "object", "readOnly": true,
                                                    "description": "offer monitoring: state up, down or unknown, checked_at, error"}))],
                               &["name", "url"]),
            "Rule": obj(&[("name", s()),
                          ("if", obj(&[("country", json!({"type": "array", "items": s()})),
                                       ("device", json!({"type": "array", "items": {"enum": ["mobile", "tablet", "desktop", "bot"]}})),
                                       ("os", json!({"type": "array", "items": {"enum": ["android", "ios", "windows", "macos", "linux", "other"]}})),
                                       ("language", json!({"type": "array", "items": s()})),
                                       ("hour", obj(&[("from", json!({"type": "integer"})), ("to", json!({"type": "integer"}))], &["from", "to"])),
                                       ("param", json!({"type": "object", "additionalProperties": {"type": "array", "items": s()}})),
                                       ("unique", json!({"type": "boolean"}))], &[])),
                          ("to", json!({"type": "array", "items": s(), "description": "destination names"}))], &["to"]),
            "Routing": obj(&[("destinations", json!({"type": "array", "items": schema("Destination"), "maxItems": 50})),
                             ("rules", json!({"type": "array", "items": schema("Rule"), "maxItems": 50})),
                             ("mode", json!({"enum": ["weighted", "optimize"]})),
                             ("fallback_url", json!({"type": ["string", "null"]}))], &["destinations"]),
            "DestinationStats": obj(&[("id", n()), ("name", s()), ("kind", s()), ("status", s()), ("clicks", n()), ("unique", n()),
                                      ("lander_clicks", n()), ("conversions", n()), ("approved", n()), ("revenue", n()),
                                      ("cost", n()), ("profit", n()), ("cr", n()), ("epc", n()),
                                      ("p_best", json!({"type": ["number", "null"]})), ("ctr", n())],
                                    &["id", "name", "kind", "clicks", "unique", "lander_clicks", "conversions", "approved",
                                      "revenue", "cost", "profit", "cr", "epc", "p_best"]),
            "CostEntry": obj(&[("id", n()), ("link_id", n()), ("day", s()), ("sub_id", json!({"type": ["string", "null"]})),
                               ("amount", n()), ("created_at", s())], &["id", "link_id", "day", "amount"]),
            "NotifyEvents": json!({"type": "array", "maxItems": 20, "items": {"enum": ["conversion", "daily_digest",
                                   "postback_rejected", "destination_down", "destination_up", "stop_loss"]}}),
            "Notifications": obj(&[("telegram", json!({"type": ["object", "null"], "properties": {
                                       "bot_token": {"type": "string", "description": "masked: the bot's id and the last 4 characters"},
                                       "chat_id": s(), "events": schema("NotifyEvents"),
                                       "last_error": {"type": ["object", "null"]}}})),
                                   ("webhook", json!({"type": ["object", "null"], "properties": {
                                       "url": s(), "events": schema("NotifyEvents"),
                                       "secret": {"type": "string", "description": "whole only in the answer that made it, else masked"},
                                       "last_error": {"type": ["object", "null"]}}})),
                                   ("digest_hour", json!({"type": "integer", "minimum": 0, "maximum": 23})),
                                   ("stop_loss_amount", json!({"type": ["number", "null"]})),
                                   ("event_names", json!({"type": "array", "items": s()}))],
                                 &["telegram", "webhook", "digest_hour", "stop_loss_amount", "event_names"]),
            "NotificationsInput": obj(&[("telegram", json!({"type": ["object", "null"], "properties": {
                                            "bot_token": {"type": "string", "description": "123456789:AA... from @BotFather; left out keeps the stored one"},
                                            "chat_id": {"type": ["string", "integer"]}, "events": schema("NotifyEvents")},
                                            "required": ["chat_id"]})),
                                        ("webhook", json!({"type": ["object", "null"], "properties": {
                                            "url": s(), "events": schema("NotifyEvents"), "rotate_secret": {"type": "boolean"}},
                                            "required": ["url"]})),
                                        ("digest_hour", json!({"type": "integer", "minimum": 0, "maximum": 23})),
                                        ("stop_loss_amount", json!({"type": ["number", "string", "null"]}))], &[]),
            "Postback": obj(&[("message", s()), ("outcome", s()), ("lead", json!({"type": "object"}))], &["message", "outcome"]),
            "Dashboard": obj(&[("summary", obj(&[("liveClicksLast30Seconds", n()), ("clicksToday", n()), ("totalLeads", n()), ("totalPayout", n()),
                                                  ("costToday", n()), ("revenueToday", n()), ("profitToday", n())],
                                              &["liveClicksLast30Seconds", "clicksToday", "totalLeads", "totalPayout"])),
                               ("report", json!({"type": "array"})), ("recent_clicks", json!({"type": "array"})), ("recent_leads", json!({"type": "array"}))],
                             &["summary", "report", "recent_clicks", "recent_leads"]),
        }
    })
}

/// The whole document.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = Map::new();
        for op in ops() {
            let mut responses = Map::new();
            let success = if op.success.0 == 302 {
                json!({"description": "Redirect", "headers": {"Location": {"schema": {"type": "string"}}}})
            } else {
                reply("Success", op.success.1.clone())
            };
            responses.insert(op.success.0.to_string(), success);
            for status in op.errors {
                // Seed 004's routes answer errors in their envelope.
                let envelope = op.path.starts_with("/api/users/") || op.path == "/api/user/api-key";
                let schema_value = if envelope { schema("Envelope") } else { schema("Error") };
                responses.insert(status.to_string(), reply("See the contract", schema_value));
            }
            if op.request.is_some() {
                responses.insert("400".into(), reply("The body is not a JSON object", schema("Error")));
                responses.insert("413".into(), reply("The body is over server.max_body_bytes", schema("Error")));
            }
            if op.path == "/go/{slug}" || op.path == "/click/{clickid}" {
                // Visitors' browsers get a page, not JSON.
                let page = json!({"description": "Unknown click or link, or a paused link", "content": {"text/html": {}}});
                responses.insert("404".into(), page);
            }
            responses.insert("405".into(), reply("Method not allowed", schema("Error")));
            responses.insert("500".into(), reply("Server error", schema("Error")));
            responses.insert("503".into(), reply("The database stayed busy", schema("Error")));
            let security = match op.auth {
                Auth::Public => json!([]),
                Auth::Token => json!([{"bearer": []}, {"xToken": []}]),
                Auth::Key(_) => json!([{"bearer": []}, {"xToken": []}, {"apiKey": []}]),
            };
            let mut operation = json!({"summary": op.summary, "security": security, "parameters": op.params, "responses": responses});
            if let Auth::Key(permission) = op.auth {
                operation["x-api-key-permission"] = json!(permission);
            }
            if let Some(request) = op.request.clone() {
                operation["requestBody"] = request;
            }
            let entry = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
            entry[op.method] = operation;
        }
        json!({
            "openapi": "3.1.0",
            "info": {"title": "apextrack", "version": env!("CARGO_PKG_VERSION"),
                     "description": "Self-hosted affiliate click and conversion tracker. Messages are localized (id, en)."},
            "paths": paths,
            "components": components(),
        })
    })
}

/// `GET /api/openapi.json`.
pub fn serve(_: &Ctx) -> Result<Response, Error> {
    Ok(respond::json(200, document()))
}
