//! Background threads of `apextrack serve`: the two outbox workers
//! (account mail and SMS; integrations: source postbacks and notifications), pruning of expired tokens,
//! codes, rate-limit windows, fingerprints, postback logs and old
//! delivered mail (each owner's own `prune`, in batches),
//! upkeep ten times a second (checkpoints of the WAL, writing the gathered
//! access log, freeing idle argon2 memory, forgetting links whose offers
//! monitoring paused or restored), the notifier (digests and stop-losses
//! each minute), offer checks every `monitor.interval_minutes` on a thread
//! of their own, and scheduled snapshots (`[backup]`).

use crate::app::App;
use crate::base::Core;
use crate::outbox::{self, Queue, Worker};
use crate::{accounts, ratelimit, tracking};
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Under a stream of clicks the WAL grows by megabytes a second; copied
/// this often, it stays small and commits rarely pay for a checkpoint.
const UPKEEP_EVERY: Duration = Duration::from_millis(100);
/// Upkeep rounds between looks at the GeoIP file (30 s).
const GEOIP_CHECK_ROUNDS: u32 = 300;
/// How often the notifier looks for due digests and reached stop-losses.
const NOTIFY_EVERY: Duration = Duration::from_secs(60);

/// Handle to the background threads; `stop` ends them.
pub struct Jobs {
    app: Arc<App>,
    stop: Arc<AtomicBool>,
    stop_pruner: mpsc::Sender<()>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Jobs {
    pub fn start(app: Arc<App>) -> std::io::Result<Jobs> {
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_pruner, stopped) = mpsc::channel::<()>();
        let pruner_app = Arc::clone(&app);
        let pruner = thread::Builder::new().name("prune".into()).spawn(move || {
            let mut last_geoip_try = None;
            loop {
                prune(&pruner_app);
                if geoip_due(&pruner_app, &mut last_geoip_try) {
                    // A download may take minutes: not on this thread, which a stop waits for.
                    let app = Arc::clone(&pruner_app);
                    let _ = thread::Builder::new().name("geoip".into()).spawn(move || fetch_geoip(&app));
                }
                // Sleeps until the next round, or returns when stopped.
                match stopped.recv_timeout(PRUNE_EVERY) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return,
                }
            }
        })?;
        let mut senders = Vec::new();
        for queue in [Queue::Account, Queue::Integrations] {
            let (sender_app, sender_stop) = (Arc::clone(&app), Arc::clone(&stop));
            let name = format!("outbox-{}", queue.name());
            senders
                .push(thread::Builder::new().name(name).spawn(move || worker(&sender_app).run(queue, &sender_stop))?);
        }
        let (upkeep_app, upkeep_stop) = (Arc::clone(&app), Arc::clone(&stop));
        let upkeep = thread::Builder::new().name("upkeep".into()).spawn(move || {
            let mut rounds = 0u32;
            let mut monitor_seen = upkeep_app.db.read(|c| Ok(tracking::monitor::last_change(c)?)).unwrap_or(0);
            while !upkeep_stop.load(Ordering::Relaxed) {
                rounds = rounds.wrapping_add(1);
                // Links whose offers went down or came back (here or in
                // `apextrack monitor run-once`) are read again within a second.
                if upkeep_app.config.monitor.auto_pause && rounds.is_multiple_of(10) {
                    forget_monitored(&upkeep_app, &mut monitor_seen);
                }
                // Visitors not seen for a day are forgotten once a minute.
                if rounds.is_multiple_of(600) {
                    upkeep_app.tracking.visitors.forget_old(upkeep_app.clock.now());
                    upkeep_app.tracking.live.forget_idle(upkeep_app.clock.now());
                }
                // A GeoIP file replaced (by `apextrack geoip update`) is in use within 30 s.
                if rounds.is_multiple_of(GEOIP_CHECK_ROUNDS) {
                    match upkeep_app.tracking.geoip.reload_if_changed() {
                        Ok(true) => upkeep_app
                            .log
                            .line(format!("geoip: now using {}", upkeep_app.tracking.geoip.path().display())),
                        Ok(false) => {}
                        Err(e) => upkeep_app.log.line(format!("warning: geoip: kept the database in use: {e}")),
                    }
                }
                if let Err(e) = upkeep_app.db.checkpoint_passive() {
                    upkeep_app.log.line(format!("warning: checkpoint failed: {e}"));
                }
                upkeep_app.log.flush();
                crate::crypto::release_idle_scratch();
                thread::sleep(UPKEEP_EVERY);
            }
        })?;
        let notify_app = Arc::clone(&app);
        let notifier = periodic("notify", &stop, NOTIFY_EVERY, NOTIFY_EVERY, move |_| {
            if let Err(e) = tracking::notify::tick(&notify_app, notify_app.clock.now()) {
                notify_app.log.line(format!("warning: notifications: {e}"));
            }
        })?;
        let mut threads = vec![pruner, upkeep, notifier];
        // Offer checks: the first a minute after start, the next an
        // interval after a run ends; a stop ends a run between checks.
        let minutes = app.config.monitor.interval_minutes;
        if minutes > 0 {
            let monitor_app = Arc::clone(&app);
            let every = Duration::from_secs(u64::from(minutes) * 60);
            threads.push(periodic(
                "monitor",
                &stop,
                NOTIFY_EVERY,
                every,
                move |stop| match tracking::monitor::run_once(&monitor_app, stop) {
                    Ok(s) if s.down.is_empty() && s.up.is_empty() => {}
                    Ok(s) => monitor_app.log.line(format!(
                        "monitor: checked {} offers; {} went down, {} came back",
                        s.checked,
                        s.down.len(),
                        s.up.len()
                    )),
                    Err(e) => monitor_app.log.line(format!("warning: monitor: {e}")),
                },
            )?);
        }
        threads.extend(senders);
        let hours = app.config.backup.interval_hours;
        if hours > 0 && !app.config.backup.dir.is_empty() {
            let snap_app = Arc::clone(&app);
            let every = Duration::from_secs(u64::from(hours) * 3600);
            threads.push(periodic("backup", &stop, every, every, move |_| {
                match crate::backup::snapshot(&snap_app.db, &snap_app.config.backup, &snap_app.clock) {
                    Ok(path) => snap_app.log.line(format!("backup: wrote {}", path.display())),
                    Err(e) => snap_app.log.line(format!("warning: scheduled backup failed: {e}")),
                }
            })?);
        }
        Ok(Jobs { app, stop, stop_pruner, threads })
    }

    /// Stops the threads; a mail being sent finishes and is recorded first.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.app.outbox_wake.notify();
        drop(self.stop_pruner);
        for t in self.threads {
            let _ = t.join();
        }
        self.app.log.flush();
    }
}

