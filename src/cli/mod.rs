//! The command line: `serve`, `init`, `backup`, `dev-seed` here, the admin
//! commands in `accounts` (users, tokens) and `ops` (mail, outbox, phone
//! blacklist). Each command calls the same domain functions as the HTTP API.

mod accounts;
mod ops;

use self::accounts::{token, user, TokenCommand, UserCommand};
use self::ops::{blacklist, mail_test, outbox, BlacklistCommand, MailCommand, OutboxCommand};
use crate::app::App;
use crate::config::{self, Config};
use crate::error::Error;
use crate::i18n::Lang;
use crate::{backup, http, jobs};
use clap::{Parser, Subcommand};
use serde_json::Value;
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
    /// The GeoIP country database
    #[command(subcommand)]
    Geoip(GeoipCommand),
    /// Offer monitoring (monitor.interval_minutes)
    #[command(subcommand)]
    Monitor(MonitorCommand),
    /// Delete raw clicks recorded before a day (reports keep their numbers)
    Purge {
        /// The first day kept, YYYY-MM-DD in server.utc_offset
        #[arg(long, value_name = "YYYY-MM-DD")]
        before: String,
        /// Only count what would go
        #[arg(long)]
        dry_run: bool,
    },
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
        /// Offers on each link, traffic split evenly
        #[arg(long, default_value_t = 1)]
        offers: u32,
    },
}

#[derive(Subcommand, Debug)]
enum GeoipCommand {
    /// Download the country database (DB-IP Lite by default) and swap it in
    Update {
        /// Download this MMDB file instead (plain, .gz or a .tar.gz holding one)
        #[arg(long)]
        url: Option<String>,
        /// Download MaxMind's GeoLite2 Country with this licence key
        #[arg(long, env = "MAXMIND_LICENSE_KEY", hide_env_values = true)]
        maxmind_key: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum MonitorCommand {
    /// Check every active offer's URL now; prints what went down or came back (JSON)
    RunOnce,
}

/// What a failed command prints after `error: `.
pub(super) struct Failure {
    message: String,
    /// 2 for a mistake in what was asked (a bad value, an unknown user),
    /// 1 for a failure of the system (the database, the disk).
    code: u8,
}

impl Failure {
    /// A failure of the system: exit code 1.
    pub(super) fn new(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), code: 1 }
    }

    /// A mistake in the input: exit code 2.
    pub(super) fn input(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), code: 2 }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Internal(_) | Error::Busy => Failure::new(e.to_string()),
            _ => Failure::input(e.to_string()),
        }
    }
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Failure {
        Failure::input(e.to_string())
    }
}

/// Opens the app; a configuration that does not validate is a mistake in
/// the input (exit 2, with the key named), not an internal error.
fn open(config: Config) -> Result<App, Failure> {
    config.validate()?;
    Ok(App::open(config)?)
}

/// The top-level entry point of the binary.
pub fn main() -> ExitCode {
    return_big_allocations_to_the_system();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { message, code }) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// glibc serves an allocation over its "mmap threshold" from a mapping of
/// its own, which `free` hands back to the system; but by default each such
/// free raises the threshold, so the next 19 MiB argon2 buffer comes from a
/// thread's arena and stays there after it is freed: a few hundred logins
/// spread over many threads left gigabytes resident. A fixed threshold
/// keeps every big buffer a mapping of its own.
fn return_big_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let config_path = cli.config.as_deref();
    match cli.command {
        Command::Init { force } => return init(config_path, force),
        Command::Serve => return serve(Config::from_process(config_path)?),
        _ => {}
    }
    let app = open(Config::from_process(config_path)?)?;
    match cli.command {
        Command::User(cmd) => user(&app, cmd),
        Command::Token(cmd) => token(&app, cmd),
        Command::Backup { file } => {
            if file.exists() {
                return Err(Failure::input(format!("{} already exists; choose a new file name", file.display())));
            }
            let started = std::time::Instant::now();
            let bytes = backup::run(&app.db, &file)?;
            println!("backed up {bytes} bytes to {} in {:.2?}", file.display(), started.elapsed());
            Ok(())
        }
        Command::Mail(MailCommand::Test { address, language }) => mail_test(&app, &address, language),
        Command::Outbox(cmd) => outbox(&app, cmd),
        Command::Blacklist(cmd) => blacklist(&app, cmd),
        Command::Purge { before, dry_run } => purge(&app, &before, dry_run),
        Command::Geoip(GeoipCommand::Update { url, maxmind_key }) => geoip_update(&app, url, maxmind_key),
        Command::Monitor(MonitorCommand::RunOnce) => {
            let summary = crate::tracking::monitor::run_once(&app, &std::sync::atomic::AtomicBool::new(false))?;
            print_json(&summary.to_json());
            Ok(())
        }
        Command::DevSeed { email, clicks, leads, days, links, sub_ids, offers } => {
            let user = match crate::accounts::find(&app, &email) {
                Ok(user) => user,
                Err(Error::NotFound) => {
                    crate::accounts::create_account(&app, "Seed", &email, "seed-password", app.default_lang, true)?
                }
                Err(e) => return Err(e.into()),
            };
            let started = std::time::Instant::now();
            let seed = crate::tracking::seed::Seed { user_id: user.id, clicks, leads, days, links, sub_ids, offers };
            let (c, l) = crate::tracking::seed::run(&app, &seed, |p| eprint!("\r{p}          "))?;
            eprintln!();
            println!("seeded {c} clicks and {l} leads for {} in {:.1?}", user.email, started.elapsed());
            Ok(())
        }
        Command::Init { .. } | Command::Serve => Ok(()),
    }
}

