//! Errors as Kubernetes `metav1.Status` objects.
//!
//! Every failed request answers with a Status whose `code`, `reason` and
//! `details` match what kube-apiserver sends for the same failure, because
//! clients branch on them (`kubectl apply` on AlreadyExists and NotFound,
//! client-go retries on Conflict, watchers relist on Expired).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A failed request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `metav1.StatusReason`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details`, when there is an object to name.
    pub details: Option<Value>,
}

/// Result alias of the API layer.
pub type ApiResult<T> = Result<T, ApiError>;

fn details(name: &str, group: &str, kind: &str) -> Value {
    json!({ "name": name, "group": group, "kind": kind })
}

/// `resource.group` (or `Kind.group`) as kube-apiserver names a resource
/// in messages; just `resource` in the core group.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    /// An error of `code` and `reason`.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized (never says why).
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 NotFound for a path that serves nothing.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 NotFound of an object.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            details: Some(details(name, group, plural)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", qualified(group, plural)),
            )
        }
    }

    /// 409 AlreadyExists.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            details: Some(details(name, group, plural)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(group, plural)),
            )
        }
    }

    /// 409 Conflict from a stale resourceVersion.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            details: Some(details(name, group, plural)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again",
                    qualified(group, plural)
                ),
            )
        }
    }

    /// 422 Invalid, with one cause per field.
    pub fn invalid(
        kind: &str,
        group: &str,
        name: &str,
        causes: Vec<(String, String, &'static str)>,
    ) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|(field, msg, _)| format!("{field}: {msg}"))
            .collect();
        let cause_values: Vec<Value> = causes
            .iter()
            .map(|(field, msg, ty)| json!({ "reason": ty, "message": msg, "field": field }))
            .collect();
        let mut d = details(name, group, kind);
        d["causes"] = Value::Array(cause_values);
        ApiError {
            details: Some(d),
            ..Self::new(
                422,
                "Invalid",
                format!(
                    "{} \"{name}\" is invalid: {}",
                    qualified(group, kind),
                    summary.join(", ")
                ),
            )
        }
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 410 Gone, reason Expired: a compacted resourceVersion.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

impl From<crate::shard::ShardError> for ApiError {
    fn from(e: crate::shard::ShardError) -> Self {
        use crate::shard::ShardError as S;
        use crate::store::Error as E;
        match e {
            S::Unavailable(m) => ApiError::unavailable(m),
            S::Timeout(m) => ApiError::timeout(m),
            S::Store(E::Compacted { requested, oldest }) => {
                ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
            }
            S::Store(E::InvalidContinue(m)) => {
                ApiError::bad_request(format!("the provided continue parameter is not valid: {m}"))
            }
            S::Store(E::InvalidName(n)) => ApiError::bad_request(n.to_string()),
            S::Store(E::FutureRevision { requested, current }) => ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            other => ApiError::internal(other.to_string()),
        }
    }
}
