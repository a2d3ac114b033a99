//! Accounts over real HTTP against a real SQLite file: register, login,
//! logout, user, tokens, throttling, and every error class of the contract.

mod common;

use apextrack::accounts;
use common::{request, Client, TestServer, PASSWORD};
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};

fn register_body(name: &Value, email: &Value, password: &Value, confirmation: &Value) -> Value {
    json!({"name": name, "email": email, "password": password, "password_confirmation": confirmation})
}

#[test]
fn register_answers_201_with_the_seed_message_and_stores_an_argon2id_hash() {
    let s = TestServer::start();
    let r = s.register("new@example.com");
    assert_eq!(r.status, 201);
    assert_eq!(r.json(), json!({"message": "Pendaftaran berhasil, silakan verifikasi email Anda."}));
    let hash: String = s
        .sqlite()
        .query_row("SELECT password_hash FROM users WHERE email = 'new@example.com'", [], |r| r.get(0))
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
}

#[test]
fn register_validation_matches_laravel_to_the_letter() {
    let s = TestServer::start();
    assert_eq!(s.register("taken@example.com").status, 201);
    let long = "x".repeat(256);
    let long_email = format!("{}@example.com", "a".repeat(250));
    let cases: Vec<(Value, Value)> = vec![
        (
            // The seed's example: taken email and a wrong confirmation (case-insensitively taken).
            register_body(&json!("N"), &json!("TAKEN@example.com"), &json!("password123"), &json!("password124")),
            json!({"email": ["The email has already been taken."], "password": ["The password confirmation does not match."]}),
        ),
        (
            json!({}),
            json!({
                "email": ["The email field is required."],
                "name": ["The name field is required."],
                "password": ["The password field is required."],
            }),
        ),
        (
            register_body(&json!(5), &json!(["a@b.co"]), &json!(true), &json!(null)),
            json!({
                "email": ["The email must be a string."],
                "name": ["The name must be a string."],
                "password": ["The password must be a string."],
            }),
        ),
        (
            register_body(&json!(long), &json!("not-an-email"), &json!("short"), &json!("short")),
            json!({
                "email": ["The email must be a valid email address."],
                "name": ["The name must not be greater than 255 characters."],
                "password": ["The password must be at least 8 characters."],
            }),
        ),
        (
            register_body(&json!("N"), &json!(long_email), &json!("password123"), &json!(null)),
            json!({
                "email": ["The email must not be greater than 255 characters."],
                "password": ["The password confirmation does not match."],
            }),
        ),
        (
            register_body(&json!("N"), &json!("a@b.co' OR '1'='1"), &json!("password123"), &json!("password123")),
            json!({"email": ["The email must be a valid email address."]}),
        ),
    ];
    for (body, errors) in cases {
        let r = s.post("/api/register", None, &body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.json(), json!({"message": "The given data was invalid.", "errors": errors}), "{body}");
    }
    let count: i64 = s.sqlite().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(count, 1, "no invalid registration may store a row");
}

#[test]
fn sql_fragments_are_just_data() {
    let s = TestServer::start();
    let name = "Robert'); DROP TABLE users;--";
    let r = s.post(
        "/api/register",
        None,
        &register_body(&json!(name), &json!("bobby@example.com"), &json!("' OR 1=1 --x"), &json!("' OR 1=1 --x")),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.post("/api/login", None, &json!({"email": "' OR 1=1 --", "password": "' OR 1=1 --", "device_name": "x"}));
    assert_eq!(r.status, 422);
    let r = s.post(
        "/api/login",
        None,
        &json!({"email": "bobby@example.com", "password": "' OR 1=1 --x", "device_name": "'; --"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(s.get("/api/user", Some(&token)).json()["name"], name);
}

#[test]
fn ten_concurrent_registrations_of_one_email_give_exactly_one_201() {
    // Ten sign-ups from one address: above the per-address limit, which
    // tests/abuse.rs covers; this is about the race.
    let s = TestServer::with(|c| c.security.registrations_per_ip_hour = 100);
    let addr = s.addr();
    let barrier = Arc::new(Barrier::new(10));
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                // Differently cased, the same address.
                let email = if i % 2 == 0 { "race@example.com" } else { "RACE@example.com" };
                addr.register(email)
            })
        })
        .collect();
    let handles: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    let created = handles.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "{:?}", handles.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in handles.iter().filter(|r| r.status != 201) {
        assert_eq!(r.status, 422);
        assert_eq!(r.json()["errors"]["email"], json!(["The email has already been taken."]));
    }
}

