//! Responses of the reference API: JSON bodies, and failures in the
//! vendor's `ErrorResponseDto` shape
//! (`{"detailCode", "trackingId", "messages": [{"locale", "localeOrigin", "text"}]}`).

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::{Body, empty, full};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response.
pub(crate) fn json(status: StatusCode, bytes: Bytes) -> Response<Body> {
    let mut res = Response::new(full(bytes));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, JSON);
    res
}

/// A response without a body.
pub(crate) fn no_content(status: StatusCode) -> Response<Body> {
    let mut res = Response::new(empty());
    *res.status_mut() = status;
    res
}

/// Why a request failed; becomes an `ErrorResponseDto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    detail_code: &'static str,
    text: String,
    allow: Option<&'static str>,
}

impl Failure {
    /// 400: the body is not acceptable.
    pub(crate) fn bad_request(text: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            detail_code: "400.1 Bad Request Content",
            text: text.into(),
            allow: None,
        }
    }

    /// 403: the caller may not do this.
    pub(crate) fn forbidden(text: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::FORBIDDEN,
            detail_code: "403 Forbidden",
            text: text.into(),
            allow: None,
        }
    }

    /// 404: no such integration (or no such path).
    pub(crate) fn not_found() -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            detail_code: "404 Not found",
            text: "The server did not find a current representation for the target resource."
                .into(),
            allow: None,
        }
    }

    /// 405, with the methods the resource has.
    pub(crate) fn method_not_allowed(allow: &'static str) -> Failure {
        Failure {
            status: StatusCode::METHOD_NOT_ALLOWED,
            detail_code: "405 Method Not Allowed",
            text: format!("The method is not allowed for this resource; allowed: {allow}."),
            allow: Some(allow),
        }
    }

    /// 413: the body is over the limit.
    pub(crate) fn too_large(limit: usize) -> Failure {
        Failure {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            detail_code: "413 Payload Too Large",
            text: format!("The request body is larger than {limit} bytes."),
            allow: None,
        }
    }

    /// 500: a fault of this server.
    pub(crate) fn internal(text: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail_code: "500.0 Internal Fault",
            text: text.into(),
            allow: None,
        }
    }

    /// The message text.
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The `ErrorResponseDto` response.
    pub(crate) fn respond(&self, tracking_id: &str) -> Response<Body> {
        let body = json!({
            "detailCode": self.detail_code,
            "trackingId": tracking_id,
            "messages": [{
                "locale": "en-US",
                "localeOrigin": "DEFAULT",
                "text": self.text,
            }],
        });
        let mut res = json(self.status, Bytes::from(body.to_string()));
        if let Some(allow) = self.allow {
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        res
    }
}
