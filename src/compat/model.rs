//! How a JSON schema value is seen by the checker: the same shapes as the everit library under
//! Confluent's checker (empty, false, string, number, object, array, enum, const, not, combined,
//! reference), so that the comparison rules can follow Confluent's one for one.
//!
//! A schema object that mixes kinds (`{"type": "string", "enum": [..]}`) is, as in everit, a
//! synthetic `allOf` of its parts; each part is a *view* of the same object, named by a [`Part`].
//! Nothing is copied: every node borrows the documents.
//!
//! Keywords are read as the document's draft (its `$schema`, in any spelling) reads them, as the
//! validator does: a keyword the draft does not know (`prefixItems` before 2020-12, `const`
//! in draft-04) constrains nothing, and up to draft-07 a `$ref` is its target alone, whatever
//! stands beside it.

use jsonschema::Draft;
use serde_json::Value;

use super::{Schemas, Undecided};

/// One schema document: where `$ref`s inside it resolve from, and the draft its keywords mean.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Doc<'a> {
    pub(crate) uri: &'a str,
    pub(crate) root: &'a Value,
    pub(crate) draft: Draft,
}

impl<'a> Doc<'a> {
    pub(crate) fn new(uri: &'a str, root: &'a Value) -> Self {
        Doc {
            uri,
            root,
            draft: draft_of(root),
        }
    }
}

/// The draft a document is read as: the one its `$schema` names (http or https, with or without
/// `#`), else the registry's default, as the registry compiles it.
pub(crate) fn draft_of(root: &Value) -> Draft {
    root.get("$schema")
        .and_then(Value::as_str)
        .and_then(crate::registry::contract::draft_named)
        .unwrap_or(crate::registry::contract::DEFAULT_DRAFT)
}

/// Whether a draft reads a `$ref` as its target alone, ignoring every keyword beside it.
pub(crate) fn ignores_ref_siblings(draft: Draft) -> bool {
    matches!(draft, Draft::Draft4 | Draft::Draft6 | Draft::Draft7)
}

/// Whether a draft knows a keyword, for the keywords some drafts know and others do not (the
/// rest are read alike by every draft).
fn draft_knows(draft: Draft, keyword: &str) -> bool {
    match keyword {
        "const"
        | "contains"
        | "propertyNames"
        | "if"
        | "then"
        | "else"
        | "dependentRequired"
        | "dependentSchemas"
        | "maxContains"
        | "minContains"
        | "unevaluatedItems"
        | "unevaluatedProperties"
        | "prefixItems" => draft.is_known_keyword(keyword),
        _ => true,
    }
}

/// A schema value and the document it lives in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) value: &'a Value,
    pub(crate) doc: Doc<'a>,
    /// Up to draft-07, an object with a `$ref` is that reference alone: nothing else is read.
    ref_only: bool,
}

impl<'a> At<'a> {
    pub(crate) fn new(value: &'a Value, doc: Doc<'a>) -> Self {
        let ref_only = ignores_ref_siblings(doc.draft)
            && value
                .as_object()
                .is_some_and(|object| object.contains_key("$ref"));
        At {
            value,
            doc,
            ref_only,
        }
    }

    /// A keyword's value, when the document's draft reads it here: not a keyword the draft does
    /// not know (`prefixItems` before 2020-12), nor one beside a `$ref` up to draft-07.
    pub(crate) fn get(&self, keyword: &str) -> Option<&'a Value> {
        let object = self.value.as_object()?;
        if (self.ref_only && keyword != "$ref") || !draft_knows(self.doc.draft, keyword) {
            return None;
        }
        object.get(keyword)
    }

    /// A subschema of this one, in the same document.
    pub(crate) fn child(&self, value: &'a Value) -> At<'a> {
        At::new(value, self.doc)
    }
}

/// The criterion of a combined schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Criterion {
    All,
    Any,
    One,
}

impl Criterion {
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Criterion::All => "allOf",
            Criterion::Any => "anyOf",
            Criterion::One => "oneOf",
        }
    }
}

/// The JSON types a typed view can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Number,
    Integer,
    Boolean,
    Null,
    Object,
    Array,
}

impl Type {
    fn parse(name: &str) -> Option<Type> {
        Some(match name {
            "string" => Type::String,
            "number" => Type::Number,
            "integer" => Type::Integer,
            "boolean" => Type::Boolean,
            "null" => Type::Null,
            "object" => Type::Object,
            "array" => Type::Array,
            _ => return None,
        })
    }
}

