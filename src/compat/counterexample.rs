//! Counterexamples: a small document valid under one version and rejected by the other.
//!
//! Candidates are made from the schema that must accept them (a base document that fills what is
//! required, then variants that change one place at a time: boundary values, each enum value,
//! other JSON types, a missing property, an undeclared one, a longer array). Each candidate is
//! then checked with the real validators, compiled as the registry compiles contracts (offline,
//! registry documents as resources, linear regex engine, formats asserted); a candidate is
//! returned only if the original validator accepts it and the update's rejects it. Nothing here
//! is trusted without that check, and the search is bounded.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::model::{self, At, Doc};
use super::{Schemas, Version};

/// A document that shows an incompatibility, already checked with both validators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counterexample {
    pub document: Value,
    /// The version that accepts the document.
    pub valid_under: u32,
    /// The version whose validator rejects it.
    pub rejected_by: u32,
    /// For people: "valid under v1, rejected by v2".
    pub summary: String,
}

/// The most candidates validated in one search.
const MAX_CANDIDATES: usize = 2_000;
/// The candidates of the first, cheap try.
const FIRST_TRY: usize = 64;
/// The most alternatives kept per schema node.
const MAX_PER_NODE: usize = 24;
/// How deep candidates are built; deeper, only the first alternative is kept.
const MAX_DEPTH: usize = 8;

/// Looks for a document valid under `original` and rejected by `update`.
pub(crate) fn search<'a>(
    original: &Version<'a>,
    update: &Version<'a>,
    schemas: &Schemas<'a>,
) -> Option<Counterexample> {
    let (compiled_original, compiled_update);
    let (accepts, rejects) = match (original.validator, update.validator) {
        (Some(accepts), Some(rejects)) => (accepts, rejects),
        (accepts, rejects) => {
            let registry = reachable_registry(original, update, schemas)?;
            let accepts = match accepts {
                Some(validator) => validator,
                None => {
                    compiled_original = validator(original, &registry)?;
                    &compiled_original
                }
            };
            let rejects = match rejects {
                Some(validator) => validator,
                None => {
                    compiled_update = validator(update, &registry)?;
                    &compiled_update
                }
            };
            (accepts, rejects)
        }
    };
    let root = at(original);
    let names = property_names(update.schema);
    // A few alternatives find most counterexamples; only when they do not is the full set tried.
    let document = [FIRST_TRY, MAX_CANDIDATES]
        .into_iter()
        .find_map(|root_limit| {
            let generator = Generator {
                schemas,
                names: names.clone(),
                visits: std::cell::Cell::new(0),
                root_limit,
            };
            generator
                .candidates(root, 0)
                .into_iter()
                .find(|candidate| accepts.is_valid(candidate) && !rejects.is_valid(candidate))
        })?;
    Some(Counterexample {
        document,
        valid_under: original.number,
        rejected_by: update.number,
        summary: format!(
            "valid under v{}, rejected by v{}",
            original.number, update.number
        ),
    })
}

fn at<'a>(version: &Version<'a>) -> At<'a> {
    At {
        value: version.schema,
        doc: Doc {
            uri: version.uri,
            root: version.schema,
        },
    }
}

/// The registry documents the two versions reach, as validator resources (the registry may hold
/// thousands; indexing them all for one counterexample would cost more than the search).
fn reachable_registry<'a>(
    original: &Version<'a>,
    update: &Version<'a>,
    schemas: &Schemas<'a>,
) -> Option<jsonschema::Registry<'a>> {
    let mut documents = model::reachable_documents(schemas, at(original)).ok()?;
    documents.extend(model::reachable_documents(schemas, at(update)).ok()?);
    documents.sort_by_key(|doc| doc.uri);
    documents.dedup_by_key(|doc| doc.uri);
    let resources = documents
        .iter()
        .filter(|doc| schemas.documents.contains_key(doc.uri))
        .map(|doc| (doc.uri, doc.root));
    jsonschema::Registry::new()
        .extend(resources)
        .and_then(jsonschema::RegistryBuilder::prepare)
        .ok()
}

