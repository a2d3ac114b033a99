//! Test harness: the real server, in-process on an ephemeral port against a
//! temp SQLite file, or the built binary as a child process; and a small
//! HTTP/1.1 client over a plain TCP socket, so tests control every byte.

#![allow(dead_code)]

use apextrack::jobs::Jobs;
use apextrack::log::Log;
use apextrack::{http, App, Config};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

pub const PASSWORD: &str = "password123";

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads
/// the whole answer.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" || method == "PATCH" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before taking the whole body.
    let _ = stream.write_all(body);
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no complete response head: {:?}", String::from_utf8_lossy(raw));
    });
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("Transfer-Encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp { status, headers, body: String::from_utf8_lossy(&body).to_string() }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// Helpers shared by both kinds of server.
pub trait Client {
    fn addr(&self) -> SocketAddr;

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Accept", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        request(self.addr(), method, path, &headers, body.as_bytes())
    }

    fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("GET", path, token, None)
    }

    fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.call("POST", path, token, Some(body))
    }

    fn register(&self, email: &str) -> Resp {
        self.post(
            "/api/register",
            None,
            &json!({"name": "Test User", "email": email, "password": PASSWORD, "password_confirmation": PASSWORD}),
        )
    }

    fn login(&self, email: &str, password: &str) -> Resp {
        self.post("/api/login", None, &json!({"email": email, "password": password, "device_name": "tests"}))
    }

    /// Registers and logs in; returns the token.
    fn user_with_token(&self, email: &str) -> String {
        let r = self.register(email);
        assert_eq!(r.status, 201, "{}", r.body);
        let r = self.login(email, PASSWORD);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_string()
    }
}

/// The server in this process, with its background jobs (the outbox
/// sender), a clock the test can move and a log the test can read.
pub struct TestServer {
    pub app: Arc<App>,
    addr: SocketAddr,
    running: Option<(http::Running, Jobs)>,
    dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Connections the server has accepted and not yet closed.
    pub fn open_connections(&self) -> usize {
        self.running.as_ref().map_or(0, |(running, _)| running.open_connections())
    }

    /// Waits (up to 10 s) until the server holds at least `n` connections.
    pub fn wait_for_connections(&self, n: usize) {
        let t = std::time::Instant::now();
        while self.open_connections() < n && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(self.open_connections() >= n, "{} connections open, {n} expected", self.open_connections());
    }

    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.bind = "127.0.0.1:0".into();
        config.database.path = dir.path().join("apextrack.db");
        adjust(&mut config);
        TestServer::boot(config, dir)
    }

    fn boot(config: Config, dir: tempfile::TempDir) -> TestServer {
        let mut app = App::open(config).expect("app opens");
        app.core.log = Log::capturing();
        let app = Arc::new(app);
        let running = http::start(Arc::clone(&app)).expect("server starts");
        let jobs = Jobs::start(Arc::clone(&app)).expect("background threads start");
        TestServer { addr: running.addr(), app, running: Some((running, jobs)), dir: Some(dir) }
    }

    /// Stops this server gracefully and starts a new one on the same file.
    pub fn restart(mut self) -> TestServer {
        self.shutdown();
        let config = self.app.config.clone();
        TestServer::boot(config, self.dir.take().unwrap())
    }

    fn shutdown(&mut self) {
        if let Some((running, jobs)) = self.running.take() {
            running.stop();
            jobs.stop();
            let _ = self.app.db.checkpoint();
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.app.config.database.path.clone()
    }

    /// A separate connection to the server's file, as an operator would open.
    pub fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).unwrap()
    }

    pub fn log(&self) -> String {
        self.app.log.lines().join("\n")
    }

    /// The clickid of the newest stored click.
    pub fn last_clickid(&self) -> String {
        let (id, secret): (i64, Vec<u8>) = self
            .sqlite()
            .query_row("SELECT id, secret FROM clicks ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        apextrack::tracking::store::clickid(id, &secret)
    }
}

impl Client for TestServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_apextrack")
}

/// `apextrack --config <dir>/apextrack.toml ARGS`, with the database in `dir`.
pub fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    cli_with_stdin(dir, args, "")
}

