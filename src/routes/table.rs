//! The operation table: every operation of the loaded documents, and the
//! matcher from (method, raw path) to one of them.
//!
//! Matching is exact and case-sensitive on the checked raw path (see
//! [`super::path`]): a literal template segment matches the identical raw
//! segment, a path parameter matches one non-empty segment, and a segment
//! mixing text and parameters (`{Sid}.json`, `{a}-{b}`) matches when its
//! text appears in order around non-empty parameter values (the leftmost
//! parameter takes the shortest value). When several templates match, the
//! most specific wins (at the first segment where they differ, a literal
//! beats a mixed segment, which beats a parameter), as OpenAPI prescribes;
//! templates that could match the same path without one being more specific
//! are refused at load. Only the winning path's methods are considered:
//! HEAD is served by the GET operation when the document declares no HEAD,
//! an OPTIONS request without an OPTIONS operation is answered with the
//! path's methods ([`Error::Options`], 204 + `Allow`). No match is
//! [`Error::NoRoute`]; a match without the method is
//! [`Error::MethodNotAllowed`] with the path's methods.

use std::path::PathBuf;
use std::sync::Arc;

use http::Method;

use super::operation::{Operation, PathParams};
use super::path;
use crate::error::Error;

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateSegment {
    /// Matches exactly this raw text.
    Literal(String),
    /// Matches any one non-empty segment; the name of the parameter.
    Param(String),
    /// Text and parameters inside one segment, e.g. `{Sid}.json`; never
    /// two parameters in a row.
    Mixed(Vec<Part>),
}

/// A piece of a [`TemplateSegment::Mixed`] segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Exactly this raw text.
    Text(String),
    /// A non-empty value; the name of the parameter.
    Param(String),
}

impl TemplateSegment {
    /// Literal 2, mixed 1, parameter 0: the higher wins a tie.
    fn rank(&self) -> u8 {
        match self {
            TemplateSegment::Literal(_) => 2,
            TemplateSegment::Mixed(_) => 1,
            TemplateSegment::Param(_) => 0,
        }
    }
}

/// One path template (mount prefix included) and its operations.
#[derive(Debug)]
pub(crate) struct PathEntry {
    pub(crate) segments: Vec<TemplateSegment>,
    /// In canonical method order.
    pub(crate) methods: Vec<(Method, Arc<Operation>)>,
    /// The `Allow` header value for this path.
    pub(crate) allow: String,
}

/// A loaded OpenAPI document.
#[derive(Debug)]
pub struct Document {
    /// Where it was read from.
    pub path: PathBuf,
    /// The path prefix it is mounted at (`/` or `/beta`, no trailing `/`
    /// except for the root).
    pub mount: String,
    /// The parsed document (YAML documents converted to JSON values).
    pub value: serde_json::Value,
}

/// Every operation of the loaded OpenAPI documents, built once at start-up
/// by [`OperationTable::load`](Self::load) and shared.
#[derive(Debug)]
pub struct OperationTable {
    pub(crate) documents: Vec<Document>,
    pub(crate) operations: Vec<Arc<Operation>>,
    pub(crate) paths: Vec<PathEntry>,
}

impl OperationTable {
    /// Every operation, in load order (documents in configured order, then
    /// paths as the document lists them, then methods GET, HEAD, POST, PUT,
    /// PATCH, DELETE, OPTIONS, TRACE). [`Operation::index`] is the position.
    pub fn operations(&self) -> impl ExactSizeIterator<Item = &Arc<Operation>> {
        self.operations.iter()
    }