/// Compiles a version the way `registry::contract::compile` does.
fn validator(
    version: &Version<'_>,
    registry: &jsonschema::Registry<'_>,
) -> Option<jsonschema::Validator> {
    let draft = draft_of(version.schema);
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        jsonschema::options()
            .offline()
            .with_draft(draft)
            .with_base_uri(version.uri)
            .with_registry(registry)
            .with_pattern_options(
                jsonschema::PatternOptions::regex()
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20),
            )
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .build(version.schema)
    }));
    built.ok()?.ok()
}

fn draft_of(schema: &Value) -> jsonschema::Draft {
    let declared = schema
        .get("$schema")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match declared.trim_end_matches('#') {
        "http://json-schema.org/draft-07/schema" => jsonschema::Draft::Draft7,
        "http://json-schema.org/draft-06/schema" => jsonschema::Draft::Draft6,
        "http://json-schema.org/draft-04/schema" => jsonschema::Draft::Draft4,
        "https://json-schema.org/draft/2019-09/schema" => jsonschema::Draft::Draft201909,
        _ => jsonschema::Draft::Draft202012,
    }
}

struct Generator<'s, 'a> {
    schemas: &'s Schemas<'a>,
    /// Property names the other version mentions: undeclared here, they may be typed there.
    names: Vec<String>,
    /// Schema nodes expanded so far; past `MAX_VISITS` only trivial candidates are made.
    visits: std::cell::Cell<usize>,
    /// How many alternatives the document itself may have.
    root_limit: usize,
}

/// The most schema nodes expanded in one search (recursive schemas would otherwise explode).
const MAX_VISITS: usize = 4_000;

