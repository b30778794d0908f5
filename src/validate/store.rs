//! One OpenAPI document's schemas, converted and compiled once at start.
//!
//! The store is a JSON document holding the converted `components/schemas`
//! (so the documents' own `$ref`s resolve unchanged) and, under
//! `x-simgate`, every inline schema the validators need. `jsonschema`
//! compiles it into a map of validators keyed by location, so any schema of
//! the document — a request body, one JSON Patch operation, the field a
//! patch targets — is validated without compiling anything per request.
//!
//! The store also answers what a JSON Patch path names: whether the
//! resource's schema knows the field, whether it (or a field above it, or
//! one below it) is read-only, and which schemas a written value must meet.

use std::collections::HashSet;

use jsonschema::paths::Location;
use jsonschema::{Keyword, ValidationError, Validator, ValidatorMap};
use serde_json::{Map, Value};

use super::dialect::{self, Dialect, READ_ONLY};
use super::report::{READ_ONLY_REASON, push_token};

/// Most schemas visited when flattening or searching one location (the
/// documents are config, but `$ref` cycles must end).
const MAX_VISITS: usize = 4096;

/// A document's converted schemas, before compilation.
#[derive(Debug)]
pub(crate) struct SchemaDoc {
    doc: Value,
    inline: Vec<Value>,
    dialect: Dialect,
}

/// A document's converted schemas and their compiled validators.
pub(crate) struct Store {
    schemas: SchemaDoc,
    map: ValidatorMap,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("validators", &self.map.len())
            .finish()
    }
}

/// What a JSON Patch path names in a resource.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Target {
    /// The resource's schema declares the field (or an open object above it).
    pub known: bool,
    /// The field or one above it is read-only.
    pub read_only: bool,
    /// A field below it is read-only (replacing or removing it would too).
    pub contains_read_only: bool,
    /// Locations of the schemas a value written there must meet (empty when
    /// the field is free-form or only loosely known).
    pub schemas: Vec<String>,
}

/// One schema reached while flattening, and whether every instance must
/// meet it (`allOf`, `$ref`) or only possibly (`oneOf`/`anyOf` branches).
struct Flat<'a> {
    loc: String,
    certain: bool,
    map: &'a Map<String, Value>,
}

