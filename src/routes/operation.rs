//! One OpenAPI operation, as matched for a request.

use http::Method;

/// An operation of a loaded OpenAPI document. The matching layer puts an
/// `Arc<Operation>` into the request extensions (and a [`PathParams`] with the
/// values of this request); later layers read it.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The document's `operationId`.
    pub operation_id: String,
    /// The HTTP method.
    pub method: Method,
    /// The full path template as served, mount prefix included,
    /// e.g. `/beta/sim-integrations/{id}`.
    pub path_template: String,
    /// Whether the method changes state (POST, PUT, PATCH, DELETE).
    pub mutating: bool,
    /// The OAuth scopes the document declares for the operation (any of them
    /// suffices).
    pub scopes: Vec<String>,
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