/// Every property name a schema mentions (declared, required, or a dependency), at any depth.
fn property_names(schema: &Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut stack = vec![schema];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                for keyword in [
                    "properties",
                    "dependencies",
                    "dependentRequired",
                    "dependentSchemas",
                ] {
                    if let Some(Value::Object(declared)) = object.get(keyword) {
                        names.extend(declared.keys().cloned());
                    }
                }
                if let Some(Value::Array(required)) = object.get("required") {
                    names.extend(required.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                for keyword in ["dependencies", "dependentRequired"] {
                    for listed in object
                        .get(keyword)
                        .and_then(Value::as_object)
                        .into_iter()
                        .flat_map(|map| map.values())
                    {
                        let listed = listed.as_array().into_iter().flatten();
                        names.extend(listed.filter_map(Value::as_str).map(str::to_owned));
                    }
                }
                stack.extend(object.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
        if names.len() > 64 {
            break;
        }
    }
    names.sort();
    names.dedup();
    names
}

/// One value of each JSON type, for places that accept anything.
fn any_values() -> Vec<Value> {
    vec![
        json!({}),
        json!("x"),
        json!(0),
        json!(1.5),
        json!(true),
        Value::Null,
        json!([]),
        json!(""),
        json!(-1),
    ]
}

impl<'a> Generator<'_, 'a> {
    /// How many alternatives a node keeps: more for the document itself, few below it, one
    /// deep down.
    fn limit_at(&self, depth: usize) -> usize {
        match depth {
            0 => self.root_limit,
            _ if depth > MAX_DEPTH => 1,
            _ => MAX_PER_NODE,
        }
    }

    /// Alternatives for one schema, the most ordinary first.
    fn candidates(&self, at: At<'a>, depth: usize) -> Vec<Value> {
        self.visits.set(self.visits.get() + 1);
        if self.visits.get() > MAX_VISITS {
            return vec![Value::Null];
        }
        let mut values = self.unbounded(at, depth);
        if depth > 0 {
            dedup(&mut values);
        }
        values.truncate(self.limit_at(depth));
        values
    }

    fn unbounded(&self, at: At<'a>, depth: usize) -> Vec<Value> {
        let object = match at.value {
            Value::Bool(false) => return Vec::new(),
            Value::Object(object) => object,
            _ => return any_values(),
        };
        if depth > 2 * MAX_DEPTH {
            return vec![Value::Null];
        }
        let mut values = Vec::new();
        if let Some(Value::String(reference)) = object.get("$ref")
            && let Ok(target) = model::resolve(self.schemas, at, reference)
        {
            values.extend(self.candidates(target, depth + 1));
        }
        if let Some(value) = object.get("const") {
            values.push(value.clone());
        }
        if let Some(Value::Array(options)) = object.get("enum") {
            values.extend(options.iter().cloned());
        }
        for keyword in ["allOf", "anyOf", "oneOf"] {
            for member in object
                .get(keyword)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                values.extend(self.candidates(at.child(member), depth + 1));
            }
        }
        for keyword in ["then", "else"] {
            if let Some(branch) = object.get(keyword) {
                values.extend(self.candidates(at.child(branch), depth + 1));
            }
        }
        for kind in types_of(object) {
            values.extend(self.typed(at, object, kind, depth));
        }
        if !object.contains_key("type") {
            // Keywords of one type do not stop values of another: try them all.
            values.extend(any_values());
        }
        values
    }

    fn typed(
        &self,
        at: At<'a>,
        object: &'a Map<String, Value>,
        kind: &str,
        depth: usize,
    ) -> Vec<Value> {
        match kind {
            "string" => strings(object),
            "integer" => numbers(object, true),
            "number" => numbers(object, false),
            "boolean" => vec![json!(true), json!(false)],
            "null" => vec![Value::Null],
            "object" => self.objects(at, object, depth),
            "array" => self.arrays(at, object, depth),
            _ => any_values(),
        }
    }

    /// Object alternatives: a base filling the required properties, the base with every declared
    /// property, then variants changing one thing each. At the document's root, undeclared names
    /// the other version mentions come first (adding and removing properties is the commonest
    /// change); below it, the declared properties' own alternatives do, as only a few are kept.
    fn objects(&self, at: At<'a>, object: &'a Map<String, Value>, depth: usize) -> Vec<Value> {
        let limit = self.limit_at(depth);
        let shape = ObjectShape::of(self, at, object, depth);
        let mut values = vec![
            Value::Object(shape.base.clone()),
            Value::Object(shape.full()),
        ];
        let order = if depth == 0 {
            [Section::Undeclared, Section::Missing, Section::Properties]
        } else {
            [Section::Properties, Section::Missing, Section::Undeclared]
        };
        let sections = order
            .into_iter()
            .chain([Section::Crowd, Section::Dependent]);
        for section in sections {
            let room = limit.saturating_sub(values.len());
            if room == 0 {
                return values;
            }
            values.extend(match section {
                Section::Properties => shape.property_variants(room),
                Section::Missing => shape.missing_required(),
                Section::Undeclared => self.undeclared_variants(&shape, room),
                Section::Crowd => self.crowd_variants(&shape, room),
                Section::Dependent => self.dependent_variants(&shape, depth, room),
            });
        }
        values.push(Value::Object(shape.crowded()));
        values.truncate(limit);
        values
    }

    /// The base with one undeclared property: each name the other version mentions, then
    /// `undeclared`, holding what `additionalProperties` allows or anything.
    fn undeclared_variants(&self, shape: &ObjectShape<'a>, limit: usize) -> Vec<Value> {
        let any = any_values();
        let names = self
            .names
            .iter()
            .map(String::as_str)
            .filter(|name| !shape.declares(name));
        let mut values = Vec::new();
        for name in names.chain(["undeclared"]) {
            for value in shape.undeclared.iter().chain(&any) {
                if values.len() >= limit {
                    return values;
                }
                let mut variant = shape.base.clone();
                variant.insert(name.to_owned(), value.clone());
                values.push(Value::Object(variant));
            }
        }
        values
    }

    /// Every name the other version mentions, then each of them left out in turn (for
    /// dependencies between properties).
    fn crowd_variants(&self, shape: &ObjectShape<'a>, limit: usize) -> Vec<Value> {
        let mut crowd = shape.base.clone();
        for name in &self.names {
            let value = shape.first_value(name);
            crowd.entry(name.clone()).or_insert(value);
        }
        let mut values: Vec<Value> = self
            .names
            .iter()
            .take(limit)
            .map(|name| {
                let mut variant = crowd.clone();
                variant.remove(name);
                Value::Object(variant)
            })
            .collect();
        values.push(Value::Object(crowd));
        values
    }

    /// The base merged with alternatives of each `dependentSchemas` entry, its trigger present.
    fn dependent_variants(
        &self,
        shape: &ObjectShape<'a>,
        depth: usize,
        limit: usize,
    ) -> Vec<Value> {
        let mut values = Vec::new();
        for keyword in ["dependentSchemas", "dependencies"] {
            let entries = shape.object.get(keyword).and_then(Value::as_object);
            for (name, schema) in entries
                .into_iter()
                .flatten()
                .filter(|(_, schema)| schema.is_object())
            {
                for candidate in self
                    .candidates(shape.at.child(schema), depth + 1)
                    .into_iter()
                    .take(limit)
                {
                    if let Value::Object(extra) = candidate {
                        let mut variant = shape.base.clone();
                        variant.extend(extra);
                        variant.entry(name.clone()).or_insert_with(|| json!("x"));
                        values.push(Value::Object(variant));
                    }
                }
            }
        }
        values
    }

    fn arrays(&self, at: At<'a>, object: &'a Map<String, Value>, depth: usize) -> Vec<Value> {
        let tuple = match (object.get("prefixItems"), object.get("items")) {
            (Some(Value::Array(tuple)), _) | (_, Some(Value::Array(tuple))) => tuple.as_slice(),
            _ => &[],
        };
        let items = match object.get("items") {
            Some(Value::Array(_)) | None => None,
            Some(items) if object.contains_key("prefixItems") => Some(items),
            Some(items) => Some(items),
        };
        let item_values = items.map_or_else(any_values, |items| {
            self.candidates(at.child(items), depth + 1)
        });
        let minimum = object
            .get("minItems")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(16) as usize;
        let tuple_values: Vec<Vec<Value>> = tuple
            .iter()
            .map(|item| self.candidates(at.child(item), depth + 1))
            .collect();
        let base: Vec<Value> = tuple_values
            .iter()
            .map(|values| values.first().cloned().unwrap_or(Value::Null))
            .collect();
        let mut values = Vec::new();
        let filler = item_values.first().cloned().unwrap_or(Value::Null);
        let mut padded = base.clone();
        while padded.len() < minimum {
            padded.push(filler.clone());
        }
        values.push(Value::Array(padded.clone()));
        for (index, alternatives) in tuple_values.iter().enumerate() {
            for value in alternatives {
                let mut variant = padded.clone();
                if let Some(slot) = variant.get_mut(index) {
                    *slot = value.clone();
                }
                values.push(Value::Array(variant));
            }
        }
        for value in &item_values {
            let mut variant = padded.clone();
            variant.push(value.clone());
            values.push(Value::Array(variant));
        }
        if let Some(contains) = object.get("contains") {
            let wanted = ["minContains", "maxContains"]
                .iter()
                .filter_map(|keyword| object.get(*keyword).and_then(Value::as_u64))
                .max()
                .unwrap_or(1)
                .min(8) as usize;
            for value in self
                .candidates(at.child(contains), depth + 1)
                .into_iter()
                .take(4)
            {
                for count in 1..=wanted + 1 {
                    let mut variant = padded.clone();
                    variant.extend(std::iter::repeat_n(value.clone(), count));
                    values.push(Value::Array(variant));
                }
            }
        }
        let mut pair = padded.clone();
        pair.push(filler.clone());
        pair.push(filler);
        values.push(Value::Array(pair));
        values.push(Value::Array(base));
        values
    }
}

