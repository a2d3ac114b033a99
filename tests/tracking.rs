//! Tracking over real HTTP against a real SQLite file: links, the click
//! redirect, postbacks, payments, dashboard and reports.

mod common;

use common::{path_of, request, verified_user, write_mmdb, Client, Recorder, TestServer};
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};

const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600 * SECOND;

struct Setup {
    s: TestServer,
    token: String,
    user_id: i64,
}

fn setup(adjust: impl FnOnce(&mut apextrack::Config)) -> Setup {
    let s = TestServer::with(adjust);
    let (user_id, token) = verified_user(&s, "aff@example.com");
    Setup { s, token, user_id }
}

impl Setup {
    fn link(&self, body: Value) -> Value {
        let r = self.s.post("/api/links", Some(&self.token), &body);
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["data"].clone()
    }

    fn secret(&self) -> String {
        let url = self.s.get("/api/user", Some(&self.token)).json()["postback_url"].as_str().unwrap().to_string();
        url.split("secret=").nth(1).unwrap().to_string()
    }

    /// Follows a tracking URL like a browser would; returns the Location.
    fn click(&self, slug: &str, query: &str, ua: &str) -> String {
        let r = request(self.s.addr(), "GET", &format!("/go/{slug}?{query}"), &[("User-Agent", ua)], b"");
        assert_eq!(r.status, 302, "{}", r.body);
        r.header("Location").unwrap().to_string()
    }

    fn last_clickid(&self) -> String {
        self.s.last_clickid()
    }

    fn postback(&self, query: &str) -> common::Resp {
        self.s.get(&format!("/api/postback/conversion?{query}"), None)
    }

    fn summary(&self) -> Value {
        self.s.get("/api/dashboard-data", Some(&self.token)).json()["summary"].clone()
    }
}

const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1";
const DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

