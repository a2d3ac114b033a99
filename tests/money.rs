//! Money (SPEC §12) over real HTTP against a real SQLite file: a link's
//! cost model, the cost each click carries, and cost, revenue, profit,
//! ROI, EPC and CPC in reports, the dashboard and a link's stats, computed
//! here by hand.

mod common;

use common::{request, verified_user, Client, TestServer};
use serde_json::{json, Value};

struct Setup {
    s: TestServer,
    token: String,
}

fn setup() -> Setup {
    let s = TestServer::start();
    let (_, token) = verified_user(&s, "money@example.com");
    Setup { s, token }
}

impl Setup {
    fn link(&self, body: Value) -> Value {
        let r = self.s.post("/api/links", Some(&self.token), &body);
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["data"].clone()
    }

    /// A click; returns its clickid (the offer URL carries it as `c`).
    fn click(&self, slug: &str, query: &str, ua: &str) -> String {
        let r = request(self.s.addr(), "GET", &format!("/go/{slug}?{query}"), &[("User-Agent", ua)], b"");
        assert_eq!(r.status, 302, "{}", r.body);
        let location = r.header("Location").unwrap().to_string();
        location.split("c=").nth(1).unwrap_or("").split('&').next().unwrap().to_string()
    }

    fn approve(&self, clickid: &str, payout: &str) {
        let url = self.s.get("/api/user", Some(&self.token)).json()["postback_url"].as_str().unwrap().to_string();
        let secret = url.split("secret=").nth(1).unwrap().to_string();
        let q = format!("/api/postback/conversion?clickid={clickid}&payout={payout}&secret={secret}");
        assert_eq!(self.s.get(&q, None).status, 200);
    }

    fn report(&self, group_by: &str) -> Vec<Value> {
        let r = self.s.get(&format!("/api/reports?group_by={group_by}"), Some(&self.token));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"].as_array().unwrap().clone()
    }
}

const DAY: i64 = 86_400_000_000;
const PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36";
const DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120";
const BOT: &str = "Googlebot/2.1 (+http://www.google.com/bot.html)";

#[test]
fn cost_per_click_and_from_the_click_flow_into_every_report() {
    let t = setup();
    let cpc = t.link(json!({"name": "CPC", "url": "https://o.example/?c={clickid}", "payout": 3,
                            "cost_model": "cpc", "cost_value": "0.05"}));
    assert_eq!((cpc["cost_model"].as_str(), cpc["cost_value"].as_f64()), (Some("cpc"), Some(0.05)));
    let param = t.link(json!({"name": "Param", "url": "https://o.example/?c={clickid}", "cost_model": "param"}));
    let (cpc_slug, param_slug) = (cpc["slug"].as_str().unwrap(), param["slug"].as_str().unwrap());

    // CPC: 6 clicks from phones on sub_id a, 2 from a desktop on b, a bot (costs nothing).
    let mut a = Vec::new();
    for i in 0..6 {
        a.push(t.click(cpc_slug, "sub_id=a", &format!("{PHONE} {i}")));
    }
    t.click(cpc_slug, "sub_id=b", DESKTOP);
    t.click(cpc_slug, "sub_id=b", DESKTOP);
    t.click(cpc_slug, "sub_id=b", BOT);
    t.approve(&a[0], "3");
    t.approve(&a[1], "1.50");
    // Param: what the source sent, when it is a number from 0 to 1000; anything else costs 0.
    for cost in ["0.015", "0.0105", "abc", "1e400", "-1", "NaN", "1000.01", "", "%3D1%2B1"] {
        t.click(param_slug, &format!("sub_id=p&cost={cost}"), DESKTOP);
    }
    t.click(param_slug, "sub_id=p", DESKTOP);

    let by_sub = t.report("sub_id");
    let row = |key: &str| by_sub.iter().find(|r| r["sub_id"] == key).unwrap().clone();
    // a: 6 clicks × 0.05 = 0.30 cost, 4.50 revenue, profit 4.20, ROI 1400 %, EPC 0.75, CPC 0.05.
    let a = row("a");
    assert_eq!(
        ["cost", "revenue", "profit", "roi", "epc", "cpc"].map(|k| a[k].as_f64()),
        [Some(0.3), Some(4.5), Some(4.2), Some(1400.0), Some(0.75), Some(0.05)],
        "{a}"
    );
    // b: 2 clicks, 0.10 cost, no revenue: ROI −100 %, EPC 0.
    let b = row("b");
    assert_eq!((b["cost"].as_f64(), b["profit"].as_f64(), b["roi"].as_f64()), (Some(0.1), Some(-0.1), Some(-100.0)));
    // p: 0.015 + 0.0105 = 0.0255 → 0.03 at the edge (half up), per click 0.00255 → 0.00.
    let p = row("p");
    assert_eq!((p["clicks"].as_i64(), p["cost"].as_f64(), p["cpc"].as_f64()), (Some(10), Some(0.03), Some(0.0)), "{p}");
    assert_eq!(p["roi"].as_f64(), Some(-100.0));
    // Stored exactly, in micro-units, per click.
    let carried: i64 = t.s.sqlite().query_row("SELECT sum(cost) FROM clicks", [], |r| r.get(0)).unwrap();
    assert_eq!(carried, 8 * 50_000 + 15_000 + 10_500);

    // Every grouping sums to the same total cost: 0.40 + 0.0255.
    for group in ["day", "country", "device", "link", "destination", "os", "hour"] {
        let rows = t.report(group);
        let total: f64 = rows.iter().map(|r| r["cost"].as_f64().unwrap()).sum();
        // Each row is rounded to the cent on its own: within a cent per row of 0.4255.
        assert!((total - 0.43).abs() < 0.011, "{group}: {rows:?}");
        let revenue: f64 = rows.iter().map(|r| r["revenue"].as_f64().unwrap()).sum();
        assert!((revenue - 4.5).abs() < 1e-9, "{group}: {rows:?}");
    }
    let by_link = t.report("link");
    let cpc_row = by_link.iter().find(|r| r["name"] == "CPC").unwrap();
    assert_eq!((cpc_row["cost"].as_f64(), cpc_row["clicks"].as_i64()), (Some(0.4), Some(8)));
    // Reports by OS and hour name their group.
    let by_os = t.report("os");
    let android = by_os.iter().find(|r| r["os"] == "android").unwrap();
    assert_eq!((android["clicks"].as_i64(), android["cost"].as_f64()), (Some(6), Some(0.3)));
    let by_hour = t.report("hour");
    assert!(by_hour.iter().all(|r| r["hour"].as_i64().is_some_and(|h| (0..24).contains(&h))), "{by_hour:?}");
    let csv = t.s.get("/api/reports?group_by=sub_id&format=csv", Some(&t.token)).body;
    assert!(csv.lines().next().unwrap().ends_with(",cost,revenue,profit,roi,epc,cpc"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("a,6,") && l.ends_with(",0.30,4.50,4.20,1400.00,0.75,0.05")), "{csv}");

    // The dashboard: today's cost, revenue and profit; the sub_id table too.
    let d = t.s.get("/api/dashboard-data", Some(&t.token)).json();
    let summary = &d["summary"];
    assert_eq!(
        (summary["costToday"].as_f64(), summary["revenueToday"].as_f64(), summary["profitToday"].as_f64()),
        (Some(0.43), Some(4.5), Some(4.07)),
        "{summary}"
    );
    let a = d["report"].as_array().unwrap().iter().find(|r| r["sub_id"] == "a").unwrap().clone();
    assert_eq!((a["cost"].as_f64(), a["roi"].as_f64()), (Some(0.3), Some(1400.0)));

    // A link's stats carry cost and profit per destination.
    let stats = t.s.get(&format!("/api/links/{}/stats", cpc["id"]), Some(&t.token)).json()["data"][0].clone();
    assert_eq!(
        (stats["cost"].as_f64(), stats["profit"].as_f64(), stats["roi"].as_f64()),
        (Some(0.4), Some(4.1), Some(1025.0))
    );
}

