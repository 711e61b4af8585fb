//! Credentials: a bearer token per context and operator tokens, configured as SHA-256 digests
//! (never in clear), compared in constant time. [`Caller`] is the extractor every guarded
//! handler takes: a missing, malformed or unknown token is 401, and the body is the same
//! whatever the reason; a valid token acting on what it does not own is 403 (see
//! [`Caller::may_act_for`]).
//!
//! The file (`--credentials FILE`, or its TOML text in `CONTEXTGATE_CREDENTIALS`):
//!
//! ```toml
//! operator = ["<sha-256 of the operator's token, hex>"]
//! [contexts]
//! orders = ["<sha-256 of orders' token, hex>", "<a second one, while rotating>"]
//! ```
//!
//! Without credentials the API is open: every request acts as the operator. That is the
//! quickstart's mode, and `serve` says so loudly at start.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::registry::ContextName;

/// Who may do what.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    operator: Vec<[u8; 32]>,
    contexts: Vec<(ContextName, [u8; 32])>,
    open: bool,
}

/// Why a credentials file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the credentials are not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    #[serde(default)]
    operator: Vec<String>,
    #[serde(default)]
    contexts: BTreeMap<String, Vec<String>>,
}

impl Credentials {
    /// No credentials: everyone acts as the operator.
    pub fn open() -> Self {
        Self {
            open: true,
            ..Self::default()
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Parses the TOML text of a credentials file; every digest must be 64 hex digits and
    /// every context a valid context name.
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let file: CredentialsFile = toml::from_str(text)?;
        let mut credentials = Self::default();
        for (index, digest) in file.operator.iter().enumerate() {
            credentials
                .operator
                .push(parse_digest("operator", index, digest)?);
        }
        for (context, digests) in &file.contexts {
            let name = ContextName::parse(context).map_err(|error| {
                CredentialsError::Invalid(format!("contexts.{context}: {error}"))
            })?;
            for (index, digest) in digests.iter().enumerate() {
                credentials
                    .contexts
                    .push((name.clone(), parse_digest(context, index, digest)?));
            }
        }
        if credentials.operator.is_empty() && credentials.contexts.is_empty() {
            return Err(CredentialsError::Invalid(
                "the credentials name no token: without any, leave them out (the API is then open)"
                    .into(),
            ));
        }
        Ok(credentials)
    }

    /// Who holds `token`, comparing its digest with every stored one in constant time.
    fn identify(&self, token: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for stored in &self.operator {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(Caller::Operator);
            }
        }
        for (context, stored) in &self.contexts {
            if bool::from(stored.ct_eq(&digest)) && found.is_none() {
                found = Some(Caller::Context(context.clone()));
            }
        }
        found
    }
}

/// One stored digest; the error names its place, never its text (it may be a token in clear).
fn parse_digest(owner: &str, index: usize, text: &str) -> Result<[u8; 32], CredentialsError> {
    let invalid = || {
        CredentialsError::Invalid(format!(
            "{owner}, entry {}: not a SHA-256 digest (64 hex digits); store `contextgate hash-token`'s output, never the token",
            index + 1
        ))
    };
    if text.len() != 64 {
        return Err(invalid());
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).map_err(|_| invalid())?;
    }
    Ok(digest)
}

/// The SHA-256 of a token, in hex, as the credentials file stores it.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// May do everything.
    Operator,
    /// Acts for one context only.
    Context(ContextName),
}

impl Caller {
    /// May act for `context` (publish as it, read its inbox); 403 otherwise.
    pub fn may_act_for(&self, context: &ContextName) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Context(own) if own == context => Ok(()),
            Caller::Context(_) => Err(ApiError::Forbidden),
        }
    }

    /// Operators only; 403 otherwise.
    pub fn must_be_operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Context(_) => Err(ApiError::Forbidden),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credentials: &Arc<Credentials> = &state.credentials;
        if credentials.is_open() {
            return Ok(Caller::Operator);
        }
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        credentials.identify(token).ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_identified_by_their_digest_only() {
        let credentials = Credentials::parse(&format!(
            "operator = [{:?}]\n[contexts]\norders = [{:?}]\n",
            hash_token("root-token"),
            hash_token("orders-token")
        ))
        .unwrap();
        assert_eq!(credentials.identify("root-token"), Some(Caller::Operator));
        assert_eq!(
            credentials.identify("orders-token"),
            Some(Caller::Context(ContextName::parse("orders").unwrap()))
        );
        assert_eq!(credentials.identify("orders-token "), None);
        assert_eq!(credentials.identify(&hash_token("orders-token")), None);
    }

    #[test]
    fn clear_tokens_and_bad_names_are_refused() {
        let clear = Credentials::parse("operator = [\"my-secret\"]").unwrap_err();
        assert!(
            clear.to_string().contains("not a SHA-256 digest"),
            "{clear}"
        );
        assert!(
            !clear.to_string().contains("my-secret"),
            "never echoed: {clear}"
        );
        let bad = Credentials::parse(&format!(
            "[contexts]\n\"Or ders\" = [{:?}]",
            hash_token("x")
        ))
        .unwrap_err();
        assert!(bad.to_string().contains("contexts.Or ders"), "{bad}");
        assert!(Credentials::parse("").is_err());
    }
}
