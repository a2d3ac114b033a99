//! `apextrack mail test`, `outbox …` and `blacklist …`.

use super::{parse_language, print_json, Failure};
use crate::app::App;
use crate::clock;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub(super) enum BlacklistCommand {
    /// List blacklisted numbers (for everyone, or for the account that guessed their codes)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove one number (E.164, e.g. +628123456789), or all with --all
    Clear {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        phone: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum MailCommand {
    /// Send one test mail now through the configured provider and show its answer
    Test {
        address: String,
        /// Language of the mail: id or en [default: server.default_language]
        #[arg(long)]
        language: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum OutboxCommand {
    /// List queued, sent and failed mail, newest first
    List {
        /// Only this status: pending, sent or failed
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Queue failed mail again (all failed mail, or the given ids)
    Retry { ids: Vec<i64> },
}

pub(super) fn mail_test(app: &App, address: &str, language: Option<String>) -> Result<(), Failure> {
    if !crate::text::is_email(address) {
        return Err(Failure::input(format!("{address:?} is not an email address")));
    }
    let lang = parse_language(app, language)?;
    let mail = crate::mail::test(lang, address, app.config.app_url());
    let key = format!("apextrack-test-{}", crate::crypto::random_alphanumeric(12));
    let provider = &app.config.mail.provider;
    match crate::mail::send(&app.config.mail, &app.log, &mail, &key) {
        Ok(delivery) => {
            println!("sent through {provider}: the provider answered {} {}", delivery.status, delivery.response);
            Ok(())
        }
        Err(reason) => Err(Failure::new(format!("sending through {provider} failed: {reason}"))),
    }
}

pub(super) fn outbox(app: &App, cmd: OutboxCommand) -> Result<(), Failure> {
    match cmd {
        OutboxCommand::List { status, json } => {
            if let Some(s) = status.as_deref() {
                if !["pending", "sent", "failed"].contains(&s) {
                    return Err(Failure::input(format!("unknown status {s:?}: use pending, sent or failed")));
                }
            }
            let entries = app.db.read(|c| Ok(crate::outbox::list(c, status.as_deref())?))?;
            if json {
                print_json(&Value::Array(entries.iter().map(outbox_json).collect()));
            } else {
                println!(
                    "{:<6} {:<8} {:<5} {:<28} {:<32} SUBJECT / LAST ERROR",
                    "ID", "STATUS", "TRIES", "CREATED", "TO"
                );
                for e in &entries {
                    println!(
                        "{:<6} {:<8} {:<5} {:<28} {:<32} {}{}",
                        e.id,
                        e.status,
                        e.attempts,
                        clock::format(e.created_at),
                        e.recipient,
                        e.subject,
                        e.last_error.as_ref().map_or(String::new(), |err| format!(" / {err}"))
                    );
                }
            }
        }
        OutboxCommand::Retry { ids } => {
            let now = app.clock.now();
            let n = app.db.write(|tx| Ok(crate::outbox::retry(tx, &ids, now)?))?;
            if !ids.is_empty() && n < ids.len() {
                return Err(Failure::input(format!(
                    "queued {n} of {} mail(s): the others are not failed mail",
                    ids.len()
                )));
            }
            println!("queued {n} failed mail(s) again; a running server sends them within a second");
        }
    }
    Ok(())
}

pub(super) fn blacklist(app: &App, cmd: BlacklistCommand) -> Result<(), Failure> {
    match cmd {
        BlacklistCommand::List { json } => {
            let rows: Vec<(String, String, i64)> = app.db.read(|c| {
                let mut stmt =
                    c.prepare(
                        "SELECT phone, reason, created_at FROM phone_blacklist
                         UNION ALL SELECT phone, 'too many wrong codes from user ' || user_id, created_at FROM phone_blocks
                         ORDER BY created_at DESC",
                    )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })?;
            if json {
                let items =
                    rows.iter().map(|(p, r, at)| json!({"phone": p, "reason": r, "created_at": clock::format(*at)}));
                print_json(&Value::Array(items.collect()));
            } else {
                println!("{:<18} {:<28} REASON", "PHONE", "SINCE");
                for (phone, reason, at) in &rows {
                    println!("{phone:<18} {:<28} {reason}", clock::format(*at));
                }
            }
        }
        BlacklistCommand::Clear { phone, .. } => {
            let n = app.db.write(|tx| {
                Ok(tx.execute("DELETE FROM phone_blacklist WHERE ?1 IS NULL OR phone = ?1", [phone.as_deref()])?
                    + tx.execute("DELETE FROM phone_blocks WHERE ?1 IS NULL OR phone = ?1", [phone.as_deref()])?)
            })?;
            if n == 0 && phone.is_some() {
                return Err(Failure::input(format!("{} is not blacklisted", phone.unwrap_or_default())));
            }
            println!("removed {n} number(s) from the blacklist");
        }
    }
    Ok(())
}

fn outbox_json(e: &crate::outbox::Entry) -> Value {
    json!({
        "id": e.id,
        "to": e.recipient,
        "subject": e.subject,
        "status": e.status,
        "attempts": e.attempts,
        "next_attempt_at": clock::format(e.next_attempt_at),
        "last_error": e.last_error,
        "provider_response": e.provider_response,
        "created_at": clock::format(e.created_at),
        "sent_at": e.sent_at.map(clock::format),
    })
}
