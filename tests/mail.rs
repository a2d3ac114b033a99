//! Mail delivery: each provider's request as a real local HTTP server
//! receives it, and the outbox through outages and a restart.

mod common;

use apextrack::config;
use apextrack::i18n::Lang;
use apextrack::log::Log;
use apextrack::mail;
use common::{cli, server_with_mail, write_config, Client, Recorder, TestServer};
use serde_json::json;

const HOUR: i64 = 3_600_000_000;

fn provider(name: &str, recorder: &Recorder) -> config::Mail {
    config::Mail {
        provider: name.into(),
        endpoint: recorder.url(),
        api_key: "key-123".into(),
        domain: "mg.example.com".into(),
        from: "Apex Track <noreply@example.com>".into(),
    }
}

#[test]
fn each_provider_sends_its_documented_request() {
    let recorder = Recorder::start();
    let message = mail::verification(Lang::En, "to@example.com", "Ann", "123456", "http://x/v?a=1&b=2", 60);
    let log = Log::capturing();
    for name in ["http", "postmark", "sendgrid", "mailgun", "resend", "brevo"] {
        let mut cfg = provider(name, &recorder);
        if name == "http" {
            cfg.endpoint = format!("{}/hook", recorder.url());
        }
        let delivery = mail::send(&cfg, &log, &message, "idem-1").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(delivery.status, 200);
    }
    let got = recorder.requests();
    assert_eq!(got.len(), 6);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("Idempotency-Key"), Some("idem-1"));
    }
    let (http, postmark, sendgrid, mailgun, resend, brevo) = (&got[0], &got[1], &got[2], &got[3], &got[4], &got[5]);

    assert_eq!(http.url, "/hook");
    assert_eq!(http.header("Authorization"), Some("Bearer key-123"));
    assert_eq!(
        http.json(),
        json!({"from": "Apex Track <noreply@example.com>", "to": "to@example.com", "subject": message.subject,
               "text": message.text, "html": message.html})
    );

    assert_eq!(postmark.url, "/email");
    assert_eq!(postmark.header("X-Postmark-Server-Token"), Some("key-123"));
    let body = postmark.json();
    assert_eq!(body["From"], "Apex Track <noreply@example.com>");
    assert_eq!(body["To"], "to@example.com");
    assert_eq!(body["Subject"], "Verify your email address");
    assert_eq!(body["TextBody"], message.text);
    assert_eq!(body["HtmlBody"], message.html);
    assert_eq!(body["MessageStream"], "outbound");

    assert_eq!(sendgrid.url, "/v3/mail/send");
    assert_eq!(sendgrid.header("Authorization"), Some("Bearer key-123"));
    let body = sendgrid.json();
    assert_eq!(body["personalizations"], json!([{"to": [{"email": "to@example.com"}]}]));
    assert_eq!(body["from"], json!({"email": "noreply@example.com", "name": "Apex Track"}));
    assert_eq!(body["content"][0], json!({"type": "text/plain", "value": message.text}));
    assert_eq!(body["content"][1], json!({"type": "text/html", "value": message.html}));

    assert_eq!(mailgun.url, "/v3/mg.example.com/messages");
    // Basic base64("api:key-123")
    assert_eq!(mailgun.header("Authorization"), Some("Basic YXBpOmtleS0xMjM="));
    assert!(mailgun.header("Content-Type").unwrap().starts_with("application/x-www-form-urlencoded"));
    let form = mailgun.form();
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(field("from"), "Apex Track <noreply@example.com>");
    assert_eq!(field("to"), "to@example.com");
    assert_eq!(field("subject"), message.subject);
    assert_eq!(field("text"), message.text);
    assert_eq!(field("html"), message.html);

    assert_eq!(resend.url, "/emails");
    assert_eq!(resend.header("Authorization"), Some("Bearer key-123"));
    let body = resend.json();
    assert_eq!(body["to"], json!(["to@example.com"]));
    assert_eq!(body["from"], "Apex Track <noreply@example.com>");
    assert_eq!((body["text"].as_str(), body["html"].as_str()), (Some(&*message.text), Some(&*message.html)));

    assert_eq!(brevo.url, "/v3/smtp/email");
    assert_eq!(brevo.header("api-key"), Some("key-123"));
    let body = brevo.json();
    assert_eq!(body["sender"], json!({"email": "noreply@example.com", "name": "Apex Track"}));
    assert_eq!(body["to"], json!([{"email": "to@example.com"}]));
    assert_eq!(body["textContent"], message.text);
    assert_eq!(body["htmlContent"], message.html);
}

#[test]
fn a_provider_error_is_reported_with_its_status() {
    let recorder = Recorder::start();
    recorder.answer(401);
    let e = mail::send(&provider("postmark", &recorder), &Log::capturing(), &mail::test(Lang::Id, "a@b.co", "x"), "k")
        .unwrap_err();
    assert!(e.starts_with("HTTP 401"), "{e}");
}