/// Which view of a schema object a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    /// The object as a whole: its only part, or the synthetic `allOf` of its parts.
    Whole,
    Enum,
    Combined(u8),
    Not,
    Const,
    /// A type named by `type` (required), or sniffed from keywords (not required).
    Typed(u8, bool),
    /// `type: [..]` with several names: the synthetic `anyOf` of one typed view each.
    TypeUnion,
    Ref,
}

/// What a node is, in everit's terms.
#[derive(Debug, Clone)]
pub(crate) enum Shape<'a> {
    Empty,
    False,
    Ref(&'a str),
    String {
        requires: bool,
    },
    Number {
        requires: bool,
        integer: bool,
    },
    Boolean,
    Null,
    Object {
        requires: bool,
    },
    Array {
        requires: bool,
    },
    Enum(&'a [Value]),
    Const(&'a Value),
    Not(&'a Value),
    Combined {
        criterion: Criterion,
        members: Vec<Member<'a>>,
        synthetic: bool,
    },
}

/// A member of a combined schema: a real subschema, or a view of the parent object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'a> {
    pub(crate) at: At<'a>,
    pub(crate) part: Part,
}

/// A classified view of a schema value.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub(crate) at: At<'a>,
    pub(crate) part: Part,
    pub(crate) shape: Shape<'a>,
}

/// Identity of a node for memoization: which value, which view (as Java identity in Confluent).
pub(crate) type NodeKey = (usize, Part);

impl<'a> Node<'a> {
    pub(crate) fn key(&self) -> NodeKey {
        (std::ptr::from_ref(self.at.value) as usize, self.part)
    }

    /// Whether this node carries the object's annotations (title, description, ...).
    pub(crate) fn is_whole(&self) -> bool {
        self.part == Part::Whole
    }
}

const TYPES: [Type; 7] = [
    Type::String,
    Type::Number,
    Type::Integer,
    Type::Boolean,
    Type::Null,
    Type::Object,
    Type::Array,
];

pub(crate) const OBJECT_KEYWORDS: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
    "unevaluatedProperties",
];
pub(crate) const ARRAY_KEYWORDS: &[&str] = &[
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedItems",
];
pub(crate) const NUMBER_KEYWORDS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];
pub(crate) const STRING_KEYWORDS: &[&str] = &["minLength", "maxLength", "pattern", "format"];

fn type_index(kind: Type) -> u8 {
    TYPES.iter().position(|t| *t == kind).unwrap_or(0) as u8
}