#[test]
fn login_returns_the_user_and_a_sanctum_token_stored_only_as_sha256() {
    let s = TestServer::start();
    s.register("login@example.com");
    let r = s.login("LOGIN@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["user"], json!({"id": 1, "name": "Test User", "email": "login@example.com"}));
    let token = body["token"].as_str().unwrap();
    let (id, secret) = token.split_once('|').unwrap();
    assert_eq!(id, "1");
    assert_eq!(secret.len(), 40);
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    let (stored, name): (String, String) = s
        .sqlite()
        .query_row("SELECT token_hash, name FROM personal_access_tokens WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(stored, apextrack::crypto::sha256_hex(secret.as_bytes()));
    assert_eq!(name, "tests");
    // Neither the password nor the token ever reaches the log.
    let log = s.log();
    assert!(log.contains("POST /api/login 200"), "{log}");
    assert!(!log.contains(secret) && !log.contains(PASSWORD), "{log}");
}

#[test]
fn unknown_email_and_wrong_password_get_the_same_answer() {
    let s = TestServer::start();
    s.register("known@example.com");
    let wrong = s.login("known@example.com", "wrong-password");
    let unknown = s.login("nobody@example.com", PASSWORD);
    for r in [&wrong, &unknown] {
        assert_eq!(r.status, 422);
        assert_eq!(
            r.json(),
            json!({"message": "The given data was invalid.", "errors": {"email": ["The provided credentials are incorrect."]}})
        );
    }
    let r = s.post("/api/login", None, &json!({"email": "known@example.com"}));
    assert_eq!(
        r.json()["errors"],
        json!({"device_name": ["The device name field is required."], "password": ["The password field is required."]})
    );
}

#[test]
fn five_failures_per_email_and_ip_throttle_until_the_minute_is_over() {
    let s = TestServer::with(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]);
    s.register("throttle@example.com");
    for _ in 0..5 {
        assert_eq!(s.login("throttle@example.com", "wrong-password").status, 422);
    }
    // The right password does not help while throttled.
    let r = s.login("throttle@example.com", PASSWORD);
    assert_eq!(r.status, 429, "{}", r.body);
    let retry = r.json()["retry_after"].as_u64().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.header("Retry-After"), Some(retry.to_string().as_str()));
    assert_eq!(r.json()["message"], format!("Terlalu banyak percobaan login. Silakan coba lagi dalam {retry} detik."));
    // Another address (through the trusted proxy) and another email are not affected.
    let other_ip = request(
        s.addr(),
        "POST",
        "/api/login",
        &[("X-Forwarded-For", "203.0.113.7")],
        json!({"email": "throttle@example.com", "password": PASSWORD, "device_name": "x"}).to_string().as_bytes(),
    );
    assert_eq!(other_ip.status, 200, "{}", other_ip.body);
    assert_eq!(s.login("other@example.com", "x").status, 422);
    // A minute later the window has reset.
    s.app.clock.shift(61 * 1_000_000);
    assert_eq!(s.login("throttle@example.com", PASSWORD).status, 200);
}

