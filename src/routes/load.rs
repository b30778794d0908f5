//! Loading the `[api]` documents into an [`OperationTable`].
//!
//! Accepts OpenAPI 3.0.x and 3.1.x documents in JSON or YAML (chosen by the
//! file's extension: `.json`, `.yaml`/`.yml`; anything else is tried as
//! JSON, then YAML). 3.1 `webhooks` are ignored (the gateway serves
//! requests, it does not send them). An operation without an `operationId`
//! is named after its method and served path, e.g. `post /streams`, and the
//! policy grants it by that name. Refused at start, naming the document and
//! what is wrong: Swagger 2.0 and any other OpenAPI version, an
//! `operationId` used twice, the same (method, path) in two documents, two
//! templates that differ only in parameter names or could match the same
//! request path with neither more specific (`/a/{x}.json` and `/a/x{y}`),
//! two parameters in a segment with no text between them, path parameters
//! that are not declared, and external `$ref`s.

use std::path::Path;
use std::sync::Arc;

use http::Method;
use serde_json::Value;

use super::config::ApiSection;
use super::operation::{Operation, ParamIn, ParamStyle, Parameter, RequestBody, is_mutating};
use super::path::is_plain;
use super::table::{
    Document, OperationTable, Part, PathEntry, TemplateSegment, capture, more_specific,
};
use crate::config::resolve;
use crate::error::ConfigError;

/// The methods an OpenAPI path item can hold, in the table's order.
const METHODS: [(&str, Method); 8] = [
    ("get", Method::GET),
    ("head", Method::HEAD),
    ("post", Method::POST),
    ("put", Method::PUT),
    ("patch", Method::PATCH),
    ("delete", Method::DELETE),
    ("options", Method::OPTIONS),
    ("trace", Method::TRACE),
];

impl OperationTable {
    /// Reads, checks and indexes the documents of `[api]`. Relative paths
    /// are resolved against `base_dir` (the config file's folder); errors
    /// name `config_path`, the key and the document.
    pub fn load(
        section: &ApiSection,
        config_path: &Path,
        base_dir: &Path,
    ) -> Result<Arc<OperationTable>, ConfigError> {
        if section.documents.is_empty() {
            return Err(ConfigError::at(
                config_path,
                "api.documents",
                "no OpenAPI documents: gateway mode needs at least one",
            ));
        }
        let mut documents = Vec::with_capacity(section.documents.len());
        for (i, entry) in section.documents.iter().enumerate() {
            let key = format!("api.documents[{i}]");
            let path = resolve(base_dir, Path::new(&entry.path));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::at(
                    config_path,
                    &key,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let value = parse_document(&text, &path).map_err(|e| {
                ConfigError::at(config_path, &key, format!("{}: {e}", path.display()))
            })?;
            let mount = mount(&entry.mount)
                .map_err(|e| ConfigError::at(config_path, &format!("{key}.mount"), e))?;
            documents.push(Document { path, mount, value });
        }
        build(documents)
            .map(Arc::new)
            .map_err(|(i, e)| ConfigError::at(config_path, &format!("api.documents[{i}]"), e))
    }
}

/// Parses a document as JSON or YAML and checks it is OpenAPI 3.0 or 3.1.
pub(crate) fn parse_document(text: &str, path: &Path) -> Result<Value, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let value = match ext.as_deref() {
        Some("json") => serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?,
        Some("yaml" | "yml") => yaml(text)?,
        _ => match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => yaml(text).map_err(|e| format!("neither JSON nor {e}"))?,
        },
    };
    match value.get("openapi") {
        Some(Value::String(v)) if v.starts_with("3.0.") || v.starts_with("3.1.") => Ok(value),
        Some(Value::String(v)) => Err(format!(
            "is OpenAPI {v}; only OpenAPI 3.0.x and 3.1.x documents are supported"
        )),
        Some(other) => Err(format!(
            "`openapi` must be a version string such as \"3.1.0\", found {other} (quote it in YAML)"
        )),
        None if value.get("swagger").is_some() => Err(
            "is a Swagger 2.0 document; only OpenAPI 3.0.x and 3.1.x documents are supported"
                .into(),
        ),
        None => Err("is not an OpenAPI document (no `openapi` version string)".into()),
    }
}

