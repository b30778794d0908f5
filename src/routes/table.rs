//! The operation table: every operation of the loaded documents, and the
//! matcher from (method, raw path) to one of them.
//!
//! Matching is exact and case-sensitive on the checked raw path (see
//! [`super::path`]): a literal template segment matches the identical raw
//! segment, a path parameter matches one non-empty segment. When several
//! templates match, the most specific wins (at the first segment where they
//! differ, a literal beats a parameter), as OpenAPI prescribes; only that
//! path's methods are considered. No match is [`Error::NoRoute`]; a match
//! without the method is [`Error::MethodNotAllowed`] with the path's methods.

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
        let Some((_, op)) = entry.methods.iter().find(|(m, _)| m == method) else {
            return Err(Error::MethodNotAllowed {
                allow: entry.allow.clone(),
            });
        };
        let params = entry
            .segments
            .iter()
            .zip(&segments)
            .filter_map(|(t, s)| match t {
                TemplateSegment::Param(name) => Some((name.clone(), s.decoded.to_string())),
                TemplateSegment::Literal(_) => None,
            })
            .collect();
        Ok((op.clone(), PathParams(params)))
    }
}

fn matches(template: &[TemplateSegment], segments: &[path::Segment<'_>]) -> bool {
    template.len() == segments.len()
        && template.iter().zip(segments).all(|(t, s)| match t {
            TemplateSegment::Literal(l) => l == s.raw,
            TemplateSegment::Param(_) => true,
        })
}

/// Whether `a` is more specific than `b` (same length): at the first
/// position where one has a literal and the other a parameter, `a` has the
/// literal.
fn more_specific(a: &[TemplateSegment], b: &[TemplateSegment]) -> bool {
    for (x, y) in a.iter().zip(b) {
        match (x, y) {
            (TemplateSegment::Literal(_), TemplateSegment::Param(_)) => return true,
            (TemplateSegment::Param(_), TemplateSegment::Literal(_)) => return false,
            _ => {}
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
            Err(Error::MethodNotAllowed { allow }) => assert_eq!(allow, "GET"),
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
            Err(Error::MethodNotAllowed { allow }) => assert_eq!(allow, "GET, PUT, DELETE"),
            other => panic!("{other:?}"),
        }
        match t.find(&Method::HEAD, "/beta/items") {
            Err(Error::MethodNotAllowed { allow }) => assert_eq!(allow, "GET, POST"),
            other => panic!("{other:?}"),
        }
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert!(matches!(
            t.find(&custom, "/beta/items"),
            Err(Error::MethodNotAllowed { .. })
        ));
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
