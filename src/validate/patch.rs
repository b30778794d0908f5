//! JSON Patch bodies (RFC 6902), as the vendor's API takes them.
//!
//! Accepted forms: the RFC's array of operations, and the
//! `{"operations": [...]}` envelope the vendor documents (and its Python
//! SDK 1.x sends). Refused with 400, one message per problem:
//!
//! - any other shape, or more operations than configured;
//! - an operation that fails the document's own schema for one operation,
//!   an unknown `op`, members other than `op`/`path`/`from`/`value`,
//!   `value` missing where the op needs it (add, replace, test) or present
//!   where it does not, the same for `from` (move, copy);
//! - `path`/`from` that are not RFC 6901 pointers, that name the whole
//!   resource, that use `-` other than to append (add, move, copy), or that
//!   name no field the resource's schema knows;
//! - read-only fields (after unescaping `~1`/`~0`), named by `path` or by
//!   `from` (move, copy), or under a read-only field; a write to a field
//!   that contains read-only fields (it would replace or drop them);
//! - a `move` into its own child; an add/replace `value` that fails the
//!   field's schema.
//!
//! Targets are relative to the resource the operation changes: the object
//! its path names (`/sim-integrations/{id}`), or a field of it named by the
//! rest of the path (`.../{id}/beforeProvisioningRule`). The resource's
//! schemas are those of `PUT` on that path (or `POST` on its collection)
//! and of its `GET` response, taken from the document.
//!
//! When `[validation.patch_paths]` restricts a role of the caller, every
//! path and `from` must lie under one the role may touch, or the request is
//! refused as forbidden (403).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::check::invalid;
use super::config::ValidationConfig;
use super::json;
use super::media::{self, Kind};
use super::report::{self, push_token, show, type_name};
use super::store::{SchemaDoc, Store, Target};
use crate::auth::Principal;
use crate::error::Error;
use crate::routes::Operation;

/// How one operation's JSON Patch bodies are checked.
pub(crate) struct Plan {
    /// The document's schemas for one patch operation.
    op_schemas: Vec<String>,
    /// What the patch changes; `None` when the document does not say.
    resource: Option<Resource>,
    /// What recently used paths name (walking the schemas costs more than
    /// the rest of a patch check; bounded, so odd paths cost only time).
    targets: quick_cache::sync::Cache<Vec<String>, Arc<Target>>,
}

