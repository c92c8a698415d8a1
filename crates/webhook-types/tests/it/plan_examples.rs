//! Every JSON example of the original design document parses and serialises
//! back to the same JSON value.

use serde_json::Value;
use webhook_types::{Event, PipelineStatus, WebhookPayload, parse_json};

/// The examples with their names (the sequence is for the OpenAPI documents).
fn examples() -> impl Iterator<Item = (&'static str, &'static str)> {
    webhook_types::original_plan::EXAMPLES
        .into_iter()
        .map(|(name, text, _)| (name, text))
}

#[test]
fn every_original_plan_example_round_trips_to_the_same_json_value() {
    for (name, text) in examples() {
        let parsed: WebhookPayload =
            parse_json(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = serde_json::to_value(&parsed).unwrap();
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, original, "{name} changed in a round trip");
    }
}

#[test]
fn original_plan_examples_carry_the_expected_meaning() {
    let started: WebhookPayload =
        parse_json(webhook_types::original_plan::EXAMPLES[0].1.as_bytes()).unwrap();
    assert_eq!(started.event, Event::Started);
    assert_eq!(started.status, PipelineStatus::Downloading);
    assert_eq!(started.progress_percent.get(), 0.0);
    assert_eq!(
        started.external_job_id.as_deref(),
        Some("user-submitted-id")
    );
    assert_eq!(started.sequence, None);

    let rendering: WebhookPayload =
        parse_json(webhook_types::original_plan::EXAMPLES[2].1.as_bytes()).unwrap();
    assert_eq!(rendering.clips_completed, Some(2));
    assert_eq!(rendering.total_clips, Some(5));

    let completed: WebhookPayload =
        parse_json(webhook_types::original_plan::EXAMPLES[3].1.as_bytes()).unwrap();
    let output = completed.output.expect("completed carries output");
    assert_eq!(output.clips.len(), 2);
    assert_eq!(output.clips[1].virality_score.get(), 0.87);
    assert_eq!(output.source_video_duration_seconds, 1847.5);
    assert_eq!(output.created_at.to_string(), "2025-01-15T10:38:00Z");

    let failed: WebhookPayload =
        parse_json(webhook_types::original_plan::EXAMPLES[4].1.as_bytes()).unwrap();
    assert_eq!(failed.event, Event::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("Failed to download video: Video is unavailable or private")
    );
}

#[test]
fn optional_fields_are_omitted_never_null() {
    let started: WebhookPayload =
        parse_json(webhook_types::original_plan::EXAMPLES[0].1.as_bytes()).unwrap();
    let text = serde_json::to_string(&started).unwrap();
    assert!(!text.contains("null"), "{text}");
    assert!(!text.contains("clips_completed"), "{text}");
    assert!(!text.contains("sequence"), "{text}");
}
