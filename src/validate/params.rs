//! Request parameters — path, query and header — against the schemas the
//! operation declares.
//!
//! Values are read in their declared serialisation: `simple` (path and
//! header: `a,b,c`; objects `k,v,…`, exploded `k=v,…`), `form` (query:
//! exploded `x=a&x=b`, objects spread over their property names; not
//! exploded `x=a,b`) and `deepObject` (`x[k]=v`). Other styles (`label`,
//! `matrix`, `spaceDelimited`, `pipeDelimited`) and `content`-typed
//! parameters are checked for presence only. Refused with
//! [`Error::InvalidParameters`] (400), one message per problem in the
//! `<where>.<name>: <reason>` form (`query.status: must be one of …`):
//! a required parameter that is missing, a value that does not match its
//! schema, a scalar given twice, undecodable query text, and — with
//! `validation.strict_query` — query parameters the operation does not
//! declare. Headers that OpenAPI says to ignore (`Accept`, `Content-Type`,
//! `Authorization`) and headers the gateway sets upstream itself are not
//! checked. A required parameter whose schema has a `default` may be left
//! out (the default is what the server assumes). Cookies are not checked.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::Value;

use super::coerce;
use super::report;
use super::store::{Shape, Store};
use crate::error::Error;
use crate::routes::{ParamIn, ParamStyle, Parameter, PathParams};

/// The parameter checks of one operation.
#[derive(Debug)]
pub(crate) struct ParamChecks {
    params: Vec<ParamCheck>,
    strict_query: bool,
    max_messages: usize,
    store: Arc<Store>,
}

/// One parameter, its schema compiled.
#[derive(Debug)]
pub(crate) struct ParamCheck {
    name: String,
    location: ParamIn,
    required: bool,
    style: ParamStyle,
    explode: bool,
    /// Where its schema is in the store.
    loc: String,
    shape: Shape,
}

/// A parameter whose schema is in the store at `loc`, before compilation.
#[derive(Debug)]
pub(crate) struct PendingParam {
    pub(crate) param: Parameter,
    pub(crate) loc: String,
}

/// Whether a parameter needs no check at all: its schema admits any string
/// (only annotations besides `type: string`) and it is a path parameter
/// (always present once matched) or may be left out.
pub(crate) fn needs_no_check(p: &Parameter) -> bool {
    let any_string = match &p.schema {
        Value::Bool(true) => true,
        Value::Object(map) => map.iter().all(|(k, v)| match k.as_str() {
            "type" => v == "string",
            "default" | "description" | "title" | "example" | "examples" | "deprecated" => true,
            _ => k.starts_with("x-"),
        }),
        _ => false,
    };
    let may_be_absent = !p.required || p.schema.get("default").is_some();
    any_string && (p.location == ParamIn::Path || may_be_absent)
}