fn outbox_rows(s: &TestServer) -> Vec<(String, String, u32)> {
    s.sqlite()
        .prepare("SELECT recipient, status, attempts FROM outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Waits until every queued mail has had at least `n` tries.
fn wait_attempts(s: &TestServer, n: u32) {
    for _ in 0..400 {
        if outbox_rows(s).iter().all(|(_, _, a)| *a >= n) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("not every mail reached {n} tries: {:?}", outbox_rows(s));
}

#[test]
fn an_outage_and_a_restart_lose_nothing_and_deliver_each_mail_once() {
    let mut recorder = Recorder::start();
    recorder.answer(500);
    let mut s = server_with_mail(&recorder, |_| {});
    let emails = ["o1@example.com", "o2@example.com", "o3@example.com"];
    for email in emails {
        assert_eq!(s.register(email).status, 201, "an outage does not fail a registration");
    }
    wait_attempts(&s, 1);
    let last_error: String = s.sqlite().query_row("SELECT last_error FROM outbox LIMIT 1", [], |r| r.get(0)).unwrap();
    assert!(last_error.starts_with("HTTP 500"), "{last_error}");

    // Connections refused.
    recorder.down();
    s.app.clock.shift(HOUR);
    s.app.outbox_wake.notify();
    wait_attempts(&s, 2);
    assert!(outbox_rows(&s).iter().all(|(_, status, _)| status == "pending"));

    // apextrack restarts in the middle of the outage; the provider recovers.
    s = s.restart();
    recorder.up();
    recorder.answer(200);
    // The new process has its own clock: move it past the old one's retries.
    s.app.clock.shift(3 * HOUR);
    s.app.outbox_wake.notify();
    let delivered = recorder.wait_delivered(3);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let delivered_late: Vec<_> = recorder.requests().into_iter().filter(|r| r.answered == 200).collect();
    assert_eq!(delivered_late.len(), delivered.len(), "nothing is delivered twice");
    let mut recipients: Vec<String> = delivered.iter().map(|r| r.json()["to"].as_str().unwrap().to_string()).collect();
    recipients.sort();
    assert_eq!(recipients, emails);
    assert!(outbox_rows(&s).iter().all(|(_, status, _)| status == "sent"), "{:?}", outbox_rows(&s));
}

#[test]
fn mail_that_keeps_failing_is_marked_failed_and_can_be_retried_from_the_cli() {
    let recorder = Recorder::start();
    recorder.answer(503);
    let s = server_with_mail(&recorder, |_| {});
    assert_eq!(s.register("fail@example.com").status, 201);
    for n in 1..=apextrack::outbox::MAX_ATTEMPTS {
        wait_attempts(&s, n);
        s.app.clock.shift(HOUR);
        s.app.outbox_wake.notify();
    }
    assert_eq!(
        outbox_rows(&s),
        [("fail@example.com".to_string(), "failed".to_string(), apextrack::outbox::MAX_ATTEMPTS)]
    );

    // The CLI, on the same file.
    let dir = s.dir().to_path_buf();
    write_config(&dir, "");
    let listed = cli(&dir, &["outbox", "list", "--status", "failed", "--json"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["to"], "fail@example.com");
    assert!(listed[0]["last_error"].as_str().unwrap().starts_with("HTTP 503"));
    recorder.answer(200);
    let retried = cli(&dir, &["outbox", "retry"]);
    assert!(String::from_utf8_lossy(&retried.stdout).contains("queued 1 failed mail(s) again"));
    let delivered = recorder.wait_delivered(1);
    assert_eq!(delivered[0].json()["to"], "fail@example.com");
    let bad = cli(&dir, &["outbox", "retry", "999"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn mail_test_reports_the_providers_answer() {
    let recorder = Recorder::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "");
    let config = std::fs::read_to_string(d.join("apextrack.toml")).unwrap().replace(
        "provider = \"log\"\n# URL for the \"http\" provider.\nendpoint = \"\"",
        &format!("provider = \"http\"\n# URL for the \"http\" provider.\nendpoint = \"{}/hook\"", recorder.url()),
    );
    std::fs::write(d.join("apextrack.toml"), config).unwrap();
    let out = cli(d, &["mail", "test", "ops@example.com", "--language", "en"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("the provider answered 200"), "{stdout}");
    let sent = recorder.requests();
    assert_eq!(sent[0].json()["to"], "ops@example.com");
    assert_eq!(sent[0].json()["subject"], "apextrack test email");

    recorder.answer(422);
    let out = cli(d, &["mail", "test", "ops@example.com"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sending through http failed: HTTP 422"));
    let out = cli(d, &["mail", "test", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
}
