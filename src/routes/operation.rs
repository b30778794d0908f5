//! One OpenAPI operation, as matched for a request.

use http::Method;

/// An operation of a loaded OpenAPI document. The matching layer puts an
/// `Arc<Operation>` into the request extensions (and a [`PathParams`] with the
/// values of this request); later layers read it.
#[derive(Debug, Clone, Default)]
pub struct Operation {
    /// The document's `operationId`, or for an operation without one a
    /// generated name: the lowercase method and the path as written in the
    /// document, e.g. `post /streams` (stable across loads).
    pub operation_id: String,
    /// The HTTP method.
    pub method: Method,
    /// The full path template as served, mount prefix included,
    /// e.g. `/beta/sim-integrations/{id}`.
    pub path_template: String,
    /// Whether the method changes state (POST, PUT, PATCH, DELETE).
    pub mutating: bool,
    /// Every OAuth scope the operation's `security` names (the union of
    /// its requirements; for display).
    pub scopes: Vec<String>,
    /// The operation's `security` requirements: any one of them suffices
    /// (OR), and each needs all of its scopes (AND). Empty: no requirement.
    pub security: Vec<Vec<String>>,
    /// The parameters (path, query, header; cookies are not checked), with
    /// path-level ones merged in.
    pub parameters: Vec<Parameter>,
    /// Whether the document is OpenAPI 3.1 (JSON Schema 2020-12 schemas).
    pub openapi_31: bool,
    /// Request body schemas by media type, with `$ref`s still pointing into
    /// `components` of `document`.
    pub request_bodies: Vec<RequestBody>,
    /// Names of the path parameters, in order.
    pub path_params: Vec<String>,
    /// Index of the document (in load order) the operation comes from; see
    /// [`super::OperationTable::document`].
    pub document: usize,
    /// Position of the operation in [`super::OperationTable::operations`].
    pub index: usize,
}

/// Where a parameter is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamIn {
    /// A path template variable.
    #[default]
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
}

/// How a parameter's value is serialised (OpenAPI `style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamStyle {
    /// `simple` (path and header default): `a,b,c`, `k,v,k2,v2`.
    #[default]
    Simple,
    /// `form` (query default): `x=a&x=b` exploded, `x=a,b` not.
    Form,
    /// `deepObject`: `x[k]=v`.
    DeepObject,
    /// Any other style (`label`, `matrix`, `spaceDelimited`,
    /// `pipeDelimited`): presence is checked, the value is not.
    Other,
}

/// One declared parameter.
#[derive(Debug, Clone, Default)]
pub struct Parameter {
    /// The name (for headers, as written; matched case-insensitively).
    pub name: String,
    /// Where it is sent.
    pub location: ParamIn,
    /// Whether it must be present.
    pub required: bool,
    /// Its serialisation style.
    pub style: ParamStyle,
    /// Whether arrays and objects are exploded.
    pub explode: bool,
    /// The schema, as written (`$ref`s point into the document).
    pub schema: serde_json::Value,
}

/// A request body the operation accepts.
#[derive(Debug, Clone)]
pub struct RequestBody {
    /// The media type, e.g. `application/json-patch+json`.
    pub media_type: String,
    /// The schema, as written in the document (OpenAPI 3.0 dialect).
    pub schema: serde_json::Value,
    /// Whether the body is required.
    pub required: bool,
}

/// The path parameter values of the current request, in template order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(pub Vec<(String, String)>);

impl PathParams {
    /// The value of the named parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether requests with this method change state.
pub fn is_mutating(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}