/// Whether the gateway leaves a header parameter unchecked: OpenAPI says to
/// ignore `Accept`, `Content-Type` and `Authorization`; `upstream` are the
/// headers the gateway sets itself.
pub(crate) fn ignored_header(name: &str, upstream: &[String]) -> bool {
    ["accept", "content-type", "authorization"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
        || upstream.iter().any(|h| h.eq_ignore_ascii_case(name))
}

impl ParamChecks {
    /// The checks of `pending`, whose schemas `store` holds.
    pub(crate) fn new(
        pending: Vec<PendingParam>,
        strict_query: bool,
        max_messages: usize,
        store: Arc<Store>,
    ) -> ParamChecks {
        let params = pending
            .into_iter()
            .map(|p| ParamCheck {
                shape: store.shape(&p.loc),
                name: p.param.name,
                location: p.param.location,
                // A default names the value the server assumes when the
                // parameter is left out (SailPoint's v1 document marks its
                // experimental header required with `default: "true"`).
                required: p.param.required && p.param.schema.get("default").is_none(),
                style: p.param.style,
                explode: p.param.explode,
                loc: p.loc,
            })
            .collect();
        ParamChecks {
            params,
            strict_query,
            max_messages,
            store,
        }
    }

    /// The locations of the compiled schemas (to check they compiled).
    pub(crate) fn locations(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.loc.as_str())
    }

    /// Whether there is nothing to check.
    pub(crate) fn is_empty(&self) -> bool {
        self.params.is_empty() && !self.strict_query
    }

    /// Checks one request's parameters.
    pub(crate) fn check(
        &self,
        query: Option<&str>,
        headers: &HeaderMap,
        path: Option<&PathParams>,
    ) -> Result<(), Error> {
        let mut messages = Vec::new();
        let pairs = match coerce::form_pairs(query.unwrap_or("")) {
            Ok(p) => p,
            Err(e) => {
                return Err(Error::InvalidParameters {
                    messages: vec![format!("query: {e}")],
                });
            }
        };
        let mut claimed = vec![false; pairs.len()];
        for p in &self.params {
            let prefix = match p.location {
                ParamIn::Path => format!("path.{}", p.name),
                ParamIn::Query => format!("query.{}", p.name),
                ParamIn::Header => format!("header.{}", p.name),
            };
            let value = match p.location {
                ParamIn::Path => path
                    .and_then(|pp| pp.get(&p.name))
                    .map(|v| Ok(self.simple(p, v))),
                ParamIn::Header => header(headers, &p.name).map(|v| match v {
                    Some(text) => Ok(self.simple(p, &text)),
                    None => Err("not visible ASCII text".to_owned()),
                }),
                ParamIn::Query => self.query(p, &pairs, &mut claimed),
            };
            let value = match value {
                None if p.required => {
                    messages.push(format!("{prefix}: required, missing"));
                    continue;
                }
                None => continue,
                Some(Err(why)) => {
                    messages.push(format!("{prefix}: {why}"));
                    continue;
                }
                Some(Ok(None)) => continue,
                Some(Ok(Some(v))) => v,
            };
            let Some(validator) = self.store.validator(&p.loc) else {
                return Err(Error::Internal(format!("no validator at {}", p.loc)));
            };
            messages.extend(
                validator
                    .iter_errors(&value)
                    .flat_map(|e| report::messages(&prefix, &e)),
            );
        }
        if self.strict_query {
            for ((name, _), used) in pairs.iter().zip(&claimed) {
                if !used {
                    messages.push(format!(
                        "query.{}: unknown parameter",
                        name.chars().take(64).collect::<String>()
                    ));
                }
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        messages.retain(|m| seen.insert(m.clone()));
        if messages.len() > self.max_messages {
            let more = messages.len() - (self.max_messages - 1);
            messages.truncate(self.max_messages - 1);
            messages.push(format!("… and {more} more problems"));
        }
        Err(Error::InvalidParameters { messages })
    }

    /// A `simple`-style value (path, header); `None`: not checked.
    fn simple(&self, p: &ParamCheck, raw: &str) -> Option<Value> {
        if p.style != ParamStyle::Simple {
            return None;
        }
        Some(self.split(p, raw, ','))
    }

    /// A value whose arrays and objects are `sep`-separated.
    fn split(&self, p: &ParamCheck, raw: &str, sep: char) -> Value {
        if p.shape.is("array") {
            coerce::array(&self.store, &p.shape, raw.split(sep))
        } else if p.shape.is("object") {
            let pairs = if p.explode {
                coerce::assigned_pairs(raw)
            } else {
                coerce::flat_pairs(raw)
            };
            coerce::object(&self.store, &p.shape, pairs)
        } else {
            coerce::scalar(raw, &p.shape)
        }
    }

    /// A query parameter's value: `None` absent, `Some(Ok(None))` present
    /// but not checked.
    fn query(
        &self,
        p: &ParamCheck,
        pairs: &[(String, String)],
        claimed: &mut [bool],
    ) -> Option<Result<Option<Value>, String>> {
        let mut take = |pick: &dyn Fn(&str) -> bool| {
            let mut out = Vec::new();
            for (i, (name, value)) in pairs.iter().enumerate() {
                if pick(name) {
                    claimed[i] = true;
                    out.push((name.as_str(), value.as_str()));
                }
            }
            out
        };
        let object = p.shape.is("object") && !p.shape.is("array");
        let found = match p.style {
            ParamStyle::DeepObject => {
                let open = format!("{}[", p.name);
                let found = take(&|n| n.starts_with(&open) && n.ends_with(']'));
                if found.is_empty() {
                    return None;
                }
                let inner = found
                    .iter()
                    .map(|(n, v)| (&n[open.len()..n.len() - 1], *v))
                    .collect::<Vec<_>>();
                return Some(Ok(Some(coerce::object(&self.store, &p.shape, inner))));
            }
            ParamStyle::Form if p.explode && object => {
                let names: Vec<&str> = p.shape.properties.iter().map(|(n, _)| n.as_str()).collect();
                let found = take(&|n| names.contains(&n));
                if found.is_empty() {
                    return None;
                }
                return Some(Ok(Some(coerce::object(&self.store, &p.shape, found))));
            }
            _ => take(&|n| n == p.name),
        };
        if found.is_empty() {
            return None;
        }
        let values: Vec<&str> = found.iter().map(|(_, v)| *v).collect();
        Some(match p.style {
            ParamStyle::Form if p.shape.is("array") && p.explode => Ok(Some(coerce::array(
                &self.store,
                &p.shape,
                values.iter().copied(),
            ))),
            ParamStyle::Form | ParamStyle::Simple => match values.as_slice() {
                [one] => Ok(Some(self.split(p, one, ','))),
                _ => Err("given more than once".to_owned()),
            },
            _ => Ok(None),
        })
    }
}

/// A header's values joined by `,`: `None` when absent, `Some(None)` when
/// not visible ASCII.
fn header(headers: &HeaderMap, name: &str) -> Option<Option<String>> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let mut out = Vec::new();
    for v in values {
        match v.to_str() {
            Ok(t) => out.push(t.trim()),
            Err(_) => return Some(None),
        }
    }
    Some(Some(out.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(location: ParamIn, required: bool, schema: Value) -> Parameter {
        Parameter {
            name: "p".into(),
            location,
            required,
            schema,
            ..Parameter::default()
        }
    }

    #[test]
    fn any_string_parameters_that_may_be_absent_need_no_check() {
        let s = json!({"type": "string", "description": "d"});
        assert!(needs_no_check(&param(ParamIn::Path, true, s.clone())));
        assert!(needs_no_check(&param(ParamIn::Query, false, s.clone())));
        assert!(!needs_no_check(&param(ParamIn::Header, true, s)));
        // SailPoint's v1 header: required, but with a default.
        let experimental = json!({"type": "string", "default": "true"});
        assert!(needs_no_check(&param(ParamIn::Header, true, experimental)));
        for constrained in [
            json!({"type": "integer"}),
            json!({"type": "string", "enum": ["a"]}),
            json!({"type": "string", "pattern": "^a$"}),
            json!({"$ref": "#/components/schemas/X"}),
        ] {
            assert!(!needs_no_check(&param(ParamIn::Query, false, constrained)));
        }
        assert!(ignored_header("Authorization", &[]));
        assert!(ignored_header("x-upstream-key", &["X-Upstream-Key".into()]));
        assert!(!ignored_header("X-Tenant", &[]));
    }
}