/// YAML text as a JSON value (scalar mapping keys such as `200:` become
/// strings, merge keys are applied, tags are dropped).
fn yaml(text: &str) -> Result<Value, String> {
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("valid YAML: {e}"))?;
    v.apply_merge().map_err(|e| format!("valid YAML: {e}"))?;
    yaml_to_json(v)
}

fn yaml_to_json(v: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("YAML number {n} has no JSON equivalent"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_owned(),
                    _ => return Err("a YAML mapping key is not a scalar".into()),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

/// Checks a mount prefix and returns it without a trailing `/` (except `/`).
fn mount(m: &str) -> Result<String, String> {
    if m == "/" {
        return Ok(m.to_owned());
    }
    let Some(rest) = m.strip_prefix('/') else {
        return Err(format!("{m:?} must start with '/'"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for seg in rest.split('/') {
        literal(seg).map_err(|e| format!("{m:?}: {e}"))?;
    }
    Ok(format!("/{rest}"))
}

/// Checks a literal template segment: it must match one raw segment exactly.
fn literal(seg: &str) -> Result<(), String> {
    if seg.is_empty() {
        return Err("empty path segment".into());
    }
    if seg.bytes().all(|b| b == b'.') {
        return Err("dot segment".into());
    }
    if !seg.bytes().all(is_plain) {
        return Err(format!(
            "segment {seg:?} has characters that need percent-encoding (not supported)"
        ));
    }
    Ok(())
}

/// Parses a path template (after the mount) into segments.
fn template(path: &str) -> Result<Vec<TemplateSegment>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path {path:?} must start with '/'"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for seg in rest.split('/') {
        if !seg.contains(['{', '}']) {
            literal(seg).map_err(|e| format!("path {path:?}: {e}"))?;
            out.push(TemplateSegment::Literal(seg.to_owned()));
            continue;
        }
        let parts = parts(seg).map_err(|e| format!("path {path:?}: segment {seg:?}: {e}"))?;
        for p in &parts {
            if let Part::Param(name) = p {
                if names.contains(name) {
                    return Err(format!("path {path:?}: parameter {{{name}}} appears twice"));
                }
                names.push(name.clone());
            }
        }
        out.push(match parts.as_slice() {
            [Part::Param(name)] => TemplateSegment::Param(name.clone()),
            _ => TemplateSegment::Mixed(parts),
        });
    }
    Ok(out)
}

/// Splits a segment with parameters into text and parameters.
fn parts(seg: &str) -> Result<Vec<Part>, String> {
    let mut out = Vec::new();
    let mut rest = seg;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            Some(0) => {
                let close = rest
                    .find('}')
                    .filter(|&c| c > 1 && !rest[1..c].contains('{'))
                    .ok_or("a parameter must be written `{name}`")?;
                if matches!(out.last(), Some(Part::Param(_))) {
                    return Err("two parameters with no text between them".into());
                }
                out.push(Part::Param(rest[1..close].to_owned()));
                rest = &rest[close + 1..];
            }
            found => {
                let end = found.unwrap_or(rest.len());
                let text = &rest[..end];
                if !text.bytes().all(is_plain) {
                    return Err(format!(
                        "text {text:?} has characters that need percent-encoding (not supported)"
                    ));
                }
                if rest[end..].starts_with('}') {
                    return Err("unbalanced '}'".into());
                }
                out.push(Part::Text(text.to_owned()));
                rest = &rest[end..];
            }
        }
    }
    Ok(out)
}

/// Follows local `$ref`s (`#/…`) to the value they name.
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> Result<&'a Value, String> {
    for _ in 0..32 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return Ok(v);
        };
        let pointer = r.strip_prefix('#').ok_or_else(|| {
            format!("external $ref {r:?} is not supported (bundle the document into one file)")
        })?;
        v = doc
            .pointer(pointer)
            .ok_or_else(|| format!("$ref {r:?} points to nothing"))?;
    }
    Err("$ref chain too long (a cycle?)".into())
}