/// `apextrack geoip update [--url URL] [--maxmind-key KEY]`: downloads,
/// checks and swaps in the country database where the server reads it.
fn geoip_update(app: &App, url: Option<String>, maxmind_key: Option<String>) -> Result<(), Failure> {
    use crate::tracking::geoip;
    if url.as_deref().is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
        return Err(Failure::input(format!(
            "--url {:?}: expected an http:// or https:// URL",
            url.unwrap_or_default()
        )));
    }
    let urls = match (url, maxmind_key) {
        (Some(url), _) => vec![url],
        (None, Some(key)) => vec![geoip::maxmind_url(&key)],
        (None, None) => geoip::dbip_urls(app.clock.now()),
    };
    let dest = app.tracking.geoip.path().to_path_buf();
    let mb = |b: u64| b as f64 / 1e6;
    let updated = geoip::update(&urls, &dest, |got, total| match total {
        Some(total) => eprint!("\rdownloading: {:.1} of {:.1} MB", mb(got), mb(total)),
        None => eprint!("\rdownloading: {:.1} MB", mb(got)),
    });
    eprintln!();
    let updated = updated.map_err(Failure::new)?;
    println!(
        "wrote {} ({}, built {}, {} bytes) from {}; a running server uses it within 30 s",
        updated.path.display(),
        updated.database_type,
        crate::clock::local_date(updated.build_epoch as i64 * crate::clock::SECOND, 0),
        updated.bytes,
        updated.url
    );
    Ok(())
}

/// `apextrack purge --before YYYY-MM-DD [--dry-run]`: the same batched
/// delete as `tracking.raw_click_days`, by hand; safe while the server
/// runs (each batch is a short transaction of its own).
fn purge(app: &App, before: &str, dry_run: bool) -> Result<(), Failure> {
    let cutoff = crate::clock::local_midnight(before, app.utc_offset)
        .ok_or_else(|| Failure::input(format!("--before {before:?}: expected a date like 2026-01-31")))?;
    if dry_run {
        let n = app.db.read(|c| Ok(crate::tracking::clicks::count_before(c, cutoff)?))?;
        println!("would delete {n} raw clicks recorded before {before} (dry run: nothing deleted)");
        return Ok(());
    }
    let started = std::time::Instant::now();
    let total = crate::tracking::clicks::purge_all(&app.db, cutoff, |total| {
        if started.elapsed() > std::time::Duration::from_secs(1) {
            eprint!("\rdeleted {total} raw clicks so far…");
        }
    })?;
    if started.elapsed() > std::time::Duration::from_secs(1) {
        eprintln!();
    }
    println!("deleted {total} raw clicks recorded before {before} in {:.1?}", started.elapsed());
    Ok(())
}

fn serve(config: Config) -> Result<(), Failure> {
    let app = Arc::new(open(config)?);
    let (signal_tx, signal_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = signal_tx.send(());
    })
    .map_err(|e| Failure::new(format!("cannot install the signal handler: {e}")))?;
    let running = http::start(Arc::clone(&app))?;
    let jobs = jobs::Jobs::start(Arc::clone(&app))
        .map_err(|e| Failure::new(format!("cannot start the background threads: {e}")))?;
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
        return Err(Failure::input(format!("{} already exists (use --force to overwrite it)", path.display())));
    }
    std::fs::write(path, config::EXAMPLE).map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
    let app = open(Config::from_process(Some(path))?)?;
    println!("wrote {}", path.display());
    println!("created {} (schema version {})", app.db.path().display(), app.db.schema_version()?);
    println!("next: apextrack --config {} serve", path.display());
    Ok(())
}

pub(super) fn parse_language(app: &App, code: Option<String>) -> Result<Lang, Failure> {
    match code {
        Some(code) => {
            Lang::parse(&code).ok_or_else(|| Failure::input(format!("unknown language {code:?}: use id or en")))
        }
        None => Ok(app.default_lang),
    }
}

pub(super) fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}
