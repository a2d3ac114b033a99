//! `apextrack serve` as a process: start-up, configuration errors, signals,
//! graceful shutdown, and upgrading databases made by earlier versions.

mod common;

use common::{cli, request, write_config, Client, Proc, TestServer, PASSWORD};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

#[test]
fn serves_on_the_example_config_and_stops_cleanly_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "");
        let mut server = Proc::spawn(dir.path(), &[]);
        let r = server.get("/api/health", None);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["schema_version"], apextrack::db::migrate::latest_version());
        assert_eq!(server.register("sig@example.com").status, 201);
        server.signal(signal);
        assert_eq!(server.wait(), Some(0), "SIG{signal} exits 0");
        let stderr = server.drain_stderr();
        assert!(stderr.contains("POST /api/register 201"), "one access-log line per request: {stderr}");
        assert!(stderr.contains("stopped"), "{stderr}");
        // The WAL was checkpointed into the main file.
        let wal = dir.path().join("apextrack.db-wal");
        assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0), "WAL left behind");
        assert!(TcpStream::connect(server.addr()).is_err(), "no longer accepting");
    }
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let mut server = Proc::spawn(dir.path(), &[]);
    // Over 1 KiB, so the server hands the request to a handler before the
    // body arrives (smaller bodies are read whole first); unknown fields are ignored.
    let body = json!({
        "name": "Late", "email": "late@example.com", "password": PASSWORD, "password_confirmation": PASSWORD,
        "padding": "x".repeat(2048),
    })
    .to_string();
    // Headers now, body after the signal: the handler is running meanwhile.
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    write!(
        stream,
        "POST /api/register HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(body.as_bytes()).unwrap();
    let r = common::read_response(&mut stream);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(server.wait(), Some(0));
    let conn = rusqlite::Connection::open(dir.path().join("apextrack.db")).unwrap();
    let n: i64 =
        conn.query_row("SELECT count(*) FROM users WHERE email = 'late@example.com'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn start_up_errors_name_the_bad_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let run = |env: &[(&str, &str)], config: &str| {
        let mut cmd = Command::new(common::binary());
        cmd.current_dir(dir.path()).args(["--config", config, "serve"]).env_remove("APEXTRACK_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let config = dir.path().join("apextrack.toml").display().to_string();
    let cases = [
        (vec![("APEXTRACK_SERVER_THREADS", "0")], config.clone(), "server.threads = 0: must be between 1 and 512"),
        (
            vec![("APEXTRACK_SERVER_THREADS", "eight")],
            config.clone(),
            "APEXTRACK_SERVER_THREADS = \"eight\": expected integer",
        ),
        (vec![("APEXTRACK_SERVER_BIND", "localhost")], config.clone(), "server.bind = \"localhost\""),
        (
            vec![("APEXTRACK_SECURITY_TOKEN_TTL", "1")],
            config.clone(),
            "APEXTRACK_SECURITY_TOKEN_TTL: no such configuration key",
        ),
        (vec![], "missing.toml".to_string(), "cannot read config file missing.toml"),
    ];
    for (env, config, needle) in cases {
        let (code, stderr) = run(&env, &config);
        assert_eq!(code, Some(2), "{env:?}");
        assert!(!stderr.contains("internal error"), "{env:?}: {stderr}");
        assert!(stderr.contains(needle), "{env:?}: {stderr:?} lacks {needle:?}");
    }
    std::fs::write(dir.path().join("bad.toml"), "[server]\nthreads = \"many\"\n").unwrap();
    let (code, stderr) = run(&[], "bad.toml");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("server.threads: invalid type: string \"many\""), "{stderr}");
    // The port is taken: say so.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let (code, stderr) = run(&[("APEXTRACK_SERVER_BIND", &taken)], &config);
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&format!("cannot listen on {taken}")), "{stderr}");
}

