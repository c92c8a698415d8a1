//! Property tests: any valid payload survives serialisation and parsing.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use webhook_types::{
    ClipArtifact, Event, JobOutput, PipelineStatus, ProgressPercent, Timestamp, ViralityScore,
    WebhookPayload, parse_json,
};

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // Whole seconds and milliseconds both occur on the wire.
    (0i64..4_000_000_000, prop_oneof![Just(0u32), 0u32..1000])
        .prop_map(|(s, ms)| Timestamp(Utc.timestamp_opt(s, ms * 1_000_000).unwrap()))
}

fn text() -> impl Strategy<Value = String> {
    // Unicode, quotes, backslashes and SQL metacharacters included.
    prop_oneof![
        any::<String>(),
        "[a-z0-9'\";\\-]{1,20}".prop_map(String::from)
    ]
}

fn clip(index: u32) -> impl Strategy<Value = ClipArtifact> {
    (
        text(),
        0u64..10_000_000,
        0u64..100_000_000,
        0u64..1_000_000,
        0.0f64..=1.0,
        text(),
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::vec(text(), 0..4)),
    )
        .prop_map(
            move |(url, dur, start, len, score, layout, summary, tags)| ClipArtifact {
                clip_index: index,
                s3_url: url,
                duration_ms: dur,
                start_time_ms: start,
                end_time_ms: start + len,
                virality_score: ViralityScore::new(score).unwrap(),
                layout_type: layout,
                summary,
                tags,
            },
        )
}

fn output() -> impl Strategy<Value = JobOutput> {
    (0u32..5)
        .prop_flat_map(|n| {
            let clips: Vec<_> = (0..n).map(clip).collect();
            (
                clips,
                text(),
                text(),
                0.0f64..100_000.0,
                0.0f64..10_000.0,
                timestamp(),
                proptest::option::of(text()),
            )
        })
        .prop_map(
            |(clips, job_id, title, dur, took, created, transcript)| JobOutput {
                job_id,
                source_video_url: "https://v.example/a.mp4".into(),
                source_video_title: title,
                source_video_duration_seconds: dur,
                total_clips: clips.len() as u32,
                clips,
                transcript_url: transcript,
                plan_url: None,
                processing_time_seconds: took,
                created_at: created,
            },
        )
}

fn payload() -> impl Strategy<Value = WebhookPayload> {
    let running = prop_oneof![
        Just(PipelineStatus::Downloading),
        Just(PipelineStatus::Transcribing),
        Just(PipelineStatus::Planning),
        Just(PipelineStatus::Detecting),
        Just(PipelineStatus::Rendering),
        Just(PipelineStatus::Uploading),
    ];
    (
        0usize..4,
        running,
        timestamp(),
        "[a-z0-9-]{1,36}",
        proptest::option::of(text()),
        proptest::option::of(text()),
        0.0f64..=100.0,
        text(),
        proptest::option::of((0u32..20, 0u32..20)),
        output(),
        text(),
        1u64..u64::MAX,
    )
        .prop_map(
            |(ev, running, ts, job_id, ext, owner, pct, step, counts, out, err, seq)| {
                let event = Event::ALL[ev];
                let (status, progress, output, error) = match event {
                    Event::Completed => (PipelineStatus::Completed, 100.0, Some(out), None),
                    Event::Failed => (PipelineStatus::Failed, pct, None, Some(err)),
                    _ => (running, pct, None, None),
                };
                let (done, total) = match counts {
                    Some((a, b)) => (Some(a.min(b)), Some(a.max(b))),
                    None => (None, None),
                };
                WebhookPayload {
                    event,
                    timestamp: ts,
                    job_id,
                    external_job_id: ext,
                    owner_user_id: owner,
                    status,
                    progress_percent: ProgressPercent::new(progress).unwrap(),
                    current_step: step,
                    clips_completed: done,
                    total_clips: total,
                    error,
                    output,
                    sequence: Some(seq),
                }
            },
        )
}

proptest! {
    #[test]
    fn any_valid_payload_round_trips(p in payload()) {
        let bytes = serde_json::to_vec(&p).unwrap();
        let back: WebhookPayload = parse_json(&bytes).unwrap();
        prop_assert_eq!(&back, &p);
        // And the bytes are stable: serialising again gives the same body.
        prop_assert_eq!(serde_json::to_vec(&back).unwrap(), bytes.clone());
        prop_assert!(!String::from_utf8(bytes).unwrap().contains(":null"));
    }

    #[test]
    fn timestamps_are_written_in_utc_with_z(t in timestamp()) {
        let s = t.to_string();
        prop_assert!(s.ends_with('Z'), "{}", s);
        let back: Timestamp = serde_json::from_value(serde_json::Value::String(s)).unwrap();
        prop_assert_eq!(back, t);
    }
}

#[test]
fn offsets_are_converted_to_utc() {
    let t: Timestamp = serde_json::from_str("\"2025-01-15T12:30:00+02:00\"").unwrap();
    assert_eq!(t.to_string(), "2025-01-15T10:30:00Z");
}
