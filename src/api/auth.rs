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

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::registry::{ContextName, Registry};

/// Who may do what.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    operator: Vec<[u8; 32]>,
    contexts: Vec<(ContextName, [u8; 32])>,
    open: bool,
}

/// Why a credentials file was refused. A message names the entry and why it is wrong, never its
/// text: a credentials file may hold a token in clear by mistake, and start-up errors end up in
/// logs.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Not TOML: where, and the parser's reason (which never quotes the text).
    #[error("the credentials are not valid TOML at line {line}, column {column}: {reason}")]
    Toml {
        line: usize,
        column: usize,
        reason: String,
    },
    /// Valid TOML with wrong entries: every one of them, each with its place.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
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

    /// Parses the TOML text of a credentials file: `operator` an array of digests, `[contexts]`
    /// a table of context name → array of digests; every digest 64 hex digits, held by one owner
    /// once; nothing else.
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        Self::parse_checked(text, None)
    }

    /// [`Credentials::parse`], and every context named must be one of `registry`'s.
    pub fn parse_for(text: &str, registry: &Registry) -> Result<Self, CredentialsError> {
        Self::parse_checked(text, Some(registry))
    }

    fn parse_checked(text: &str, registry: Option<&Registry>) -> Result<Self, CredentialsError> {
        let document = toml_edit::Document::parse(text).map_err(|error| {
            let (line, column) = position(text, error.span().map_or(0, |span| span.start));
            CredentialsError::Toml {
                line,
                column,
                reason: error.message().to_owned(),
            }
        })?;
        let mut reader = Reader {
            text,
            registry,
            credentials: Self::default(),
            places: Vec::new(),
            problems: Vec::new(),
        };
        let top = document.as_table();
        for (key, item) in top.iter() {
            let line = reader.line(top.key(key).and_then(toml_edit::Key::span));
            match key {
                "operator" => reader.digests(&Owner::Operator, "operator", item, line),
                "contexts" => reader.contexts(item, line),
                _ => reader.problems.push(format!(
                    "line {line}: unknown key (a credentials file has `operator` and `[contexts]` only)"
                )),
            }
        }
        let Reader {
            credentials,
            problems,
            ..
        } = reader;
        if problems.is_empty() && credentials.operator.is_empty() && credentials.contexts.is_empty()
        {
            return Err(CredentialsError::Invalid(vec![
                "the credentials name no token: without any, leave them out (the API is then open)"
                    .into(),
            ]));
        }
        if !problems.is_empty() {
            return Err(CredentialsError::Invalid(problems));
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

/// Who a digest in the file belongs to.
enum Owner {
    Operator,
    Context(ContextName),
}

/// Reads a parsed credentials file, collecting every problem with its place.
struct Reader<'a> {
    text: &'a str,
    /// When given, every context named must be one of its.
    registry: Option<&'a Registry>,
    credentials: Credentials,
    /// Every digest read, with where it was: one token has one owner.
    places: Vec<([u8; 32], String)>,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn line(&self, span: Option<std::ops::Range<usize>>) -> usize {
        position(self.text, span.map_or(0, |span| span.start)).0
    }

    fn contexts(&mut self, item: &toml_edit::Item, line: usize) {
        let Some(table) = item.as_table_like() else {
            self.problems.push(format!(
                "contexts (line {line}): must be a table `[contexts]` of context = [digests], not {}",
                item.type_name()
            ));
            return;
        };
        for (key, item) in table.iter() {
            let line = self.line(
                table
                    .get_key_value(key)
                    .and_then(|(key, _)| key.span())
                    .or_else(|| item.span()),
            );
            // A key is never echoed unless it is a context of the registry: it may be a token
            // written as a key (a token in lowercase hex that starts with a letter is a slug).
            let place = format!("contexts, the entry at line {line}");
            let Ok(name) = ContextName::parse(key) else {
                self.problems.push(format!(
                    "{place}: its name is not a context name (a lowercase slug such as `orders`)"
                ));
                continue;
            };
            let label = match self.registry {
                Some(registry) if !registry.contexts.contains_key(&name) => {
                    self.problems.push(format!(
                        "{place}: its name is not a context of the registry"
                    ));
                    continue;
                }
                Some(_) => format!("contexts.{name}"),
                // Not checked against a registry: named by its place only.
                None => "an entry of contexts".to_owned(),
            };
            self.digests(&Owner::Context(name), &label, item, line);
        }
    }

    /// Reads `owner`'s digests; `label` names the entry in problems.
    fn digests(&mut self, owner: &Owner, label: &str, item: &toml_edit::Item, line: usize) {
        let Some(array) = item.as_array() else {
            self.problems.push(format!(
                "{label} (line {line}): must be an array of digests \
                 ([\"<64 hex digits>\", ...]), not {}",
                item.type_name()
            ));
            return;
        };
        for (index, value) in array.iter().enumerate() {
            let line = value
                .span()
                .map_or(line, |span| position(self.text, span.start).0);
            let place = format!("{label}, entry {} (line {line})", index + 1);
            let Some(text) = value.as_str() else {
                self.problems.push(format!(
                    "{place}: must be a string of 64 hex digits, not {}",
                    value.type_name()
                ));
                continue;
            };
            let Some(digest) = parse_digest(text) else {
                self.problems.push(format!(
                    "{place}: not a SHA-256 digest (64 hex digits); store `contextgate hash-token`'s output, never the token"
                ));
                continue;
            };
            if let Some((_, first)) = self.places.iter().find(|(seen, _)| *seen == digest) {
                self.problems.push(format!(
                    "{place}: the same digest as {first}: one token has one owner, once"
                ));
                continue;
            }
            self.places.push((digest, place));
            match owner {
                Owner::Operator => self.credentials.operator.push(digest),
                Owner::Context(name) => self.credentials.contexts.push((name.clone(), digest)),
            }
        }
    }
}

/// The 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

/// One stored digest: 64 hex digits.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).ok()?;
    }
    Some(digest)
}