/// The kinds of object variants, made in an order that depends on the depth.
#[derive(Clone, Copy)]
enum Section {
    Properties,
    Missing,
    Undeclared,
    Crowd,
    Dependent,
}

/// What the object alternatives are made from.
struct ObjectShape<'a> {
    at: At<'a>,
    object: &'a Map<String, Value>,
    required: Vec<&'a str>,
    /// Each declared property with its alternatives.
    declared: Vec<(&'a str, Vec<Value>)>,
    /// Alternatives for an undeclared property.
    undeclared: Vec<Value>,
    /// The required properties, each with its first alternative.
    base: Map<String, Value>,
}

impl<'a> ObjectShape<'a> {
    fn of(
        generator: &Generator<'_, 'a>,
        at: At<'a>,
        object: &'a Map<String, Value>,
        depth: usize,
    ) -> Self {
        let required: Vec<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let declared: Vec<(&str, Vec<Value>)> = object
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, schema)| {
                (
                    name.as_str(),
                    generator.candidates(at.child(schema), depth + 1),
                )
            })
            .collect();
        let undeclared_schema = ["additionalProperties", "unevaluatedProperties"]
            .iter()
            .find_map(|keyword| object.get(*keyword).filter(|schema| schema.is_object()));
        let undeclared = match undeclared_schema {
            Some(schema) => generator.candidates(at.child(schema), depth + 1),
            None => any_values(),
        };
        let mut shape = ObjectShape {
            at,
            object,
            required,
            declared,
            undeclared,
            base: Map::new(),
        };
        for name in shape.required.clone() {
            let value = shape.first_value(name);
            shape.base.insert(name.to_owned(), value);
        }
        shape
    }

    fn declares(&self, name: &str) -> bool {
        self.declared.iter().any(|(declared, _)| *declared == name)
    }

    /// The first alternative for a property, declared or not.
    fn first_value(&self, name: &str) -> Value {
        let declared = self.declared.iter().find(|(declared, _)| *declared == name);
        let first = match declared {
            Some((_, values)) => values.first(),
            None => self.undeclared.first(),
        };
        first.cloned().unwrap_or(Value::Null)
    }

    /// The base with every declared property.
    fn full(&self) -> Map<String, Value> {
        let mut full = self.base.clone();
        for (name, values) in &self.declared {
            if let Some(value) = values.first() {
                full.entry((*name).to_owned())
                    .or_insert_with(|| value.clone());
            }
        }
        full
    }

    /// The base with one declared property set to each of its alternatives.
    fn property_variants(&self, limit: usize) -> Vec<Value> {
        let mut values = Vec::new();
        for (name, alternatives) in &self.declared {
            for value in alternatives.iter().take(limit.saturating_sub(values.len())) {
                let mut variant = self.base.clone();
                variant.insert((*name).to_owned(), value.clone());
                values.push(Value::Object(variant));
            }
        }
        values
    }

    /// The base without each required property in turn.
    fn missing_required(&self) -> Vec<Value> {
        let without = |name: &&str| {
            let mut variant = self.base.clone();
            variant.remove(*name);
            Value::Object(variant)
        };
        self.required.iter().map(without).collect()
    }

    /// The base with as many undeclared properties as `maxProperties` allows (or two).
    fn crowded(&self) -> Map<String, Value> {
        let count = self
            .object
            .get("maxProperties")
            .and_then(Value::as_u64)
            .unwrap_or(2)
            .min(16);
        let mut crowded = self.base.clone();
        let filler = self.undeclared.first().cloned().unwrap_or(Value::Null);
        for index in 0..count {
            crowded.insert(format!("undeclared{index}"), filler.clone());
        }
        crowded
    }
}

