//! Which resource a path names, under either path family:
//! `/beta/sim-integrations…` or `/sim-integrations/v1…`.

/// A resource of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `…/sim-integrations`: list (GET) and create (POST).
    Collection,
    /// `…/{id}`: get, put, patch, delete.
    Integration(&'a str),
    /// `…/{id}/beforeProvisioningRule`: patch.
    Rule(&'a str),
}

impl Route<'_> {
    /// The methods the resource answers, for 405's `Allow`.
    pub(crate) fn allow(self) -> &'static str {
        match self {
            Route::Collection => "GET, POST",
            Route::Integration(_) => "GET, PUT, PATCH, DELETE",
            Route::Rule(_) => "PATCH",
        }
    }
}

const FAMILIES: [&str; 2] = ["/beta/sim-integrations", "/sim-integrations/v1"];

/// The resource `path` names, if any.
pub(crate) fn parse(path: &str) -> Option<Route<'_>> {
    let rest = FAMILIES.iter().find_map(|f| path.strip_prefix(f))?;
    if rest.is_empty() {
        return Some(Route::Collection);
    }
    let rest = rest.strip_prefix('/')?;
    match rest.split_once('/') {
        None if !rest.is_empty() => Some(Route::Integration(rest)),
        Some((id, "beforeProvisioningRule")) if !id.is_empty() => Some(Route::Rule(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families() {
        for base in FAMILIES {
            assert_eq!(parse(base), Some(Route::Collection));
            assert_eq!(
                parse(&format!("{base}/abc")),
                Some(Route::Integration("abc"))
            );
            assert_eq!(
                parse(&format!("{base}/abc/beforeProvisioningRule")),
                Some(Route::Rule("abc"))
            );
            for bad in [
                "/",
                "//x",
                "/abc/",
                "/abc/other",
                "/abc/beforeProvisioningRule/x",
                "x",
            ] {
                assert_eq!(parse(&format!("{base}{bad}")), None, "{base}{bad}");
            }
        }
        assert_eq!(parse("/v3/sim-integrations"), None);
        assert_eq!(parse("/sim-integrations"), None);
    }
}
