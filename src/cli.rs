//! The command line: `serve`, `init`, and the admin commands. Each command
//! calls the same domain functions as the HTTP API.

use crate::accounts::{self, Token, User};
use crate::app::App;
use crate::clock;
use crate::config::{self, Config};
use crate::error::Error;
use crate::i18n::Lang;
use crate::{backup, http, jobs};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};

#[derive(Parser, Debug)]
#[command(name = "apextrack", version, about = "Self-hosted affiliate click and conversion tracker")]
pub struct Cli {
    /// Configuration file [default: ./apextrack.toml when it exists]
    #[arg(long, global = true, env = "APEXTRACK_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP server until SIGINT or SIGTERM
    Serve,
    /// Write a commented config file and create the database
    Init {
        /// Overwrite an existing config file
        #[arg(long)]
        force: bool,
    },
    /// Manage user accounts
    #[command(subcommand)]
    User(UserCommand),
    /// Manage login tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Copy the live database to FILE, consistently, while the server runs
    Backup { file: PathBuf },
    /// Mail delivery
    #[command(subcommand)]
    Mail(MailCommand),
    /// The queue of outgoing mail
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Phone numbers refused for binding
    #[command(subcommand)]
    Blacklist(BlacklistCommand),
    /// Fill the database with synthetic clicks and leads, for benchmarks
    DevSeed {
        /// The user that owns them (created, verified, if missing; password "seed-password")
        #[arg(long, default_value = "seed@example.com")]
        email: String,
        #[arg(long, default_value_t = 1_000_000)]
        clicks: u64,
        #[arg(long, default_value_t = 50_000)]
        leads: u64,
        /// Spread over this many days up to now
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 10)]
        links: u32,
        #[arg(long, default_value_t = 200)]
        sub_ids: u32,
    },
}

