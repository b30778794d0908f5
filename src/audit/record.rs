//! One audit record: what the layers know about a mutation attempt.
//!
//! The writer adds `seq`, `prev` (the chain, see [`super::chain`]) and `time`
//! (UTC, milliseconds) in front of the fields below, so a line reads:
//!
//! ```text
//! {"seq":7,"prev":"9f…","time":"2025-01-02T03:04:05.678Z","kind":"intent",
//!  "request_id":"…","trace_id":"…","operation_id":"createSIMIntegration","method":"POST",
//!  "path":"/beta/sim-integrations","resource_id":null,
//!  "actor":{"subject":"…","client_key":"…","issuer":"…","roles":[…],"token_id":"…"},
//!  "peer":"127.0.0.1:50412","decision":"allowed","reason":null,
//!  "upstream_status":null,"latency_ms":null,"body_sha256":"…","body_bytes":123,
//!  "body":{…redacted…},"created_id":null,"intent_seq":null}
//! ```
//!
//! Every field is always present (`null` when unknown), so consumers can rely
//! on one schema.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::auth::Principal;
use crate::error::{Error, Kind as ErrorKind};

/// Which of a request's records this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Written and flushed before an allowed mutation is forwarded.
    Intent,
    /// What finally happened to the request.
    Outcome,
    /// A configuration reload, applied or refused ([`ReloadRecord`]).
    Reload,
}

/// What the gateway decided, or what happened upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Forwarded (intent) / answered by the upstream (outcome).
    Allowed,
    /// Refused: no usable credential.
    Unauthenticated,
    /// Refused by authorization policy.
    Forbidden,
    /// Refused by a rate limit.
    RateLimited,
    /// Refused: body too large, wrong media type or not matching the schema.
    Invalid,
    /// Forwarded, but no upstream response (unreachable, timed out, or
    /// cancelled after forwarding: the upstream outcome is unknown).
    UpstreamError,
    /// Not forwarded for another reason (audit unavailable, internal error,
    /// cancelled before forwarding).
    Error,
}

impl Decision {
    /// The decision for a request refused (before forwarding) with an
    /// error of `kind` (`None`: not one of ours).
    pub fn for_kind(kind: Option<ErrorKind>) -> Decision {
        match kind {
            Some(ErrorKind::Unauthenticated) => Decision::Unauthenticated,
            Some(ErrorKind::Forbidden) => Decision::Forbidden,
            Some(ErrorKind::RateLimited) => Decision::RateLimited,
            Some(ErrorKind::Invalid | ErrorKind::BadRequest) => Decision::Invalid,
            _ => Decision::Error,
        }
    }

    /// The decision for a request refused (before forwarding) with `err`.
    pub fn for_refusal(err: &(dyn std::error::Error + 'static)) -> Decision {
        Self::for_kind(crate::error::classify(err).map(Error::kind))
    }
}

/// Who made the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Actor {
    /// A verified token's principal.
    Principal(ActorDetails),
    /// No verified token: serialized as the string `"unauthenticated"`.
    Unauthenticated(&'static str),
}

/// The parts of a [`Principal`] an auditor needs (not its scopes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorDetails {
    /// `sub`.
    pub subject: String,
    /// The quota key (`client_id` or `sub`).
    pub client_key: String,
    /// `iss`.
    pub issuer: String,
    /// Roles.
    pub roles: Vec<String>,
    /// `jti`.
    pub token_id: Option<String>,
}

impl Actor {
    /// The unauthenticated actor.
    pub const UNAUTHENTICATED: Actor = Actor::Unauthenticated("unauthenticated");

    /// The actor for an optional principal.
    pub fn from_principal(p: Option<&Arc<Principal>>) -> Actor {
        match p {
            Some(p) => Actor::Principal(ActorDetails {
                subject: p.subject.clone(),
                client_key: p.client_key.clone(),
                issuer: p.issuer.clone(),
                roles: p.roles.clone(),
                token_id: p.token_id.clone(),
            }),
            None => Actor::UNAUTHENTICATED,
        }
    }
}

/// The request body as recorded: its digest, its size and, when it is JSON,
/// its redacted value (non-JSON bodies are never recorded, only digested).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodySummary {
    /// Lowercase hex SHA-256 of the bytes received.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: usize,
    /// The redacted JSON, if the body was JSON.
    pub redacted: Option<Value>,
}

