//! The validators of every operation, compiled once at start from the loaded
//! OpenAPI documents: its parameters, and its request body by media type
//! (JSON and `+json` against the schema, JSON Patch, form fields; other
//! declared media types, and operations named in `validation.skip`,
//! forwarded as sent within the size limit).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

use super::config::{ValidationConfig, ValidationSection};
use super::media::{self, Kind};
use super::params::{ParamChecks, PendingParam, ignored_header, needs_no_check};
use super::store::{SchemaDoc, Store};
use super::{check, form, patch};
use crate::auth::Principal;
use crate::error::{ConfigError, Error};
use crate::routes::{Operation, ParamIn, PathParams};

/// The compiled checks of every operation: parameters, and the body of
/// those that take one.
#[derive(Debug)]
pub struct Validators {
    config: Arc<ValidationConfig>,
    /// By document index, then operationId.
    operations: Vec<HashMap<String, Arc<OperationCheck>>>,
    /// Parameter checks by document index, then operationId (operations
    /// with nothing to check are left out).
    params: Vec<HashMap<String, Arc<ParamChecks>>>,
    /// Operations whose request bodies are not schema-validated.
    unvalidated: Vec<Unvalidated>,
}

/// An operation media type whose bodies are forwarded without schema
/// validation (as `simgate check` lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unvalidated {
    /// The operationId.
    pub operation_id: String,
    /// The declared media type.
    pub media_type: String,
    /// Why: `validation.skip`, or a media type the gateway does not parse.
    pub reason: &'static str,
}

/// The body checks of one operation.
#[derive(Debug)]
pub struct OperationCheck {
    operation_id: String,
    method_is_patch: bool,
    limit: u64,
    required: bool,
    /// The declared media types the gateway accepts, as written.
    accepted: Vec<String>,
    bodies: Vec<(String, BodyCheck)>,
    store: Arc<Store>,
    config: Arc<ValidationConfig>,
}

/// How one accepted media type is checked.
#[derive(Debug)]
pub(crate) enum BodyCheck {
    /// Against the schema at this location of the store.
    Json(String),
    /// As a JSON Patch.
    Patch(patch::Plan),
    /// As form fields, against the schema at this location.
    Form(String),
    /// Not at all: forwarded as sent.
    Opaque,
}

/// The media type a request was accepted as (an index into the
/// operation's accepted media types).
#[derive(Debug, Clone, Copy)]
pub struct Accepted(usize);

/// Before compilation: an operation's checks with store locations only.
struct Pending {
    op: Arc<Operation>,
    accepted: Vec<String>,
    bodies: Vec<(String, BodyCheck)>,
    params: Vec<PendingParam>,
}

