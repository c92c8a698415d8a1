//! The job request: the original plan's defaults and the contract's bounds.

use serde_json::json;
use webhook_types::{ClippingJobRequest, ParseErrorKind, parse_json};

fn parse(v: serde_json::Value) -> Result<ClippingJobRequest, webhook_types::ParseError> {
    parse_json(&serde_json::to_vec(&v).unwrap())
}

#[test]
fn the_original_plans_manual_test_request_gets_its_defaults() {
    let req = parse(json!({
        "video_url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "callback_url": "https://webhook.example/your-unique-id",
        "max_clips": 1
    }))
    .unwrap();
    assert_eq!(req.max_clips, 1);
    assert_eq!(req.min_clip_duration_seconds, 15);
    assert_eq!(req.max_clip_duration_seconds, 90);
    assert_eq!(req.target_platform, "tiktok");
    assert!(req.include_captions);
    assert_eq!(req, {
        let mut r = ClippingJobRequest::new("https://www.youtube.com/watch?v=dQw4w9WgXcQ");
        r.callback_url = Some("https://webhook.example/your-unique-id".into());
        r.max_clips = 1;
        r
    });
}

#[test]
fn each_bound_is_enforced_with_its_field() {
    let base = || json!({"video_url": "https://v.example/a.mp4"});
    let cases = [
        ("max_clips", json!(0), "max_clips"),
        ("max_clips", json!(21), "max_clips"),
        ("max_clips", json!(-1), "max_clips"),
        (
            "min_clip_duration_seconds",
            json!(4),
            "min_clip_duration_seconds",
        ),
        (
            "max_clip_duration_seconds",
            json!(601),
            "max_clip_duration_seconds",
        ),
        (
            "min_clip_duration_seconds",
            json!(100),
            "min_clip_duration_seconds",
        ),
        ("callback_url", json!("ftp://x.example/"), "callback_url"),
        ("callback_url", json!("not a url"), "callback_url"),
        ("video_url", json!("nope"), "video_url"),
        ("external_job_id", json!(""), "external_job_id"),
        ("include_captions", json!("yes"), "include_captions"),
    ];
    for (key, value, field) in cases {
        let mut v = base();
        v[key] = value.clone();
        let err = parse(v).expect_err(&format!("{key}={value} must be refused"));
        assert_eq!(err.kind, ParseErrorKind::Invalid);
        assert_eq!(err.field.as_deref(), Some(field), "{key}={value}: {err}");
    }
}

#[test]
fn a_missing_video_url_is_named() {
    let err = parse(json!({"max_clips": 2})).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("video_url"));
}

#[test]
fn bounds_themselves_are_allowed() {
    let req = parse(json!({
        "video_url": "https://v.example/a.mp4",
        "max_clips": 20,
        "min_clip_duration_seconds": 5,
        "max_clip_duration_seconds": 600
    }))
    .unwrap();
    assert_eq!(req.max_clips, 20);
    let req = parse(json!({
        "video_url": "file:///tmp/a.mp4",
        "max_clips": 1,
        "min_clip_duration_seconds": 30,
        "max_clip_duration_seconds": 30
    }))
    .unwrap();
    assert_eq!(req.min_clip_duration_seconds, 30);
}
