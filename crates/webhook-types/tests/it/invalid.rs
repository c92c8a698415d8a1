//! Untrusted JSON that must be refused, with the right kind and field.

use serde_json::{Value, json};
use webhook_types::{ParseErrorKind, WebhookPayload, parse_json};

fn completed() -> Value {
    serde_json::from_str(include_str!("../../original_plan/completed.json")).unwrap()
}

fn progress() -> Value {
    serde_json::from_str(include_str!("../../original_plan/progress_rendering.json")).unwrap()
}

/// Parses `v` and returns the field the refusal names.
fn refused_field(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap();
    let err = parse_json::<WebhookPayload>(&bytes).expect_err("must be refused");
    assert_eq!(err.kind, ParseErrorKind::Invalid, "{err}");
    err.field
        .clone()
        .unwrap_or_else(|| panic!("no field named in {err}"))
}

#[test]
fn unknown_event_is_refused_naming_event() {
    let mut v = progress();
    v["event"] = json!("job.exploded");
    assert_eq!(refused_field(&v), "event");
}

#[test]
fn unknown_status_is_refused_naming_status() {
    let mut v = progress();
    v["status"] = json!("dancing");
    assert_eq!(refused_field(&v), "status");
}

#[test]
fn progress_outside_0_to_100_is_refused() {
    for bad in [
        json!(-1),
        json!(100.5),
        json!(101),
        json!(1e300),
        json!("50"),
    ] {
        let mut v = progress();
        v["progress_percent"] = bad.clone();
        assert_eq!(refused_field(&v), "progress_percent", "{bad}");
    }
}

#[test]
fn negative_durations_and_counts_are_refused() {
    let cases = [
        ("/output/clips/0/duration_ms", "output.clips[0].duration_ms"),
        (
            "/output/clips/1/start_time_ms",
            "output.clips[1].start_time_ms",
        ),
        ("/output/clips/0/end_time_ms", "output.clips[0].end_time_ms"),
        (
            "/output/source_video_duration_seconds",
            "output.source_video_duration_seconds",
        ),
        (
            "/output/processing_time_seconds",
            "output.processing_time_seconds",
        ),
        ("/clips_completed", "clips_completed"),
    ];
    for (pointer, field) in cases {
        let mut v = completed();
        *v.pointer_mut(pointer).unwrap() = json!(-5);
        assert_eq!(refused_field(&v), field, "{pointer}");
    }
}

#[test]
fn clip_ending_before_it_starts_is_refused() {
    let mut v = completed();
    v["output"]["clips"][1]["end_time_ms"] = json!(1000);
    assert_eq!(refused_field(&v), "output.clips[1].end_time_ms");
}

#[test]
fn virality_outside_0_to_1_is_refused() {
    for bad in [json!(1.01), json!(-0.1), json!(92)] {
        let mut v = completed();
        v["output"]["clips"][0]["virality_score"] = bad.clone();
        assert_eq!(refused_field(&v), "output.clips[0].virality_score", "{bad}");
    }
}

#[test]
fn wrong_types_are_refused_naming_the_field() {
    let mut v = progress();
    v["clips_completed"] = json!("two");
    assert_eq!(refused_field(&v), "clips_completed");
    let mut v = progress();
    v["job_id"] = json!(42);
    assert_eq!(refused_field(&v), "job_id");
    let mut v = completed();
    v["output"]["clips"][0]["tags"] = json!("business");
    assert_eq!(refused_field(&v), "output.clips[0].tags");
}

#[test]
fn missing_required_fields_are_named() {
    let mut v = progress();
    v.as_object_mut().unwrap().remove("current_step");
    assert_eq!(refused_field(&v), "current_step");
    let mut v = completed();
    v["output"].as_object_mut().unwrap().remove("clips");
    assert_eq!(refused_field(&v), "output.clips");
}

#[test]
fn bad_timestamps_are_refused() {
    for bad in ["yesterday", "2025-01-15 10:30:00", "2025-13-01T00:00:00Z"] {
        let mut v = progress();
        v["timestamp"] = json!(bad);
        assert_eq!(refused_field(&v), "timestamp", "{bad}");
    }
}

