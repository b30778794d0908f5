//! Loading the `[api]` documents into an [`OperationTable`].
//!
//! Accepts OpenAPI 3.0.x documents in JSON or YAML (chosen by the file's
//! extension: `.json`, `.yaml`/`.yml`; anything else is tried as JSON, then
//! YAML). Refused at start, naming the document and what is wrong:
//! Swagger 2.0 and OpenAPI 3.1 documents, operations without an
//! `operationId` (the policy grants operationIds), an `operationId` used
//! twice, the same (method, path) in two documents, two templates that
//! differ only in parameter names, path parameters that are not a whole
//! segment or are not declared, and external `$ref`s.

use std::path::Path;
use std::sync::Arc;

use http::Method;
use serde_json::Value;

use super::config::ApiSection;
use super::operation::{Operation, RequestBody, is_mutating};
use super::path::is_plain;
use super::table::{Document, OperationTable, PathEntry, TemplateSegment};
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

/// Parses a document as JSON or YAML and checks it is OpenAPI 3.0.
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
    match value.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0.") => Ok(value),
        Some(v) => Err(format!(
            "is OpenAPI {v}; only OpenAPI 3.0.x documents are supported"
        )),
        None if value.get("swagger").is_some() => {
            Err("is a Swagger 2.0 document; only OpenAPI 3.0.x documents are supported".into())
        }
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
    for seg in rest.split('/') {
        if seg.contains(['{', '}']) {
            let name = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|n| !n.is_empty() && !n.contains(['{', '}']))
                .ok_or_else(|| {
                    format!(
                        "path {path:?}: parameter segment {seg:?} is not a whole segment `{{name}}` (not supported)"
                    )
                })?;
            if out
                .iter()
                .any(|t| matches!(t, TemplateSegment::Param(n) if n == name))
            {
                return Err(format!("path {path:?}: parameter {{{name}}} appears twice"));
            }
            out.push(TemplateSegment::Param(name.to_owned()));
        } else {
            literal(seg).map_err(|e| format!("path {path:?}: {e}"))?;
            out.push(TemplateSegment::Literal(seg.to_owned()));
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

/// The union of the scopes of a `security` list.
fn scopes(security: &Value, what: &str) -> Result<Vec<String>, String> {
    let bad = || format!("{what}: `security` must be a list of {{scheme: [scopes]}} objects");
    let mut out: Vec<String> = Vec::new();
    for requirement in security.as_array().ok_or_else(bad)? {
        for list in requirement.as_object().ok_or_else(bad)?.values() {
            for s in list.as_array().ok_or_else(bad)? {
                let s = s.as_str().ok_or_else(bad)?;
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
        }
    }
    Ok(out)
}

/// Names of the `in: path` parameters in a `parameters` list.
fn declared_path_params(doc: &Value, params: Option<&Value>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in params.and_then(Value::as_array).into_iter().flatten() {
        let p = deref(doc, p)?;
        if p.get("in").and_then(Value::as_str) == Some("path")
            && let Some(name) = p.get("name").and_then(Value::as_str)
        {
            out.push(name.to_owned());
        }
    }
    Ok(out)
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
    let paths = v
        .get("paths")
        .and_then(Value::as_object)
        .ok_or("`paths` is missing or not an object")?;
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
        let common = declared_path_params(v, item.get("parameters"))?;
        for (key, method) in &METHODS {
            let Some(op) = item.get(*key) else { continue };
            let what = format!("{} {path}", method);
            let operation_id = op
                .get("operationId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    format!(
                        "{what} has no operationId (the policy grants operations by operationId)"
                    )
                })?;
            if operation_id.starts_with('@') {
                return Err(format!(
                    "{what}: operationId {operation_id:?} may not start with '@' (reserved for policy groups)"
                ));
            }
            let mut declared = common.clone();
            declared.extend(declared_path_params(v, op.get("parameters"))?);
            let path_params: Vec<String> = segments
                .iter()
                .filter_map(|s| match s {
                    TemplateSegment::Param(n) => Some(n.clone()),
                    TemplateSegment::Literal(_) => None,
                })
                .collect();
            if let Some(missing) = path_params.iter().find(|p| !declared.contains(p)) {
                return Err(format!(
                    "{what}: path parameter {{{missing}}} is not declared in `parameters` (in: path)"
                ));
            }
            let scopes = match op.get("security").or(top_security) {
                Some(s) => scopes(s, &what)?,
                None => Vec::new(),
            };
            out.push((
                segments.clone(),
                Operation {
                    operation_id: operation_id.to_owned(),
                    method: method.clone(),
                    path_template: format!("{prefix}{path}"),
                    mutating: is_mutating(method),
                    scopes,
                    request_bodies: request_bodies(v, op, &what)?,
                    path_params,
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
        entry.allow = entry
            .methods
            .iter()
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
    }
    Ok(OperationTable {
        documents,
        operations,
        paths,
    })
}

fn same_shape(a: &[TemplateSegment], b: &[TemplateSegment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (TemplateSegment::Literal(l), TemplateSegment::Literal(r)) => l == r,
            (TemplateSegment::Param(_), TemplateSegment::Param(_)) => true,
            _ => false,
        })
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
        let e = parse_document(r#"{"openapi": "3.1.0", "paths": {}}"#, p).unwrap_err();
        assert!(e.contains("OpenAPI 3.1.0"), "{e}");
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
                vec![("/", doc(json!({ "/a": { "get": { "responses": {} } } })))],
                "GET /a has no operationId",
            ),
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
                vec![("/", doc(json!({ "/f/{name}.json": get_op("x") })))],
                "not a whole segment",
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
