//! Wall-clock helpers: the store keeps Unix milliseconds, the wire RFC 3339.
//!
//! Scheduling (retry delays, the progress throttle) does not use these: it
//! runs on `tokio::time`, which tests can pause and advance.

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
