//! Counters and histograms for `GET /metrics` (Prometheus text format):
//! plain atomics, bumped where things happen, read when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A histogram with fixed upper bounds; the sum is kept in millionths.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_millionths: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_millionths: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_millionths.fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// The `_bucket` (cumulative), `_sum` and `_count` lines of `name`,
    /// with `labels` (`route="click"`, or empty) on each.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum_millionths.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Seconds, for request durations: 1 ms to 10 s.
pub const DURATION_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Rows per group commit.
pub const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The classes of routes request durations are kept for.
pub const ROUTES: [&str; 4] = ["click", "postback", "api", "static"];

/// What the server counts as it runs (since it started).
#[derive(Debug)]
pub struct Metrics {
    pub clicks_unique: AtomicU64,
    pub clicks_repeat: AtomicU64,
    pub clicks_bot: AtomicU64,
    postbacks: Mutex<BTreeMap<String, u64>>,
    /// One per entry of [`ROUTES`].
    pub http: [Histogram; 4],
    /// Connections open now, kept by the connection layer.
    pub connections_open: Arc<AtomicUsize>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            clicks_unique: AtomicU64::new(0),
            clicks_repeat: AtomicU64::new(0),
            clicks_bot: AtomicU64::new(0),
            postbacks: Mutex::default(),
            http: std::array::from_fn(|_| Histogram::new(DURATION_BOUNDS)),
            connections_open: Arc::default(),
        }
    }
}

impl Metrics {
    pub fn postback(&self, outcome: &str) {
        let mut counts = self.postbacks.lock().unwrap_or_else(|e| e.into_inner());
        // Outcomes are a fixed set of words; anything else is one bucket.
        let key = if outcome.len() <= 32 && outcome.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            outcome
        } else {
            "other"
        };
        *counts.entry(key.to_string()).or_default() += 1;
    }

    pub fn postbacks(&self) -> BTreeMap<String, u64> {
        self.postbacks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The request duration histogram of a path's route class.
    pub fn route(&self, path: &str) -> &Histogram {
        let class = if path.starts_with("/go/") || path.starts_with("/click/") {
            0
        } else if path.starts_with("/api/postback/") {
            1
        } else if path.starts_with("/api/") || path == "/metrics" {
            2
        } else {
            3
        };
        &self.http[class]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let h = Histogram::new(&[1.0, 5.0]);
        for v in [0.5, 1.0, 3.0, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render("x", "route=\"api\"", &mut out);
        assert_eq!(
            out,
            "x_bucket{route=\"api\",le=\"1\"} 2\nx_bucket{route=\"api\",le=\"5\"} 3\nx_bucket{route=\"api\",le=\"+Inf\"} 4\n\
             x_sum{route=\"api\"} 13.5\nx_count{route=\"api\"} 4\n"
        );
        let m = Metrics::default();
        m.postback("created");
        m.postback("created");
        m.postback("<script>");
        assert_eq!(m.postbacks().into_iter().collect::<Vec<_>>(), [("created".into(), 2), ("other".into(), 1)]);
        assert!(std::ptr::eq(m.route("/go/abc"), &m.http[0]));
        assert!(std::ptr::eq(m.route("/api/postback/conversion"), &m.http[1]));
        assert!(std::ptr::eq(m.route("/api/links"), &m.http[2]));
        assert!(std::ptr::eq(m.route("/assets/app.js"), &m.http[3]));
    }
}
