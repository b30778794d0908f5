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

    /// The principal may not call this operation: no role of theirs is
    /// granted it (403).
    #[error("not authorized to call {operation}")]
    Forbidden {
        /// The operationId that was refused.
        operation: String,
    },

    /// A role grants the operation but the token lacks the scopes of every
    /// one of its `security` requirements (403).
    #[error("missing scope for {operation}")]
    ScopeMissing {
        /// The operationId that was refused.
        operation: String,
        /// The requirements, any one of which would do, e.g.
        /// `["a:read a:write", "admin"]` (each: all its scopes).
        requirements: Vec<String>,
    },

    /// An `OPTIONS` request to a known path that declares no OPTIONS
    /// operation: answered by the gateway (204 + `Allow`), not forwarded.
    #[error("options answered by the gateway")]
    Options {
        /// Value of the `Allow` header.
        allow: String,
    },

    /// One or more request parameters (path, query, header) are missing or
    /// do not match their schemas (400).
    #[error("invalid request parameters")]
    InvalidParameters {
        /// One message per violation, e.g. `query.status: must be one of …`.
        messages: Vec<String>,
    },

    /// The body is content-encoded (`gzip`, …): the gateway validates and
    /// forwards the bytes as sent and does not decompress them (415).
    #[error("content-encoded request body")]
    ContentEncoded {
        /// The `Content-Encoding` sent.
        encoding: String,
    },

    /// Over quota (429).
    #[error("rate limit exceeded")]
    RateLimited {
        /// How long the client should wait before retrying.
        retry_after: Duration,
        /// Extra headers to send with the 429 (e.g. `RateLimit-*`).
        headers: HeaderMap,
    },

    /// The shared rate limit store failed and `on_error = "deny"` (503).
    #[error("rate limit store unavailable")]
    RateLimitStoreUnavailable {
        /// When the store is tried again.
        retry_after: Duration,
    },

    /// The body's media type is not one the operation accepts (415).
    #[error("unsupported media type")]
    UnsupportedMediaType {
        /// The media types the operation accepts.
        accepted: Vec<String>,
        /// The `Content-Type` received (`None`: none, or several).
        received: Option<String>,
        /// The request is a PATCH: the response names the accepted patch
        /// formats in `Accept-Patch` (RFC 5789).
        patch: bool,
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

    /// A bug or an unexpected condition (500). Details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure an [`Error`] is, as a short label from a fixed set:
/// the `decision` of the access log and of `simgate_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 401.
    Unauthenticated,
    /// 400 before matching.
    BadPath,
    /// 404.
    NoRoute,
    /// 405.
    MethodNotAllowed,
    /// 403.
    Forbidden,
    /// 429.
    RateLimited,
    /// 400/413/415 from the parameter and body checks.
    Invalid,
    /// 503: the audit trail cannot be written.
    AuditUnavailable,
    /// 503: the shared rate limit store fails and `on_error = "deny"`.
    RateLimitStoreUnavailable,
    /// 503: load shed.
    Overloaded,
    /// 502.
    UpstreamUnavailable,
    /// 504.
    Timeout,
    /// 500, and every error that is not ours.
    Internal,
    /// Answered by the gateway itself, not a failure (204 to `OPTIONS`).
    Answered,
}

impl Kind {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Unauthenticated => "unauthenticated",
            Kind::BadPath => "bad_path",
            Kind::NoRoute => "no_route",
            Kind::MethodNotAllowed => "method_not_allowed",
            Kind::Forbidden => "forbidden",
            Kind::RateLimited => "rate_limited",
            Kind::Invalid => "invalid",
            Kind::AuditUnavailable => "audit_unavailable",
            Kind::RateLimitStoreUnavailable => "rate_limit_store_unavailable",
            Kind::Overloaded => "overloaded",
            Kind::UpstreamUnavailable => "upstream_unavailable",
            Kind::Timeout => "timeout",
            Kind::Internal => "error",
            Kind::Answered => "answered",
        }
    }
}

/// The one classification of errors: walks `err` and its cause chain once
/// and returns our typed [`Error`] in it, translating tower's own errors
/// (load shed: [`Error::Overloaded`]; timeout: [`Error::UpstreamTimeout`]).
/// `None` for an error that is none of these (a bug: rescue answers 500).
///
/// Rescue, the request record (and through it the access log, the metrics
/// and the audit outcome) and the proxy all ask this function; nothing else
/// matches on error types.
pub fn classify<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    static OVERLOADED: Error = Error::Overloaded;
    static TIMEOUT: Error = Error::UpstreamTimeout;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(ours) = e.downcast_ref::<Error>() {
            return Some(ours);
        }
        if e.is::<tower::load_shed::error::Overloaded>() {
            return Some(&OVERLOADED);
        }
        if e.is::<tower::timeout::error::Elapsed>() {
            return Some(&TIMEOUT);
        }
        cur = e.source();
    }
    None
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Unauthenticated { .. } => Kind::Unauthenticated,
            Error::BadPath(_) => Kind::BadPath,
            Error::NoRoute => Kind::NoRoute,
            Error::MethodNotAllowed { .. } => Kind::MethodNotAllowed,
            Error::Forbidden { .. } | Error::ScopeMissing { .. } => Kind::Forbidden,
            Error::Options { .. } => Kind::Answered,
            Error::RateLimited { .. } => Kind::RateLimited,
            Error::UnsupportedMediaType { .. }
            | Error::PayloadTooLarge { .. }
            | Error::InvalidParameters { .. }
            | Error::ContentEncoded { .. }
            | Error::InvalidBody { .. } => Kind::Invalid,
            Error::AuditUnavailable => Kind::AuditUnavailable,
            Error::RateLimitStoreUnavailable { .. } => Kind::RateLimitStoreUnavailable,
            Error::Overloaded => Kind::Overloaded,
            Error::UpstreamUnavailable(_) => Kind::UpstreamUnavailable,
            Error::UpstreamTimeout => Kind::Timeout,
            Error::Internal(_) => Kind::Internal,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] Error);

    #[test]
    fn classify_walks_the_cause_chain_and_knows_towers_errors() {
        let wrapped = Wrapper(Error::PayloadTooLarge { limit: 9 });
        assert!(matches!(
            classify(&wrapped),
            Some(Error::PayloadTooLarge { limit: 9 })
        ));
        let shed = tower::load_shed::error::Overloaded::new();
        assert_eq!(classify(&shed).map(Error::kind), Some(Kind::Overloaded));
        let elapsed: crate::body::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(classify(&*elapsed).map(Error::kind), Some(Kind::Timeout));
        assert!(classify(&std::io::Error::other("x")).is_none());
        assert_eq!(Error::NoRoute.kind().as_str(), "no_route");
    }
}
