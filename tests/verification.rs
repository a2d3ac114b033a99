//! Email verification end to end: the mail reaches a real local HTTP
//! server standing in for the provider, the test reads the code and link
//! out of it and verifies with each.

mod common;

use common::{code_and_link, path_of, request, server_with_mail, Client, Recorder, TestServer, PASSWORD};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000_000;

/// Registers `email`, waits for its mail, logs in: (token, code, link).
fn registered(s: &TestServer, recorder: &Recorder, email: &str) -> (String, String, String) {
    let before = recorder.requests().len();
    assert_eq!(s.register(email).status, 201);
    let mail = recorder.wait_delivered(before + 1).into_iter().rfind(|r| r.json()["to"] == email).unwrap();
    let (code, link) = code_and_link(mail.json()["text"].as_str().unwrap());
    let token = s.login(email, PASSWORD).json()["token"].as_str().unwrap().to_string();
    (token, code, link)
}

fn verified_at(s: &TestServer, token: &str) -> Value {
    s.get("/api/user", Some(token)).json()["email_verified_at"].clone()
}

#[test]
fn register_mails_a_code_and_a_link_and_both_verify() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |_| {});
    let (token_a, code_a, _) = registered(&s, &recorder, "code@example.com");
    let (token_b, _, link_b) = registered(&s, &recorder, "link@example.com");

    let mail = &recorder.requests()[0];
    assert_eq!(mail.method, "POST");
    assert_eq!(mail.url, "/send");
    assert_eq!(mail.header("Authorization"), Some("Bearer test-mail-key"));
    let body = mail.json();
    assert_eq!(body["to"], "code@example.com");
    assert_eq!(body["from"], "apextrack <noreply@apextrack.localhost>");
    assert_eq!(body["subject"], "Verifikasi alamat email Anda");
    assert!(body["html"].as_str().unwrap().contains(&code_a), "the HTML part carries the code too");

    assert!(verified_at(&s, &token_a).is_null());
    let r = s.post("/api/email/verify", Some(&token_a), &json!({"code": code_a}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"message": "Email Anda berhasil diverifikasi!", "redirect": "/dashboard"}));
    assert!(verified_at(&s, &token_a).is_string());

    let r = s.get(&path_of(&link_b), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"status": "success", "message": "Email berhasil diverifikasi.", "redirect_url": "http://localhost:8080/login"})
    );
    assert!(verified_at(&s, &token_b).is_string());

    // Secrets at rest: codes only as HMACs, delivered bodies wiped.
    let db = s.sqlite();
    let stored: Vec<String> = db
        .prepare("SELECT body_text || body_html FROM outbox WHERE status = 'sent'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, ["", ""]);
    let dump: String = db
        .query_row("SELECT group_concat(code_hash) FROM otps", [], |r| r.get::<_, Option<String>>(0))
        .unwrap()
        .unwrap_or_default();
    assert!(!dump.contains(&code_a));
}

#[test]
fn five_wrong_codes_kill_the_code() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |_| {});
    let (token, code, _) = registered(&s, &recorder, "brute@example.com");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let r = s.post("/api/email/verify", Some(&token), &json!({"code": wrong}));
        assert_eq!(r.status, 422);
        assert_eq!(r.json(), json!({"message": "Kode verifikasi tidak valid atau sudah kadaluarsa."}));
    }
    let r = s.post("/api/email/verify", Some(&token), &json!({"code": code}));
    assert_eq!(r.status, 422, "the right code after five wrong ones is refused");
    assert!(verified_at(&s, &token).is_null());
}

#[test]
fn wrong_codes_are_limited_per_user_across_resends() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |_| {});
    let (token, code, _) = registered(&s, &recorder, "guess@example.com");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for round in 0..2 {
        for _ in 0..5 {
            assert_eq!(s.post("/api/email/verify", Some(&token), &json!({"code": wrong})).status, 422);
        }
        s.app.clock.shift(MINUTE);
        assert_eq!(s.post("/api/email/resend", Some(&token), &json!({})).status, 200, "round {round}");
    }
    let mails = recorder.wait_delivered(3);
    let (fresh, _) = code_and_link(mails[2].json()["text"].as_str().unwrap());
    let r = s.post("/api/email/verify", Some(&token), &json!({"code": fresh}));
    assert_eq!(r.status, 429, "ten wrong codes in an hour block even a fresh right one: {}", r.body);
    assert!(r.json()["retry_after"].as_u64().unwrap() > 60);
    s.app.clock.shift(60 * MINUTE);
    assert_eq!(
        s.post("/api/email/verify", Some(&token), &json!({"code": fresh})).status,
        422,
        "code expired meanwhile"
    );
}