impl SchemaDoc {
    /// Converts the document's `components/schemas`.
    pub(crate) fn new(openapi: &Value) -> Result<SchemaDoc, String> {
        let dialect = Dialect::of(openapi);
        let mut schemas = Map::new();
        if let Some(all) = openapi
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for (name, schema) in all {
                let converted = dialect::convert(schema, dialect)
                    .map_err(|e| format!("components/schemas/{name}{e}"))?;
                schemas.insert(name.clone(), converted);
            }
        }
        let mut components = Map::new();
        components.insert("schemas".into(), Value::Object(schemas));
        let mut doc = Map::new();
        doc.insert("components".into(), Value::Object(components));
        Ok(SchemaDoc {
            doc: Value::Object(doc),
            inline: Vec::new(),
            dialect,
        })
    }

    /// Adds an inline schema of the document; returns its location.
    pub(crate) fn include(&mut self, schema: &Value) -> Result<String, String> {
        let converted = dialect::convert(schema, self.dialect)?;
        if let Some(i) = self.inline.iter().position(|s| s == &converted) {
            return Ok(format!("#/x-simgate/{i}"));
        }
        self.inline.push(converted);
        Ok(format!("#/x-simgate/{}", self.inline.len() - 1))
    }

    /// Compiles every schema of the store.
    pub(crate) fn compile(mut self) -> Result<Store, String> {
        if let Value::Object(doc) = &mut self.doc {
            doc.insert("x-simgate".into(), Value::Array(self.inline.clone()));
        }
        let options = match self.dialect {
            Dialect::OpenApi30 => jsonschema::draft4::options(),
            Dialect::OpenApi31 => jsonschema::draft202012::options(),
        };
        let map = options
            .should_validate_formats(true)
            .with_keyword(READ_ONLY, read_only_keyword)
            .build_map(&self.doc)
            .map_err(|e| e.to_string())?;
        Ok(Store { schemas: self, map })
    }

    /// The schema at a location (`#/...`, percent-encoded or not).
    fn resolve(&self, loc: &str) -> Option<&Value> {
        let fragment = loc.strip_prefix('#')?;
        let decoded = percent_decode(fragment)?;
        if let Some(rest) = decoded.strip_prefix("/x-simgate/") {
            let (index, below) = rest.split_once('/').unwrap_or((rest, ""));
            let base = self.inline.get(index.parse::<usize>().ok()?)?;
            return if below.is_empty() {
                Some(base)
            } else {
                base.pointer(&format!("/{below}"))
            };
        }
        self.doc.pointer(&decoded)
    }

    /// The schemas every instance at `nodes` meets or may meet: through
    /// `$ref`, `allOf`, `oneOf` and `anyOf`.
    fn flatten(&self, nodes: &[(String, bool)]) -> Vec<Flat<'_>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut work: Vec<(String, bool)> = nodes.to_vec();
        while let Some((loc, certain)) = work.pop() {
            if seen.len() >= MAX_VISITS || !seen.insert((loc.clone(), certain)) {
                continue;
            }
            let Some(Value::Object(map)) = self.resolve(&loc) else {
                continue;
            };
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                work.push((canonical(r), certain));
            }
            for (key, sure) in [("allOf", certain), ("anyOf", false), ("oneOf", false)] {
                let Some(Value::Array(branches)) = map.get(key) else {
                    continue;
                };
                // `nullable` wraps a schema as anyOf [null, it]: the null
                // branch adds no fields, and the other one is then certain.
                let real: Vec<usize> = (0..branches.len())
                    .filter(|i| branches[*i] != serde_json::json!({"type": "null"}))
                    .collect();
                let sure = sure || (key == "anyOf" && real.len() == 1 && certain);
                for i in real {
                    work.push((format!("{loc}/{key}/{i}"), sure));
                }
            }
            out.push(Flat { loc, certain, map });
        }
        out
    }

    /// What `tokens` (decoded, relative to a resource described by `roots`)
    /// name.
    pub(crate) fn target(&self, roots: &[String], tokens: &[String]) -> Target {
        let mut nodes: Vec<(String, bool)> = roots.iter().map(|r| (r.clone(), true)).collect();
        let mut read_only = false;
        for (i, token) in tokens.iter().enumerate() {
            let flat = self.flatten(&nodes);
            if flat.is_empty() {
                return Target::default();
            }
            let mut next = Vec::new();
            let (mut declares, mut open, mut closed, mut by_required) =
                (false, false, false, false);
            let (mut typed, mut container, mut has_items) = (false, false, false);
            let index = is_index(token);
            for f in &flat {
                let props = f.map.get("properties").and_then(Value::as_object);
                let named = props.is_some_and(|p| p.contains_key(token));
                if let Some(props) = props {
                    declares = true;
                    if props.contains_key(token) {
                        let mut loc = format!("{}/properties", f.loc);
                        push_token(&mut loc, token);
                        next.push((loc, f.certain));
                    }
                }
                match f.map.get("additionalProperties") {
                    Some(Value::Object(_)) if !named => {
                        next.push((format!("{}/additionalProperties", f.loc), f.certain));
                    }
                    Some(Value::Bool(true)) => open = true,
                    Some(Value::Bool(false)) => closed = true,
                    _ => {}
                }
                if let Some(items) = f.map.get("items") {
                    has_items = true;
                    if index && items.is_object() {
                        next.push((format!("{}/items", f.loc), f.certain));
                    }
                }
                if let Some(Value::Array(req)) = f.map.get("required") {
                    by_required |= req.iter().any(|r| r.as_str() == Some(token.as_str()));
                }
                match f.map.get("type") {
                    Some(Value::String(t)) => {
                        typed = true;
                        container |= t == "object" || t == "array";
                    }
                    Some(Value::Array(ts)) => {
                        typed = true;
                        container |= ts.iter().any(|t| t == "object" || t == "array");
                    }
                    _ => {}
                }
            }
            if next.is_empty() {
                let free = !closed && (open || (!declares && !has_items && (!typed || container)));
                let last = i + 1 == tokens.len();
                return Target {
                    known: free || (by_required && last),
                    read_only,
                    ..Target::default()
                };
            }
            read_only |= self.flatten(&next).iter().any(|f| marked(f.map));
            nodes = next;
        }
        Target {
            known: true,
            read_only,
            contains_read_only: self.contains_read_only(&nodes),
            schemas: nodes
                .into_iter()
                .filter(|(_, certain)| *certain)
                .map(|(loc, _)| loc)
                .collect(),
        }
    }

    /// Whether a field below `nodes` is read-only.
    fn contains_read_only(&self, nodes: &[(String, bool)]) -> bool {
        let mut seen = HashSet::new();
        let mut work: Vec<(String, bool)> = nodes.to_vec();
        while let Some(node) = work.pop() {
            if !seen.insert(node.0.clone()) {
                continue;
            }
            if seen.len() > MAX_VISITS {
                // A schema this large is not worth guessing about.
                return true;
            }
            for f in self.flatten(std::slice::from_ref(&node)) {
                let mut children: Vec<String> = Vec::new();
                if let Some(props) = f.map.get("properties").and_then(Value::as_object) {
                    for name in props.keys() {
                        let mut loc = format!("{}/properties", f.loc);
                        push_token(&mut loc, name);
                        children.push(loc);
                    }
                }
                for key in ["additionalProperties", "items"] {
                    if f.map.get(key).is_some_and(Value::is_object) {
                        children.push(format!("{}/{key}", f.loc));
                    }
                }
                for child in children {
                    let pair = (child, true);
                    if self
                        .flatten(std::slice::from_ref(&pair))
                        .iter()
                        .any(|c| marked(c.map))
                    {
                        return true;
                    }
                    work.push(pair);
                }
            }
        }
        false
    }

    /// The schemas one element of the JSON Patch body at `body` must meet:
    /// its `items`, or those of its `operations` member (the vendor's
    /// envelope).
    pub(crate) fn patch_operation_schemas(&self, body: &str) -> Vec<String> {
        let root = [body.to_owned()];
        let direct = self.target(&root, &["0".to_owned()]);
        if !direct.schemas.is_empty() {
            return direct.schemas;
        }
        self.target(&root, &["operations".to_owned(), "0".to_owned()])
            .schemas
    }
}