/// A `security` list as requirement sets (OR of ANDs: the scopes of all
/// schemes of one requirement object).
fn security(security: &Value, what: &str) -> Result<Vec<Vec<String>>, String> {
    let bad = || format!("{what}: `security` must be a list of {{scheme: [scopes]}} objects");
    let mut out = Vec::new();
    for requirement in security.as_array().ok_or_else(bad)? {
        let mut all: Vec<String> = Vec::new();
        for list in requirement.as_object().ok_or_else(bad)?.values() {
            for s in list.as_array().ok_or_else(bad)? {
                let s = s.as_str().ok_or_else(bad)?;
                if !all.iter().any(|o| o == s) {
                    all.push(s.to_owned());
                }
            }
        }
        out.push(all);
    }
    Ok(out)
}

/// The parameters of a `parameters` list (cookies are left out), each
/// replacing an earlier one with the same name and location.
fn parameters(
    doc: &Value,
    params: Option<&Value>,
    out: &mut Vec<Parameter>,
    what: &str,
) -> Result<(), String> {
    for p in params.and_then(Value::as_array).into_iter().flatten() {
        let p = deref(doc, p)?;
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{what}: a parameter has no `name`"))?;
        let location = match p.get("in").and_then(Value::as_str) {
            Some("path") => ParamIn::Path,
            Some("query") => ParamIn::Query,
            Some("header") => ParamIn::Header,
            Some("cookie") => continue,
            other => {
                return Err(format!(
                    "{what}: parameter {name:?}: `in` must be path, query, header or cookie, found {other:?}"
                ));
            }
        };
        let style = match p.get("style").and_then(Value::as_str) {
            None if location == ParamIn::Query => ParamStyle::Form,
            None | Some("simple") => ParamStyle::Simple,
            Some("form") => ParamStyle::Form,
            Some("deepObject") => ParamStyle::DeepObject,
            Some(_) => ParamStyle::Other,
        };
        let explode = p
            .get("explode")
            .and_then(Value::as_bool)
            .unwrap_or(style == ParamStyle::Form);
        // `content` instead of `schema`: the value is a serialised document
        // the gateway does not parse; only its presence is checked.
        let schema = p.get("schema").cloned().unwrap_or(Value::Bool(true));
        let param = Parameter {
            name: name.to_owned(),
            location,
            required: location == ParamIn::Path
                || p.get("required").and_then(Value::as_bool).unwrap_or(false),
            style,
            explode,
            schema,
        };
        let same = |o: &Parameter| {
            o.location == param.location
                && if location == ParamIn::Header {
                    o.name.eq_ignore_ascii_case(&param.name)
                } else {
                    o.name == param.name
                }
        };
        match out.iter_mut().find(|o| same(o)) {
            Some(o) => *o = param,
            None => out.push(param),
        }
    }
    Ok(())
}

fn request_bodies(doc: &Value, op: &Value, what: &str) -> Result<Vec<RequestBody>, String> {
    let Some(rb) = op.get("requestBody") else {
        return Ok(Vec::new());
    };
    let rb = deref(doc, rb)?;
    let required = rb.get("required").and_then(Value::as_bool).unwrap_or(false);
    let content = rb
        .get("content")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{what}: requestBody has no `content`"))?;
    Ok(content
        .iter()
        .map(|(media_type, m)| RequestBody {
            media_type: media_type.clone(),
            schema: m
                .get("schema")
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default())),
            required,
        })
        .collect())
}

