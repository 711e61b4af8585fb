//! Schema resources: the URIs each contract version is known by, its `$id`s, and where its
//! `$ref`s lead — JSON Schema's identification and referencing, confined to the registry.
//!
//! Every contract version is reachable at its registry URI
//! (`contextgate://registry/contracts/<ctx>/<Name>/v<N>.json`). A version may also have:
//! - a **source path** (`[versions.vN] source = "common/user.schema.json"` in `contract.toml`,
//!   written by `contextgate import`): the path it had in the collection it came from, giving it
//!   the retrieval URI `contextgate://registry/sources/<ctx>/<path>`, against which its relative
//!   `$ref`s resolve when it has no `$id`;
//! - a top-level **`$id`**: absolute (`https://example.com/user.json`) or relative
//!   (`issues$opened`, `common/user.schema.json`). A relative one is read against the context's
//!   source root (`contextgate://registry/sources/<ctx>/`), the way collections that key their
//!   schemas by `$id` expect (a validator given each schema under its `$id`);
//! - nested `$id`s (`id` under draft-04), each resolved against the resource around it.
//!
//! Each of those URIs names one schema across the whole registry: two files that claim the same
//! one are both named. A `$id` may not claim a registry URI outside its own context's source
//! root. Nothing is ever fetched: a `$ref` resolves to a resource of the registry or is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use url::Url;

use super::contract::MAX_SCHEMA_DEPTH;
use super::names::ContextName;
use super::{Visibility, contract};

/// Where source paths of imported contract versions live: `<base><ctx>/<path>`.
pub const SOURCES_BASE: &str = "contextgate://registry/sources/";
/// The registry's own namespace: a `$id` may claim URIs in it only under its context's source
/// root.
const REGISTRY_NAMESPACE: &str = "contextgate://registry/";

/// The root relative `$id`s of a context's contracts are read against.
pub fn context_root(context: &ContextName) -> Url {
    Url::parse(&format!("{SOURCES_BASE}{}/", context.as_str()))
        .expect("context names are URI-safe slugs")
}

/// The retrieval URI of a version imported from `path` (relative, `/`-separated, no `..`).
pub fn source_uri(context: &ContextName, path: &str) -> Result<Url, String> {
    let clean = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains(['?', '#'])
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    if !clean {
        return Err(format!(
            "source {path:?} is not a relative path inside the collection (segments separated \
             by /, without . or ..)"
        ));
    }
    context_root(context)
        .join(path)
        .map_err(|error| format!("source {path:?} is not a valid URI path: {error}"))
}

/// A URI without its fragment, as resources are keyed.
fn without_fragment(mut uri: Url) -> Url {
    uri.set_fragment(None);
    uri
}

/// Something wrong in one schema, at a JSON pointer into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    pub pointer: String,
    pub message: String,
}

/// A `$id` of a schema: the URI it names (without fragment) and where it is.
#[derive(Debug, Clone)]
pub struct Identified {
    pub uri: String,
    pub pointer: String,
}

/// A `$ref` (or `$dynamicRef`, `$recursiveRef`) that leaves its resource.
#[derive(Debug, Clone)]
pub struct Reference {
    /// As written.
    pub text: String,
    /// The document it names, absolute and without fragment.
    pub target: String,
    pub pointer: String,
}

/// One contract version's schema, read as a resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The URI it is compiled from: its source URI when it has one, else its registry URI.
    pub retrieval: Url,
    /// Its registry URI.
    pub registry: Url,
    /// The schema as the validator sees it: every `$id` made absolute, and `$schema` set to the
    /// draft it is read as (so that it reads the same when another schema reaches it).
    pub resolved: Value,
    /// Every URI it is known by, with the pointer of the schema each names (`""` for the whole).
    pub names: Vec<Identified>,
    /// Its references that leave it.
    pub references: Vec<Reference>,
}

