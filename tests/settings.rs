//! Account settings of seed 004 over real HTTP: preferences, 2FA, phone
//! binding by SMS, email codes and API keys with signed requests.

mod common;

use apextrack::crypto;
use common::{request, verified_user, Client, Recorder, TestServer, PASSWORD};
use serde_json::{json, Value};

const SECOND: i64 = 1_000_000;

fn call(s: &TestServer, method: &str, path: &str, token: &str, body: Value) -> common::Resp {
    s.call(method, path, Some(token), Some(&body))
}

fn assert_envelope(r: &common::Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    let body = r.json();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["success"], status == 200, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    body
}

fn base32_decode(s: &str) -> Vec<u8> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.bytes() {
        let v = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".iter().position(|&a| a == c).unwrap() as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// What an authenticator app shows for this secret at the server's time.
fn totp(s: &TestServer, secret: &[u8]) -> String {
    crypto::totp(secret, (s.app.clock.now() / SECOND / 30) as u64)
}

#[test]
fn language_and_currency_are_validated_and_take_effect() {
    let s = TestServer::start();
    let (_, token) = verified_user(&s, "prefs@example.com");
    let r = call(&s, "PATCH", "/api/users/language", &token, json!({"language": "en"}));
    let body = assert_envelope(&r, 200, "api.language_updated_successfully");
    assert_eq!(body["message"], "Language updated.", "answered in the new language");
    assert_eq!(s.post("/api/logout", Some(&token), &json!({})).json()["message"], "Logged out successfully.");

    let (_, token) = verified_user(&s, "cur@example.com");
    let r = call(&s, "PATCH", "/api/users/currency", &token, json!({"currency": "idr"}));
    assert_envelope(&r, 200, "api.currency_updated_successfully");
    assert_eq!(s.get("/api/user", Some(&token)).json()["currency"], "IDR");
    for (path, body) in [
        ("/api/users/currency", json!({"currency": "ABC"})),
        ("/api/users/language", json!({"language": "fr"})),
        ("/api/users/language", json!({})),
        ("/api/users/currency", json!({"currency": "rupiah"})),
        ("/api/users/currency", json!({"currency": 360})),
    ] {
        let r = call(&s, "PATCH", path, &token, body.clone());
        let b = assert_envelope(&r, 422, "api.validation_error");
        assert!(b["errors"].is_object(), "{body}: {b}");
    }
    // The settings routes want a verified account, and a token (not an API key).
    let unverified = s.user_with_token("new@example.com");
    assert_eq!(call(&s, "PATCH", "/api/users/currency", &unverified, json!({"currency": "USD"})).status, 403);
    assert_eq!(s.call("PATCH", "/api/users/currency", None, Some(&json!({"currency": "USD"}))).status, 401);
}

#[test]
fn two_factor_bind_login_replay_recovery_and_unbind() {
    let s = TestServer::start();
    let (user_id, token) = verified_user(&s, "tfa@example.com");
    let status = assert_envelope(&s.get("/api/users/twofa", Some(&token)), 200, "api.twofa_status")["data"].clone();
    assert_eq!(status["bound"], false);
    let secret_text = status["secret"].as_str().unwrap().to_string();
    assert!(status["otpauth_url"].as_str().unwrap().starts_with("otpauth://totp/"));
    assert!(status["otpauth_url"].as_str().unwrap().contains(&format!("secret={secret_text}")));
    assert!(status["qr_svg"].as_str().unwrap().contains("<svg"));
    let secret = base32_decode(&secret_text);

    let r = call(&s, "POST", "/api/users/twofa-bind", &token, json!({"otpCode": "000000"}));
    assert_envelope(&r, 403, "auth.otp_failed");
    let code = totp(&s, &secret);
    let r = call(&s, "POST", "/api/users/twofa-bind", &token, json!({"otpCode": code}));
    let codes = assert_envelope(&r, 200, "api.twofa_binded_successfully")["data"]["recovery_codes"].clone();
    assert_eq!(codes.as_array().unwrap().len(), 8);
    assert_eq!(s.get("/api/user", Some(&token)).json()["two_factor_enabled"], true);
    let stored: String =
        s.sqlite().query_row("SELECT group_concat(code_hash) FROM recovery_codes", [], |r| r.get(0)).unwrap();
    assert!(!stored.contains(codes[0].as_str().unwrap()), "recovery codes are stored hashed");

    // Login now needs the code; the one just used is refused (replay).
    let login = |otp: Option<&str>| {
        let mut body = json!({"email": "tfa@example.com", "password": PASSWORD, "device_name": "phone"});
        if let Some(otp) = otp {
            body["otp_code"] = json!(otp);
        }
        s.post("/api/login", None, &body)
    };
    for attempt in [None, Some("123456"), Some(code.as_str())] {
        let r = login(attempt);
        assert_eq!(r.status, 403, "{attempt:?}");
        assert_eq!(r.json(), json!({"message": "Kode OTP salah.", "two_factor_required": true}));
    }
    s.app.clock.shift(30 * SECOND);
    let next = totp(&s, &secret);
    let r = login(Some(&next));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["token"].as_str().is_some());
    // A recovery code works once in place of a TOTP.
    let recovery = codes[0].as_str().unwrap().to_string();
    assert_eq!(login(Some(&recovery)).status, 200);
    assert_eq!(login(Some(&recovery)).status, 403);
    // New recovery codes need a valid TOTP, and retire the old ones.
    s.app.clock.shift(30 * SECOND);
    let r = call(&s, "POST", "/api/users/twofa-recovery-codes", &token, json!({"otpCode": totp(&s, &secret)}));
    let fresh = assert_envelope(&r, 200, "api.recovery_codes_regenerated")["data"]["recovery_codes"].clone();
    assert_eq!(login(Some(codes[1].as_str().unwrap())).status, 403);
    // That was the fifth wrong code within five minutes: even a right one waits.
    assert_eq!(login(Some(fresh[0].as_str().unwrap())).status, 429);
    s.app.clock.shift(5 * 60 * SECOND);
    assert_eq!(login(Some(fresh[0].as_str().unwrap())).status, 200);

    // Unbind needs a valid code and makes a new secret.
    let r = call(&s, "POST", "/api/users/twofa-unbind", &token, json!({"otpCode": "999999"}));
    assert_envelope(&r, 403, "auth.otp_failed");
    s.app.clock.shift(30 * SECOND);
    let r = call(&s, "POST", "/api/users/twofa-unbind", &token, json!({"otpCode": totp(&s, &secret)}));
    let data = assert_envelope(&r, 200, "api.twofa_unbinded")["data"].clone();
    assert_eq!(data["two_factor_enabled"], false);
    assert_eq!(data["id"], user_id);
    let again = s.get("/api/users/twofa", Some(&token)).json()["data"].clone();
    assert_ne!(again["secret"], secret_text, "unbinding regenerates the secret");
    assert_eq!(login(None).status, 200);
}

