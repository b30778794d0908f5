//! The outcome record of a request, written from its [`RequestRecord`] once
//! the response is ready (by [`crate::record::RecordLayer`]).
//!
//! | what the record says | decision |
//! |---|---|
//! | the upstream answered (any status) | `allowed` + `upstream_status`, `created_id` for a create |
//! | forwarded, then failed (unreachable, timeout) | `upstream_error` |
//! | failed before forwarding | from the failure: `unauthenticated`, `forbidden`, `rate_limited`, `invalid`, else `error` |
//!
//! Which requests get one: those matched to an audited operation (mutations;
//! reads too with `record_reads`), and those refused before matching
//! (authentication, the failed-auth limiter) whose method and path would
//! have matched one, with actor `"unauthenticated"`; their body is never
//! read. Requests that match no operation (404, 405, 400 paths) get none.
//!
//! The body recorded is the one forwarded (its redacted copy only when the
//! intent did not carry it), else whatever the layers below read to its end
//! (validation), else none. The outcome is durable before the response is
//! sent; a failure to write it is logged and does not change the response.
//! A request dropped midway (client gone) gets its outcome queued without
//! waiting: `upstream_error` if it had been forwarded (the upstream's
//! outcome is unknown), `error` otherwise.

use super::context::{Facts, record_for, summarize};
use super::record::{Decision, Kind, Record};
use super::{Audit, OperationLookup};
use crate::record::RequestRecord;

impl Audit {
    /// Writes the outcome of a finished request, if it gets one, and waits
    /// until it is durable.
    pub async fn record_outcome(&self, record: &RequestRecord, lookup: Option<&OperationLookup>) {
        let Some(outcome) = self.outcome(record, lookup) else {
            return;
        };
        if let Err(e) = self.append(&outcome).await {
            tracing::error!(
                request_id = outcome.request_id.as_deref().unwrap_or("-"),
                error = %e,
                "audit outcome not written"
            );
        }
    }

    /// Queues the outcome of a request dropped before it was answered.
    pub fn record_cancelled(&self, record: &RequestRecord) {
        let Some(mut outcome) = self.outcome(record, None) else {
            return;
        };
        (outcome.decision, outcome.reason) = if record.forwarded() {
            (
                Decision::UpstreamError,
                Some("cancelled after forwarding (client gone or request timeout); the upstream outcome is unknown".into()),
            )
        } else {
            (
                Decision::Error,
                Some("cancelled before forwarding (client gone or request timeout)".into()),
            )
        };
        outcome.upstream_status = None;
        self.log().append_detached(&outcome);
    }

