//! Bounded exponential backoff within a deadline, with jitter so that the
//! clients of a failed leader do not all return at once.

use std::time::{Duration, Instant};

/// The retry budget of one request.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    deadline: Instant,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Delays start near `base`, double per attempt up to `max`, and stop at
    /// `deadline`. `seed` drives the jitter (any value; 0 is replaced).
    pub fn new(base: Duration, max: Duration, deadline: Instant, seed: u64) -> Self {
        Self { base, max, deadline, attempt: 0, rng: seed.max(1) }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// How long to wait before the next attempt, or `None` when the
    /// deadline leaves no time for one (waiting would overshoot it).
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        let cap = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt += 1;
        // "Equal jitter": half the step fixed, half random.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = cap / 2;
        let jitter = Duration::from_nanos(self.rng % (half.as_nanos() as u64).max(1));
        let delay = half + jitter;
        (now + delay < self.deadline).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_stop_at_the_deadline() {
        let now = Instant::now();
        let base = Duration::from_millis(2);
        let max = Duration::from_millis(100);
        let mut b = Backoff::new(base, max, now + Duration::from_secs(1), 7);
        let mut prev_cap = Duration::ZERO;
        let mut total = Duration::ZERO;
        while let Some(d) = b.next_delay(now + total) {
            let cap = base.saturating_mul(1u32 << (b.attempts() - 1).min(20)).min(max);
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {}: {d:?} outside [{:?}, {cap:?}]",
                b.attempts(),
                cap / 2
            );
            assert!(cap >= prev_cap);
            prev_cap = cap;
            total += d;
        }
        assert!(total < Duration::from_secs(1), "waited past the deadline: {total:?}");
        assert!(b.attempts() > 5, "gave up early after {} attempts", b.attempts());
        assert_eq!(prev_cap, max);
    }
}