/// The keywords whose value is a schema, an array of schemas, or a map of names to schemas (the
/// places `$id` and `$ref` mean something). Anything else — `enum`, `const`, `default`,
/// `examples`, unknown keywords — is data or an annotation and is not walked.
const SCHEMA_KEYWORDS: &[&str] = &[
    "additionalItems",
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
];
const SCHEMA_ARRAY_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems", "items"];
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
    "patternProperties",
    "properties",
];
const REFERENCE_KEYWORDS: &[&str] = &["$ref", "$dynamicRef", "$recursiveRef"];

/// The canonical `$schema` URI of a draft.
fn meta_schema(draft: jsonschema::Draft) -> &'static str {
    match draft {
        jsonschema::Draft::Draft4 => "http://json-schema.org/draft-04/schema#",
        jsonschema::Draft::Draft6 => "http://json-schema.org/draft-06/schema#",
        jsonschema::Draft::Draft7 => "http://json-schema.org/draft-07/schema#",
        jsonschema::Draft::Draft201909 => "https://json-schema.org/draft/2019-09/schema",
        _ => "https://json-schema.org/draft/2020-12/schema",
    }
}

fn legacy(draft: jsonschema::Draft) -> bool {
    matches!(
        draft,
        jsonschema::Draft::Draft4 | jsonschema::Draft::Draft6 | jsonschema::Draft::Draft7
    )
}

/// Escapes one JSON pointer token.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Reads one contract version's schema: its `$id`s resolved, its outgoing references listed,
/// its depth capped. `owner` is the context it belongs to.
pub fn read(
    schema: &Value,
    draft: jsonschema::Draft,
    owner: &ContextName,
    registry: Url,
    source: Option<Url>,
) -> Result<Resource, Vec<SchemaProblem>> {
    let root = context_root(owner);
    let retrieval = source.clone().unwrap_or_else(|| registry.clone());
    let mut walk = Walk {
        draft,
        id_keyword: if draft == jsonschema::Draft::Draft4 {
            "id"
        } else {
            "$id"
        },
        own_root: root.to_string(),
        names: vec![Identified {
            uri: registry.to_string(),
            pointer: String::new(),
        }],
        references: Vec::new(),
        problems: Vec::new(),
    };
    if let Some(source) = &source {
        walk.names.push(Identified {
            uri: source.to_string(),
            pointer: String::new(),
        });
    }
    let mut resolved = schema.clone();
    walk.schema(&mut resolved, &retrieval, &root, String::new(), 0, false);
    if let Value::Object(object) = &mut resolved {
        object.insert("$schema".into(), Value::from(meta_schema(draft)));
    }
    if !walk.problems.is_empty() {
        return Err(walk.problems);
    }
    // A top-level `$id` may name the version's source URI itself: one name, not a clash.
    let mut seen = BTreeSet::new();
    walk.names
        .retain(|name| seen.insert((name.uri.clone(), name.pointer.clone())));
    Ok(Resource {
        retrieval,
        registry,
        resolved,
        names: walk.names,
        references: walk.references,
    })
}

struct Walk {
    draft: jsonschema::Draft,
    id_keyword: &'static str,
    own_root: String,
    names: Vec<Identified>,
    references: Vec<Reference>,
    problems: Vec<SchemaProblem>,
}

impl Walk {
    fn problem(&mut self, pointer: &str, message: String) {
        self.problems.push(SchemaProblem {
            pointer: pointer.to_owned(),
            message,
        });
    }