#[test]
fn links_crud_with_validation_and_ownership() {
    let t = setup(|_| {});
    let link = t.link(json!({"name": "Offer A", "url": "https://shop.example/?c={clickid}", "payout": "2.50"}));
    assert_eq!(link["name"], "Offer A");
    assert_eq!(link["payout"], json!(2.5));
    assert_eq!(link["status"], "active");
    let slug = link["slug"].as_str().unwrap();
    assert_eq!(link["tracking_url"], format!("http://localhost:8080/go/{slug}"));
    for key in ["id", "name", "url", "slug", "tracking_url", "payout", "status", "created_at"] {
        assert!(link.get(key).is_some(), "{key}");
    }
    let id = link["id"].as_i64().unwrap();

    let r = t.s.post(
        "/api/links",
        Some(&t.token),
        &json!({"url": "ftp://x", "payout": "-1", "status": "on", "slug": "a b"}),
    );
    assert_eq!(r.status, 422);
    let errors = r.json()["errors"].clone();
    for field in ["name", "url", "payout", "status", "slug"] {
        assert!(errors.get(field).is_some(), "{field}: {errors}");
    }
    assert_eq!(errors["name"], json!(["The name field is required."]));
    let r = t.s.post("/api/links", Some(&t.token), &json!({"name": "x", "url": "https://a.example/ x"}));
    assert_eq!(r.json()["errors"]["url"], json!(["The url format is invalid."]));

    let custom = t.link(json!({"name": "Custom", "url": "https://b.example/ü?q=ö", "slug": "my-offer"}));
    assert_eq!(custom["slug"], "my-offer");
    assert_eq!(custom["url"], "https://b.example/%C3%BC?q=%C3%B6", "kept ASCII, fit for a Location header");
    let r = t.s.get("/go/my-offer", None);
    assert_eq!(r.header("Location"), Some("https://b.example/%C3%BC?q=%C3%B6"));
    let r = t.s.post(
        "/api/links",
        Some(&t.token),
        &json!({"name": "Dup", "url": "https://b.example/", "slug": "my-offer"}),
    );
    assert_eq!(r.json()["errors"]["slug"], json!(["The slug has already been taken."]));

    let list = t.s.get("/api/links", Some(&t.token)).json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(t.s.get(&format!("/api/links/{id}"), Some(&t.token)).json()["data"]["id"], id);

    let r =
        t.s.call("PUT", &format!("/api/links/{id}"), Some(&t.token), Some(&json!({"status": "paused", "payout": 3})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"]["status"], "paused");
    assert_eq!(r.json()["data"]["name"], "Offer A", "fields not sent stay");
    assert_eq!(t.s.get(&format!("/go/{slug}"), None).status, 404, "a paused link does not redirect");

    // Another user sees none of it and can change none of it.
    let (_, other) = verified_user(&t.s, "other@example.com");
    assert!(t.s.get("/api/links", Some(&other)).json()["data"].as_array().unwrap().is_empty());
    for (method, body) in [("GET", None), ("PUT", Some(json!({"name": "stolen"}))), ("DELETE", None)] {
        let r = t.s.call(method, &format!("/api/links/{id}"), Some(&other), body.as_ref());
        assert_eq!((r.status, r.json()), (404, json!({"message": "Not Found."})), "{method}");
    }
    assert_eq!(t.s.get(&format!("/api/links/{id}"), Some(&t.token)).json()["data"]["name"], "Offer A");

    let r = t.s.call("DELETE", &format!("/api/links/{id}"), Some(&t.token), None);
    assert_eq!(r.status, 200);
    assert_eq!(t.s.get(&format!("/api/links/{id}"), Some(&t.token)).status, 404);
    assert_eq!(t.s.get("/api/links", Some(&t.token)).json()["data"].as_array().unwrap().len(), 1);
    assert_eq!(t.s.get("/api/links/abc", Some(&t.token)).status, 404);

    // Unverified users are held at the verified guard.
    let unverified = t.s.user_with_token("new@example.com");
    let r = t.s.get("/api/links", Some(&unverified));
    assert_eq!((r.status, r.json()), (403, json!({"message": "Your email address is not verified."})));
    assert_eq!(t.s.get("/api/links", None).status, 401);
}

#[test]
fn the_redirect_fills_macros_safely_and_commits_the_click() {
    let t = setup(|_| {});
    let link = t.link(json!({"name": "M", "url":
        "https://shop.example/p?cid={clickid}&s={sub_id}&s2={sub2}&s5={sub5}&e={ext_id}&c={country_code}&d={device_type}&k={keep}"}));
    let slug = link["slug"].as_str().unwrap();
    let hostile = "%27%22%26x%3D1%0D%0ALocation%3A%20evil";
    let location = t.click(slug, &format!("sub_id={hostile}&sub2=a+b&sub5=%E2%9C%93&ext_id=src-9"), PHONE);
    let clickid = t.last_clickid();
    assert_eq!(
        location,
        format!("https://shop.example/p?cid={clickid}&s=%27%22%26x%3D1%0D%0ALocation%3A%20evil&s2=a%20b&s5=%E2%9C%93&e=src-9&c=XX&d=mobile&k={{keep}}")
    );
    // 96 random bits (16 characters), then the row id.
    assert!(clickid.len() > 16, "{clickid}");
    assert!(clickid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let (sub1, ext): (String, String) =
        t.s.sqlite()
            .query_row(
                "SELECT s.text, e.text FROM clicks c JOIN click_values s ON s.id = c.sub1 JOIN click_values e ON e.id = c.ext_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
    assert_eq!(sub1, "'\"&x=1\r\nLocation: evil");
    assert_eq!(ext, "src-9");

    // A 10 kB sub_id is cut to 255 characters, never a broken header.
    let long = "y".repeat(10_000);
    let location = t.click(slug, &format!("sub1={long}"), DESKTOP);
    assert!(location.contains(&format!("&s={}&", "y".repeat(255))), "{location}");
    assert!(!location.contains(&"y".repeat(256)));

    // A HEAD (a link checker) is answered but not counted.
    let r = request(t.s.addr(), "HEAD", &format!("/go/{slug}?sub_id=x"), &[("User-Agent", PHONE)], b"");
    assert_eq!(r.status, 302);
    let r = t.s.get("/go/nope", None);
    assert_eq!(r.status, 404);
    assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    let clicks: i64 = t.s.sqlite().query_row("SELECT count(*) FROM clicks", [], |r| r.get(0)).unwrap();
    assert_eq!(clicks, 2, "each 302 left a committed row");
}

#[test]
fn bots_are_recorded_but_not_counted_and_uniques_last_a_day() {
    let t = setup(|_| {});
    let slug = t.link(json!({"name": "U", "url": "https://u.example/"}))["slug"].as_str().unwrap().to_string();
    t.click(&slug, "sub_id=a", PHONE);
    t.click(&slug, "sub_id=a", PHONE); // same IP + UA: not unique
    t.click(&slug, "sub_id=a", DESKTOP); // other UA: unique
    t.click(&slug, "sub_id=a", BOT);
    t.click(&slug, "sub_id=a", "");
    let rows: i64 = t.s.sqlite().query_row("SELECT count(*) FROM clicks", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 5, "bots are recorded");
    let summary = t.summary();
    assert_eq!(summary["clicksToday"], 3);
    assert_eq!(summary["liveClicksLast30Seconds"], 3);
    let report = t.s.get("/api/reports?group_by=device", Some(&t.token)).json()["data"].clone();
    assert_eq!(report.as_array().unwrap().len(), 2, "no bot row: {report}");
    let sub = &t.s.get("/api/reports?group_by=sub_id", Some(&t.token)).json()["data"][0];
    assert_eq!((sub["clicks"].as_i64(), sub["unique_clicks"].as_i64()), (Some(3), Some(2)));

    t.s.app.clock.shift(24 * HOUR + SECOND);
    t.click(&slug, "sub_id=a", PHONE);
    let sub = &t.s.get("/api/reports?group_by=sub_id", Some(&t.token)).json()["data"][0];
    assert_eq!(sub["unique_clicks"], 3, "a day later the same visitor is unique again");
    assert_eq!(t.summary()["liveClicksLast30Seconds"], 1);
}

#[test]
fn country_from_a_geoip_database_then_the_header_then_xx() {
    let dir = tempfile::tempdir().unwrap();
    let mmdb = dir.path().join("country.mmdb");
    write_mmdb(&mmdb, &[("203.0.113.0", 24, "ID"), ("198.51.100.0", 24, "DE")]);
    let geo = mmdb.display().to_string();
    let t = setup(|c| {
        c.tracking.geoip_db = geo;
        c.tracking.country_header = "CF-IPCountry".into();
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    });
    let slug = t.link(json!({"name": "G", "url": "https://g.example/?c={country_code}"}))["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let go = |headers: &[(&str, &str)]| {
        let mut headers = headers.to_vec();
        headers.push(("User-Agent", PHONE));
        let r = request(t.s.addr(), "GET", &format!("/go/{slug}"), &headers, b"");
        r.header("Location").unwrap().to_string()
    };
    assert_eq!(go(&[("X-Forwarded-For", "203.0.113.50")]), "https://g.example/?c=ID");
    assert_eq!(go(&[("X-Forwarded-For", "198.51.100.7"), ("CF-IPCountry", "FR")]), "https://g.example/?c=DE");
    assert_eq!(go(&[("X-Forwarded-For", "192.0.2.1"), ("CF-IPCountry", "fr")]), "https://g.example/?c=FR");
    assert_eq!(go(&[("X-Forwarded-For", "192.0.2.1"), ("CF-IPCountry", "<script>")]), "https://g.example/?c=XX");
    assert_eq!(go(&[]), "https://g.example/?c=XX");
    let countries = t.s.get("/api/reports?group_by=country", Some(&t.token)).json()["data"].clone();
    let names: Vec<&str> = countries.as_array().unwrap().iter().map(|r| r["country"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 4, "{countries}");

    // A broken GeoIP file stops start-up with the key named.
    std::fs::write(&mmdb, b"not a database").unwrap();
    let mut config = apextrack::Config::default();
    config.database.path = dir.path().join("x.db");
    config.tracking.geoip_db = mmdb.display().to_string();
    let e = apextrack::App::open(config).err().unwrap().to_string();
    assert!(e.contains("tracking.geoip_db"), "{e}");
}

#[test]
fn postbacks_accept_every_alias_and_move_totals_exactly_once() {
    let t = setup(|_| {});
    let slug =
        t.link(json!({"name": "P", "url": "https://p.example/", "payout": "5"}))["slug"].as_str().unwrap().to_string();
    let secret = t.secret();
    let mut clickids = Vec::new();
    for sub in ["s1", "s2", "s3"] {
        t.click(&slug, &format!("sub_id={sub}"), PHONE);
        clickids.push(t.last_clickid());
    }
    let check = |leads: i64, payout: f64| {
        let s = t.summary();
        assert_eq!((s["totalLeads"].as_i64(), s["totalPayout"].as_f64()), (Some(leads), Some(payout)), "{s}");
    };
    // GET with clickid/payout/txid, default status approved.
    let r = t.postback(&format!("clickid={}&payout=1.25&txid=T1&secret={secret}", clickids[0]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["outcome"], "created");
    check(1, 1.25);
    // The same again: nothing changes.
    assert_eq!(
        t.postback(&format!("clickid={}&payout=9&txid=T1&secret={secret}", clickids[0])).json()["outcome"],
        "unchanged"
    );
    check(1, 1.25);
    // POST JSON with cid/sum/tid, pending, then approved, then rejected.
    let post = |body: Value| t.s.post("/api/postback/conversion", None, &body);
    let r = post(json!({"cid": clickids[1], "sum": 2, "tid": "T2", "status": "pending", "secret": secret}));
    assert_eq!(r.json()["outcome"], "created");
    check(2, 1.25);
    let r = post(json!({"cid": clickids[1], "tid": "T2", "status": "approved", "secret": secret}));
    assert_eq!(r.json()["outcome"], "updated");
    check(2, 3.25);
    let r = post(json!({"cid": clickids[1], "tid": "T2", "status": "approved", "secret": secret}));
    assert_eq!(r.json()["outcome"], "unchanged");
    check(2, 3.25);
    let r = post(json!({"cid": clickids[1], "tid": "T2", "status": "rejected", "secret": secret}));
    assert_eq!(r.json()["outcome"], "updated");
    check(2, 1.25);
    let r = post(json!({"cid": clickids[1], "tid": "T2", "status": "approved", "secret": secret}));
    assert_eq!((r.status, r.json()["outcome"].clone()), (422, json!("refused_transition")));
    check(2, 1.25);
    // POST form with subid/amount/transaction_id; no payout: the link's default.
    let form = format!("subid={}&transaction_id=T3&secret={secret}", clickids[2]);
    let r = request(
        t.s.addr(),
        "POST",
        "/api/postback/conversion",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(r.json()["lead"]["payout"], json!(5.0), "{}", r.body);
    check(3, 6.25);
    let r = request(
        t.s.addr(),
        "POST",
        "/api/postback/conversion",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("subid={}&amount=0.5&transaction_id=T4&status=pending&secret={secret}", clickids[2]).as_bytes(),
    );
    assert_eq!(r.json()["lead"]["payout"], json!(0.5));
    check(4, 6.25);

    let report = t.s.get("/api/dashboard-data", Some(&t.token)).json()["report"].clone();
    let s2 = report.as_array().unwrap().iter().find(|r| r["sub_id"] == "s2").unwrap();
    assert_eq!(
        (s2["leads"].as_i64(), s2["approved_leads"].as_i64(), s2["total_payout"].as_f64()),
        (Some(1), Some(0), Some(0.0))
    );
    let s3 = report.as_array().unwrap().iter().find(|r| r["sub_id"] == "s3").unwrap();
    assert_eq!(
        (s3["leads"].as_i64(), s3["approved_leads"].as_i64(), s3["cr"].as_f64()),
        (Some(2), Some(1), Some(100.0))
    );
}

#[test]
fn bad_postbacks_are_refused_with_the_reason_and_logged() {
    let t = setup(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]);
    let slug = t.link(json!({"name": "B", "url": "https://b.example/"}))["slug"].as_str().unwrap().to_string();
    t.click(&slug, "", PHONE);
    let cid = t.last_clickid();
    let secret = t.secret();
    let cases = [
        (format!("clickid={cid}&secret=1-wrong"), 403, "bad_secret"),
        (format!("clickid={cid}"), 403, "bad_secret"),
        (format!("clickid=nope&secret={secret}"), 404, "unknown_click"),
        (format!("clickid={cid}&payout=abc&secret={secret}"), 422, "invalid"),
        (format!("clickid={cid}&payout=-3&secret={secret}"), 422, "invalid"),
        (format!("clickid={cid}&status=maybe&secret={secret}"), 422, "invalid"),
        (format!("secret={secret}"), 422, "invalid"),
        (format!("clickid=%27%20OR%201%3D1%20--&secret={secret}"), 404, "unknown_click"),
    ];
    for (query, status, outcome) in &cases {
        let r = t.postback(query);
        assert_eq!(r.status, *status, "{query}: {}", r.body);
        assert_eq!(r.json()["outcome"], *outcome, "{query}");
    }
    assert_eq!(t.summary()["totalLeads"], 0);
    // The user reads their log (secrets masked); attributed by click or secret.
    let log = t.s.get("/api/postbacks", Some(&t.token)).json()["data"].clone();
    let outcomes: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.len(), cases.len(), "{outcomes:?}");
    // A made-up secret cannot write into someone's log.
    let before = outcomes.len();
    t.postback(&format!("clickid=nope&secret={}-forged", t.user_id));
    let after = t.s.get("/api/postbacks", Some(&t.token)).json()["data"].as_array().unwrap().len();
    assert_eq!(after, before);
    assert!(!log.to_string().contains(&secret));
    let (_, other) = verified_user(&t.s, "other@example.com");
    assert!(t.s.get("/api/postbacks", Some(&other)).json()["data"].as_array().unwrap().is_empty());

    // An allowlist refuses other addresses.
    let r =
        t.s.call("PUT", "/api/user/postback-allowlist", Some(&t.token), Some(&json!({"allowlist": ["10.0.0.0/8"]})));
    assert_eq!(r.status, 200);
    let q = format!("/api/postback/conversion?clickid={cid}&secret={secret}");
    let r = request(t.s.addr(), "GET", &q, &[("X-Forwarded-For", "203.0.113.9")], b"");
    assert_eq!((r.status, r.json()["outcome"].clone()), (403, json!("ip_refused")));
    let r = request(t.s.addr(), "GET", &q, &[("X-Forwarded-For", "10.1.2.3")], b"");
    assert_eq!(r.status, 200);
    let r = t.s.call("PUT", "/api/user/postback-allowlist", Some(&t.token), Some(&json!({"allowlist": ["nonsense"]})));
    assert_eq!(r.status, 422);

    // Rotating the secret retires the old one.
    let rotated = t.s.post("/api/user/postback-secret", Some(&t.token), &json!({})).json()["postback_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!rotated.contains(&secret));
    let r = request(
        t.s.addr(),
        "GET",
        &format!("/api/postback/conversion?clickid={cid}&txid=N&secret={secret}"),
        &[("X-Forwarded-For", "10.1.2.3")],
        b"",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn concurrent_postbacks_for_one_txid_count_once() {
    let t = setup(|_| {});
    let slug =
        t.link(json!({"name": "C", "url": "https://c.example/", "payout": "1"}))["slug"].as_str().unwrap().to_string();
    t.click(&slug, "", PHONE);
    let (cid, secret, addr) = (t.last_clickid(), t.secret(), t.s.addr());
    let barrier = Arc::new(Barrier::new(10));
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let (barrier, q) =
                (Arc::clone(&barrier), format!("/api/postback/conversion?clickid={cid}&txid=SAME&secret={secret}"));
            std::thread::spawn(move || {
                barrier.wait();
                addr.get(&q, None).json()["outcome"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let mut outcomes: Vec<String> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    outcomes.sort();
    assert_eq!(outcomes.iter().filter(|o| *o == "created").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "unchanged").count(), 9);
    let s = t.summary();
    assert_eq!((s["totalLeads"].as_i64(), s["totalPayout"].as_f64()), (Some(1), Some(1.0)));
}

#[test]
fn an_approved_lead_calls_the_traffic_source_through_the_outbox() {
    let recorder = Recorder::start();
    // The recorder is on loopback: let postbacks reach it, as the operator of
    // a private deployment could.
    let t = setup(|c| c.tracking.allow_private_targets = true);
    let source = format!("{}/pb?id={{ext_id}}&p={{payout}}&s={{status}}&sub={{sub_id}}&c={{clickid}}", recorder.url());
    let slug = t.link(json!({"name": "S", "url": "https://s.example/", "source_postback_url": source}))["slug"]
        .as_str()
        .unwrap()
        .to_string();
    t.click(&slug, "ext_id=ext%2077&sub_id=a%26b", PHONE);
    let cid = t.last_clickid();
    let secret = t.secret();
    t.postback(&format!("clickid={cid}&status=pending&payout=4.5&secret={secret}"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(recorder.requests().is_empty(), "no call while pending");
    t.postback(&format!("clickid={cid}&status=approved&secret={secret}"));
    let got = recorder.wait_delivered(1);
    assert_eq!(got[0].method, "GET");
    assert_eq!(got[0].url, format!("/pb?id=ext%2077&p=4.50&s=approved&sub=a%26b&c={cid}"));
    t.postback(&format!("clickid={cid}&status=approved&secret={secret}"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(recorder.requests().len(), 1, "a repeat calls nobody");
}

#[test]
fn source_postbacks_into_a_private_network_are_refused() {
    let recorder = Recorder::start();
    let t = setup(|_| {});
    let source = format!("{}/pb?id={{ext_id}}", recorder.url());
    let slug = t.link(json!({"name": "S", "url": "https://s.example/", "source_postback_url": source}))["slug"]
        .as_str()
        .unwrap()
        .to_string();
    t.click(&slug, "ext_id=1", PHONE);
    t.postback(&format!("clickid={}&secret={}", t.last_clickid(), t.secret()));
    let error = (0..200)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(25));
            t.s.sqlite()
                .query_row("SELECT last_error FROM outbox WHERE channel = 'get'", [], |r| r.get::<_, Option<String>>(0))
                .ok()
                .flatten()
        })
        .expect("the delivery was tried");
    assert!(error.contains("private network"), "{error}");
    assert!(recorder.requests().is_empty());
}

fn sign(secret: &str, body: &str) -> String {
    apextrack::crypto::hex(&apextrack::crypto::hmac_sha256(secret.as_bytes(), body.as_bytes()))
}

#[test]
fn payment_notifications_are_signed_idempotent_and_activate_the_account() {
    let t = setup(|c| c.payment.secret = "pay-secret".into());
    apextrack::accounts::set_status(&t.s.app, t.user_id, "unpaid").unwrap();
    let body = json!({"reference": "INV-1", "email": "AFF@example.com", "amount": "19.99", "currency": "idr", "status": "paid"}).to_string();
    let post = |body: &str, sig: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(sig) = sig {
            headers.push(("X-Callback-Signature", sig));
        }
        request(t.s.addr(), "POST", "/api/payment/notification", &headers, body.as_bytes())
    };
    assert_eq!(post(&body, None).status, 403);
    assert_eq!(post(&body, Some(&sign("other", &body))).status, 403);
    let tampered = body.replace("19.99", "0.01");
    let r = post(&tampered, Some(&sign("pay-secret", &body)));
    assert_eq!((r.status, r.json()), (403, json!({"message": "Invalid signature."})));
    let r = post(&body, Some(&sign("pay-secret", &body)));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["outcome"], "created");
    let status: String =
        t.s.sqlite().query_row("SELECT account_status FROM users WHERE id = ?1", [t.user_id], |r| r.get(0)).unwrap();
    assert_eq!(status, "active");
    assert_eq!(post(&body, Some(&sign("pay-secret", &body))).json()["outcome"], "unchanged");
    let other = body.replace("AFF@example.com", "someone@example.com");
    let r = post(&other, Some(&sign("pay-secret", &other)));
    assert_eq!(r.status, 422, "a reference stays with its first account: {}", r.body);
    let (amount, currency): (i64, String) =
        t.s.sqlite()
            .query_row("SELECT amount_cents, currency FROM payments WHERE reference = 'INV-1'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
    assert_eq!((amount, currency.as_str()), (1999, "IDR"));
    let bad = json!({"reference": "INV-2", "email": "x", "amount": "lots", "currency": "RUPIAH", "status": "maybe"})
        .to_string();
    let r = post(&bad, Some(&sign("pay-secret", &bad)));
    assert_eq!(r.status, 422);
    let errors = r.json()["errors"].clone();
    for field in ["email", "amount", "currency", "status"] {
        assert!(errors.get(field).is_some(), "{field}: {errors}");
    }
    // An admin's suspension is lifted by an admin only: no payment, and no
    // `paid` without money, reactivates the account.
    apextrack::accounts::set_status(&t.s.app, t.user_id, "suspended").unwrap();
    let zero =
        json!({"reference": "INV-3", "email": "aff@example.com", "amount": 0, "currency": "IDR", "status": "paid"})
            .to_string();
    let r = post(&zero, Some(&sign("pay-secret", &zero)));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.json()["errors"].get("amount").is_some(), "{}", r.body);
    let real = zero.replace("\"amount\":0", "\"amount\":5");
    assert_eq!(post(&real, Some(&sign("pay-secret", &real))).status, 200);
    let status: String =
        t.s.sqlite().query_row("SELECT account_status FROM users WHERE id = ?1", [t.user_id], |r| r.get(0)).unwrap();
    assert_eq!(status, "suspended");
    // Without a configured secret nothing is accepted.
    let open = setup(|_| {});
    let r = request(
        open.s.addr(),
        "POST",
        "/api/payment/notification",
        &[("X-Callback-Signature", &sign("", &body))],
        body.as_bytes(),
    );
    assert_eq!(r.status, 403);
}

/// A deterministic pseudo-random sequence, so a failure can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn dashboard_numbers_equal_a_recount_from_raw_rows() {
    let t = setup(|_| {});
    let slugs: Vec<String> = (0..3)
        .map(|i| {
            t.link(json!({"name": format!("L{i}"), "url": "https://r.example/", "payout": "1.10"}))["slug"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let secret = t.secret();
    let mut rng = Lcg(42);
    let uas = [PHONE, DESKTOP, BOT, "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)"];
    let mut clickids = Vec::new();
    for i in 0..120 {
        match rng.next(4) {
            0..=2 => {
                let slug = &slugs[rng.next(3) as usize];
                t.click(slug, &format!("sub_id=s{}", rng.next(5)), uas[rng.next(4) as usize]);
                clickids.push(t.last_clickid());
            }
            _ if !clickids.is_empty() => {
                let cid = &clickids[rng.next(clickids.len() as u64) as usize];
                let status = ["approved", "pending", "rejected"][rng.next(3) as usize];
                t.postback(&format!(
                    "clickid={cid}&txid=T{}&status={status}&payout=0.{:02}&secret={secret}",
                    rng.next(20),
                    i % 100
                ));
            }
            _ => {}
        }
    }
    let db = t.s.sqlite();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let d = t.s.get("/api/dashboard-data?limit=1000", Some(&t.token)).json();
    assert_eq!(d["summary"]["clicksToday"], count("SELECT count(*) FROM clicks WHERE device != 3"));
    assert_eq!(d["summary"]["totalLeads"], count("SELECT count(*) FROM leads"));
    let approved_cents = count("SELECT coalesce(sum(payout_cents), 0) FROM leads WHERE status = 'approved'");
    assert_eq!(d["summary"]["totalPayout"].as_f64().unwrap(), approved_cents as f64 / 100.0);
    for row in d["report"].as_array().unwrap() {
        let sub = row["sub_id"].as_str().unwrap();
        let clicks = count(&format!("SELECT count(*) FROM clicks WHERE sub1 = (SELECT id FROM click_values WHERE text = '{sub}') AND device != 3"));
        let leads = count(&format!("SELECT count(*) FROM leads WHERE sub1 = '{sub}'"));
        let approved = count(&format!("SELECT count(*) FROM leads WHERE sub1 = '{sub}' AND status = 'approved'"));
        let cents = count(&format!(
            "SELECT coalesce(sum(payout_cents), 0) FROM leads WHERE sub1 = '{sub}' AND status = 'approved'"
        ));
        assert_eq!(
            (row["clicks"].as_i64(), row["leads"].as_i64(), row["approved_leads"].as_i64()),
            (Some(clicks), Some(leads), Some(approved)),
            "{sub}"
        );
        assert_eq!(row["total_payout"].as_f64().unwrap(), cents as f64 / 100.0);
        let cr = if clicks == 0 { 0.0 } else { (approved as f64 * 10000.0 / clicks as f64).round() / 100.0 };
        assert_eq!(row["cr"].as_f64().unwrap(), cr, "{sub}");
    }
    let by_link = t.s.get("/api/reports?group_by=link", Some(&t.token)).json()["data"].clone();
    let link_clicks: i64 = by_link.as_array().unwrap().iter().map(|r| r["clicks"].as_i64().unwrap()).sum();
    assert_eq!(link_clicks, count("SELECT count(*) FROM clicks WHERE device != 3"));
    let recent = d["recent_clicks"].as_array().unwrap();
    assert_eq!(recent.len(), 20.min(count("SELECT count(*) FROM clicks WHERE device != 3") as usize));
    assert_eq!(
        recent[0]["clickid"],
        db.query_row("SELECT id, secret FROM clicks WHERE device != 3 ORDER BY id DESC LIMIT 1", [], |r| {
            Ok(apextrack::tracking::store::clickid(r.get(0)?, &r.get::<_, Vec<u8>>(1)?))
        })
        .unwrap()
    );
}

#[test]
fn today_follows_the_configured_utc_offset() {
    let t = setup(|c| c.server.utc_offset = "+07:00".into());
    let slug = t.link(json!({"name": "T", "url": "https://t.example/"}))["slug"].as_str().unwrap().to_string();
    // Move to 16:59:00 UTC (23:59 in UTC+7) of the current day.
    let now = t.s.app.clock.now();
    let day_start = now - now.rem_euclid(24 * HOUR);
    t.s.app.clock.shift(day_start + 16 * HOUR + 59 * 60 * SECOND - now);
    t.click(&slug, "", PHONE);
    assert_eq!(t.summary()["clicksToday"], 1);
    t.s.app.clock.shift(2 * 60 * SECOND); // 17:01 UTC: 00:01 tomorrow in UTC+7
    assert_eq!(t.summary()["clicksToday"], 0, "a new local day has begun");
    t.click(&slug, "", DESKTOP);
    assert_eq!(t.summary()["clicksToday"], 1);
    let days = t.s.get("/api/reports?group_by=day", Some(&t.token)).json()["data"].clone();
    assert_eq!(days.as_array().unwrap().len(), 2, "{days}");
}

#[test]
fn reports_validate_input_export_csv_and_stay_private() {
    let t = setup(|_| {});
    let slug = t.link(json!({"name": "R,\"x\"", "url": "https://r.example/"}))["slug"].as_str().unwrap().to_string();
    t.click(&slug, "sub_id=%3D1%2B2", PHONE);
    let r = t.s.get("/api/reports?group_by=sub_id&format=csv", Some(&t.token));
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("text/csv"));
    assert_eq!(
        r.body,
        "sub_id,clicks,unique_clicks,leads,approved_leads,pending_leads,rejected_leads,payout,cr,\
         cost,revenue,profit,roi,epc,cpc\n'=1+2,1,1,0,0,0,0,0.00,0.00,0.00,0.00,0.00,,0.00,0.00\n"
    );
    let csv = t.s.get("/api/reports?group_by=link&format=csv", Some(&t.token)).body;
    assert!(csv.contains("\"R,\"\"x\"\"\""), "{csv}");
    for bad in [
        "group_by=week",
        "group_by=day&from=2024-13-01",
        "group_by=day&to=yesterday",
        "group_by=day&limit=0",
        "group_by=day&format=xml",
        "group_by=sub_id%27%20OR%201%3D1",
    ] {
        let r = t.s.get(&format!("/api/reports?{bad}"), Some(&t.token));
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
    }
    assert_eq!(t.s.get("/api/dashboard-data?from=2024-02-30", Some(&t.token)).status, 422);
    let today =
        t.s.get("/api/reports?group_by=day", Some(&t.token)).json()["data"][0]["day"].as_str().unwrap().to_string();
    let r = t.s.get(&format!("/api/dashboard-data?from={today}&to={today}"), Some(&t.token)).json();
    assert_eq!(r["report"][0]["clicks"], 1);
    let r = t.s.get("/api/dashboard-data?from=2000-01-01&to=2000-01-02", Some(&t.token)).json();
    assert!(r["report"].as_array().unwrap().is_empty());

    let (_, other) = verified_user(&t.s, "other@example.com");
    let theirs = t.s.get("/api/dashboard-data", Some(&other)).json();
    assert_eq!(
        theirs["summary"],
        json!({"liveClicksLast30Seconds": 0, "clicksToday": 0, "totalLeads": 0, "totalPayout": 0.0,
               "costToday": 0.0, "revenueToday": 0.0, "profitToday": 0.0})
    );
    assert!(theirs["recent_clicks"].as_array().unwrap().is_empty());
    for g in ["day", "sub_id", "country", "device", "link"] {
        assert!(
            t.s.get(&format!("/api/reports?group_by={g}"), Some(&other)).json()["data"].as_array().unwrap().is_empty(),
            "{g}"
        );
    }
}

#[test]
fn the_user_gets_a_postback_url_with_their_secret() {
    let t = setup(|_| {});
    let url = t.s.get("/api/user", Some(&t.token)).json()["postback_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://localhost:8080/api/postback/conversion?clickid={clickid}&payout={payout}&status={status}&txid={txid}&secret="), "{url}");
    let secret = url.split("secret=").nth(1).unwrap();
    assert!(secret.starts_with(&format!("{}-", t.user_id)) && secret.len() > 30);
    assert_eq!(path_of(&url).split('?').next(), Some("/api/postback/conversion"));
}

#[test]
fn a_macro_may_not_choose_the_host_of_a_destination() {
    let t = setup(|_| {});
    for url in ["http://{sub_id}/", "https://{sub2}.example/", "https://a.example:{sub3}/", "http://x@{sub_id}/p"] {
        let r = t.s.post("/api/links", Some(&t.token), &json!({"name": "x", "url": url}));
        assert_eq!(r.status, 422, "{url}: {}", r.body);
        assert!(r.json()["errors"].get("url").is_some(), "{url}: {}", r.body);
    }
    // Macros stay welcome in the path and the query.
    let slug = t.link(json!({"name": "ok", "url": "https://shop.example/{sub_id}?c={clickid}"}))["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let location = t.click(&slug, "sub_id=evil.example%2F", PHONE);
    assert!(location.starts_with("https://shop.example/evil.example%2F?c="), "{location}");
}

#[test]
fn a_source_postback_that_never_answers_does_not_delay_account_mail() {
    // A traffic source that accepts connections and never answers.
    let (hang, held) = common::silent_server();
    let hang_url = format!("http://{hang}/pb?c={{clickid}}");
    let recorder = Recorder::start();
    let endpoint = format!("{}/send", recorder.url());
    let t = setup(|c| {
        c.tracking.allow_private_targets = true;
        c.mail.provider = "http".into();
        c.mail.endpoint = endpoint;
    });
    let slug = t.link(json!({"name": "S", "url": "https://s.example/", "source_postback_url": hang_url}))["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = t.secret();
    for n in 0..4 {
        t.click(&slug, &format!("sub_id={n}"), &format!("{PHONE} {n}"));
        let r = t.postback(&format!("clickid={}&secret={secret}", t.last_clickid()));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // The postbacks are stuck on the dead source by now.
    for _ in 0..200 {
        if !held.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!held.lock().unwrap().is_empty(), "the postback worker called the source");
    let started = std::time::Instant::now();
    let password = "a-long-password";
    let r = t.s.post(
        "/api/register",
        None,
        &json!({"name": "N", "email": "new@example.com", "password": password, "password_confirmation": password}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let delivered = || recorder.requests().iter().any(|m| m.answered == 200 && m.body.contains("new@example.com"));
    while !delivered() && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(delivered(), "the verification mail went out");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
}

#[test]
fn a_clickid_alone_cannot_fill_its_owners_postback_log() {
    let t = setup(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]);
    let slug = t.link(json!({"name": "L", "url": "https://l.example/"}))["slug"].as_str().unwrap().to_string();
    t.click(&slug, "sub_id=a", PHONE);
    let cid = t.last_clickid();
    let forged = |ip: &str, n: usize| {
        let q = format!("/api/postback/conversion?clickid={cid}&secret=wrong&junk=%3Dcmd%7Cspam-{n}");
        request(t.s.addr(), "GET", &q, &[("X-Forwarded-For", ip)], b"")
    };
    let mut answers = Vec::new();
    for n in 0..40 {
        // From many addresses: the per-clickid limit holds them all.
        answers.push(forged(&format!("198.51.100.{}", n % 20), n).status);
    }
    assert_eq!(answers.iter().filter(|s| **s == 403).count(), 10, "{answers:?}");
    assert_eq!(answers.iter().filter(|s| **s == 429).count(), 30, "{answers:?}");
    let r = forged("198.51.100.77", 99);
    assert_eq!(r.status, 429);
    assert!(r.json()["retry_after"].as_u64().is_some(), "{}", r.body);
    let log = t.s.get("/api/postbacks", Some(&t.token)).json()["data"].clone();
    let rows = log.as_array().unwrap();
    assert_eq!(rows.len(), 10, "{log}");
    assert!(rows.iter().all(|r| r["outcome"] == "bad_secret" && r["params"] == json!({"clickid": cid})), "{log}");
    // One address spraying made-up clickids is limited too.
    let statuses: Vec<u16> = (0..70).map(|n| t.postback(&format!("clickid=made-up-{n}&secret=x")).status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 60, "{statuses:?}");
    assert!(statuses[60..].iter().all(|s| *s == 429), "{statuses:?}");
    // The genuine postback still lands.
    let r = request(
        t.s.addr(),
        "GET",
        &format!("/api/postback/conversion?clickid={cid}&secret={}", t.secret()),
        &[("X-Forwarded-For", "203.0.113.200")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn one_users_dead_traffic_source_does_not_hold_up_anothers_postbacks() {
    let (hang, _held) = common::silent_server();
    let hang_url = format!("http://{hang}/pb?c={{clickid}}");
    let recorder = Recorder::start();
    let t = setup(|c| c.tracking.allow_private_targets = true);
    // User A: sixty approved leads whose source never answers.
    let slug = t.link(json!({"name": "A", "url": "https://a.example/", "source_postback_url": hang_url}))["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = t.secret();
    for n in 0..60 {
        t.click(&slug, &format!("sub_id={n}"), &format!("{PHONE} {n}"));
        assert_eq!(t.postback(&format!("clickid={}&secret={secret}", t.last_clickid())).status, 200);
    }
    // User B: one lead, whose source answers.
    let (_, token_b) = verified_user(&t.s, "b@example.com");
    let source = format!("{}/pb?c={{clickid}}", recorder.url());
    let r = t.s.post(
        "/api/links",
        Some(&token_b),
        &json!({"name": "B", "url": "https://b.example/", "source_postback_url": source}),
    );
    let slug_b = r.json()["data"]["slug"].as_str().unwrap().to_string();
    t.click(&slug_b, "sub_id=b", DESKTOP);
    let url_b = t.s.get("/api/user", Some(&token_b)).json()["postback_url"].as_str().unwrap().to_string();
    let secret_b = url_b.split("secret=").nth(1).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(t.postback(&format!("clickid={}&secret={secret_b}", t.last_clickid())).status, 200);
    let got = recorder.wait_delivered(1);
    assert!(got[0].url.starts_with("/pb?c="), "{got:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "{:?}", started.elapsed());
}

#[test]
fn a_visitor_stays_known_across_a_restart() {
    let t = setup(|_| {});
    let slug = t.link(json!({"name": "R", "url": "https://r.example/"}))["slug"].as_str().unwrap().to_string();
    t.click(&slug, "sub_id=r", PHONE);
    t.click(&slug, "sub_id=r", DESKTOP);
    let Setup { s, token, user_id } = t;
    let s = s.restart();
    let t = Setup { s, token, user_id };
    // Known from before the restart: not unique. A new visitor is.
    t.click(&slug, "sub_id=r", PHONE);
    t.click(&slug, "sub_id=r", BOT);
    t.click(&slug, "sub_id=r", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0");
    let report = t.s.get("/api/reports?group_by=sub_id", Some(&t.token)).json()["data"].clone();
    let row = report.as_array().unwrap().iter().find(|r| r["sub_id"] == "r").unwrap().clone();
    assert_eq!((row["clicks"].as_i64(), row["unique_clicks"].as_i64()), (Some(4), Some(3)), "{row}");
}