/// The SHA-256 of a token, in hex, as the credentials file stores it.
pub fn hash_token(token: &str) -> String {
    crate::registry::hex(&Sha256::digest(token.trim().as_bytes()))
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
    /// Who made a change, as the registry store's log names it.
    pub fn author(&self) -> String {
        match self {
            Caller::Operator => "operator".to_owned(),
            Caller::Context(context) => format!("context {context}"),
        }
    }

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
        assert!(bad.to_string().contains("the entry at line 2"), "{bad}");
        assert!(!bad.to_string().contains("Or ders"), "{bad}");
        assert!(Credentials::parse("").is_err());
        let signed = format!("+{}", &hash_token("x")[1..]);
        assert!(Credentials::parse(&format!("operator = [{signed:?}]")).is_err());
    }

    /// Each case: a credentials text holding `SECRET` where it does not belong, and what the
    /// error must say instead.
    #[test]
    fn errors_name_the_entry_and_never_its_text() {
        let digest = hash_token("x");
        let cases = [
            (
                "operator = \"SECRET\"",
                "operator (line 1): must be an array",
            ),
            ("operator = [SECRET]", "line 1, column 13"),
            ("operator = SECRET", "line 1, column 12"),
            ("operator = [\"SECRET\"", "line 1"),
            ("\n\noperator = [\"a\", SECRET]", "line 3, column 18"),
            ("operator = [\"SECRET\"] junk", "line 1, column 23"),
            (
                "[contexts]\norders = \"SECRET\"",
                "an entry of contexts (line 2): must be an array",
            ),
            (
                "[contexts]\norders = [1, \"SECRET\"]",
                "an entry of contexts, entry 1 (line 2): must be a string",
            ),
            (
                "[contexts]\norders = [\"SECRET\"]",
                "an entry of contexts, entry 1 (line 2): not a SHA-256",
            ),
            ("[contexts]\nSECRET = [\"x\"]", "the entry at line 2"),
            (
                "[contexts]\nsecret-token-a3f9 = [\"x\"]",
                "an entry of contexts, entry 1 (line 2): not a SHA-256",
            ),
            ("SECRET = 1", "line 1: unknown key"),
            (
                "contexts = \"SECRET\"",
                "contexts (line 1): must be a table",
            ),
            (
                "operator = [\"SECRET\"]\noperator = [\"SECRET\"]",
                "line 2, column 1: duplicate key",
            ),
        ];
        for (text, expected) in cases {
            let error = Credentials::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains("SECRET"), "{text:?} echoed: {error}");
            assert!(!error.contains("secret"), "{text:?} echoed: {error}");
        }
        // Every problem is reported, not the first.
        let error = Credentials::parse(&format!(
            "operator = [\"SECRET\"]\n[contexts]\norders = [{digest:?}]\nshipping = \"SECRET\""
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("operator, entry 1 (line 1)"), "{error}");
        assert!(error.contains("an entry of contexts (line 4)"), "{error}");
    }

    #[test]
    fn one_digest_has_one_owner() {
        let digest = hash_token("shared");
        let error = Credentials::parse(&format!(
            "operator = [{digest:?}]\n[contexts]\norders = [{digest:?}]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "an entry of contexts, entry 1 (line 3): the same digest as operator, entry 1 (line 1)"
            ),
            "{error}"
        );
        let error = Credentials::parse(&format!(
            "[contexts]\norders = [{digest:?}]\nshipping = [{:?}, {digest:?}]\n",
            hash_token("other")
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("an entry of contexts, entry 2 (line 3): the same digest as an entry of contexts, entry 1 (line 2)"),
            "{error}"
        );
    }
}