    /// `value` is a schema at `pointer`; `base` is the URI its relative references resolve
    /// against, `id_base` what a relative `$id` here is read against (the context's source root
    /// at the top, `base` below).
    /// `nested`: inside a resource named by a nested `$id`, where `#...` is that resource's.
    fn schema(
        &mut self,
        value: &mut Value,
        base: &Url,
        id_base: &Url,
        pointer: String,
        depth: usize,
        nested: bool,
    ) {
        if depth > MAX_SCHEMA_DEPTH {
            if self
                .problems
                .iter()
                .all(|p| !p.message.contains("nested deeper"))
            {
                self.problem(
                    &pointer,
                    format!("the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels"),
                );
            }
            return;
        }
        let Value::Object(object) = value else {
            return;
        };
        let mut base = base.clone();
        let mut nested = nested;
        // Up to draft-07 a `$id` beside `$ref` is ignored, as is everything else there.
        let id_ignored = legacy(self.draft) && object.contains_key("$ref");
        if let Some(Value::String(id)) = object.get(self.id_keyword)
            && !id.starts_with('#')
            && !id_ignored
        {
            let at = format!("{pointer}/{}", token(self.id_keyword));
            match id_base.join(id) {
                Ok(uri) => {
                    let fragment = uri.fragment().unwrap_or("");
                    if !fragment.is_empty() && !legacy(self.draft) {
                        self.problem(
                            &at,
                            format!(
                                "{} {id:?} has a fragment: from draft 2019-09 on, a fragment is \
                                 named with $anchor",
                                self.id_keyword
                            ),
                        );
                    }
                    let uri = without_fragment(uri);
                    let text = uri.to_string();
                    if text.starts_with(REGISTRY_NAMESPACE) && !text.starts_with(&self.own_root) {
                        self.problem(
                            &at,
                            format!(
                                "{} {id:?} names {text}, inside the registry's own namespace: a \
                                 schema's identifiers stay under {}",
                                self.id_keyword, self.own_root
                            ),
                        );
                    } else {
                        self.names.push(Identified {
                            uri: text.clone(),
                            pointer: pointer.clone(),
                        });
                        object.insert(self.id_keyword.into(), Value::String(text));
                        base = uri;
                        nested |= !pointer.is_empty();
                    }
                }
                Err(error) => self.problem(
                    &at,
                    format!(
                        "{} {id:?} is not a valid URI reference: {error}",
                        self.id_keyword
                    ),
                ),
            }
        }
        for keyword in REFERENCE_KEYWORDS {
            if let Some(Value::String(reference)) = object.get(*keyword).cloned() {
                if reference.starts_with('#') {
                    // Within a nested resource, made absolute so that readers that do not
                    // track nested `$id`s (`compat`) find the same target.
                    if nested
                        && *keyword == "$ref"
                        && let Ok(target) = base.join(&reference)
                    {
                        object.insert((*keyword).into(), Value::String(target.to_string()));
                    }
                    continue;
                }
                let at = format!("{pointer}/{}", token(keyword));
                match base.join(&reference) {
                    Ok(target) => {
                        let absolute = target.to_string();
                        self.references.push(Reference {
                            text: reference,
                            target: without_fragment(target).to_string(),
                            pointer: at,
                        });
                        // Absolute, so that the schema reads the same wherever it is read from
                        // (a dynamic reference is left as written: its scope is dynamic).
                        if *keyword == "$ref" {
                            object.insert((*keyword).into(), Value::String(absolute));
                        }
                    }
                    Err(error) => self.problem(
                        &at,
                        format!("{keyword} {reference:?} is not a valid URI reference: {error}"),
                    ),
                }
            }
        }
        for (key, child) in object.iter_mut() {
            let at = format!("{pointer}/{}", token(key));
            let key = key.as_str();
            if SCHEMA_MAP_KEYWORDS.contains(&key) {
                if let Value::Object(members) = child {
                    for (name, member) in members.iter_mut() {
                        let at = format!("{at}/{}", token(name));
                        // `dependencies` maps names to schemas or to arrays of names.
                        if member.is_object() || member.is_boolean() {
                            self.schema(member, &base, &base, at, depth + 2, nested);
                        }
                    }
                }
            } else if SCHEMA_ARRAY_KEYWORDS.contains(&key) && child.is_array() {
                if let Value::Array(items) = child {
                    for (index, item) in items.iter_mut().enumerate() {
                        self.schema(
                            item,
                            &base,
                            &base,
                            format!("{at}/{index}"),
                            depth + 2,
                            nested,
                        );
                    }
                }
            } else if SCHEMA_KEYWORDS.contains(&key) {
                self.schema(child, &base, &base, at, depth + 1, nested);
            }
        }
    }
}