#[test]
fn codes_expire_after_the_configured_minutes() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |c| c.security.code_ttl_minutes = 10);
    let (token, code, _) = registered(&s, &recorder, "late@example.com");
    s.app.clock.shift(10 * MINUTE + 1);
    let r = s.post("/api/email/verify", Some(&token), &json!({"code": code}));
    assert_eq!(r.status, 422);
    assert!(verified_at(&s, &token).is_null());
    // The maintenance thread's pruning removes the dead code.
    let count = |s: &TestServer| s.sqlite().query_row("SELECT count(*) FROM otps", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count(&s), 1);
    apextrack::jobs::prune(&s.app);
    assert_eq!(count(&s), 0);
}

#[test]
fn resend_waits_a_minute_then_replaces_the_code() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |_| {});
    let (token, old_code, _) = registered(&s, &recorder, "again@example.com");
    for path in ["/api/email/resend", "/api/email/verification-notification", "/api/email/verification-resend"] {
        let r = s.post(path, Some(&token), &json!({}));
        assert_eq!(r.status, 429, "{path}: {}", r.body);
        let retry = r.json()["retry_after"].as_u64().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(r.header("Retry-After"), Some(retry.to_string().as_str()));
        assert_eq!(r.json()["message"], "Harap tunggu 1 menit sebelum mencoba mengirim ulang kode.");
    }
    s.app.clock.shift(MINUTE);
    let r = s.post("/api/email/resend", Some(&token), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"message": "Kode verifikasi baru telah dikirim ke email Anda."}));
    let mails = recorder.wait_delivered(2);
    let (new_code, _) = code_and_link(mails[1].json()["text"].as_str().unwrap());
    if new_code != old_code {
        let r = s.post("/api/email/verify", Some(&token), &json!({"code": old_code}));
        assert_eq!(r.status, 422, "one live code per user: the old one is dead");
    }
    assert_eq!(s.post("/api/email/verify", Some(&token), &json!({"code": new_code})).status, 200);
}

#[test]
fn link_routes_answer_in_seed_003_shape_and_show_the_url_only_with_the_log_mailer() {
    let s = TestServer::start(); // mail.provider = log
    let token = s.user_with_token("log@example.com");
    s.app.clock.shift(MINUTE);
    let r = s.post("/api/email/verification-notification", Some(&token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Link verifikasi email telah dikirim.");
    let url = body["data"]["verification_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://localhost:8080/api/email/verify/1/"), "{url}");
    s.app.clock.shift(MINUTE);
    let r = s.post("/api/email/verification-resend", Some(&token), &json!({}));
    assert_eq!(r.json()["message"], "Link verifikasi email telah dikirim ulang.");
    // The log mailer printed the mail, link included.
    assert!(s.log().contains("mail (log provider) to log@example.com"));
    assert_eq!(s.get(&path_of(&url), None).status, 200);

    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |_| {});
    let token = s.user_with_token("http@example.com");
    s.app.clock.shift(MINUTE);
    let r = s.post("/api/email/verification-notification", Some(&token), &json!({}));
    assert_eq!(r.json()["data"], json!({"verification_url": null}));
}

