//! Retry timing: the schedule, full jitter and `Retry-After`.
//!
//! The schedule lists the base delay before each attempt: entry 0 before the
//! first (0 s: at once), entry 1 before the second, and so on; its length is
//! the number of attempts. Each delay is drawn uniformly from zero to its base
//! ("full jitter"), so that many deliveries failing together (a receiver
//! deploy) do not come back together. A receiver's `Retry-After` replaces the
//! drawn delay, within a cap.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rand::Rng;

/// The contract's default schedule: 0 s, 1 s, 5 s, 30 s, 2 min, 10 min,
/// 30 min, 1 h, 3 h, 6 h (ten attempts over about eleven hours at most).
pub const DEFAULT_SCHEDULE: &str = "0,1s,5s,30s,2m,10m,30m,1h,3h,6h";

/// The longest `Retry-After` honoured; a receiver asking for more waits this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Base delays before each attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    /// A schedule from its delays; must hold at least one entry.
    pub fn new(delays: Vec<Duration>) -> Option<Self> {
        (!delays.is_empty()).then_some(Self(delays))
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        self.0.len() as u32
    }

    /// The base delays.
    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// The delay before the next attempt, after `attempts_made` failed ones,
    /// or `None` when the schedule is exhausted and the delivery has failed.
    /// `retry_after` is the receiver's wish from its last answer.
    pub fn next_delay<R: Rng + ?Sized>(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Option<Duration> {
        let base = *self.0.get(attempts_made as usize)?;
        if let Some(wish) = retry_after {
            return Some(wish.min(MAX_RETRY_AFTER));
        }
        Some(full_jitter(base, rng))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        DEFAULT_SCHEDULE
            .parse()
            .expect("the default schedule parses")
    }
}

impl FromStr for RetrySchedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let delays = s
            .split(',')
            .map(|part| parse_duration(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        RetrySchedule::new(delays).ok_or_else(|| "the retry schedule is empty".to_owned())
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| format!("{}ms", d.as_millis()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A uniformly random duration from zero to `base`, inclusive.
pub fn full_jitter<R: Rng + ?Sized>(base: Duration, rng: &mut R) -> Duration {
    let nanos = base.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// Parses a duration as `humantime` writes them (`250ms`, `5s`, `2m`,
/// `1h`, `1m30s`), or a bare number of seconds (`0`, `1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(seconds) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("bad duration {s:?}: must be zero or more"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("bad duration {s:?} ({e}): expected e.g. 250ms, 5s, 2m, 1h"))
}

/// Reads a `Retry-After` value: whole seconds, or an HTTP date in any of
/// the three forms HTTP allows (a date in the past means "now"). Anything
/// else is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn default_schedule_is_the_contracts() {
        let s = RetrySchedule::default();
        let secs: Vec<u64> = s.delays().iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [0, 1, 5, 30, 120, 600, 1800, 3600, 10800, 21600]);
        assert_eq!(s.attempts(), 10);
    }

    #[test]
    fn parses_fast_schedules() {
        let s: RetrySchedule = "0,50ms,100ms".parse().unwrap();
        assert_eq!(
            s.delays(),
            [
                Duration::ZERO,
                Duration::from_millis(50),
                Duration::from_millis(100)
            ]
        );
        assert!("".parse::<RetrySchedule>().is_err());
        assert!("1x".parse::<RetrySchedule>().is_err());
        assert!("-1s".parse::<RetrySchedule>().is_err());
        assert!("-1".parse::<RetrySchedule>().is_err());
        let s: RetrySchedule = "1.5,2m,1h,1m30s".parse().unwrap();
        assert_eq!(
            s.delays(),
            [
                Duration::from_millis(1500),
                Duration::from_secs(120),
                Duration::from_secs(3600),
                Duration::from_secs(90)
            ]
        );
    }

    #[test]
    fn jitter_stays_within_the_base_and_spreads() {
        let s = RetrySchedule::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let d = s.next_delay(3, None, &mut rng).unwrap();
            assert!(d <= Duration::from_secs(30), "{d:?}");
            seen.push(d);
        }
        let low = seen
            .iter()
            .filter(|d| **d < Duration::from_secs(10))
            .count();
        let high = seen
            .iter()
            .filter(|d| **d > Duration::from_secs(20))
            .count();
        // Uniform on 0..30 s: about a third in each band.
        assert!((250..420).contains(&low), "{low}");
        assert!((250..420).contains(&high), "{high}");
        assert_eq!(s.next_delay(0, None, &mut rng), Some(Duration::ZERO));
    }

    #[test]
    fn exhausted_schedule_gives_none() {
        let s: RetrySchedule = "0,1s".parse().unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        assert!(s.next_delay(1, None, &mut rng).is_some());
        assert_eq!(s.next_delay(2, None, &mut rng), None);
        assert_eq!(
            s.next_delay(2, Some(Duration::from_secs(1)), &mut rng),
            None
        );
    }

    #[test]
    fn retry_after_replaces_the_jitter_and_is_capped() {
        let s = RetrySchedule::default();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            s.next_delay(1, Some(Duration::from_secs(7)), &mut rng),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            s.next_delay(1, Some(Duration::from_secs(86_400)), &mut rng),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn reads_retry_after_as_seconds_or_any_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // The two obsolete forms HTTP still asks receivers of dates to read.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:30 2015", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
