//! The validators of every operation, compiled once at start from the loaded
//! OpenAPI documents.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

use super::config::{ValidationConfig, ValidationSection};
use super::media::{self, Kind};
use super::store::{SchemaDoc, Store};
use super::{check, patch};
use crate::auth::Principal;
use crate::error::{ConfigError, Error};
use crate::routes::Operation;

/// The compiled body checks of every operation that takes a request body.
#[derive(Debug)]
pub struct Validators {
    config: Arc<ValidationConfig>,
    /// By document index, then operationId.
    operations: Vec<HashMap<String, Arc<OperationCheck>>>,
}

/// The body checks of one operation.
#[derive(Debug)]
pub struct OperationCheck {
    operation_id: String,
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
        let config = Arc::new(ValidationConfig::from_section(section, config_path)?);
        let fail = |why: String| ConfigError::at(config_path, "api.documents", why);
        let mut docs: BTreeMap<usize, SchemaDoc> = BTreeMap::new();
        let mut pending = Vec::new();
        let mut known_ids = Vec::new();
        for op in operations {
            known_ids.push(op.operation_id.clone());
            if op.request_bodies.is_empty() {
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
            let mut accepted = Vec::new();
            let mut bodies = Vec::new();
            for body in &op.request_bodies {
                let Some((essence, kind)) = media::declared(&body.media_type) else {
                    tracing::warn!(
                        operation = %op.operation_id,
                        media_type = %body.media_type,
                        "request media type cannot be validated; such requests will be refused (415)"
                    );
                    continue;
                };
                let loc = schemas.include(&body.schema).map_err(&at)?;
                let check = match kind {
                    Kind::Json => BodyCheck::Json(loc),
                    Kind::Patch => {
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
        let mut stores = BTreeMap::new();
        for (idx, schemas) in docs {
            let store = schemas
                .compile()
                .map_err(|why| fail(format!("document {idx}: schemas do not compile: {why}")))?;
            stores.insert(idx, Arc::new(store));
        }
        let mut operations: Vec<HashMap<String, Arc<OperationCheck>>> = Vec::new();
        for p in pending {
            let Some(store) = stores.get(&p.op.document) else {
                continue;
            };
            for (_, check) in &p.bodies {
                let locs = match check {
                    BodyCheck::Json(loc) => vec![loc.clone()],
                    BodyCheck::Patch(plan) => plan.locations(),
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
        Ok(Arc::new(Validators { config, operations }))
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
        let accepted = check.media(headers)?;
        if body.len() as u64 > check.limit() {
            return Err(Error::PayloadTooLarge {
                limit: check.limit(),
            });
        }
        check.check(accepted, body, principal)
    }
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

    /// Which accepted media type the request's headers name, or 415.
    pub fn media(&self, headers: &HeaderMap) -> Result<Accepted, Error> {
        media::requested(headers)
            .and_then(|essence| self.bodies.iter().position(|(e, _)| *e == essence))
            .map(Accepted)
            .ok_or_else(|| Error::UnsupportedMediaType {
                accepted: self.accepted.clone(),
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
