//! Exponential backoff with jitter, bounded by a number of attempts.

use std::time::Duration;

use rand::Rng;

/// The delays between attempts: the n-th retry waits a random time in `[d/2, d]` where
/// `d = min(initial * 2^n, max)` ("equal jitter": workers that failed together do not retry
/// together, and no wait is shorter than half its step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, attempts: u32) -> Self {
        Self { initial, max: max.max(initial), attempts: attempts.max(1) }
    }

    /// The un-jittered step before retry `retry` (0 = the first retry).
    pub fn step(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial.checked_mul(factor).unwrap_or(self.max).min(self.max)
    }

    /// A delay at the cap, jittered like the others: the pace once the attempts are used up
    /// and the caller keeps going regardless.
    pub fn delay_at_cap(&self) -> Duration {
        let half = self.max / 2;
        half + Duration::from_millis(rand::thread_rng().gen_range(0..=(self.max - half).as_millis() as u64))
    }

    /// The delay before retry `retry`, or `None` when the attempts are used up (`retry` counts
    /// the attempts already failed, minus one).
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        if retry.saturating_add(1) >= self.attempts {
            return None;
        }
        let step = self.step(retry);
        let half = step / 2;
        let jitter = rand::thread_rng().gen_range(0..=(step - half).as_millis() as u64);
        Some(half + Duration::from_millis(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_and_stop_at_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000), 10);
        let steps: Vec<u64> = (0..6).map(|r| b.step(r).as_millis() as u64).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1_000, 1_000]);
        for retry in 0..8 {
            for _ in 0..50 {
                let d = b.delay(retry).unwrap();
                let step = b.step(retry);
                assert!(d >= step / 2 && d <= step, "retry {retry}: {d:?} outside [{:?}, {step:?}]", step / 2);
            }
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 4);
        // Attempts 1..=3 failed: three retries, then no more.
        assert!(b.delay(0).is_some());
        assert!(b.delay(1).is_some());
        assert!(b.delay(2).is_some());
        assert!(b.delay(3).is_none());
        assert!(Backoff::new(Duration::from_millis(1), Duration::from_millis(1), 0).delay(0).is_none(), "one attempt, no retry");
    }

    #[test]
    fn jitter_spreads_retries() {
        let b = Backoff::new(Duration::from_millis(1_000), Duration::from_millis(1_000), 3);
        let distinct: std::collections::BTreeSet<_> = (0..50).map(|_| b.delay(0).unwrap()).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn huge_retry_counts_do_not_overflow() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), u32::MAX);
        assert_eq!(b.step(200), Duration::from_secs(30));
        assert!(b.delay(1_000).unwrap() <= Duration::from_secs(30));
    }
}
