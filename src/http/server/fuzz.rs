//! Randomised tests of the request reader over bytes in memory: heads and
//! bodies (by length and chunked), well-formed and mangled, arriving in
//! pieces of random sizes. Seeded and bounded: `FUZZ_CASES` cases per
//! property (default 5000, about 7 s in a debug build), from `FUZZ_SEED`
//! (default: a fixed one), e.g. `FUZZ_CASES=100000 FUZZ_SEED=$RANDOM
//! cargo test --lib fuzz`.
//!
//! Properties: reading never panics; the head never takes more than
//! `MAX_HEAD` bytes of input nor more than `MAX_HEADERS` headers; no body
//! is over its limit or holds a share of the budget other than its size;
//! and a well-formed request reads back as it was built.

use super::budget::Budget;
use super::conn::{Conn, Head, Source, Stop};
use super::registry::Phase;
use super::{MAX_HEAD, MAX_HEADERS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Bytes in memory, handed out at most `step` at a time.
struct Bytes<'a> {
    input: &'a [u8],
    pos: usize,
    step: usize,
    written: Vec<u8>,
}

impl Read for Bytes<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.step).min(self.input.len() - self.pos);
        out[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Bytes<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Bytes<'_> {}

fn cases() -> u64 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000)
}

fn rng() -> StdRng {
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_a9e7);
    StdRng::seed_from_u64(seed)
}