/// Paths remembered per operation.
const REMEMBERED_TARGETS: usize = 1024;

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("op_schemas", &self.op_schemas)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// The schemas of the object a patch changes.
#[derive(Debug)]
struct Resource {
    /// As written (`PUT`/`POST` request body).
    write: Vec<String>,
    /// As read (`GET` response).
    read: Vec<String>,
    /// Where the object lies in the resource (empty for the resource
    /// itself), for the patch path restrictions.
    prefix: Vec<String>,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl Plan {
    /// The plan for `op`, whose body schema is at `body` in `schemas`.
    pub(crate) fn new(
        schemas: &mut SchemaDoc,
        document: &Value,
        op: &Operation,
        body: &str,
    ) -> Result<Plan, String> {
        Ok(Plan {
            op_schemas: schemas.patch_operation_schemas(body),
            resource: resource(schemas, document, &op.operation_id)?,
            targets: quick_cache::sync::Cache::new(REMEMBERED_TARGETS),
        })
    }

    /// Whether the resource's schema was found.
    pub(crate) fn has_resource(&self) -> bool {
        self.resource.is_some()
    }

    /// Every location this plan validates against directly.
    pub(crate) fn locations(&self) -> Vec<String> {
        let mut out = self.op_schemas.clone();
        if let Some(r) = &self.resource {
            out.extend(r.write.iter().cloned());
            out.extend(r.read.iter().cloned());
        }
        out
    }
}

/// Finds the object a PATCH operation changes.
fn resource(
    schemas: &mut SchemaDoc,
    doc: &Value,
    operation_id: &str,
) -> Result<Option<Resource>, String> {
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let Some(path) = paths.iter().find_map(|(path, item)| {
        METHODS
            .iter()
            .any(|m| {
                item.get(*m)
                    .and_then(|o| o.get("operationId"))
                    .and_then(Value::as_str)
                    == Some(operation_id)
            })
            .then_some(path.as_str())
    }) else {
        return Ok(None);
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let template = |s: &str| s.starts_with('{') && s.ends_with('}');
    for k in (1..=segments.len()).rev() {
        let here = format!("/{}", segments[..k].join("/"));
        let item = paths.get(&here);
        let mut write = Vec::new();
        let mut read = Vec::new();
        if let Some(s) = item.and_then(|i| request_schema(doc, i.get("put"))) {
            write.push(schemas.include(s)?);
        }
        if write.is_empty() && template(segments[k - 1]) {
            let collection = format!("/{}", segments[..k - 1].join("/"));
            if let Some(s) = paths
                .get(&collection)
                .and_then(|i| request_schema(doc, i.get("post")))
            {
                write.push(schemas.include(s)?);
            }
        }
        if let Some(s) = item.and_then(|i| response_schema(doc, i.get("get"))) {
            read.push(schemas.include(s)?);
        }
        if write.is_empty() && read.is_empty() {
            continue;
        }
        let prefix: Vec<String> = segments[k..].iter().map(|s| (*s).to_owned()).collect();
        if prefix.iter().any(|s| template(s)) {
            return Ok(None);
        }
        if !prefix.is_empty() {
            write = schemas.target(&write, &prefix).schemas;
            read = schemas.target(&read, &prefix).schemas;
            if write.is_empty() && read.is_empty() {
                return Ok(None);
            }
        }
        return Ok(Some(Resource {
            write,
            read,
            prefix,
        }));
    }
    Ok(None)
}

/// Follows a `$ref` (a few levels) within the document.
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> Option<&'a Value> {
    for _ in 0..8 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => v = doc.pointer(r.strip_prefix('#')?)?,
            None => return Some(v),
        }
    }
    None
}

/// The JSON schema of a media-type map (`content`), preferring
/// `application/json`.
fn json_schema<'a>(doc: &'a Value, holder: &'a Value) -> Option<&'a Value> {
    let content = deref(doc, holder)?.get("content")?.as_object()?;
    let json = content
        .iter()
        .filter(|(m, _)| matches!(media::declared(m), Some((_, Kind::Json))))
        .min_by_key(|(m, _)| !m.starts_with("application/json"))?;
    json.1.get("schema")
}

fn request_schema<'a>(doc: &'a Value, op: Option<&'a Value>) -> Option<&'a Value> {
    json_schema(doc, op?.get("requestBody")?)
}

fn response_schema<'a>(doc: &'a Value, op: Option<&'a Value>) -> Option<&'a Value> {
    let responses = op?.get("responses")?.as_object()?;
    let ok = ["200", "201", "2XX"]
        .iter()
        .find_map(|c| responses.get(*c))
        .or_else(|| {
            responses
                .iter()
                .find(|(c, _)| c.starts_with('2'))
                .map(|(_, r)| r)
        })?;
    json_schema(doc, ok)
}

