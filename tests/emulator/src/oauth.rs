//! RFC 6749 building blocks: form parameters and §5.2 error responses.

use std::collections::HashSet;

use crate::http::{form_pairs, Request, Response};

/// An OAuth error to answer with.
#[derive(Clone, Debug)]
pub(crate) struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// Add `WWW-Authenticate: Basic` (client authentication by Basic failed).
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError::new(400, "invalid_request", description)
    }

    /// 400 `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        OAuthError::new(400, "invalid_grant", description)
    }

    /// 401 `invalid_client`.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        OAuthError::new(401, "invalid_client", description)
    }

    /// 400 with any other error code.
    pub fn bad_request(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError::new(400, error, description)
    }

    /// The same error, challenging for Basic authentication.
    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    /// The JSON response (`Cache-Control: no-store`).
    pub fn into_response(self) -> Response {
        let response = Response::error(self.status, self.error, &self.description);
        if self.basic_challenge {
            response.header("WWW-Authenticate", "Basic realm=\"freshtoken-emulator\"")
        } else {
            response
        }
    }
}

/// Form parameters with RFC 6749's rules: an empty value counts as absent,
/// and no parameter may appear twice.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text.
    pub fn parse(raw: &[u8]) -> Result<Self, OAuthError> {
        let pairs = form_pairs(raw);
        let mut seen = HashSet::new();
        for (name, _) in &pairs {
            if !seen.insert(name.as_str()) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name} given more than once"
                )));
            }
        }
        Ok(Params { pairs })
    }

    /// Parses a request's form body, insisting on the form media type.
    pub fn from_form_body(req: &Request) -> Result<Self, OAuthError> {
        if req.media_type().as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            ));
        }
        Params::parse(&req.body)
    }

    /// A parameter's value, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A required parameter, or `invalid_request`.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_absent_and_duplicates_rejected() {
        let p = Params::parse(b"a=&b=2").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("2"));
        assert!(p.require("a").is_err());
        assert!(Params::parse(b"a=1&a=2").is_err());
    }
}
