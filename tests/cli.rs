//! The admin command line, run as the built binary against a temp config
//! and database.

mod common;

use common::{cli, cli_with_stdin, write_config, Client, Proc, PASSWORD};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A mistake in what was asked: exit 2 and the real reason, never an
/// "internal error".
fn fails(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("internal error"), "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{stderr:?} lacks {needle:?}");
}

fn json_out(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    dir
}

fn create(dir: &Path, email: &str) {
    ok(&cli(dir, &["user", "create", "--name", "Cli User", "--email", email, "--password", PASSWORD]));
}

/// Logs in through the library on the same file, as the server would.
fn login_token(dir: &Path, email: &str) -> String {
    let config = apextrack::Config::load(Some(&dir.join("apextrack.toml")), Vec::new()).unwrap();
    let app = apextrack::App::open(config).unwrap();
    apextrack::accounts::login(&app, email, PASSWORD, None, "cli-test", "127.0.0.1".parse().unwrap()).unwrap().1
}

#[test]
fn init_writes_a_working_config_and_the_database_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path(), &["init"]);
    let stdout = ok(&out);
    assert!(stdout.contains(&format!("schema version {}", apextrack::db::migrate::latest_version())), "{stdout}");
    let written = std::fs::read_to_string(dir.path().join("apextrack.toml")).unwrap();
    assert_eq!(written, apextrack::config::EXAMPLE);
    assert!(dir.path().join("apextrack.db").exists());
    fails(&cli(dir.path(), &["init"]), "already exists");
    ok(&cli(dir.path(), &["init", "--force"]));
}

#[test]
fn user_create_list_show_verify_and_delete() {
    let dir = setup();
    let d = dir.path();
    create(d, "one@example.com");
    let out = cli_with_stdin(
        d,
        &[
            "user",
            "create",
            "--name",
            "Two",
            "--email",
            "two@example.com",
            "--password-stdin",
            "--verified",
            "--language",
            "en",
        ],
        "another-password\n",
    );
    assert!(ok(&out).contains("created user 2 <two@example.com>"));

    let list = json_out(&cli(d, &["user", "list", "--json"]));
    let emails: Vec<&str> = list.as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["one@example.com", "two@example.com"]);
    assert_eq!(list[1]["language"], "en");
    assert!(list[1]["email_verified_at"].is_string());
    assert!(list[0]["email_verified_at"].is_null());
    let table = ok(&cli(d, &["user", "list"]));
    assert!(table.lines().count() == 3 && table.contains("two@example.com"), "{table}");

    ok(&cli(d, &["user", "verify", "one@example.com"]));
    let shown = json_out(&cli(d, &["user", "show", "1", "--json"]));
    assert!(shown["email_verified_at"].is_string());
    assert_eq!(json_out(&cli(d, &["user", "show", "ONE@example.com", "--json"]))["id"], 1);

    ok(&cli(d, &["user", "delete", "two@example.com"]));
    fails(&cli(d, &["user", "show", "two@example.com"]), "no user with id or email \"two@example.com\"");
    assert_eq!(json_out(&cli(d, &["user", "list", "--json"])).as_array().unwrap().len(), 1);
}

#[test]
fn bad_input_gets_a_clear_error_and_a_non_zero_exit() {
    let dir = setup();
    let d = dir.path();
    create(d, "taken@example.com");
    let create_with = |email: &str, password: &str| {
        cli(d, &["user", "create", "--name", "X", "--email", email, "--password", password])
    };
    fails(&create_with("not-an-email", PASSWORD), "email: The email must be a valid email address.");
    fails(&create_with("new@example.com", "short"), "password: The password must be at least 8 characters.");
    fails(&create_with("TAKEN@example.com", PASSWORD), "email: The email has already been taken.");
    fails(&cli(d, &["user", "create", "--name", "X", "--email", "a@b.co"]), "--password");
    fails(&cli(d, &["user", "verify", "999"]), "no user with id or email \"999\"");
    fails(&cli(d, &["user", "set-status", "taken@example.com", "banished"]), "active, suspended, unpaid");
    fails(&cli(d, &["user", "set-password", "taken@example.com", "--password", "short"]), "at least 8 characters");
    fails(&cli(d, &["token", "revoke", "12345"]), "no token with id 12345");
    fails(
        &cli(d, &["user", "create", "--name", "X", "--email", "a@b.co", "--password", PASSWORD, "--language", "fr"]),
        "fr",
    );
    // clap's own usage errors exit 2.
    assert_eq!(cli(d, &["user", "frobnicate"]).status.code(), Some(2));
    // A broken config names the key.
    let config = std::fs::read_to_string(d.join("apextrack.toml")).unwrap();
    std::fs::write(d.join("apextrack.toml"), config.replace("login_max_attempts = 5", "login_max_attempts = 0"))
        .unwrap();
    fails(&cli(d, &["user", "list"]), "security.login_max_attempts = 0");
}