/// Checks a JSON Patch body; `Ok` holds the same bytes.
pub(crate) fn check(
    config: &ValidationConfig,
    store: &Store,
    plan: &Plan,
    operation_id: &str,
    body: Bytes,
    principal: Option<&Principal>,
) -> Result<Bytes, Error> {
    let value = json::parse(&body, config.max_depth).map_err(|m| invalid(config, vec![m]))?;
    let refuse = |m: String| invalid(config, vec![m]);
    let shape = "a JSON Patch is an array of operations or {\"operations\": [...]}";
    let (ops, prefix) = match &value {
        Value::Array(ops) => (ops, ""),
        Value::Object(m) => {
            if let Some(extra) = m.keys().find(|k| *k != "operations") {
                let mut at = String::new();
                push_token(&mut at, extra);
                return Err(refuse(format!("{at}: unknown member; {shape}")));
            }
            match m.get("operations") {
                Some(Value::Array(ops)) => (ops, "/operations"),
                Some(other) => {
                    return Err(refuse(format!(
                        "/operations: expected array, got {}",
                        type_name(other)
                    )));
                }
                None => return Err(refuse(format!("body: {shape}"))),
            }
        }
        other => {
            return Err(refuse(format!(
                "body: expected array or object, got {}; {shape}",
                type_name(other)
            )));
        }
    };
    if ops.len() > config.max_patch_operations {
        return Err(refuse(format!(
            "{}: more than {} operations",
            show(prefix),
            config.max_patch_operations
        )));
    }
    let mut messages = Vec::new();
    let mut touched = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let at = format!("{prefix}/{i}");
        check_op(store, plan, &at, op, &mut messages, &mut touched);
    }
    if !messages.is_empty() {
        return Err(invalid(config, messages));
    }
    if !config.patch_paths.is_empty() {
        let roles = principal
            .map(|p| p.roles.as_slice())
            .ok_or_else(|| Error::Internal("patch path restrictions need a principal".into()))?;
        let prefix: &[String] = plan.resource.as_ref().map_or(&[], |r| &r.prefix);
        for tokens in touched {
            let full: Vec<String> = prefix.iter().cloned().chain(tokens).collect();
            if !config.patch_paths.allows(roles, &full) {
                return Err(Error::Forbidden {
                    operation: operation_id.to_owned(),
                });
            }
        }
    }
    Ok(body)
}

/// What an operation does with a pointer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Changes the field (add, replace, remove, move's path and from, copy's path).
    Write,
    /// Only reads it (test, copy's from).
    Read,
}

fn check_op(
    store: &Store,
    plan: &Plan,
    at: &str,
    op: &Value,
    messages: &mut Vec<String>,
    touched: &mut Vec<Vec<String>>,
) {
    let Value::Object(m) = op else {
        messages.push(format!("{at}: expected object, got {}", type_name(op)));
        return;
    };
    let before = messages.len();
    for loc in &plan.op_schemas {
        match store.validator(loc) {
            Some(v) if !v.is_valid(op) => {
                messages.extend(v.iter_errors(op).map(|e| report::message(at, &e)));
            }
            Some(_) => {}
            None => messages.push(format!("{at}: cannot be checked")),
        }
    }
    if messages.len() > before {
        return;
    }
    for key in m.keys() {
        if !matches!(key.as_str(), "op" | "path" | "from" | "value") {
            let mut here = at.to_owned();
            push_token(&mut here, key);
            messages.push(format!("{here}: unknown member"));
        }
    }
    let name = match m.get("op") {
        Some(Value::String(name)) => name.as_str(),
        Some(other) => {
            messages.push(format!(
                "{at}/op: expected string, got {}",
                type_name(other)
            ));
            return;
        }
        None => {
            messages.push(format!("{at}/op: required, missing"));
            return;
        }
    };
    let (takes_value, takes_from) = match name {
        "add" | "replace" | "test" => (true, false),
        "remove" => (false, false),
        "move" | "copy" => (false, true),
        _ => {
            messages.push(format!(
                "{at}/op: unknown operation {:?}; expected add, remove, replace, move, copy or test",
                clip(name)
            ));
            return;
        }
    };
    for (member, wanted) in [("value", takes_value), ("from", takes_from)] {
        match (m.contains_key(member), wanted) {
            (false, true) => messages.push(format!("{at}/{member}: required for {name}")),
            (true, false) => messages.push(format!("{at}/{member}: not used by {name}")),
            _ => {}
        }
    }
    if !m.contains_key("path") {
        messages.push(format!("{at}/path: required, missing"));
        return;
    }
    let path_use = if name == "test" {
        Use::Read
    } else {
        Use::Write
    };
    let appends = matches!(name, "add" | "move" | "copy");
    let Some((path, target)) = pointer(store, plan, m, "path", at, path_use, appends, messages)
    else {
        return;
    };
    if takes_from {
        let from_use = if name == "move" {
            Use::Write
        } else {
            Use::Read
        };
        if let Some((from, _)) = pointer(store, plan, m, "from", at, from_use, false, messages) {
            if name == "move" && path.len() > from.len() && path.starts_with(&from) {
                messages.push(format!("{at}/from: cannot move a field into itself"));
            }
            touched.push(from);
        }
    }
    if matches!(name, "add" | "replace")
        && let Some(value) = m.get("value")
    {
        for loc in &target.schemas {
            match store.validator(loc) {
                Some(v) if !v.is_valid(value) => messages.extend(
                    v.iter_errors(value)
                        .map(|e| report::message(&format!("{at}/value"), &e)),
                ),
                Some(_) => {}
                None => messages.push(format!("{at}/value: cannot be checked")),
            }
        }
    }
    touched.push(path);
}

