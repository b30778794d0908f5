//! The typed reasons a request is refused or fails.
//!
//! Layers return these (boxed, as tower's `BoxError`) and never build error
//! responses themselves: [`crate::rescue`] is the one place that turns an
//! [`Error`] into a status code and a body in the API's documented shapes.

use std::time::Duration;

use http::HeaderMap;

/// Why a request did not get a normal upstream response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable credential (401). `token_present` is false when the request
    /// carried no token at all, which RFC 6750 answers without an `error`.
    #[error("{reason}")]
    Unauthenticated {
        /// Human-readable reason, never containing the token.
        reason: String,
        /// Whether a bearer token was sent.
        token_present: bool,
    },

    /// The request path is ambiguous or malformed and is refused before
    /// matching (400).
    #[error("malformed request path: {0}")]
    BadPath(&'static str),

    /// No operation of the loaded OpenAPI documents matches the path (404).
    #[error("no operation matches this path")]
    NoRoute,

    /// The path is known but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Value of the `Allow` header: the methods the path supports.
        allow: String,
    },

    /// The principal may not call this operation (403).
    #[error("not authorized to call {operation}")]
    Forbidden {
        /// The operationId that was refused.
        operation: String,
    },

    /// Over quota (429).
    #[error("rate limit exceeded")]
    RateLimited {
        /// How long the client should wait before retrying.
        retry_after: Duration,
        /// Extra headers to send with the 429 (e.g. `RateLimit-*`).
        headers: HeaderMap,
    },

    /// The body's media type is not one the operation accepts (415).
    #[error("unsupported media type")]
    UnsupportedMediaType {
        /// The media types the operation accepts.
        accepted: Vec<String>,
    },

    /// The body is larger than allowed (413).
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },

    /// The body does not parse or does not match the operation's schema (400).
    #[error("invalid request body")]
    InvalidBody {
        /// One plain message per violation.
        messages: Vec<String>,
    },

    /// The audit record of a mutation could not be written durably, so the
    /// mutation was not forwarded (503).
    #[error("audit log unavailable")]
    AuditUnavailable,

    /// Too many requests in flight; load was shed (503 with Retry-After).
    #[error("gateway overloaded")]
    Overloaded,

    /// The upstream could not be reached or broke the connection (502).
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),

    /// The upstream did not answer in time, or the request as a whole took
    /// longer than allowed (504).
    #[error("upstream timed out")]
    UpstreamTimeout,

    /// The caller's upstream credential has no valid token (token endpoint
    /// down, secret refused); nothing was sent upstream (503 + Retry-After).
    #[error("no valid upstream credential {credential:?}: {reason}")]
    UpstreamCredentialUnavailable {
        /// The credential's name.
        credential: String,
        /// Why (never containing a secret).
        reason: String,
        /// Until the next attempt to get a token.
        retry_after: Duration,
    },

    /// The upstream answered 401 to the injected credential, and again to
    /// the one resend with a new token (502).
    #[error(
        "the upstream refused upstream credential {credential:?} (401), also after one refresh and resend"
    )]
    UpstreamCredentialRejected {
        /// The credential's name.
        credential: String,
    },

    /// A bug or an unexpected condition (500). Details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for an authentication failure with a token present.
    pub fn invalid_token(reason: impl Into<String>) -> Self {
        Error::Unauthenticated {
            reason: reason.into(),
            token_present: true,
        }
    }
}

/// A configuration problem found at start-up, naming the file and key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// A problem with `key` in `file`.
    pub fn at(file: &std::path::Path, key: &str, problem: impl std::fmt::Display) -> Self {
        ConfigError(format!("{}: `{key}`: {problem}", file.display()))
    }
}