#[test]
fn guesses_at_one_account_spread_over_many_addresses_are_limited_too() {
    let s = TestServer::with(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]);
    s.register("target@example.com");
    let login_from = |ip: &str, password: &str| {
        let body = json!({"email": "target@example.com", "password": password, "device_name": "x"}).to_string();
        request(s.addr(), "POST", "/api/login", &[("X-Forwarded-For", ip)], body.as_bytes())
    };
    // Ten addresses, each staying under its own limit of 5 a minute.
    let mut checked = 0;
    let mut refused = 0;
    for n in 0..10 {
        for _ in 0..4 {
            match login_from(&format!("198.51.100.{n}"), "wrong-password").status {
                422 => checked += 1,
                429 => refused += 1,
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(checked, 20, "passwords checked for one account in a minute");
    assert_eq!(refused, 20);
    // Same answer as any throttle, even with the right password, from a new address.
    let r = login_from("198.51.100.99", PASSWORD);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.json()["retry_after"].as_u64().is_some_and(|s| s > 60), "{}", r.body);
    // Other accounts are not affected, and the window ends.
    s.register("bystander@example.com");
    assert_eq!(s.login("bystander@example.com", PASSWORD).status, 200);
    s.app.clock.shift(16 * 60 * 1_000_000);
    assert_eq!(login_from("198.51.100.99", PASSWORD).status, 200);
}

#[test]
fn a_successful_login_resets_the_failure_count() {
    let s = TestServer::start();
    s.register("reset@example.com");
    for _ in 0..4 {
        assert_eq!(s.login("reset@example.com", "wrong-password").status, 422);
    }
    assert_eq!(s.login("reset@example.com", PASSWORD).status, 200);
    for _ in 0..5 {
        assert_eq!(s.login("reset@example.com", "wrong-password").status, 422);
    }
    assert_eq!(s.login("reset@example.com", PASSWORD).status, 429);
}

#[test]
fn user_shows_the_seed_fields_and_the_settings() {
    let s = TestServer::start();
    let token = s.user_with_token("me@example.com");
    let r = s.get("/api/user", Some(&token));
    assert_eq!(r.status, 200);
    let body = r.json();
    for (key, value) in [
        ("id", json!(1)),
        ("name", json!("Test User")),
        ("email", json!("me@example.com")),
        ("email_verified_at", json!(null)),
        ("account_status", json!("active")),
        ("language", json!("id")),
        ("currency", json!("USD")),
        ("phone", json!(null)),
        ("two_factor_enabled", json!(false)),
    ] {
        assert_eq!(body[key], value, "{key}");
    }
    accounts::mark_verified(&s.app, 1).unwrap();
    let verified = s.get("/api/user", Some(&token)).json()["email_verified_at"].as_str().unwrap().to_string();
    assert_eq!(verified.len(), "2024-08-17T08:05:00.000000Z".len(), "{verified}");
    assert!(verified.ends_with('Z'));
    let used: Option<i64> =
        s.sqlite().query_row("SELECT last_used_at FROM personal_access_tokens", [], |r| r.get(0)).unwrap();
    assert!(used.is_some(), "last_used_at is kept");
}

#[test]
fn x_token_works_and_logout_revokes_only_its_own_token() {
    let s = TestServer::start();
    let first = s.user_with_token("two@example.com");
    let second = s.login("two@example.com", PASSWORD).json()["token"].as_str().unwrap().to_string();
    let via_x_token = request(s.addr(), "GET", "/api/user", &[("X-Token", &second)], b"");
    assert_eq!(via_x_token.status, 200);

    let r = s.post("/api/logout", Some(&first), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"message": "Berhasil logout."}));
    assert_eq!(s.get("/api/user", Some(&first)).status, 401);
    assert_eq!(s.post("/api/logout", Some(&first), &json!({})).status, 401, "a revoked token cannot be replayed");
    assert_eq!(s.get("/api/user", Some(&second)).status, 200);
}

#[test]
fn forged_malformed_and_missing_tokens_are_401() {
    let s = TestServer::start();
    let token = s.user_with_token("forge@example.com");
    let other = s.user_with_token("other@example.com");
    let (id, secret) = token.split_once('|').unwrap();
    let (_, other_secret) = other.split_once('|').unwrap();
    let mut flipped = secret.to_string();
    flipped.replace_range(0..1, if secret.starts_with('a') { "b" } else { "a" });
    let forged = [
        format!("{id}|{flipped}"),
        format!("{id}|{other_secret}"),
        format!("{id}|"),
        format!("999|{secret}"),
        secret.to_string(),
        format!("x|{secret}"),
        "' OR 1=1 --|x".to_string(),
        String::new(),
    ];
    for bad in forged {
        let r = s.get("/api/user", Some(&bad));
        assert_eq!(r.status, 401, "{bad:?}");
        assert_eq!(r.json(), json!({"message": "Unauthenticated."}));
    }
    assert_eq!(s.get("/api/user", None).status, 401);
    let basic = request(s.addr(), "GET", "/api/user", &[("Authorization", &format!("Basic {token}"))], b"");
    assert_eq!(basic.status, 401);
    // Another scheme in Authorization does not hide a valid X-Token.
    let both =
        request(s.addr(), "GET", "/api/user", &[("Authorization", "Basic Zm9vOmJhcg=="), ("X-Token", &token)], b"");
    assert_eq!(both.status, 200);
    let long = format!("{}@example.com", "a".repeat(300));
    let r = s.post("/api/login", None, &json!({"email": long, "password": "x", "device_name": "x"}));
    assert_eq!(r.json()["errors"]["email"], json!(["The email must not be greater than 255 characters."]));
}

#[test]
fn tokens_of_deleted_or_suspended_users_are_refused() {
    let s = TestServer::start();
    let gone = s.user_with_token("gone@example.com");
    let held = s.user_with_token("held@example.com");
    accounts::delete(&s.app, 1).unwrap();
    assert_eq!(s.get("/api/user", Some(&gone)).status, 401);

    accounts::set_status(&s.app, 2, "suspended").unwrap();
    let r = s.get("/api/user", Some(&held));
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), json!({"message": "Akun Anda ditangguhkan. Hubungi administrator."}));
    // Login: the suspension is told only to someone with the right password.
    assert_eq!(s.login("held@example.com", "wrong-password").status, 422);
    let r = s.login("held@example.com", PASSWORD);
    assert_eq!(r.status, 403);
    assert!(r.json().get("token").is_none());
    accounts::set_status(&s.app, 2, "active").unwrap();
    assert_eq!(s.get("/api/user", Some(&held)).status, 200);
}

