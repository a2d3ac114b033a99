//! The authorization matrix: every protected route without a token, with
//! another user's token where a route names a resource, and with an API key
//! that lacks the permission (or that no settings route accepts).

mod common;

use apextrack::crypto;
use common::{request, verified_user, Client, TestServer};
use serde_json::{json, Value};

/// (method, path, body, what an API key needs: None = no key ever)
fn protected(link_id: i64) -> Vec<(&'static str, String, Value, Option<&'static str>)> {
    let l = format!("/api/links/{link_id}");
    vec![
        ("POST", "/api/logout".into(), json!({}), None),
        ("GET", "/api/user".into(), json!(null), None),
        ("POST", "/api/email/verify".into(), json!({"code": "123456"}), None),
        ("POST", "/api/email/resend".into(), json!({}), None),
        ("POST", "/api/email/verification-notification".into(), json!({}), None),
        ("POST", "/api/email/verification-resend".into(), json!({}), None),
        ("GET", "/api/links".into(), json!(null), Some("links:read")),
        ("POST", "/api/links".into(), json!({"name": "x", "url": "https://x.example/"}), Some("links:write")),
        ("GET", l.clone(), json!(null), Some("links:read")),
        ("PUT", l.clone(), json!({"name": "stolen"}), Some("links:write")),
        ("DELETE", l, json!(null), Some("links:write")),
        ("GET", "/api/postbacks".into(), json!(null), None),
        ("GET", "/api/dashboard-data".into(), json!(null), Some("dashboard:read")),
        ("GET", "/api/reports?group_by=day".into(), json!(null), Some("reports:read")),
        ("POST", "/api/user/postback-secret".into(), json!({}), None),
        ("PUT", "/api/user/postback-allowlist".into(), json!({"allowlist": []}), None),
        (
            "POST",
            "/api/users/phone-otp".into(),
            json!({"phone": "0812345678", "countryCode": "ID", "dialCode": "+62"}),
            None,
        ),
        (
            "POST",
            "/api/users/phone-bind".into(),
            json!({"phone": "0812345678", "countryCode": "ID", "dialCode": "+62", "otpCode": "1"}),
            None,
        ),
        ("GET", "/api/users/twofa".into(), json!(null), None),
        ("POST", "/api/users/twofa-bind".into(), json!({"otpCode": "1"}), None),
        ("POST", "/api/users/twofa-unbind".into(), json!({"otpCode": "1"}), None),
        ("POST", "/api/users/twofa-recovery-codes".into(), json!({"otpCode": "1"}), None),
        ("PATCH", "/api/users/language".into(), json!({"language": "en"}), None),
        ("PATCH", "/api/users/currency".into(), json!({"currency": "EUR"}), None),
        ("POST", "/api/users/email-otp".into(), json!({}), None),
        ("GET", "/api/user/api-key".into(), json!(null), None),
        (
            "POST",
            "/api/user/api-key".into(),
            json!({"apiName": "x", "emailOtpCode": "1", "permissions": ["links:read"]}),
            None,
        ),
        ("PUT", "/api/user/api-key".into(), json!({"apiKeyId": 1, "apiKey": "x", "permissions": ["links:read"]}), None),
        ("DELETE", "/api/user/api-key".into(), json!({"apiKeyId": 1, "apiKey": "x"}), None),
    ]
}

