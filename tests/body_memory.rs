//! A flood of big request bodies must not take the server's memory with
//! it. The server runs in this process (and this file holds one test, so
//! nothing else runs beside it): the process's resident size is the
//! server's.

mod common;

use common::{Client, TestServer};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A JSON object just under 1 MiB (the default `server.max_body_bytes`)
/// whose bulk is a long array, the costliest shape to parse (about 28
/// bytes of memory per byte); it fails validation (no password
/// confirmation), so no password is hashed.
fn big_body() -> Vec<u8> {
    let head = r#"{"name":"Flood","email":"flood@example.com","password":"password123","pad":["#;
    let mut body = head.as_bytes().to_vec();
    while body.len() < 1024 * 1024 - 16 {
        body.extend_from_slice(b"0,");
    }
    body.extend_from_slice(b"0]}");
    body
}

/// The same size of tiny keys: `{"a0":0,"a1":0,...}`, a map per byte.
fn many_keys() -> Vec<u8> {
    let mut body = b"{".to_vec();
    let mut i = 0u64;
    while body.len() < 1024 * 1024 - 32 {
        body.extend_from_slice(format!("\"a{i}\":0,").as_bytes());
        i += 1;
    }
    body.extend_from_slice(b"\"z\":0}");
    body
}

#[test]
fn sixty_four_concurrent_one_mib_bodies_stay_within_a_memory_bound() {
    let s = TestServer::start();
    assert_eq!(s.get("/api/health", None).status, 200);
    let addr = s.addr();
    let bodies = Arc::new([big_body(), many_keys()]);
    let before = rss();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let barrier = Arc::new(Barrier::new(64));
    let t = Instant::now();
    let senders: Vec<_> = (0..64)
        .map(|n| {
            let (barrier, bodies) = (Arc::clone(&barrier), Arc::clone(&bodies));
            std::thread::spawn(move || {
                let body = &bodies[n % 2];
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let head = format!(
                    "POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                     Accept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                barrier.wait();
                stream.write_all(head.as_bytes()).unwrap();
                // Refused early, the rest of the body may meet a closed socket.
                let _ = stream.write_all(&body[..]);
                let mut raw = Vec::new();
                let _ = stream.read_to_end(&mut raw);
                String::from_utf8_lossy(&raw).into_owned()
            })
        })
        .collect();
    let answers: Vec<String> = senders.into_iter().map(|h| h.join().unwrap()).collect();
    let flood = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let after = rss();
    let peak = peak.load(Ordering::SeqCst);
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "RSS before {:.0} MB, peak {:.0} MB, after {:.0} MB; flood took {flood:?}",
        mb(before),
        mb(peak),
        mb(after)
    );
    let mut statuses = std::collections::BTreeMap::new();
    for answer in &answers {
        let status: u16 = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        *statuses.entry(status).or_insert(0) += 1;
        assert!((400..500).contains(&status) || status == 503, "{answer:.300}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer:.300}"));
        assert!(json["message"].is_string(), "{answer:.300}");
        if status == 503 {
            assert!(answer.contains("\r\nRetry-After: "), "{answer:.300}");
        }
    }
    eprintln!("statuses: {statuses:?}");
    assert_eq!(s.get("/api/health", None).status, 200, "still up");
    // Before the budget: a rise of about 1.4 GB (64 bodies parsed at
    // once). With the budget (4 MiB: 4 such bodies at once) and JSON
    // parsed under a budget of values, about 16 MB.
    assert!(peak <= 100 << 20, "RSS reached {:.0} MB during the flood", mb(peak));
    assert!(after.saturating_sub(before) <= 50 << 20, "RSS stayed {:.0} MB up after the flood", mb(after - before));
}