/// Checks the pointer in `member`; returns its decoded tokens and what they
/// name when it is a field the operation may use.
#[allow(clippy::too_many_arguments)]
fn pointer(
    store: &Store,
    plan: &Plan,
    m: &Map<String, Value>,
    member: &str,
    at: &str,
    usage: Use,
    appends: bool,
    messages: &mut Vec<String>,
) -> Option<(Vec<String>, Arc<Target>)> {
    let raw = match m.get(member)? {
        Value::String(s) => s.as_str(),
        other => {
            messages.push(format!(
                "{at}/{member}: expected string, got {}",
                type_name(other)
            ));
            return None;
        }
    };
    let shown = clip(raw);
    let here = format!("{at}/{member}");
    let ptr = match jsonptr::Pointer::parse(raw) {
        Ok(p) => p,
        Err(e) => {
            messages.push(format!("{here}: {shown:?} is not a JSON Pointer ({e})"));
            return None;
        }
    };
    let tokens: Vec<String> = ptr.tokens().map(|t| t.decoded().into_owned()).collect();
    if tokens.is_empty() {
        messages.push(format!("{here}: must name a field, not the whole resource"));
        return None;
    }
    let last = tokens.len() - 1;
    if tokens
        .iter()
        .enumerate()
        .any(|(i, t)| t == "-" && !(appends && i == last))
    {
        messages.push(format!(
            "{here}: {shown:?} uses \"-\", which only ends the path of add, move or copy"
        ));
        return None;
    }
    let Some(resource) = &plan.resource else {
        messages.push(format!(
            "{here}: the gateway does not know this resource's fields, so it cannot be patched"
        ));
        return None;
    };
    let t = match plan.targets.get(tokens.as_slice()) {
        Some(t) => t,
        None => {
            let t = Arc::new(target(store, resource, &tokens));
            plan.targets.insert(tokens.clone(), t.clone());
            t
        }
    };
    let problem = if !t.known {
        Some("is not a field of the resource")
    } else if t.read_only {
        Some("is read-only")
    } else if usage == Use::Write && t.contains_read_only {
        Some("contains read-only fields")
    } else {
        None
    };
    if let Some(problem) = problem {
        messages.push(format!("{here}: {shown:?} {problem}"));
        return None;
    }
    Some((tokens, t))
}

/// What `tokens` name, by the write schema first, then the read schema.
fn target(store: &Store, r: &Resource, tokens: &[String]) -> Target {
    let w = if r.write.is_empty() {
        Target::default()
    } else {
        store.target(&r.write, tokens)
    };
    let rd = if r.read.is_empty() {
        Target::default()
    } else {
        store.target(&r.read, tokens)
    };
    Target {
        known: w.known || rd.known,
        read_only: w.read_only || rd.read_only,
        contains_read_only: w.contains_read_only || rd.contains_read_only,
        schemas: if w.schemas.is_empty() {
            rd.schemas
        } else {
            w.schemas
        },
    }
}

/// At most 100 characters of client text, for messages.
fn clip(s: &str) -> String {
    if s.chars().count() <= 100 {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(100).collect();
        out.push('…');
        out
    }
}