/// What a schema expects, as far as turning text into JSON needs to know:
/// see [`Store::shape`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    /// The JSON types it (or a schema it refers to) names; empty when
    /// unconstrained.
    pub(crate) types: Vec<String>,
    /// The location of the item schema of an array.
    pub(crate) items: Option<String>,
    /// The locations of the declared properties of an object.
    pub(crate) properties: Vec<(String, String)>,
}

impl Shape {
    /// Whether it names this type.
    pub(crate) fn is(&self, t: &str) -> bool {
        self.types.iter().any(|x| x == t)
    }
}

impl SchemaDoc {
    /// See [`Store::shape`].
    fn shape(&self, loc: &str) -> Shape {
        let mut out = Shape::default();
        for f in self.flatten(&[(loc.to_owned(), true)]) {
            match f.map.get("type") {
                Some(Value::String(t)) => push_unique(&mut out.types, t),
                Some(Value::Array(ts)) => {
                    for t in ts.iter().filter_map(Value::as_str) {
                        push_unique(&mut out.types, t);
                    }
                }
                _ => {}
            }
            if out.items.is_none() && f.map.get("items").is_some_and(Value::is_object) {
                out.items = Some(format!("{}/items", f.loc));
            }
            if let Some(props) = f.map.get("properties").and_then(Value::as_object) {
                for name in props.keys() {
                    if !out.properties.iter().any(|(n, _)| n == name) {
                        let mut at = format!("{}/properties", f.loc);
                        push_token(&mut at, name);
                        out.properties.push((name.clone(), at));
                    }
                }
            }
        }
        out
    }
}

fn push_unique(v: &mut Vec<String>, t: &str) {
    if !v.iter().any(|x| x == t) {
        v.push(t.to_owned());
    }
}

impl Store {
    /// The types, item schema and properties the schema at `loc` declares,
    /// through `$ref`, `allOf`, `oneOf` and `anyOf`.
    pub(crate) fn shape(&self, loc: &str) -> Shape {
        self.schemas.shape(loc)
    }

    /// The compiled validator of a location.
    pub(crate) fn validator(&self, loc: &str) -> Option<&Validator> {
        self.map.get(&canonical(loc))
    }

    /// See [`SchemaDoc::target`].
    pub(crate) fn target(&self, roots: &[String], tokens: &[String]) -> Target {
        self.schemas.target(roots, tokens)
    }
}

fn marked(map: &Map<String, Value>) -> bool {
    map.get(READ_ONLY) == Some(&Value::Bool(true))
}

/// An array index token, or `-` (past the end).
pub(crate) fn is_index(token: &str) -> bool {
    token == "-"
        || token == "0"
        || (!token.starts_with('0')
            && !token.is_empty()
            && token.len() <= 10
            && token.bytes().all(|b| b.is_ascii_digit()))
}