    /// The outcome record of `record`, if its request gets one.
    fn outcome(&self, record: &RequestRecord, lookup: Option<&OperationLookup>) -> Option<Record> {
        let found;
        let (op, params) = match record.operation() {
            Some((op, params)) => (op, Some(params)),
            // Refused before matching: the operation it would have matched.
            None => {
                record.failure()?;
                if !self.audits(record.method()) {
                    return None;
                }
                found = lookup.and_then(|l| l(record.method(), record.path()))?;
                (&found.0, Some(&found.1))
            }
        };
        if !self.audits_operation(op) {
            return None;
        }
        let facts = Facts {
            request_id: record.request_id(),
            trace_id: record.trace_id(),
            method: record.method(),
            path: record.path(),
            peer: record.peer(),
            principal: record.principal(),
            operation: op,
            params,
        };
        let intent = record.intent();
        let body = match intent {
            Some(i) => i.body.clone(),
            None => record
                .body_read()
                .and_then(|b| summarize(&b, self.redactor())),
        };
        let mut r = record_for(Kind::Outcome, &facts).with_body(body.as_ref());
        r.latency_ms = Some(record.start().elapsed().as_secs_f64() * 1000.0);
        r.intent_seq = intent.and_then(|i| i.seq);
        if r.intent_seq.is_some() {
            // The intent carries the redacted body; the digest stays.
            r.body = None;
        }
        match (record.failure(), record.upstream()) {
            (Some(failure), _) => {
                r.decision = if record.forwarded() {
                    Decision::UpstreamError
                } else {
                    Decision::for_kind(failure.kind)
                };
                r.reason = Some(failure.reason.clone());
            }
            (None, upstream) => {
                r.upstream_status = upstream.map(|(status, _)| status.as_u16());
                r.created_id = record.created_id().map(str::to_owned);
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    use http::{Method, Request, Response};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::audit::test_support::{audit, operation, records, stack};
    use crate::auth::Principal;
    use crate::body::{Body, BoxError, full};
    use crate::error::Error;
    use crate::routes::PathParams;

    type MakeError = fn() -> Error;

    fn principal() -> Arc<Principal> {
        Arc::new(Principal {
            subject: "svc-sim".into(),
            client_key: "svc-sim".into(),
            issuer: "https://idp".into(),
            roles: vec!["sim-admin".into()],
            scopes: vec![],
            token_id: Some("jti-9".into()),
        })
    }

    fn create(body: &str) -> Request<Body> {
        let mut req = Request::post("/beta/sim-integrations")
            .header(CONTENT_TYPE, "application/json")
            .body(full(body.to_owned()))
            .unwrap();
        req.extensions_mut().insert(operation(
            "createSIMIntegration",
            Method::POST,
            "/beta/sim-integrations",
        ));
        req.extensions_mut().insert(principal());
        req
    }

    fn delete() -> Request<Body> {
        let mut req = Request::delete("/beta/sim-integrations/abc")
            .body(crate::body::empty())
            .unwrap();
        req.extensions_mut().insert(operation(
            "deleteSIMIntegration",
            Method::DELETE,
            "/beta/sim-integrations/{id}",
        ));
        req.extensions_mut()
            .insert(PathParams(vec![("id".into(), "abc".into())]));
        req
    }

    fn json_response(body: &str) -> Response<Body> {
        let mut res = Response::new(full(body.to_owned()));
        res.headers_mut()
            .insert(CONTENT_TYPE, "application/json".parse().unwrap());
        res.headers_mut()
            .insert(CONTENT_LENGTH, body.len().to_string().parse().unwrap());
        res
    }

    async fn ok(_req: Request<Body>) -> Result<Response<Body>, BoxError> {
        Ok(json_response("[]"))
    }

    #[tokio::test]
    async fn allowed_create_records_status_and_new_id() {
        let (audit, dir) = audit(|_| {});
        let svc = stack(&audit, None, None, |req: Request<Body>| async move {
            let body = req.into_body().collect().await?.to_bytes();
            assert_eq!(
                &body[..],
                br#"{"name":"x","attributes":{"password":"hunter2"}}"#
            );
            Ok::<_, BoxError>(json_response(r#"{"id":"new-1","name":"x"}"#))
        });
        let mut req = create(r#"{"name":"x","attributes":{"password":"hunter2"}}"#);
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let tc = crate::trace_context::TraceContext::parse(
            format!("00-{trace}-00f067aa0ba902b7-01").as_bytes(),
        )
        .unwrap();
        req.extensions_mut().insert(tc);
        let res = svc.oneshot(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"id":"new-1","name":"x"}"#);
        let recs = records(&dir);
        assert_eq!(recs.len(), 2);
        let r = &recs[1];
        assert_eq!(r["kind"], "outcome");
        assert_eq!(r["decision"], "allowed");
        assert_eq!(r["upstream_status"], 200);
        assert_eq!(r["created_id"], "new-1");
        assert_eq!(r["operation_id"], "createSIMIntegration");
        assert_eq!(r["actor"]["subject"], "svc-sim");
        assert_eq!(r["actor"]["token_id"], "jti-9");
        assert_eq!(recs[0]["body"]["attributes"], "[REDACTED]");
        assert_eq!(recs[0]["trace_id"], trace);
        assert_eq!(r["trace_id"], trace);
        assert!(r["latency_ms"].as_f64().is_some());
        assert!(
            !std::fs::read_to_string(dir.path().join("audit.jsonl"))
                .unwrap()
                .contains("hunter2")
        );
    }

    #[tokio::test]
    async fn refusals_are_recorded_with_their_decision() {
        let cases: [(MakeError, &str, u16); 4] = [
            (
                || Error::Forbidden {
                    operation: "deleteSIMIntegration".into(),
                },
                "forbidden",
                403,
            ),
            (
                || Error::RateLimited {
                    retry_after: Duration::from_secs(1),
                    headers: Default::default(),
                },
                "rate_limited",
                429,
            ),
            (
                || Error::InvalidBody {
                    messages: vec!["secret detail hunter2".into()],
                },
                "invalid",
                400,
            ),
            (|| Error::AuditUnavailable, "error", 503),
        ];
        for (err, decision, status) in cases {
            let (audit, dir) = audit(|_| {});
            let svc = stack(&audit, None, Some(err), ok);
            let res = svc.oneshot(delete()).await.unwrap();
            assert_eq!(res.status(), status);
            let recs = records(&dir);
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0]["decision"], decision);
            assert_eq!(recs[0]["resource_id"], "abc");
            assert_eq!(recs[0]["actor"], "unauthenticated");
            assert!(!recs[0].to_string().contains("hunter2"));
        }
    }

    #[tokio::test]
    async fn forwarded_then_failed_is_upstream_error() {
        let (audit, dir) = audit(|_| {});
        let svc = stack(&audit, None, None, |_req: Request<Body>| async {
            Err::<Response<Body>, BoxError>(Error::UpstreamTimeout.into())
        });
        let res = svc.oneshot(create("{}")).await.unwrap();
        assert_eq!(res.status(), 504);
        let recs = records(&dir);
        assert_eq!(recs[1]["decision"], "upstream_error");
        assert_eq!(recs[1]["reason"], "upstream timed out");
    }

    #[tokio::test]
    async fn cancelled_requests_still_get_an_outcome() {
        for forwarded in [false, true] {
            let (audit, dir) = audit(|_| {});
            let svc = stack(&audit, None, None, |_req: Request<Body>| async {
                std::future::pending::<()>().await;
                Ok::<_, BoxError>(Response::new(crate::body::empty()))
            });
            let req = if forwarded {
                create("{}")
            } else {
                // A body that never ends keeps the intent layer waiting.
                let (parts, _) = create("{}").into_parts();
                let body = http_body_util::StreamBody::new(futures_util::stream::pending::<
                    Result<http_body::Frame<bytes::Bytes>, BoxError>,
                >());
                Request::from_parts(parts, crate::body::boxed(body))
            };
            let timed_out = tokio::time::timeout(Duration::from_millis(50), svc.oneshot(req)).await;
            assert!(timed_out.is_err());
            // The guard's record is queued; one more awaited record orders after it.
            let probe = crate::audit::test_support::record(0);
            audit.log().append(&probe).await.unwrap();
            let recs = records(&dir);
            let outcome = recs.iter().find(|r| r["kind"] == "outcome").unwrap();
            let want = if forwarded { "upstream_error" } else { "error" };
            assert_eq!(outcome["decision"], want);
            assert!(outcome["reason"].as_str().unwrap().contains("cancelled"));
        }
    }

    #[tokio::test]
    async fn unmatched_requests_and_reads_pass_untouched() {
        let (audit, dir) = audit(|_| {});
        let svc = stack(&audit, None, None, ok);
        let mut read = Request::get("/beta/sim-integrations")
            .body(crate::body::empty())
            .unwrap();
        read.extensions_mut().insert(operation(
            "getSIMIntegrations",
            Method::GET,
            "/beta/sim-integrations",
        ));
        svc.clone().oneshot(read).await.unwrap();
        svc.oneshot(Request::post("/x").body(crate::body::empty()).unwrap())
            .await
            .unwrap();
        assert!(records(&dir).is_empty());
    }

    #[tokio::test]
    async fn reads_are_recorded_when_configured() {
        let (audit, dir) = audit(|c| c.record_reads = true);
        let svc = stack(&audit, None, None, ok);
        let mut read = Request::get("/beta/sim-integrations")
            .body(crate::body::empty())
            .unwrap();
        read.extensions_mut().insert(operation(
            "getSIMIntegrations",
            Method::GET,
            "/beta/sim-integrations",
        ));
        svc.oneshot(read).await.unwrap();
        let recs = records(&dir);
        assert_eq!(recs[0]["operation_id"], "getSIMIntegrations");
        assert_eq!(recs[0]["created_id"], serde_json::Value::Null);
    }

    /// Finds the SIM Integrations delete by path, as the routes would.
    fn lookup() -> crate::audit::OperationLookup {
        Arc::new(|method: &Method, path: &str| {
            (*method == Method::DELETE && path.starts_with("/beta/sim-integrations/")).then(|| {
                let id = path.rsplit('/').next().unwrap_or_default().to_owned();
                (
                    operation(
                        "deleteSIMIntegration",
                        Method::DELETE,
                        "/beta/sim-integrations/{id}",
                    ),
                    PathParams(vec![("id".into(), id)]),
                )
            })
        })
    }

    fn unmatched(method: Method, path: &str) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(full("{\"secret\":\"hunter2\"}"))
            .unwrap()
    }

    #[tokio::test]
    async fn refusals_before_matching_are_recorded_as_unauthenticated() {
        let cases: [(MakeError, &str); 2] = [
            (|| Error::invalid_token("token expired"), "unauthenticated"),
            (
                || Error::RateLimited {
                    retry_after: Duration::from_secs(3),
                    headers: Default::default(),
                },
                "rate_limited",
            ),
        ];
        for (err, decision) in cases {
            let (audit, dir) = audit(|_| {});
            let svc = stack(&audit, Some(lookup()), Some(err), ok);
            svc.oneshot(unmatched(Method::DELETE, "/beta/sim-integrations/abc"))
                .await
                .unwrap();
            let recs = records(&dir);
            assert_eq!(recs.len(), 1);
            let r = &recs[0];
            assert_eq!(r["decision"], decision);
            assert_eq!(r["actor"], "unauthenticated");
            assert_eq!(r["operation_id"], "deleteSIMIntegration");
            assert_eq!(r["resource_id"], "abc");
            assert_eq!(r["body"], serde_json::Value::Null, "body never read");
            assert!(!recs[0].to_string().contains("hunter2"));
        }
    }

    #[tokio::test]
    async fn reads_unknown_paths_and_successes_before_matching_are_not_recorded() {
        let (audit, dir) = audit(|_| {});
        let refused = stack(
            &audit,
            Some(lookup()),
            Some(|| Error::invalid_token("nope")),
            ok,
        );
        let _ = refused
            .clone()
            .oneshot(unmatched(Method::GET, "/beta/sim-integrations/abc"))
            .await;
        let _ = refused.oneshot(unmatched(Method::DELETE, "/nowhere")).await;
        let _ = stack(&audit, Some(lookup()), None, ok)
            .oneshot(unmatched(Method::DELETE, "/beta/sim-integrations/ok"))
            .await;
        assert!(records(&dir).is_empty());
    }

    #[tokio::test]
    async fn refusals_after_matching_are_recorded_once() {
        let (audit, dir) = audit(|_| {});
        let svc = stack(
            &audit,
            Some(lookup()),
            Some(|| Error::Forbidden {
                operation: "deleteSIMIntegration".into(),
            }),
            ok,
        );
        svc.oneshot(delete()).await.unwrap();
        let recs = records(&dir);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["decision"], "forbidden");
    }
}
