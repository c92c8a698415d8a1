//! Errors: the shared HTTP error body and the parse error behind it.

use serde::{Deserialize, Serialize};

/// The error body both services answer with:
/// `{"error": {"code": "...", "message": "...", "field": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The one member, so that success and error bodies never share keys.
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`) and people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// A stable, snake_case identifier clients may branch on.
    pub code: String,
    /// A sentence for people; not stable.
    pub message: String,
    /// The JSON path of the offending field, when one field is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub field: Option<String>,
}

impl ErrorBody {
    /// Builds a body from its parts.
    pub fn new(code: impl Into<String>, message: impl Into<String>, field: Option<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                field,
            },
        }
    }
}

impl From<&ParseError> for ErrorBody {
    fn from(e: &ParseError) -> Self {
        let code = match e.kind {
            ParseErrorKind::Syntax => "malformed_json",
            ParseErrorKind::Invalid => "invalid_field",
        };
        ErrorBody::new(code, e.message.clone(), e.field.clone())
    }
}

/// Whether a body failed as JSON or as our types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Not JSON at all, or cut short: the client sent garbage (HTTP 400).
    Syntax,
    /// Well-formed JSON whose fields have the wrong type, are missing, out of
    /// range or inconsistent with each other (HTTP 422).
    Invalid,
}

/// Why untrusted JSON was refused, and which field is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct ParseError {
    /// Syntax (400) or invalid content (422).
    pub kind: ParseErrorKind,
    /// The JSON path of the offending field (`output.clips[0].virality_score`),
    /// when the error can be pinned to one.
    pub field: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

impl ParseError {
    /// A body that is not JSON.
    pub fn syntax(message: impl Into<String>) -> Self {
        Self {
            kind: ParseErrorKind::Syntax,
            field: None,
            message: message.into(),
        }
    }

    /// A field whose value breaks a rule.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ParseErrorKind::Invalid,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// Classifies a serde error by what the caller found out about the
    /// bytes: if they are JSON at all, the error is about the content (422,
    /// naming the field), whatever category serde_json filed it under;
    /// otherwise it is a syntax error (400).
    pub(crate) fn from_serde(
        e: serde_path_to_error::Error<serde_json::Error>,
        is_json: bool,
    ) -> Self {
        let path = e.path().to_string();
        let inner = e.inner();
        let kind = if is_json {
            ParseErrorKind::Invalid
        } else {
            ParseErrorKind::Syntax
        };
        // serde_json appends " at line L column C"; the path says more.
        let mut message = inner.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        if kind == ParseErrorKind::Invalid && inner.classify() != serde_json::error::Category::Data
        {
            // serde_json's "expected value" for, say, `"event": 5`.
            message = "the value has the wrong type".to_owned();
        }
        let field = match kind {
            ParseErrorKind::Invalid => missing_field_path(&path, &message),
            ParseErrorKind::Syntax => None,
        };
        Self {
            kind,
            field,
            message,
        }
    }
}

/// A missing field is reported by serde at its parent's path; append the
/// field's own name so the caller learns exactly what to add.
fn missing_field_path(path: &str, message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(name) = rest.strip_suffix('`')
    {
        return Some(if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        });
    }
    (path != ".").then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_field_names_the_child() {
        let f = |p, m| missing_field_path(p, m);
        assert_eq!(
            f("output", "missing field `clips`").as_deref(),
            Some("output.clips")
        );
        assert_eq!(f(".", "missing field `event`").as_deref(), Some("event"));
        assert_eq!(
            f("status", "unknown variant `x`").as_deref(),
            Some("status")
        );
        assert_eq!(f(".", "invalid type: string, expected a map"), None);
    }
}
