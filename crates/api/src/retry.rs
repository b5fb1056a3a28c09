//! Retry timing shared by everything that talks to a peer that may be away for a while.

use std::time::Duration;

/// Capped exponential backoff with jitter (SPEC §7 faults). The HTTP client retries idempotent calls
/// on connection errors, timeouts and 502/503/504 (every call when the connection could not be
/// established); the reconciler restarts an interrupted pass from its committed point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts of one call, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The delay before the second attempt; it doubles for each attempt after.
    pub initial_backoff: Duration,
    /// The longest delay between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries: every call is tried once.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The capped backoff after failed attempt number `attempt` (1-based), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_backoff.saturating_mul(1u32 << doublings).min(self.max_backoff)
    }

    /// The delay after failed attempt number `attempt`: the backoff with "equal jitter" — a uniform
    /// draw from its upper half, so that clients that failed together do not retry together. A
    /// server's `Retry-After` raises it, within `max_backoff`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff(attempt);
        let half = backoff / 2;
        let jittered = half + half.mul_f64(unit_random());
        match retry_after {
            Some(wanted) => jittered.max(wanted.min(self.max_backoff)),
            None => jittered,
        }
    }
}

/// A uniform draw from [0, 1), from a v4 uuid's random bits (no extra dependency for jitter).
fn unit_random() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let ms: Vec<u128> = (1..=8).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(policy.backoff(u32::MAX), policy.max_backoff, "no overflow on huge attempt numbers");
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_backoff() {
        let policy = RetryPolicy::default();
        for attempt in 1..=6 {
            let backoff = policy.backoff(attempt);
            for _ in 0..50 {
                let delay = policy.delay(attempt, None);
                assert!(delay >= backoff / 2 && delay <= backoff, "{delay:?} for backoff {backoff:?}");
            }
        }
    }

    #[test]
    fn retry_after_raises_the_delay_within_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3600))), policy.max_backoff);
        assert!(policy.delay(1, Some(Duration::ZERO)) >= Duration::from_millis(50));
    }
}