/// The operations of one document, with their templates.
fn operations_of(
    idx: usize,
    doc: &Document,
) -> Result<Vec<(Vec<TemplateSegment>, Operation)>, String> {
    let v = &doc.value;
    let openapi_31 = v
        .get("openapi")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("3.1."));
    static NO_PATHS: std::sync::LazyLock<serde_json::Map<String, Value>> =
        std::sync::LazyLock::new(serde_json::Map::new);
    let paths = match v.get("paths") {
        Some(Value::Object(paths)) => paths,
        // 3.1 makes `paths` optional (a document of webhooks or components).
        None if openapi_31 => &NO_PATHS,
        _ => return Err("`paths` is missing or not an object".into()),
    };
    let prefix = if doc.mount == "/" { "" } else { &doc.mount };
    let mount_segments = template(&doc.mount)?;
    let top_security = v.get("security");
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item
            .as_object()
            .ok_or_else(|| format!("path {path:?} is not an object"))?;
        if item.contains_key("$ref") {
            return Err(format!(
                "path {path:?}: path item `$ref` is not supported (bundle the document)"
            ));
        }
        let mut segments = mount_segments.clone();
        segments.extend(template(path)?);
        let mut common = Vec::new();
        parameters(v, item.get("parameters"), &mut common, path)?;
        let path_params: Vec<String> = segments
            .iter()
            .flat_map(|s| match s {
                TemplateSegment::Param(n) => vec![n.clone()],
                TemplateSegment::Literal(_) => Vec::new(),
                TemplateSegment::Mixed(parts) => parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Param(n) => Some(n.clone()),
                        Part::Text(_) => None,
                    })
                    .collect(),
            })
            .collect();
        for (key, method) in &METHODS {
            let Some(op) = item.get(*key) else { continue };
            let what = format!("{} {path}", method);
            let served = format!("{prefix}{path}");
            let operation_id = match op.get("operationId").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => id.to_owned(),
                _ => format!("{key} {served}"),
            };
            if operation_id.starts_with('@') {
                return Err(format!(
                    "{what}: operationId {operation_id:?} may not start with '@' (reserved for policy groups)"
                ));
            }
            let mut params = common.clone();
            parameters(v, op.get("parameters"), &mut params, &what)?;
            if let Some(missing) = path_params.iter().find(|p| {
                !params
                    .iter()
                    .any(|d| d.location == ParamIn::Path && d.name == **p)
            }) {
                return Err(format!(
                    "{what}: path parameter {{{missing}}} is not declared in `parameters` (in: path)"
                ));
            }
            // A declared path parameter the template lacks can never be sent.
            params.retain(|d| d.location != ParamIn::Path || path_params.contains(&d.name));
            let security = match op.get("security").or(top_security) {
                Some(s) => security(s, &what)?,
                None => Vec::new(),
            };
            let mut scopes: Vec<String> = Vec::new();
            for s in security.iter().flatten() {
                if !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
            out.push((
                segments.clone(),
                Operation {
                    operation_id,
                    method: method.clone(),
                    path_template: served,
                    mutating: is_mutating(method),
                    scopes,
                    security,
                    parameters: params,
                    openapi_31,
                    request_bodies: request_bodies(v, op, &what)?,
                    path_params: path_params.clone(),
                    document: idx,
                    index: 0,
                },
            ));
        }
    }
    Ok(out)
}

/// Builds the table; an error names the index of the document at fault.
pub(crate) fn build(documents: Vec<Document>) -> Result<OperationTable, (usize, String)> {
    let mut operations: Vec<Arc<Operation>> = Vec::new();
    let mut paths: Vec<PathEntry> = Vec::new();
    for (idx, doc) in documents.iter().enumerate() {
        let fail = |e: String| (idx, format!("{}: {e}", doc.path.display()));
        let source = |o: &Operation| {
            documents
                .get(o.document)
                .map(|d| d.path.display().to_string())
                .unwrap_or_default()
        };
        for (segments, mut op) in operations_of(idx, doc).map_err(fail)? {
            if let Some(other) = operations
                .iter()
                .find(|o| o.operation_id == op.operation_id)
            {
                return Err(fail(format!(
                    "operationId {:?} of {} {} is also used by {} {} ({})",
                    op.operation_id,
                    op.method,
                    op.path_template,
                    other.method,
                    other.path_template,
                    source(other)
                )));
            }
            op.index = operations.len();
            let op = Arc::new(op);
            let same_shape = paths
                .iter_mut()
                .find(|e| same_shape(&e.segments, &segments));
            let entry = match same_shape {
                Some(e) if e.segments != segments => {
                    let other = e.methods.first().map(|(_, o)| o.path_template.as_str());
                    return Err(fail(format!(
                        "{} differs from {} only in parameter names",
                        op.path_template,
                        other.unwrap_or("another path")
                    )));
                }
                Some(e) => e,
                None => {
                    paths.push(PathEntry {
                        segments,
                        methods: Vec::new(),
                        allow: String::new(),
                    });
                    match paths.last_mut() {
                        Some(e) => e,
                        None => return Err(fail("internal: path table empty".into())),
                    }
                }
            };
            if let Some((_, other)) = entry.methods.iter().find(|(m, _)| *m == op.method) {
                return Err(fail(format!(
                    "{} {} is already served by {} ({})",
                    op.method,
                    op.path_template,
                    other.operation_id,
                    source(other)
                )));
            }
            entry.methods.push((op.method.clone(), op.clone()));
            operations.push(op);
        }
    }
    for entry in &mut paths {
        entry
            .methods
            .sort_by_key(|(m, _)| METHODS.iter().position(|(_, x)| x == m));
        let has = |m: Method| entry.methods.iter().any(|(x, _)| *x == m);
        let (head, options) = (has(Method::HEAD), has(Method::OPTIONS));
        let mut allow: Vec<&str> = Vec::new();
        for (m, _) in &entry.methods {
            allow.push(m.as_str());
            if *m == Method::GET && !head {
                allow.push("HEAD");
            }
        }
        if !options {
            allow.push("OPTIONS");
        }
        entry.allow = allow.join(", ");
    }
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            if ambiguous(&a.segments, &b.segments) {
                let name = |e: &PathEntry| {
                    e.methods
                        .first()
                        .map(|(_, o)| (o.path_template.clone(), o.document))
                        .unwrap_or_default()
                };
                let ((pa, _), (pb, db)) = (name(a), name(b));
                return Err((
                    db,
                    format!(
                        "{pb} and {pa} can match the same request path and neither is more specific"
                    ),
                ));
            }
        }
    }
    Ok(OperationTable {
        documents,
        operations,
        paths,
    })
}