/// Every database file made by an earlier schema version upgrades in place
/// and keeps its users and tokens. Add `schema-vN.db` (+ `.json`) for each
/// release that changes the schema.
#[test]
fn databases_from_every_earlier_schema_version_upgrade_in_place() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "db") {
            continue;
        }
        seen += 1;
        let facts: Value =
            serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        let s = TestServer::with(|c| {
            std::fs::copy(&path, &c.database.path).unwrap();
        });
        assert_eq!(s.app.db.schema_version().unwrap(), apextrack::db::migrate::latest_version());
        for email in facts["users"].as_array().unwrap() {
            let r = s.login(email.as_str().unwrap(), facts["password"].as_str().unwrap());
            assert_eq!(r.status, 200, "{}: {}", path.display(), r.body);
        }
        let r = s.get("/api/user", facts["bob_token"].as_str());
        assert_eq!(r.status, 200, "a token issued before the upgrade still works");
        assert_eq!(r.json()["email"], "bob@example.com");
        assert_eq!(r.json()["language"], "en");
        // Clicks stored before the compact layout (step 6) keep their
        // numbers, and their clickids still take postbacks.
        for click in facts["clicks"].as_array().into_iter().flatten() {
            let email = click["email"].as_str().unwrap();
            let token =
                s.login(email, facts["password"].as_str().unwrap()).json()["token"].as_str().unwrap().to_string();
            let day = click["day"].as_str().unwrap();
            let q = format!("/api/reports?group_by=sub_id&from={day}&to={day}");
            let row = s.get(&q, Some(&token)).json()["data"][0].clone();
            assert_eq!((row["sub_id"].as_str(), row["clicks"].as_i64()), (click["sub_id"].as_str(), Some(1)), "{row}");
            let url = s.get("/api/user", Some(&token)).json()["postback_url"].as_str().unwrap().to_string();
            let secret = url.split("secret=").nth(1).unwrap();
            let r = s.get(
                &format!("/api/postback/conversion?clickid={}&secret={secret}", click["clickid"].as_str().unwrap()),
                None,
            );
            assert_eq!((r.status, r.json()["outcome"].clone()), (200, json!("created")), "{}", r.body);
            let rows = s.get("/api/reports?group_by=destination", Some(&token)).json()["data"].clone();
            let leads: i64 = rows.as_array().unwrap().iter().map(|r| r["leads"].as_i64().unwrap()).sum();
            assert_eq!(leads, 1, "the lead counts for the click's offer: {rows}");
            // Each link became a smart link with one offer, its URL; the
            // clicks of before count for that offer, and so does the lead.
            let links = s.get("/api/links", Some(&token)).json()["data"].clone();
            for link in links.as_array().unwrap() {
                let id = link["id"].as_i64().unwrap();
                let routing = s.get(&format!("/api/links/{id}/routing"), Some(&token)).json()["data"].clone();
                let d = routing["destinations"].as_array().unwrap();
                assert_eq!((d.len(), &d[0]["name"], &d[0]["url"]), (1, &json!("Offer 1"), &link["url"]), "{routing}");
            }
            let q = format!("/api/reports?group_by=destination&from={day}&to={day}");
            let row = s.get(&q, Some(&token)).json()["data"][0].clone();
            assert_eq!((row["name"].as_str(), row["clicks"].as_i64()), (Some("Offer 1"), Some(1)), "{row}");
            let recent = s.get("/api/dashboard-data", Some(&token)).json()["recent_clicks"].clone();
            assert!(recent.as_array().unwrap().iter().any(|c| c["clickid"] == click["clickid"]), "{recent}");
        }
        let check: String = s.sqlite().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }
    assert!(seen >= 1, "no fixtures found in {}", fixtures.display());
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let conn = rusqlite::Connection::open(dir.path().join("apextrack.db")).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let out = cli(dir.path(), &["user", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer than this binary"));
}

#[test]
fn raw_requests_with_garbage_never_crash_the_server() {
    let s = TestServer::start();
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /api/user HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
        b"POST /api/login HTTP/1.1\r\nContent-Length: 5\r\n\r\n\xff\xff\xff\xff\xff",
        b"POST /api/login HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}",
    ] {
        let mut stream = TcpStream::connect(s.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = stream.write_all(raw);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut sink);
    }
    let r = request(s.addr(), "GET", "/api/health", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn sigterm_under_load_answers_commits_and_checkpoints() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let mut server = Proc::spawn(dir.path(), &[]);
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let email = format!("load{c}-{i}@example.com");
                    // A refused connection (the server is stopping) is simply not acknowledged.
                    let Ok(mut stream) = TcpStream::connect(addr) else { break };
                    let body =
                        json!({"name": "L", "email": email, "password": PASSWORD, "password_confirmation": PASSWORD})
                            .to_string();
                    let head = format!(
                        "POST /api/register HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes())).is_err() {
                        break;
                    }
                    let mut raw = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut stream, &mut raw);
                    if raw.starts_with(b"HTTP/1.1 201") {
                        acked.lock().unwrap().push(email);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    server.signal("TERM");
    assert_eq!(server.wait(), Some(0));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 4, "the clients got going: {}", acked.len());
    let wal = dir.path().join("apextrack.db-wal");
    assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0), "the WAL was checkpointed");
    let conn = rusqlite::Connection::open(dir.path().join("apextrack.db")).unwrap();
    for email in &acked {
        let n: i64 = conn.query_row("SELECT count(*) FROM users WHERE email = ?1", [email], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "{email} was answered 201 but is missing");
    }
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn idle_and_half_sent_connections_do_not_stop_the_server() {
    // All from 127.0.0.1: the per-address cap (tests/slowloris.rs) is not what this tests.
    let s = TestServer::with(|c| c.server.max_connections_per_ip = 10_000);
    // 200 connections that never send anything, 200 that stop mid-request,
    // and 200 that made one request and now idle on keep-alive.
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(TcpStream::connect(s.addr()).unwrap());
    }
    for _ in 0..200 {
        let mut c = TcpStream::connect(s.addr()).unwrap();
        c.write_all(b"POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"na").unwrap();
        held.push(c);
    }
    for _ in 0..200 {
        let mut c = TcpStream::connect(s.addr()).unwrap();
        c.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        held.push(c);
    }
    let t = std::time::Instant::now();
    let r = request(s.addr(), "GET", "/api/health", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert!(t.elapsed() < Duration::from_secs(1), "answered in {:?}", t.elapsed());
    drop(held);
}

#[test]
fn the_ui_can_be_served_from_a_folder_instead_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let ui = dir.path().join("ui");
    std::fs::create_dir(&ui).unwrap();
    std::fs::write(ui.join("index.html"), "<!doctype html><title>Custom</title><h1>My tracker</h1>").unwrap();
    std::fs::write(ui.join("style.css"), "body { color: red }").unwrap();
    let ui_path = ui.display().to_string();
    let s = TestServer::with(|c| c.server.static_dir = ui_path);
    assert!(s.get("/dashboard", None).body.contains("My tracker"));
    assert_eq!(s.get("/assets/style.css", None).body, "body { color: red }");
    // A file the folder lacks comes from the binary; nothing outside it is served.
    assert!(s.get("/assets/app.js", None).body.contains("apextrack"));
    assert_eq!(s.get("/assets/..%2Fui%2Findex.html", None).status, 404);
    // A folder without index.html is a start-up error naming the key.
    let mut config = apextrack::Config::default();
    config.server.static_dir = dir.path().join("missing").display().to_string();
    assert!(config.validate().unwrap_err().to_string().contains("server.static_dir"));
}
