//! The progress throttle, as pure logic over instants the caller supplies.
//!
//! Rules (contract §1, `--progress-interval-ms`): at most one `job.progress`
//! per job per interval; a progress whose status differs from the last one
//! sent goes out at once; a progress held back is sent when the interval
//! ends (trailing edge), unless a newer event overtakes it first, in which
//! case it is dropped. The caller owns the timer: it asks
//! [`Throttle::deadline`] when to call [`Throttle::flush_due`] next.

use std::time::Duration;

use tokio::time::Instant;

/// Throttle state for one job's progress events of type `T`.
#[derive(Debug)]
pub struct Throttle<T> {
    /// Minimum spacing between two sent progress events.
    interval: Duration,
    /// When the last progress event was sent, if any.
    last_sent: Option<Instant>,
    /// The newest progress held back, waiting for the interval to end.
    held: Option<T>,
}

impl<T> Throttle<T> {
    /// A throttle with the given spacing; zero lets everything through.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            held: None,
        }
    }

    /// Offers a progress event at `now`. Returns it when it must be sent now,
    /// or `None` when it is held (replacing any older held one).
    /// `status_changed` says whether its status differs from the previous
    /// event sent for the job.
    pub fn offer(&mut self, now: Instant, item: T, status_changed: bool) -> Option<T> {
        let window_open = match self.last_sent {
            None => true,
            Some(at) => now.duration_since(at) >= self.interval,
        };
        if status_changed || window_open {
            // This event is newer than anything held: the held one is overtaken.
            self.held = None;
            self.last_sent = Some(now);
            Some(item)
        } else {
            self.held = Some(item);
            None
        }
    }

    /// When the held event is due, if one is held.
    pub fn deadline(&self) -> Option<Instant> {
        match (&self.held, self.last_sent) {
            (Some(_), Some(at)) => Some(at + self.interval),
            (Some(_), None) => Some(Instant::now()),
            (None, _) => None,
        }
    }

    /// Takes the held event if its interval has ended by `now`.
    pub fn flush_due(&mut self, now: Instant) -> Option<T> {
        let due = self.deadline()?;
        if now < due {
            return None;
        }
        self.last_sent = Some(now);
        self.held.take()
    }

    /// Drops the held event: a newer non-progress event (a terminal one)
    /// overtook it.
    pub fn discard(&mut self) -> Option<T> {
        self.held.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_millis(1000);

    #[tokio::test(start_paused = true)]
    async fn first_goes_through_then_at_most_one_per_interval() {
        let t0 = Instant::now();
        let mut t = Throttle::new(I);
        assert_eq!(t.offer(t0, 1, false), Some(1));
        assert_eq!(t.offer(t0 + Duration::from_millis(100), 2, false), None);
        assert_eq!(t.offer(t0 + Duration::from_millis(200), 3, false), None);
        // The newest held one waits for the end of the interval.
        assert_eq!(t.deadline(), Some(t0 + I));
        assert_eq!(t.flush_due(t0 + Duration::from_millis(999)), None);
        assert_eq!(t.flush_due(t0 + I), Some(3));
        assert_eq!(t.deadline(), None);
        // The flush opened a new interval.
        assert_eq!(t.offer(t0 + I + Duration::from_millis(10), 4, false), None);
        assert_eq!(t.offer(t0 + I * 2, 5, false), Some(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_status_change_is_sent_at_once_and_overtakes_the_held_one() {
        let t0 = Instant::now();
        let mut t = Throttle::new(I);
        assert_eq!(t.offer(t0, "a1", false), Some("a1"));
        assert_eq!(t.offer(t0 + Duration::from_millis(5), "a2", false), None);
        assert_eq!(
            t.offer(t0 + Duration::from_millis(6), "b1", true),
            Some("b1")
        );
        // a2 was overtaken: nothing is due any more.
        assert_eq!(t.deadline(), None);
        assert_eq!(t.flush_due(t0 + I * 5), None);
    }

    #[tokio::test(start_paused = true)]
    async fn discard_drops_the_held_event() {
        let t0 = Instant::now();
        let mut t = Throttle::new(I);
        t.offer(t0, 1, false);
        t.offer(t0, 2, false);
        assert_eq!(t.discard(), Some(2));
        assert_eq!(t.flush_due(t0 + I), None);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_interval_lets_everything_through() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::ZERO);
        for i in 0..10 {
            assert_eq!(t.offer(t0, i, false), Some(i));
        }
    }
}