#[test]
fn every_tampered_link_part_is_refused() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |_| {});
    let (token, _, link) = registered(&s, &recorder, "victim@example.com");
    registered(&s, &recorder, "other@example.com");
    let path = path_of(&link);
    let (route, query) = path.split_once('?').unwrap();
    let parts: Vec<&str> = route.split('/').collect(); // ["", "api", "email", "verify", id, hash]
    let (id, hash) = (parts[4], parts[5]);
    let expires = query.split('&').find_map(|p| p.strip_prefix("expires=")).unwrap();
    let signature = query.split('&').find_map(|p| p.strip_prefix("signature=")).unwrap();
    let flip = |s: &str| {
        let mut chars: Vec<char> = s.chars().collect();
        chars[0] = if chars[0] == 'a' { 'b' } else { 'a' };
        chars.into_iter().collect::<String>()
    };
    let later = (expires.parse::<i64>().unwrap() + 3600).to_string();
    let invalid = [
        format!("/api/email/verify/2/{hash}?expires={expires}&signature={signature}"),
        format!("/api/email/verify/{id}/{}?expires={expires}&signature={signature}", flip(hash)),
        format!("/api/email/verify/{id}/{hash}?expires={later}&signature={signature}"),
        format!("/api/email/verify/{id}/{hash}?expires={expires}&signature={}", flip(signature)),
        format!("/api/email/verify/{id}/{hash}?expires={expires}&signature={}", &signature[..63]),
        format!("/api/email/verify/{id}/{hash}?expires={expires}"),
        format!("/api/email/verify/{id}/{hash}?signature={signature}"),
        format!("/api/email/verify/{id}/{hash}?expires=soon&signature={signature}"),
        format!("/api/email/verify/{id}/{hash}?expires={expires}&signature=%27%20OR%201%3D1%20--"),
    ];
    for bad in &invalid {
        let r = s.get(bad, None);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(
            r.json(),
            json!({"status": "error", "message": "Invalid/Expired url provided.",
                   "redirect_url": "http://localhost:8080/email-verification-error"}),
            "{bad}"
        );
    }
    for unknown in [
        format!("/api/email/verify/999/{hash}?expires={expires}&signature={signature}"),
        format!("/api/email/verify/x/{hash}?expires={expires}&signature={signature}"),
    ] {
        let r = s.get(&unknown, None);
        assert_eq!(r.status, 404, "{unknown}");
        assert_eq!(r.json()["message"], "User not found.");
    }
    // A browser is redirected to the page instead.
    let r = request(s.addr(), "GET", &invalid[3], &[("Accept", "text/html,application/xhtml+xml")], b"");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://localhost:8080/email-verification-error"));
    assert!(verified_at(&s, &token).is_null(), "no tampered link verified anything");

    // A HEAD (a mail client's link scanner) verifies nothing.
    assert_eq!(request(s.addr(), "HEAD", &path, &[], b"").status, 200);
    assert!(verified_at(&s, &token).is_null());
    // The email's hash never reaches the access log.
    assert!(!s.log().contains(hash), "{}", s.log());
    // Expired: the genuine link, 61 minutes later.
    s.app.clock.shift(61 * MINUTE);
    assert_eq!(s.get(&path, None).status, 400);
    s.app.clock.shift(-61 * MINUTE);
    let r = request(s.addr(), "GET", &path, &[("Accept", "text/html")], b"");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://localhost:8080/login"));
    assert!(verified_at(&s, &token).is_string());
}

#[test]
fn verified_accounts_get_400_from_every_sending_and_verifying_route() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |_| {});
    let (token, code, link) = registered(&s, &recorder, "done@example.com");
    assert_eq!(s.post("/api/email/verify", Some(&token), &json!({"code": code})).status, 200);
    s.app.clock.shift(MINUTE);
    let r = s.post("/api/email/verify", Some(&token), &json!({"code": code}));
    assert_eq!((r.status, r.json()), (400, json!({"message": "Email sudah terverifikasi."})));
    let r = s.post("/api/email/resend", Some(&token), &json!({}));
    assert_eq!((r.status, r.json()), (400, json!({"message": "Email sudah terverifikasi."})));
    for path in ["/api/email/verification-notification", "/api/email/verification-resend"] {
        let r = s.post(path, Some(&token), &json!({}));
        assert_eq!((r.status, r.json()), (400, json!({"success": false, "message": "Email sudah terverifikasi."})));
    }
    let r = s.get(&path_of(&link), None);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "Email sudah terverifikasi.");
    // Without a genuine signature nobody learns the account is verified.
    let forged = path_of(&link).replace("signature=", "signature=0");
    assert_eq!(s.get(&forged, None).json()["message"], "Invalid/Expired url provided.");
    assert_eq!(recorder.requests().len(), 1, "no mail was sent to a verified account");
}

#[test]
fn code_routes_need_a_token_and_a_code() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |_| {});
    let (token, _, _) = registered(&s, &recorder, "input@example.com");
    assert_eq!(s.post("/api/email/verify", None, &json!({"code": "123456"})).status, 401);
    assert_eq!(s.post("/api/email/resend", None, &json!({})).status, 401);
    let r = s.post("/api/email/verify", Some(&token), &json!({}));
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["errors"], json!({"code": ["The code field is required."]}));
    let r = s.post("/api/email/verify", Some(&token), &json!({"code": 123456}));
    assert_eq!(r.json()["errors"], json!({"code": ["The code must be a string."]}));
    assert_eq!(s.get("/api/email/verify", Some(&token)).status, 405);
}

#[test]
fn an_english_user_gets_english_mail() {
    let recorder = Recorder::start();
    let s = server_with_mail(&recorder, |c| c.server.default_language = "en".into());
    assert_eq!(s.register("en@example.com").status, 201);
    let mail = recorder.wait_delivered(1)[0].json();
    assert_eq!(mail["subject"], "Verify your email address");
    assert!(mail["text"].as_str().unwrap().starts_with("Hello Test User,"));
}