/// A request as the generator built it.
#[derive(Debug, Clone, PartialEq)]
struct Built {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

const TOKEN: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'+^`|#$%&";

fn word(rng: &mut StdRng, alphabet: &[u8], len: std::ops::RangeInclusive<usize>) -> String {
    let n = rng.random_range(len);
    (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

/// A well-formed request and its bytes: random method, path, headers and
/// body, framed by `Content-Length` or chunked (random chunks, extensions
/// and trailers), after a few empty lines now and then.
fn build(rng: &mut StdRng, max_body: usize) -> (Built, Vec<u8>) {
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let method = methods[rng.random_range(0..methods.len())].to_string();
    let path_chars = b"abcdefghijklmnopqrstuvwxyz0123456789/-._~%=&?";
    let target = format!("/{}", word(rng, path_chars, 0..=60));
    let mut headers = Vec::new();
    for _ in 0..rng.random_range(0..20) {
        let name = format!("X-{}", word(rng, TOKEN, 1..=20));
        let value_chars = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,;=/\"()";
        let value = word(rng, value_chars, 0..=80).trim().to_string();
        headers.push((name, value));
    }
    let body: Vec<u8> = (0..rng.random_range(0..=max_body.min(3000))).map(|_| rng.random()).collect();
    let chunked = rng.random_bool(0.4);
    if chunked {
        headers.push(("Transfer-Encoding".into(), "chunked".into()));
    } else if !body.is_empty() || rng.random_bool(0.5) {
        headers.push(("Content-Length".into(), body.len().to_string()));
    }
    let mut raw = "\r\n".repeat(if rng.random_bool(0.1) { rng.random_range(1..=8) } else { 0 }).into_bytes();
    raw.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
    for (name, value) in &headers {
        raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    if chunked {
        let mut rest = &body[..];
        while !rest.is_empty() {
            let size = rng.random_range(1..=rest.len().min(700));
            let ext = if rng.random_bool(0.2) { ";ext=1" } else { "" };
            raw.extend_from_slice(format!("{size:x}{ext}\r\n").as_bytes());
            raw.extend_from_slice(&rest[..size]);
            raw.extend_from_slice(b"\r\n");
            rest = &rest[size..];
        }
        raw.extend_from_slice(b"0\r\n");
        if rng.random_bool(0.3) {
            raw.extend_from_slice(b"X-Trailer: t\r\n");
        }
        raw.extend_from_slice(b"\r\n");
    } else {
        raw.extend_from_slice(&body);
    }
    (Built { method, target, headers, body }, raw)
}

/// Damages a request: flips, inserts, deletes or repeats a few bytes.
fn mangle(rng: &mut StdRng, mut raw: Vec<u8>) -> Vec<u8> {
    let tricky = b"\r\n:; 0123456789abcdefxX-\t\0\x7f\xff";
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=raw.len());
        match rng.random_range(0..4) {
            0 if at < raw.len() => raw[at] = tricky[rng.random_range(0..tricky.len())],
            1 => raw.insert(at, tricky[rng.random_range(0..tricky.len())]),
            2 if at < raw.len() => {
                raw.remove(at);
            }
            _ => {
                let piece = raw[at..].iter().take(rng.random_range(0..40)).copied().collect::<Vec<_>>();
                let times = rng.random_range(1..=500);
                raw.splice(at..at, piece.iter().copied().cycle().take(piece.len() * times));
            }
        }
    }
    raw
}

/// What reading one request off `input` gave.
struct Outcome {
    head: Result<Option<Head>, Stop>,
    body: Option<Result<(Vec<u8>, bool), Stop>>,
    /// Input bytes taken by the time the head was returned.
    read_for_head: usize,
}

/// Reads requests off `input` (up to `max` of them), `step` bytes at a
/// time at most, checking the limits on each.
fn read_all(input: &[u8], step: usize, max_body: u64, budget: &Budget, max: usize) -> Vec<Outcome> {
    let mut buf = vec![0; MAX_HEAD];
    let phase = Phase::new(Instant::now());
    let source = Bytes { input, pos: 0, step, written: Vec::new() };
    let mut conn = Conn::new(source, &mut buf, &phase, Duration::from_secs(15));
    let mut outcomes = Vec::new();
    for _ in 0..max {
        conn.next_request();
        let before = conn.stream.pos;
        let head = conn.read_head();
        let read_for_head = conn.stream.pos - before;
        // Blank lines (at most 16) are dropped from the buffer, so the
        // input taken can pass the buffer's size by that much.
        assert!(read_for_head <= 2 * MAX_HEAD + 17, "{read_for_head} bytes read for a head");
        let body = match &head {
            Ok(Some(head)) => {
                assert!(head.headers.len() <= MAX_HEADERS);
                Some(conn.read_body(head, max_body, budget).map(|(body, lease, complete)| {
                    assert!(body.len() as u64 <= max_body, "a body of {} over {max_body}", body.len());
                    if complete {
                        assert!(budget.held() >= body.len() as u64, "the body holds its share");
                    }
                    drop(lease);
                    (body, complete)
                }))
            }
            _ => None,
        };
        assert_eq!(budget.held(), 0, "every share given back");
        let done = !matches!(body, Some(Ok((_, true))));
        outcomes.push(Outcome { head, body, read_for_head });
        if done {
            break;
        }
    }
    outcomes
}

#[test]
fn well_formed_requests_read_back_as_built_in_any_pieces() {
    let mut rng = rng();
    for case in 0..cases() {
        let max_body = 4096;
        let requests: Vec<(Built, Vec<u8>)> = (0..rng.random_range(1..=3)).map(|_| build(&mut rng, max_body)).collect();
        let input: Vec<u8> = requests.iter().flat_map(|(_, raw)| raw.iter().copied()).collect();
        let step = if rng.random_bool(0.3) { rng.random_range(1..=8) } else { rng.random_range(1..=input.len()) };
        let budget = Budget::new(1 << 20);
        let outcomes = read_all(&input, step, max_body as u64, &budget, requests.len());
        assert_eq!(outcomes.len(), requests.len(), "case {case}");
        for ((built, raw), outcome) in requests.iter().zip(outcomes) {
            let shown = String::from_utf8_lossy(&raw[..raw.len().min(300)]).to_string();
            let Ok(Some(head)) = outcome.head else { panic!("case {case}: no head from {shown:?}") };
            let Some(Ok((body, true))) = outcome.body else { panic!("case {case}: no body from {shown:?}") };
            let got = Built { method: head.method, target: head.target, headers: head.headers, body };
            assert_eq!(&got, built, "case {case}, step {step}: {shown:?}");
            assert!(head.http11);
        }
    }
}

#[test]
fn mangled_and_random_bytes_never_panic_nor_pass_the_limits() {
    let mut rng = rng();
    for case in 0..cases() {
        let max_body = rng.random_range(0..=2048);
        let input = if rng.random_bool(0.2) {
            let alphabet = b"GET /HTTP1.\r\n:;0123456789abcdefTransfer-Encoding: chunkedContent-Length";
            (0..rng.random_range(0..2000)).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
        } else {
            let (_, raw) = build(&mut rng, 4096);
            mangle(&mut rng, raw)
        };
        let step = rng.random_range(1..=input.len().max(1));
        let budget = Budget::new(rng.random_range(0..=4096));
        let outcomes = read_all(&input, step, max_body, &budget, 3);
        for outcome in outcomes {
            if let Err(Stop::Reject(status, detail)) = outcome.head.as_ref().map(|_| ()) {
                assert!([400, 408, 413, 431, 501].contains(status), "case {case}: {status} {detail}");
            }
            if let Some(Err(Stop::Reject(status, detail))) = &outcome.body {
                assert!([400, 413, 431, 501, 503].contains(status), "case {case}: {status} {detail}");
            }
            assert!(outcome.read_for_head <= input.len());
        }
    }
}
