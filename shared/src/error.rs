//! RFC 9457 problem details: the one error body every service answers with.
//!
//! Each service keeps its own error enum (one catalogue of stable codes per
//! service) and turns it into a [`Problem`]. Internal causes are logged here
//! with their whole chain; the client only sees a stable code and a sentence
//! it can act on, never a backtrace or a driver message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem+json body. `code` is the stable machine-readable key; `type`
/// is derived from it so the two can never disagree.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (RFC 9457 §3.2), e.g. the limit that was exceeded.
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("/problems/{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            instance: None,
            extensions: serde_json::Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// A 500 whose cause is logged, not sent.
    pub fn internal(cause: &anyhow::Error) -> Self {
        tracing::error!(error = format!("{cause:#}"), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "The server failed to handle the request. It has been logged; retrying later may succeed.",
        )
    }

    /// A 503 for a dependency that is down; the cause is logged.
    pub fn unavailable(dependency: &str, cause: &anyhow::Error) -> Self {
        tracing::error!(dependency, error = format!("{cause:#}"), "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency-unavailable",
            "Service temporarily unavailable",
            format!("{dependency} is unavailable; nothing was stored. Retry later."),
        )
        .with("dependency", dependency)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

/// The router fallback: unknown paths get a problem body too, not an empty 404.
pub async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", format!("No resource at {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_serialises_with_rfc9457_members_and_extensions() {
        let p = Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "upload-too-large", "Upload too large", "too big")
            .with("max_bytes", 10);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "/problems/upload-too-large");
        assert_eq!(v["status"], 413);
        assert_eq!(v["max_bytes"], 10);
        let res = p.into_response();
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
