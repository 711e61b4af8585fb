//! Both versions, read where a candidate is being built: the subschemas of each that apply at the
//! same place in a document. Candidates then aim at what the rejecting version asks there and
//! the accepting one does not: a property it declares beside the others, a string or an array
//! just past its bound, a number just past its limit.
//!
//! A guide only steers the search; the validators decide. It follows `$ref`s and combinators a
//! bounded way, and reads keywords as each document's draft does.

use serde_json::Value;

use super::Patterns;
use crate::compat::Schemas;
use crate::compat::model::{self, At};

/// The most subschemas one side of a guide holds; past it, the rest are not looked at.
const MAX_SCHEMAS: usize = 16;
/// How many `$ref`s and combinators deep one guide follows.
const MAX_EXPANSION: usize = 8;

/// Both versions' subschemas at one place of a document.
#[derive(Debug, Clone, Default)]
pub(super) struct Guide<'a> {
    /// The version that must reject the counterexample.
    theirs: Side<'a>,
    /// The version that must accept it: what it declares here, in any of its parts, is not new.
    ours: Side<'a>,
}

/// One version's subschemas at one place.
#[derive(Debug, Clone, Default)]
struct Side<'a> {
    /// The subschemas that apply here: those reached directly, and what their `$ref`s,
    /// `allOf`/`anyOf`/`oneOf` members and `then`/`else` branches reach.
    schemas: Vec<At<'a>>,
    /// The subschemas reached directly (a property's schema, an item's), before expansion.
    direct: Vec<At<'a>>,
}

impl<'a> Guide<'a> {
    /// The guide at a document's root: `update` must reject, `original` accept.
    pub(super) fn root(schemas: &Schemas<'a>, original: At<'a>, update: At<'a>) -> Self {
        let mut guide = Guide::default();
        guide.theirs.add_direct(schemas, update);
        guide.ours.add_direct(schemas, original);
        guide
    }

    /// The guide for the value of property `name` of an object here.
    pub(super) fn property(
        &self,
        schemas: &Schemas<'a>,
        patterns: &Patterns,
        name: &str,
    ) -> Guide<'a> {
        Guide {
            theirs: self.theirs.property(schemas, patterns, name),
            ours: self.ours.property(schemas, patterns, name),
        }
    }

    /// The guide for item `index` of an array here (`None`: an item past every tuple).
    pub(super) fn item(&self, schemas: &Schemas<'a>, index: Option<usize>) -> Guide<'a> {
        Guide {
            theirs: self.theirs.item(schemas, index),
            ours: self.ours.item(schemas, index),
        }
    }

    /// The property names the rejecting version mentions here (declared, required, or named
    /// by a dependency) and the accepting one does not declare in any of its parts.
    pub(super) fn added_names(&self) -> Vec<&'a str> {
        let ours = self.ours.declared_names();
        let mut names = self.theirs.names();
        names.retain(|name| !ours.contains(name));
        names
    }

    /// Whether the rejecting version says something of undeclared properties here
    /// (`additionalProperties`, `unevaluatedProperties`, `patternProperties`, `propertyNames`).
    pub(super) fn limits_undeclared(&self) -> bool {
        let limits = |value: &Value| match value {
            Value::Bool(allows) => !allows,
            Value::Object(schema) => !schema.is_empty(),
            _ => false,
        };
        self.theirs.schemas.iter().any(|at| {
            [
                "additionalProperties",
                "unevaluatedProperties",
                "propertyNames",
            ]
            .iter()
            .any(|keyword| at.get(keyword).is_some_and(limits))
                || at.get("patternProperties").is_some()
        })
    }

    /// The values of a numeric keyword across the rejecting version's subschemas here.
    pub(super) fn numbers(&self, keyword: &str) -> Vec<f64> {
        self.theirs
            .schemas
            .iter()
            .filter_map(|at| at.get(keyword).and_then(Value::as_f64))
            .collect()
    }

    /// Whether the rejecting version has exactly `at` here: one subschema, equal to it as JSON,
    /// in the same draft, with no `$ref` that could make equal text mean different schemas.
    /// Candidates for a place the other version left alone come after those for places it
    /// changed.
    pub(super) fn is_same_as(&self, at: At<'a>) -> bool {
        match self.theirs.direct.as_slice() {
            [only] => {
                only.doc.draft == at.doc.draft
                    && !mentions_reference(at.value)
                    && only.value == at.value
            }
            _ => false,
        }
    }
}

