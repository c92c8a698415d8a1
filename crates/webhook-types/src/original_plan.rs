//! The original plan's webhook examples, as it wrote them.
//!
//! They are tests of this crate (each parses and serialises back to the same
//! JSON) and the examples of both services' OpenAPI documents, so a reader
//! of `/docs` sees the payloads the plan's own users know. They predate
//! `sequence`, which this project's worker always adds.

/// `job.started`.
pub const STARTED: &str = include_str!("../original_plan/started.json");
/// `job.progress` while transcribing.
pub const PROGRESS_TRANSCRIBING: &str = include_str!("../original_plan/progress_transcribing.json");
/// `job.progress` while rendering, with clip counts.
pub const PROGRESS_RENDERING: &str = include_str!("../original_plan/progress_rendering.json");
/// `job.completed`, with its output.
pub const COMPLETED: &str = include_str!("../original_plan/completed.json");
/// `job.failed`, with its error.
pub const FAILED: &str = include_str!("../original_plan/failed.json");

/// Every example with a short name, in the order a job meets them, and the
/// `sequence` each would carry from this project's worker.
pub const EXAMPLES: [(&str, &str, u64); 5] = [
    ("started", STARTED, 1),
    ("progress_transcribing", PROGRESS_TRANSCRIBING, 2),
    ("progress_rendering", PROGRESS_RENDERING, 3),
    ("completed", COMPLETED, 4),
    ("failed", FAILED, 4),
];