/// A location as the validator map keys it: `#` plus an unencoded pointer.
fn canonical(loc: &str) -> String {
    match loc.strip_prefix('#').and_then(percent_decode) {
        Some(p) => format!("#{p}"),
        None => loc.to_owned(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `readOnly` fields fail wherever they appear in a request.
struct ReadOnlyField;

impl<'i> Keyword<'i> for ReadOnlyField {
    fn validate(&self, _instance: &'i Value) -> Result<(), ValidationError<'i>> {
        Err(ValidationError::custom(READ_ONLY_REASON))
    }
    fn is_valid(&self, _instance: &'i Value) -> bool {
        false
    }
}

#[allow(clippy::unnecessary_wraps)]
fn read_only_keyword<'a>(
    _parent: &'a Map<String, Value>,
    _value: &'a Value,
    _at: Location,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    Ok(Box::new(ReadOnlyField))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> SchemaDoc {
        let openapi = json!({"components": {"schemas": {
            "Base": {"type": "object", "required": ["name"], "properties": {
                "id": {"type": "string", "readOnly": true},
                "name": {"type": "string", "nullable": true},
                "a/b": {"type": "string", "readOnly": true},
                "~x": {"type": "string"},
            }},
            "Res": {"allOf": [{"$ref": "#/components/schemas/Base"}, {"type": "object",
                "required": ["description"],
                "properties": {
                    "map": {"type": "object"},
                    "list": {"type": "array", "items": {"type": "string"}},
                    "rule": {"properties": {"name": {"type": "string"}}},
                    "cfg": {"type": "object", "properties": {
                        "flag": {"type": "boolean", "readOnly": true},
                        "n": {"type": "integer"},
                    }},
                    "open": {"type": "object", "additionalProperties": true,
                        "properties": {"k": {"type": "string"}}},
                    "text": {"type": "string"},
                    "maybe": {"allOf": [{"$ref": "#/components/schemas/Rule"}], "nullable": true},
                }}]},
            "Rule": {"type": "object", "properties": {"id": {"type": "string"}}},
        }}});
        SchemaDoc::new(&openapi).unwrap()
    }

    fn t(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn targets_are_found_through_refs_and_all_of() {
        let d = doc();
        let roots = ["#/components/schemas/Res".to_owned()];
        let known = |p: &[&str]| d.target(&roots, &t(p)).known;
        for p in [
            &["name"][..],
            &["map", "anything", "below"],
            &["list", "0"],
            &["list", "-"],
            &["rule", "name"],
            &["cfg", "n"],
            &["open", "k"],
            &["open", "other"],
            &["description"],
            &["a/b"],
            &["~x"],
            &["maybe", "id"],
        ] {
            assert!(known(p), "{p:?}");
        }
        for p in [
            &["nope"][..],
            &["rule", "other"],
            &["list", "x"],
            &["list", "01"],
            &["text", "x"],
            &["description", "x"],
            &["cfg", "m"],
        ] {
            assert!(!known(p), "{p:?}");
        }
        let id = d.target(&roots, &t(&["id"]));
        assert!(id.known && id.read_only);
        assert!(d.target(&roots, &t(&["a/b"])).read_only);
        assert!(d.target(&roots, &t(&["cfg", "flag"])).read_only);
        let cfg = d.target(&roots, &t(&["cfg"]));
        assert!(cfg.known && !cfg.read_only && cfg.contains_read_only);
        let map = d.target(&roots, &t(&["map"]));
        assert!(!map.contains_read_only);
        assert_eq!(
            map.schemas,
            vec!["#/components/schemas/Res/allOf/1/properties/map".to_owned()]
        );
        assert!(d.target(&roots, &t(&["maybe", "id"])).schemas.len() == 1);
    }

    #[test]
    fn locations_compile_and_validate() {
        let mut d = doc();
        let loc = d
            .include(&json!({"$ref": "#/components/schemas/Res"}))
            .unwrap();
        let store = d.compile().unwrap();
        let v = store.validator(&loc).unwrap();
        let d = "description";
        assert!(v.is_valid(&json!({"name": "n", d: "d", "map": {}})));
        assert!(!v.is_valid(&json!({"name": "n", d: "d", "map": "x"})));
        assert!(!v.is_valid(&json!({"name": "n", d: "d", "id": "x"})));
        assert!(!v.is_valid(&json!({d: "d", "map": {}})));
        assert!(!v.is_valid(&json!({"name": "n"})));
        assert!(v.is_valid(&json!({"name": null, d: "d", "maybe": null})));
        let map = store
            .validator("#/components/schemas/Res/allOf/1/properties/map")
            .unwrap();
        assert!(!map.is_valid(&json!("x")));
    }
}