pub fn cli_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(binary())
        .current_dir(dir)
        .arg("--config")
        .arg(dir.join("apextrack.toml"))
        .args(args)
        .env_remove("APEXTRACK_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Writes a config for the binary: the example file with the database in `dir`.
pub fn write_config(dir: &Path, extra: &str) {
    let text = format!("{}\n{extra}", apextrack::config::EXAMPLE)
        .replace("path = \"apextrack.db\"", &format!("path = {:?}", dir.join("apextrack.db").display().to_string()));
    std::fs::write(dir.join("apextrack.toml"), text).unwrap();
}

/// `apextrack serve` as a child process on an ephemeral port.
pub struct Proc {
    pub child: Child,
    addr: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(dir: &Path, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(binary());
        cmd.current_dir(dir)
            .arg("--config")
            .arg(dir.join("apextrack.toml"))
            .arg("serve")
            .env("APEXTRACK_SERVER_BIND", "127.0.0.1:0")
            .env_remove("APEXTRACK_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = rx.recv_timeout(Duration::from_secs(20)).expect("the server prints its address");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        Proc { child, addr, stderr: rx }
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the server did not exit within 10 s");
    }

    /// Everything printed on standard error so far.
    pub fn drain_stderr(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Client for Proc {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare address is a client too, for threads that share no server handle.
impl Client for SocketAddr {
    fn addr(&self) -> SocketAddr {
        *self
    }
}

/// A server that accepts connections and never answers (a dead traffic
/// source or webhook): its address, and the connections it holds.
pub fn silent_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<TcpStream>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    (addr, held)
}

/// A real HTTP server standing in for a mail provider: it records every
/// request and answers with the status the test sets; it can go down
/// (connections refused) and come back on the same port.
pub struct Recorder {
    addr: SocketAddr,
    state: Arc<RecorderState>,
    server: Option<(std::thread::JoinHandle<()>, Arc<std::sync::atomic::AtomicBool>)>,
}

#[derive(Default)]
struct RecorderState {
    requests: std::sync::Mutex<Vec<Recorded>>,
    status: std::sync::atomic::AtomicU16,
    /// The body answered; None: `{"recorded": <status>}`.
    body: std::sync::Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status the recorder answered.
    pub answered: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// A form-encoded body as (key, value) pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        self.body.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
    }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

impl Recorder {
    pub fn start() -> Recorder {
        let state = Arc::new(RecorderState::default());
        state.status.store(200, std::sync::atomic::Ordering::SeqCst);
        // A port below Linux's ephemeral range (32768+): nobody's `bind(:0)`
        // or outgoing connection can take it while the recorder is down.
        let mut recorder = Recorder { addr: "127.0.0.1:0".parse().unwrap(), state, server: None };
        for attempt in 0u64..200 {
            let port = 20_000 + (std::process::id() as u64 * 7919 + attempt * 104_729 + now_nanos()) % 12_000;
            recorder.addr = format!("127.0.0.1:{port}").parse().unwrap();
            if recorder.try_up() {
                return recorder;
            }
        }
        panic!("no free port for the recorder");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every request with `status` from now on.
    pub fn answer(&self, status: u16) {
        self.state.status.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// Answers every request with `status` and this JSON body from now on
    /// (a provider's own answer, such as Telegram's).
    pub fn answer_with(&self, status: u16, body: &str) {
        *self.state.body.lock().unwrap() = Some(body.to_string());
        self.answer(status);
    }

    /// Closes the port: connections are refused until [`Recorder::up`].
    pub fn down(&mut self) {
        if let Some((thread, stop)) = self.server.take() {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            thread.join().unwrap();
        }
    }

    /// Listens again on the same port (it was chosen outside the ephemeral range).
    pub fn up(&mut self) {
        for _ in 0..100 {
            if self.try_up() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the recorder could not listen on {} again", self.addr);
    }

    fn try_up(&mut self) -> bool {
        let state = Arc::clone(&self.state);
        let server = rouille::Server::new(self.addr, move |req| {
            let mut body = String::new();
            if let Some(mut data) = req.data() {
                let _ = data.read_to_string(&mut body);
            }
            let answered = state.status.load(std::sync::atomic::Ordering::SeqCst);
            state.requests.lock().unwrap().push(Recorded {
                method: req.method().to_string(),
                url: req.raw_url().to_string(),
                headers: req.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                body,
                answered,
            });
            let body = state.body.lock().unwrap().clone().unwrap_or_else(|| format!("{{\"recorded\": {answered}}}"));
            rouille::Response::from_data("application/json", body)
                .with_status_code(answered)
                // No keep-alive: when the recorder goes down, no pooled
                // connection outlives it.
                .with_unique_header("Connection", "close")
        });
        let Ok(server) = server else { return false };
        self.addr = server.server_addr();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stop_flag.load(std::sync::atomic::Ordering::SeqCst) {
                server.poll_timeout(Duration::from_millis(20));
            }
        });
        self.server = Some((thread, stop));
        true
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests were answered 2xx; returns those.
    pub fn wait_delivered(&self, n: usize) -> Vec<Recorded> {
        for _ in 0..400 {
            let ok: Vec<Recorded> = self.requests().into_iter().filter(|r| (200..300).contains(&r.answered)).collect();
            if ok.len() >= n {
                return ok;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{n} deliveries expected within 10 s; got {:?}", self.requests());
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.down();
    }
}

/// A server whose mail goes to `recorder` through the generic `http` provider.
pub fn server_with_mail(recorder: &Recorder, adjust: impl FnOnce(&mut Config)) -> TestServer {
    let endpoint = format!("{}/send", recorder.url());
    TestServer::with(|c| {
        c.mail.provider = "http".into();
        c.mail.endpoint = endpoint;
        c.mail.api_key = "test-mail-key".into();
        adjust(c);
    })
}

/// The first 6-digit number in a mail or text message.
pub fn six_digit_code(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a 6-digit code").to_string()
}

/// The 6-digit code and the link out of a verification mail's text.
pub fn code_and_link(mail_text: &str) -> (String, String) {
    let code = mail_text
        .split_whitespace()
        .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
        .expect("a 6-digit code in the mail")
        .to_string();
    let link = mail_text
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.contains("/api/email/verify/"))
        .expect("a verification link in the mail")
        .to_string();
    (code, link)
}

/// `http://host/path?query` → `/path?query`.
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".to_string(), |i| rest[i..].to_string())
}

/// Registers `email`, marks it verified, logs in: (user id, token).
pub fn verified_user(s: &TestServer, email: &str) -> (i64, String) {
    let token = s.user_with_token(email);
    let user = apextrack::accounts::find(&s.app, email).unwrap();
    apextrack::accounts::mark_verified(&s.app, user.id).unwrap();
    (user.id, token)
}

/// Writes a real MaxMind DB (format 2.0, IPv4, 24-bit records) mapping
/// each network to `{"country": {"iso_code": code}}`, as GeoIP2 Country has.
pub fn write_mmdb(path: &Path, networks: &[(&str, u8, &str)]) {
    #[derive(Clone, Copy)]
    enum Rec {
        Empty,
        Node(u32),
        Data(u32),
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 29);
        out.push(0x40 | s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    fn uint(out: &mut Vec<u8>, type_id: u8, value: u64) {
        let bytes: Vec<u8> = value.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        if type_id <= 7 {
            out.push((type_id << 5) | bytes.len() as u8);
        } else {
            out.push(bytes.len() as u8);
            out.push(type_id - 7);
        }
        out.extend_from_slice(&bytes);
    }
    let mut data = Vec::new();
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty, Rec::Empty]];
    for (net, len, code) in networks {
        let offset = data.len() as u32;
        data.push(0xE1);
        string(&mut data, "country");
        data.push(0xE1);
        string(&mut data, "iso_code");
        string(&mut data, code);
        let ip = u32::from(net.parse::<std::net::Ipv4Addr>().unwrap());
        let mut node = 0usize;
        for i in 0..*len {
            let bit = ((ip >> (31 - i)) & 1) as usize;
            if i == len - 1 {
                nodes[node][bit] = Rec::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n as usize,
                    _ => {
                        nodes.push([Rec::Empty, Rec::Empty]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Rec::Node(n as u32);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len() as u32;
    let mut file = Vec::new();
    for pair in &nodes {
        for rec in pair {
            let v = match *rec {
                Rec::Empty => count,
                Rec::Node(n) => n,
                Rec::Data(off) => count + 16 + off,
            };
            file.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    file.extend_from_slice(&[0u8; 16]);
    file.extend_from_slice(&data);
    file.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let mut meta = vec![0xE9];
    string(&mut meta, "node_count");
    uint(&mut meta, 6, u64::from(count));
    string(&mut meta, "record_size");
    uint(&mut meta, 5, 24);
    string(&mut meta, "ip_version");
    uint(&mut meta, 5, 4);
    string(&mut meta, "database_type");
    string(&mut meta, "GeoIP2-Country");
    string(&mut meta, "languages");
    meta.extend_from_slice(&[0x00, 0x04]); // empty array (extended type 11)
    string(&mut meta, "binary_format_major_version");
    uint(&mut meta, 5, 2);
    string(&mut meta, "binary_format_minor_version");
    uint(&mut meta, 5, 0);
    string(&mut meta, "build_epoch");
    uint(&mut meta, 9, 1_700_000_000);
    string(&mut meta, "description");
    meta.push(0xE0);
    file.extend_from_slice(&meta);
    std::fs::write(path, file).unwrap();
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64)
}

/// Raises this process's open-file limit to `want` (or the hard limit, if
/// lower), for tests that hold thousands of connections.
pub fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
