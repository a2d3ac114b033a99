//! Smart links (SPEC §11) over real HTTP against a real SQLite file:
//! the routing API, weighted splits that stick, rules, landers and
//! `/click/{clickid}`, caps and the fallback, the optimize mode, per
//! destination stats with `p_best`, and reports by destination.

mod common;

use common::{path_of, request, verified_user, Client, TestServer};
use serde_json::{json, Value};

const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600 * SECOND;

struct Setup {
    s: TestServer,
    token: String,
}

fn setup() -> Setup {
    let s = TestServer::with(|c| c.tracking.country_header = "CF-IPCountry".into());
    let (_, token) = verified_user(&s, "aff@example.com");
    Setup { s, token }
}

/// A click's answer: where it was sent.
struct Sent {
    location: String,
}

impl Sent {
    fn host(&self) -> &str {
        self.location.split("://").nth(1).unwrap().split('/').next().unwrap()
    }

    fn param(&self, name: &str) -> String {
        let query = self.location.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }
}

impl Setup {
    fn link(&self, url: &str) -> (i64, String) {
        let r = self.s.post("/api/links", Some(&self.token), &json!({"name": "Smart", "url": url, "payout": 2}));
        assert_eq!(r.status, 201, "{}", r.body);
        let d = r.json()["data"].clone();
        (d["id"].as_i64().unwrap(), d["slug"].as_str().unwrap().to_string())
    }

    fn put_routing(&self, id: i64, body: &Value) -> common::Resp {
        self.s.call("PUT", &format!("/api/links/{id}/routing"), Some(&self.token), Some(body))
    }

    fn routing(&self, id: i64, body: Value) -> Value {
        let r = self.put_routing(id, &body);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"].clone()
    }

    fn go(&self, slug: &str, query: &str, headers: &[(&str, &str)]) -> Sent {
        let r = request(self.s.addr(), "GET", &format!("/go/{slug}?{query}"), headers, b"");
        assert_eq!(r.status, 302, "{}", r.body);
        Sent { location: r.header("Location").unwrap().to_string() }
    }

    /// A click by visitor number `n` (its own User-Agent).
    fn visit(&self, slug: &str, n: usize) -> Sent {
        let ua = format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) visitor-{n}");
        self.go(slug, "sub_id=s", &[("User-Agent", &ua)])
    }

    fn stats(&self, id: i64) -> Vec<Value> {
        let r = self.s.get(&format!("/api/links/{id}/stats"), Some(&self.token));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"].as_array().unwrap().clone()
    }

    fn postback(&self, clickid: &str, status: &str) {
        let url = self.s.get("/api/user", Some(&self.token)).json()["postback_url"].as_str().unwrap().to_string();
        let secret = url.split("secret=").nth(1).unwrap().to_string();
        let r =
            self.s.get(&format!("/api/postback/conversion?clickid={clickid}&status={status}&secret={secret}"), None);
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

fn row<'a>(stats: &'a [Value], name: &str) -> &'a Value {
    stats.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no row {name} in {stats:?}"))
}

