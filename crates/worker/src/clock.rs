//! Wall-clock helpers: the store keeps Unix milliseconds, the wire RFC 3339.
//!
//! Scheduling (retry delays, the progress throttle) does not use these: it
//! runs on `tokio::time`, which tests can pause and advance. Job leases are
//! judged by a [`Clock`], which tests can set by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use webhook_types::Timestamp;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Now, in whole Unix seconds, as the `webhook-timestamp` header wants it.
pub fn now_unix() -> i64 {
    Utc::now().timestamp()
}

/// A stored time as a wire timestamp; out-of-range values become the epoch.
pub fn timestamp_from_ms(ms: i64) -> Timestamp {
    Timestamp(DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default())
}

/// The wall clock that job leases are judged by: the system's, or one a test
/// sets and moves by hand, so that lease expiry, renewal and takeover are
/// tested without waiting for real time to pass.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: a manual clock's Unix milliseconds.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands at `start_ms` until moved.
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            None => now_ms(),
            Some(at) => at.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward (a system clock ignores this).
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(at) = &self.manual {
            at.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }
}
