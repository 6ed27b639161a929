//! A small HDR-style log-linear histogram of latencies in nanoseconds.
//!
//! Values below `2 * SUB` are counted exactly; above, every power of two is split into `SUB`
//! equal buckets, so a bucket is at most 1/`SUB` (≈ 0.8 %) of its value wide. Percentiles report
//! the highest value a bucket holds (like HdrHistogram's "highest equivalent value"), capped at
//! the largest value recorded, so they never understate a latency.

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 7;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every `u64`: the exact range `0..2*SUB`, then `SUB` per remaining power of two.
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// Counts of recorded values per log-linear bucket, plus exact count, sum, min and max.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The bucket holding `value`.
fn index(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let shift = 63 - value.leading_zeros() - SUB_BITS;
    let mantissa = value >> shift;
    (SUB as usize) * (shift as usize + 1) + (mantissa - SUB) as usize
}

/// The lowest and highest value bucket `index` holds.
fn bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * SUB {
        return (index, index);
    }
    let shift = index / SUB - 1;
    let mantissa = index % SUB + SUB;
    let low = mantissa << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    /// Counts one value.
    pub(crate) fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value `other` counted.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub(crate) fn len(&self) -> u64 {
        self.total
    }

    /// The smallest value recorded (0 when empty).
    pub(crate) fn min(&self) -> u64 {
        if self.total == 0 { 0 } else { self.min }
    }

    /// The largest value recorded (0 when empty).
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The mean of the recorded values (0 when empty).
    pub(crate) fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at percentile `p` (0–100): the smallest bucket bound at or below which at least
    /// `p` % of the values lie. 0 when empty.
    pub(crate) fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // The tiny shrink keeps float noise (99.9 / 100 * 10_000 = 9990.000…02) from asking for
        // one value more than the percentile covers.
        let wanted =
            (p.clamp(0.0, 100.0) * self.total as f64 / 100.0 * (1.0 - 1e-12)).ceil() as u64;
        let wanted = wanted.max(1);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return bounds(i).1.min(self.max).max(self.min);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_narrow_bucket_that_holds_it() {
        let mut value = 0u64;
        while value < u64::MAX / 3 {
            let (low, high) = bounds(index(value));
            assert!(
                low <= value && value <= high,
                "{value} not in [{low}, {high}]"
            );
            assert!(
                (high - low) as f64 <= value as f64 / SUB as f64,
                "bucket of {value} too wide: [{low}, {high}]"
            );
            value = value + value / 4 + 1;
        }
        assert!(index(u64::MAX) < BUCKETS);
        assert_eq!(bounds(index(u64::MAX)).1, u64::MAX);
    }

    #[test]
    fn buckets_are_contiguous() {
        for i in 1..BUCKETS {
            assert_eq!(bounds(i - 1).1 + 1, bounds(i).0, "gap before bucket {i}");
        }
    }

    #[test]
    fn percentiles_of_a_uniform_run_are_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1_000);
        }
        for (p, exact) in [
            (50.0, 50_000_000.0),
            (90.0, 90_000_000.0),
            (99.0, 99_000_000.0),
            (99.9, 99_900_000.0),
        ] {
            let got = h.percentile(p) as f64;
            assert!(
                got >= exact && got <= exact * 1.01,
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(h.percentile(100.0), 100_000_000);
        // The lowest bucket reports its upper bound: within 1 % of the smallest value.
        assert!((1_000..=1_010).contains(&h.percentile(0.0)));
        assert_eq!(h.len(), 100_000);
        assert!((h.mean() - 50_000_500.0).abs() < 1.0);
    }

    #[test]
    fn a_rare_stall_shows_in_the_tail_not_the_median() {
        let mut h = Histogram::default();
        for _ in 0..9_990 {
            h.record(100_000);
        }
        for _ in 0..10 {
            h.record(50_000_000);
        }
        assert!(h.percentile(50.0) <= 101_000);
        assert!(h.percentile(99.0) <= 101_000);
        // 10 of 10,000 values: the 99.9th percentile is still the fast one, just above it stalls.
        assert!(h.percentile(99.9) <= 101_000);
        assert_eq!(h.percentile(99.95), 50_000_000);
        assert_eq!(h.max(), 50_000_000);
    }

    #[test]
    fn merging_equals_recording_into_one() {
        let (mut a, mut b, mut both) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 0..5_000u64 {
            let value = v * v;
            if v % 3 == 0 {
                a.record(value);
            } else {
                b.record(value);
            }
            both.record(value);
        }
        a.merge(&b);
        for p in [1.0, 50.0, 99.0, 99.9, 100.0] {
            assert_eq!(a.percentile(p), both.percentile(p));
        }
        assert_eq!(
            (a.min(), a.max(), a.len()),
            (both.min(), both.max(), both.len())
        );
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let h = Histogram::default();
        assert_eq!(
            (h.percentile(50.0), h.min(), h.max(), h.len()),
            (0, 0, 0, 0)
        );
        assert_eq!(h.mean(), 0.0);
    }
}
