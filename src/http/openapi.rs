//! The OpenAPI 3.1 description of the JSON API, served at
//! `GET /api/openapi.json`. `tests/openapi.rs` calls every operation it
//! lists against the running server and checks the statuses it documents.

use super::{respond, Ctx};
use crate::error::Error;
use rouille::Response;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

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
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
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

fn ops() -> Vec<Op> {
    use Auth::*;
    let settings = |method, path, summary, request: Option<Value>| Op {
        method,
        path,
        summary,
        auth: Token,
        request,
        success: (200, schema("Envelope")),
        errors: &[401, 403, 422, 429],
        params: vec![],
    };
    let otp = obj(&[("otpCode", s())], &["otpCode"]);
    let phone = obj(
        &[("phone", s()), ("countryCode", s()), ("dialCode", s()), ("otpCode", s())],
        &["phone", "countryCode", "dialCode"],
    );
    vec![
        Op {
            method: "get",
            path: "/api/health",
            summary: "Server and database state",
            auth: Public,
            request: None,
            success: (200, obj(&[("status", s()), ("version", s()), ("schema_version", n())], &["status"])),
            errors: &[503],
            params: vec![],
        },
        Op {
            method: "post",
            path: "/api/register",
            summary: "Create an account; mails a verification code and link",
            auth: Public,
            request: Some(body(obj(
                &[("name", s()), ("email", s()), ("password", s()), ("password_confirmation", s())],
                &["name", "email", "password", "password_confirmation"],
            ))),
            success: (201, schema("Message")),
            errors: &[400, 413, 422],
            params: vec![],
        },
        Op {
            method: "post",
            path: "/api/login",
            summary: "Log in; with 2FA bound, `otp_code` too",
            auth: Public,
            request: Some(body(obj(
                &[("email", s()), ("password", s()), ("device_name", s()), ("otp_code", s())],
                &["email", "password", "device_name"],
            ))),
            success: (
                200,
                obj(
                    &[("user", obj(&[("id", n()), ("name", s()), ("email", s())], &[])), ("token", s())],
                    &["user", "token"],
                ),
            ),
            errors: &[400, 403, 422, 429],
            params: vec![],
        },
        Op {
            method: "post",
            path: "/api/logout",
            summary: "Revoke the token used",
            auth: Token,
            request: None,
            success: (200, schema("Message")),
            errors: &[401],
            params: vec![],
        },
        Op {
            method: "get",
            path: "/api/user",
            summary: "The account",
            auth: Token,
            request: None,
            success: (200, schema("User")),
            errors: &[401, 403],
            params: vec![],
        },
        Op {
            method: "post",
            path: "/api/email/verify",
            summary: "Verify the email with the mailed code",
            auth: Token,
            request: Some(body(obj(&[("code", s())], &["code"]))),
            success: (200, obj(&[("message", s()), ("redirect", s())], &["message"])),
            errors: &[400, 401, 422, 429],
            params: vec![],
        },
        Op {
            method: "post",
            path: "/api/email/resend",
            summary: "Mail a new code (and link)",
            auth: Token,
            request: None,
            success: (200, schema("Message")),
            errors: &[400, 401, 429],
            params: vec![],
        },
        Op {
            method: "post",
            path: "/api/email/verification-notification",
            summary: "Mail a verification link",
            auth: Token,
            request: None,
            success: (200, schema("LinkSent")),
            errors: &[400, 401, 429],
            params: vec![],
        },
        Op {
            method: "post",
            path: "/api/email/verification-resend",
            summary: "Mail a new verification link",
            auth: Token,
            request: None,
            success: (200, schema("LinkSent")),
            errors: &[400, 401, 429],
            params: vec![],
        },
        Op {
            method: "get",
            path: "/api/email/verify/{id}/{hash}",
            summary: "Verify the email by the signed link (a browser is redirected)",
            auth: Public,
            request: None,
            success: (200, schema("LinkResult")),
            errors: &[302, 400, 404],
            params: vec![
                path_param("id"),
                path_param("hash"),
                query("expires", "unix seconds"),
                query("signature", "hex HMAC-SHA256"),
            ],
        },
        Op {
            method: "get",
            path: "/api/links",
            summary: "The user's tracking links",
            auth: Key("links:read"),
            request: None,
            success: (200, obj(&[("data", json!({"type": "array", "items": schema("Link")}))], &["data"])),
            errors: &[401, 403],
            params: vec![],
        },
        Op {
            method: "post",
            path: "/api/links",
            summary: "Create a tracking link",
            auth: Key("links:write"),
            request: Some(body(schema("LinkInput"))),
            success: (201, obj(&[("data", schema("Link"))], &["data"])),
            errors: &[400, 401, 403, 422],
            params: vec![],
        },
        Op {
            method: "get",
            path: "/api/links/{id}",
            summary: "One link",
            auth: Key("links:read"),
            request: None,
            success: (200, obj(&[("data", schema("Link"))], &["data"])),
            errors: &[401, 403, 404],
            params: vec![path_param("id")],
        },
        Op {
            method: "put",
            path: "/api/links/{id}",
            summary: "Change a link (fields sent only)",
            auth: Key("links:write"),
            request: Some(body(schema("LinkInput"))),
            success: (200, obj(&[("data", schema("Link"))], &["data"])),
            errors: &[400, 401, 403, 404, 422],
            params: vec![path_param("id")],
        },
        Op {
            method: "delete",
            path: "/api/links/{id}",
            summary: "Delete a link (its statistics stay)",
            auth: Key("links:write"),
            request: None,
            success: (200, schema("Message")),
            errors: &[401, 403, 404],
            params: vec![path_param("id")],
        },
        Op {
            method: "get",
            path: "/go/{slug}",
            summary: "The click redirect (302 to the destination)",
            auth: Public,
            request: None,
            success: (302, json!({})),
            errors: &[404],
            params: vec![path_param("slug"), query("sub_id", "also sub1"), query("ext_id", "the source's click id")],
        },
        Op {
            method: "get",
            path: "/api/postback/conversion",
            summary: "Conversion postback (also POST, JSON or form)",
            auth: Public,
            request: None,
            success: (200, schema("Postback")),
            errors: &[403, 404, 422, 429],
            params: vec![
                query("clickid", "or cid, subid"),
                query("payout", "or sum, amount"),
                query("status", "approved|pending|rejected"),
                query("txid", "or tid, transaction_id"),
                query("secret", "the user's postback secret"),
            ],
        },
        Op {
            method: "post",
            path: "/api/postback/conversion",
            summary: "Conversion postback by POST",
            auth: Public,
            request: Some(body(obj(
                &[("clickid", s()), ("payout", s()), ("status", s()), ("txid", s()), ("secret", s())],
                &[],
            ))),
            success: (200, schema("Postback")),
            errors: &[400, 403, 404, 413, 422, 429],
            params: vec![],
        },
        Op {
            method: "get",
            path: "/api/postbacks",
            summary: "Postbacks received, newest first",
            auth: Token,
            request: None,
            success: (200, obj(&[("data", json!({"type": "array"})), ("limit", n()), ("offset", n())], &["data"])),
            errors: &[401, 403, 422],
            params: vec![query("limit", "1-500"), query("offset", ">= 0")],
        },
        Op {
            method: "post",
            path: "/api/payment/notification",
            summary: "Payment webhook, signed in X-Callback-Signature",
            auth: Public,
            request: Some(body(obj(
                &[("reference", s()), ("email", s()), ("amount", s()), ("currency", s()), ("status", s())],
                &["reference", "email", "amount", "currency", "status"],
            ))),
            success: (200, obj(&[("message", s()), ("outcome", s())], &["message"])),
            errors: &[400, 403, 413, 422],
            params: vec![
                json!({"name": "X-Callback-Signature", "in": "header", "required": true, "schema": {"type": "string"}}),
            ],
        },
        Op {
            method: "get",
            path: "/api/dashboard-data",
            summary: "Summary, sub_id report, recent clicks and leads",
            auth: Key("dashboard:read"),
            request: None,
            success: (200, schema("Dashboard")),
            errors: &[401, 403, 422],
            params: vec![query("from", "YYYY-MM-DD"), query("to", "YYYY-MM-DD"), query("limit", "1-1000")],
        },
        Op {
            method: "get",
            path: "/api/reports",
            summary: "Report by day, sub_id, country, device or link (format=csv for CSV)",
            auth: Key("reports:read"),
            request: None,
            success: (200, obj(&[("group_by", s()), ("today", s()), ("data", json!({"type": "array"}))], &["data"])),
            errors: &[401, 403, 422],
            params: vec![
                query("group_by", "day|sub_id|country|device|link"),
                query("from", "YYYY-MM-DD"),
                query("to", "YYYY-MM-DD"),
                query("limit", "1-10000"),
                query("format", "json|csv"),
            ],
        },
        Op {
            method: "post",
            path: "/api/user/postback-secret",
            summary: "Rotate the postback secret",
            auth: Token,
            request: None,
            success: (200, obj(&[("postback_url", s())], &["postback_url"])),
            errors: &[401, 403],
            params: vec![],
        },
        Op {
            method: "put",
            path: "/api/user/postback-allowlist",
            summary: "IPs allowed to send postbacks ([] = any)",
            auth: Token,
            request: Some(body(obj(
                &[("allowlist", json!({"type": "array", "items": {"type": "string"}}))],
                &["allowlist"],
            ))),
            success: (200, obj(&[("allowlist", json!({"type": "array"}))], &["allowlist"])),
            errors: &[401, 403, 422],
            params: vec![],
        },
        settings("post", "/api/users/phone-otp", "Text a code to a number", Some(body(phone.clone()))),
        settings("post", "/api/users/phone-bind", "Bind the number with the texted code", Some(body(phone))),
        settings("get", "/api/users/twofa", "2FA state; while unbound, the secret, otpauth URL and QR code", None),
        settings("post", "/api/users/twofa-bind", "Turn 2FA on with a code from the app", Some(body(otp.clone()))),
        settings("post", "/api/users/twofa-unbind", "Turn 2FA off", Some(body(otp.clone()))),
        settings("post", "/api/users/twofa-recovery-codes", "New recovery codes", Some(body(otp))),
        settings(
            "patch",
            "/api/users/language",
            "Set the language (id, en)",
            Some(body(obj(&[("language", s())], &["language"]))),
        ),
        settings(
            "patch",
            "/api/users/currency",
            "Set the currency (ISO 4217)",
            Some(body(obj(&[("currency", s())], &["currency"]))),
        ),
        settings("post", "/api/users/email-otp", "Mail a code for a sensitive action", None),
        Op {
            params: vec![
                query("limit", "1-100"),
                query("offset", ">= 0"),
                query("sortBy", "id|apiName|createdAt"),
                query("sort", "asc|desc"),
            ],
            ..settings("get", "/api/user/api-key", "The user's API keys", None)
        },
        settings(
            "post",
            "/api/user/api-key",
            "Create an API key (email code; SMS code too with a bound phone)",
            Some(body(obj(
                &[
                    ("apiName", s()),
                    ("emailOtpCode", s()),
                    ("phoneOtpCode", s()),
                    ("permissions", json!({"type": "array", "items": {"type": "string"}})),
                ],
                &["apiName", "emailOtpCode", "permissions"],
            ))),
        ),
        Op {
            errors: &[401, 403, 404, 422],
            ..settings(
                "put",
                "/api/user/api-key",
                "Regenerate a key pair and set its permissions",
                Some(body(obj(
                    &[
                        ("apiKeyId", n()),
                        ("apiKey", s()),
                        ("permissions", json!({"type": "array", "items": {"type": "string"}})),
                    ],
                    &["apiKeyId", "apiKey", "permissions"],
                ))),
            )
        },
        Op {
            errors: &[401, 403, 404, 422],
            ..settings(
                "delete",
                "/api/user/api-key",
                "Delete a key",
                Some(body(obj(&[("apiKeyId", n()), ("apiKey", s())], &["apiKeyId", "apiKey"]))),
            )
        },
    ]
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
                          ("status", s()), ("source_postback_url", s()), ("created_at", s())], &["id", "name", "url", "slug", "tracking_url", "payout", "status"]),
            "LinkInput": obj(&[("name", s()), ("url", s()), ("payout", json!({"type": ["string", "number"]})), ("status", s()),
                               ("slug", s()), ("source_postback_url", s())], &[]),
            "Postback": obj(&[("message", s()), ("outcome", s()), ("lead", json!({"type": "object"}))], &["message", "outcome"]),
            "Dashboard": obj(&[("summary", obj(&[("liveClicksLast30Seconds", n()), ("clicksToday", n()), ("totalLeads", n()), ("totalPayout", n())],
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
            responses.insert(op.success.0.to_string(), reply("Success", op.success.1.clone()));
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
            if op.path == "/go/{slug}" {
                responses.insert("404".into(), json!({"description": "Unknown or paused link", "content": {"text/html": {}}}));
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