fn same_shape(a: &[TemplateSegment], b: &[TemplateSegment]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_segment_shape(x, y))
}

fn same_segment_shape(x: &TemplateSegment, y: &TemplateSegment) -> bool {
    match (x, y) {
        (TemplateSegment::Literal(l), TemplateSegment::Literal(r)) => l == r,
        (TemplateSegment::Param(_), TemplateSegment::Param(_)) => true,
        (TemplateSegment::Mixed(l), TemplateSegment::Mixed(r)) => {
            l.len() == r.len()
                && l.iter().zip(r).all(|(p, q)| match (p, q) {
                    (Part::Text(a), Part::Text(b)) => a == b,
                    (Part::Param(_), Part::Param(_)) => true,
                    _ => false,
                })
        }
        _ => false,
    }
}

/// Whether two templates of different shapes could match one request path
/// with neither more specific than the other.
fn ambiguous(a: &[TemplateSegment], b: &[TemplateSegment]) -> bool {
    if a.len() != b.len() || same_shape(a, b) {
        return false;
    }
    if !a.iter().zip(b).all(|(x, y)| may_overlap(x, y)) {
        return false;
    }
    !more_specific(a, b) && !more_specific(b, a)
}

/// Whether some raw segment could match both template segments.
fn may_overlap(x: &TemplateSegment, y: &TemplateSegment) -> bool {
    use TemplateSegment::{Literal, Mixed, Param};
    match (x, y) {
        (Literal(l), Literal(r)) => l == r,
        (Param(_), _) | (_, Param(_)) => true,
        (Literal(l), Mixed(m)) | (Mixed(m), Literal(l)) => capture(m, l).is_some(),
        (Mixed(l), Mixed(r)) => {
            // Different leading or trailing text keeps them apart; anything
            // subtler is treated as a possible overlap.
            let text = |p: Option<&Part>| match p {
                Some(Part::Text(t)) => t.clone(),
                _ => String::new(),
            };
            let (lp, rp) = (text(l.first()), text(r.first()));
            let (ls, rs) = (text(l.last()), text(r.last()));
            (lp.starts_with(&rp) || rp.starts_with(&lp)) && (ls.ends_with(&rs) || rs.ends_with(&ls))
        }
    }
}

