//! Notifications and offer monitoring (SPEC §13) through the real server
//! and a real SQLite file, with real local HTTP servers standing in for
//! Telegram's Bot API, a webhook receiver (which checks the signature as
//! the README tells a receiver to) and offers' pages.

mod common;

use common::{cli, request, verified_user, write_config, Client, Recorded, Recorder, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const OTHER_TOKEN: &str = "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsbb";
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
const SECOND: i64 = 1_000_000;

struct Setup {
    s: TestServer,
    token: String,
}

fn setup(adjust: impl FnOnce(&mut apextrack::Config)) -> Setup {
    let s = TestServer::with(|c| {
        c.tracking.allow_private_targets = true;
        adjust(c);
    });
    let (_, token) = verified_user(&s, "aff@example.com");
    Setup { s, token }
}

impl Setup {
    fn put(&self, body: Value) -> common::Resp {
        self.s.call("PUT", "/api/notifications", Some(&self.token), Some(&body))
    }

    fn settings(&self) -> Value {
        let r = self.s.get("/api/notifications", Some(&self.token));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    fn link(&self, body: Value) -> (i64, String) {
        let r = self.s.post("/api/links", Some(&self.token), &body);
        assert_eq!(r.status, 201, "{}", r.body);
        let d = r.json()["data"].clone();
        (d["id"].as_i64().unwrap(), d["slug"].as_str().unwrap().to_string())
    }

    fn secret(&self) -> String {
        let url = self.s.get("/api/user", Some(&self.token)).json()["postback_url"].as_str().unwrap().to_string();
        url.split("secret=").nth(1).unwrap().to_string()
    }

    /// A click on `slug`; its clickid.
    fn click(&self, slug: &str, query: &str) -> String {
        let r = request(self.s.addr(), "GET", &format!("/go/{slug}?{query}"), &[("User-Agent", UA)], b"");
        assert_eq!(r.status, 302, "{}", r.body);
        self.s.last_clickid()
    }

    fn postback(&self, query: &str) -> common::Resp {
        self.s.get(&format!("/api/postback/conversion?{query}"), None)
    }

    /// The outbox rows of a channel: (status, attempts, last_error).
    fn outbox(&self, channel: &str) -> Vec<(String, i64, Option<String>)> {
        let db = self.s.sqlite();
        let mut stmt =
            db.prepare("SELECT status, attempts, last_error FROM outbox WHERE channel = ?1 ORDER BY id").unwrap();
        let rows = stmt.query_map([channel], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        rows.map(Result::unwrap).collect()
    }
}

fn fields(r: &common::Resp) -> Vec<String> {
    assert_eq!(r.status, 422, "{}", r.body);
    let mut f: Vec<String> = r.json()["errors"].as_object().unwrap().keys().cloned().collect();
    f.sort();
    f
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// What a receiver does with `X-Apextrack-Signature` (as the README shows):
/// recompute HMAC-SHA256(secret, t + "." + body), compare in constant
/// time, and refuse a `t` more than five minutes away.
fn verify(secret: &str, request: &Recorded) -> Result<i64, String> {
    let header = request.header("X-Apextrack-Signature").ok_or("no signature")?;
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_string()),
            _ => {}
        }
    }
    let (t, v1) = (t.ok_or("no t")?, v1.ok_or("no v1")?);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - t).abs() > 300 {
        return Err(format!("t={t} is too old"));
    }
    let message = format!("{t}.{}", request.body);
    if apextrack::crypto::hmac_sha256_verify(secret.as_bytes(), message.as_bytes(), &v1) {
        Ok(t)
    } else {
        Err("signature does not match".into())
    }
}

