//! The access log and warnings: standard error, or in tests a buffer that
//! can be searched for secrets that must never appear.

use std::sync::Mutex;

/// Where the access log and warnings go: standard error, or, in tests, a
/// buffer that can be searched for secrets that must never appear.
///
/// Access lines are gathered and written together ([`Log::flush`], which
/// the background jobs call ten times a second) instead of one write per
/// request; any other line goes out at once, after those gathered before it.
#[derive(Debug, Default)]
pub struct Log {
    captured: Option<Mutex<Vec<String>>>,
    pending: Mutex<Vec<u8>>,
}

/// Gathered access lines are written once they reach this size.
const LOG_BUFFER: usize = 32 * 1024;

impl Log {
    pub fn capturing() -> Log {
        Log { captured: Some(Mutex::new(Vec::new())), pending: Mutex::default() }
    }

    /// A warning or an event: written now.
    pub fn line(&self, text: impl Into<String>) {
        self.append(text.into(), true);
    }

    /// One access-log line: written with the next flush.
    pub fn access(&self, text: String) {
        self.append(text, false);
    }

    fn append(&self, text: String, now: bool) {
        match &self.captured {
            Some(lines) => lines.lock().unwrap_or_else(|e| e.into_inner()).push(text),
            None => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.extend_from_slice(text.as_bytes());
                pending.push(b'\n');
                if now || pending.len() >= LOG_BUFFER {
                    write_out(&mut pending);
                }
            }
        }
    }

    /// Writes the gathered access lines.
    pub fn flush(&self) {
        write_out(&mut self.pending.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The captured lines (empty unless capturing).
    pub fn lines(&self) -> Vec<String> {
        self.captured.as_ref().map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default()
    }
}

fn write_out(pending: &mut Vec<u8>) {
    if !pending.is_empty() {
        use std::io::Write;
        let _ = std::io::stderr().lock().write_all(pending);
        pending.clear();
    }
}