fn body_of(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

#[test]
fn every_protected_route_refuses_strangers() {
    let s = TestServer::start();
    let (owner_id, owner) = verified_user(&s, "owner@example.com");
    let link = s.post("/api/links", Some(&owner), &json!({"name": "Mine", "url": "https://mine.example/"})).json()
        ["data"]
        .clone();
    let link_id = link["id"].as_i64().unwrap();
    // A key of the owner's with one permission only, made directly.
    let api_key = "ak_matrix_test_key_000000000000000";
    s.sqlite()
        .execute(
            "INSERT INTO api_keys (user_id, name, api_key, permissions, created_at, updated_at) VALUES (?1, 'k', ?2, 'links:read', 0, 0)",
            rusqlite::params![owner_id, api_key],
        )
        .unwrap();
    let secret = apextrack::settings::api_keys::secret_of(&s.app, api_key);
    let (_, stranger) = verified_user(&s, "stranger@example.com");

    for (method, path, body, permission) in protected(link_id) {
        let body = body_of(&body);
        // No credentials at all.
        let r = request(s.addr(), method, &path, &[("Content-Type", "application/json")], body.as_bytes());
        assert_eq!(r.status, 401, "{method} {path} without a token: {}", r.body);
        assert_eq!(r.json()["message"], "Unauthenticated.");

        // A signed request with a key that lacks the permission, or any key on a route keys never reach.
        let ts = (s.app.clock.now() / 1000).to_string();
        let sig = crypto::hex(&crypto::hmac_sha256(secret.as_bytes(), format!("{ts}{method}{path}{body}").as_bytes()));
        let r = request(
            s.addr(),
            method,
            &path,
            &[
                ("X-API-KEY", api_key),
                ("X-API-TIMESTAMP", &ts),
                ("X-API-SIGNATURE", &sig),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        let expected = match permission {
            None => 401,
            Some("links:read") => r.status, // this key may; checked below
            Some(_) => 403,
        };
        assert_eq!(r.status, expected, "{method} {path} with a key for links:read only: {}", r.body);
        if permission == Some("links:read") {
            assert!(r.status == 200, "{method} {path}: the key's own permission works: {}", r.body);
        }
    }

    // Another user's token never reaches the owner's link.
    for (method, body) in [("GET", None), ("PUT", Some(json!({"name": "stolen"}))), ("DELETE", None)] {
        let r = s.call(method, &format!("/api/links/{link_id}"), Some(&stranger), body.as_ref());
        assert_eq!(r.status, 404, "{method}");
    }
    let mine = s.get(&format!("/api/links/{link_id}"), Some(&owner)).json()["data"].clone();
    assert_eq!(mine["name"], "Mine");
    assert_eq!(mine["status"], "active");
    // Nor the owner's numbers, postback log or keys.
    assert!(s.get("/api/links", Some(&stranger)).json()["data"].as_array().unwrap().is_empty());
    assert_eq!(s.get("/api/user/api-key", Some(&stranger)).json()["data"]["total"], 0);
    let r = s.call("DELETE", "/api/user/api-key", Some(&stranger), Some(&json!({"apiKeyId": 1, "apiKey": api_key})));
    assert_eq!(r.status, 404);
    assert_eq!(s.get("/api/user", Some(&stranger)).json()["email"], "stranger@example.com");
}

/// Hostile values for any field: wrong types, extremes, SQL, control
/// characters, non-ASCII, a long string.
fn hostile_values() -> Vec<Value> {
    vec![
        json!(null),
        json!(0),
        json!(-1),
        json!(1e308),
        json!(true),
        json!([]),
        json!({}),
        json!([1, "a"]),
        json!(""),
        json!(" "),
        json!("x".repeat(5000)),
        json!("' OR 1=1 --"),
        json!("\u{0000}\r\n"),
        json!("😀ü"),
        json!("-9223372036854775808"),
        json!("99999999999999999999"),
        json!("1.005"),
        json!("%00%ff"),
    ]
}

#[test]
fn no_input_makes_any_route_fail_with_a_5xx_or_a_non_json_answer() {
    let s = TestServer::with(|c| c.payment.secret = "fuzz-secret".into());
    let (_, token) = verified_user(&s, "fuzz@example.com");
    let link =
        s.post("/api/links", Some(&token), &json!({"name": "F", "url": "https://f.example/"})).json()["data"].clone();
    let link_id = link["id"].as_i64().unwrap();
    let mut routes = protected(link_id);
    routes.retain(|(_, path, _, _)| path != "/api/logout");
    routes.extend([
        (
            "POST",
            "/api/register".to_string(),
            json!({"name": "n", "email": "e@x.co", "password": "p", "password_confirmation": "p"}),
            None,
        ),
        (
            "POST",
            "/api/login".to_string(),
            json!({"email": "e@x.co", "password": "p", "device_name": "d", "otp_code": "1"}),
            None,
        ),
        (
            "POST",
            "/api/postback/conversion".to_string(),
            json!({"clickid": "c", "payout": "1", "status": "approved", "txid": "t", "secret": "s"}),
            None,
        ),
        (
            "POST",
            "/api/payment/notification".to_string(),
            json!({"reference": "r", "email": "e@x.co", "amount": "1", "currency": "IDR", "status": "paid"}),
            None,
        ),
    ]);
    let mut checked = 0;
    for (method, path, template, _) in &routes {
        let mut bodies: Vec<String> = vec!["{".into(), "[]".into(), "\"x\"".into(), "null".into(), "{\"a\":".into()];
        if let Value::Object(fields) = template {
            for field in fields.keys() {
                for value in hostile_values() {
                    let mut body = template.clone();
                    body[field] = value;
                    bodies.push(body.to_string());
                }
            }
        }
        for body in bodies {
            // Payment notifications are signed, so the parser behind the signature is reached too.
            let signature = crypto::hex(&crypto::hmac_sha256(b"fuzz-secret", body.as_bytes()));
            let auth = format!("Bearer {token}");
            let headers = [
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
                ("X-Callback-Signature", &signature),
            ];
            let r = request(s.addr(), method, path, &headers, body.as_bytes());
            assert!(r.status < 500, "{method} {path} {body:.200}: {} {}", r.status, r.body);
            if r.status != 302 {
                let parsed: Result<Value, _> = serde_json::from_str(&r.body);
                assert!(parsed.is_ok(), "{method} {path} {body:.200}: not JSON: {}", r.body);
            }
            checked += 1;
        }
    }
    // Query strings too.
    for query in [
        "group_by=%00",
        "group_by=day&from=%FF",
        "limit=-1&offset=1e9",
        "sortBy[]=x",
        "sort=%27",
        "format=csv&group_by=link&limit=99999999999999999999",
    ] {
        for path in ["/api/reports", "/api/dashboard-data", "/api/user/api-key", "/api/postbacks"] {
            let r = request(
                s.addr(),
                "GET",
                &format!("{path}?{query}"),
                &[("Authorization", &format!("Bearer {token}"))],
                b"",
            );
            assert!(r.status < 500, "{path}?{query}: {} {}", r.status, r.body);
            checked += 1;
        }
    }
    for path in [
        "/go/%00",
        "/go/x%27%20OR%201=1",
        "/go/..%2f..",
        "/api/email/verify/-1/x?expires=99999999999999999999&signature=%00",
        "/api/email/verify/9223372036854775807/h?expires=-9223372036854775808&signature=a",
        "/api/links/%00",
        "/api/links/-1",
    ] {
        let r = request(s.addr(), "GET", path, &[("Authorization", &format!("Bearer {token}"))], b"");
        assert!(r.status < 500, "{path}: {} {}", r.status, r.body);
        checked += 1;
    }
    assert!(checked > 900, "{checked}");
    let ok: String = s.sqlite().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}