#[test]
fn tokens_expire_after_the_configured_days() {
    let s = TestServer::with(|c| c.security.token_ttl_days = 1);
    let token = s.user_with_token("ttl@example.com");
    assert_eq!(s.get("/api/user", Some(&token)).status, 200);
    s.app.clock.shift(24 * 3600 * 1_000_000 + 1);
    assert_eq!(s.get("/api/user", Some(&token)).status, 401);
}

#[test]
fn the_verified_guard_refuses_unverified_users() {
    let s = TestServer::start();
    s.register("guard@example.com");
    let user = accounts::find(&s.app, "guard@example.com").unwrap();
    let e = accounts::require_verified(&user).unwrap_err();
    let r = apextrack::http::respond::error(&e, apextrack::http::respond::Shape::Plain, apextrack::i18n::Lang::Id);
    assert_eq!(r.status_code, 403);
    accounts::mark_verified(&s.app, user.id).unwrap();
    assert!(accounts::require_verified(&accounts::find(&s.app, "guard@example.com").unwrap()).is_ok());
}

#[test]
fn messages_follow_the_users_language_then_accept_language() {
    let s = TestServer::start();
    let r = request(
        s.addr(),
        "POST",
        "/api/register",
        &[("Accept-Language", "en-GB,en;q=0.9")],
        json!({"name": "E", "email": "en@example.com", "password": PASSWORD, "password_confirmation": PASSWORD})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.json(), json!({"message": "Registration successful, please verify your email."}));
    // Registered from an English browser, the account speaks English from then on.
    let token = s.login("en@example.com", PASSWORD).json()["token"].as_str().unwrap().to_string();
    assert_eq!(s.get("/api/user", Some(&token)).json()["language"], "en");
    let r = s.post("/api/logout", Some(&token), &json!({}));
    assert_eq!(r.json(), json!({"message": "Logged out successfully."}));
}

#[test]
fn every_error_class_has_its_json_shape() {
    let s = TestServer::with(|c| c.server.max_body_bytes = 2048);
    let token = s.user_with_token("errors@example.com");
    let addr = s.addr();

    let r = request(addr, "POST", "/api/login", &[("Content-Type", "application/json")], b"{\"email\": ");
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().starts_with("The request body is not valid JSON"), "{}", r.body);
    let r = request(addr, "POST", "/api/login", &[], b"[1, 2]");
    assert_eq!((r.status, r.json()), (400, json!({"message": "The request body must be a JSON object."})));

    let r = s.get("/api/nothing-here", None);
    assert_eq!((r.status, r.json()), (404, json!({"message": "Not Found."})));
    let r = s.get("/api/../../etc/passwd", None);
    assert_eq!(r.status, 404);

    let r = s.get("/api/register", None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));
    assert_eq!(
        r.json(),
        json!({"message": "The GET method is not supported for this route. Supported methods: POST."})
    );
    assert_eq!(s.call("DELETE", "/api/user", Some(&token), None).status, 405);

    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(4096));
    let r = request(addr, "POST", "/api/register", &[], big.as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(r.json(), json!({"message": "The request body is larger than the limit of 2048 bytes."}));
    // A declared huge body is refused before it is sent.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n",
    )
    .unwrap();
    let r = common::read_response(&mut stream);
    assert_eq!(r.status, 413);

    let r = s.get("/api/health", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));
    for header in ["X-Content-Type-Options", "X-Frame-Options", "Cache-Control"] {
        assert!(r.header(header).is_some(), "{header} missing");
    }
    let head = request(addr, "HEAD", "/api/health", &[], b"");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let index = s.get("/", None);
    assert_eq!(index.status, 200);
    assert!(index.header("Content-Security-Policy").is_some());
    assert_eq!(s.get("/assets/../../Cargo.toml", None).status, 404);
}

#[test]
fn a_locked_database_gives_503_and_recovers_without_restart() {
    let s = TestServer::with(|c| c.database.busy_timeout_ms = 200);
    let lock = s.sqlite();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = s.register("busy@example.com");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json(), json!({"message": "Service Unavailable."}));
    lock.execute_batch("ROLLBACK").unwrap();
    assert_eq!(s.register("busy@example.com").status, 201);
    let ok: String = s.sqlite().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}
