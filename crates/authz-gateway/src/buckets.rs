//! Token buckets with exact integer arithmetic, for the per-client refusal limit
//! ([`crate::refusals`]) and the quotas ([`crate::quotas`]).
//!
//! A bucket holds up to `burst` tokens and gains `amount` every `period`. Contents are counted
//! in units of one token = `period` in nanoseconds, so a bucket gains exactly `amount` units per
//! nanosecond: refilling and waiting times are exact integers (a test can state them to the
//! nanosecond), with no rounding that accumulates.

use std::time::Duration;

use tokio::time::Instant;

/// How fast a bucket fills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Tokens gained per `period`; zero never refills.
    pub(crate) amount: u64,
    pub(crate) period: Duration,
    /// The most a bucket holds (a new bucket starts full).
    pub(crate) burst: u64,
}

impl Rate {
    /// Units per token: the period in nanoseconds (at least 1).
    fn token(&self) -> u128 {
        self.period.as_nanos().max(1)
    }

    fn capacity(&self) -> u128 {
        u128::from(self.burst) * self.token()
    }
}

/// A token bucket: `units` (see the module documentation) at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bucket {
    units: u128,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn full(now: Instant, rate: &Rate) -> Self {
        Self {
            units: rate.capacity(),
            at: now,
        }
    }

    /// A bucket holding `micro` millionths of a token as of `at` (as a shared ledger stores it).
    pub(crate) fn with_micro(micro: u64, at: Instant, rate: &Rate) -> Self {
        Self {
            units: (u128::from(micro) * rate.token() / 1_000_000).min(rate.capacity()),
            at,
        }
    }

    /// The bucket at `now`: refilled for the time since it was last looked at, up to the burst.
    pub(crate) fn refilled(self, now: Instant, rate: &Rate) -> Self {
        let elapsed_ns = now.saturating_duration_since(self.at).as_nanos();
        let gained = elapsed_ns.saturating_mul(u128::from(rate.amount));
        Self {
            units: self.units.saturating_add(gained).min(rate.capacity()),
            at: now.max(self.at),
        }
    }

    /// Whether a whole token is in the bucket.
    pub(crate) fn has_one(self, rate: &Rate) -> bool {
        self.units >= rate.token()
    }

    /// Takes one token (or what is left of one).
    pub(crate) fn take_one(&mut self, rate: &Rate) {
        self.units = self.units.saturating_sub(rate.token());
    }

    pub(crate) fn is_full(self, rate: &Rate) -> bool {
        self.units >= rate.capacity()
    }

    /// How long until a whole token is in the bucket (zero if one is); `None` if it never
    /// refills.
    pub(crate) fn wait(self, rate: &Rate) -> Option<Duration> {
        let missing = rate.token().saturating_sub(self.units);
        if missing == 0 {
            return Some(Duration::ZERO);
        }
        if rate.amount == 0 {
            return None;
        }
        let ns = missing.div_ceil(u128::from(rate.amount));
        Some(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)))
    }
}

/// Whole seconds for `Retry-After`, rounded up (at least 1: "now" would invite a busy retry).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(amount: u64, period_ms: u64, burst: u64) -> Rate {
        Rate {
            amount,
            period: Duration::from_millis(period_ms),
            burst,
        }
    }

    #[test]
    fn refill_and_wait_are_exact() {
        // 3 per second, burst 2.
        let r = rate(3, 1000, 2);
        let t0 = Instant::now();
        let mut b = Bucket::full(t0, &r);
        b.take_one(&r);
        b.take_one(&r);
        assert!(!b.has_one(&r));
        // 1/3 s to the next token, rounded up to the nanosecond.
        assert_eq!(b.wait(&r), Some(Duration::from_nanos(333_333_334)));
        let b1 = b.refilled(t0 + Duration::from_millis(100), &r);
        assert!(!b1.has_one(&r));
        assert_eq!(b1.wait(&r), Some(Duration::from_nanos(233_333_334)));
        let b2 = b.refilled(t0 + Duration::from_nanos(333_333_334), &r);
        assert!(b2.has_one(&r));
        // Never more than the burst, however long it waits.
        let b3 = b.refilled(t0 + Duration::from_secs(86_400), &r);
        assert!(b3.is_full(&r));
        let mut b3 = b3;
        b3.take_one(&r);
        b3.take_one(&r);
        assert!(!b3.has_one(&r));
    }

    #[test]
    fn many_small_refills_add_up_exactly() {
        // 7 per minute: a token every 8.571428... s, refilled every millisecond.
        let r = rate(7, 60_000, 1);
        let t0 = Instant::now();
        let mut b = Bucket::full(t0, &r);
        b.take_one(&r);
        for ms in 1..=8_000 {
            b = b.refilled(t0 + Duration::from_millis(ms), &r);
        }
        // 60/7 s = 8_571_428_571.4 ns after t0, rounded up: 571_428_572 ns after the 8 s.
        assert_eq!(b.wait(&r), Some(Duration::from_nanos(571_428_572)));
    }

    #[test]
    fn slow_rates_and_no_refill() {
        // 10 per day.
        let day = rate(10, 86_400_000, 1);
        let t0 = Instant::now();
        let mut b = Bucket::full(t0, &day);
        b.take_one(&day);
        assert_eq!(b.wait(&day), Some(Duration::from_secs(8640)));
        let never = rate(0, 1000, 1);
        let mut b = Bucket::full(t0, &never);
        b.take_one(&never);
        assert_eq!(
            b.refilled(t0 + Duration::from_secs(10), &never)
                .wait(&never),
            None
        );
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