/// One audit record, before the writer chains and timestamps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Intent or outcome.
    pub kind: Kind,
    /// The request id (also the `trackingId` of error responses).
    pub request_id: Option<String>,
    /// The W3C trace id (see [`crate::trace_context`]).
    pub trace_id: Option<String>,
    /// The matched operation's `operationId`.
    pub operation_id: String,
    /// HTTP method.
    pub method: String,
    /// Request path (no query).
    pub path: String,
    /// The `id` path parameter, if the operation has one.
    pub resource_id: Option<String>,
    /// Who.
    pub actor: Actor,
    /// TCP peer address.
    pub peer: Option<String>,
    /// What was decided.
    pub decision: Decision,
    /// Why (the refusal's message; never a token or body content).
    pub reason: Option<String>,
    /// The upstream's status, when it answered.
    pub upstream_status: Option<u16>,
    /// Time from the request reaching the audit layer to its outcome.
    pub latency_ms: Option<f64>,
    /// Digest of the request body.
    pub body_sha256: Option<String>,
    /// Size of the request body.
    pub body_bytes: Option<usize>,
    /// The request body, redacted (JSON bodies only).
    pub body: Option<Value>,
    /// For a create: the new resource's id, from the response.
    pub created_id: Option<String>,
    /// For an outcome: the `seq` of this request's intent record.
    pub intent_seq: Option<u64>,
}

impl Record {
    /// Attaches a body summary (digest, size, redacted value).
    pub fn with_body(mut self, body: Option<&BodySummary>) -> Self {
        if let Some(b) = body {
            self.body_sha256 = Some(b.sha256.clone());
            self.body_bytes = Some(b.bytes);
            self.body = b.redacted.clone();
        }
        self
    }
}

/// A configuration reload, in the same chained trail as the requests:
///
/// ```text
/// {"seq":9,"prev":"…","time":"…","kind":"reload","generation":3,
///  "result":"applied","config":"/etc/simgate/simgate.toml",
///  "sha256":"…","files":[{"path":"…","sha256":"…"},…],"error":null}
/// ```
///
/// `generation` is the one serving afterwards (the new one when applied,
/// the old one when refused). `sha256` digests the `files` list (each path
/// and its digest, in order); key files and secrets are never listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadRecord {
    /// Always [`Kind::Reload`].
    pub kind: Kind,
    /// The generation serving after this reload.
    pub generation: u64,
    /// `applied` or `refused`.
    pub result: &'static str,
    /// The config file.
    pub config: String,
    /// Digest of all `files`.
    pub sha256: String,
    /// The files read, each with its digest.
    pub files: Vec<FileDigest>,
    /// Why the reload was refused (names the file and the key).
    pub error: Option<String>,
}

/// One file a reload read, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// The file.
    pub path: String,
    /// Lowercase hex SHA-256 of its bytes (`null` when it could not be read).
    pub sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refusals_map_to_decisions() {
        let cases: Vec<(Error, Decision)> = vec![
            (Error::invalid_token("expired"), Decision::Unauthenticated),
            (
                Error::Forbidden {
                    operation: "x".into(),
                },
                Decision::Forbidden,
            ),
            (
                Error::RateLimited {
                    retry_after: Duration::from_secs(1),
                    headers: Default::default(),
                },
                Decision::RateLimited,
            ),
            (Error::InvalidBody { messages: vec![] }, Decision::Invalid),
            (
                Error::UnsupportedMediaType {
                    accepted: vec![],
                    received: None,
                    patch: false,
                },
                Decision::Invalid,
            ),
            (Error::PayloadTooLarge { limit: 1 }, Decision::Invalid),
            (Error::AuditUnavailable, Decision::Error),
        ];
        for (err, want) in cases {
            let boxed: crate::body::BoxError = err.into();
            assert_eq!(Decision::for_refusal(&*boxed), want);
        }
    }

    #[test]
    fn actor_serializes_as_object_or_string() {
        let p = Arc::new(Principal {
            subject: "svc".into(),
            client_key: "svc".into(),
            issuer: "https://idp".into(),
            roles: vec!["admin".into()],
            scopes: vec!["sp:scopes:all".into()],
            token_id: Some("jti-1".into()),
        });
        let v = serde_json::to_value(Actor::from_principal(Some(&p))).unwrap();
        assert_eq!(v["subject"], "svc");
        assert_eq!(v["token_id"], "jti-1");
        assert!(v.get("scopes").is_none());
        let v = serde_json::to_value(Actor::from_principal(None)).unwrap();
        assert_eq!(v, "unauthenticated");
    }
}