/// The types to try: declared ones, else those the keywords suggest, else all.
fn types_of(object: &Map<String, Value>) -> Vec<&str> {
    match object.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => {
            let has =
                |keywords: &[&str]| keywords.iter().any(|keyword| object.contains_key(*keyword));
            let mut kinds = Vec::new();
            if has(&[
                "properties",
                "required",
                "additionalProperties",
                "patternProperties",
                "minProperties",
            ]) {
                kinds.push("object");
            }
            if has(&["items", "prefixItems", "minItems", "maxItems", "contains"]) {
                kinds.push("array");
            }
            if has(&["minLength", "maxLength", "pattern", "format"]) {
                kinds.push("string");
            }
            if has(&[
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
            ]) {
                kinds.push("number");
            }
            let constrained = object.contains_key("enum") || object.contains_key("const");
            if kinds.is_empty() && !constrained {
                kinds.extend(["object", "string", "number", "boolean", "null", "array"]);
            }
            kinds
        }
    }
}

fn strings(object: &Map<String, Value>) -> Vec<Value> {
    let length = |keyword: &str| {
        object
            .get(keyword)
            .and_then(Value::as_u64)
            .map(|n| n.min(256) as usize)
    };
    let mut values: Vec<Value> = Vec::new();
    let format = object.get("format").and_then(Value::as_str);
    if let Some(example) = format.and_then(format_example) {
        values.push(json!(example));
    }
    if let Some(pattern) = object.get("pattern").and_then(Value::as_str) {
        let literal: String = pattern
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' ' | '@' | ':'))
            .collect();
        values.push(json!(literal));
    }
    let minimum = length("minLength").unwrap_or(0);
    values.push(json!("x".repeat(minimum.max(1))));
    values.push(json!("x".repeat(minimum)));
    if let Some(maximum) = length("maxLength") {
        values.push(json!("x".repeat(maximum)));
        values.push(json!("x".repeat(maximum + 1)));
    }
    if minimum > 0 {
        values.push(json!("x".repeat(minimum - 1)));
    }
    for sample in [
        "a",
        "A",
        "0",
        "abc",
        "ABC",
        "123",
        "a-b_c",
        "abcdefghij",
        "2020-01-01",
        "a@example.com",
    ] {
        values.push(json!(sample));
    }
    values
}

