//! Retention: raw clicks go (by `tracking.raw_click_days` or `apextrack
//! purge`), counters stay: every report and the dashboard give the same
//! numbers before and after, and leads keep working without their clicks.

mod common;

use apextrack::clock::{self, DAY};
use common::{cli, request, verified_user, write_config, Client, TestServer};
use serde_json::{json, Value};

const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1";

struct Setup {
    s: TestServer,
    token: String,
    slug: String,
    secret: String,
}

fn setup(adjust: impl FnOnce(&mut apextrack::Config)) -> Setup {
    let s = TestServer::with(adjust);
    let (_, token) = verified_user(&s, "keep@example.com");
    let r = s.post(
        "/api/links",
        Some(&token),
        &json!({"name": "L", "url": "https://l.example/?c={clickid}", "payout": "2.50"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let slug = r.json()["data"]["slug"].as_str().unwrap().to_string();
    let url = s.get("/api/user", Some(&token)).json()["postback_url"].as_str().unwrap().to_string();
    let secret = url.split("secret=").nth(1).unwrap().to_string();
    Setup { s, token, slug, secret }
}

impl Setup {
    /// A click; returns its clickid.
    fn click(&self, sub: &str, n: usize) -> String {
        let r = request(
            self.s.addr(),
            "GET",
            &format!("/go/{}?sub_id={sub}", self.slug),
            &[("User-Agent", &format!("{UA} {n}"))],
            b"",
        );
        assert_eq!(r.status, 302, "{}", r.body);
        r.header("Location").unwrap().split("c=").nth(1).unwrap().to_string()
    }

    fn postback(&self, query: &str) -> common::Resp {
        self.s.get(&format!("/api/postback/conversion?{query}&secret={}", self.secret), None)
    }

    /// Everything a user can read about their numbers.
    fn numbers(&self) -> Value {
        let mut all = json!({});
        let dash = self.s.get("/api/dashboard-data?from=2000-01-01&to=2100-01-01", Some(&self.token)).json();
        all["summary"] = dash["summary"].clone();
        all["report"] = dash["report"].clone();
        for group in ["day", "sub_id", "country", "device", "link"] {
            let q = format!("/api/reports?group_by={group}&from=2000-01-01&to=2100-01-01");
            all[group] = self.s.get(&q, Some(&self.token)).json()["data"].clone();
            all[format!("{group}_csv")] = Value::String(self.s.get(&format!("{q}&format=csv"), Some(&self.token)).body);
        }
        all
    }

    fn raw_clicks(&self) -> i64 {
        self.s.sqlite().query_row("SELECT count(*) FROM clicks", [], |r| r.get(0)).unwrap()
    }
}

#[test]
fn a_purge_deletes_old_raw_clicks_and_changes_no_number() {
    let t = setup(|_| {});
    // Ten days ago: five clicks, two leads (one pending), and a click without a lead.
    t.s.app.clock.shift(-10 * DAY);
    let old: Vec<String> = (0..5).map(|n| t.click(if n % 2 == 0 { "fb" } else { "tt" }, n)).collect();
    assert_eq!(t.postback(&format!("clickid={}&txid=old-1", old[0])).status, 200);
    assert_eq!(t.postback(&format!("clickid={}&txid=old-2&status=pending", old[1])).status, 200);
    t.s.app.clock.shift(10 * DAY);
    // Today: three more.
    let new: Vec<String> = (0..3).map(|n| t.click("fb", 10 + n)).collect();
    assert_eq!(t.postback(&format!("clickid={}&txid=new-1", new[0])).status, 200);
    let before = t.numbers();
    assert_eq!(t.raw_clicks(), 8);

    let cutoff = clock::local_date(t.s.app.clock.now() - 2 * DAY, 0);
    write_config(t.s.dir(), "");
    let dry = cli(t.s.dir(), &["purge", "--before", &cutoff, "--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("would delete 5 raw clicks"),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
    assert_eq!(t.raw_clicks(), 8, "a dry run deletes nothing");
    let out = cli(t.s.dir(), &["purge", "--before", &cutoff]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted 5 raw clicks"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(t.raw_clicks(), 3);
    assert_eq!(t.numbers(), before, "reports, CSVs and the dashboard are unchanged by the purge");

    // The pending lead of a purged click still moves by its txid...
    let r = t.postback(&format!("clickid={}&txid=old-2&status=approved", old[1]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["outcome"], "updated");
    let after = t.numbers();
    assert_eq!(after["summary"]["totalLeads"], before["summary"]["totalLeads"]);
    assert_eq!(
        after["summary"]["totalPayout"].as_f64().unwrap(),
        before["summary"]["totalPayout"].as_f64().unwrap() + 2.5
    );
    // ...a purged click without a lead is unknown, as any clickid we do not hold...
    let r = t.postback(&format!("clickid={}", old[4]));
    assert_eq!((r.status, r.json()["outcome"].clone()), (404, json!("unknown_click")));
    // ...and without the genuine secret nothing moves.
    let r = t.s.get(&format!("/api/postback/conversion?clickid={}&txid=old-1&status=rejected&secret=x", old[0]), None);
    assert_eq!(r.status, 404);

    // Bad input is an input error, exit 2.
    for bad in ["2026-02-30", "yesterday", ""] {
        let out = cli(t.s.dir(), &["purge", "--before", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn raw_click_days_lets_the_maintenance_thread_purge_in_batches() {
    let t = setup(|c| c.tracking.raw_click_days = 3);
    t.s.app.clock.shift(-5 * DAY);
    let writes = |n: usize| {
        t.s.app
            .db
            .write(|tx| {
                use apextrack::tracking::store;
                let link_id: i64 = tx.query_row("SELECT id FROM links", [], |r| r.get(0))?;
                let user_id: i64 = tx.query_row("SELECT user_id FROM links", [], |r| r.get(0))?;
                let first = store::reserve(tx, n as i64)?;
                for i in 0..n as i64 {
                    let row = store::Row {
                        id: first + i,
                        secret: &store::new_secret(),
                        user_id,
                        link_id,
                        at_ms: t.s.app.clock.now() / 1000,
                        ip: &[198, 51, 100, 1],
                        ua: 1,
                        country: "ID",
                        device: 1,
                        is_unique: true,
                        values: [None; 6],
                        destination_id: None,
                        lander_id: None,
                        rule: None,
                        cost: None,
                    };
                    store::insert(tx, &row)?;
                }
                Ok(())
            })
            .unwrap();
    };
    writes(12_345);
    t.s.app.clock.shift(5 * DAY);
    t.click("new", 1);
    let purged = apextrack::jobs::prune(&t.s.app);
    assert!(purged >= 12_345, "{purged}");
    assert_eq!(t.raw_clicks(), 1);
    assert!(t.s.log().contains("retention: deleted 12345 raw clicks older than 3 days"), "{}", t.s.log());
}

#[test]
fn whole_history_counters_equal_the_sum_of_the_days() {
    // Reports over a user's whole history read all-time counters (one row
    // per value); reports over part of it add up days. Both must agree,
    // also after a lead on an old click changes status.
    let t = setup(|_| {});
    t.s.app.clock.shift(-10 * DAY);
    let old: Vec<String> = (0..6).map(|n| t.click(["fb", "tt", "ig"][n % 3], n)).collect();
    assert_eq!(t.postback(&format!("clickid={}&txid=a&status=pending", old[0])).status, 200);
    assert_eq!(t.postback(&format!("clickid={}&txid=b", old[1])).status, 200);
    t.s.app.clock.shift(10 * DAY);
    let new: Vec<String> = (0..4).map(|n| t.click(["fb", "yt"][n % 2], 10 + n)).collect();
    assert_eq!(t.postback(&format!("clickid={}&txid=c", new[1])).status, 200);
    assert_eq!(t.postback(&format!("clickid={}&txid=a&status=approved", old[0])).status, 200);

    let today = clock::local_date(t.s.app.clock.now(), 0);
    let yesterday = clock::local_date(t.s.app.clock.now() - DAY, 0);
    let rows = |group: &str, from: &str, to: &str| -> Vec<Value> {
        let q = format!("/api/reports?group_by={group}&from={from}&to={to}");
        let r = t.s.get(&q, Some(&t.token));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["data"].as_array().unwrap().clone()
    };
    let counters = ["clicks", "unique_clicks", "leads", "approved_leads", "pending_leads", "rejected_leads"];
    for group in ["sub_id", "country", "device", "link"] {
        let whole = rows(group, "2000-01-01", "2100-01-01");
        let mut summed: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for part in [rows(group, "2000-01-01", &yesterday), rows(group, &today, &today)] {
            for row in part {
                let sums = summed.entry(row[group].to_string()).or_insert_with(|| vec![0.0; counters.len() + 1]);
                for (i, c) in counters.iter().enumerate() {
                    sums[i] += row[*c].as_f64().unwrap();
                }
                sums[counters.len()] += row["payout"].as_f64().unwrap();
            }
        }
        assert_eq!(whole.len(), summed.len(), "{group}: {whole:?} against {summed:?}");
        for row in &whole {
            let sums = &summed[&row[group].to_string()];
            for (i, c) in counters.iter().enumerate() {
                assert_eq!(row[*c].as_f64().unwrap(), sums[i], "{group} {} {c}", row[group]);
            }
            assert_eq!(row["payout"].as_f64().unwrap(), sums[counters.len()], "{group} {} payout", row[group]);
        }
        if group == "sub_id" {
            let fb = whole.iter().find(|r| r["sub_id"] == "fb").unwrap();
            assert_eq!(
                (fb["clicks"].clone(), fb["approved_leads"].clone(), fb["pending_leads"].clone()),
                (json!(4), json!(1), json!(0))
            );
        }
    }
    // The dashboard's table over all time holds the sub_id report's rows
    // (ties in its own order: payout before name).
    let dash = t.s.get("/api/dashboard-data", Some(&t.token));
    assert_eq!(dash.status, 200, "{}", dash.body);
    let dash = dash.json();
    let report = rows("sub_id", "2000-01-01", "2100-01-01");
    let pick = |rows: &Value| -> std::collections::BTreeSet<(String, i64)> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["sub_id"].as_str().unwrap().to_string(), r["clicks"].as_i64().unwrap()))
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(pick(&dash["report"]), pick(&Value::Array(report)));
    assert_eq!(dash["summary"]["totalLeads"], 3);
}
