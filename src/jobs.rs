//! Background threads of `apextrack serve`: for now, pruning of expired
//! tokens and finished rate-limit windows.

use crate::accounts;
use crate::app::App;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Handle to the background threads; `stop` ends them.
pub struct Jobs {
    stop: mpsc::Sender<()>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Jobs {
    pub fn start(app: Arc<App>) -> Jobs {
        let (stop, stopped) = mpsc::channel::<()>();
        let pruner = thread::Builder::new()
            .name("prune".into())
            .spawn(move || loop {
                if let Err(e) = accounts::prune(&app) {
                    app.log.line(format!("warning: pruning expired rows failed: {e}"));
                }
                // Sleeps until the next round, or returns when stopped.
                match stopped.recv_timeout(PRUNE_EVERY) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return,
                }
            })
            .expect("spawning a thread at start-up");
        Jobs { stop, threads: vec![pruner] }
    }

    pub fn stop(self) {
        drop(self.stop);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
