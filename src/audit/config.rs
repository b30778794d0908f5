//! `[audit]`: the audit trail file and its guarantees.

use serde::Deserialize;

/// `[audit]`: the audit trail file and its guarantees.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {}
