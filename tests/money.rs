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