#[test]
fn settings_are_validated_by_field_and_secrets_never_come_back_whole() {
    let t = setup(|c| c.tracking.allow_private_targets = false);
    let empty = t.settings();
    assert_eq!(empty["telegram"], Value::Null);
    assert_eq!(empty["webhook"], Value::Null);
    assert_eq!(empty["digest_hour"], 8);
    assert_eq!(empty["event_names"].as_array().unwrap().len(), 6);

    // Every bad value is named by its field, all at once.
    let r = t.put(json!({
        "telegram": {"bot_token": "abc", "chat_id": "12 34", "events": ["conversion", "sale"]},
        "webhook": {"url": "http://127.0.0.1:9/hook", "events": ["daily_digest"]},
        "digest_hour": 24,
        "stop_loss_amount": "ten dollars",
    }));
    assert_eq!(
        fields(&r),
        [
            "digest_hour",
            "stop_loss_amount",
            "telegram.bot_token",
            "telegram.chat_id",
            "telegram.events.1",
            "webhook.url"
        ]
    );
    assert!(r.body.contains("private network"), "{}", r.body);
    for (body, field) in [
        (json!({"webhook": {"url": "http://localhost/hook"}}), "webhook.url"),
        (json!({"webhook": {"url": "http://[::1]:8080/hook"}}), "webhook.url"),
        (json!({"webhook": {"url": "http://10.1.2.3/hook"}}), "webhook.url"),
        (json!({"webhook": {"url": "ftp://hooks.example.com/x"}}), "webhook.url"),
        (
            json!({"webhook": {"url": "https://hooks.example.com/x'; DROP TABLE users;--", "events": "conversion"}}),
            "webhook.events",
        ),
        (json!({"webhook": {"url": 42}}), "webhook.url"),
        (json!({"webhook": {"url": "https://bücher.example/hook"}}), "webhook.url"),
        (json!({"webhook": "https://hooks.example.com/"}), "webhook"),
        (json!({"telegram": {"chat_id": "42"}}), "telegram.bot_token"),
        (json!({"telegram": {"bot_token": TOKEN}}), "telegram.chat_id"),
        (json!({"telegram": {"bot_token": format!("{TOKEN}/../../x"), "chat_id": 1}}), "telegram.bot_token"),
        (json!({"telegram": {"bot_token": TOKEN, "chat_id": 1, "events": ["stop_loss"]}}), "stop_loss_amount"),
        (json!({"stop_loss_amount": -5}), "stop_loss_amount"),
        (json!({"stop_loss_amount": "1e400"}), "stop_loss_amount"),
        (json!({"digest_hour": "8"}), "digest_hour"),
    ] {
        let r = t.put(body.clone());
        assert!(fields(&r).contains(&field.to_string()), "{body} → {}", r.body);
    }
    assert_eq!(t.settings()["telegram"], Value::Null, "nothing was saved by a refused request");

    // A good one: the new webhook secret is in this answer only.
    let r = t.put(json!({
        "telegram": {"bot_token": TOKEN, "chat_id": -1001234567890i64, "events": ["conversion", "stop_loss"]},
        "webhook": {"url": "https://hooks.example.com/apextrack", "events": ["conversion", "conversion"]},
        "digest_hour": 7,
        "stop_loss_amount": "12.50",
    }));
    assert_eq!(r.status, 200, "{}", r.body);
    let saved = r.json();
    let secret = saved["webhook"]["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_") && secret.len() > 40 && !secret.contains('…'), "{secret}");
    assert_eq!(saved["webhook"]["events"], json!(["conversion"]));
    assert_eq!(saved["telegram"]["chat_id"], "-1001234567890");
    assert_eq!(saved["stop_loss_amount"], 12.5);
    assert_eq!(saved["telegram"]["bot_token"], "123456789:…Dsaw");

    let shown = t.settings();
    assert_eq!(shown["webhook"]["secret"], format!("whsec_…{}", &secret[secret.len() - 4..]));
    assert!(!t.s.get("/api/notifications", Some(&t.token)).body.contains(&TOKEN[10..]), "the token is masked");

    // Saving again without the token (or with its mask) keeps it and the secret.
    let r = t.put(json!({"telegram": {"bot_token": "123456789:…Dsaw", "chat_id": "42", "events": ["conversion"]},
                         "webhook": {"url": "https://hooks.example.com/v2", "events": ["conversion"]}}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["webhook"]["secret"].as_str().unwrap().contains('…'), "no new secret without asking");
    assert_eq!(r.json()["digest_hour"], 7, "a key left out stays");
    let r = t.put(json!({"webhook": {"url": "https://hooks.example.com/v2", "rotate_secret": true}}));
    let rotated = r.json()["webhook"]["secret"].as_str().unwrap().to_string();
    assert!(!rotated.contains('…') && rotated != secret, "a rotation makes a new secret");

    // Stored: the token sealed, not in the clear; the secret not at all.
    let db = t.s.sqlite();
    let sealed: Vec<u8> = db.query_row("SELECT telegram_token FROM notify_settings", [], |r| r.get(0)).unwrap();
    assert!(!sealed.windows(20).any(|w| w == &TOKEN.as_bytes()[10..30]), "the bot token is not stored in the clear");
    let dump: String = db
        .query_row(
            "SELECT group_concat(coalesce(telegram_token_hint, '') || telegram_chat_id || webhook_url) FROM notify_settings",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!dump.contains(&rotated[6..]) && !dump.contains(&TOKEN[10..]), "{dump}");
    assert!(!t.s.log().contains(&TOKEN[10..]) && !t.s.log().contains(&rotated[6..]), "never logged");

    // Another user sees their own (empty) settings, and turning channels
    // off is theirs alone.
    let (_, other) = verified_user(&t.s, "other@example.com");
    let theirs = t.s.get("/api/notifications", Some(&other)).json();
    assert_eq!(theirs["telegram"], Value::Null);
    let r = t.s.call("PUT", "/api/notifications", Some(&other), Some(&json!({"telegram": null, "webhook": null})));
    assert_eq!(r.status, 200);
    assert_eq!(t.settings()["telegram"]["chat_id"], "42", "the first user's settings are untouched");
    // No token: no settings.
    assert_eq!(t.s.get("/api/notifications", None).status, 401);
    // Malformed JSON is a 400; a channel set to null is off.
    let r = request(
        t.s.addr(),
        "PUT",
        "/api/notifications",
        &[("Authorization", &format!("Bearer {}", t.token))],
        b"{\"telegram\":",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(t.put(json!({"telegram": null})).json()["telegram"], Value::Null);
    // Saves are limited (each may look up a host name).
    let statuses: Vec<u16> = (0..40).map(|_| t.put(json!({"digest_hour": 9})).status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count() + statuses.iter().filter(|&&s| s == 429).count(), 40);
}

#[test]
fn conversions_reach_telegram_and_a_signed_webhook_through_the_outbox() {
    let telegram = Recorder::start();
    telegram.answer_with(200, r#"{"ok":true,"result":{"message_id":7}}"#);
    let hook = Recorder::start();
    let api = telegram.url();
    let t = setup(|c| c.notify.telegram_api = api);
    let r = t.put(json!({
        "telegram": {"bot_token": TOKEN, "chat_id": "-100200300", "events": ["conversion"]},
        "webhook": {"url": format!("{}/hook", hook.url()), "events": ["conversion"]},
    }));
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = r.json()["webhook"]["secret"].as_str().unwrap().to_string();
    let (link_id, slug) =
        t.link(json!({"name": "Summer <offer>", "url": "https://offer.example/?c={clickid}", "payout": 3}));
    let clickid = t.click(&slug, "sub_id=fb-42");
    let pb = t.secret();
    let r = t.postback(&format!("clickid={clickid}&txid=T-1&status=pending&payout=4.20&secret={pb}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = t.postback(&format!("clickid={clickid}&txid=T-1&status=approved&secret={pb}"));
    assert_eq!(r.status, 200, "{}", r.body);
    // A postback that changes nothing says nothing.
    assert_eq!(t.postback(&format!("clickid={clickid}&txid=T-1&status=approved&secret={pb}")).status, 200);

    let sent = telegram.wait_delivered(2);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].url, format!("/bot{TOKEN}/sendMessage"));
    let body = sent[0].json();
    assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), ["chat_id", "text"]);
    assert_eq!(body["chat_id"], -100200300i64);
    let text = body["text"].as_str().unwrap();
    for part in ["pending", "4.20", "Summer <offer>", "fb-42", "T-1", "USD"] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(sent[1].json()["text"].as_str().unwrap().contains("approved"), "{:?}", sent[1].body);

    let hooks = hook.wait_delivered(2);
    assert_eq!(hooks[0].method, "POST");
    assert_eq!(hooks[0].url, "/hook");
    assert_eq!(hooks[0].header("Content-Type"), Some("application/json"));
    for h in &hooks {
        verify(&secret, h).unwrap_or_else(|e| panic!("{e}: {:?}", h.headers));
    }
    let first = hooks[0].json();
    assert_eq!(first["event"], "conversion");
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    let data = &first["data"];
    assert_eq!((data["clickid"].as_str(), data["txid"].as_str()), (Some(clickid.as_str()), Some("T-1")));
    assert_eq!((data["status"].as_str(), data["payout"].as_f64()), (Some("pending"), Some(4.2)));
    assert_eq!(data["link"], json!({"id": link_id, "name": "Summer <offer>"}));
    assert_eq!(data["sub_id"], "fb-42");
    let second = hooks[1].json();
    assert_eq!(
        (second["data"]["status"].as_str(), second["data"]["previous_status"].as_str()),
        (Some("approved"), Some("pending"))
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(telegram.requests().len(), 2, "the unchanged postback sent nothing");

    // A forged signature or an old one fails the receiver's check.
    let mut forged = hooks[0].clone();
    forged.body = forged.body.replace("4.2", "42");
    assert!(verify(&secret, &forged).is_err());
    assert!(verify("whsec_wrong", &hooks[0]).is_err());

    // The message text and data were wiped from the outbox once delivered.
    let left: i64 =
        t.s.sqlite()
            .query_row(
                "SELECT count(*) FROM outbox WHERE channel IN ('telegram', 'webhook') AND body_text != ''",
                [],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(left, 0);
    assert!(!t.s.log().contains(&TOKEN[10..]), "the bot token is never logged");
}

#[test]
fn many_owners_conversions_are_each_delivered_once() {
    let hook = Recorder::start();
    let t = setup(|_| {});
    let mut sent = Vec::new();
    for user in 0..4 {
        let (_, token) = verified_user(&t.s, &format!("u{user}@example.com"));
        let r = t.s.call(
            "PUT",
            "/api/notifications",
            Some(&token),
            Some(&json!({"webhook": {"url": format!("{}/hook/{user}", hook.url()), "events": ["conversion"]}})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let slug = t.s.post("/api/links", Some(&token), &json!({"name": "L", "url": "https://offer.example/"})).json()
            ["data"]["slug"]
            .as_str()
            .unwrap()
            .to_string();
        let url = t.s.get("/api/user", Some(&token)).json()["postback_url"].as_str().unwrap().to_string();
        let secret = url.split("secret=").nth(1).unwrap().to_string();
        for n in 0..8 {
            let clickid = t.click(&slug, &format!("sub_id={n}"));
            assert_eq!(t.postback(&format!("clickid={clickid}&txid=u{user}-{n}&secret={secret}")).status, 200);
            sent.push(format!("u{user}-{n}"));
        }
    }
    let got = hook.wait_delivered(32);
    std::thread::sleep(Duration::from_millis(500));
    let mut txids: Vec<String> =
        hook.requests().iter().map(|r| r.json()["data"]["txid"].as_str().unwrap().to_string()).collect();
    assert_eq!(got.len(), 32);
    txids.sort();
    sent.sort();
    assert_eq!(txids, sent, "each conversion delivered exactly once");
    // Each owner's messages came in the order they happened.
    for user in 0..4 {
        let theirs: Vec<String> = hook
            .requests()
            .iter()
            .filter(|r| r.url == format!("/hook/{user}"))
            .map(|r| r.json()["data"]["txid"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = (0..8).map(|n| format!("u{user}-{n}")).collect();
        assert_eq!(theirs, expected);
    }
}

#[test]
fn an_outage_and_a_restart_lose_no_notification() {
    let mut hook = Recorder::start();
    let t = setup(|_| {});
    let r = t.put(json!({"webhook": {"url": format!("{}/hook", hook.url()), "events": ["conversion"]}}));
    let secret = r.json()["webhook"]["secret"].as_str().unwrap().to_string();
    let (_, slug) = t.link(json!({"name": "L", "url": "https://offer.example/"}));
    hook.down();
    let pb = t.secret();
    for n in 0..3 {
        let clickid = t.click(&slug, &format!("sub_id=s{n}"));
        assert_eq!(t.postback(&format!("clickid={clickid}&txid=X{n}&secret={pb}")).status, 200);
    }
    wait_until("a failed try", Duration::from_secs(10), || t.outbox("webhook").iter().any(|(_, a, _)| *a >= 1));
    let rows = t.outbox("webhook");
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|(status, _, _)| status == "pending"), "{rows:?}");
    assert!(rows[0].2.as_deref().unwrap_or("").contains("127.0.0.1"), "{rows:?}");
    // The settings page shows the channel's last failure.
    let shown = t.settings();
    assert!(shown["webhook"]["last_error"]["message"].is_string(), "{shown}");

    let s = t.s.restart();
    hook.up();
    // Retries back off from 5 s; all three arrive, in order, signed.
    let got = hook.wait_delivered(3);
    let txids: Vec<String> = got.iter().map(|r| r.json()["data"]["txid"].as_str().unwrap().to_string()).collect();
    assert_eq!(txids, ["X0", "X1", "X2"]);
    for r in &got {
        verify(&secret, r).unwrap();
    }
    let token = s
        .post(
            "/api/login",
            None,
            &json!({"email": "aff@example.com", "password": common::PASSWORD, "device_name": "t"}),
        )
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("the error to clear", Duration::from_secs(5), || {
        s.get("/api/notifications", Some(&token)).json()["webhook"]["last_error"].is_null()
    });
}

#[test]
fn a_channel_dead_for_a_day_gives_its_whole_backlog_up_at_once() {
    let mut hook = Recorder::start();
    let t = setup(|_| {});
    t.put(json!({"webhook": {"url": format!("{}/hook", hook.url()), "events": ["conversion"]}}));
    let (_, slug) = t.link(json!({"name": "L", "url": "https://offer.example/"}));
    hook.down();
    let pb = t.secret();
    for n in 0..4 {
        let clickid = t.click(&slug, &format!("sub_id={n}"));
        assert_eq!(t.postback(&format!("clickid={clickid}&txid=D{n}&secret={pb}")).status, 200);
    }
    wait_until("a failed try", Duration::from_secs(10), || t.outbox("webhook").iter().any(|(_, a, _)| *a >= 1));
    // The others wait behind the first instead of each trying on its own.
    std::thread::sleep(Duration::from_millis(500));
    let tried: i64 = t.outbox("webhook").iter().map(|(_, a, _)| a).sum();
    assert_eq!(tried, 1, "{:?}", t.outbox("webhook"));
    // A day later, the next try fails for good, and takes the backlog with it.
    t.s.app.clock.shift(25 * 3600 * SECOND);
    t.s.app.outbox_wake.notify();
    wait_until("all given up", Duration::from_secs(10), || t.outbox("webhook").iter().all(|(s, _, _)| s == "failed"));
    let tried: i64 = t.outbox("webhook").iter().map(|(_, a, _)| a).sum();
    assert_eq!(tried, 2, "one more try, not one per message: {:?}", t.outbox("webhook"));
    hook.up();
}

#[test]
fn a_refused_bot_token_fails_at_once_and_shows_in_the_test_and_the_settings() {
    let telegram = Recorder::start();
    telegram.answer_with(401, r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#);
    let hook = Recorder::start();
    let api = telegram.url();
    let t = setup(|c| c.notify.telegram_api = api);
    assert_eq!(t.s.post("/api/notifications/test", Some(&t.token), &json!({})).status, 422, "no channel yet");
    let r = t.put(json!({
        "telegram": {"bot_token": TOKEN, "chat_id": "42", "events": ["conversion"]},
        "webhook": {"url": format!("{}/hook", hook.url()), "events": []},
    }));
    let secret = r.json()["webhook"]["secret"].as_str().unwrap().to_string();
    let r = t.s.post("/api/notifications/test", Some(&t.token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.json()["results"].clone();
    assert_eq!(results[0], json!({"channel": "telegram", "ok": false, "status": 401, "response": "Unauthorized"}));
    assert_eq!((results[1]["channel"].as_str(), results[1]["ok"].as_bool()), (Some("webhook"), Some(true)));
    let test_hook = hook.wait_delivered(1);
    assert_eq!(test_hook[0].json()["event"], "test");
    verify(&secret, &test_hook[0]).unwrap();

    // A real conversion: one try, then failed (no retry for ever), and the
    // settings page says why.
    let (_, slug) = t.link(json!({"name": "L", "url": "https://offer.example/"}));
    let clickid = t.click(&slug, "");
    assert_eq!(t.postback(&format!("clickid={clickid}&secret={}", t.secret())).status, 200);
    wait_until("the failure", Duration::from_secs(10), || t.outbox("telegram").iter().any(|(s, _, _)| s == "failed"));
    assert_eq!(t.outbox("telegram")[0].1, 1, "one try only");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(telegram.requests().len(), 2, "the test and one try");
    let error = t.settings()["telegram"]["last_error"]["message"].as_str().unwrap().to_string();
    assert!(error.contains("401") && error.contains("Unauthorized"), "{error}");
    assert!(!error.contains(&TOKEN[10..]));

    // A new token clears the error shown; tests are limited.
    telegram.answer_with(200, r#"{"ok":true,"result":{}}"#);
    let r = t.put(json!({"telegram": {"bot_token": OTHER_TOKEN, "chat_id": "42", "events": ["conversion"]}}));
    assert_eq!(r.json()["telegram"]["last_error"], Value::Null);
    let mut last = 200;
    for _ in 0..10 {
        last = t.s.post("/api/notifications/test", Some(&t.token), &json!({})).status;
    }
    assert_eq!(last, 429, "ten tests in ten minutes at most");
    assert!(telegram.requests().iter().any(|r| r.url == format!("/bot{OTHER_TOKEN}/sendMessage")));
}

#[test]
fn telegrams_retry_after_is_obeyed_without_using_up_tries() {
    let telegram = Recorder::start();
    telegram.answer_with(429, r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#);
    let api = telegram.url();
    let t = setup(|c| c.notify.telegram_api = api);
    t.put(json!({"telegram": {"bot_token": TOKEN, "chat_id": "42", "events": ["conversion"]}}));
    let (_, slug) = t.link(json!({"name": "L", "url": "https://offer.example/"}));
    let clickid = t.click(&slug, "");
    assert_eq!(t.postback(&format!("clickid={clickid}&secret={}", t.secret())).status, 200);
    wait_until("two tries", Duration::from_secs(10), || telegram.requests().len() >= 2);
    let tries = telegram.requests();
    assert!(tries.iter().all(|r| r.answered == 429));
    let (status, attempts, error) = t.outbox("telegram")[0].clone();
    assert_eq!((status.as_str(), attempts), ("pending", 0), "a 429 is not a failed try");
    assert!(error.unwrap().contains("429"));
    telegram.answer_with(200, r#"{"ok":true,"result":{}}"#);
    telegram.wait_delivered(1);
    wait_until("sent", Duration::from_secs(5), || t.outbox("telegram")[0].0 == "sent");
}

#[test]
fn refused_postbacks_alert_once_an_hour() {
    let hook = Recorder::start();
    let t = setup(|_| {});
    t.put(json!({"webhook": {"url": format!("{}/hook", hook.url()), "events": ["postback_rejected"]}}));
    let (_, slug) = t.link(json!({"name": "L", "url": "https://offer.example/"}));
    let clickid = t.click(&slug, "");
    let pb = t.secret();
    // Four refusals: no alert yet.
    for n in 0..4 {
        assert_eq!(t.postback(&format!("clickid={clickid}&txid=b{n}&secret=wrong")).status, 403);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(hook.requests().is_empty());
    // The fifth (an unknown clickid with the genuine secret) makes one.
    assert_eq!(t.postback(&format!("clickid=nope&secret={pb}")).status, 404);
    let got = hook.wait_delivered(1);
    assert_eq!(got[0].json()["event"], "postback_rejected");
    assert_eq!(got[0].json()["data"]["count"], 5);
    for n in 0..6 {
        t.postback(&format!("clickid={clickid}&txid=c{n}&secret=wrong"));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hook.requests().len(), 1, "at most one alert an hour");
}

#[test]
fn one_users_dead_webhook_does_not_delay_anothers_notifications() {
    // A receiver that accepts connections and never answers.
    let (hang, held) = common::silent_server();
    let hang_url = format!("http://{hang}/hook");
    let telegram = Recorder::start();
    telegram.answer_with(200, r#"{"ok":true,"result":{}}"#);
    let api = telegram.url();
    let t = setup(|c| c.notify.telegram_api = api);
    t.put(json!({"webhook": {"url": hang_url, "events": ["conversion"]}}));
    let (_, slug) = t.link(json!({"name": "A", "url": "https://offer.example/"}));
    let pb = t.secret();
    for n in 0..5 {
        let clickid = t.click(&slug, &format!("sub_id={n}"));
        assert_eq!(t.postback(&format!("clickid={clickid}&secret={pb}")).status, 200);
    }
    wait_until("the dead webhook to be called", Duration::from_secs(5), || !held.lock().unwrap().is_empty());

    let (_, token_b) = verified_user(&t.s, "b@example.com");
    let r = t.s.call(
        "PUT",
        "/api/notifications",
        Some(&token_b),
        Some(&json!({"telegram": {"bot_token": TOKEN, "chat_id": "7", "events": ["conversion"]}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let slug_b = t.s.post("/api/links", Some(&token_b), &json!({"name": "B", "url": "https://b.example/"})).json()
        ["data"]["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let clickid = t.click(&slug_b, "");
    let url_b = t.s.get("/api/user", Some(&token_b)).json()["postback_url"].as_str().unwrap().to_string();
    let started = Instant::now();
    assert_eq!(t.postback(&format!("clickid={clickid}&secret={}", url_b.split("secret=").nth(1).unwrap())).status, 200);
    let got = telegram.wait_delivered(1);
    assert_eq!(got[0].json()["chat_id"], 7);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn the_digest_and_stop_losses_go_out_once() {
    let hook = Recorder::start();
    let t = setup(|_| {});
    let r = t.put(json!({
        "webhook": {"url": format!("{}/hook", hook.url()), "events": ["daily_digest", "stop_loss"]},
        "digest_hour": 9,
        "stop_loss_amount": 2.5,
    }));
    assert_eq!(r.status, 200, "{}", r.body);
    let (link_id, slug) =
        t.link(json!({"name": "Paid", "url": "https://offer.example/", "payout": 5, "cost_model": "cpc", "cost_value": "1.00"}));
    let (_, other) = t.link(json!({"name": "Earns", "url": "https://offer.example/e", "payout": 5, "cost_model": "cpc", "cost_value": "1.00"}));
    for n in 0..3 {
        t.click(&slug, &format!("sub_id=burn&n={n}"));
    }
    for n in 0..3 {
        let clickid = t.click(&other, &format!("sub_id=good&n={n}"));
        if n == 0 {
            assert_eq!(t.postback(&format!("clickid={clickid}&secret={}", t.secret())).status, 200);
        }
    }
    let app = &t.s.app;
    let now = app.clock.now();
    // Stop-loss: the link and the sub_id that spent 3.00 with nothing
    // approved, in one message; not the ones that earned. Once a day each.
    // (The digest was chosen after today's 09:00: yesterday's is not sent.)
    assert_eq!(apextrack::tracking::notify::tick(app, now).unwrap(), 1);
    assert_eq!(apextrack::tracking::notify::tick(app, now + 60 * SECOND).unwrap(), 0);
    let got = hook.wait_delivered(1);
    let alert = got[0].json();
    assert_eq!(alert["event"], "stop_loss");
    assert_eq!(alert["data"]["stop_loss_amount"], 2.5);
    let mut scopes: Vec<Value> = alert["data"]["scopes"].as_array().unwrap().clone();
    scopes.sort_by_key(|d| d["scope"].as_str().unwrap().to_string());
    assert_eq!(scopes.len(), 2, "{alert}");
    assert_eq!(scopes[0]["scope"], "link");
    assert_eq!(scopes[0]["link"], json!({"id": link_id, "name": "Paid"}));
    assert_eq!(scopes[0]["cost"], 3.0);
    assert_eq!((scopes[1]["scope"].as_str(), scopes[1]["sub_id"].as_str()), (Some("sub_id"), Some("burn")));
    // A fourth click of the same scopes alerts nothing new today.
    t.click(&slug, "sub_id=burn&n=4");
    assert_eq!(apextrack::tracking::notify::tick(app, now + 120 * SECOND).unwrap(), 0);

    // The digest of today's numbers goes out tomorrow at 09:00 (server
    // offset UTC here), not before, and once. The server's clock moves on.
    let day = 86_400 * SECOND;
    let midnight = now - now.rem_euclid(day) + day;
    let at = |local: i64| {
        app.clock.shift(midnight + local * 3600 * SECOND - app.clock.now());
        apextrack::tracking::notify::tick(app, app.clock.now()).unwrap()
    };
    assert_eq!(at(8), 0, "before 09:00");
    assert_eq!(at(9), 1);
    assert_eq!(at(10), 0);
    let digest = hook.wait_delivered(2)[1].json();
    assert_eq!(digest["event"], "daily_digest");
    let d = &digest["data"];
    assert_eq!(d["day"], apextrack::clock::local_date(now, 0));
    assert_eq!((d["clicks"].as_i64(), d["conversions"].as_i64()), (Some(7), Some(1)));
    assert_eq!((d["revenue"].as_f64(), d["cost"].as_f64(), d["profit"].as_f64()), (Some(5.0), Some(7.0), Some(-2.0)));
    let top: Vec<&str> = d["top_sub_ids"].as_array().unwrap().iter().map(|s| s["sub_id"].as_str().unwrap()).collect();
    assert_eq!(top, ["burn", "good"], "by clicks (4 and 3)");
}

/// A page that answers with the status the test sets (like an offer).
fn offer_page() -> Recorder {
    let page = Recorder::start();
    page.answer(200);
    page
}

#[test]
fn offers_that_go_down_are_reported_paused_and_restored() {
    let hook = Recorder::start();
    let mut page = offer_page();
    let backup = offer_page();
    let dir = tempfile::tempdir().unwrap();
    let t = setup(|c| {
        c.monitor.allow_private = true;
        c.monitor.auto_pause = true;
        c.monitor.interval_minutes = 0;
        c.database.path = dir.path().join("apextrack.db");
    });
    // The CLI reads the example config with the same database; the
    // example has a [monitor] section already, so it is set by environment.
    write_config(dir.path(), "");
    let run = || {
        let out = std::process::Command::new(common::binary())
            .current_dir(dir.path())
            .args(["--config", dir.path().join("apextrack.toml").to_str().unwrap(), "monitor", "run-once"])
            .env("APEXTRACK_MONITOR_ALLOW_PRIVATE", "true")
            .env("APEXTRACK_MONITOR_AUTO_PAUSE", "true")
            .env_remove("APEXTRACK_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    t.put(
        json!({"webhook": {"url": format!("{}/hook", hook.url()), "events": ["destination_down", "destination_up"]}}),
    );
    let (link_id, slug) = t.link(json!({"name": "Smart", "url": format!("{}/offer?c={{clickid}}", page.url())}));
    let r = t.s.call(
        "PUT",
        &format!("/api/links/{link_id}/routing"),
        Some(&t.token),
        Some(&json!({"destinations": [
            {"name": "Main", "url": format!("{}/offer?c={{clickid}}&s={{sub_id}}", page.url()), "weight": 100},
            {"name": "Backup", "url": format!("{}/backup", backup.url()), "weight": 0},
        ], "fallback_url": "https://fallback.example/"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Each time a new visitor: a visitor sticks to the offer it was sent to.
    let visitors = std::sync::atomic::AtomicUsize::new(0);
    let location = |t: &Setup| {
        let ua = format!("{UA} v{}", visitors.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let r = request(t.s.addr(), "GET", &format!("/go/{slug}"), &[("User-Agent", &ua)], b"");
        r.header("Location").unwrap().to_string()
    };
    assert!(location(&t).contains("/offer?c="));

    let first = run();
    assert_eq!((first["checked"].as_i64(), first["down"].as_array().unwrap().len()), (Some(2), 0));
    let checked = page.requests();
    assert!(checked.iter().any(|r| r.url == "/offer?c=apextrack-monitor&s=apextrack-monitor"), "{checked:?}");
    let routing = t.s.get(&format!("/api/links/{link_id}/routing"), Some(&t.token)).json()["data"].clone();
    assert_eq!(routing["destinations"][0]["monitor"]["state"], "up");

    // One failure is not enough; the second marks it down and alerts.
    page.down();
    assert!(run()["down"].as_array().unwrap().is_empty());
    let second = run();
    assert_eq!(second["down"][0]["destination"]["name"], "Main");
    let alert = hook.wait_delivered(1)[0].json();
    assert_eq!(alert["event"], "destination_down");
    assert_eq!(alert["data"]["link"]["id"], link_id);
    assert_eq!(alert["data"]["auto_paused"], true);
    assert!(alert["data"]["error"].as_str().unwrap().contains("127.0.0.1"), "{alert}");
    let routing = t.s.get(&format!("/api/links/{link_id}/routing"), Some(&t.token)).json()["data"].clone();
    assert_eq!(routing["destinations"][0]["monitor"]["state"], "down");
    assert_eq!(routing["destinations"][0]["status"], "active", "the user's own status is untouched");
    // The running server takes it out of the rotation within a second or so.
    wait_until("the down offer to leave the rotation", Duration::from_secs(5), || location(&t).contains("/backup"));
    assert!(run()["down"].as_array().unwrap().is_empty(), "a down offer alerts once");
    // A new URL for it is a new page: what monitoring knew goes (and it is
    // back in the rotation); the old URL back, it is checked afresh.
    let routing_body = |url: String| {
        json!({"destinations": [
            {"name": "Main", "url": url, "weight": 100},
            {"name": "Backup", "url": format!("{}/backup", backup.url()), "weight": 0},
        ], "fallback_url": "https://fallback.example/"})
    };
    let r = t.s.call(
        "PUT",
        &format!("/api/links/{link_id}/routing"),
        Some(&t.token),
        Some(&routing_body(format!("{}/new", backup.url()))),
    );
    assert_eq!(r.json()["data"]["destinations"][0]["monitor"]["state"], "unknown", "{}", r.body);
    let r = t.s.call(
        "PUT",
        &format!("/api/links/{link_id}/routing"),
        Some(&t.token),
        Some(&routing_body(format!("{}/offer?c={{clickid}}&s={{sub_id}}", page.url()))),
    );
    assert_eq!(r.status, 200);
    run();
    assert_eq!(run()["down"].as_array().unwrap().len(), 1, "down again after two failures");
    hook.wait_delivered(2);
    // The links form changes the first offer's URL: forgotten too.
    let r = t.s.call(
        "PUT",
        &format!("/api/links/{link_id}"),
        Some(&t.token),
        Some(&json!({"url": format!("{}/v2", page.url())})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let routing = t.s.get(&format!("/api/links/{link_id}/routing"), Some(&t.token)).json()["data"].clone();
    assert_eq!(routing["destinations"][0]["monitor"]["state"], "unknown", "{routing}");
    let r = t.s.call(
        "PUT",
        &format!("/api/links/{link_id}"),
        Some(&t.token),
        Some(&json!({"url": format!("{}/offer?c={{clickid}}&s={{sub_id}}", page.url())})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    run();
    assert_eq!(run()["down"].as_array().unwrap().len(), 1);
    hook.wait_delivered(3);

    // It comes back: alerted, and back in the rotation.
    page.up();
    let third = run();
    assert_eq!(third["up"][0]["destination"]["name"], "Main");
    assert_eq!(hook.wait_delivered(4)[3].json()["event"], "destination_up");
    wait_until("the offer to come back", Duration::from_secs(5), || location(&t).contains("/offer?c="));

    // 404 and 500 are failures; a 403 (a page that refuses robots) is not.
    page.answer(404);
    run();
    assert_eq!(run()["down"].as_array().unwrap().len(), 1);
    page.answer(403);
    assert_eq!(run()["up"].as_array().unwrap().len(), 1);
}

#[test]
fn monitoring_refuses_private_addresses_and_other_ports_unless_allowed() {
    let page = offer_page();
    let t = setup(|c| c.monitor.allow_private = false);
    let port = page.url().rsplit(':').next().unwrap().to_string();
    let (link_id, _) = t.link(json!({"name": "L", "url": "http://127.0.0.1/offer"}));
    let r = t.s.call(
        "PUT",
        &format!("/api/links/{link_id}/routing"),
        Some(&t.token),
        Some(&json!({"destinations": [
            {"name": "Loopback", "url": "http://127.0.0.1/offer"},
            // A name that resolves to loopback is refused on the address connected to.
            {"name": "Named", "url": "http://localhost/offer?c={clickid}"},
            {"name": "Mapped", "url": "http://[::ffff:127.0.0.1]/offer"},
            // Not a web port: never called, whatever the address.
            {"name": "Port", "url": format!("http://127.0.0.1:{port}/offer")},
        ]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let summary = apextrack::tracking::monitor::run_once(&t.s.app, &Default::default()).unwrap();
    assert_eq!((summary.checked, summary.urls), (3, 3));
    assert!(page.requests().is_empty(), "the page was never called");
    let routing = t.s.get(&format!("/api/links/{link_id}/routing"), Some(&t.token)).json()["data"].clone();
    for d in &routing["destinations"].as_array().unwrap()[..3] {
        let error = d["monitor"]["error"].as_str().unwrap();
        assert!(error.contains("private network") && error.contains("monitor.allow_private"), "{d}");
    }
    let error = routing["destinations"][3]["monitor"]["error"].as_str().unwrap();
    assert!(error.contains("only ports 80"), "{error}");
}

#[test]
fn monitor_run_once_is_a_cli_command() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let out = cli(dir.path(), &["monitor", "run-once"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary, json!({"checked": 0, "urls": 0, "down": [], "up": []}));
    let help = cli(dir.path(), &["monitor", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("run-once"));
}
