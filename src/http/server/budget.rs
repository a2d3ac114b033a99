//! The bytes of request bodies held in memory at once, across all
//! connections (`server.max_body_memory_bytes`): a body that would go over
//! is refused with 503 instead of being read.

use std::sync::atomic::{AtomicU64, Ordering};

pub(super) struct Budget {
    limit: u64,
    held: AtomicU64,
}

/// A share of the budget, given back when dropped (with the body it holds).
pub(super) struct Lease<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Budget {
        Budget { limit, held: AtomicU64::new(0) }
    }

    /// An empty lease, to grow as a body arrives.
    pub(super) fn lease(&self) -> Lease<'_> {
        Lease { budget: self, bytes: 0 }
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }
}

impl Lease<'_> {
    /// Takes `bytes` more; false (and nothing taken) if that would pass
    /// the limit.
    pub(super) fn grow(&mut self, bytes: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let budget = self.budget;
        let taken = budget.held.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
            held.checked_add(bytes).filter(|&total| total <= budget.limit)
        });
        if taken.is_ok() {
            self.bytes += bytes;
        }
        taken.is_ok()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.held.fetch_sub(self.bytes, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_take_up_to_the_limit_and_give_back_when_dropped() {
        let budget = Budget::new(100);
        let mut a = budget.lease();
        assert!(a.grow(60));
        let mut b = budget.lease();
        assert!(!b.grow(50), "over the limit");
        assert!(b.grow(40));
        assert!(!b.grow(1));
        assert!(!b.grow(u64::MAX), "no overflow");
        drop(a);
        assert_eq!(budget.held(), 40);
        assert!(b.grow(60));
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
