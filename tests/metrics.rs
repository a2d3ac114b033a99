//! `GET /metrics`: off unless a token is set, then behind it, in
//! Prometheus text format with the counters of what really happened.

mod common;

use common::{request, verified_user, Client, TestServer};
use serde_json::json;

const TOKEN: &str = "metrics-token-0123456789";
const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn scrape(s: &TestServer, auth: Option<&str>) -> common::Resp {
    let header = auth.map(|a| format!("Bearer {a}"));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
    request(s.addr(), "GET", "/metrics", &headers, b"")
}

/// The value of the sample line starting with `series ` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_are_off_without_a_token() {
    let s = TestServer::start();
    let r = scrape(&s, Some("anything"));
    assert_eq!((r.status, r.json()), (404, json!({"message": "Not Found."})));
}

#[test]
fn metrics_count_what_happened_behind_their_token() {
    let s = TestServer::with(|c| c.server.metrics_token = TOKEN.into());
    assert_eq!(scrape(&s, None).status, 401);
    assert_eq!(scrape(&s, Some("metrics-token-0123456788")).status, 401);
    let (_, token) = verified_user(&s, "m@example.com");
    let r = s.post("/api/links", Some(&token), &json!({"name": "M", "url": "https://m.example/?c={clickid}"}));
    let slug = r.json()["data"]["slug"].as_str().unwrap().to_string();
    let click = |ua: &str| {
        let r = request(s.addr(), "GET", &format!("/go/{slug}"), &[("User-Agent", ua)], b"");
        assert_eq!(r.status, 302);
        r.header("Location").unwrap().split("c=").nth(1).unwrap().to_string()
    };
    let first = click(PHONE);
    click(PHONE);
    click(BOT);
    let url = s.get("/api/user", Some(&token)).json()["postback_url"].as_str().unwrap().to_string();
    let secret = url.split("secret=").nth(1).unwrap();
    assert_eq!(s.get(&format!("/api/postback/conversion?clickid={first}&secret={secret}"), None).status, 200);
    assert_eq!(s.get(&format!("/api/postback/conversion?clickid={first}&secret={secret}"), None).status, 200);
    assert_eq!(s.get("/api/postback/conversion?clickid=nope&secret=x", None).status, 404);

    let r = scrape(&s, Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = &r.body;
    assert_eq!(sample(text, "apextrack_clicks_total{kind=\"unique\"}"), 1.0);
    assert_eq!(sample(text, "apextrack_clicks_total{kind=\"repeat\"}"), 1.0);
    assert_eq!(sample(text, "apextrack_clicks_total{kind=\"bot\"}"), 1.0);
    assert_eq!(sample(text, "apextrack_postbacks_total{outcome=\"created\"}"), 1.0);
    assert_eq!(sample(text, "apextrack_postbacks_total{outcome=\"unchanged\"}"), 1.0);
    assert_eq!(sample(text, "apextrack_postbacks_total{outcome=\"unknown_click\"}"), 1.0);
    // The verification mail of the user, with the log mailer, went out.
    assert_eq!(sample(text, "apextrack_outbox_pending{queue=\"integrations\"}"), 0.0);
    assert_eq!(sample(text, "apextrack_outbox_failed{queue=\"account\"}"), 0.0);
    assert_eq!(sample(text, "apextrack_group_commit_batch_size_count"), 3.0);
    assert_eq!(sample(text, "apextrack_http_request_duration_seconds_count{route=\"click\"}"), 3.0);
    assert_eq!(sample(text, "apextrack_http_request_duration_seconds_count{route=\"postback\"}"), 3.0);
    assert!(sample(text, "apextrack_http_request_duration_seconds_bucket{route=\"click\",le=\"+Inf\"}") >= 3.0);
    assert!(sample(text, "apextrack_connections_open") >= 1.0);
    assert!(sample(text, "apextrack_db_bytes") > 0.0);
    sample(text, "apextrack_wal_bytes");
    // Every sample line is `name{labels} number`, every family has HELP and TYPE.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert_eq!(text.matches("# TYPE ").count(), text.matches("# HELP ").count());
}

#[test]
fn a_short_metrics_token_stops_start_up() {
    let mut config = apextrack::Config::default();
    config.server.metrics_token = "short".into();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("server.metrics_token"), "{e}");
}
