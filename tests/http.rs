//! The connection layer as clients meet it: keep-alive, bursts of
//! connections, pipelining, chunked and `Expect: 100-continue` bodies,
//! HTTP/1.0, HEAD, malformed and oversized heads, idle time-outs and a
//! stop that does not wait for idle connections.

mod common;

use common::{request, Client, TestServer};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One answer read off a connection that stays open: status, headers, body.
fn read_one(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, String) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status: u16 = line.split(' ').nth(1).unwrap_or_else(|| panic!("status line: {line:?}")).parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (status, headers, String::from_utf8(body).unwrap())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn connect(s: &TestServer) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(s.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

#[test]
fn a_burst_of_keep_alive_connections_is_served_at_once() {
    let s = TestServer::start();
    // 64 connections at once, as a browser farm or a load tester opens them,
    // more than the 8 threads kept waiting; each makes a request, idles on
    // keep-alive, and makes another.
    let started = Instant::now();
    let mut conns: Vec<_> = (0..64).map(|_| connect(&s)).collect();
    for (stream, _) in &mut conns {
        stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    for (_, reader) in &mut conns {
        let (status, headers, body) = read_one(reader);
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "connection"), None, "stays open");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "64 connections took {:?}", started.elapsed());
    for (stream, _) in &mut conns {
        stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    for (_, reader) in &mut conns {
        assert_eq!(read_one(reader).0, 200);
    }
    // A newcomer is not stuck behind the 64 idle ones.
    let t = Instant::now();
    assert_eq!(request(s.addr(), "GET", "/api/health", &[], b"").status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let s = TestServer::start();
    let (mut stream, mut reader) = connect(&s);
    let body = json!({"email": "nobody@example.com", "password": "wrong-password", "device_name": "t"}).to_string();
    let batch = format!(
        "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\
         GET /no/such/page HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n",
        body.len()
    );
    stream.write_all(batch.as_bytes()).unwrap();
    let statuses: Vec<u16> = (0..3).map(|_| read_one(&mut reader).0).collect();
    assert_eq!(statuses, [200, 422, 404]);
}

#[test]
fn chunked_and_expect_continue_bodies_are_read() {
    let s = TestServer::start();
    let body = json!({"name": "Chunky", "email": "chunky@example.com", "password": "password123",
                      "password_confirmation": "password123"})
    .to_string();
    let (first, rest) = body.split_at(10);
    let (mut stream, mut reader) = connect(&s);
    let raw = format!(
        "POST /api/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{first}\r\n{:x};ext=1\r\n{rest}\r\n0\r\nX-Trailer: t\r\n\r\n",
        first.len(),
        rest.len()
    );
    stream.write_all(raw.as_bytes()).unwrap();
    let (status, _, answer) = read_one(&mut reader);
    assert_eq!(status, 201, "{answer}");
    let user: i64 = s
        .sqlite()
        .query_row("SELECT count(*) FROM users WHERE email = 'chunky@example.com'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(user, 1);

    // Expect: 100-continue: the interim answer comes before the body is sent.
    let body = json!({"email": "chunky@example.com", "password": "password123", "device_name": "t"}).to_string();
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = String::new();
    reader.read_line(&mut interim).unwrap();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n");
    let mut blank = String::new();
    reader.read_line(&mut blank).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let (status, _, answer) = read_one(&mut reader);
    assert_eq!(status, 200, "{answer}");
    assert!(serde_json::from_str::<Value>(&answer).unwrap()["token"].is_string());
}

#[test]
fn a_body_over_the_limit_is_refused_without_being_read() {
    let s = TestServer::with(|c| c.server.max_body_bytes = 4096);
    // Declared too big, with Expect: no 100 Continue, a 413 and a close.
    let (mut stream, mut reader) = connect(&s);
    stream
        .write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n")
        .unwrap();
    let (status, headers, body) = read_one(&mut reader);
    assert_eq!(status, 413, "{body}");
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert!(body.contains("4096"), "{body}");
    // Chunked, growing past the limit: the same answer once the limit is passed.
    let (mut stream, mut reader) = connect(&s);
    stream.write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
    for _ in 0..2 {
        stream.write_all(chunk.as_bytes()).unwrap();
    }
    let (status, _, body) = read_one(&mut reader);
    assert_eq!(status, 413, "{body}");
    // A chunk size near 2^64 is just over the limit, not an overflow.
    let (mut stream, mut reader) = connect(&s);
    stream
        .write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc")
        .unwrap();
    let (status, _, body) = read_one(&mut reader);
    assert_eq!(status, 413, "{body}");
    assert_eq!(request(s.addr(), "GET", "/api/health", &[], b"").status, 200);
}

#[test]
fn broken_heads_get_a_json_error_and_a_close() {
    let s = TestServer::start();
    let big_header = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(100));
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(), 400),
        (big_header.into_bytes(), 431),
        (many_headers.into_bytes(), 431),
        (b"POST /api/login HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        (b"POST /api/login HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".to_vec(), 400),
        (b"POST /api/login HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(), 400),
        (b"POST /api/login HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 501),
        (b"POST /api/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), 400),
        (b"POST /api/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\n".to_vec(), 400),
        (b"POST /api/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 501),
        (b"POST /api/login HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400),
        ("\r\n".repeat(40).into_bytes(), 400),
    ];
    for (raw, expected) in cases {
        let (mut stream, mut reader) = connect(&s);
        let _ = stream.write_all(&raw);
        let (status, headers, body) = read_one(&mut reader);
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(60)]).to_string();
        assert_eq!(status, expected, "{shown:?}: {body}");
        assert_eq!(header(&headers, "connection"), Some("close"), "{shown:?}");
        let message = serde_json::from_str::<Value>(&body).unwrap()["message"].as_str().unwrap().to_string();
        assert!(!message.is_empty(), "{shown:?}");
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        assert!(rest.is_empty(), "nothing after the error: {rest:?}");
    }
    assert_eq!(request(s.addr(), "GET", "/api/health", &[], b"").status, 200);
}

#[test]
fn http_1_0_head_and_connection_close_are_honoured() {
    let s = TestServer::start();
    // HTTP/1.0 without keep-alive: answered, then closed.
    let (mut stream, mut reader) = connect(&s);
    stream.write_all(b"GET /api/health HTTP/1.0\r\n\r\n").unwrap();
    let (status, headers, _) = read_one(&mut reader);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(reader.read(&mut [0; 16]).unwrap(), 0, "closed");
    // HTTP/1.0 asking for keep-alive: kept.
    let (mut stream, mut reader) = connect(&s);
    for _ in 0..2 {
        stream.write_all(b"GET /api/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        let (status, headers, _) = read_one(&mut reader);
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "connection"), Some("keep-alive"));
    }
    // HEAD: the GET's headers, no body.
    stream.write_all(b"HEAD /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.contains("Content-Length: "), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "no body: {raw}");
    assert!(raw.contains("\r\nDate: "), "{raw}");
}

#[test]
fn idle_connections_are_closed_after_the_keep_alive_time() {
    let s = TestServer::with(|c| c.server.keep_alive_secs = 1);
    let (mut stream, mut reader) = connect(&s);
    stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_one(&mut reader).0, 200);
    let t = Instant::now();
    assert_eq!(reader.read(&mut [0; 16]).unwrap(), 0, "closed by the server");
    let idle = t.elapsed();
    assert!(idle >= Duration::from_millis(900) && idle < Duration::from_secs(4), "{idle:?}");
    // A request that stalls half-way gets 408.
    let (mut stream, mut reader) = connect(&s);
    stream.write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"em").unwrap();
    assert_eq!(read_one(&mut reader).0, 408);
}

#[test]
fn a_stop_does_not_wait_for_idle_connections() {
    let s = TestServer::with(|c| c.server.keep_alive_secs = 600);
    let mut idle: Vec<_> = (0..20).map(|_| connect(&s)).collect();
    for (stream, reader) in &mut idle {
        stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_one(reader).0, 200);
    }
    let addr = s.addr();
    let t = Instant::now();
    drop(s);
    for (_, reader) in &mut idle {
        assert_eq!(reader.read(&mut [0; 16]).unwrap_or(0), 0, "closed by the stop");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

#[test]
fn at_the_connection_limit_every_client_is_still_answered() {
    let s = TestServer::with(|c| c.server.max_connections = 16);
    // Three times the limit in keep-alive clients that each make a request
    // and then idle: every one is answered, and so is a newcomer.
    let mut held = Vec::new();
    for i in 0..48 {
        let (mut stream, mut reader) = connect(&s);
        stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_one(&mut reader).0, 200, "client {i}");
        held.push((stream, reader));
    }
    let t = Instant::now();
    assert_eq!(request(s.addr(), "GET", "/api/health", &[], b"").status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}