#[test]
fn a_routing_is_replaced_at_once_and_destinations_keep_their_ids_by_name() {
    let t = setup();
    let (id, _) = t.link("https://a.example/?c={clickid}");
    let r = t.s.get(&format!("/api/links/{id}/routing"), Some(&t.token));
    assert_eq!(r.status, 200);
    let first = r.json()["data"].clone();
    assert_eq!(first["mode"], "weighted");
    assert_eq!(first["fallback_url"], Value::Null);
    assert_eq!(first["destinations"][0]["name"], "Offer 1");
    assert_eq!(first["destinations"][0]["url"], "https://a.example/?c={clickid}");
    let offer1 = first["destinations"][0]["id"].as_i64().unwrap();

    let stored = t.routing(
        id,
        json!({
            "destinations": [
                {"name": "Offer 1", "url": "https://a2.example/", "weight": 50},
                {"name": "B", "url": "https://b.example/", "weight": 50, "daily_cap": 10, "payout": "3.50"},
                {"kind": "lander", "name": "L1", "url": "https://lp.example/?next={click_url}"}
            ],
            "rules": [{"name": "id mobile", "if": {"country": ["ID"], "device": ["mobile"]}, "to": ["B"]},
                      {"if": {"param": {"sub2": ["tiktok"]}}, "to": ["L1"]}],
            "mode": "optimize",
            "fallback_url": "https://fallback.example/"
        }),
    );
    let d = stored["destinations"].as_array().unwrap();
    assert_eq!(d[0]["id"].as_i64(), Some(offer1), "a kept name keeps its id");
    assert_eq!((d[1]["payout"].as_f64(), d[1]["daily_cap"].as_i64()), (Some(3.5), Some(10)));
    assert_eq!((d[2]["kind"].as_str(), d[2]["weight"].as_i64()), (Some("lander"), Some(100)));
    assert_eq!(stored["rules"][1]["name"], "Rule 2", "an unnamed rule is named by its place");
    assert_eq!(stored["rules"][0]["to"], json!(["B"]));
    assert_eq!(
        (stored["mode"].as_str(), stored["fallback_url"].as_str()),
        (Some("optimize"), Some("https://fallback.example/"))
    );
    assert_eq!(t.s.get(&format!("/api/links/{id}/routing"), Some(&t.token)).json()["data"], stored);
    // The link's url is its first offer's, both ways.
    let link = t.s.get(&format!("/api/links/{id}"), Some(&t.token)).json()["data"].clone();
    assert_eq!(
        (link["url"].as_str(), link["fallback_url"].as_str()),
        (Some("https://a2.example/"), Some("https://fallback.example/"))
    );
    let r = t.s.call("PUT", &format!("/api/links/{id}"), Some(&t.token), Some(&json!({"url": "https://a3.example/"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let after = t.s.get(&format!("/api/links/{id}/routing"), Some(&t.token)).json()["data"].clone();
    assert_eq!(after["destinations"][0]["url"], "https://a3.example/");

    // B renamed: a new destination; the old B leaves the routing, its row stays.
    let b_id = d[1]["id"].as_i64().unwrap();
    let again = t.routing(
        id,
        json!({"destinations": [{"name": "Offer 1", "url": "https://a3.example/"}, {"name": "B2", "url": "https://b.example/"}]}),
    );
    assert_eq!(again["destinations"][0]["id"].as_i64(), Some(offer1));
    assert_ne!(again["destinations"][1]["id"].as_i64(), Some(b_id));
    assert_eq!(again["rules"], json!([]));
    assert_eq!(again["fallback_url"], "https://fallback.example/", "no fallback_url in the body leaves it");
    let status: String =
        t.s.sqlite().query_row("SELECT status FROM destinations WHERE id = ?1", [b_id], |r| r.get(0)).unwrap();
    assert_eq!(status, "removed");
    let cleared = t.routing(
        id,
        json!({"destinations": [{"name": "Offer 1", "url": "https://a3.example/"}], "fallback_url": null}),
    );
    assert_eq!(cleared["fallback_url"], Value::Null);
}

#[test]
fn bad_routings_are_422s_naming_the_field_and_others_links_are_404() {
    let t = setup();
    let (id, slug) = t.link("https://a.example/");
    let cases = [
        (json!({"destinations": []}), "destinations"),
        (json!({}), "destinations"),
        (
            json!({"destinations": [{"name": "A", "url": "https://a.example/", "weight": 1001}]}),
            "destinations.0.weight",
        ),
        (json!({"destinations": [{"name": "A", "url": "https://a.example/", "weight": -1}]}), "destinations.0.weight"),
        (
            json!({"destinations": [{"name": "A", "url": "https://a.example/", "weight": "50"}]}),
            "destinations.0.weight",
        ),
        (json!({"destinations": [{"name": "A", "url": "javascript:alert(1)"}]}), "destinations.0.url"),
        (json!({"destinations": [{"name": "A", "url": "http://{sub_id}.evil.example/"}]}), "destinations.0.url"),
        (
            json!({"destinations": [{"name": "A", "url": "https://a.example/"}], "rules": [{"if": {"country": "ID"}, "to": ["A"]}]}),
            "rules.0.if.country",
        ),
        (
            json!({"destinations": [{"name": "A", "url": "https://a.example/"}], "rules": [{"if": {"colour": ["red"]}, "to": ["A"]}]}),
            "rules.0.if.colour",
        ),
        (
            json!({"destinations": [{"name": "A", "url": "https://a.example/"}], "rules": [{"to": ["A"]}, {"to": ["Nope"]}]}),
            "rules.1.to.0",
        ),
        (json!({"destinations": [{"name": "A", "url": "https://a.example/"}], "mode": "fastest"}), "mode"),
        (
            json!({"destinations": [{"name": "A", "url": "https://a.example/"}], "fallback_url": "ftp://x"}),
            "fallback_url",
        ),
        (
            json!({"destinations": [{"name": "A", "url": "https://a.example/", "daily_cap": 0}]}),
            "destinations.0.daily_cap",
        ),
        (json!({"destinations": "A; DROP TABLE links"}), "destinations"),
    ];
    for (body, field) in cases {
        let r = t.put_routing(id, &body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(r.json()["errors"][field].is_array(), "{body}: no {field} in {}", r.body);
    }
    let many: Vec<Value> = (0..51).map(|i| json!({"name": format!("d{i}"), "url": "https://x.example/"})).collect();
    assert_eq!(t.put_routing(id, &json!({"destinations": many})).status, 422);
    let rules: Vec<Value> = (0..51).map(|_| json!({"to": ["A"]})).collect();
    let r = t.put_routing(id, &json!({"destinations": [{"name": "A", "url": "https://a.example/"}], "rules": rules}));
    assert!(r.json()["errors"]["rules"].is_array(), "{}", r.body);
    let r = t.s.call("PUT", &format!("/api/links/{id}/routing"), Some(&t.token), None);
    assert!(r.status == 400 || r.status == 422, "{}", r.body);
    // Nothing was changed by any of them; the link still redirects.
    let routing = t.s.get(&format!("/api/links/{id}/routing"), Some(&t.token)).json()["data"].clone();
    assert_eq!(routing["destinations"].as_array().unwrap().len(), 1);
    assert_eq!(t.visit(&slug, 1).host(), "a.example");

    // Another user: 404 on every route of the link, and nothing changes.
    let (_, other) = verified_user(&t.s, "other@example.com");
    let body = json!({"destinations": [{"name": "X", "url": "https://evil.example/"}]});
    for (method, path) in [("GET", "routing"), ("PUT", "routing"), ("GET", "stats")] {
        let r =
            t.s.call(method, &format!("/api/links/{id}/{path}"), Some(&other), Some(&body).filter(|_| method == "PUT"));
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
    }
    assert_eq!(t.s.get("/api/links/999999/routing", Some(&t.token)).status, 404);
    assert_eq!(t.s.get("/api/links/abc/stats", Some(&t.token)).status, 404);
    assert_eq!(t.visit(&slug, 2).host(), "a.example");
}

#[test]
fn weights_split_distinct_visitors_and_each_visitor_sticks() {
    let t = setup();
    let (id, slug) = t.link("https://a.example/");
    t.routing(
        id,
        json!({"destinations": [
            {"name": "A", "url": "https://a.example/?d={destination}", "weight": 300},
            {"name": "B", "url": "https://b.example/?d={destination}", "weight": 100},
            {"name": "Z", "url": "https://z.example/", "weight": 0}
        ]}),
    );
    let visitors = 1200;
    let mut first = Vec::new();
    for n in 0..visitors {
        first.push(t.visit(&slug, n).host().to_string());
    }
    let a = first.iter().filter(|h| *h == "a.example").count();
    let share = a as f64 / visitors as f64;
    // Expected 0.75; the standard error over 1 200 visitors is 0.0125.
    assert!((0.68..0.82).contains(&share), "A got {share}");
    assert!(!first.iter().any(|h| h == "z.example"), "weight 0 gets nobody");
    for (n, host) in first.iter().enumerate().take(50) {
        assert_eq!(t.visit(&slug, n).host(), host, "visitor {n} sticks");
    }
    // Pausing B moves B's visitors to A; un-pausing brings them back.
    t.routing(
        id,
        json!({"destinations": [
            {"name": "A", "url": "https://a.example/?d={destination}", "weight": 300},
            {"name": "B", "url": "https://b.example/", "weight": 100, "status": "paused"}
        ]}),
    );
    let b_visitor = first.iter().position(|h| h == "b.example").unwrap();
    assert_eq!(t.visit(&slug, b_visitor).host(), "a.example");
    let sent = t.visit(&slug, 5000);
    assert_eq!(sent.param("d"), "A", "{{destination}} is the destination's name");
    // Each click stored its destination.
    let (with, total): (i64, i64) =
        t.s.sqlite()
            .query_row("SELECT count(destination_id), count(*) FROM clicks", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
    assert_eq!(with, total);
    let stats = t.stats(id);
    let (a, b) = (row(&stats, "A"), row(&stats, "B"));
    assert_eq!(a["clicks"].as_i64().unwrap() + b["clicks"].as_i64().unwrap(), visitors as i64 + 50 + 2);
    assert_eq!(a["unique"].as_i64().unwrap() + b["unique"].as_i64().unwrap(), visitors as i64 + 1);
}

#[test]
fn rules_match_in_order_on_every_condition() {
    let t = setup();
    let (id, slug) = t.link("https://a.example/");
    t.routing(
        id,
        json!({
            "destinations": [
                {"name": "A", "url": "https://a.example/?rule={rule}&os={os}&c={country_code}"},
                {"name": "B", "url": "https://b.example/?rule={rule}&os={os}", "weight": 0},
                {"name": "C", "url": "https://c.example/?rule={rule}", "weight": 0},
                {"name": "D", "url": "https://d.example/", "weight": 0},
                {"name": "E", "url": "https://e.example/", "status": "paused"}
            ],
            "rules": [
                {"name": "id mobile", "if": {"country": ["ID"], "device": ["mobile"]}, "to": ["B"]},
                {"name": "tiktok", "if": {"param": {"sub2": ["tiktok", "tt"]}}, "to": ["C"]},
                {"name": "english iphone", "if": {"language": ["en"], "os": ["ios"]}, "to": ["D"]},
                {"name": "repeat", "if": {"unique": false}, "to": ["D"]},
                {"name": "paused only", "if": {"param": {"sub3": ["x"]}}, "to": ["E"]}
            ]
        }),
    );
    let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Safari/537.36";
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
    let desktop = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120";
    // Country ID and mobile: rule 1.
    let s = t.go(&slug, "", &[("User-Agent", android), ("CF-IPCountry", "ID")]);
    assert_eq!((s.host(), s.param("rule").as_str(), s.param("os").as_str()), ("b.example", "id mobile", "android"));
    // Mobile but not ID; sub2 tiktok: rule 2 (every condition of rule 1 must hold).
    let s =
        t.go(&slug, "sub2=tt", &[("User-Agent", "Mozilla/5.0 (Linux; Android 13) Mobile b"), ("CF-IPCountry", "MY")]);
    assert_eq!((s.host(), s.param("rule").as_str()), ("c.example", "tiktok"));
    // ID mobile with sub2 tiktok: the first match wins.
    let s = t.go(
        &slug,
        "sub2=tiktok",
        &[("User-Agent", "Mozilla/5.0 (Linux; Android 12) Mobile c"), ("CF-IPCountry", "ID")],
    );
    assert_eq!(s.host(), "b.example");
    // language is the first tag's language part.
    let s = t.go(&slug, "", &[("User-Agent", iphone), ("Accept-Language", "en-GB,id;q=0.8"), ("CF-IPCountry", "MY")]);
    assert_eq!(s.host(), "d.example");
    let s = t.go(
        &slug,
        "",
        &[("User-Agent", "Mozilla/5.0 (iPhone) x"), ("Accept-Language", "id-ID,en;q=0.8"), ("CF-IPCountry", "MY")],
    );
    // No rule: the weights (only A has one); `os` from the User-Agent.
    assert_eq!((s.host(), s.param("os").as_str(), s.param("rule").as_str()), ("a.example", "ios", ""));
    // unique: the same visitor's second click is not unique.
    let first = t.go(&slug, "", &[("User-Agent", desktop), ("CF-IPCountry", "US")]);
    assert_eq!((first.host(), first.param("c").as_str()), ("a.example", "US"));
    let second = t.go(&slug, "", &[("User-Agent", desktop), ("CF-IPCountry", "US")]);
    assert_eq!(second.host(), "d.example", "a repeat visit matches the unique=false rule");
    // A rule whose destinations are all paused, no fallback: the least-loaded offer of its list (E, though paused).
    let s = t.go(&slug, "sub3=x", &[("User-Agent", "fresh one"), ("CF-IPCountry", "US")]);
    assert_eq!(s.host(), "e.example");
    // The matched rule's name is stored with the click.
    let stored: String = t
        .s
        .sqlite()
        .query_row("SELECT v.text FROM clicks c JOIN click_values v ON v.id = c.rule ORDER BY c.id LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "id mobile");
}

#[test]
fn hour_rules_wrap_past_midnight_in_the_servers_offset() {
    let s = TestServer::with(|c| c.server.utc_offset = "+07:00".into());
    let (_, token) = verified_user(&s, "night@example.com");
    let t = Setup { s, token };
    let (id, slug) = t.link("https://day.example/");
    t.routing(
        id,
        json!({"destinations": [{"name": "Day", "url": "https://day.example/"}, {"name": "Night", "url": "https://night.example/"}],
               "rules": [{"name": "night", "if": {"hour": {"from": 22, "to": 2}}, "to": ["Night"]},
                         {"name": "day", "to": ["Day"]}]}),
    );
    let now = t.s.app.clock.now();
    let day_start = now - now.rem_euclid(24 * HOUR); // 00:00 UTC = 07:00 local
    let mut hosts = Vec::new();
    // Local 21:30, 23:30, 01:30, 02:30, 03:30 = UTC 14:30, 16:30, 18:30, 19:30, 20:30.
    for (i, utc_hour) in [14, 16, 18, 19, 20].into_iter().enumerate() {
        let at = day_start + 24 * HOUR + utc_hour * HOUR + 30 * 60 * SECOND;
        t.s.app.clock.shift(at - t.s.app.clock.now());
        hosts.push(t.visit(&slug, 100 + i).host().to_string());
    }
    assert_eq!(hosts, ["day.example", "night.example", "night.example", "night.example", "day.example"]);
}

#[test]
fn landers_send_on_through_click_once_counted() {
    let t = setup();
    let (id, slug) = t.link("https://a.example/");
    let stored = t.routing(
        id,
        json!({
            "destinations": [
                {"name": "A", "url": "https://a.example/?cid={clickid}&s={sub_id}&s2={sub2}&d={destination}&r={rule}"},
                {"name": "B", "url": "https://b.example/?cid={clickid}", "weight": 0},
                {"kind": "lander", "name": "L1", "url": "https://lp.example/p?next={click_url}&d={destination}", "weight": 0}
            ],
            "rules": [{"name": "to lander", "if": {"param": {"sub2": ["tiktok"]}}, "to": ["L1"]}]
        }),
    );
    let app_url = t.s.app.config.app_url();
    let ua = [("User-Agent", "Mozilla/5.0 (Linux; Android 14) Mobile lander-visitor")];
    let sent = t.go(&slug, "sub_id=abc&sub2=tiktok", &ua);
    assert_eq!((sent.host(), sent.param("d").as_str()), ("lp.example", "L1"));
    let click_url = sent.param("next");
    assert!(click_url.starts_with(&format!("{app_url}/click/")), "{click_url}");
    let clickid = click_url.rsplit('/').next().unwrap().to_string();
    // The lander's button: to an offer (a rule listing only landers uses the link's offers; B has weight 0).
    let r = t.s.get(&path_of(&click_url), None);
    assert_eq!(r.status, 302, "{}", r.body);
    let offer = Sent { location: r.header("Location").unwrap().to_string() };
    assert_eq!(offer.host(), "a.example");
    assert_eq!(
        (offer.param("cid"), offer.param("s"), offer.param("s2"), offer.param("d"), offer.param("r")),
        (clickid.clone(), "abc".into(), "tiktok".into(), "A".into(), "to lander".into())
    );
    // Again: the same offer, counted once.
    for _ in 0..3 {
        let again = t.s.get(&path_of(&click_url), None);
        assert_eq!((again.status, again.header("Location")), (302, Some(offer.location.as_str())));
    }
    let stats = t.stats(id);
    let (l1, a) = (row(&stats, "L1"), row(&stats, "A"));
    assert_eq!(
        (l1["kind"].as_str(), l1["clicks"].as_i64(), l1["lander_clicks"].as_i64()),
        (Some("lander"), Some(1), Some(1))
    );
    assert_eq!(l1["ctr"], 100.0);
    assert_eq!(l1["p_best"], Value::Null, "a lander is not in the contest");
    assert_eq!(a["clicks"], 1);
    // The conversion counts for the offer the visitor reached.
    t.postback(&clickid, "approved");
    let stats = t.stats(id);
    assert_eq!((row(&stats, "A")["approved"].as_i64(), row(&stats, "L1")["approved"].as_i64()), (Some(1), Some(0)));
    let (dest, lander): (i64, i64) =
        t.s.sqlite()
            .query_row("SELECT destination_id, lander_id FROM clicks ORDER BY id DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
    assert_eq!(
        (Some(dest), Some(lander)),
        (stored["destinations"][0]["id"].as_i64(), stored["destinations"][2]["id"].as_i64())
    );
    // Unknown, forged and malformed clickids: 404.
    let mut forged = clickid.clone().into_bytes();
    forged[0] = if forged[0] == b'A' { b'B' } else { b'A' };
    for bad in
        [String::from_utf8(forged).unwrap(), "nope".into(), "AAAAAAAAAAAAAAAA99999".into(), "%27%20OR%201=1".into()]
    {
        let r = t.s.get(&format!("/click/{bad}"), None);
        assert_eq!(r.status, 404, "{bad}: {}", r.body);
    }
    // A click straight to an offer: /click sends it to its offer again and counts nothing.
    let direct = t.visit(&slug, 9);
    let direct_id = direct.param("cid");
    let r = t.s.get(&format!("/click/{direct_id}"), None);
    assert_eq!((r.status, r.header("Location")), (302, Some(direct.location.as_str())));
    let stats = t.stats(id);
    assert_eq!(row(&stats, "A")["clicks"], 2);
    assert_eq!(row(&stats, "L1")["lander_clicks"], 1);
}

#[test]
fn a_capped_offer_leaves_the_rotation_until_the_next_day_then_the_fallback() {
    let t = setup();
    let (id, slug) = t.link("https://a.example/");
    t.routing(
        id,
        json!({"destinations": [
            {"name": "A", "url": "https://a.example/?cid={clickid}", "weight": 1000, "daily_cap": 2},
            {"name": "B", "url": "https://b.example/?cid={clickid}", "weight": 1, "daily_cap": 1}
        ]}),
    );
    let mut a_clicks = Vec::new();
    let mut n = 0;
    while a_clicks.len() < 3 {
        let s = t.visit(&slug, n);
        n += 1;
        if s.host() == "a.example" {
            a_clicks.push(s.param("cid"));
        }
    }
    // Pending and approved both count; rejected does not.
    t.postback(&a_clicks[0], "pending");
    t.postback(&a_clicks[1], "rejected");
    assert_eq!(t.visit(&slug, 1000).host(), "a.example", "one conversion of a cap of 2");
    t.postback(&a_clicks[2], "approved");
    for v in 1001..1011 {
        assert_eq!(t.visit(&slug, v).host(), "b.example", "A is capped");
    }
    // A visitor who was sent to A before leaves it too while it is capped.
    assert_eq!(t.visit(&slug, 0).host(), "b.example");
    // B capped as well, no fallback: the least-loaded offer (A at 2/2 = 1.0, B at 1/1 = 1.0: the first).
    let b_click = t.visit(&slug, 2000).param("cid");
    t.postback(&b_click, "approved");
    let s = t.visit(&slug, 2001);
    assert!(["a.example", "b.example"].contains(&s.host()), "{}", s.location);
    // With a fallback URL, everything capped goes there.
    let r = t.s.call(
        "PUT",
        &format!("/api/links/{id}"),
        Some(&t.token),
        Some(&json!({"fallback_url": "https://fallback.example/?c={clickid}"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let s = t.visit(&slug, 2002);
    assert_eq!(s.host(), "fallback.example");
    assert!(!s.param("c").is_empty(), "the fallback's macros are filled");
    // Rejecting A's approved conversion frees one place today.
    t.postback(&a_clicks[2], "rejected");
    assert_eq!(t.visit(&slug, 2003).host(), "a.example");
    // The next day every cap starts again.
    t.postback(&t.visit(&slug, 2004).param("cid"), "approved");
    assert_eq!(t.visit(&slug, 2005).host(), "fallback.example");
    t.s.app.clock.shift(24 * HOUR);
    assert_eq!(t.visit(&slug, 2006).host(), "a.example");
}

#[test]
fn optimize_mode_moves_traffic_to_the_better_offer_and_stats_say_so() {
    let t = setup();
    let (id, slug) = t.link("https://a.example/");
    let body = |mode: &str| {
        json!({"destinations": [
            {"name": "A", "url": "https://a.example/?cid={clickid}"},
            {"name": "B", "url": "https://b.example/?cid={clickid}"}
        ], "mode": mode})
    };
    t.routing(id, body("optimize"));
    // Fewer than 100 clicks each: the weights (50/50) decide.
    let mut clicks: Vec<(String, String)> = Vec::new();
    for n in 0..300 {
        let s = t.visit(&slug, n);
        clicks.push((s.host().to_string(), s.param("cid")));
    }
    let a_count = clicks.iter().filter(|(h, _)| h == "a.example").count();
    assert!((100..200).contains(&a_count), "before learning the split is even: A {a_count}");
    // B converts 30 % of its clicks, A 1 %.
    let (mut a_conv, mut b_conv) = (0, 0);
    for (host, cid) in &clicks {
        if host == "a.example" && a_conv < 1 {
            t.postback(cid, "approved");
            a_conv += 1;
        }
        if host == "b.example" && b_conv < 45 {
            t.postback(cid, "approved");
            b_conv += 1;
        }
    }
    let stats = t.stats(id);
    let b = row(&stats, "B");
    assert!(b["p_best"].as_f64().unwrap() > 0.999, "{stats:?}");
    assert_eq!(t.stats(id), stats, "the same data gives the same p_best");
    assert!(row(&stats, "A")["p_best"].as_f64().unwrap() < 0.001);
    // The shares are drawn again at most once a minute.
    t.s.app.clock.shift(61 * SECOND);
    let new: Vec<String> = (1000..1400).map(|n| t.visit(&slug, n).host().to_string()).collect();
    let to_a = new.iter().filter(|h| *h == "a.example").count() as f64 / new.len() as f64;
    // A keeps its 5 % floor (0.05 + 0.9 × p_best(A) ≈ 0.05); B gets the rest.
    assert!((0.02..0.10).contains(&to_a), "A got {to_a} of new visitors");
    // Stickiness holds: old A visitors stay with A.
    let old_a = clicks.iter().position(|(h, _)| h == "a.example").unwrap();
    assert_eq!(t.visit(&slug, old_a).host(), "a.example");
    // Back to weighted: an even split again.
    t.routing(id, body("weighted"));
    let back: Vec<String> = (2000..2400).map(|n| t.visit(&slug, n).host().to_string()).collect();
    let to_a = back.iter().filter(|h| *h == "a.example").count() as f64 / back.len() as f64;
    assert!((0.4..0.6).contains(&to_a), "A got {to_a}");
}

#[test]
fn stats_and_reports_by_destination_add_up() {
    let t = setup();
    let (id, slug) = t.link("https://a.example/");
    t.routing(
        id,
        json!({"destinations": [
            {"name": "A", "url": "https://a.example/?cid={clickid}", "payout": 5},
            {"name": "B", "url": "https://b.example/?cid={clickid}"}
        ]}),
    );
    let mut by_host: std::collections::HashMap<String, Vec<String>> = Default::default();
    for n in 0..40 {
        let s = t.visit(&slug, n);
        by_host.entry(s.host().to_string()).or_default().push(s.param("cid"));
    }
    let (a, b) = (&by_host["a.example"], &by_host["b.example"]);
    t.postback(&a[0], "approved");
    t.postback(&a[1], "pending");
    t.postback(&b[0], "approved");
    let stats = t.stats(id);
    let ra = row(&stats, "A");
    assert_eq!(ra["clicks"].as_i64(), Some(a.len() as i64));
    assert_eq!((ra["conversions"].as_i64(), ra["approved"].as_i64()), (Some(2), Some(1)));
    assert_eq!(ra["revenue"].as_f64(), Some(5.0), "A's payout overrides the link's");
    assert_eq!(ra["profit"].as_f64(), Some(5.0));
    assert_eq!(ra["cost"].as_f64(), Some(0.0));
    let cr = (10_000.0 / a.len() as f64).round() / 100.0;
    assert_eq!(ra["cr"].as_f64(), Some(cr));
    let epc = ((500.0 / a.len() as f64).round()) / 100.0;
    assert_eq!(ra["epc"].as_f64(), Some(epc));
    assert_eq!(row(&stats, "B")["revenue"].as_f64(), Some(2.0), "B pays the link's payout");
    let p: f64 = stats.iter().map(|r| r["p_best"].as_f64().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-3, "{stats:?}");
    // A date range: today only equals all time here; yesterday is empty.
    let today = apextrack::clock::local_date(t.s.app.clock.now(), 0);
    let r = t.s.get(&format!("/api/links/{id}/stats?from={today}&to={today}"), Some(&t.token));
    assert_eq!(r.json()["data"].as_array().unwrap().as_slice(), stats.as_slice());
    let r = t.s.get(&format!("/api/links/{id}/stats?from=2001-01-01&to=2001-01-02"), Some(&t.token));
    assert_eq!(r.json()["data"][0]["clicks"], 0);
    assert_eq!(t.s.get(&format!("/api/links/{id}/stats?from=yesterday"), Some(&t.token)).status, 422);
    // Reports by destination: the same counts, with names.
    let r = t.s.get("/api/reports?group_by=destination", Some(&t.token));
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.json()["data"].as_array().unwrap().clone();
    let ra = rows.iter().find(|r| r["name"] == "A").unwrap();
    assert_eq!(
        (ra["clicks"].as_i64(), ra["approved_leads"].as_i64(), ra["payout"].as_f64()),
        (Some(a.len() as i64), Some(1), Some(5.0))
    );
    assert_eq!(ra["destination"], stats[0]["id"]);
    let csv = t.s.get("/api/reports?group_by=destination&format=csv", Some(&t.token)).body;
    assert!(csv.starts_with("destination,name,clicks"), "{csv}");
}

#[test]
fn a_one_offer_link_redirects_as_before_and_head_counts_nothing() {
    let t = setup();
    let (id, slug) = t.link("https://shop.example/p?cid={clickid}&s={sub_id}");
    let s = t.go(&slug, "sub_id=x", &[("User-Agent", "ua")]);
    assert!(s.location.starts_with("https://shop.example/p?cid="), "{}", s.location);
    assert_eq!(s.param("s"), "x");
    let r = request(t.s.addr(), "HEAD", &format!("/go/{slug}"), &[], b"");
    assert_eq!(r.status, 302);
    assert_eq!(row(&t.stats(id), "Offer 1")["clicks"], 1);
}

#[test]
fn a_click_through_counts_on_its_own_day() {
    let t = setup();
    let (id, slug) = t.link("https://a.example/");
    t.routing(
        id,
        json!({"destinations": [
            {"name": "A", "url": "https://a.example/?cid={clickid}"},
            {"kind": "lander", "name": "L", "url": "https://lp.example/?next={click_url}"}
        ], "rules": [{"name": "all", "to": ["L"]}]}),
    );
    let sent = t.visit(&slug, 1);
    assert_eq!(sent.host(), "lp.example");
    let day1 = apextrack::clock::local_date(t.s.app.clock.now(), 0);
    t.s.app.clock.shift(24 * HOUR);
    let day2 = apextrack::clock::local_date(t.s.app.clock.now(), 0);
    assert_eq!(t.s.get(&path_of(&sent.param("next")), None).status, 302);
    let on = |from: &str, to: &str| -> Vec<Value> {
        t.s.get(&format!("/api/links/{id}/stats?from={from}&to={to}"), Some(&t.token)).json()["data"]
            .as_array()
            .unwrap()
            .clone()
    };
    let first = on(&day1, &day1);
    assert_eq!((row(&first, "L")["clicks"].as_i64(), row(&first, "L")["lander_clicks"].as_i64()), (Some(1), Some(0)));
    assert_eq!(row(&first, "A")["clicks"], 0);
    let second = on(&day2, &day2);
    assert_eq!((row(&second, "L")["lander_clicks"].as_i64(), row(&second, "A")["clicks"].as_i64()), (Some(1), Some(1)));
    let all = t.stats(id);
    assert_eq!((row(&all, "L")["clicks"].as_i64(), row(&all, "L")["lander_clicks"].as_i64()), (Some(1), Some(1)));
}