/// One resource of the index: a contract version's resolved schema and who may read it.
#[derive(Debug)]
pub struct Indexed {
    /// The contract it is a version of (`orders/OrderPlaced`).
    pub contract: String,
    pub owner: ContextName,
    pub visibility: Visibility,
    pub file: PathBuf,
    pub registry: String,
    pub resolved: Arc<Value>,
}

/// Every URI of the registry's schemas: registry URIs, source URIs, `$id`s.
#[derive(Debug, Default)]
pub struct Index {
    pub resources: Vec<Indexed>,
    /// URI → (resource, pointer of the schema it names).
    names: BTreeMap<String, (usize, String)>,
}

/// Two schemas that claim the same URI.
#[derive(Debug)]
pub struct Clash {
    pub uri: String,
    /// The resource that claimed it first, and where.
    pub first: (usize, String),
    pub pointer: String,
}

impl Index {
    /// Adds a resource under every URI it is known by; a URI another contract (or another place
    /// of the same resource) claimed already is a clash, and the resource is not added. A URI an
    /// earlier version of the same contract claimed (its `$id`, its source path) names this one
    /// from now on: versions are added in order, so a URI names the contract's latest version.
    pub fn add(&mut self, indexed: Indexed, names: &[Identified]) -> Result<usize, Vec<Clash>> {
        let position = self.resources.len();
        let clashes: Vec<Clash> = names
            .iter()
            .filter_map(|name| {
                let other_contract = self
                    .names
                    .get(&name.uri)
                    .filter(|(resource, _)| self.resources[*resource].contract != indexed.contract);
                let claimed = other_contract.cloned().or_else(|| {
                    names
                        .iter()
                        .take_while(|other| !std::ptr::eq(*other, name))
                        .find(|other| other.uri == name.uri)
                        .map(|other| (position, other.pointer.clone()))
                })?;
                Some(Clash {
                    uri: name.uri.clone(),
                    first: claimed,
                    pointer: name.pointer.clone(),
                })
            })
            .collect();
        if !clashes.is_empty() {
            return Err(clashes);
        }
        for name in names {
            self.names
                .insert(name.uri.clone(), (position, name.pointer.clone()));
        }
        self.resources.push(indexed);
        Ok(position)
    }

    /// The resource a URI (without fragment) names, and the pointer of the schema in it.
    pub fn get(&self, uri: &str) -> Option<(usize, &str)> {
        self.names
            .get(uri)
            .map(|(resource, pointer)| (*resource, pointer.as_str()))
    }

    /// The resource a reference names: its target as JSON Schema resolves it, or — when no
    /// schema claims that URI — its address read from the referring file's own source path and
    /// then from its context's root, the ways collections are laid out for tools that load files
    /// by path or key them by `$id` (`{"$id": "https://example.com/a.json", "$ref": "b.json"}`
    /// beside a `b.json` without `$id`). A fallback that finds a schema makes the target URI a
    /// name of it (so the compiler's retriever gives the same answer); a URI of the registry's
    /// namespace outside the context's own source root never becomes one.
    pub fn resolve(
        &mut self,
        reference: &Reference,
        owner: &ContextName,
        source: Option<&Url>,
    ) -> Option<usize> {
        if let Some((resource, _)) = self.get(&reference.target) {
            return Some(resource);
        }
        let own_root = context_root(owner);
        if reference.target.starts_with(REGISTRY_NAMESPACE)
            && !reference.target.starts_with(own_root.as_str())
        {
            return None;
        }
        let address = reference.text.split('#').next().unwrap_or_default();
        if address.is_empty() {
            return None;
        }
        let found = source
            .into_iter()
            .chain([&own_root])
            .filter_map(|base| base.join(address).ok())
            .map(|candidate| without_fragment(candidate).to_string())
            .find_map(|candidate| self.names.get(&candidate).cloned())?;
        self.names.insert(reference.target.clone(), found.clone());
        Some(found.0)
    }