impl<'a> Side<'a> {
    fn property(&self, schemas: &Schemas<'a>, patterns: &Patterns, name: &str) -> Side<'a> {
        let mut next = Side::default();
        for at in &self.schemas {
            let declared = at
                .get("properties")
                .and_then(Value::as_object)
                .and_then(|properties| properties.get(name));
            let patterned = || {
                at.get("patternProperties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .find(|(pattern, _)| patterns.matches(pattern, name) == Some(true))
                    .map(|(_, schema)| schema)
            };
            let schema = declared
                .or_else(patterned)
                .or_else(|| at.get("additionalProperties"));
            if let Some(schema) = schema {
                next.add_direct(schemas, at.child(schema));
            }
        }
        next
    }

    fn item(&self, schemas: &Schemas<'a>, index: Option<usize>) -> Side<'a> {
        let mut next = Side::default();
        for at in &self.schemas {
            let (tuple, rest) = match (at.get("prefixItems"), at.get("items")) {
                (Some(Value::Array(tuple)), _) => (Some(tuple), at.get("items")),
                (_, Some(Value::Array(tuple))) => (Some(tuple), at.get("additionalItems")),
                (_, items) => (None, items),
            };
            let member = index.and_then(|index| tuple.and_then(|tuple| tuple.get(index)));
            if let Some(schema) = member.or(rest) {
                next.add_direct(schemas, at.child(schema));
            }
        }
        next
    }

    /// The names declared in `properties` here.
    fn declared_names(&self) -> Vec<&'a str> {
        let mut names: Vec<&'a str> = self
            .schemas
            .iter()
            .filter_map(|at| at.get("properties").and_then(Value::as_object))
            .flat_map(|declared| declared.keys().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The names mentioned here: declared, required, or named by a dependency.
    fn names(&self) -> Vec<&'a str> {
        let mut names: Vec<&'a str> = Vec::new();
        for at in &self.schemas {
            for keyword in [
                "properties",
                "dependentRequired",
                "dependentSchemas",
                "dependencies",
            ] {
                if let Some(Value::Object(declared)) = at.get(keyword) {
                    names.extend(declared.keys().map(String::as_str));
                }
            }
            if let Some(Value::Array(required)) = at.get("required") {
                names.extend(required.iter().filter_map(Value::as_str));
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }

    fn add_direct(&mut self, schemas: &Schemas<'a>, at: At<'a>) {
        self.direct.push(at);
        self.add(schemas, at, 0);
    }

    fn add(&mut self, schemas: &Schemas<'a>, at: At<'a>, depth: usize) {
        if self.schemas.len() >= MAX_SCHEMAS || depth > MAX_EXPANSION || !at.value.is_object() {
            return;
        }
        self.schemas.push(at);
        if let Some(Value::String(reference)) = at.get("$ref")
            && let Ok(target) = model::resolve(schemas, at, reference)
        {
            self.add(schemas, target, depth + 1);
        }
        for keyword in ["allOf", "anyOf", "oneOf"] {
            for member in at
                .get(keyword)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.add(schemas, at.child(member), depth + 1);
            }
        }
        for keyword in ["then", "else"] {
            if let Some(branch) = at.get(keyword) {
                self.add(schemas, at.child(branch), depth + 1);
            }
        }
    }
}

/// Whether a schema has a `$ref` anywhere (a cheap, conservative scan).
fn mentions_reference(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                if object.contains_key("$ref") || object.contains_key("$dynamicRef") {
                    return true;
                }
                stack.extend(object.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    false
}