fn format_example(format: &str) -> Option<&'static str> {
    Some(match format {
        "date-time" => "2020-01-01T00:00:00Z",
        "date" => "2020-01-01",
        "time" => "00:00:00Z",
        "email" | "idn-email" => "a@example.com",
        "uri" | "iri" | "uri-reference" | "iri-reference" => "https://example.com/",
        "uuid" => "00000000-0000-0000-0000-000000000000",
        "ipv4" => "127.0.0.1",
        "ipv6" => "::1",
        "hostname" | "idn-hostname" => "example.com",
        "duration" => "P1D",
        _ => return None,
    })
}

fn numbers(object: &Map<String, Value>, integer: bool) -> Vec<Value> {
    let mut values: Vec<f64> = vec![ordinary_number(object, integer)];
    values.extend([0.0, 1.0, -1.0, 100.0, 1_000_000.0]);
    for keyword in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
        if let Some(bound) = object.get(keyword).and_then(Value::as_f64) {
            values.extend([bound, bound + 1.0, bound - 1.0, bound + 0.5, bound - 0.5]);
        }
    }
    if let Some(step) = object.get("multipleOf").and_then(Value::as_f64) {
        values.extend([step, 2.0 * step, 3.0 * step, 5.0 * step, 7.0 * step]);
    }
    if !integer {
        values.extend([0.5, 1.5]);
    }
    values
        .into_iter()
        .filter(|value| value.is_finite())
        .map(number_value)
        .collect()
}

/// A number within the bounds and a multiple of `multipleOf`, when one is easy to see: the base
/// document then holds, and variants change one place at a time from a valid document.
fn ordinary_number(object: &Map<String, Value>, integer: bool) -> f64 {
    let bound = |keyword: &str| object.get(keyword).and_then(Value::as_f64);
    let step = if integer { 1.0 } else { 0.5 };
    let low = match (bound("minimum"), bound("exclusiveMinimum")) {
        (Some(minimum), Some(exclusive)) => Some(minimum.max(exclusive + step)),
        (Some(minimum), None) => Some(minimum),
        (None, Some(exclusive)) => Some(exclusive + step),
        (None, None) => None,
    };
    let high = match (bound("maximum"), bound("exclusiveMaximum")) {
        (Some(maximum), Some(exclusive)) => Some(maximum.min(exclusive - step)),
        (Some(maximum), None) => Some(maximum),
        (None, Some(exclusive)) => Some(exclusive - step),
        (None, None) => None,
    };
    let mut value = match (low, high) {
        (Some(low), _) => low.ceil(),
        (None, Some(high)) => high.min(0.0).floor(),
        (None, None) => 0.0,
    };
    if let Some(multiple) = bound("multipleOf").filter(|multiple| *multiple > 0.0) {
        value = (value / multiple).ceil() * multiple;
    }
    value
}

/// Whole numbers as JSON integers, so that `type: integer` accepts them.
fn number_value(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

fn dedup(values: &mut Vec<Value>) {
    let mut kept: Vec<Value> = Vec::with_capacity(values.len());
    for value in values.drain(..) {
        if !kept.contains(&value) {
            kept.push(value);
        }
    }
    *values = kept;
}