    /// Every URI and the schema it names, as `compat` reads the `$ref` world.
    pub fn documents(&self) -> BTreeMap<String, Value> {
        self.names
            .iter()
            .filter_map(|(uri, (resource, pointer))| {
                let schema = self.resources[*resource].resolved.pointer(pointer)?;
                Some((uri.clone(), schema.clone()))
            })
            .collect()
    }
}

/// Hands the schema compiler the registry's resources, and nothing else: a URI outside the
/// registry, or another context's internal contract, is refused.
pub struct Retriever {
    pub index: Arc<Index>,
    pub owner: ContextName,
}

#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0} is not a schema of this registry (nothing is fetched)")]
    Unknown(String),
    #[error("{0} is a contract internal to {1}")]
    Internal(String, ContextName),
}

impl jsonschema::Retrieve for Retriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let text = uri.as_str();
        let text = text.split_once('#').map_or(text, |(document, _)| document);
        let Some((resource, pointer)) = self.index.get(text) else {
            return Err(Box::new(Refusal::Unknown(text.to_owned())));
        };
        let indexed = &self.index.resources[resource];
        if indexed.visibility == Visibility::Internal && indexed.owner != self.owner {
            return Err(Box::new(Refusal::Internal(
                text.to_owned(),
                indexed.owner.clone(),
            )));
        }
        indexed
            .resolved
            .pointer(pointer)
            .cloned()
            .ok_or_else(|| Box::new(Refusal::Unknown(text.to_owned())) as _)
    }
}

/// What `contract::schema_uri` gives, parsed.
pub fn registry_uri(id: &super::ContractId) -> Url {
    Url::parse(&contract::schema_uri(id)).expect("schema URIs are built from parsed names")
}