#[test]
fn event_and_status_must_agree() {
    let mut v = completed();
    v["status"] = json!("rendering");
    assert_eq!(refused_field(&v), "status");
    let mut v = progress();
    v["status"] = json!("completed");
    assert_eq!(refused_field(&v), "status");
}

#[test]
fn terminal_events_carry_their_payload() {
    let mut v = completed();
    v.as_object_mut().unwrap().remove("output");
    assert_eq!(refused_field(&v), "output");
    let mut v = completed();
    v["progress_percent"] = json!(99);
    assert_eq!(refused_field(&v), "progress_percent");
    let mut v: Value =
        serde_json::from_str(include_str!("../../original_plan/failed.json")).unwrap();
    v.as_object_mut().unwrap().remove("error");
    assert_eq!(refused_field(&v), "error");
}

#[test]
fn inconsistent_counts_are_refused() {
    let mut v = progress();
    v["clips_completed"] = json!(6);
    assert_eq!(refused_field(&v), "clips_completed");
    let mut v = completed();
    v["output"]["clips"][1]["clip_index"] = json!(0);
    assert_eq!(refused_field(&v), "output.clips[1].clip_index");
    let mut v = progress();
    v["sequence"] = json!(0);
    assert_eq!(refused_field(&v), "sequence");
}

#[test]
fn malformed_json_is_a_syntax_error() {
    let trailing = format!("{} x", include_str!("../../original_plan/started.json"));
    for bad in [
        &b"{"[..],
        b"not json",
        b"",
        b"{\"event\": }",
        trailing.as_bytes(),
    ] {
        let err = parse_json::<WebhookPayload>(bad).expect_err("must be refused");
        assert_eq!(
            err.kind,
            ParseErrorKind::Syntax,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(err.field, None);
    }
}

#[test]
fn error_body_has_the_contract_shape() {
    let err = parse_json::<WebhookPayload>(br#"{"event": "job.nope"}"#).unwrap_err();
    let body = serde_json::to_value(webhook_types::ErrorBody::from(&err)).unwrap();
    assert_eq!(body["error"]["code"], "invalid_field");
    assert_eq!(body["error"]["field"], "event");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("job.nope")
    );
}

/// Well-formed JSON with a value of the wrong type is a 422 naming the field,
/// whatever category serde_json files the error under (for an enum it calls a
/// number or `null` "expected value", which reads like a syntax error).
#[test]
fn wrong_typed_json_is_invalid_not_syntax() {
    let table: [(&str, Value, &str); 11] = [
        ("/event", json!(5), "event"),
        ("/event", json!(null), "event"),
        ("/event", json!(true), "event"),
        ("/event", json!(["job.progress"]), "event"),
        ("/event", json!({}), "event"),
        ("/status", json!(7), "status"),
        ("/status", json!(["rendering"]), "status"),
        ("/status", json!(null), "status"),
        ("/status", json!({}), "status"),
        ("/progress_percent", json!(null), "progress_percent"),
        ("/timestamp", json!(12), "timestamp"),
    ];
    for (pointer, bad, field) in table {
        let mut v = progress();
        *v.pointer_mut(pointer).unwrap() = bad.clone();
        let bytes = serde_json::to_vec(&v).unwrap();
        let err = parse_json::<WebhookPayload>(&bytes).expect_err("must be refused");
        assert_eq!(
            err.kind,
            ParseErrorKind::Invalid,
            "{pointer} = {bad}: {err}"
        );
        assert_eq!(err.field.as_deref(), Some(field), "{pointer} = {bad}");
        let body = webhook_types::ErrorBody::from(&err);
        assert_eq!(body.error.code, "invalid_field", "{pointer} = {bad}");
    }
    // A whole body of the wrong shape is JSON too: 422, with no one field.
    for bad in [&b"5"[..], b"[]", b"null", b"\"job.progress\""] {
        let err = parse_json::<WebhookPayload>(bad).expect_err("must be refused");
        assert_eq!(
            err.kind,
            ParseErrorKind::Invalid,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}