#[test]
fn a_cost_model_is_checked_and_can_be_changed() {
    let t = setup();
    let link = t.link(json!({"name": "L", "url": "https://o.example/?c={clickid}"}));
    assert_eq!((link["cost_model"].as_str(), link["cost_value"].as_f64()), (Some("none"), Some(0.0)));
    let id = link["id"].as_i64().unwrap();
    for (body, field) in [
        (json!({"cost_model": "cpm"}), "cost_model"),
        (json!({"cost_model": 1}), "cost_model"),
        (json!({"cost_value": "-1"}), "cost_value"),
        (json!({"cost_value": "1e400"}), "cost_value"),
        (json!({"cost_value": "NaN"}), "cost_value"),
        (json!({"cost_value": 1000.5}), "cost_value"),
        (json!({"cost_value": true}), "cost_value"),
    ] {
        let r = t.s.call("PUT", &format!("/api/links/{id}"), Some(&t.token), Some(&body));
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(r.json()["errors"][field].is_array(), "{body}: {}", r.body);
    }
    let slug = link["slug"].as_str().unwrap();
    t.click(slug, "", DESKTOP);
    let r = t.s.call(
        "PUT",
        &format!("/api/links/{id}"),
        Some(&t.token),
        Some(&json!({"cost_model": "cpc", "cost_value": 0.2})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    t.click(slug, "", DESKTOP);
    let row = t.report("link")[0].clone();
    assert_eq!((row["clicks"].as_i64(), row["cost"].as_f64(), row["cpc"].as_f64()), (Some(2), Some(0.2), Some(0.1)));
    let stored: Vec<Option<i64>> =
        t.s.sqlite()
            .prepare("SELECT cost FROM clicks ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(stored, [None, Some(200_000)], "a click keeps the cost it carried");
}

fn import(t: &Setup, query: &str, content_type: &str, body: &str) -> common::Resp {
    let auth = format!("Bearer {}", t.token);
    request(
        t.s.addr(),
        "POST",
        &format!("/api/conversions/import{query}"),
        &[("Authorization", auth.as_str()), ("Content-Type", content_type)],
        body.as_bytes(),
    )
}

fn leads(t: &Setup) -> i64 {
    t.s.sqlite().query_row("SELECT count(*) FROM leads", [], |r| r.get(0)).unwrap()
}

#[test]
fn conversions_import_with_a_dry_run_first_through_the_postbacks_path() {
    let t = setup();
    let link = t.link(json!({"name": "Net", "url": "https://o.example/?c={clickid}", "payout": 4}));
    let slug = link["slug"].as_str().unwrap();
    let (a, b, c) = (t.click(slug, "sub_id=x", DESKTOP), t.click(slug, "sub_id=x", PHONE), t.click(slug, "", "ua3"));
    // Another user's click is unknown to this one.
    let (_, other_token) = verified_user(&t.s, "other@example.com");
    let theirs =
        t.s.post("/api/links", Some(&other_token), &json!({"name": "T", "url": "https://t.example/?c={clickid}"}));
    let their_slug = theirs.json()["data"]["slug"].as_str().unwrap().to_string();
    let their_click = t.click(&their_slug, "", DESKTOP);
    let csv = format!(
        "clickid,status,payout,txid\n{a},approved,2.50,tx-a\n{b},pending,,\nnope-{a},approved,1,\n{their_click},approved,1,\n\
         {c},sold,1,\n{c},approved,-5,\n,approved,1,\n{c},approved,\"1,5\",tx-dup\n"
    );
    let dry = import(&t, "?dry_run=1", "text/csv", &csv);
    assert_eq!(dry.status, 200, "{}", dry.body);
    let answer = dry.json();
    assert_eq!(
        answer["counts"],
        json!({"created": 2, "updated": 0, "unchanged": 0, "unknown_clickid": 2, "invalid": 4})
    );
    assert_eq!(answer["dry_run"], true);
    let lines: Vec<(i64, String)> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["outcome"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        lines,
        [
            (4, "unknown_clickid"),
            (5, "unknown_clickid"),
            (6, "invalid"),
            (7, "invalid"),
            (8, "invalid"),
            (9, "invalid")
        ]
        .map(|(l, o)| (l, o.to_string()))
    );
    assert!(answer["rows"][2]["reason"].as_str().unwrap().contains("status"), "{answer}");
    assert_eq!(leads(&t), 0, "a dry run writes nothing");

    let real = import(&t, "", "text/csv", &csv).json();
    assert_eq!(real["counts"], json!({"created": 2, "updated": 0, "unchanged": 0, "unknown_clickid": 2, "invalid": 4}));
    assert_eq!(leads(&t), 2);
    let row = t.report("sub_id").into_iter().find(|r| r["sub_id"] == "x").unwrap();
    assert_eq!(
        (row["approved_leads"].as_i64(), row["pending_leads"].as_i64(), row["revenue"].as_f64()),
        (Some(1), Some(1), Some(2.5))
    );
    // Again: nothing changes twice; then the network's postback for the same txid changes nothing either.
    assert_eq!(import(&t, "", "text/csv", &csv).json()["counts"]["unchanged"], 2);
    let url = t.s.get("/api/user", Some(&t.token)).json()["postback_url"].as_str().unwrap().to_string();
    let secret = url.split("secret=").nth(1).unwrap().to_string();
    let r = t.s.get(&format!("/api/postback/conversion?clickid={a}&txid=tx-a&payout=2.50&secret={secret}"), None);
    assert_eq!(r.json()["outcome"], "unchanged", "{}", r.body);
    // A status moves as a postback's would; approved → pending is refused with its reason.
    let moves = format!("clickid;status;txid\n{b};approved;{b}\n{a};pending;tx-a\n");
    let answer = import(&t, "", "text/csv", &moves).json();
    assert_eq!(
        (answer["counts"]["updated"].as_i64(), answer["counts"]["invalid"].as_i64()),
        (Some(1), Some(1)),
        "{answer}"
    );
    assert!(answer["rows"][0]["reason"].as_str().unwrap().contains("approved to pending"), "{answer}");
    let row = t.report("sub_id").into_iter().find(|r| r["sub_id"] == "x").unwrap();
    assert_eq!(
        (row["approved_leads"].as_i64(), row["revenue"].as_f64()),
        (Some(2), Some(6.5)),
        "b earns the link's payout"
    );

    // JSON, with its own dry run.
    let body = json!({"rows": [{"clickid": c, "payout": 3}, {"clickid": 42}, {"status": "approved"}], "dry_run": true});
    let answer = import(&t, "", "application/json", &body.to_string()).json();
    assert_eq!(
        answer["counts"],
        json!({"created": 1, "updated": 0, "unchanged": 0, "unknown_clickid": 1, "invalid": 1})
    );
    assert_eq!(leads(&t), 2);
}

#[test]
fn bad_import_files_are_clear_422s_and_change_nothing() {
    let t = setup();
    let link = t.link(json!({"name": "Net", "url": "https://o.example/?c={clickid}"}));
    let a = t.click(link["slug"].as_str().unwrap(), "", DESKTOP);
    // A byte order mark and ; are fine.
    let r = import(&t, "", "text/csv", &format!("\u{feff}clickid;payout\r\n{a};1,00\r\n"));
    assert_eq!(r.json()["counts"]["invalid"], 1, "1,00 is not a number here: {}", r.body);
    for (body, field) in [
        ("clickid\tstatus\nabc\tapproved\n".to_string(), "file"),
        ("click,status\nabc,approved\n".to_string(), "file"),
        (String::new(), "file"),
        ("clickid,status\n\"abc,approved\n".to_string(), "file"),
    ] {
        let r = import(&t, "", "text/csv", &body);
        assert_eq!(r.status, 422, "{body:?}: {}", r.body);
        assert!(r.json()["errors"][field].is_array(), "{body:?}: {}", r.body);
    }
    let auth = format!("Bearer {}", t.token);
    let r =
        request(t.s.addr(), "POST", "/api/conversions/import", &[("Authorization", &auth)], &[0xff, 0xfe, 0x00, 0x41]);
    assert_eq!(r.status, 422, "{}", r.body);
    let many = format!("clickid\n{}", "x\n".repeat(50_001));
    let r = import(&t, "", "text/csv", &many);
    assert_eq!(r.status, 422, "{}", &r.body[..200.min(r.body.len())]);
    assert!(r.json()["errors"]["rows"].is_array());
    // A mistyped dry run is refused, not taken for a real import.
    let r = import(&t, "?dry_run=ture", "text/csv", &format!("clickid\n{a}\n"));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.json()["errors"]["dry_run"].is_array(), "{}", r.body);
    for body in [json!({"rows": "x"}), json!({"rows": [], "dry_run": "yes"})] {
        assert_eq!(import(&t, "", "application/json", &body.to_string()).status, 422, "{body}");
    }
    assert_eq!(leads(&t), 0);
    // Without a token: refused.
    let r = request(t.s.addr(), "POST", "/api/conversions/import", &[("Content-Type", "text/csv")], b"clickid\nx\n");
    assert_eq!(r.status, 401);
}

#[test]
fn an_import_may_be_larger_than_other_bodies_for_a_known_user_only() {
    let s = TestServer::with(|c| {
        c.server.max_body_bytes = 64 * 1024;
        c.server.max_body_memory_bytes = 64 * 1024;
    });
    let (_, token) = verified_user(&s, "big@example.com");
    let t = Setup { s, token };
    let link = t.link(json!({"name": "Net", "url": "https://o.example/?c={clickid}"}));
    let a = t.click(link["slug"].as_str().unwrap(), "", DESKTOP);
    // 20 000 rows, about 600 KiB: ten times server.max_body_bytes.
    let mut csv = String::from("clickid,status,payout,txid\n");
    for i in 0..20_000 {
        csv.push_str(&format!("{a},approved,1.00,tx-{i:06}-padding-padding\n"));
    }
    assert!(csv.len() > 512 * 1024);
    let r = import(&t, "?dry_run=1", "text/csv", &csv);
    assert_eq!(r.status, 200, "{}", &r.body[..300.min(r.body.len())]);
    assert_eq!(r.json()["counts"]["created"], 20_000);
    let r = import(&t, "", "text/csv", &csv);
    assert_eq!(r.json()["counts"]["created"], 20_000);
    assert_eq!(leads(&t), 20_000);
    assert_eq!(t.report("link")[0]["revenue"].as_f64(), Some(20_000.0));
    // A stranger, or another route, gets the usual limit.
    let r =
        request(t.s.addr(), "POST", "/api/conversions/import", &[("Authorization", "Bearer 1|nope")], csv.as_bytes());
    assert!(r.status == 413 || r.status == 401, "{}", r.status);
    let auth = format!("Bearer {}", t.token);
    let r = request(
        t.s.addr(),
        "POST",
        "/api/links",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        csv.as_bytes(),
    );
    assert_eq!(r.status, 413);
}

fn cost_of(rows: &[Value], key: &str, value: &str) -> f64 {
    rows.iter().find(|r| r[key] == value).map_or(0.0, |r| r["cost"].as_f64().unwrap())
}

fn total_cost(t: &Setup, group: &str) -> f64 {
    t.report(group).iter().map(|r| r["cost"].as_f64().unwrap()).sum()
}

#[test]
fn spend_entered_later_replaces_what_the_clicks_carried_and_comes_back_when_deleted() {
    let t = setup();
    let link =
        t.link(json!({"name": "Ads", "url": "https://o.example/?c={clickid}", "cost_model": "cpc", "cost_value": 0.1}));
    let (id, slug) = (link["id"].as_i64().unwrap(), link["slug"].as_str().unwrap());
    for i in 0..4 {
        t.click(slug, "sub_id=a", &format!("{PHONE} {i}"));
    }
    for i in 0..2 {
        t.click(slug, "sub_id=b", &format!("{DESKTOP} b{i}"));
    }
    for i in 0..4 {
        t.click(slug, "sub_id=c", &format!("{DESKTOP} c{i}"));
    }
    // Spend is known once the day is over: the clicks' day is yesterday now.
    let today = apextrack::clock::local_date(t.s.app.clock.now(), 0);
    t.s.app.clock.shift(DAY);
    let now = apextrack::clock::local_date(t.s.app.clock.now(), 0);
    let post = |body: Value| t.s.post("/api/costs", Some(&t.token), &body);
    assert!((total_cost(&t, "sub_id") - 1.0).abs() < 1e-9);

    // The link's day costs 5.00: spread over its 10 clicks, 0.50 each.
    let r = post(json!({"link_id": id, "day": today, "amount": 5}));
    assert_eq!(r.status, 201, "{}", r.body);
    let link_entry = r.json()["data"]["id"].as_i64().unwrap();
    let subs = t.report("sub_id");
    assert_eq!(
        [cost_of(&subs, "sub_id", "a"), cost_of(&subs, "sub_id", "b"), cost_of(&subs, "sub_id", "c")],
        [2.0, 1.0, 2.0]
    );
    let devices = t.report("device");
    assert_eq!([cost_of(&devices, "device", "mobile"), cost_of(&devices, "device", "desktop")], [2.0, 3.0]);

    // sub_id a cost 1.00: it wins for a; the link's 5.00 goes over the other 6 clicks
    // (5 000 000 micro-units / 6: 833 334 for the first two, b's; 833 333 for c's four).
    let r = post(json!({"link_id": id.to_string(), "day": today, "sub_id": "a", "amount": "1.00"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let a_entry = r.json()["data"]["id"].as_i64().unwrap();
    let subs = t.report("sub_id");
    assert_eq!(
        [cost_of(&subs, "sub_id", "a"), cost_of(&subs, "sub_id", "b"), cost_of(&subs, "sub_id", "c")],
        [1.0, 1.67, 3.33]
    );
    for group in ["day", "link", "country", "destination"] {
        assert!((total_cost(&t, group) - 6.0).abs() < 1e-9, "{group}: {:?}", t.report(group));
    }
    let q = format!("/api/reports?group_by=day&from={today}&to={today}");
    assert_eq!(t.s.get(&q, Some(&t.token)).json()["data"][0]["cost"].as_f64(), Some(6.0));
    // A second entry for the same scope replaces the first.
    assert_eq!(post(json!({"link_id": id, "day": today, "amount": "3"})).status, 201);
    assert!((total_cost(&t, "day") - 4.0).abs() < 1e-9);
    let listed = t.s.get(&format!("/api/costs?from={today}&to={today}"), Some(&t.token)).json()["data"].clone();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    // Removing a's entry: its clicks are back in the link's spread (3.00 over 10).
    assert_eq!(t.s.call("DELETE", &format!("/api/costs/{a_entry}"), Some(&t.token), None).status, 200);
    let subs = t.report("sub_id");
    assert_eq!(
        [cost_of(&subs, "sub_id", "a"), cost_of(&subs, "sub_id", "b"), cost_of(&subs, "sub_id", "c")],
        [1.2, 0.6, 1.2]
    );
    // Removing the last: what the clicks carried, 0.10 each.
    let (_, other) = verified_user(&t.s, "thief@example.com");
    assert_eq!(t.s.call("DELETE", &format!("/api/costs/{link_entry}"), Some(&other), None).status, 404);
    assert_eq!(t.s.call("DELETE", &format!("/api/costs/{link_entry}"), Some(&t.token), None).status, 200);
    let subs = t.report("sub_id");
    assert_eq!(
        [cost_of(&subs, "sub_id", "a"), cost_of(&subs, "sub_id", "b"), cost_of(&subs, "sub_id", "c")],
        [0.4, 0.2, 0.4]
    );
    assert!((total_cost(&t, "link") - 1.0).abs() < 1e-9);
    let left: i64 = t.s.sqlite().query_row("SELECT count(*) FROM cost_adjustments", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
    // An entry for a sub_id with no clicks that day still counts: in the day's, the link's and that sub_id's rows.
    assert_eq!(post(json!({"link_id": id, "day": today, "sub_id": "ghost", "amount": 2})).status, 201);
    let ghost = t.report("sub_id").into_iter().find(|r| r["sub_id"] == "ghost").unwrap();
    assert_eq!((ghost["clicks"].as_i64(), ghost["cost"].as_f64()), (Some(0), Some(2.0)));
    assert!((total_cost(&t, "link") - 3.0).abs() < 1e-9);

    // Bad entries: 422 naming the field, nothing written.
    let theirs = t.s.post("/api/links", Some(&other), &json!({"name": "T", "url": "https://t.example/"})).json()
        ["data"]["id"]
        .clone();
    for (body, field) in [
        (json!({"link_id": theirs, "day": today, "amount": 1}), "link_id"),
        (json!({"link_id": 99999, "day": today, "amount": 1}), "link_id"),
        (json!({"link_id": id, "day": "yesterday", "amount": 1}), "day"),
        (json!({"link_id": id, "day": "2999-01-01", "amount": 1}), "day"),
        (json!({"link_id": id, "day": now, "amount": 1}), "day"),
        (json!({"link_id": id, "day": today, "amount": -1}), "amount"),
        (json!({"link_id": id, "day": today, "amount": "NaN"}), "amount"),
        (json!({"link_id": id, "day": today, "amount": "1e400"}), "amount"),
        (json!({"link_id": id, "day": today, "amount": [1]}), "amount"),
        (json!({"link_id": id, "day": today}), "amount"),
    ] {
        let r = post(body.clone());
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(r.json()["errors"][field].is_array(), "{body}: {}", r.body);
    }
    let entries: i64 = t.s.sqlite().query_row("SELECT count(*) FROM cost_entries", [], |r| r.get(0)).unwrap();
    assert_eq!(entries, 1, "the ghost's only");
}

#[test]
fn a_cost_file_is_taken_whole_or_not_at_all() {
    let t = setup();
    let link = t.link(json!({"name": "Ads", "url": "https://o.example/?c={clickid}"}));
    let (id, slug) = (link["id"].as_i64().unwrap(), link["slug"].as_str().unwrap());
    t.click(slug, "sub_id=a", DESKTOP);
    t.click(slug, "sub_id=b", PHONE);
    let today = apextrack::clock::local_date(t.s.app.clock.now(), 0);
    t.s.app.clock.shift(DAY);
    let auth = format!("Bearer {}", t.token);
    let send = |csv: &str| {
        request(
            t.s.addr(),
            "POST",
            "/api/costs/import",
            &[("Authorization", &auth), ("Content-Type", "text/csv")],
            csv.as_bytes(),
        )
    };
    let bad = format!(
        "day,link_id,sub_id,amount\n{today},{id},a,2\n{today},{id},,-1\n{today},{id},b,3\nnot-a-day,999999,,1\n"
    );
    let r = send(&bad);
    assert_eq!(r.status, 422, "{}", r.body);
    let errors = r.json()["errors"].clone();
    for key in ["lines.3.amount", "lines.5.day", "lines.5.link_id"] {
        assert!(errors[key].is_array(), "{key}: {errors}");
    }
    assert!(errors.get("lines.2.amount").is_none());
    assert!((total_cost(&t, "day") - 0.0).abs() < 1e-9, "nothing of a refused file is written");
    let good = format!("\u{feff}day;link_id;sub_id;amount\r\n{today};{id};a;2\r\n{today};{id};;1,5\r\n");
    let r = send(&good);
    assert_eq!(r.status, 422, "1,5 is not an amount: {}", r.body);
    let good = format!("day;link_id;sub_id;amount\r\n{today};{id};a;2\r\n{today};{id};;1.5\r\n");
    let r = send(&good);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["count"], 2);
    let subs = t.report("sub_id");
    assert_eq!([cost_of(&subs, "sub_id", "a"), cost_of(&subs, "sub_id", "b")], [2.0, 1.5]);

    // A day whose raw clicks were purged cannot be split any more.
    apextrack::tracking::clicks::purge_all(&t.s.app.db, t.s.app.clock.now() + 1_000_000, |_| {}).unwrap();
    let r = t.s.post("/api/costs", Some(&t.token), &json!({"link_id": id, "day": today, "amount": 9}));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.json()["errors"]["day"].is_array());
    assert_eq!(t.report("sub_id").iter().map(|r| r["cost"].as_f64().unwrap()).sum::<f64>(), 3.5, "unchanged");
}

#[test]
fn filtered_reports_agree_with_the_counters_and_narrow_by_each_filter() {
    let t = setup();
    let a = t.link(json!({"name": "A", "url": "https://a.example/?c={clickid}", "payout": 2, "cost_model": "cpc", "cost_value": 0.1}));
    let b = t.link(json!({"name": "B", "url": "https://b.example/?c={clickid}", "payout": 5}));
    let (a_id, b_id) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let (a_slug, b_slug) = (a["slug"].as_str().unwrap(), b["slug"].as_str().unwrap());
    // A: sub x 3 phones + 1 desktop, sub y 2 desktops; B: sub x 2 phones.
    let mut x_phone = Vec::new();
    for i in 0..3 {
        x_phone.push(t.click(a_slug, "sub_id=x", &format!("{PHONE} a{i}")));
    }
    t.click(a_slug, "sub_id=x", &format!("{DESKTOP} a"));
    t.click(a_slug, "sub_id=y", &format!("{DESKTOP} y1"));
    t.click(a_slug, "sub_id=y", &format!("{DESKTOP} y2"));
    let b_click = t.click(b_slug, "sub_id=x", &format!("{PHONE} b1"));
    t.click(b_slug, "sub_id=x", &format!("{PHONE} b2"));
    t.approve(&x_phone[0], "2");
    t.approve(&b_click, "5");
    let today = apextrack::clock::local_date(t.s.app.clock.now(), 0);
    t.s.app.clock.shift(DAY);
    // Spend for A's sub y that day: 1.00 instead of 0.20.
    assert_eq!(
        t.s.post("/api/costs", Some(&t.token), &json!({"link_id": a_id, "day": today, "sub_id": "y", "amount": 1}))
            .status,
        201
    );
    let get = |q: &str| -> Vec<Value> {
        let r = t.s.get(&format!("/api/reports?{q}"), Some(&t.token));
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        r.json()["data"].as_array().unwrap().clone()
    };
    let pick = |rows: &[Value], key: &str, value: Value| -> Value {
        rows.iter().find(|r| r[key] == value).cloned().unwrap_or_else(|| panic!("no {key}={value} in {rows:?}"))
    };
    // Only link A, by sub_id: x 4 clicks, cost 0.40, revenue 2; y 2 clicks, cost 1.00.
    let rows = get(&format!("group_by=sub_id&link_id={a_id}"));
    let x = pick(&rows, "sub_id", json!("x"));
    assert_eq!(
        (x["clicks"].as_i64(), x["cost"].as_f64(), x["revenue"].as_f64()),
        (Some(4), Some(0.4), Some(2.0)),
        "{x}"
    );
    let y = pick(&rows, "sub_id", json!("y"));
    assert_eq!(
        (y["clicks"].as_i64(), y["cost"].as_f64(), y["roi"].as_f64()),
        (Some(2), Some(1.0), Some(-100.0)),
        "{y}"
    );
    // sub x, by device: phones 5 (3 of A, 2 of B), desktop 1; revenue of phones 7.
    let rows = get("group_by=device&sub_id=x");
    let phones = pick(&rows, "device", json!("mobile"));
    assert_eq!(
        (phones["clicks"].as_i64(), phones["approved_leads"].as_i64(), phones["revenue"].as_f64()),
        (Some(5), Some(2), Some(7.0))
    );
    assert_eq!(pick(&rows, "device", json!("desktop"))["clicks"], 1);
    // sub x on phones, by link: names and ids.
    let rows = get("group_by=link&sub_id=x&device=mobile");
    let link_b = pick(&rows, "link", json!(b_id));
    assert_eq!(
        (link_b["name"].as_str(), link_b["clicks"].as_i64(), link_b["cost"].as_f64()),
        (Some("B"), Some(2), Some(0.0))
    );
    // A filter on one link gives the counters' numbers for it, grouping by grouping.
    for group in ["day", "country", "device", "os", "hour", "destination"] {
        let filtered = get(&format!("group_by={group}&link_id={b_id}"));
        let total = |rows: &[Value], k: &str| rows.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).sum::<f64>();
        assert_eq!((total(&filtered, "clicks"), total(&filtered, "revenue")), (2.0, 5.0), "{group}: {filtered:?}");
    }
    let all_a = get(&format!("group_by=link&link_id={a_id}"));
    let counted = pick(&t.report("link"), "link", json!(a_id));
    for key in ["clicks", "unique_clicks", "approved_leads", "cost", "revenue", "profit", "roi", "epc", "cpc"] {
        assert_eq!(all_a[0][key], counted[key], "{key}");
    }
    // A country or sub_id nobody has: no rows. Bad filters: 422 naming them.
    assert!(get("group_by=sub_id&country=DE").is_empty());
    assert!(get("group_by=sub_id&sub_id=nobody").is_empty());
    for (q, field) in [
        ("link_id=abc", "link_id"),
        ("link_id=-1", "link_id"),
        ("destination_id=1%20OR%201=1", "destination_id"),
        ("country=IDN", "country"),
        ("device=bot", "device"),
        ("device=phone", "device"),
    ] {
        let r = t.s.get(&format!("/api/reports?group_by=day&{q}"), Some(&t.token));
        assert_eq!(r.status, 422, "{q}: {}", r.body);
        assert!(r.json()["errors"][field].is_array(), "{q}: {}", r.body);
    }
    // Another user's link filters to nothing of theirs.
    let (_, other) = verified_user(&t.s, "other@example.com");
    let r = t.s.get(&format!("/api/reports?group_by=sub_id&link_id={a_id}"), Some(&other));
    assert_eq!(r.json()["data"], json!([]));
    let csv = t.s.get(&format!("/api/reports?group_by=sub_id&link_id={a_id}&format=csv"), Some(&t.token)).body;
    assert!(csv.lines().any(|l| l.starts_with("y,2,") && l.contains(",1.00,0.00,-1.00,-100.00,")), "{csv}");
}

/// The whole of §12 in one small scenario, every number worked out by hand:
/// clicks that carry their cost in the URL, a spend entry for one sub_id, a
/// postback, and a conversion import; then every report grouping.
#[test]
fn a_small_campaign_adds_up_by_hand_in_every_grouping() {
    let t = setup();
    let link =
        t.link(json!({"name": "Push", "url": "https://o.example/?c={clickid}", "payout": 4, "cost_model": "param"}));
    let (id, slug) = (link["id"].as_i64().unwrap(), link["slug"].as_str().unwrap());
    // s1: 2 phone clicks at 0.30; s2: 3 desktop clicks at 0.20 (one says "abc": 0).
    let p1 = t.click(slug, "sub_id=s1&cost=0.30", &format!("{PHONE} 1"));
    t.click(slug, "sub_id=s1&cost=0.30", &format!("{PHONE} 2"));
    let d1 = t.click(slug, "sub_id=s2&cost=0.20", &format!("{DESKTOP} 1"));
    let d2 = t.click(slug, "sub_id=s2&cost=0.20", &format!("{DESKTOP} 2"));
    t.click(slug, "sub_id=s2&cost=abc", &format!("{DESKTOP} 3"));
    // A postback approves p1 (the link's 4.00); the network's export adds d1 at 6.00 and d2 pending.
    t.approve(&p1, "4");
    let csv = format!("clickid,status,payout,txid\n{d1},approved,6,n1\n{d2},pending,6,n2\n");
    let auth = format!("Bearer {}", t.token);
    let r = request(
        t.s.addr(),
        "POST",
        "/api/conversions/import",
        &[("Authorization", &auth), ("Content-Type", "text/csv")],
        csv.as_bytes(),
    );
    assert_eq!(r.json()["counts"]["created"], 2, "{}", r.body);
    let summary = t.s.get("/api/dashboard-data", Some(&t.token)).json()["summary"].clone();
    assert_eq!(["costToday", "revenueToday", "profitToday"].map(|k| summary[k].as_f64()), [1.0, 10.0, 9.0].map(Some));
    // Carried: s1 0.60, s2 0.40. The next day the ad account says s2 cost 1.50.
    let day = apextrack::clock::local_date(t.s.app.clock.now(), 0);
    t.s.app.clock.shift(DAY);
    let entry = json!({"link_id": id, "day": day, "sub_id": "s2", "amount": "1.50"});
    let r = t.s.post("/api/costs", Some(&t.token), &entry);
    assert_eq!(r.status, 201, "{}", r.body);
    // By hand: cost 0.60 + 1.50 = 2.10; revenue 4 + 6 = 10; profit 7.90;
    // ROI 7.90 / 2.10 = 376.19 %; 5 clicks: EPC 2.00, CPC 0.42; CR 2/5 = 40 %.
    let expect = |row: &Value, what: &str| {
        let got = ["clicks", "approved_leads", "pending_leads", "cost", "revenue", "profit", "roi", "epc", "cpc", "cr"]
            .map(|k| row[k].as_f64());
        let want = [5.0, 2.0, 1.0, 2.1, 10.0, 7.9, 376.19, 2.0, 0.42, 40.0].map(Some);
        assert_eq!(got, want, "{what}: {row}");
    };
    for group in ["day", "link", "destination", "country"] {
        let rows = t.report(group);
        assert_eq!(rows.len(), 1, "{group}: {rows:?}");
        expect(&rows[0], group);
    }
    // By sub_id: s1 cost 0.60, revenue 4, ROI 566.67; s2 cost 1.50, revenue 6, ROI 300, CPC 0.50.
    let subs = t.report("sub_id");
    let s1 = subs.iter().find(|r| r["sub_id"] == "s1").unwrap();
    let s2 = subs.iter().find(|r| r["sub_id"] == "s2").unwrap();
    assert_eq!(
        ["cost", "revenue", "profit", "roi", "epc", "cpc"].map(|k| s1[k].as_f64()),
        [0.6, 4.0, 3.4, 566.67, 2.0, 0.3].map(Some)
    );
    assert_eq!(
        ["cost", "revenue", "profit", "roi", "epc", "cpc"].map(|k| s2[k].as_f64()),
        [1.5, 6.0, 4.5, 300.0, 2.0, 0.5].map(Some)
    );
    // By device and OS the same split (phones are s1, desktops s2); by hour all in one or two rows.
    let devices = t.report("device");
    assert_eq!(devices.iter().find(|r| r["device"] == "desktop").unwrap()["cost"].as_f64(), Some(1.5));
    let oses = t.report("os");
    assert_eq!(oses.iter().find(|r| r["os"] == "android").unwrap()["revenue"].as_f64(), Some(4.0));
    let hours = t.report("hour");
    assert!((hours.iter().map(|r| r["cost"].as_f64().unwrap()).sum::<f64>() - 2.1).abs() < 0.011, "{hours:?}");
    // Narrowed to s2 by link: the same numbers as s2's row.
    let r = t.s.get("/api/reports?group_by=link&sub_id=s2", Some(&t.token)).json()["data"][0].clone();
    assert_eq!(["cost", "revenue", "roi"].map(|k| r[k].as_f64()), [1.5, 6.0, 300.0].map(Some), "{r}");
    // A 10 MB file is refused whole, and nothing of it lands.
    let big = format!("clickid,status\n{}", format!("{d2},approved\n").repeat(10 * 1024 * 1024 / 30));
    let r = request(
        t.s.addr(),
        "POST",
        "/api/conversions/import",
        &[("Authorization", &auth), ("Content-Type", "text/csv")],
        big.as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", &r.body[..200.min(r.body.len())]);
    assert_eq!(t.report("link")[0]["approved_leads"], 2);
}

#[test]
fn imports_and_reports_hold_at_their_edges() {
    let t = setup();
    let link = t.link(json!({"name": "Edge", "url": "https://o.example/?c={clickid}", "payout": 1}));
    let slug = link["slug"].as_str().unwrap();
    let first = t.click(slug, "", DESKTOP);
    t.click(slug, "sub_id=z", PHONE);
    // A JSON import of 5 000 rows (20 000 values) is taken whole.
    let rows: Vec<Value> =
        (0..5000).map(|i| json!({"clickid": first, "status": "pending", "txid": format!("j{i}")})).collect();
    let body = json!({"rows": rows, "dry_run": true}).to_string();
    let r = import(&t, "", "application/json", &body);
    assert_eq!(r.status, 200, "{}", &r.body[..200.min(r.body.len())]);
    assert_eq!(r.json()["counts"]["created"], 5000);
    // A line of a million commas is refused before it is split.
    let r = import(&t, "", "text/csv", &format!("clickid\n{}", ",".repeat(1_000_000)));
    assert_eq!(r.status, 422);
    assert!(r.json()["errors"]["file"].is_array(), "{}", r.body);
    // Narrowed to clicks without a sub_id (`sub_id=`): the one desktop click.
    let r = t.s.get("/api/reports?group_by=device&sub_id=", Some(&t.token)).json();
    assert_eq!(r["data"], json!([r["data"][0].clone()]), "{r}");
    assert_eq!((r["data"][0]["device"].as_str(), r["data"][0]["clicks"].as_i64()), (Some("desktop"), Some(1)));
    // The click is purged, its lead is not: an import still moves the lead by its txid.
    let url = t.s.get("/api/user", Some(&t.token)).json()["postback_url"].as_str().unwrap().to_string();
    let secret = url.split("secret=").nth(1).unwrap().to_string();
    let q = format!("/api/postback/conversion?clickid={first}&status=pending&txid=kept&secret={secret}");
    assert_eq!(t.s.get(&q, None).status, 200);
    t.s.app.clock.shift(DAY);
    apextrack::tracking::clicks::purge_all(&t.s.app.db, t.s.app.clock.now(), |_| {}).unwrap();
    let csv = format!("clickid,status,txid\n{first},approved,kept\n{first},approved,never-seen\n");
    let answer = import(&t, "", "text/csv", &csv).json();
    assert_eq!(
        (answer["counts"]["updated"].as_i64(), answer["counts"]["unknown_clickid"].as_i64()),
        (Some(1), Some(1)),
        "{answer}"
    );
}