impl Validators {
    /// Compiles the checks of `operations`, whose documents `documents`
    /// returns by index, with the `[validation]` section read from
    /// `config_path`.
    pub fn compile<'a, I, D>(
        operations: I,
        documents: D,
        section: &ValidationSection,
        config_path: &Path,
    ) -> Result<Arc<Validators>, ConfigError>
    where
        I: IntoIterator<Item = &'a Arc<Operation>>,
        D: Fn(usize) -> Option<&'a Value>,
    {
        Validators::compile_with(operations, documents, section, config_path, &[])
    }

    /// [`compile`](Self::compile), leaving unchecked the header parameters
    /// named in `upstream_headers` (the gateway sets them upstream itself,
    /// e.g. from `upstream.headers`).
    pub fn compile_with<'a, I, D>(
        operations: I,
        documents: D,
        section: &ValidationSection,
        config_path: &Path,
        upstream_headers: &[String],
    ) -> Result<Arc<Validators>, ConfigError>
    where
        I: IntoIterator<Item = &'a Arc<Operation>>,
        D: Fn(usize) -> Option<&'a Value>,
    {
        let config = Arc::new(ValidationConfig::from_section(section, config_path)?);
        let fail = |why: String| ConfigError::at(config_path, "api.documents", why);
        let mut docs: BTreeMap<usize, SchemaDoc> = BTreeMap::new();
        let mut pending = Vec::new();
        let mut known_ids = Vec::new();
        let mut unvalidated = Vec::new();
        for op in operations {
            known_ids.push(op.operation_id.clone());
            let params: Vec<_> = op
                .parameters
                .iter()
                .filter(|p| {
                    // strict_query needs every declared query name.
                    let named = config.strict_query && p.location == ParamIn::Query;
                    (named || !needs_no_check(p))
                        && (p.location != ParamIn::Header
                            || !ignored_header(&p.name, upstream_headers))
                })
                .collect();
            if op.request_bodies.is_empty() && params.is_empty() && !config.strict_query {
                continue;
            }
            let Some(document) = documents(op.document) else {
                return Err(fail(format!(
                    "operation {}: document {} is not loaded",
                    op.operation_id, op.document
                )));
            };
            let schemas = match docs.entry(op.document) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(
                    SchemaDoc::new(document)
                        .map_err(|why| fail(format!("document {}: {why}", op.document)))?,
                ),
            };
            let at = |why: String| fail(format!("operation {}: {why}", op.operation_id));
            let mut pending_params = Vec::new();
            for p in params {
                let loc = schemas
                    .include(&p.schema)
                    .map_err(|e| at(format!("parameter {}: {e}", p.name)))?;
                pending_params.push(PendingParam {
                    param: p.clone(),
                    loc,
                });
            }
            let skipped = config.skip.contains(&op.operation_id);
            let mut accepted = Vec::new();
            let mut bodies = Vec::new();
            for body in &op.request_bodies {
                let Some((essence, kind)) = media::declared(&body.media_type) else {
                    return Err(at(format!(
                        "requestBody media type {:?} is not a media type",
                        body.media_type
                    )));
                };
                let kind = if skipped { Kind::Opaque } else { kind };
                if kind == Kind::Opaque {
                    unvalidated.push(Unvalidated {
                        operation_id: op.operation_id.clone(),
                        media_type: body.media_type.clone(),
                        reason: if skipped {
                            "validation.skip"
                        } else {
                            "media type not parsed by the gateway"
                        },
                    });
                }
                let check = match kind {
                    Kind::Opaque => BodyCheck::Opaque,
                    Kind::Json => BodyCheck::Json(schemas.include(&body.schema).map_err(&at)?),
                    Kind::Form => BodyCheck::Form(schemas.include(&body.schema).map_err(&at)?),
                    Kind::Patch => {
                        let loc = schemas.include(&body.schema).map_err(&at)?;
                        let plan = patch::Plan::new(schemas, document, op, &loc).map_err(&at)?;
                        if !plan.has_resource() {
                            tracing::warn!(
                                operation = %op.operation_id,
                                "no schema found for the resource this PATCH changes; its patches will be refused"
                            );
                        }
                        BodyCheck::Patch(plan)
                    }
                };
                accepted.push(body.media_type.clone());
                bodies.push((essence, check));
            }
            pending.push(Pending {
                op: op.clone(),
                accepted,
                bodies,
                params: pending_params,
            });
        }
        for id in config.body_limits.keys() {
            if !known_ids.contains(id) {
                return Err(ConfigError::at(
                    config_path,
                    &format!("validation.body_limits.{id}"),
                    "no loaded operation has this operationId",
                ));
            }
        }
        for id in &config.skip {
            if !known_ids.contains(id) {
                return Err(ConfigError::at(
                    config_path,
                    "validation.skip",
                    format!("{id:?}: no loaded operation has this operationId"),
                ));
            }
        }
        let mut stores = BTreeMap::new();
        for (idx, schemas) in docs {
            let store = schemas
                .compile()
                .map_err(|why| fail(format!("document {idx}: schemas do not compile: {why}")))?;
            stores.insert(idx, Arc::new(store));
        }
        let mut operations: Vec<HashMap<String, Arc<OperationCheck>>> = Vec::new();
        let mut params: Vec<HashMap<String, Arc<ParamChecks>>> = Vec::new();
        for p in pending {
            let Some(store) = stores.get(&p.op.document) else {
                continue;
            };
            let checks = ParamChecks::new(
                p.params,
                config.strict_query,
                config.max_messages,
                store.clone(),
            );
            for loc in checks.locations() {
                if store.validator(loc).is_none() {
                    return Err(fail(format!(
                        "operation {}: the parameter schema at {loc} does not compile",
                        p.op.operation_id
                    )));
                }
            }
            if !checks.is_empty() {
                if params.len() <= p.op.document {
                    params.resize_with(p.op.document + 1, HashMap::new);
                }
                params[p.op.document].insert(p.op.operation_id.clone(), Arc::new(checks));
            }
            if p.op.request_bodies.is_empty() {
                continue;
            }
            for (_, check) in &p.bodies {
                let locs = match check {
                    BodyCheck::Json(loc) | BodyCheck::Form(loc) => vec![loc.clone()],
                    BodyCheck::Patch(plan) => plan.locations(),
                    BodyCheck::Opaque => Vec::new(),
                };
                for loc in locs {
                    if store.validator(&loc).is_none() {
                        return Err(fail(format!(
                            "operation {}: the schema at {loc} does not compile",
                            p.op.operation_id
                        )));
                    }
                }
            }
            let check = OperationCheck {
                operation_id: p.op.operation_id.clone(),
                method_is_patch: p.op.method == http::Method::PATCH,
                limit: config.body_limit(&p.op.operation_id),
                required: p.op.request_bodies.iter().any(|b| b.required),
                accepted: p.accepted,
                bodies: p.bodies,
                store: store.clone(),
                config: config.clone(),
            };
            if operations.len() <= p.op.document {
                operations.resize_with(p.op.document + 1, HashMap::new);
            }
            operations[p.op.document].insert(p.op.operation_id.clone(), Arc::new(check));
        }
        Ok(Arc::new(Validators {
            config,
            operations,
            params,
            unvalidated,
        }))
    }

    /// Every operation media type whose bodies are forwarded without schema
    /// validation, in load order.
    pub fn unvalidated(&self) -> &[Unvalidated] {
        &self.unvalidated
    }

    /// Checks the path, query and header parameters of a request to `op`
    /// (400 [`Error::InvalidParameters`]).
    pub fn check_params(
        &self,
        op: &Operation,
        uri: &http::Uri,
        headers: &HeaderMap,
        path: Option<&PathParams>,
    ) -> Result<(), Error> {
        match self
            .params
            .get(op.document)
            .and_then(|m| m.get(&op.operation_id))
        {
            Some(checks) => checks.check(uri.query(), headers, path),
            None => Ok(()),
        }
    }

    /// The validated `[validation]` config.
    pub fn config(&self) -> &ValidationConfig {
        &self.config
    }

    /// The checks of an operation; `None` when it takes no request body.
    pub fn operation(&self, op: &Operation) -> Option<&Arc<OperationCheck>> {
        self.operations
            .get(op.document)
            .and_then(|ops| ops.get(&op.operation_id))
    }

    /// Checks a whole request body at once (media type, size, content), as
    /// the layer does: `Ok` holds the bytes to forward. For tests, fuzzing
    /// and benchmarks; the layer uses [`OperationCheck`] directly.
    pub fn validate(
        &self,
        op: &Operation,
        headers: &HeaderMap,
        principal: Option<&Principal>,
        body: Bytes,
    ) -> Result<Bytes, Error> {
        let Some(check) = self.operation(op) else {
            return if body.is_empty() {
                Ok(body)
            } else {
                Err(no_body_expected())
            };
        };
        if body.is_empty() && !has_content_type(headers) {
            return check.absent();
        }
        let accepted = check.media(headers)?;
        if body.len() as u64 > check.limit() {
            return Err(Error::PayloadTooLarge {
                limit: check.limit(),
            });
        }
        check.check(accepted, body, principal)
    }
}