#[test]
fn set_password_and_set_status_take_effect_and_revoke_tokens() {
    let dir = setup();
    let d = dir.path();
    create(d, "pw@example.com");
    let token = login_token(d, "pw@example.com");
    let listed = json_out(&cli(d, &["token", "list", "--json"]));
    assert_eq!(listed[0]["name"], "cli-test");
    assert_eq!(listed[0]["id"].to_string(), token.split('|').next().unwrap());
    assert!(!listed.to_string().contains(token.split('|').nth(1).unwrap()), "the secret is never shown again");

    ok(&cli_with_stdin(d, &["user", "set-password", "pw@example.com", "--password-stdin"], "brand-new-password\n"));
    assert!(json_out(&cli(d, &["token", "list", "--json"])).as_array().unwrap().is_empty());
    let conn = rusqlite::Connection::open(d.join("apextrack.db")).unwrap();
    let hash: String = conn.query_row("SELECT password_hash FROM users", [], |r| r.get(0)).unwrap();
    assert!(apextrack::crypto::verify_password("brand-new-password", &hash));
    assert!(!apextrack::crypto::verify_password(PASSWORD, &hash));

    ok(&cli(d, &["user", "set-status", "1", "suspended"]));
    assert_eq!(json_out(&cli(d, &["user", "show", "1", "--json"]))["account_status"], "suspended");
}

#[test]
fn token_list_and_revoke() {
    let dir = setup();
    let d = dir.path();
    create(d, "a@example.com");
    create(d, "b@example.com");
    let a1 = login_token(d, "a@example.com");
    let _a2 = login_token(d, "a@example.com");
    let _b1 = login_token(d, "b@example.com");
    let only_a = json_out(&cli(d, &["token", "list", "--user", "a@example.com", "--json"]));
    assert_eq!(only_a.as_array().unwrap().len(), 2);
    assert!(ok(&cli(d, &["token", "list"])).contains("cli-test"));

    let a1_id = a1.split('|').next().unwrap();
    ok(&cli(d, &["token", "revoke", a1_id]));
    let left: Vec<i64> = json_out(&cli(d, &["token", "list", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(left, [3, 2]);
    assert!(ok(&cli(d, &["token", "revoke", "--user", "b@example.com"])).contains("revoked 1 token(s)"));
    assert_eq!(json_out(&cli(d, &["token", "list", "--json"])).as_array().unwrap().len(), 1);
}

/// The README's restore drill: back up while running, stop, put the
/// snapshot in place of the file, start again: the data is back.
#[test]
fn the_restore_drill_brings_the_data_back() {
    let dir = setup();
    let d = dir.path();
    let mut server = Proc::spawn(d, &[]);
    assert_eq!(server.register("before@example.com").status, 201);
    ok(&cli(d, &["backup", "snapshot.db"]));
    assert_eq!(server.register("after@example.com").status, 201);
    server.signal("TERM");
    assert_eq!(server.wait(), Some(0));
    // Disaster: the live file is lost.
    std::fs::remove_file(d.join("apextrack.db")).unwrap();
    let _ = std::fs::remove_file(d.join("apextrack.db-wal"));
    let _ = std::fs::remove_file(d.join("apextrack.db-shm"));
    std::fs::copy(d.join("snapshot.db"), d.join("apextrack.db")).unwrap();
    let server = Proc::spawn(d, &[]);
    assert_eq!(server.login("before@example.com", PASSWORD).status, 200, "the snapshot's account is back");
    assert_eq!(server.login("after@example.com", PASSWORD).status, 422, "what came after the snapshot is not");
    let listed = json_out(&cli(d, &["user", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn backup_while_the_server_is_writing_is_consistent_and_complete() {
    let dir = setup();
    let d = dir.path();
    let server = Proc::spawn(d, &[]);
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let email = format!("w{w}-{i}@example.com");
                    if addr.register(&email).status == 201 {
                        acknowledged.lock().unwrap().push(email);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let out = cli(d, &["backup", "snapshot.db"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(ok(&out).contains("backed up"));
    assert!(before.len() >= 3, "the writers got going: {}", before.len());

    let copy = rusqlite::Connection::open(d.join("snapshot.db")).unwrap();
    let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    for email in &before {
        let found: bool =
            copy.query_row("SELECT EXISTS (SELECT 1 FROM users WHERE email = ?1)", [email], |r| r.get(0)).unwrap();
        assert!(found, "{email} was acknowledged before the backup began but is missing");
    }
    let version: u32 = copy.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, apextrack::db::migrate::latest_version());
    fails(&cli(d, &["backup", "snapshot.db"]), "already exists");
}

#[test]
fn the_readmes_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: skipped");
        return;
    };
    assert!(found.status.success());
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- systemd unit -->\n```ini\n").expect("the unit in README")
        + "<!-- systemd unit -->\n```ini\n".len();
    let unit = &readme[start..start + readme[start..].find("```").unwrap()];
    assert!(unit.contains("StateDirectory=apextrack") && unit.contains("Restart=on-failure"));
    for hardening in ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    // Verified against the binary just built, where the unit names /usr/local/bin.
    let unit = unit.replace("/usr/local/bin/apextrack", env!("CARGO_BIN_EXE_apextrack"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apextrack.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