#[test]
fn wrong_totp_codes_are_rate_limited_and_the_admin_can_switch_2fa_off() {
    let s = TestServer::start();
    let (_, token) = verified_user(&s, "lock@example.com");
    let secret = base32_decode(s.get("/api/users/twofa", Some(&token)).json()["data"]["secret"].as_str().unwrap());
    let code = totp(&s, &secret);
    assert_eq!(call(&s, "POST", "/api/users/twofa-bind", &token, json!({"otpCode": code})).status, 200);
    for _ in 0..5 {
        assert_eq!(call(&s, "POST", "/api/users/twofa-unbind", &token, json!({"otpCode": "000001"})).status, 403);
    }
    s.app.clock.shift(30 * SECOND);
    let r = call(&s, "POST", "/api/users/twofa-unbind", &token, json!({"otpCode": totp(&s, &secret)}));
    let body = assert_envelope(&r, 429, "api.too_many_requests");
    assert!(body["retry_after"].as_u64().unwrap() > 0);

    // The operator, for a user who lost the phone.
    common::write_config(s.dir(), "");
    let out = common::cli(s.dir(), &["user", "twofa-off", "lock@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.get("/api/user", Some(&token)).json()["two_factor_enabled"], false);
}

fn sms_server(recorder: &Recorder) -> TestServer {
    let endpoint = format!("{}/sms", recorder.url());
    TestServer::with(|c| {
        c.sms.provider = "http".into();
        c.sms.endpoint = endpoint;
        c.sms.api_key = "sms-key".into();
        c.sms.from = "APEX".into();
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
}

fn phone_body(phone: &str, code: Option<&str>) -> Value {
    let mut body = json!({"phone": phone, "countryCode": "ID", "dialCode": "+62"});
    if let Some(code) = code {
        body["otpCode"] = json!(code);
    }
    body
}

fn sms_code(recorder: &Recorder, n: usize) -> String {
    let got = recorder.wait_delivered(n);
    common::six_digit_code(got[n - 1].json()["text"].as_str().unwrap())
}

#[test]
fn phone_binding_by_sms_code_and_two_users_competing_for_one_number() {
    let recorder = Recorder::start();
    let s = sms_server(&recorder);
    let (_, alice) = verified_user(&s, "alice@example.com");
    let (_, bob) = verified_user(&s, "bob@example.com");
    let r = call(&s, "POST", "/api/users/phone-otp", &alice, phone_body("0812-3456-789", None));
    assert_eq!(assert_envelope(&r, 200, "api.otp_sent")["data"]["phone"], "+628123456789");
    let code = sms_code(&recorder, 1);
    let sms = &recorder.requests()[0];
    assert_eq!(sms.url, "/sms");
    assert_eq!(sms.header("Authorization"), Some("Bearer sms-key"));
    assert_eq!((sms.json()["to"].as_str(), sms.json()["from"].as_str()), (Some("+628123456789"), Some("APEX")));
    // A second code within the minute is refused.
    assert_eq!(call(&s, "POST", "/api/users/phone-otp", &alice, phone_body("08123456789", None)).status, 429);

    let r = call(&s, "POST", "/api/users/phone-bind", &alice, phone_body("+62 812 3456 789", Some(&code)));
    let data = assert_envelope(&r, 200, "api.mobile_verified")["data"].clone();
    assert_eq!(data["phone"], "+628123456789");
    // The code is spent.
    let r = call(&s, "POST", "/api/users/phone-bind", &alice, phone_body("08123456789", Some(&code)));
    assert_envelope(&r, 422, "api.otp_verification_code_invalid");

    // Bob cannot have Alice's number.
    let r = call(&s, "POST", "/api/users/phone-otp", &bob, phone_body("08123456789", None));
    assert_envelope(&r, 422, "api.phone_number_taken");
    let r = call(&s, "POST", "/api/users/phone-bind", &bob, phone_body("08123456789", Some("123456")));
    assert_envelope(&r, 422, "api.phone_number_taken");
    let r = call(&s, "POST", "/api/users/phone-bind", &bob, phone_body("12", Some("123456")));
    let body = assert_envelope(&r, 422, "api.validation_error");
    assert!(body["errors"]["phone"].is_array());
}

#[test]
fn five_wrong_codes_shut_that_account_out_of_the_number_but_not_its_owner() {
    let recorder = Recorder::start();
    let s = sms_server(&recorder);
    let (_, token) = verified_user(&s, "guess@example.com");
    assert_eq!(call(&s, "POST", "/api/users/phone-otp", &token, phone_body("08111111111", None)).status, 200);
    let code = sms_code(&recorder, 1);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let bind = |code: &str| {
        let body = phone_body("08111111111", Some(code)).to_string();
        request(
            s.addr(),
            "POST",
            "/api/users/phone-bind",
            &[("Authorization", &format!("Bearer {token}")), ("X-Forwarded-For", "203.0.113.5")],
            body.as_bytes(),
        )
    };
    for _ in 0..4 {
        assert_envelope(&bind(wrong), 422, "api.otp_verification_code_invalid");
    }
    assert_envelope(&bind(wrong), 422, "api.otp_verification_code_invalid");
    assert_envelope(&bind(&code), 403, "api.phone_number_blacklisted");
    let r = call(&s, "POST", "/api/users/phone-otp", &token, phone_body("08111111111", None));
    assert_envelope(&r, 403, "api.phone_number_blacklisted");
    // A stranger guessing at codes sent to someone's number does not take
    // it from its owner: another account still gets a code and binds it.
    let (_, owner) = verified_user(&s, "owner@example.com");
    assert_eq!(call(&s, "POST", "/api/users/phone-otp", &owner, phone_body("08111111111", None)).status, 200);
    let owner_code = sms_code(&recorder, 2);
    let r = call(&s, "POST", "/api/users/phone-bind", &owner, phone_body("08111111111", Some(&owner_code)));
    assert_envelope(&r, 200, "api.mobile_verified");
    let global: i64 = s.sqlite().query_row("SELECT count(*) FROM phone_blacklist", [], |r| r.get(0)).unwrap();
    assert_eq!(global, 0);
    s.sqlite().execute("UPDATE users SET phone = NULL WHERE email = 'owner@example.com'", []).unwrap();

    common::write_config(s.dir(), "");
    let listed = common::cli(s.dir(), &["blacklist", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["phone"], "+628111111111");
    let out = common::cli(s.dir(), &["blacklist", "clear", "+628111111111"]);
    assert!(out.status.success());
    assert_eq!(common::cli(s.dir(), &["blacklist", "clear", "+628111111111"]).status.code(), Some(2));
    s.app.clock.shift(61 * SECOND);
    assert_eq!(call(&s, "POST", "/api/users/phone-otp", &token, phone_body("08111111111", None)).status, 200);
}

#[test]
fn naming_a_number_without_asking_for_its_code_cannot_blacklist_it() {
    let recorder = Recorder::start();
    let s = sms_server(&recorder);
    let (_, token) = verified_user(&s, "mallory@example.com");
    for _ in 0..8 {
        let r = call(&s, "POST", "/api/users/phone-bind", &token, phone_body("08999999999", Some("000000")));
        assert_envelope(&r, 422, "api.otp_verification_code_invalid");
    }
    let listed: i64 = s.sqlite().query_row("SELECT count(*) FROM phone_blacklist", [], |r| r.get(0)).unwrap();
    assert_eq!(listed, 0, "a victim's number stays bindable");
}

#[test]
fn twilio_gets_its_documented_form_request() {
    let recorder = Recorder::start();
    let cfg = apextrack::config::Sms {
        provider: "twilio".into(),
        endpoint: recorder.url(),
        account_sid: "AC123".into(),
        auth_token: "tok".into(),
        from: "+15005550006".into(),
        ..Default::default()
    };
    apextrack::sms::send(&cfg, &apextrack::log::Log::capturing(), "+628123", "Kode: 123456", "k").unwrap();
    let r = &recorder.requests()[0];
    assert_eq!(r.url, "/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!(r.header("Authorization"), Some(format!("Basic {}", crypto::base64(b"AC123:tok")).as_str()));
    let form = r.form();
    assert!(form.contains(&("To".into(), "+628123".into())));
    assert!(form.contains(&("From".into(), "+15005550006".into())));
    assert!(form.contains(&("Body".into(), "Kode: 123456".into())));
}

/// A user with an API key: (server, recorder, token, key json).
fn with_key(email: &str, permissions: Value) -> (TestServer, Recorder, String, Value) {
    let recorder = Recorder::start();
    let s = common::server_with_mail(&recorder, |_| {});
    let (_, token) = verified_user(&s, email);
    let before = recorder.requests().len();
    let r = s.post("/api/users/email-otp", Some(&token), &json!({}));
    assert_envelope(&r, 200, "api.email_otp_sent");
    let mail = recorder.wait_delivered(before + 1).last().unwrap().json();
    let code = common::six_digit_code(mail["text"].as_str().unwrap());
    let r = s.post(
        "/api/user/api-key",
        Some(&token),
        &json!({"apiName": "Reporting", "emailOtpCode": code, "permissions": permissions}),
    );
    let key = assert_envelope(&r, 200, "api.generate_key_successful")["data"].clone();
    (s, recorder, token, key)
}

fn signed(s: &TestServer, key: &Value, method: &str, path: &str, body: &str, ts_offset_ms: i64) -> common::Resp {
    let ts = (s.app.clock.now() / 1000 + ts_offset_ms).to_string();
    let message = format!("{ts}{method}{path}{body}");
    let sig = crypto::hex(&crypto::hmac_sha256(key["secretKey"].as_str().unwrap().as_bytes(), message.as_bytes()));
    request(
        s.addr(),
        method,
        path,
        &[
            ("X-API-KEY", key["apiKey"].as_str().unwrap()),
            ("X-API-TIMESTAMP", &ts),
            ("X-API-SIGNATURE", &sig),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

#[test]
fn api_keys_need_the_email_code_and_sign_requests() {
    let (s, _recorder, token, key) = with_key("keys@example.com", json!(["dashboard:read", "links:read"]));
    assert_eq!(key["apiName"], "Reporting");
    assert_eq!(key["permissions"], json!(["dashboard:read", "links:read"]));
    assert!(key["apiKey"].as_str().unwrap().len() >= 32);
    assert_eq!(key["secretKey"].as_str().unwrap().len(), 64);
    let stored: String = s.sqlite().query_row("SELECT api_key || permissions FROM api_keys", [], |r| r.get(0)).unwrap();
    assert!(!stored.contains(key["secretKey"].as_str().unwrap()), "the secret is not stored");

    let r = signed(&s, &key, "GET", "/api/dashboard-data?limit=5", "", 0);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["summary"].is_object());
    // The same signed request again is a replay.
    let ts = (s.app.clock.now() / 1000).to_string();
    let sig = crypto::hex(&crypto::hmac_sha256(
        key["secretKey"].as_str().unwrap().as_bytes(),
        format!("{ts}GET/api/links").as_bytes(),
    ));
    let headers = [
        ("X-API-KEY", key["apiKey"].as_str().unwrap()),
        ("X-API-TIMESTAMP", ts.as_str()),
        ("X-API-SIGNATURE", sig.as_str()),
    ];
    assert_eq!(request(s.addr(), "GET", "/api/links", &headers, b"").status, 200);
    assert_eq!(request(s.addr(), "GET", "/api/links", &headers, b"").status, 401);
    // Stale or future timestamps, a wrong signature, a missing permission, a settings route.
    assert_eq!(signed(&s, &key, "GET", "/api/dashboard-data", "", -31_000).status, 401);
    assert_eq!(signed(&s, &key, "GET", "/api/dashboard-data", "", 31_000).status, 401);
    let r = signed(&s, &key, "GET", "/api/reports?group_by=day", "", 0);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = signed(&s, &key, "POST", "/api/links", r#"{"name":"x","url":"https://x.example/"}"#, 0);
    assert_eq!(r.status, 403);
    assert_eq!(signed(&s, &key, "GET", "/api/user/api-key", "", 0).status, 401);
    assert_eq!(signed(&s, &key, "PATCH", "/api/users/currency", r#"{"currency":"EUR"}"#, 0).status, 401);
    assert_eq!(signed(&s, &key, "GET", "/api/user", "", 0).status, 401);
    let mut forged = key.clone();
    forged["secretKey"] = json!("0".repeat(64));
    assert_eq!(signed(&s, &forged, "GET", "/api/dashboard-data", "", 0).status, 401);

    // Regenerating retires the old pair at once.
    let r = call(
        &s,
        "PUT",
        "/api/user/api-key",
        &token,
        json!({"apiKeyId": key["id"], "apiKey": key["apiKey"], "permissions": ["links:read", "links:write"]}),
    );
    let new_key = assert_envelope(&r, 200, "api.edit_api_key_successful")["data"].clone();
    assert_ne!(new_key["apiKey"], key["apiKey"]);
    assert_eq!(signed(&s, &key, "GET", "/api/links", "", 0).status, 401);
    assert_eq!(signed(&s, &new_key, "GET", "/api/links", "", 0).status, 200);
    // A signed write: the body is part of the signature.
    let body = r#"{"name":"From the API","url":"https://api.example/"}"#;
    assert_eq!(signed(&s, &new_key, "POST", "/api/links", body, 0).status, 201);
    let ts = (s.app.clock.now() / 1000).to_string();
    let sig = crypto::hex(&crypto::hmac_sha256(
        new_key["secretKey"].as_str().unwrap().as_bytes(),
        format!("{ts}POST/api/links{body}").as_bytes(),
    ));
    let tampered = body.replace("From the API", "Tampered");
    let r = request(
        s.addr(),
        "POST",
        "/api/links",
        &[("X-API-KEY", new_key["apiKey"].as_str().unwrap()), ("X-API-TIMESTAMP", &ts), ("X-API-SIGNATURE", &sig)],
        tampered.as_bytes(),
    );
    assert_eq!(r.status, 401);

    let del = json!({"apiKeyId": new_key["id"], "apiKey": new_key["apiKey"]});
    assert_envelope(
        &call(&s, "DELETE", "/api/user/api-key", &token, del.clone()),
        200,
        "api.delete_api_key_successful",
    );
    assert_envelope(&call(&s, "DELETE", "/api/user/api-key", &token, del), 404, "api.user_api_key_not_found");
    assert_eq!(signed(&s, &new_key, "GET", "/api/links", "", 0).status, 401);
}

#[test]
fn creating_a_key_checks_codes_and_input() {
    let recorder = Recorder::start();
    let s = common::server_with_mail(&recorder, |_| {});
    let (_, token) = verified_user(&s, "codes@example.com");
    let r = s.post("/api/user/api-key", Some(&token), &json!({}));
    let body = assert_envelope(&r, 422, "api.validation_error");
    for field in ["apiName", "emailOtpCode", "permissions"] {
        assert!(body["errors"][field].is_array(), "{field}: {body}");
    }
    let r = s.post(
        "/api/user/api-key",
        Some(&token),
        &json!({"apiName": "x", "emailOtpCode": "123456", "permissions": ["admin:all"]}),
    );
    assert!(assert_envelope(&r, 422, "api.validation_error")["errors"]["permissions"].is_array());
    let r = s.post(
        "/api/user/api-key",
        Some(&token),
        &json!({"apiName": "x", "emailOtpCode": "123456", "permissions": ["links:read"]}),
    );
    assert_envelope(&r, 422, "api.email_otp_error");
    assert_eq!(s.post("/api/users/email-otp", Some(&token), &json!({})).status, 200);
    assert_eq!(s.post("/api/users/email-otp", Some(&token), &json!({})).status, 429, "one code a minute");
}

#[test]
fn listing_is_paged_sorted_by_whitelist_and_private() {
    let (s, recorder, token, _) = with_key("list@example.com", json!(["links:read"]));
    for name in ["beta", "alpha"] {
        s.app.clock.shift(61 * SECOND);
        let before = recorder.requests().len();
        s.post("/api/users/email-otp", Some(&token), &json!({}));
        let mail = recorder.wait_delivered(before + 1).last().unwrap().json();
        let code = common::six_digit_code(mail["text"].as_str().unwrap());
        let r = s.post(
            "/api/user/api-key",
            Some(&token),
            &json!({"apiName": name, "emailOtpCode": code, "permissions": ["links:read"]}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let list = |q: &str| s.get(&format!("/api/user/api-key{q}"), Some(&token));
    let r = list("");
    let data = assert_envelope(&r, 200, "api.list_api_key_successful")["data"].clone();
    assert_eq!((data["total"].as_i64(), data["limit"].as_i64(), data["offset"].as_i64()), (Some(3), Some(20), Some(0)));
    assert!(data["items"][0].get("secretKey").is_none(), "a listed key never shows its secret");
    let names = |r: common::Resp| -> Vec<String> {
        r.json()["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["apiName"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(list("?sortBy=apiName&sort=asc")), ["Reporting", "alpha", "beta"]);
    assert_eq!(names(list("?sortBy=createdAt&sort=desc&limit=1&offset=1")), ["beta"]);
    for bad in [
        "?sort=ASC",
        "?limit=",
        "?sortBy=",
        "?sortBy=name%3B%20DROP%20TABLE%20api_keys",
        "?sort=desc%2C%20(SELECT%201)",
        "?limit=0",
        "?limit=101",
        "?offset=-1",
        "?sortBy=api_key",
        "?limit=1%20OR%201%3D1",
    ] {
        let r = list(bad);
        assert_envelope(&r, 422, "api.validation_error");
    }
    let n: i64 = s.sqlite().query_row("SELECT count(*) FROM api_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 3, "the table is intact");

    // Another user sees none of them and can touch none of them.
    let (_, other) = verified_user(&s, "other@example.com");
    assert_eq!(s.get("/api/user/api-key", Some(&other)).json()["data"]["total"], 0);
    let mine = list("?sortBy=id&sort=asc").json()["data"]["items"][0].clone();
    let target = json!({"apiKeyId": mine["id"], "apiKey": mine["apiKey"], "permissions": ["links:read"]});
    assert_envelope(&call(&s, "PUT", "/api/user/api-key", &other, target.clone()), 404, "api.user_api_key_not_found");
    assert_envelope(&call(&s, "DELETE", "/api/user/api-key", &other, target), 404, "api.user_api_key_not_found");
    assert_eq!(list("").json()["data"]["total"], 3);
}

#[test]
fn a_bound_phone_makes_the_sms_code_required_for_new_keys() {
    let recorder = Recorder::start();
    let endpoint = format!("{}/send", recorder.url());
    let sms_endpoint = format!("{}/sms", recorder.url());
    let s = TestServer::with(|c| {
        c.mail.provider = "http".into();
        c.mail.endpoint = endpoint;
        c.sms.provider = "http".into();
        c.sms.endpoint = sms_endpoint;
    });
    let (_, token) = verified_user(&s, "both@example.com");
    let wait_text = |n: usize| recorder.wait_delivered(n)[n - 1].json()["text"].as_str().unwrap().to_string();
    let six = |text: String| common::six_digit_code(&text);
    let _verification = wait_text(1);
    assert_eq!(call(&s, "POST", "/api/users/phone-otp", &token, phone_body("0822222222", None)).status, 200);
    let code = six(wait_text(2));
    assert_eq!(call(&s, "POST", "/api/users/phone-bind", &token, phone_body("0822222222", Some(&code))).status, 200);
    s.post("/api/users/email-otp", Some(&token), &json!({}));
    let email_code = six(wait_text(3));
    // Without the SMS code the answer says which field is missing, not
    // that a code was wrong; the email code is not used up.
    let body = json!({"apiName": "k", "emailOtpCode": email_code, "permissions": ["links:read"]});
    let r = s.post("/api/user/api-key", Some(&token), &body);
    assert_eq!(r.status, 422, "{}", r.json());
    assert_eq!(r.json()["errors"]["phoneOtpCode"][0], "The phone otp code field is required.", "{}", r.json());
    // No SMS code is pending now (the last one bound the phone): any is wrong.
    let body =
        json!({"apiName": "k", "emailOtpCode": email_code, "phoneOtpCode": "000000", "permissions": ["links:read"]});
    assert_envelope(&s.post("/api/user/api-key", Some(&token), &body), 422, "api.otp_verification_code_invalid");
    s.app.clock.shift(61 * SECOND);
    s.post("/api/users/email-otp", Some(&token), &json!({}));
    let email_code = six(wait_text(4));
    assert_eq!(call(&s, "POST", "/api/users/phone-otp", &token, phone_body("0822222222", None)).status, 200);
    let phone_code = six(wait_text(5));
    let body =
        json!({"apiName": "k", "emailOtpCode": email_code, "phoneOtpCode": phone_code, "permissions": ["links:read"]});
    assert_envelope(&s.post("/api/user/api-key", Some(&token), &body), 200, "api.generate_key_successful");
}

#[test]
fn signed_requests_record_their_key_in_use_at_most_once_a_minute() {
    let (s, _recorder, _token, key) = with_key("touch@example.com", json!(["links:read"]));
    let last_used =
        || -> Option<i64> { s.sqlite().query_row("SELECT last_used_at FROM api_keys", [], |r| r.get(0)).unwrap() };
    assert_eq!(last_used(), None);
    assert_eq!(signed(&s, &key, "GET", "/api/links", "", 0).status, 200);
    let first = last_used().expect("recorded on first use");
    s.app.clock.shift(10 * SECOND);
    assert_eq!(signed(&s, &key, "GET", "/api/links?page=2", "", 0).status, 200);
    assert_eq!(last_used(), Some(first), "not written again within the minute");
    s.app.clock.shift(51 * SECOND);
    assert_eq!(signed(&s, &key, "GET", "/api/links?page=3", "", 0).status, 200);
    assert!(last_used().unwrap() >= first + 61 * SECOND, "written again after a minute");
}

#[test]
fn importing_conversions_with_an_api_key_needs_conversions_write() {
    let (s, _recorder, _, key) = with_key("importer@example.com", json!(["conversions:write"]));
    let body = json!({"rows": [{"clickid": "unknown"}], "dry_run": true}).to_string();
    let r = signed(&s, &key, "POST", "/api/conversions/import", &body, 0);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["counts"]["unknown_clickid"], 1);
    let (s, _recorder, _, key) = with_key("reader@example.com", json!(["reports:read"]));
    let r = signed(&s, &key, "POST", "/api/conversions/import", &body, 0);
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn costs_with_an_api_key_need_conversions_write_and_reading_them_reports_read() {
    let (s, _recorder, _, key) = with_key("spender@example.com", json!(["conversions:write"]));
    let body = json!({"link_id": 1, "day": "2026-01-01", "amount": 1}).to_string();
    let r = signed(&s, &key, "POST", "/api/costs", &body, 0);
    assert_eq!(r.status, 422, "allowed, and the unknown link is named: {}", r.body);
    assert!(r.json()["errors"]["link_id"].is_array());
    assert_eq!(signed(&s, &key, "GET", "/api/costs", "", 0).status, 403);
    let (s, _recorder, _, key) = with_key("viewer@example.com", json!(["reports:read"]));
    assert_eq!(signed(&s, &key, "POST", "/api/costs", &body, 0).status, 403);
    assert_eq!(signed(&s, &key, "GET", "/api/costs", "", 0).status, 200);
}