/// A table from in-memory documents `(mount, document)`, for unit tests.
#[cfg(test)]
pub(crate) fn table_of(docs: &[(&str, Value)]) -> Result<OperationTable, String> {
    let mut documents = Vec::new();
    for (i, (m, v)) in docs.iter().enumerate() {
        documents.push(Document {
            path: format!("doc{i}.json").into(),
            mount: mount(m)?,
            value: v.clone(),
        });
    }
    build(documents).map_err(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::config::DocumentEntry;
    use serde_json::json;

    fn repo_api() -> ApiSection {
        ApiSection {
            documents: vec![
                DocumentEntry {
                    path: "openapi/sim-integrations.beta.json".into(),
                    mount: "/beta".into(),
                },
                DocumentEntry {
                    path: "openapi/sim-integrations.v1.json".into(),
                    mount: "/".into(),
                },
            ],
        }
    }

    fn config_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    fn doc(paths: Value) -> Value {
        json!({ "openapi": "3.0.3", "info": { "title": "t", "version": "1" }, "paths": paths })
    }

    fn get_op(id: &str) -> Value {
        json!({ "get": { "operationId": id, "responses": { "200": { "description": "ok" } } } })
    }

    #[test]
    fn loads_the_repository_documents() {
        let dir = config_dir();
        let t = OperationTable::load(&repo_api(), &dir.join("simgate.toml"), &dir).unwrap();
        assert_eq!(t.len(), 14);
        assert_eq!(t.documents().len(), 2);
        let ids: Vec<_> = t.operations().map(|o| o.operation_id.as_str()).collect();
        for id in [
            "getSIMIntegrations",
            "createSIMIntegration",
            "getSIMIntegration",
            "putSIMIntegration",
            "patchSIMAttributes",
            "deleteSIMIntegration",
            "patchBeforeProvisioningRule",
        ] {
            assert!(ids.contains(&id), "{id}");
            assert!(ids.contains(&format!("{id}V1").as_str()), "{id}V1");
        }
        for (i, op) in t.operations().enumerate() {
            assert_eq!(op.index, i);
        }
        let patch = t.get("patchSIMAttributes").unwrap();
        assert_eq!(patch.method, Method::PATCH);
        assert_eq!(patch.path_template, "/beta/sim-integrations/{id}");
        assert!(patch.mutating);
        assert_eq!(patch.path_params, ["id"]);
        assert_eq!(patch.scopes, ["idn:service-desk-integration:manage"]);
        assert_eq!(patch.document, 0);
        assert_eq!(patch.request_bodies.len(), 1);
        assert_eq!(
            patch.request_bodies[0].media_type,
            "application/json-patch+json"
        );
        assert!(patch.request_bodies[0].required);
        let schema_ref = patch.request_bodies[0].schema["$ref"].as_str().unwrap();
        assert!(
            t.document(patch.document)
                .pointer(schema_ref.trim_start_matches('#'))
                .is_some()
        );
        let list = t.get("getSIMIntegrationsV1").unwrap();
        assert_eq!(list.path_template, "/sim-integrations/v1");
        assert!(!list.mutating);
        assert_eq!(list.document, 1);
        assert_eq!(
            list.scopes,
            [
                "idn:service-desk-integration:read",
                "idn:service-desk-integration:manage"
            ]
        );
        assert!(list.request_bodies.is_empty());
    }

    #[test]
    fn loads_yaml_with_numeric_keys_merges_and_top_level_security() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = r#"
openapi: 3.0.0
info: { title: y, version: "1" }
security:
  - oauth: [things:read]
x-common: &common
  responses:
    200: { description: ok }
    default: { description: error }
paths:
  /things/{thingId}:
    parameters:
      - { name: thingId, in: path, required: true, schema: { type: string } }
    get:
      operationId: getThing
      <<: *common
    delete:
      operationId: deleteThing
      security: [ { oauth: [things:write] }, { key: [] } ]
      responses: { 204: { description: gone } }
  /things:
    post:
      operationId: createThing
      security: []
      requestBody:
        $ref: '#/components/requestBodies/Thing'
      responses: { 201: { description: made } }
components:
  requestBodies:
    Thing:
      required: true
      content:
        application/json: { schema: { $ref: '#/components/schemas/Thing' } }
        application/yaml: {}
  schemas:
    Thing: { type: object }
"#;
        std::fs::write(dir.path().join("api.yaml"), yaml).unwrap();
        let api = ApiSection {
            documents: vec![DocumentEntry {
                path: "api.yaml".into(),
                mount: "/v2/".into(),
            }],
        };
        let t = OperationTable::load(&api, &dir.path().join("simgate.toml"), dir.path()).unwrap();
        assert_eq!(t.len(), 3);
        let get = t.get("getThing").unwrap();
        assert_eq!(get.path_template, "/v2/things/{thingId}");
        assert_eq!(get.scopes, ["things:read"]);
        assert_eq!(get.path_params, ["thingId"]);
        assert_eq!(t.get("deleteThing").unwrap().scopes, ["things:write"]);
        let create = t.get("createThing").unwrap();
        assert!(create.scopes.is_empty());
        let media: Vec<_> = create
            .request_bodies
            .iter()
            .map(|b| b.media_type.as_str())
            .collect();
        assert_eq!(media, ["application/json", "application/yaml"]);
        assert_eq!(
            create.request_bodies[0].schema,
            json!({ "$ref": "#/components/schemas/Thing" })
        );
        assert_eq!(create.request_bodies[1].schema, json!({}));
        assert!(t.document(0)["paths"]["/things/{thingId}"]["get"]["responses"]["200"].is_object());
    }

    #[test]
    fn non_3_0_documents_are_refused() {
        let p = Path::new("api.json");
        let e = parse_document(r#"{"swagger": "2.0", "paths": {}}"#, p).unwrap_err();
        assert!(e.contains("Swagger 2.0"), "{e}");
        assert!(parse_document(r#"{"openapi": "3.1.0", "paths": {}}"#, p).is_ok());
        let e = parse_document(r#"{"openapi": "3.2.0", "paths": {}}"#, p).unwrap_err();
        assert!(
            e.contains("is OpenAPI 3.2.0; only OpenAPI 3.0.x and 3.1.x"),
            "{e}"
        );
        let e = parse_document("openapi: 3.1\npaths: {}\n", Path::new("a.yaml")).unwrap_err();
        assert!(e.contains("must be a version string"), "{e}");
        let e = parse_document(r#"{"paths": {}}"#, p).unwrap_err();
        assert!(e.contains("not an OpenAPI document"), "{e}");
        let e = parse_document("openapi: 3.0.0\npaths: {}\n", p).unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        assert!(parse_document("openapi: 3.0.0\npaths: {}\n", Path::new("a.yml")).is_ok());
        assert!(parse_document("openapi: 3.0.0\npaths: {}\n", Path::new("a.txt")).is_ok());
        let e = parse_document("{ nope", Path::new("a.txt")).unwrap_err();
        assert!(e.contains("neither JSON nor"), "{e}");
    }

    #[test]
    fn bad_documents_are_refused_naming_the_problem() {
        let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
            (
                vec![("/", doc(json!({ "/a": get_op("x"), "/b": get_op("x") })))],
                "operationId \"x\"",
            ),
            (
                vec![
                    ("/", doc(json!({ "/a": get_op("x") }))),
                    ("/", doc(json!({ "/a": get_op("y") }))),
                ],
                "GET /a is already served by x",
            ),
            (
                vec![(
                    "/",
                    doc(json!({
                        "/a/{id}": { "parameters": [{"name": "id", "in": "path"}], "get": { "operationId": "x" } },
                        "/a/{name}": { "parameters": [{"name": "name", "in": "path"}], "get": { "operationId": "y" } }
                    })),
                )],
                "only in parameter names",
            ),
            (
                vec![("/", doc(json!({ "/f/{a}{b}": get_op("x") })))],
                "no text between them",
            ),
            (
                vec![("/", doc(json!({ "/f/{a": get_op("x") })))],
                "must be written `{name}`",
            ),
            (
                vec![(
                    "/",
                    doc(json!({
                        "/f/{a}.json": { "parameters": [{"name": "a", "in": "path"}], "get": { "operationId": "x" } },
                        "/f/x{b}": { "parameters": [{"name": "b", "in": "path"}], "get": { "operationId": "y" } }
                    })),
                )],
                "can match the same request path",
            ),
            (
                vec![("/", doc(json!({ "/f/{id}": get_op("x") })))],
                "{id} is not declared",
            ),
            (
                vec![("/", doc(json!({ "/a": { "$ref": "other.json#/paths/a" } })))],
                "path item `$ref`",
            ),
            (
                vec![(
                    "/",
                    doc(
                        json!({ "/a": { "post": { "operationId": "x", "requestBody": { "$ref": "other.json#/rb" } } } }),
                    ),
                )],
                "external $ref",
            ),
            (
                vec![(
                    "/",
                    doc(
                        json!({ "/a": { "post": { "operationId": "x", "requestBody": { "$ref": "#/nothing" } } } }),
                    ),
                )],
                "points to nothing",
            ),
            (
                vec![("/", doc(json!({ "/a": get_op("@all") })))],
                "reserved for policy groups",
            ),
            (
                vec![("/", doc(json!({ "/a//b": get_op("x") })))],
                "empty path segment",
            ),
            (
                vec![("/", doc(json!({ "/a b": get_op("x") })))],
                "need percent-encoding",
            ),
            (
                vec![(
                    "/",
                    doc(json!({ "/a": { "get": { "operationId": "x", "security": {"k": []} } } })),
                )],
                "`security` must be a list",
            ),
            (
                vec![("/", json!({ "openapi": "3.0.0" }))],
                "`paths` is missing",
            ),
        ];
        for (docs, want) in cases {
            let e = table_of(&docs).unwrap_err();
            assert!(e.contains(want), "{e:?} does not mention {want:?}");
        }
        for bad in ["beta", "/be ta", "/a//b", "/../x"] {
            assert!(mount(bad).is_err(), "{bad}");
        }
        assert_eq!(mount("/beta/").unwrap(), "/beta");
    }

    #[test]
    fn operations_without_an_operation_id_get_a_generated_name() {
        let t = table_of(&[(
            "/api",
            doc(json!({ "/streams": { "post": { "responses": {} }, "get": get_op("listStreams")["get"] } })),
        )])
        .unwrap();
        let op = t.get("post /api/streams").unwrap();
        assert_eq!(op.method, Method::POST);
        assert_eq!(t.get("listStreams").unwrap().path_template, "/api/streams");
    }

    #[test]
    fn security_is_an_or_of_and_sets_and_parameters_are_read() {
        let t = table_of(&[(
            "/",
            doc(json!({ "/a/{id}": {
                "parameters": [{"name": "id", "in": "path", "schema": {"type": "integer"}},
                               {"name": "X-Trace", "in": "header", "required": true}],
                "get": {
                    "operationId": "x",
                    "security": [{"oauth": ["a:read", "a:write"], "key": []}, {"oauth": ["admin"]}],
                    "parameters": [{"name": "x-trace", "in": "header"},
                                   {"name": "status", "in": "query", "style": "form", "explode": false},
                                   {"name": "filter", "in": "query", "style": "deepObject"},
                                   {"name": "c", "in": "cookie"}]
                }
            } })),
        )])
        .unwrap();
        let op = t.get("x").unwrap();
        assert_eq!(op.security, [vec!["a:read", "a:write"], vec!["admin"]]);
        assert_eq!(op.scopes, ["a:read", "a:write", "admin"]);
        let p: Vec<_> = op
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.location, p.required, p.style, p.explode))
            .collect();
        assert_eq!(
            p,
            [
                ("id", ParamIn::Path, true, ParamStyle::Simple, false),
                ("x-trace", ParamIn::Header, false, ParamStyle::Simple, false),
                ("status", ParamIn::Query, false, ParamStyle::Form, false),
                (
                    "filter",
                    ParamIn::Query,
                    false,
                    ParamStyle::DeepObject,
                    false
                ),
            ]
        );
    }

    #[test]
    fn config_errors_name_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("simgate.toml");
        let e = OperationTable::load(&ApiSection::default(), &cfg, dir.path()).unwrap_err();
        assert!(e.0.contains("simgate.toml: `api.documents`"), "{e}");
        let api = ApiSection {
            documents: vec![DocumentEntry {
                path: "missing.json".into(),
                mount: "/".into(),
            }],
        };
        let e = OperationTable::load(&api, &cfg, dir.path()).unwrap_err();
        assert!(
            e.0.contains("`api.documents[0]`") && e.0.contains("missing.json"),
            "{e}"
        );
        std::fs::write(dir.path().join("s.json"), r#"{"swagger": "2.0"}"#).unwrap();
        let api = ApiSection {
            documents: vec![DocumentEntry {
                path: "s.json".into(),
                mount: "/".into(),
            }],
        };
        let e = OperationTable::load(&api, &cfg, dir.path()).unwrap_err();
        assert!(e.0.contains("s.json: is a Swagger 2.0 document"), "{e}");
    }
}
