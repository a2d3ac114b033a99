//! Clients that open connections and send their request heads slowly, or
//! never finish them: they must not keep anyone else from being served.

mod common;

use common::{raise_fd_limit, request, Client, TestServer};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const PARTIAL_HEAD: &[u8] = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ";

/// A connection that sent part of a request head and then stalls.
fn stalled(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(PARTIAL_HEAD).unwrap();
    stream
}

/// `GET /api/health` from `source` (a loopback address other than the
/// server's, as another client would be): the status and how long it took.
fn health_from(source: &str, addr: SocketAddr) -> (u16, Duration) {
    use socket2::{Domain, Socket, Type};
    let t = Instant::now();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let status = common::read_response(&mut stream).status;
    (status, t.elapsed())
}

#[test]
fn two_thousand_stalled_heads_do_not_keep_a_new_client_waiting() {
    raise_fd_limit(6000);
    // Every test client is 127.0.0.1: lift the per-address cap so that the
    // connection limit (1024, the default) is what the stalled heads meet.
    let s = TestServer::with(|c| c.server.max_connections_per_ip = 65_536);
    let started = Instant::now();
    let held: Vec<TcpStream> = (0..2000).map(|_| stalled(s.addr())).collect();
    assert!(started.elapsed() < Duration::from_secs(10), "opening took {:?}", started.elapsed());
    let t = Instant::now();
    let r = request(s.addr(), "GET", "/api/health", &[], b"");
    let waited = t.elapsed();
    eprintln!("2000 stalled heads opened in {:?}; a new client waited {waited:?}", t - started);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(waited < Duration::from_secs(1), "a new client waited {waited:?} behind 2000 stalled heads");
    drop(held);
}

#[test]
fn a_head_trickled_a_byte_at_a_time_gets_408_after_ten_seconds() {
    let s = TestServer::with(|c| c.server.keep_alive_secs = 60);
    let mut stream = stalled(s.addr());
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let t = Instant::now();
    let mut answer = Vec::new();
    // One byte every half second, for at most 15 s: the head never ends.
    while t.elapsed() < Duration::from_secs(15) {
        if stream.write_all(b"a").is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let took = t.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{took:?}: {answer:?}");
    assert!(took > Duration::from_secs(9) && took < Duration::from_secs(12), "{took:?}");
}

#[test]
fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let s = TestServer::with(|c| c.server.max_connections_per_ip = 8);
    let mut held: Vec<TcpStream> = (0..8).map(|_| stalled(s.addr())).collect();
    // The kernel accepts before the server does: wait until it holds all 8.
    s.wait_for_connections(8);
    // The 9th from the same address is closed at once, unanswered.
    let t = Instant::now();
    let mut ninth = TcpStream::connect(s.addr()).unwrap();
    ninth.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = ninth.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    match ninth.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the 9th connection was not closed: {other:?} {:?}", String::from_utf8_lossy(&buf)),
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // Another address is served as usual.
    let (status, took) = health_from("127.0.0.2", s.addr());
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    // And the held ones still are, once they finish their heads.
    held[0].write_all(b"1\r\nConnection: close\r\n\r\n").unwrap();
    held[0].set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(common::read_response(&mut held[0]).status, 200);
}

/// A connection that has sent nothing yet is on its way to a first
/// request, not idle: at an address's cap it is not closed to make room
/// for the next one, which is refused instead.
#[test]
fn new_connections_are_not_closed_for_room_as_idle_ones_are() {
    let s = TestServer::with(|c| c.server.max_connections_per_ip = 4);
    let _silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(s.addr()).unwrap()).collect();
    s.wait_for_connections(4);
    let mut fifth = TcpStream::connect(s.addr()).unwrap();
    fifth.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = fifth.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    match fifth.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the 5th connection was served: {other:?} {:?}", String::from_utf8_lossy(&buf)),
    }
    // A stop does not wait for them: they have begun no request.
    let t = Instant::now();
    let _s = s.restart();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}