/// Classifies a schema value as a whole.
pub(crate) fn classify(at: At<'_>) -> Node<'_> {
    match at.value {
        Value::Bool(false) => return node(at, Part::Whole, Shape::False),
        Value::Object(_) => {}
        _ => return node(at, Part::Whole, Shape::Empty),
    }
    let parts = parts_of(at);
    match parts.as_slice() {
        [] => node(at, Part::Whole, Shape::Empty),
        [only] => Node {
            part: Part::Whole,
            ..view(at, *only)
        },
        _ => node(
            at,
            Part::Whole,
            Shape::Combined {
                criterion: Criterion::All,
                members: parts
                    .iter()
                    .map(|part| Member { at, part: *part })
                    .collect(),
                synthetic: true,
            },
        ),
    }
}

/// The node for a member of a combined schema.
pub(crate) fn member_node(member: Member<'_>) -> Node<'_> {
    match member.part {
        Part::Whole => classify(member.at),
        part => view(member.at, part),
    }
}

/// The parts of a schema object, in everit's extraction order (only the keywords its draft reads
/// there).
fn parts_of(at: At<'_>) -> Vec<Part> {
    let mut parts = Vec::new();
    if at.get("enum").is_some_and(Value::is_array) {
        parts.push(Part::Enum);
    }
    for (index, keyword) in ["allOf", "anyOf", "oneOf"].iter().enumerate() {
        if at.get(keyword).is_some_and(Value::is_array) {
            parts.push(Part::Combined(index as u8));
        }
    }
    if at.get("not").is_some() {
        parts.push(Part::Not);
    }
    if at.get("const").is_some() {
        parts.push(Part::Const);
    }
    match at.get("type") {
        Some(Value::String(name)) => {
            if let Some(kind) = Type::parse(name) {
                parts.push(Part::Typed(type_index(kind), true));
            }
        }
        Some(Value::Array(names)) => {
            let kinds = declared_types(names);
            match kinds.as_slice() {
                [] => {}
                [only] => parts.push(Part::Typed(type_index(*only), true)),
                _ => parts.push(Part::TypeUnion),
            }
        }
        _ => parts.extend(sniffed_types(at)),
    }
    if at.get("$ref").is_some_and(Value::is_string) {
        parts.push(Part::Ref);
    }
    parts
}

fn declared_types(names: &[Value]) -> Vec<Type> {
    let mut kinds: Vec<Type> = Vec::new();
    for kind in names
        .iter()
        .filter_map(Value::as_str)
        .filter_map(Type::parse)
    {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds
}

fn sniffed_types(at: At<'_>) -> Vec<Part> {
    let has_any = |keywords: &[&str]| keywords.iter().any(|keyword| at.get(keyword).is_some());
    let mut parts = Vec::new();
    for (kind, keywords) in [
        (Type::Array, ARRAY_KEYWORDS),
        (Type::Object, OBJECT_KEYWORDS),
        (Type::Number, NUMBER_KEYWORDS),
        (Type::String, STRING_KEYWORDS),
    ] {
        if has_any(keywords) {
            parts.push(Part::Typed(type_index(kind), false));
        }
    }
    parts
}

/// One view of a schema object.
fn view(at: At<'_>, part: Part) -> Node<'_> {
    let shape = match (part, at.value) {
        (_, Value::Bool(false)) => Shape::False,
        (_, Value::Object(_)) => shape_of(at, part),
        _ => Shape::Empty,
    };
    node(at, part, shape)
}

fn shape_of(at: At<'_>, part: Part) -> Shape<'_> {
    match part {
        Part::Whole => classify(at).shape,
        Part::Enum => match at.get("enum") {
            Some(Value::Array(values)) => Shape::Enum(values),
            _ => Shape::Empty,
        },
        Part::Combined(index) => {
            let criterion = match index {
                0 => Criterion::All,
                1 => Criterion::Any,
                _ => Criterion::One,
            };
            let members = match at.get(criterion.keyword()) {
                Some(Value::Array(members)) => members
                    .iter()
                    .map(|member| Member {
                        at: at.child(member),
                        part: Part::Whole,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Shape::Combined {
                criterion,
                members,
                synthetic: false,
            }
        }
        Part::Not => at.get("not").map_or(Shape::Empty, Shape::Not),
        Part::Const => at.get("const").map_or(Shape::Empty, Shape::Const),
        Part::Typed(index, requires) => {
            typed_shape(TYPES[usize::from(index) % TYPES.len()], requires)
        }
        Part::TypeUnion => {
            let names = at.get("type").and_then(Value::as_array);
            let members = names
                .map(|names| declared_types(names))
                .unwrap_or_default()
                .into_iter()
                .map(|kind| Member {
                    at,
                    part: Part::Typed(type_index(kind), true),
                })
                .collect();
            Shape::Combined {
                criterion: Criterion::Any,
                members,
                synthetic: true,
            }
        }
        Part::Ref => at
            .get("$ref")
            .and_then(Value::as_str)
            .map_or(Shape::Empty, Shape::Ref),
    }
}

fn typed_shape<'a>(kind: Type, requires: bool) -> Shape<'a> {
    match kind {
        Type::String => Shape::String { requires },
        Type::Number => Shape::Number {
            requires,
            integer: false,
        },
        Type::Integer => Shape::Number {
            requires,
            integer: true,
        },
        Type::Boolean => Shape::Boolean,
        Type::Null => Shape::Null,
        Type::Object => Shape::Object { requires },
        Type::Array => Shape::Array { requires },
    }
}

fn node<'a>(at: At<'a>, part: Part, shape: Shape<'a>) -> Node<'a> {
    Node { at, part, shape }
}

/// Resolves a `$ref` found in `at`'s document: a local pointer, an anchor, or another registry
/// document (resolved against the document's URI), never anything outside `schemas`.
pub(crate) fn resolve<'a>(
    schemas: &Schemas<'a>,
    at: At<'a>,
    reference: &str,
) -> Result<At<'a>, Undecided> {
    let unresolved = || Undecided::UnresolvedReference(reference.to_owned());
    let (address, fragment) = reference.split_once('#').unwrap_or((reference, ""));
    let doc = if address.is_empty() {
        at.doc
    } else {
        let base = url::Url::parse(at.doc.uri).map_err(|_| unresolved())?;
        let target = base.join(address).map_err(|_| unresolved())?;
        let mut absolute = target.to_string();
        if let Some(position) = absolute.find('#') {
            absolute.truncate(position);
        }
        let (uri, root) = schemas
            .documents
            .get_key_value(&absolute)
            .ok_or_else(unresolved)?;
        Doc::new(uri, root)
    };
    let value = if fragment.is_empty() {
        Some(doc.root)
    } else if fragment.starts_with('/') {
        doc.root.pointer(&percent_decode(fragment))
    } else {
        find_anchor(doc.root, fragment)
    };
    value
        .map(|value| At::new(value, doc))
        .ok_or_else(unresolved)
}

/// Checks that every `$ref` reachable from a schema resolves (as the registry's compiler would),
/// so that an unresolvable one is reported even where the comparison never needs it.
pub(crate) fn check_references<'a>(schemas: &Schemas<'a>, root: At<'a>) -> Result<(), Undecided> {
    reachable_documents(schemas, root).map(|_| ())
}

/// The documents a schema reaches through `$ref`, itself first; an error for the first
/// reference that does not resolve.
pub(crate) fn reachable_documents<'a>(
    schemas: &Schemas<'a>,
    root: At<'a>,
) -> Result<Vec<Doc<'a>>, Undecided> {
    let mut visited: Vec<Doc<'a>> = vec![root.doc];
    let mut documents = vec![root.doc];
    while let Some(doc) = documents.pop() {
        for value in schema_objects(doc.root) {
            if let Some(Value::String(reference)) = value.get("$ref") {
                let target = resolve(schemas, At::new(value, doc), reference)?;
                if !visited.iter().any(|seen| seen.uri == target.doc.uri) {
                    visited.push(target.doc);
                    documents.push(target.doc);
                }
            }
        }
    }
    Ok(visited)
}

/// The `$ref`s of one document, each once, in no particular order: what a caller that loads
/// documents must load for this one to resolve.
pub(crate) fn references(root: &Value) -> Vec<&str> {
    let mut found: Vec<&str> = schema_objects(root)
        .into_iter()
        .filter_map(|value| value.get("$ref").and_then(Value::as_str))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Keywords whose values are documents' data, never schemas: a `$ref` or an `$anchor` inside
/// them is a member's spelling (`{"enum": [{"$ref": "x"}]}`), not a reference.
const DATA_KEYWORDS: &[&str] = &["enum", "const", "default", "examples"];
/// Keywords whose values map names to schemas: the names are not keywords (a property may be
/// called `$ref`, `enum` or `default`).
const SCHEMA_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
];

/// Every schema object of a document, itself included: the values of its keywords are followed,
/// except data ones, and the values of name-to-schema maps rather than the maps themselves.
/// Unknown keywords are followed as if they held schemas (a `$ref` may point into them).
fn schema_objects(root: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                found.push(value);
                for (keyword, child) in object {
                    let keyword = keyword.as_str();
                    if DATA_KEYWORDS.contains(&keyword) {
                        continue;
                    }
                    match child {
                        Value::Object(map) if SCHEMA_MAPS.contains(&keyword) => {
                            stack.extend(map.values());
                        }
                        _ => stack.push(child),
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

fn find_anchor<'a>(root: &'a Value, anchor: &str) -> Option<&'a Value> {
    schema_objects(root)
        .into_iter()
        .find(|value| value.get("$anchor").and_then(Value::as_str) == Some(anchor))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(value: &Value) -> At<'_> {
        At::new(
            value,
            Doc::new("contextgate://registry/contracts/t/T/v1.json", value),
        )
    }

    #[test]
    fn a_typed_enum_is_a_synthetic_all_of_like_everit() {
        let schema = json!({"type": "string", "enum": ["a"]});
        let node = classify(at(&schema));
        let Shape::Combined {
            criterion,
            members,
            synthetic,
        } = node.shape
        else {
            panic!("expected a combined node, got {node:?}");
        };
        assert_eq!(criterion, Criterion::All);
        assert!(synthetic);
        assert_eq!(members.len(), 2);
    }

    #[test]
    fn a_type_list_is_a_synthetic_any_of() {
        let schema = json!({"type": ["string", "null"]});
        let node = classify(at(&schema));
        assert!(matches!(
            node.shape,
            Shape::Combined {
                criterion: Criterion::Any,
                synthetic: true,
                ..
            }
        ));
    }

    #[test]
    fn keywords_without_type_are_sniffed_as_a_type_that_is_not_required() {
        let schema = json!({"properties": {}});
        let node = classify(at(&schema));
        assert!(matches!(node.shape, Shape::Object { requires: false }));
    }

    #[test]
    fn percent_escapes_in_pointers_are_decoded() {
        assert_eq!(percent_decode("/$defs/a%20b"), "/$defs/a b");
        assert_eq!(percent_decode("/%zz"), "/%zz");
    }
}