/// Forgets the cached links whose offers changed state since `seen`.
fn forget_monitored(app: &App, seen: &mut i64) {
    match app.db.read(|c| Ok(tracking::monitor::changed_since(c, *seen)?)) {
        Ok((slugs, newest)) => {
            for slug in slugs {
                app.tracking.slugs.forget(&slug);
            }
            *seen = newest;
        }
        Err(e) => app.log.line(format!("warning: monitor: cannot read offers' states: {e}")),
    }
}

/// A thread `name` that runs `job` `first` after start and then `every`
/// after each run ends, until `stop` (looked at twice a second; `job` is
/// lent it, to end a long run early).
fn periodic(
    name: &str,
    stop: &Arc<AtomicBool>,
    first: Duration,
    every: Duration,
    mut job: impl FnMut(&AtomicBool) + Send + 'static,
) -> std::io::Result<thread::JoinHandle<()>> {
    let stop = Arc::clone(stop);
    thread::Builder::new().name(name.into()).spawn(move || {
        let mut next = std::time::Instant::now() + first;
        while !stop.load(Ordering::Relaxed) {
            if std::time::Instant::now() >= next {
                job(&stop);
                next = std::time::Instant::now() + every;
            }
            thread::sleep(Duration::from_millis(500));
        }
    })
}

/// The outbox workers' view of the core.
pub fn worker(core: &Core) -> Worker<'_> {
    Worker {
        db: &core.db,
        config: &core.config,
        clock: &core.clock,
        log: &core.log,
        wake: &core.outbox_wake,
        courier: Box::new(tracking::notify::Courier(core)),
    }
}

type Pruner = fn(&Connection, i64, i64) -> rusqlite::Result<usize>;

/// Each table's owner prunes its own rows, in its own short transactions;
/// one failing does not stop the others, and each failure is logged.
pub fn prune(core: &Core) -> usize {
    let owners: [(&str, Pruner); 7] = [
        ("expired tokens", accounts::prune),
        ("rate-limit windows", ratelimit::prune),
        ("rate-limit events", ratelimit::prune_events),
        ("one-time codes", accounts::otp::prune),
        ("outbox", outbox::prune),
        ("postback log", tracking::postback::prune_log),
        ("notification marks", tracking::notify::prune_marks),
    ];
    let now = core.clock.now();
    let mut total = 0;
    for (what, prune) in owners {
        match core.db.prune(|tx, limit| prune(tx, now, limit)) {
            Ok(n) => total += n,
            Err(e) => core.log.line(format!("warning: pruning {what} failed: {e}")),
        }
    }
    let days = core.config.tracking.raw_click_days;
    if days > 0 {
        let before = now - i64::from(days) * crate::clock::DAY;
        match tracking::clicks::purge_all(&core.db, before, |_| {}) {
            Ok(0) => {}
            Ok(n) => {
                core.log.line(format!("retention: deleted {n} raw clicks older than {days} days"));
                total += n;
            }
            Err(e) => core.log.line(format!("warning: deleting raw clicks older than {days} days failed: {e}")),
        }
    }
    total
}

/// Whether the GeoIP database is due for a download by
/// `tracking.geoip_update_days` (missing, or older than that many days),
/// at most every six hours.
pub fn geoip_due(app: &App, last_try: &mut Option<std::time::Instant>) -> bool {
    let days = app.config.tracking.geoip_update_days;
    if days == 0 || last_try.is_some_and(|t| t.elapsed() < Duration::from_secs(6 * 3600)) {
        return false;
    }
    let age =
        std::fs::metadata(app.tracking.geoip.path()).and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
    if age.is_some_and(|age| age < Duration::from_secs(u64::from(days) * 86_400)) {
        return false;
    }
    *last_try = Some(std::time::Instant::now());
    true
}

/// Downloads the GeoIP database from `tracking.geoip_update_url` (or
/// DB-IP's); the upkeep thread then loads it. True when a new file was written.
pub fn fetch_geoip(app: &App) -> bool {
    let path = app.tracking.geoip.path();
    let urls = match app.config.tracking.geoip_update_url.as_str() {
        "" => tracking::geoip::dbip_urls(app.clock.now()),
        url => vec![url.to_string()],
    };
    match tracking::geoip::update(&urls, path, |_, _| {}) {
        Ok(updated) => {
            app.log.line(format!(
                "geoip: downloaded {} ({}) from {}",
                path.display(),
                updated.database_type,
                updated.url
            ));
            true
        }
        Err(e) => {
            app.log.line(format!("warning: geoip: could not download a new database: {e}"));
            false
        }
    }
}
