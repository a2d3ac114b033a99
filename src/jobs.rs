//! Background threads of `apextrack serve`: the outbox sender, and pruning
//! of expired tokens, codes, rate-limit windows and old delivered mail.

use crate::accounts;
use crate::app::App;
use crate::outbox;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Handle to the background threads; `stop` ends them.
pub struct Jobs {
    app: Arc<App>,
    stop: Arc<AtomicBool>,
    stop_pruner: mpsc::Sender<()>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Jobs {
    pub fn start(app: Arc<App>) -> Jobs {
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_pruner, stopped) = mpsc::channel::<()>();
        let pruner_app = Arc::clone(&app);
        let pruner = thread::Builder::new()
            .name("prune".into())
            .spawn(move || loop {
                if let Err(e) = accounts::prune(&pruner_app) {
                    pruner_app.log.line(format!("warning: pruning expired rows failed: {e}"));
                }
                // Sleeps until the next round, or returns when stopped.
                match stopped.recv_timeout(PRUNE_EVERY) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return,
                }
            })
            .expect("spawning a thread at start-up");
        let (sender_app, sender_stop) = (Arc::clone(&app), Arc::clone(&stop));
        let sender = thread::Builder::new()
            .name("outbox".into())
            .spawn(move || outbox::run(&sender_app, &sender_stop))
            .expect("spawning a thread at start-up");
        Jobs { app, stop, stop_pruner, threads: vec![pruner, sender] }
    }

    /// Stops the threads; a mail being sent finishes and is recorded first.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.app.outbox_wake.notify();
        drop(self.stop_pruner);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
