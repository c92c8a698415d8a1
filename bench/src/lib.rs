//! Shared helpers of the benchmark drivers.