#[derive(Subcommand, Debug)]
enum BlacklistCommand {
    /// List blacklisted numbers
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
enum MailCommand {
    /// Send one test mail now through the configured provider and show its answer
    Test {
        address: String,
        /// Language of the mail: id or en [default: server.default_language]
        #[arg(long)]
        language: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum OutboxCommand {
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

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// List all users
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one user (by id or email)
    Show {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a user
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Mark the email as verified
        #[arg(long)]
        verified: bool,
        /// Language of the user's messages: id or en [default: server.default_language]
        #[arg(long)]
        language: Option<String>,
    },
    /// Mark a user's email as verified
    Verify { user: String },
    /// Set a new password (revokes all the user's tokens)
    SetPassword {
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set the account status: active or suspended
    SetStatus { user: String, status: String },
    /// Delete a user and everything they own
    Delete { user: String },
    /// Turn two-factor authentication off for a user who lost their device
    TwofaOff { user: String },
}

#[derive(clap::Args, Debug)]
struct PasswordArgs {
    /// The password (visible in the process list; prefer --password-stdin)
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// List login tokens, newest first
    List {
        /// Only this user's (id or email)
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one token by id, or all of a user's with --user
    Revoke {
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<i64>,
        #[arg(long)]
        user: Option<String>,
    },
}

/// What a failed command prints after `error: `.
struct Failure(String);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure(e.to_string())
    }
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Failure {
        Failure(e.to_string())
    }
}

/// The top-level entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let config_path = cli.config.as_deref();
    match cli.command {
        Command::Init { force } => return init(config_path, force),
        Command::Serve => return serve(Config::from_process(config_path)?),
        _ => {}
    }
    let app = App::open(Config::from_process(config_path)?)?;
    match cli.command {
        Command::User(cmd) => user(&app, cmd),
        Command::Token(cmd) => token(&app, cmd),
        Command::Backup { file } => {
            let started = std::time::Instant::now();
            let bytes = backup::run(&app.db, &file)?;
            println!("backed up {bytes} bytes to {} in {:.2?}", file.display(), started.elapsed());
            Ok(())
        }
        Command::Mail(MailCommand::Test { address, language }) => mail_test(&app, &address, language),
        Command::Outbox(cmd) => outbox(&app, cmd),
        Command::Blacklist(cmd) => blacklist(&app, cmd),
        Command::DevSeed { email, clicks, leads, days, links, sub_ids } => {
            let user = match accounts::find(&app, &email) {
                Ok(user) => user,
                Err(Error::NotFound) => {
                    accounts::create_account(&app, "Seed", &email, "seed-password", app.default_lang, true)?
                }
                Err(e) => return Err(e.into()),
            };
            let started = std::time::Instant::now();
            let seed = crate::tracking::seed::Seed { user_id: user.id, clicks, leads, days, links, sub_ids };
            let (c, l) = crate::tracking::seed::run(&app, &seed, |p| eprint!("\r{p}          "))?;
            eprintln!();
            println!("seeded {c} clicks and {l} leads for {} in {:.1?}", user.email, started.elapsed());
            Ok(())
        }
        Command::Init { .. } | Command::Serve => Ok(()),
    }
}

fn serve(config: Config) -> Result<(), Failure> {
    let app = Arc::new(App::open(config)?);
    let (signal_tx, signal_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = signal_tx.send(());
    })
    .map_err(|e| Failure(format!("cannot install the signal handler: {e}")))?;
    let running = http::start(Arc::clone(&app))?;
    let jobs = jobs::Jobs::start(Arc::clone(&app));
    eprintln!(
        "apextrack {} listening on http://{} (database {}, schema version {})",
        env!("CARGO_PKG_VERSION"),
        running.addr(),
        app.db.path().display(),
        app.db.schema_version()?
    );
    let _ = signal_rx.recv();
    eprintln!("shutting down: finishing in-flight requests");
    let drained = running.stop();
    // Background writes (the outbox's last status) land before the checkpoint.
    jobs.stop();
    if let Err(e) = app.db.checkpoint() {
        eprintln!("warning: WAL checkpoint at shutdown failed: {e}");
    }
    if !drained {
        eprintln!("warning: some requests were still running after the drain limit");
    }
    eprintln!("stopped");
    Ok(())
}

fn init(config_path: Option<&Path>, force: bool) -> Result<(), Failure> {
    let path = config_path.unwrap_or(Path::new("apextrack.toml"));
    if path.exists() && !force {
        return Err(Failure(format!("{} already exists (use --force to overwrite it)", path.display())));
    }
    std::fs::write(path, config::EXAMPLE).map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
    let app = App::open(Config::from_process(Some(path))?)?;
    println!("wrote {}", path.display());
    println!("created {} (schema version {})", app.db.path().display(), app.db.schema_version()?);
    println!("next: apextrack --config {} serve", path.display());
    Ok(())
}

fn find_user(app: &App, who: &str) -> Result<User, Failure> {
    accounts::find(app, who).map_err(|e| match e {
        Error::NotFound => Failure(format!("no user with id or email {who:?}")),
        other => other.into(),
    })
}

fn read_password(args: PasswordArgs) -> Result<String, Failure> {
    if let Some(password) = args.password {
        return Ok(password);
    }
    if !args.password_stdin {
        return Err(Failure("give --password or --password-stdin".into()));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| Failure(format!("cannot read standard input: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn user(app: &App, cmd: UserCommand) -> Result<(), Failure> {
    match cmd {
        UserCommand::List { json } => {
            let users = app.db.read(|c| Ok(accounts::store::list_users(c)?))?;
            if json {
                print_json(&Value::Array(users.iter().map(|u| accounts::user_json(app, u)).collect()));
            } else {
                print_users(&users);
            }
        }
        UserCommand::Show { user, json } => {
            let user = find_user(app, &user)?;
            if json {
                print_json(&accounts::user_json(app, &user));
            } else {
                print_users(std::slice::from_ref(&user));
            }
        }
        UserCommand::Create { name, email, password, verified, language } => {
            let password = read_password(password)?;
            let lang = parse_language(app, language)?;
            let (name, email) = (name.trim(), email.trim());
            let mut errors = crate::error::FieldErrors::default();
            accounts::validate_account(app, Some(name), Some(email), Some(&password), &mut errors)?;
            errors.into_result()?;
            let user = accounts::create_account(app, name, email, &password, lang, verified)?;
            println!("created user {} <{}>", user.id, user.email);
        }
        UserCommand::Verify { user } => {
            let user = find_user(app, &user)?;
            accounts::mark_verified(app, user.id)?;
            println!("verified {}", user.email);
        }
        UserCommand::SetPassword { user, password } => {
            let user = find_user(app, &user)?;
            accounts::set_password(app, user.id, &read_password(password)?)?;
            println!("password of {} changed; all their tokens revoked", user.email);
        }
        UserCommand::SetStatus { user, status } => {
            let user = find_user(app, &user)?;
            accounts::set_status(app, user.id, &status)?;
            println!("{} is now {status}", user.email);
        }
        UserCommand::TwofaOff { user } => {
            let user = find_user(app, &user)?;
            app.db.write(|tx| Ok(crate::settings::twofa::disable(tx, user.id)?))?;
            println!("two-factor authentication is off for {}; they can bind it again", user.email);
        }
        UserCommand::Delete { user } => {
            let user = find_user(app, &user)?;
            accounts::delete(app, user.id)?;
            println!("deleted user {} <{}>", user.id, user.email);
        }
    }
    Ok(())
}

fn token(app: &App, cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::List { user, json } => {
            let user_id = user.map(|u| find_user(app, &u)).transpose()?.map(|u| u.id);
            let tokens = app.db.read(|c| Ok(accounts::store::list_tokens(c, user_id)?))?;
            if json {
                print_json(&Value::Array(tokens.iter().map(token_json).collect()));
            } else {
                println!("{:<6} {:<6} {:<28} {:<28} {:<28} NAME", "ID", "USER", "CREATED", "LAST USED", "EXPIRES");
                for t in &tokens {
                    let at = |ts: Option<i64>| ts.map_or("-".to_string(), clock::format);
                    println!(
                        "{:<6} {:<6} {:<28} {:<28} {:<28} {}",
                        t.id,
                        t.user_id,
                        clock::format(t.created_at),
                        at(t.last_used_at),
                        at(t.expires_at),
                        t.name
                    );
                }
            }
        }
        TokenCommand::Revoke { id: Some(id), .. } => {
            if !accounts::revoke_token(app, id)? {
                return Err(Failure(format!("no token with id {id}")));
            }
            println!("revoked token {id}");
        }
        TokenCommand::Revoke { user, .. } => {
            let user = find_user(app, user.as_deref().unwrap_or_default())?;
            let n = app.db.write(|tx| Ok(accounts::store::delete_tokens_of_user(tx, user.id)?))?;
            println!("revoked {n} token(s) of {}", user.email);
        }
    }
    Ok(())
}

fn parse_language(app: &App, code: Option<String>) -> Result<Lang, Failure> {
    match code {
        Some(code) => Lang::parse(&code).ok_or_else(|| Failure(format!("unknown language {code:?}: use id or en"))),
        None => Ok(app.default_lang),
    }
}

fn mail_test(app: &App, address: &str, language: Option<String>) -> Result<(), Failure> {
    if !accounts::is_email(address) {
        return Err(Failure(format!("{address:?} is not an email address")));
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
        Err(reason) => Err(Failure(format!("sending through {provider} failed: {reason}"))),
    }
}

fn outbox(app: &App, cmd: OutboxCommand) -> Result<(), Failure> {
    match cmd {
        OutboxCommand::List { status, json } => {
            if let Some(s) = status.as_deref() {
                if !["pending", "sent", "failed"].contains(&s) {
                    return Err(Failure(format!("unknown status {s:?}: use pending, sent or failed")));
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
                return Err(Failure(format!("queued {n} of {} mail(s): the others are not failed mail", ids.len())));
            }
            println!("queued {n} failed mail(s) again; a running server sends them within a second");
        }
    }
    Ok(())
}

fn blacklist(app: &App, cmd: BlacklistCommand) -> Result<(), Failure> {
    match cmd {
        BlacklistCommand::List { json } => {
            let rows: Vec<(String, String, i64)> = app.db.read(|c| {
                let mut stmt =
                    c.prepare("SELECT phone, reason, created_at FROM phone_blacklist ORDER BY created_at DESC")?;
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
                Ok(tx.execute("DELETE FROM phone_blacklist WHERE ?1 IS NULL OR phone = ?1", [phone.as_deref()])?)
            })?;
            if n == 0 && phone.is_some() {
                return Err(Failure(format!("{} is not blacklisted", phone.unwrap_or_default())));
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

fn token_json(t: &Token) -> Value {
    json!({
        "id": t.id,
        "user_id": t.user_id,
        "name": t.name,
        "created_at": clock::format(t.created_at),
        "last_used_at": t.last_used_at.map(clock::format),
        "expires_at": t.expires_at.map(clock::format),
    })
}

fn print_users(users: &[User]) {
    println!("{:<6} {:<32} {:<24} {:<10} {:<9} CREATED", "ID", "EMAIL", "NAME", "STATUS", "VERIFIED");
    for u in users {
        println!(
            "{:<6} {:<32} {:<24} {:<10} {:<9} {}",
            u.id,
            u.email,
            u.name,
            u.account_status,
            if u.email_verified_at.is_some() { "yes" } else { "no" },
            clock::format(u.created_at)
        );
    }
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}
