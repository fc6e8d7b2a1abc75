//! The admin API's errors, as JSON: `{ "error": { "code", "message", "retryable",
//! "retry_after_s"? } }`, with the HTTP status that goes with the code. Every error the
//! API answers has this shape, an unknown route (404) and a method the route does not
//! take (405, with `Allow`) included.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer of the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`"unauthorized"`, `"forbidden"`, ...).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// When to retry, in seconds.
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retryable: false,
            retry_after_s: None,
        }
    }

    /// 401: no key, or a key the node does not know.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the key's role may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 400: the request is malformed (the message names the field).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such region, player or route.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: the route exists, but not with this method (the response's `Allow` header
    /// lists those it takes).
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }

    /// 409: the request conflicts with the node's state (a region already held, ...).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413: the body is larger than [`super::BODY_BYTES_MAX`].
    pub fn too_large(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 422: well-formed, but refused (an invalid config file, a position outside the
    /// region, ...).
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }

    /// 503: the node cannot do it now (busy, a dependency down); retry later.
    pub fn unavailable(message: impl Into<String>, retry_after_s: u32) -> ApiError {
        ApiError {
            retryable: true,
            retry_after_s: Some(retry_after_s),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// 500: a bug or an unexpected failure.
    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u32>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                retryable: self.retryable,
                retry_after_s: self.retry_after_s,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after_s {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(after),
            );
        }
        response
    }
}

impl From<crate::node::ActionError> for ApiError {
    fn from(e: crate::node::ActionError) -> Self {
        use crate::node::ActionError;
        match e {
            ActionError::Invalid(m) => ApiError::bad_request(m),
            ActionError::NotFound(m) => ApiError::not_found(m),
            ActionError::Conflict(m) => ApiError::conflict(m),
            ActionError::Unprocessable(m) => ApiError::unprocessable(m),
            ActionError::Unavailable {
                message,
                retry_after_s,
            } => ApiError::unavailable(message, retry_after_s),
        }
    }
}
