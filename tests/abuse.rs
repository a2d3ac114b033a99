//! Limits an outside review found missing (issue 16): sign-up floods from
//! one address, the mail they would send, and unpaged link lists.

mod common;

use common::{request, verified_user, Client, Recorder, TestServer};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000_000;

/// A sign-up from `ip` (as the trusted proxy in front says).
fn register(s: &TestServer, ip: &str, email: &str) -> common::Resp {
    let body =
        json!({"name": "N", "email": email, "password": "a-long-password", "password_confirmation": "a-long-password"});
    request(
        s.addr(),
        "POST",
        "/api/register",
        &[("Content-Type", "application/json"), ("X-Forwarded-For", ip)],
        body.to_string().as_bytes(),
    )
}

fn users(s: &TestServer) -> i64 {
    s.sqlite().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap()
}

fn mails(s: &TestServer) -> i64 {
    s.sqlite().query_row("SELECT count(*) FROM outbox WHERE channel = 'mail'", [], |r| r.get(0)).unwrap()
}

fn behind_a_proxy(c: &mut apextrack::Config) {
    c.server.trusted_proxies = vec!["127.0.0.1".into()];
}

#[test]
fn sign_ups_from_one_address_are_limited_in_a_sliding_hour() {
    let s = TestServer::with(behind_a_proxy);
    // Three now, two 40 minutes later: five in the hour, the sixth refused.
    for n in 0..3 {
        assert_eq!(register(&s, "203.0.113.9", &format!("a{n}@example.com")).status, 201);
    }
    s.app.clock.shift(40 * MINUTE);
    for n in 3..5 {
        assert_eq!(register(&s, "203.0.113.9", &format!("a{n}@example.com")).status, 201);
    }
    let r = register(&s, "203.0.113.9", "a5@example.com");
    assert_eq!(r.status, 429, "{}", r.body);
    let retry = r.json()["retry_after"].as_u64().unwrap();
    assert!((19 * 60..=20 * 60).contains(&retry), "the first three leave the window in 20 minutes: {retry}");
    assert_eq!(r.header("Retry-After"), Some(retry.to_string().as_str()));
    assert!(r.json()["message"].as_str().unwrap().contains("pendaftaran"), "{}", r.body);
    assert_eq!(users(&s), 5, "the refused sign-up created nothing");
    assert_eq!(mails(&s), 5);
    // Another address is not held up; the proxy's own is not the client's.
    assert_eq!(register(&s, "198.51.100.7", "b@example.com").status, 201);
    // Trying addresses already taken counts too (four left, then refused).
    for _ in 0..4 {
        assert_eq!(register(&s, "198.51.100.7", "b@example.com").status, 422);
    }
    assert_eq!(register(&s, "198.51.100.7", "c@example.com").status, 429);
    // 21 minutes on, the first three have left the window: three more, not
    // the five a fixed window starting an hour ago would let through.
    s.app.clock.shift(21 * MINUTE);
    for n in 6..9 {
        assert_eq!(register(&s, "203.0.113.9", &format!("a{n}@example.com")).status, 201, "{n}");
    }
    let r = register(&s, "203.0.113.9", "a9@example.com");
    assert_eq!(r.status, 429, "{}", r.body);
    // An IPv6 client counts by its /64: its neighbours share the limit.
    for n in 0..5 {
        assert_eq!(register(&s, &format!("2001:db8:1:2::{n:x}"), &format!("v{n}@example.com")).status, 201);
    }
    assert_eq!(register(&s, "2001:db8:1:2:ffff::1", "v5@example.com").status, 429);
    assert_eq!(register(&s, "2001:db8:1:3::1", "w@example.com").status, 201);
}

#[test]
fn verification_mails_have_a_budget_per_address_and_for_the_server() {
    let recorder = Recorder::start();
    let endpoint = format!("{}/send", recorder.url());
    let s = TestServer::with(|c| {
        behind_a_proxy(c);
        c.mail.provider = "http".into();
        c.mail.endpoint = endpoint;
        c.security.verification_mails_per_ip_hour = 2;
        c.security.verification_mails_per_hour = 4;
    });
    // Per address: a sign-up and one resend, then the third mail is refused.
    assert_eq!(register(&s, "203.0.113.1", "one@example.com").status, 201);
    let token = s
        .post(
            "/api/login",
            None,
            &json!({"email": "one@example.com", "password": "a-long-password", "device_name": "t"}),
        )
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let resend = |ip: &str| {
        request(
            s.addr(),
            "POST",
            "/api/email/resend",
            &[("Authorization", &format!("Bearer {token}")), ("X-Forwarded-For", ip)],
            b"",
        )
    };
    s.app.clock.shift(2 * MINUTE);
    assert_eq!(resend("203.0.113.1").status, 200);
    s.app.clock.shift(2 * MINUTE);
    let r = resend("203.0.113.1");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.json()["retry_after"].as_u64().unwrap() > 50 * 60, "{}", r.body);
    assert_eq!(mails(&s), 2);
    // For the server: two more mails from other addresses, then none.
    assert_eq!(register(&s, "203.0.113.2", "two@example.com").status, 201);
    assert_eq!(register(&s, "203.0.113.3", "three@example.com").status, 201);
    let r = register(&s, "203.0.113.4", "four@example.com");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("email verifikasi"), "{}", r.body);
    assert_eq!((users(&s), mails(&s)), (3, 4), "a refused sign-up creates no account and sends nothing");
    recorder.wait_delivered(4);
    // An hour after the first mail, the budget has room again.
    s.app.clock.shift(57 * MINUTE);
    assert_eq!(register(&s, "203.0.113.4", "four@example.com").status, 201);
}

