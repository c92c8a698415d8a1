//! The one exponential backoff the services use outside the contract's
//! delivery schedule (which is the worker's `backoff` module): reconnecting
//! a LISTEN connection, retrying a terminal event's write, probing a callback
//! origin that is down, retrying a submission to the worker.

use std::time::Duration;

/// Delays that start at `first` and double with each failure, never above
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exponential {
    /// The delay after the first failure.
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Exponential {
    /// A backoff from `first` doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Exponential { first, max }
    }

    /// The delay after `failures` earlier failures (0 gives `first`).
    pub fn delay(&self, failures: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << failures.min(31))
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_delay_and_stops_at_the_cap() {
        let b = Exponential::new(Duration::from_millis(100), Duration::from_secs(5));
        let ms: Vec<u128> = (0..9).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
    }
}
