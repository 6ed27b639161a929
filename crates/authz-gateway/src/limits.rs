//! Per-principal concurrency limit: how many requests (including open SSE streams) one principal
//! may have in flight through the gateway at once. A permit lives as long as the response body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sessions::Owner;

/// Counts in-flight requests per principal.
#[derive(Debug)]
pub(crate) struct InFlight {
    counts: Mutex<HashMap<Owner, usize>>,
    /// `server.max_in_flight_per_principal`; a `SIGHUP` reload may change it.
    max: AtomicUsize,
}

/// The request body limits (`server.max_body_bytes`, `server.body_read_timeout_ms`), read per
/// request so a `SIGHUP` reload applies them to the next one.
#[derive(Debug)]
pub(crate) struct BodyLimits {
    max_bytes: AtomicUsize,
    read_timeout_ms: AtomicU64,
}

impl BodyLimits {
    pub(crate) fn new(max_bytes: usize, read_timeout: Duration) -> Self {
        let limits = Self {
            max_bytes: AtomicUsize::new(0),
            read_timeout_ms: AtomicU64::new(0),
        };
        limits.set(max_bytes, read_timeout);
        limits
    }

    pub(crate) fn set(&self, max_bytes: usize, read_timeout: Duration) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        let ms = u64::try_from(read_timeout.as_millis()).unwrap_or(u64::MAX);
        self.read_timeout_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms.load(Ordering::Relaxed))
    }
}

/// One in-flight request; released when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<InFlight>,
    owner: Owner,
}

impl InFlight {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(HashMap::new()),
            max: AtomicUsize::new(max.max(1)),
        })
    }

    /// Sets the limit for permits taken from now on (those held stay held).
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
    }

    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Owner, usize>> {
        // Each critical section is a single counter update, so a poisoned map is still sound.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A permit, or `None` when the principal already has `max` requests in flight.
    pub(crate) fn try_acquire(self: &Arc<Self>, owner: Owner) -> Option<Permit> {
        let mut counts = self.lock();
        let n = counts.entry(owner.clone()).or_insert(0);
        if *n >= self.max() {
            return None;
        }
        *n += 1;
        Some(Permit {
            limiter: self.clone(),
            owner,
        })
    }

    /// Requests (and open streams) in flight, for everyone.
    pub(crate) fn total(&self) -> usize {
        self.lock().values().sum()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.limiter.lock();
        if let Some(n) = counts.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::test_principal;

    fn owner(sub: &str) -> Owner {
        Owner::of(&test_principal(sub))
    }

    #[test]
    fn permits_are_per_principal_and_released_on_drop() {
        let l = InFlight::new(2);
        let a1 = l.try_acquire(owner("a")).expect("first");
        let _a2 = l.try_acquire(owner("a")).expect("second");
        assert!(
            l.try_acquire(owner("a")).is_none(),
            "third is over the limit"
        );
        assert!(l.try_acquire(owner("b")).is_some(), "others are unaffected");
        l.set_max(3);
        let a3 = l.try_acquire(owner("a")).expect("a reloaded, higher limit");
        l.set_max(2);
        assert!(l.try_acquire(owner("a")).is_none(), "and a lower one");
        drop(a3);
        drop(a1);
        assert!(
            l.try_acquire(owner("a")).is_some(),
            "a released permit frees a slot"
        );
        assert_eq!(l.total(), 1, "only _a2 remains (the others were dropped)");
    }
}
