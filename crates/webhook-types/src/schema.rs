//! OpenAPI and JSON Schema descriptions of the wire (cargo feature
//! `openapi`).
//!
//! The structs and enums derive `utoipa::ToSchema` beside their serde
//! attributes, so renames, tags and optional fields are read from the same
//! place serde reads them. The types written here by hand are the ones
//! whose JSON is not what their Rust shape suggests: numbers with a range
//! and the UTC timestamp.

use std::borrow::Cow;

use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::{Event, ProgressPercent, Timestamp, ViralityScore, WebhookPayload};

/// What every timestamp on the wire looks like: RFC 3339, UTC, `Z`.
pub const TIMESTAMP_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$";

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(TIMESTAMP_PATTERN))
            .description(Some(
                "An instant in RFC 3339, in UTC, ending in `Z`; fractional seconds only when \
                 there are any.",
            ))
            .examples(["2025-01-15T10:30:00Z"])
            .into()
    }
}

impl ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

impl PartialSchema for ProgressPercent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .maximum(Some(100))
            .description(Some(
                "A percentage from 0 to 100; whole values are written as integers (`15`).",
            ))
            .examples([15])
            .into()
    }
}

impl ToSchema for ProgressPercent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProgressPercent")
    }
}

impl PartialSchema for ViralityScore {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .maximum(Some(1))
            .description(Some("How likely a clip is to do well, from 0 to 1."))
            .examples([0.92])
            .into()
    }
}

impl ToSchema for ViralityScore {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ViralityScore")
    }
}

/// Every named schema `T` needs, itself included, as a JSON object keyed by
/// name (what an OpenAPI document keeps under `components/schemas`).
pub fn schemas_of<T: ToSchema>() -> Map<String, Value> {
    let mut list = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut list);
    list.into_iter()
        .map(|(name, schema)| {
            let value = serde_json::to_value(schema).expect("a schema serialises");
            (name, value)
        })
        .collect()
}

/// A standalone JSON Schema (draft 2020-12) of the webhook body that
/// clipping-worker sends, for receivers that validate what they get: the
/// same schema as in the OpenAPI documents, its references pointing into
/// its own `$defs`, with each event's [`event_rules`].
pub fn webhook_payload_json_schema() -> Value {
    let mut defs = schemas_of::<WebhookPayload>();
    let root = defs
        .remove(&WebhookPayload::name().into_owned())
        .expect("the payload's own schema is listed");
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "WebhookPayload",
    });
    let object = schema.as_object_mut().expect("an object");
    if let Value::Object(fields) = root {
        object.extend(fields);
    }
    let rules: Vec<Value> = Event::ALL
        .into_iter()
        .map(|event| {
            json!({
                "if": {"properties": {"event": {"const": event.as_str()}}, "required": ["event"]},
                "then": event_rules(event),
            })
        })
        .collect();
    object.insert("allOf".into(), Value::Array(rules));
    object.insert("$defs".into(), Value::Object(defs));
    rewrite_refs(&mut schema, "#/components/schemas/", "#/$defs/");
    schema
}

/// Points every `$ref` starting with `from` at `to` instead.
fn rewrite_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(fields) => {
            for (key, v) in fields.iter_mut() {
                match v {
                    Value::String(s) if key == "$ref" => {
                        if let Some(rest) = s.strip_prefix(from) {
                            *s = format!("{to}{rest}");
                        }
                    }
                    other => rewrite_refs(other, from, to),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, from, to)),
        _ => {}
    }
}

/// What each event guarantees beyond the payload's schema (the rules
/// [`crate::Validate`] checks, and a `sequence` this project's worker always
/// sends), as a schema to combine with it.
pub fn event_rules(event: Event) -> Value {
    let name = event.as_str();
    match event {
        Event::Started => json!({
            "properties": {
                "event": {"const": name},
                "status": {"const": "downloading"},
                "progress_percent": {"const": 0},
                "sequence": {"const": 1}
            },
            "required": ["sequence"]
        }),
        Event::Progress => json!({
            "properties": {
                "event": {"const": name},
                "status": {"not": {"enum": ["completed", "failed"]}}
            },
            "required": ["sequence"]
        }),
        Event::Completed => json!({
            "properties": {
                "event": {"const": name},
                "status": {"const": "completed"},
                "progress_percent": {"const": 100}
            },
            "required": ["output", "sequence"]
        }),
        Event::Failed => json!({
            "properties": {
                "event": {"const": name},
                "status": {"const": "failed"}
            },
            "required": ["error", "sequence"]
        }),
    }
}

/// The original plan's examples of `event`, with the `sequence` this
/// project's worker adds, as OpenAPI example objects keyed by name.
pub fn plan_examples(event: Event) -> Value {
    let mut examples = Map::new();
    for (name, text, sequence) in crate::original_plan::EXAMPLES {
        let mut payload: WebhookPayload =
            crate::parse_json(text.as_bytes()).expect("the original plan's examples parse");
        if payload.event != event {
            continue;
        }
        payload.sequence = Some(sequence);
        examples.insert(
            name.to_owned(),
            json!({
                "summary": format!("The original plan's `{name}` example"),
                "value": payload,
            }),
        );
    }
    Value::Object(examples)
}