#[test]
fn an_ipv6_site_shares_four_addresses_mail_budgets_however_many_64s_it_holds() {
    let s = TestServer::with(|c| {
        behind_a_proxy(c);
        c.security.verification_mails_per_ip_hour = 2;
    });
    // Eight /64s of one /48, one sign-up each: the /48 has 4 × 2 mails an hour.
    for n in 0..8 {
        let r = register(&s, &format!("2001:db8:7:{n:x}::1"), &format!("s{n}@example.com"));
        assert_eq!(r.status, 201, "{n}: {}", r.body);
    }
    let r = register(&s, "2001:db8:7:99::1", "s9@example.com");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("email verifikasi"), "{}", r.body);
    // Another /48, and an IPv4 client, are not held up.
    assert_eq!(register(&s, "2001:db8:8::1", "other6@example.com").status, 201);
    assert_eq!(register(&s, "203.0.113.50", "other4@example.com").status, 201);
}

#[test]
fn link_lists_are_paged_sorted_searched_and_capped() {
    let s = TestServer::with(|c| c.tracking.max_links_per_user = 260);
    let (_, token) = verified_user(&s, "many@example.com");
    let (_, other) = verified_user(&s, "other@example.com");
    for n in 0..257 {
        let name = format!("Campaign {n:03}");
        let r = s.post("/api/links", Some(&token), &json!({"name": name, "url": "https://offer.example/"}));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for name in ["Summer sale", "summer B", "Late SUMMER"] {
        assert_eq!(
            s.post("/api/links", Some(&token), &json!({"name": name, "url": "https://offer.example/"})).status,
            201
        );
    }
    assert_eq!(
        s.post("/api/links", Some(&other), &json!({"name": "Summer other", "url": "https://o.example/"})).status,
        201
    );
    // At the cap: a 422 naming links, and nothing created.
    let r = s.post("/api/links", Some(&token), &json!({"name": "One more", "url": "https://offer.example/"}));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.json()["errors"]["links"][0].as_str().unwrap().contains("260"), "{}", r.body);

    let list = |query: &str| {
        let r = s.get(&format!("/api/links{query}"), Some(&token));
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.json()
    };
    let names = |page: &Value| -> Vec<String> {
        page["data"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string()).collect()
    };
    let first = list("");
    assert_eq!(
        (first["total"].as_i64(), first["limit"].as_i64(), first["offset"].as_i64()),
        (Some(260), Some(50), Some(0))
    );
    assert_eq!(first["data"].as_array().unwrap().len(), 50);
    assert_eq!(names(&first)[0], "Late SUMMER", "newest first by default");
    let all: Vec<String> = (0..2).flat_map(|p| names(&list(&format!("?limit=200&offset={}", p * 200)))).collect();
    assert_eq!(all.len(), 260);
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 260, "pages neither repeat nor skip a link");
    assert_eq!(names(&list("?sortBy=name&sort=asc&limit=2")), ["Campaign 000", "Campaign 001"]);
    assert_eq!(names(&list("?sortBy=name&sort=desc&limit=3")), ["Summer sale", "summer B", "Late SUMMER"], "any case");
    assert_eq!(names(&list("?sortBy=createdAt&sort=asc&limit=1")), ["Campaign 000"]);
    let summer = list("?search=SUMMER&sortBy=id&sort=asc");
    assert_eq!(
        (summer["total"].as_i64(), names(&summer)),
        (Some(3), vec!["Summer sale".into(), "summer B".into(), "Late SUMMER".into()])
    );
    // Clicks of all time, and the list sorted by them.
    let slug = summer["data"][1]["slug"].as_str().unwrap().to_string();
    for n in 0..3 {
        request(s.addr(), "GET", &format!("/go/{slug}"), &[("User-Agent", &format!("Mozilla/5.0 v{n}"))], b"");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let top = list("?sortBy=clicks&limit=1");
    assert_eq!((names(&top)[0].as_str(), top["data"][0]["clicks"].as_i64()), ("summer B", Some(3)));
    // SQL in a search is text to look for.
    for search in ["%27%20OR%201%3D1%20--", "%25", "_"] {
        assert_eq!(list(&format!("?search={search}"))["total"], 0, "{search}");
    }
    // Every bad parameter is named.
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=ten", "limit"),
        ("?offset=-1", "offset"),
        ("?sortBy=slug", "sortBy"),
        ("?sortBy=name;DROP%20TABLE%20links", "sortBy"),
        ("?sort=up", "sort"),
        (&format!("?search={}", "x".repeat(101)), "search"),
    ] {
        let r = s.get(&format!("/api/links{query}"), Some(&token));
        assert_eq!(r.status, 422, "{query}: {}", r.body);
        assert!(r.json()["errors"][field].is_array(), "{query}: {}", r.body);
    }
    // Another user sees only their own link; a deleted link frees a place.
    let theirs = s.get("/api/links?search=summer", Some(&other)).json();
    assert_eq!((theirs["total"].as_i64(), names(&theirs)), (Some(1), vec!["Summer other".into()]));
    let id = first["data"][0]["id"].as_i64().unwrap();
    assert_eq!(s.call("DELETE", &format!("/api/links/{id}"), Some(&token), None).status, 200);
    assert_eq!(list("")["total"], 259);
    assert_eq!(
        s.post("/api/links", Some(&token), &json!({"name": "Room again", "url": "https://offer.example/"})).status,
        201
    );
}
