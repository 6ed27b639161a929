//! Token buckets with exact integer arithmetic, for the per-client refusal limit
//! ([`crate::refusals`]) and the quotas ([`crate::quotas`]).
//!
//! A bucket holds up to `burst` tokens and gains `amount` every `period`. Contents are counted
//! in millionths of a token and time in nanoseconds, so refilling and waiting times are exact
//! (a test can state them to the nanosecond), with no floating point drift.

use std::time::Duration;

use tokio::time::Instant;

/// Millionths of a token per token.
const MICRO: u128 = 1_000_000;

/// How fast a bucket fills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Tokens gained per `period`; zero never refills.
    pub(crate) amount: u64,
    pub(crate) period: Duration,
    /// The most a bucket holds (a new bucket starts full).
    pub(crate) burst: u64,
}

/// A token bucket: `micro` millionths of a token at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bucket {
    micro: u128,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn full(now: Instant, rate: &Rate) -> Self {
        Self {
            micro: u128::from(rate.burst) * MICRO,
            at: now,
        }
    }

    /// The bucket at `now`: refilled for the time since it was last looked at, up to the burst.
    pub(crate) fn refilled(self, now: Instant, rate: &Rate) -> Self {
        let period_ns = rate.period.as_nanos().max(1);
        let elapsed_ns = now.saturating_duration_since(self.at).as_nanos();
        let gained = elapsed_ns * u128::from(rate.amount) * MICRO / period_ns;
        let cap = u128::from(rate.burst) * MICRO;
        Self {
            micro: (self.micro + gained).min(cap),
            at: now.max(self.at),
        }
    }

    /// A bucket holding `micro` millionths of a token as of `at` (as a shared ledger stored it).
    pub(crate) fn with_micro(micro: u64, at: Instant) -> Self {
        Self {
            micro: u128::from(micro),
            at,
        }
    }

    /// Whether a whole token is in the bucket.
    pub(crate) fn has_one(self) -> bool {
        self.micro >= MICRO
    }

    /// Takes one token (or what is left of one).
    pub(crate) fn take_one(&mut self) {
        self.micro = self.micro.saturating_sub(MICRO);
    }

    pub(crate) fn is_full(self, rate: &Rate) -> bool {
        self.micro >= u128::from(rate.burst) * MICRO
    }

    /// How long until a whole token is in the bucket (zero if one is); `None` if it never
    /// refills.
    pub(crate) fn wait(self, rate: &Rate) -> Option<Duration> {
        let missing = MICRO.saturating_sub(self.micro);
        if missing == 0 {
            return Some(Duration::ZERO);
        }
        if rate.amount == 0 {
            return None;
        }
        // missing millionths at amount * MICRO per period_ns, rounded up.
        let per = u128::from(rate.amount) * MICRO;
        let ns = (missing * rate.period.as_nanos()).div_ceil(per);
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
        b.take_one();
        b.take_one();
        assert!(!b.has_one());
        // 1/3 s to the next token, rounded up to the nanosecond.
        assert_eq!(b.wait(&r), Some(Duration::from_nanos(333_333_334)));
        let b1 = b.refilled(t0 + Duration::from_millis(100), &r);
        assert!(!b1.has_one());
        assert_eq!(b1.wait(&r), Some(Duration::from_nanos(233_333_334)));
        let b2 = b.refilled(t0 + Duration::from_nanos(333_333_334), &r);
        assert!(b2.has_one());
        // Never more than the burst, however long it waits.
        let b3 = b.refilled(t0 + Duration::from_secs(86_400), &r);
        assert!(b3.is_full(&r));
        let mut b3 = b3;
        b3.take_one();
        b3.take_one();
        assert!(!b3.has_one());
    }

    #[test]
    fn slow_rates_and_no_refill() {
        // 10 per day.
        let day = rate(10, 86_400_000, 1);
        let t0 = Instant::now();
        let mut b = Bucket::full(t0, &day);
        b.take_one();
        assert_eq!(b.wait(&day), Some(Duration::from_secs(8640)));
        let never = rate(0, 1000, 1);
        let mut b = Bucket::full(t0, &never);
        b.take_one();
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