/// The 1-based line and column of the value at `pointer` in the JSON text `source` (`None` when
/// the text does not hold it).
pub fn position(source: &str, pointer: &str) -> Option<(usize, usize)> {
    let mut scanner = Scanner {
        bytes: source.as_bytes(),
        at: 0,
    };
    scanner.space();
    if !pointer.is_empty() {
        for raw in pointer.strip_prefix('/')?.split('/') {
            let wanted = raw.replace("~1", "/").replace("~0", "~");
            scanner.enter(&wanted)?;
        }
    }
    let before = &source[..scanner.at.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    Some((line, column))
}

/// Just enough of a JSON reader to walk to a pointer in well-formed text.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|byte| byte.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.bytes.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    /// Reads a string at the cursor, decoded.
    fn string(&mut self) -> Option<String> {
        self.space();
        let start = self.at;
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        loop {
            match self.bytes.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        serde_json::from_str(text).ok()
    }

    /// Skips the value at the cursor.
    fn skip(&mut self) -> Option<()> {
        self.space();
        match self.bytes.get(self.at)? {
            b'"' => self.string().map(drop),
            open @ (b'{' | b'[') => {
                let close = if *open == b'{' { b'}' } else { b']' };
                self.at += 1;
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if *open == b'{' {
                        self.string()?;
                        self.eat(b':')?;
                    }
                    self.skip()?;
                    if self.eat(b',').is_none() {
                        return self.eat(close);
                    }
                }
            }
            _ => {
                while self.bytes.get(self.at).is_some_and(|byte| {
                    !matches!(byte, b',' | b'}' | b']') && !byte.is_ascii_whitespace()
                }) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// Moves the cursor to the member `wanted` of the object (or the item of the array) at it.
    fn enter(&mut self, wanted: &str) -> Option<()> {
        self.space();
        match self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                loop {
                    let key = self.string()?;
                    self.eat(b':')?;
                    self.space();
                    if key == wanted {
                        return Some(());
                    }
                    self.skip()?;
                    self.eat(b',')?;
                }
            }
            b'[' => {
                let index: usize = wanted.parse().ok()?;
                self.at += 1;
                for _ in 0..index {
                    self.skip()?;
                    self.eat(b',')?;
                }
                self.space();
                Some(())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_walks_to_a_nested_member() {
        let source = "{\n  \"a\": [1, {\"b~/\": \"x\"}],\n  \"c\": {\n    \"$id\": \"y\"\n  }\n}";
        assert_eq!(position(source, ""), Some((1, 1)));
        assert_eq!(position(source, "/a/1/b~0~1"), Some((2, 20)));
        assert_eq!(position(source, "/c/$id"), Some((4, 12)));
        assert_eq!(position(source, "/d"), None);
    }

    fn context() -> ContextName {
        ContextName::parse("github").unwrap()
    }

    /// `schema` read as `github/IssuesOpened@1`, under `draft`, without a source path.
    fn read_as(schema: &Value, draft: jsonschema::Draft) -> Resource {
        read(schema, draft, &context(), registry(), None).unwrap()
    }

    fn names_of(resource: &Resource) -> Vec<&str> {
        resource
            .names
            .iter()
            .map(|name| name.uri.as_str())
            .collect()
    }

    fn registry() -> Url {
        Url::parse("contextgate://registry/contracts/github/IssuesOpened/v1.json").unwrap()
    }

    #[test]
    fn a_relative_top_level_id_is_read_against_the_context_root() {
        let schema = serde_json::json!({
            "$id": "issues$opened",
            "properties": {
                "user": {"$ref": "common/user.schema.json"},
                "nested": {"$id": "parts/address.json", "properties": {"zip": {"$ref": "zip.json#/x"}}},
                "data": {"enum": [{"$id": "not-an-id", "$ref": "not-a-ref"}]}
            }
        });
        let resource = read_as(&schema, jsonschema::Draft::Draft7);
        let names = names_of(&resource);
        assert_eq!(
            names,
            [
                "contextgate://registry/contracts/github/IssuesOpened/v1.json",
                "contextgate://registry/sources/github/issues$opened",
                "contextgate://registry/sources/github/parts/address.json",
            ]
        );
        let targets: Vec<&str> = resource
            .references
            .iter()
            .map(|reference| reference.target.as_str())
            .collect();
        assert_eq!(
            targets,
            [
                "contextgate://registry/sources/github/parts/zip.json",
                "contextgate://registry/sources/github/common/user.schema.json",
            ]
        );
        assert_eq!(
            resource.resolved["$id"],
            "contextgate://registry/sources/github/issues$opened"
        );
    }

    #[test]
    fn an_id_may_not_claim_another_contexts_registry_uri() {
        let schema = serde_json::json!({
            "properties": {"a": {"$id": "contextgate://registry/contracts/billing/Invoice/v1.json"}}
        });
        let problems = read(
            &schema,
            jsonschema::Draft::Draft202012,
            &context(),
            registry(),
            None,
        )
        .unwrap_err();
        assert_eq!(problems[0].pointer, "/properties/a/$id");
        assert!(
            problems[0].message.contains("registry's own namespace"),
            "{problems:?}"
        );
    }

    #[test]
    fn draft_04_names_resources_with_id() {
        let schema = serde_json::json!({
            "id": "http://example.com/root.json",
            "properties": {"id": {"type": "string"}, "b": {"id": "b.json"}}
        });
        let resource = read_as(&schema, jsonschema::Draft::Draft4);
        let names = names_of(&resource);
        assert_eq!(
            names[1..],
            ["http://example.com/root.json", "http://example.com/b.json"]
        );
    }
}
