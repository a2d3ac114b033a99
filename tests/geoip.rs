//! GeoIP out of the box: `apextrack geoip update` downloads a country
//! database (served here by a local HTTP server), checks it, swaps it in
//! beside the database file, and the running server uses it.

mod common;

use apextrack::tracking::geoip;
use common::{cli, request, verified_user, write_config, write_mmdb, Client, TestServer};
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Path → (status, bytes).
type Served = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// A file server on loopback.
struct Files {
    addr: std::net::SocketAddr,
    files: Served,
}

impl Files {
    fn start() -> Files {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files: Served = Arc::default();
        let served = Arc::clone(&files);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_string();
                let (status, body) = served.lock().unwrap().get(&path).cloned().unwrap_or((404, b"no".to_vec()));
                let _ =
                    write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(&body);
            }
        });
        Files { addr, files }
    }

    fn put(&self, path: &str, status: u16, body: Vec<u8>) -> String {
        self.files.lock().unwrap().insert(path.to_string(), (status, body));
        format!("http://{}{path}", self.addr)
    }
}

fn mmdb(networks: &[(&str, u8, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.mmdb");
    write_mmdb(&path, networks);
    std::fs::read(path).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn geoip_update_swaps_in_a_database_the_running_server_then_uses() {
    let files = Files::start();
    let s = TestServer::with(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]);
    let (_, token) = verified_user(&s, "geo@example.com");
    let r = s.post("/api/links", Some(&token), &json!({"name": "G", "url": "https://g.example/?c={country_code}"}));
    let slug = r.json()["data"]["slug"].as_str().unwrap().to_string();
    let go = || {
        let r = request(s.addr(), "GET", &format!("/go/{slug}"), &[("X-Forwarded-For", "203.0.113.50")], b"");
        r.header("Location").unwrap().to_string()
    };
    assert_eq!(go(), "https://g.example/?c=XX", "no database yet");
    assert!(s.get("/api/health", None).json()["geoip"].is_null());

    // DB-IP's packaging: a gzipped MMDB.
    let url = files.put("/dbip-country-lite.mmdb.gz", 200, gzip(&mmdb(&[("203.0.113.0", 24, "ID")])));
    write_config(s.dir(), "");
    let out = cli(s.dir(), &["geoip", "update", "--url", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let dest = s.dir().join("geoip.mmdb");
    assert!(stdout.contains(&format!("wrote {}", dest.display())), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("downloading"), "progress is shown");
    // The upkeep thread looks every 30 s; here, right away.
    assert!(s.app.tracking.geoip.reload_if_changed().unwrap());
    assert_eq!(go(), "https://g.example/?c=ID");
    assert_eq!(s.get("/api/health", None).json()["geoip"]["database"], "GeoIP2-Country");

    // A corrupt download changes nothing: the command fails, the file stays.
    let before = std::fs::read(&dest).unwrap();
    let bad = files.put("/corrupt.mmdb.gz", 200, gzip(b"this is not a database at all"));
    let out = cli(s.dir(), &["geoip", "update", "--url", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a MaxMind DB"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), before);
    assert!(!s.app.tracking.geoip.reload_if_changed().unwrap());
    assert_eq!(go(), "https://g.example/?c=ID");
    // Nor does a server that answers 500.
    let down = files.put("/down.mmdb", 500, Vec::new());
    assert_eq!(cli(s.dir(), &["geoip", "update", "--url", &down]).status.code(), Some(1));
    assert_eq!(std::fs::read(&dest).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(s.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn this_months_file_missing_falls_back_to_last_months_and_tar_gz_is_unpacked() {
    let files = Files::start();
    let missing = files.put("/2026-11.mmdb.gz", 404, Vec::new());
    // MaxMind's packaging: a tar.gz with a folder holding the .mmdb.
    let mut tarball = tar::Builder::new(Vec::new());
    let db = mmdb(&[("198.51.100.0", 24, "DE")]);
    let mut header = tar::Header::new_gnu();
    header.set_size(db.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tarball.append_data(&mut header, "GeoLite2-Country_20261124/GeoLite2-Country.mmdb", &db[..]).unwrap();
    let found = files.put("/2026-10.tar.gz", 200, gzip(&tarball.into_inner().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("geo.mmdb");
    let mut reports = Vec::new();
    let updated = geoip::update(&[missing, found.clone()], &dest, |got, total| reports.push((got, total))).unwrap();
    assert_eq!(updated.url, found);
    assert_eq!(std::fs::read(&dest).unwrap(), db);
    assert!(reports.last().is_some_and(|(got, _)| *got > 0));
    // Only 404s: an error naming the last one, nothing written.
    let none = files.put("/2026-09.mmdb.gz", 404, Vec::new());
    let e = geoip::update(&[none], &dir.path().join("other.mmdb"), |_, _| {}).err().unwrap().to_string();
    assert!(e.contains("not found (404)"), "{e}");
    assert!(!dir.path().join("other.mmdb").exists());
}

#[test]
fn the_server_fetches_a_database_when_geoip_update_days_says_so() {
    let files = Files::start();
    let url = files.put("/auto.mmdb.gz", 200, gzip(&mmdb(&[("203.0.113.0", 24, "ID")])));
    let s = TestServer::with(|c| {
        c.tracking.geoip_update_days = 30;
        c.tracking.geoip_update_url = url.clone();
    });
    let mut last = None;
    // No file yet: due, fetched, then not again for six hours.
    assert!(apextrack::jobs::geoip_due(&s.app, &mut last));
    assert!(apextrack::jobs::fetch_geoip(&s.app));
    assert!(!apextrack::jobs::geoip_due(&s.app, &mut last));
    assert!(s.app.tracking.geoip.reload_if_changed().unwrap());
    assert_eq!(s.app.tracking.geoip.country("203.0.113.9".parse().unwrap()).as_deref(), Some("ID"));
    // A fresh file is not due, whenever asked.
    assert!(!apextrack::jobs::geoip_due(&s.app, &mut None));
    assert!(s.log().contains("geoip: downloaded"), "{}", s.log());
    // Off by default.
    let off = TestServer::start();
    assert!(!apextrack::jobs::geoip_due(&off.app, &mut None));
}