/// Whether the request names a media type at all.
pub(crate) fn has_content_type(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::CONTENT_TYPE)
}

/// The refusal of a body sent to an operation that takes none.
pub(crate) fn no_body_expected() -> Error {
    Error::InvalidBody {
        messages: vec!["body: this operation takes no request body".into()],
    }
}

impl OperationCheck {
    /// The operation's body limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether the operation requires a body.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The outcome for a request without a body and without a
    /// `Content-Type`: fine when the body is optional, else 400.
    pub fn absent(&self) -> Result<Bytes, Error> {
        if self.required {
            Err(Error::InvalidBody {
                messages: vec!["body: required, missing".into()],
            })
        } else {
            Ok(Bytes::new())
        }
    }

    /// Which accepted media type the request's headers name; 415 when none
    /// (`Accept-Patch` on a PATCH), or when the body is content-encoded.
    pub fn media(&self, headers: &HeaderMap) -> Result<Accepted, Error> {
        let requested = media::requested(headers)?;
        let found = requested.as_ref().and_then(|r| {
            // Exact media types before ranges (`image/*`, `*/*`).
            let exact = self.bodies.iter().position(|(e, _)| *e == r.essence);
            exact
                .or_else(|| {
                    self.bodies
                        .iter()
                        .position(|(e, _)| media::covers(e, &r.essence))
                })
                .filter(|i| {
                    r.plain_utf8 || matches!(self.bodies.get(*i), Some((_, BodyCheck::Opaque)))
                })
        });
        found
            .map(Accepted)
            .ok_or_else(|| Error::UnsupportedMediaType {
                accepted: self.accepted.clone(),
                received: requested.map(|r| {
                    if r.plain_utf8 {
                        r.essence
                    } else {
                        format!("{} with these parameters", r.essence)
                    }
                }),
                patch: self.method_is_patch,
            })
    }

    /// Checks a complete body of the accepted media type; `Ok` holds the
    /// bytes to forward (the same bytes, or with read-only fields cut out
    /// when configured to strip them).
    pub fn check(
        &self,
        accepted: Accepted,
        body: Bytes,
        principal: Option<&Principal>,
    ) -> Result<Bytes, Error> {
        let Some((_, check)) = self.bodies.get(accepted.0) else {
            return Err(Error::Internal("media type index out of range".into()));
        };
        if body.is_empty() {
            return if self.required {
                Err(Error::InvalidBody {
                    messages: vec!["body: required, missing".into()],
                })
            } else {
                Ok(body)
            };
        }
        match check {
            BodyCheck::Opaque => Ok(body),
            BodyCheck::Form(loc) => form::check(&self.config, &self.store, loc, body),
            BodyCheck::Json(loc) => check::json(&self.config, &self.store, loc, body),
            BodyCheck::Patch(plan) => patch::check(
                &self.config,
                &self.store,
                plan,
                &self.operation_id,
                body,
                principal,
            ),
        }
    }
}