    /// The operation with this `operationId`.
    pub fn get(&self, operation_id: &str) -> Option<&Arc<Operation>> {
        self.operations
            .iter()
            .find(|o| o.operation_id == operation_id)
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The parsed document `idx` ([`Operation::document`]), against which the
    /// `$ref`s of its schemas resolve (`null` if there is no such document;
    /// an operation's `document` always exists).
    pub fn document(&self, idx: usize) -> &serde_json::Value {
        static NULL: serde_json::Value = serde_json::Value::Null;
        self.documents.get(idx).map_or(&NULL, |d| &d.value)
    }

    /// Every loaded document, in configured order.
    pub fn documents(&self) -> &[Document] {
        &self.documents
    }

    /// Matches a request. `raw_path` is the path of the request target as
    /// received, without the query; it is checked strictly first.
    pub fn find(
        &self,
        method: &Method,
        raw_path: &str,
    ) -> Result<(Arc<Operation>, PathParams), Error> {
        let segments = path::check(raw_path)?;
        let mut best: Option<&PathEntry> = None;
        for entry in &self.paths {
            if !matches(&entry.segments, &segments) {
                continue;
            }
            best = match best {
                Some(b) if !more_specific(&entry.segments, &b.segments) => Some(b),
                _ => Some(entry),
            };
        }
        let entry = best.ok_or(Error::NoRoute)?;
        let found = entry.methods.iter().find(|(m, _)| m == method).or_else(|| {
            (method == Method::HEAD)
                .then(|| entry.methods.iter().find(|(m, _)| m == Method::GET))
                .flatten()
        });
        let Some((_, op)) = found else {
            let allow = entry.allow.clone();
            return Err(if method == Method::OPTIONS {
                Error::Options { allow }
            } else {
                Error::MethodNotAllowed { allow }
            });
        };
        let mut params = Vec::new();
        for (t, s) in entry.segments.iter().zip(&segments) {
            match t {
                TemplateSegment::Param(name) => params.push((name.clone(), s.decoded.to_string())),
                TemplateSegment::Literal(_) => {}
                TemplateSegment::Mixed(parts) => {
                    params.extend(capture(parts, s.raw).unwrap_or_default())
                }
            }
        }
        Ok((op.clone(), PathParams(params)))
    }
}

fn matches(template: &[TemplateSegment], segments: &[path::Segment<'_>]) -> bool {
    template.len() == segments.len()
        && template.iter().zip(segments).all(|(t, s)| match t {
            TemplateSegment::Literal(l) => l == s.raw,
            TemplateSegment::Param(_) => true,
            TemplateSegment::Mixed(parts) => capture(parts, s.raw).is_some(),
        })
}

/// The decoded parameter values of a mixed segment matching `raw`, or
/// `None` when it does not match.
pub(crate) fn capture(parts: &[Part], raw: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    capture_from(parts, raw, &mut out).then_some(out)
}

fn capture_from(parts: &[Part], raw: &str, out: &mut Vec<(String, String)>) -> bool {
    match parts.split_first() {
        None => raw.is_empty(),
        Some((Part::Text(t), rest)) => raw
            .strip_prefix(t.as_str())
            .is_some_and(|r| capture_from(rest, r, out)),
        Some((Part::Param(name), rest)) => {
            // Shortest value first; a value must decode on its own.
            for (end, _) in raw.char_indices().skip(1).chain([(raw.len(), ' ')]) {
                let (value, tail) = raw.split_at(end);
                let Some(decoded) = percent_decode(value) else {
                    continue;
                };
                let len = out.len();
                out.push((name.clone(), decoded));
                if capture_from(rest, tail, out) {
                    return true;
                }
                out.truncate(len);
            }
            false
        }
    }
}

/// Percent-decodes an already checked raw piece; `None` if an escape is cut
/// or the result is not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |k: usize| bytes.get(k).and_then(|&c| char::from(c).to_digit(16));
            let (hi, lo) = (hex(i + 1)?, hex(i + 2)?);
            // Two hex digits: at most 0xff.
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `a` is more specific than `b` (same length): at the first
/// position where their kinds differ, `a` has the more literal one.
pub(crate) fn more_specific(a: &[TemplateSegment], b: &[TemplateSegment]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x.rank() != y.rank() {
            return x.rank() > y.rank();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::load::table_of;
    use serde_json::json;

    fn op(id: &str) -> serde_json::Value {
        json!({ "operationId": id, "responses": { "200": { "description": "ok" } } })
    }

    fn table() -> OperationTable {
        let id = json!([{ "name": "id", "in": "path", "required": true }]);
        let beta = json!({
            "openapi": "3.0.1", "info": { "title": "b", "version": "1" },
            "paths": {
                "/items": { "get": op("listItems"), "post": op("createItem") },
                "/items/{id}": {
                    "parameters": id,
                    "get": op("getItem"), "put": op("putItem"), "delete": op("deleteItem")
                },
                "/items/{id}/rule": { "parameters": id, "patch": op("patchRule") },
                "/items/special": { "get": op("getSpecial") }
            }
        });
        let root = json!({
            "openapi": "3.0.1", "info": { "title": "r", "version": "1" },
            "paths": { "/items/v1": { "get": op("listItemsV1") } }
        });
        table_of(&[("/beta", beta), ("/", root)]).unwrap()
    }

    fn found(t: &OperationTable, m: Method, p: &str) -> (String, Vec<(String, String)>) {
        let (op, params) = t.find(&m, p).unwrap_or_else(|e| panic!("{m} {p}: {e}"));
        (op.operation_id.clone(), params.0)
    }

    #[test]
    fn matches_exactly_with_path_parameters() {
        let t = table();
        assert_eq!(found(&t, Method::GET, "/beta/items").0, "listItems");
        assert_eq!(found(&t, Method::POST, "/beta/items").0, "createItem");
        assert_eq!(found(&t, Method::GET, "/items/v1").0, "listItemsV1");
        let (id, params) = found(&t, Method::DELETE, "/beta/items/abc123");
        assert_eq!(id, "deleteItem");
        assert_eq!(params, [("id".to_owned(), "abc123".to_owned())]);
        let (id, params) = found(&t, Method::PATCH, "/beta/items/a%20b/rule");
        assert_eq!(id, "patchRule");
        assert_eq!(params, [("id".to_owned(), "a b".to_owned())]);
        let (op, params) = t.find(&Method::GET, "/beta/items/x").unwrap();
        assert_eq!(params.get("id"), Some("x"));
        assert_eq!(op.path_template, "/beta/items/{id}");
    }

    #[test]
    fn literal_beats_parameter() {
        let t = table();
        assert_eq!(
            found(&t, Method::GET, "/beta/items/special").0,
            "getSpecial"
        );
        // The most specific path decides the methods: no fallback to {id}.
        match t.find(&Method::DELETE, "/beta/items/special") {
            Err(Error::MethodNotAllowed { allow }) => assert_eq!(allow, "GET, HEAD, OPTIONS"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        let t = table();
        for p in [
            "/",
            "/beta",
            "/items",
            "/Beta/items",
            "/beta/Items",
            "/beta/items/x/rule/y",
            "/beta/items/x/Rule",
            "/items/V1",
            "/beta/beta/items",
        ] {
            assert!(
                matches!(t.find(&Method::GET, p), Err(Error::NoRoute)),
                "{p}"
            );
        }
        match t.find(&Method::PATCH, "/beta/items/x") {
            Err(Error::MethodNotAllowed { allow }) => {
                assert_eq!(allow, "GET, HEAD, PUT, DELETE, OPTIONS")
            }
            other => panic!("{other:?}"),
        }
        match t.find(&Method::OPTIONS, "/beta/items") {
            Err(Error::Options { allow }) => assert_eq!(allow, "GET, HEAD, POST, OPTIONS"),
            other => panic!("{other:?}"),
        }
        match t.find(&Method::HEAD, "/beta/items/x/rule") {
            Err(Error::MethodNotAllowed { allow }) => assert_eq!(allow, "PATCH, OPTIONS"),
            other => panic!("{other:?}"),
        }
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert!(matches!(
            t.find(&custom, "/beta/items"),
            Err(Error::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn head_is_served_by_get() {
        let t = table();
        let (op, _) = t.find(&Method::HEAD, "/beta/items/abc").unwrap();
        assert_eq!(op.operation_id, "getItem");
        assert!(!op.mutating);
    }

    #[test]
    fn text_and_parameters_share_a_segment() {
        let p = |n: &str| json!({ "name": n, "in": "path", "required": true });
        let doc = json!({
            "openapi": "3.1.0", "info": { "title": "m", "version": "1" },
            "paths": {
                "/Accounts/{Sid}.json": { "parameters": [p("Sid")], "get": op("fetchAccount") },
                "/Accounts/{Sid}.xml": { "parameters": [p("Sid")], "get": op("fetchAccountXml") },
                "/Accounts/list.json": { "get": op("listAccounts") },
                "/range/{a}-{b}": { "parameters": [p("a"), p("b")], "get": op("range") },
                "/range/{any}": { "parameters": [p("any")], "get": op("rangeAny") }
            }
        });
        let t = table_of(&[("/", doc)]).unwrap();
        let (id, params) = found(&t, Method::GET, "/Accounts/AC12%20x.json");
        assert_eq!(id, "fetchAccount");
        assert_eq!(params, [("Sid".to_owned(), "AC12 x".to_owned())]);
        assert_eq!(
            found(&t, Method::GET, "/Accounts/AC1.xml").0,
            "fetchAccountXml"
        );
        assert_eq!(
            found(&t, Method::GET, "/Accounts/list.json").0,
            "listAccounts"
        );
        assert!(matches!(
            t.find(&Method::GET, "/Accounts/.json"),
            Err(Error::NoRoute)
        ));
        assert!(matches!(
            t.find(&Method::GET, "/Accounts/AC1"),
            Err(Error::NoRoute)
        ));
        let (id, params) = found(&t, Method::GET, "/range/1-2-3");
        assert_eq!(id, "range");
        assert_eq!(
            params,
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2-3".to_owned())
            ]
        );
        assert_eq!(found(&t, Method::GET, "/range/12").0, "rangeAny");
    }

    #[test]
    fn ambiguous_paths_are_refused_before_matching() {
        let t = table();
        for p in [
            "/beta/items/",
            "/beta//items",
            "/beta/./items",
            "/beta/x/../items",
            "/beta/items/%2e%2e",
            "/beta%2Fitems",
            "/beta/items;v=1",
            "/beta/items/x%00",
            "/beta/items/%",
            "/beta\\items",
        ] {
            assert!(
                matches!(t.find(&Method::GET, p), Err(Error::BadPath(_))),
                "{p}"
            );
        }
    }
}
