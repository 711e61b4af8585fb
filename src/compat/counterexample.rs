//! Counterexamples: a small document valid under one version and rejected by the other.
//!
//! Candidates are made from the schema that must accept them (a base document that fills what is
//! required, then variants that change one place at a time: boundary values, each enum value,
//! other JSON types, a missing property, an undeclared one, a longer array). For the base to be
//! valid, strings are spelled from their `pattern`'s syntax tree, and each node's alternatives
//! are ordered by a cheap, conservative local check against the node's own schema, so that its
//! first alternative is a valid one wherever there is one. Each candidate is
//! then checked with the real validators, compiled as the registry compiles contracts (offline,
//! registry documents as resources, linear regex engine, formats asserted); a candidate is
//! returned only if the original validator accepts it and the update's rejects it. Nothing here
//! is trusted without that check, and the search is bounded.

use std::cell::RefCell;
use std::collections::HashMap;

use regex_syntax::hir::{Class, Hir, HirKind};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::model::{self, At, Doc};
use super::{Schemas, Version};

mod guide;

use guide::Guide;

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
    let guide = Guide::root(schemas, root, at(update));
    let patterns = Patterns::default();
    // A few alternatives find most counterexamples; only when they do not is the full set tried.
    let document = [FIRST_TRY, MAX_CANDIDATES]
        .into_iter()
        .find_map(|root_limit| {
            let generator = Generator {
                schemas,
                patterns: &patterns,
                references: RefCell::default(),
                names: names.clone(),
                visits: std::cell::Cell::new(0),
                root_limit,
            };
            generator
                .candidates(root, &guide, 0)
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
    At::new(version.schema, Doc::new(version.uri, version.schema))
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
    let draft = model::draft_of(version.schema);
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
            .should_ignore_unknown_formats(true)
            .build(version.schema)
    }));
    built.ok()?.ok()
}

struct Generator<'s, 'a> {
    schemas: &'s Schemas<'a>,
    /// The `pattern`s met so far, compiled for the local checks.
    patterns: &'s Patterns,
    /// Each `$ref` resolved so far, by the address of its string in the schema.
    references: RefCell<AddressMap<Option<At<'a>>>>,
    /// Property names the other version mentions: undeclared here, they may be typed there.
    names: Vec<String>,
    /// Schema nodes expanded so far; past `MAX_VISITS` only trivial candidates are made.
    visits: std::cell::Cell<usize>,
    /// How many alternatives the document itself may have.
    root_limit: usize,
}

/// The most schema nodes expanded in one search (recursive schemas would otherwise explode).
const MAX_VISITS: usize = 4_000;
/// How many bare `$ref`s in a row are followed at one node (a cycle of them is then expanded
/// as it stands, deeper each time).
const MAX_BARE_HOPS: usize = 16;

/// Keywords that do not constrain documents: a `$ref` with only these beside it is its target.
const ANNOTATIONS: [&str; 15] = [
    "$ref",
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

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

/// The longest string, and the most items, a candidate is made with: a bound beyond it (a
/// `maxLength` of a million) gets no candidate past it.
const LONGEST: usize = 100_000;
/// How many JSON values the items `minItems` asks for may hold in all; every array variant
/// copies them.
const MAX_PADDED_VALUES: usize = 4_096;
/// How many JSON values one long array (past the other version's count) may hold.
const MAX_LONG_VALUES: usize = 200_000;
/// Alternatives holding more JSON values than this are not chosen for the fullest object.
const LARGE: usize = 256;

/// [`any_values`], and values aimed at the guide's bounds: strings and arrays just past its
/// lengths and counts, numbers at and around its limits.
fn any_values_for(guide: &Guide<'_>) -> Vec<Value> {
    let mut values = any_values();
    for length in guide_lengths(guide, "minLength", "maxLength") {
        values.push(Value::String("x".repeat(length)));
    }
    for length in guide_lengths(guide, "minItems", "maxItems") {
        if length <= MAX_LONG_VALUES {
            values.push(Value::Array(vec![Value::Null; length]));
        }
    }
    values.extend(guide_numbers(guide).into_iter().map(number_value));
    values
}

/// The lengths just past a guide's bounds: one more than each maximum, one less than each
/// positive minimum (within [`LONGEST`]).
fn guide_lengths(guide: &Guide<'_>, minimum: &str, maximum: &str) -> Vec<usize> {
    let whole = |bound: f64| (bound >= 0.0 && bound.fract() == 0.0).then_some(bound as usize);
    let above = guide.numbers(maximum).into_iter().filter_map(whole);
    let below = guide.numbers(minimum).into_iter().filter_map(whole);
    let mut lengths: Vec<usize> = above
        .map(|bound| bound.saturating_add(1))
        .chain(below.filter(|bound| *bound > 0).map(|bound| bound - 1))
        .filter(|length| *length <= LONGEST)
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
}

/// Numbers at, just past and just short of a guide's limits, and halfway between its steps.
fn guide_numbers(guide: &Guide<'_>) -> Vec<f64> {
    let mut values = Vec::new();
    for keyword in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
        for bound in guide.numbers(keyword) {
            values.extend([bound, bound + 1.0, bound - 1.0, bound + 0.5, bound - 0.5]);
        }
    }
    for step in guide.numbers("multipleOf") {
        values.extend([step / 2.0, 1.5 * step]);
    }
    values.retain(|value| value.is_finite());
    values
}

/// `base` (a tuple's items) cut or filled to `length` items: distinct ones when `unique` (the
/// given item values first, then numbered variations of the first one), else copies of the
/// first one.
fn padded_to(base: &[Value], item_values: &[Value], unique: bool, length: usize) -> Vec<Value> {
    let mut padded = base.to_vec();
    padded.truncate(length);
    let filler = item_values.first().cloned().unwrap_or(Value::Null);
    if unique {
        for value in item_values {
            if padded.len() >= length {
                break;
            }
            if !padded.iter().any(|item| json_equal(item, value)) {
                padded.push(value.clone());
            }
        }
        // Numbered variations differ from one another; only the few items above can clash.
        let n_listed = padded.len();
        let mut index: u64 = 0;
        while padded.len() < length && index < 2 * length as u64 + 64 {
            let variation = match &filler {
                Value::Number(number) => {
                    number_value(number.as_f64().unwrap_or(0.0) + index as f64)
                }
                Value::String(text) => Value::String(format!("{text}{index}")),
                _ => break,
            };
            index += 1;
            if !padded[..n_listed]
                .iter()
                .any(|item| json_equal(item, &variation))
            {
                padded.push(variation);
            }
        }
    }
    while padded.len() < length {
        padded.push(filler.clone());
    }
    padded
}

/// A string of a format and `length` characters, for the formats that have spellings of many
/// lengths; `None` for the others or a length the format cannot take. A date-time or a time
/// past its shortest spelling may be one or two characters longer (a fraction needs a digit).
fn format_of_length(format: &str, length: usize) -> Option<String> {
    let padded = |prefix: &str, filler: &str, suffix: &str, length: usize| {
        let fixed = prefix.len() + suffix.len();
        (length >= fixed).then(|| format!("{prefix}{}{suffix}", filler.repeat(length - fixed)))
    };
    match format {
        "uri" | "iri" | "uri-reference" | "iri-reference" => {
            padded("https://example.com/", "x", "", length)
        }
        "date-time" if length > 20 => padded("2020-01-01T00:00:00.", "0", "Z", length.max(22)),
        "time" if length > 9 => padded("00:00:00.", "0", "Z", length.max(11)),
        "hostname" | "idn-hostname" => hostname_of_length(length),
        "email" | "idn-email" if length <= 64 + 12 => padded("", "a", "@example.com", length)
            .or_else(|| Some(format!("a@{}", hostname_of_length(length.checked_sub(2)?)?))),
        "email" | "idn-email" => {
            let domain = hostname_of_length(length.checked_sub(65)?)?;
            Some(format!("{}@{domain}", "a".repeat(64)))
        }
        _ => None,
    }
}

/// A host name of exactly `length` characters (labels of at most 63, at most 253 in all).
fn hostname_of_length(length: usize) -> Option<String> {
    if length == 0 || length > 253 {
        return None;
    }
    let mut labels: Vec<usize> = Vec::new();
    let mut left = length;
    while left > 63 {
        labels.push(63);
        left -= 64;
    }
    if left == 0 {
        // The last dot would end the name: move a character from the label before it.
        *labels.last_mut()? -= 1;
        left = 1;
    }
    labels.push(left);
    let labels: Vec<String> = labels.into_iter().map(|n| "a".repeat(n)).collect();
    Some(labels.join("."))
}

/// The lists' first items, then their second ones, and so on.
fn interleaved(lists: Vec<Vec<Value>>) -> Vec<Value> {
    let mut iterators: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut values = Vec::new();
    loop {
        let before = values.len();
        values.extend(iterators.iter_mut().filter_map(Iterator::next));
        if values.len() == before {
            return values;
        }
    }
}

/// Objects for a schema whose parts must all hold: the parts' first objects merged, then each
/// part's other objects merged with the other parts' first ones (a part's own names win).
fn merged_objects(parts: &[Vec<Map<String, Value>>]) -> Vec<Value> {
    let merge = |chosen: usize, object: &Map<String, Value>| {
        let mut merged = object.clone();
        for (index, part) in parts.iter().enumerate() {
            if index == chosen {
                continue;
            }
            for (name, value) in part.first().into_iter().flatten() {
                merged.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        Value::Object(merged)
    };
    let mut values = Vec::new();
    if let Some(first) = parts.first().and_then(|objects| objects.first()) {
        values.push(merge(0, first));
    }
    for (index, objects) in parts.iter().enumerate() {
        values.extend(objects.iter().skip(1).map(|object| merge(index, object)));
    }
    values
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
    fn candidates(&self, at: At<'a>, guide: &Guide<'a>, depth: usize) -> Vec<Value> {
        self.candidates_split(at, guide, depth).0
    }

    /// [`Self::candidates`], with how many of them come first because they fit the schema.
    fn candidates_split(&self, at: At<'a>, guide: &Guide<'a>, depth: usize) -> (Vec<Value>, usize) {
        self.visits.set(self.visits.get() + 1);
        if self.visits.get() > MAX_VISITS {
            return (vec![Value::Null], 0);
        }
        // A bare `$ref` is its target: its alternatives are the target's, already checked.
        let mut at = at;
        for _ in 0..MAX_BARE_HOPS {
            match self.bare_reference(at) {
                Some(target) => at = target,
                None => break,
            }
        }
        let mut values = self.unbounded(at, guide, depth);
        let limit = self.limit_at(depth);
        if depth == 0 {
            // The document itself: the validators check every alternative anyway.
            values.truncate(limit);
            let n_fitting = values.len();
            return (values, n_fitting);
        }
        // Distinct alternatives, those this node's own schema surely rejects last: the first
        // alternative, the one bases are made of, is then valid wherever one is, and the cap
        // cuts invalid ones first. Checking stops once the cap is filled with fitting ones.
        let mut kept: Vec<Value> = Vec::with_capacity(limit);
        let mut unfit: Vec<Value> = Vec::new();
        for value in values {
            if kept.len() >= limit {
                break;
            }
            if kept.contains(&value) {
                continue;
            }
            if self.fits(at, &value) {
                kept.push(value);
            } else {
                unfit.push(value);
            }
        }
        let n_fitting = kept.len();
        for value in unfit {
            if kept.len() >= limit {
                break;
            }
            if !kept.contains(&value) {
                kept.push(value);
            }
        }
        (kept, n_fitting)
    }

    fn unbounded(&self, at: At<'a>, guide: &Guide<'a>, depth: usize) -> Vec<Value> {
        let object = match at.value {
            Value::Bool(false) => return Vec::new(),
            Value::Object(object) => object,
            _ => return any_values_for(guide),
        };
        if depth > 2 * MAX_DEPTH {
            return vec![Value::Null];
        }
        let mut values = Vec::new();
        // The objects of each part that must hold (`$ref`, `allOf` members, the object's own
        // keywords): their first ones merged, as one part alone rarely fills what the others
        // require, then each part's other objects merged with the others' first ones.
        let mut parts: Vec<Vec<Map<String, Value>>> = Vec::new();
        let mut add_part = |values: &[Value]| {
            let objects: Vec<Map<String, Value>> = values
                .iter()
                .filter_map(Value::as_object)
                .take(MAX_PER_NODE)
                .cloned()
                .collect();
            if !objects.is_empty() {
                parts.push(objects);
            }
        };
        if let Some(Value::String(reference)) = object.get("$ref")
            && let Some(target) = self.resolve(at, reference)
        {
            let from_target = self.candidates(target, guide, depth + 1);
            add_part(&from_target);
            values.extend(from_target);
        }
        if let Some(value) = object.get("const") {
            values.push(value.clone());
        }
        if let Some(Value::Array(options)) = object.get("enum") {
            values.extend(options.iter().cloned());
        }
        for keyword in ["allOf", "anyOf", "oneOf"] {
            let mut from_members = Vec::new();
            for member in object
                .get(keyword)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let from_member = self.candidates(at.child(member), guide, depth + 1);
                if keyword == "allOf" {
                    add_part(&from_member);
                }
                from_members.push(from_member);
            }
            // Taken in turn, so that a cap on alternatives leaves every member some.
            values.extend(interleaved(from_members));
        }
        for keyword in ["then", "else"] {
            if let Some(branch) = object.get(keyword) {
                values.extend(self.candidates(at.child(branch), guide, depth + 1));
            }
        }
        let mut own = Vec::new();
        for kind in types_of(object) {
            own.extend(self.typed(at, object, kind, guide, depth));
        }
        add_part(&own);
        values.extend(own);
        if parts.len() > 1 {
            values.splice(0..0, merged_objects(&parts));
        }
        if !object.contains_key("type") {
            // Keywords of one type do not stop values of another: try them all.
            values.extend(any_values_for(guide));
        }
        values
    }

    fn typed(
        &self,
        at: At<'a>,
        object: &'a Map<String, Value>,
        kind: &str,
        guide: &Guide<'a>,
        depth: usize,
    ) -> Vec<Value> {
        match kind {
            "string" => strings(object, self.patterns, guide),
            "integer" => numbers(object, true, guide),
            "number" => numbers(object, false, guide),
            "boolean" => vec![json!(true), json!(false)],
            "null" => vec![Value::Null],
            "object" => self.objects(at, object, guide, depth),
            "array" => self.arrays(at, object, guide, depth),
            _ => any_values_for(guide),
        }
    }

    /// Object alternatives: a base filling the required properties, the base with every declared
    /// property, then variants changing one thing each. First among those, the names the other
    /// version mentions here and this one does not declare (a property added beside the others).
    /// At the document's root, undeclared names the other version mentions anywhere come next
    /// (adding and removing properties is the commonest change); below it, the declared
    /// properties' own alternatives do, as only a few are kept (those of properties the other
    /// version changed first). The fullest (every declared property at its largest fitting
    /// alternative, so nested and recursive objects are filled deep down) comes third below the
    /// root, last at the root, first where only one alternative is kept.
    fn objects(
        &self,
        at: At<'a>,
        object: &'a Map<String, Value>,
        guide: &Guide<'a>,
        depth: usize,
    ) -> Vec<Value> {
        let limit = self.limit_at(depth);
        let shape = ObjectShape::of(self, at, object, guide, depth);
        let mut values = vec![
            Value::Object(shape.base.clone()),
            Value::Object(shape.full()),
        ];
        let fullest = Value::Object(shape.fullest.clone());
        if depth > MAX_DEPTH {
            // Only one alternative is kept this deep: the fullest, when it fits, carries what
            // the levels above may need (recursive schemas change deep down).
            values.insert(0, fullest.clone());
        } else if depth > 0 {
            values.push(fullest.clone());
        }
        let order = if depth == 0 {
            [Section::Undeclared, Section::Missing, Section::Properties]
        } else {
            [Section::Properties, Section::Missing, Section::Undeclared]
        };
        let sections = std::iter::once(Section::Added)
            .chain(order)
            .chain([Section::Crowd, Section::Dependent]);
        for section in sections {
            let room = limit.saturating_sub(values.len() + 1);
            if room == 0 {
                break;
            }
            values.extend(match section {
                Section::Added => self.added_variants(&shape, guide, depth, room),
                Section::Properties => shape.property_variants(room),
                Section::Missing => shape.missing_required(),
                Section::Undeclared => self.undeclared_variants(&shape, room),
                Section::Crowd => self.crowd_variants(&shape, room),
                Section::Dependent => self.dependent_variants(&shape, guide, depth, room),
            });
        }
        for count in guide.numbers("maxProperties") {
            // One more property than the other version allows.
            values.push(Value::Object(shape.crowded_to(count as usize + 1)));
        }
        if depth == 0 {
            values.truncate(limit.saturating_sub(1));
            values.push(fullest);
        }
        values.push(Value::Object(shape.crowded()));
        values.truncate(limit);
        values
    }

    /// The base with one property the other version mentions here and this one does not
    /// declare (or one named `undeclared`, where the other version limits undeclared ones),
    /// holding what this one allows for it, aimed at what the other one asks of it.
    fn added_variants(
        &self,
        shape: &ObjectShape<'a>,
        guide: &Guide<'a>,
        depth: usize,
        limit: usize,
    ) -> Vec<Value> {
        let mut values = Vec::new();
        let mut names = guide.added_names();
        if guide.limits_undeclared() {
            names.push("undeclared");
        }
        // On the base, and on the base with every declared property (which tells apart the
        // members of a `oneOf` that the base alone may match all of).
        let full = shape.full();
        let bases = if full == shape.base {
            vec![&shape.base]
        } else {
            vec![&shape.base, &full]
        };
        for name in names {
            if shape.declares(name) {
                continue;
            }
            let guide = guide.property(self.schemas, self.patterns, name);
            let allowed = match shape.undeclared_schema(self, name) {
                Some(schema) => self.candidates(schema, &guide, depth + 1),
                None => any_values_for(&guide),
            };
            for value in allowed {
                for base in &bases {
                    if values.len() >= limit {
                        return values;
                    }
                    let mut variant = (*base).clone();
                    variant.insert(name.to_owned(), value.clone());
                    values.push(Value::Object(variant));
                }
            }
        }
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

    /// The base with each dependency's trigger and the properties it requires, then merged with
    /// alternatives of each `dependentSchemas` entry, its trigger present.
    fn dependent_variants(
        &self,
        shape: &ObjectShape<'a>,
        guide: &Guide<'a>,
        depth: usize,
        limit: usize,
    ) -> Vec<Value> {
        let mut values = Vec::new();
        for keyword in ["dependentRequired", "dependencies"] {
            let entries = shape.object.get(keyword).and_then(Value::as_object);
            for (name, listed) in entries.into_iter().flatten() {
                let Value::Array(listed) = listed else {
                    continue;
                };
                let mut variant = shape.base.clone();
                variant
                    .entry(name.clone())
                    .or_insert_with(|| shape.first_value(name));
                for listed in listed.iter().filter_map(Value::as_str) {
                    variant
                        .entry(listed.to_owned())
                        .or_insert_with(|| shape.first_value(listed));
                }
                values.push(Value::Object(variant));
            }
        }
        for keyword in ["dependentSchemas", "dependencies"] {
            let entries = shape.object.get(keyword).and_then(Value::as_object);
            for (name, schema) in entries
                .into_iter()
                .flatten()
                .filter(|(_, schema)| schema.is_object())
            {
                for candidate in self
                    .candidates(shape.at.child(schema), guide, depth + 1)
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

    fn arrays(
        &self,
        at: At<'a>,
        object: &'a Map<String, Value>,
        guide: &Guide<'a>,
        depth: usize,
    ) -> Vec<Value> {
        let tuple = match (object.get("prefixItems"), object.get("items")) {
            (Some(Value::Array(tuple)), _) | (_, Some(Value::Array(tuple))) => tuple.as_slice(),
            _ => &[],
        };
        let items = match object.get("items") {
            Some(Value::Array(_)) | None => None,
            Some(items) if object.contains_key("prefixItems") => Some(items),
            Some(items) => Some(items),
        };
        let item_guide = guide.item(self.schemas, None);
        let (item_values, n_fitting) = match items {
            Some(items) => self.candidates_split(at.child(items), &item_guide, depth + 1),
            None => {
                let values = any_values_for(&item_guide);
                let n_fitting = values.len();
                (values, n_fitting)
            }
        };
        // Items made to fill an array: those that fit the items' schema.
        let fitting = &item_values[..n_fitting.max(1).min(item_values.len())];
        let tuple_values: Vec<Vec<Value>> = tuple
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let guide = guide.item(self.schemas, Some(index));
                self.candidates(at.child(item), &guide, depth + 1)
            })
            .collect();
        let base: Vec<Value> = tuple_values
            .iter()
            .map(|values| values.first().cloned().unwrap_or(Value::Null))
            .collect();
        let mut values = Vec::new();
        let filler = item_values.first().cloned().unwrap_or(Value::Null);
        let unique = object.get("uniqueItems") == Some(&Value::Bool(true));
        // As many items as `minItems` asks, within a bound on the values every variant copies.
        let count = |keyword: &str| object.get(keyword).and_then(Value::as_u64);
        let most_padded = MAX_PADDED_VALUES / size(&filler).max(1);
        let minimum = (count("minItems").unwrap_or(0) as usize).min(most_padded);
        let padded = padded_to(&base, fitting, unique, minimum.max(base.len()));
        values.push(Value::Array(padded.clone()));
        // Just past each count the other version sets, where this one allows it: one long array
        // each, never copied into other variants.
        let allowed = |length: usize| {
            count("minItems").is_none_or(|low| length as u64 >= low)
                && count("maxItems").is_none_or(|high| length as u64 <= high)
                && length * size(&filler).max(1) <= MAX_LONG_VALUES
        };
        let lengths = guide_lengths(guide, "minItems", "maxItems");
        for length in lengths.into_iter().filter(|length| allowed(*length)) {
            let long = padded_to(&base, fitting, unique, length);
            if long.len() == length {
                values.push(Value::Array(long));
            }
        }
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
                .candidates(at.child(contains), &item_guide, depth + 1)
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
    Added,
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
    /// Each declared property with its alternatives, and whether the other version asks
    /// something else of it.
    declared: Vec<(&'a str, Vec<Value>, bool)>,
    /// Alternatives for an undeclared property.
    undeclared: Vec<Value>,
    /// The required properties, each with its first alternative.
    base: Map<String, Value>,
    /// Every declared property at its largest alternative that fits its schema, and the base.
    fullest: Map<String, Value>,
}

impl<'a> ObjectShape<'a> {
    fn of(
        generator: &Generator<'_, 'a>,
        at: At<'a>,
        object: &'a Map<String, Value>,
        guide: &Guide<'a>,
        depth: usize,
    ) -> Self {
        let required: Vec<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut fullest = Map::new();
        let declared: Vec<(&str, Vec<Value>, bool)> = object
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, schema)| {
                let schema = at.child(schema);
                let guide = guide.property(generator.schemas, generator.patterns, name);
                let changed = !guide.is_same_as(schema);
                let (values, n_fitting) = generator.candidates_split(schema, &guide, depth + 1);
                // Very large alternatives (an array past a count) are the last choice.
                let largest = values[..n_fitting]
                    .iter()
                    .rev()
                    .max_by_key(|value| Some(size(value)).filter(|size| *size <= LARGE))
                    .or(values.first());
                if let Some(largest) = largest {
                    fullest.insert(name.clone(), largest.clone());
                }
                (name.as_str(), values, changed)
            })
            .collect();
        let undeclared_schema = ["additionalProperties", "unevaluatedProperties"]
            .iter()
            .find_map(|keyword| object.get(*keyword).filter(|schema| schema.is_object()));
        let undeclared = match undeclared_schema {
            Some(schema) => generator.candidates(at.child(schema), &Guide::default(), depth + 1),
            None => any_values(),
        };
        let mut shape = ObjectShape {
            at,
            object,
            required,
            declared,
            undeclared,
            base: Map::new(),
            fullest,
        };
        for name in shape.required.clone() {
            let value = shape.first_value(name);
            shape
                .fullest
                .entry(name.to_owned())
                .or_insert_with(|| value.clone());
            shape.base.insert(name.to_owned(), value);
        }
        shape
    }

    fn declares(&self, name: &str) -> bool {
        self.declared.iter().any(|(declared, ..)| *declared == name)
    }

    /// What an undeclared property of that name may hold, when a schema says (the first
    /// matching `patternProperties` entry, else `additionalProperties`, else
    /// `unevaluatedProperties`); `None` when it may hold anything.
    fn undeclared_schema(&self, generator: &Generator<'_, 'a>, name: &str) -> Option<At<'a>> {
        let patterned = self
            .object
            .get("patternProperties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .find(|(pattern, _)| generator.patterns.matches(pattern, name) == Some(true));
        if let Some((_, schema)) = patterned {
            return Some(self.at.child(schema));
        }
        ["additionalProperties", "unevaluatedProperties"]
            .iter()
            .filter_map(|keyword| self.object.get(*keyword))
            .find(|schema| *schema != &Value::Bool(true))
            .map(|schema| self.at.child(schema))
    }

    /// The first alternative for a property, declared or not.
    fn first_value(&self, name: &str) -> Value {
        let declared = self
            .declared
            .iter()
            .find(|(declared, ..)| *declared == name);
        let first = match declared {
            Some((_, values, _)) => values.first(),
            None => self.undeclared.first(),
        };
        first.cloned().unwrap_or(Value::Null)
    }

    /// The base with every declared property.
    fn full(&self) -> Map<String, Value> {
        let mut full = self.base.clone();
        for (name, values, _) in &self.declared {
            if let Some(value) = values.first() {
                full.entry((*name).to_owned())
                    .or_insert_with(|| value.clone());
            }
        }
        full
    }

    /// The base with one declared property set to each of its alternatives: first every
    /// alternative of the properties the other version changed, then the others' in turn (each
    /// one's first alternative, then each one's second, ...) so that the limit leaves every
    /// property some.
    fn property_variants(&self, limit: usize) -> Vec<Value> {
        let mut values = Vec::new();
        let changed = self.declared.iter().filter(|(.., changed)| *changed);
        let pairs = changed.flat_map(|(name, alternatives, _)| {
            alternatives.iter().map(move |value| (*name, value))
        });
        let longest = self
            .declared
            .iter()
            .map(|(_, alternatives, _)| alternatives.len())
            .max()
            .unwrap_or(0);
        let unchanged = (0..longest).flat_map(|index| {
            self.declared
                .iter()
                .filter(|(.., changed)| !*changed)
                .filter_map(move |(name, alternatives, _)| {
                    alternatives.get(index).map(|value| (*name, value))
                })
        });
        for (name, value) in pairs.chain(unchanged) {
            if values.len() >= limit {
                break;
            }
            if self.base.get(name) == Some(value) {
                continue;
            }
            let mut variant = self.base.clone();
            variant.insert(name.to_owned(), value.clone());
            values.push(Value::Object(variant));
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
        self.crowded_to(self.base.len() + count as usize)
    }

    /// The base with undeclared properties up to `count` properties in all (at most 64 added).
    fn crowded_to(&self, count: usize) -> Map<String, Value> {
        let mut crowded = self.base.clone();
        let filler = self.undeclared.first().cloned().unwrap_or(Value::Null);
        let mut index = 0;
        while crowded.len() < count && index < 64 {
            crowded.insert(format!("undeclared{index}"), filler.clone());
            index += 1;
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

fn strings(object: &Map<String, Value>, patterns: &Patterns, guide: &Guide<'_>) -> Vec<Value> {
    let length = |keyword: &str| {
        object
            .get(keyword)
            .and_then(Value::as_u64)
            .map(|n| n.min(LONGEST as u64) as usize)
    };
    let mut values: Vec<Value> = Vec::new();
    let format = object.get("format").and_then(Value::as_str);
    if let Some(example) = format.and_then(format_example) {
        values.push(json!(example));
    }
    let minimum = length("minLength").unwrap_or(0);
    if let Some(pattern) = object.get("pattern").and_then(Value::as_str) {
        let spelled = patterns.strings(pattern, minimum, length("maxLength"));
        if spelled.is_empty() {
            // Not a pattern `regex-syntax` reads (look-around, back-references): its literal
            // characters may still match.
            let literal: String = pattern
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' ' | '@' | ':'))
                .collect();
            values.push(json!(literal));
        }
        values.extend(spelled.into_iter().map(Value::String));
    }
    values.push(json!("x".repeat(minimum.max(1))));
    // Just past each length the other version sets, keeping this one's pattern, format and
    // lengths, right after the ordinary string (so that few alternatives still hold them).
    let guided = guide_lengths(guide, "minLength", "maxLength")
        .into_iter()
        .filter(|target| {
            *target >= minimum && length("maxLength").is_none_or(|maximum| *target <= maximum)
        })
        .filter_map(
            |target| match (object.get("pattern").and_then(Value::as_str), format) {
                (Some(pattern), _) => patterns.strings(pattern, target, Some(target)).pop(),
                // A format without long spellings may be one the draft ignores.
                (None, Some(format)) => {
                    format_of_length(format, target).or_else(|| Some("x".repeat(target)))
                }
                (None, None) => Some("x".repeat(target)),
            },
        )
        .map(Value::String);
    let position = values.len().min(1);
    values.splice(position..position, guided);
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
        "a\nb",
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

fn numbers(object: &Map<String, Value>, integer: bool, guide: &Guide<'_>) -> Vec<Value> {
    let mut values: Vec<f64> = vec![ordinary_number(object, integer)];
    values.extend(guide_numbers(guide));
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

/// How many JSON values a value holds, itself included (to a cap).
fn size(value: &Value) -> usize {
    let mut count = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        count += 1;
        if count > 10_000 {
            break;
        }
        match value {
            Value::Object(object) => stack.extend(object.values()),
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    count
}

// Local checks: does a value surely break its own node's schema? Cheap and conservative (what
// is not checked here fits), they only order the alternatives; the validators decide.

/// Steps one local check may take; past them the rest is taken as fitting.
const FIT_STEPS: usize = 500;
/// How deep a local check follows subschemas and `$ref`s.
const FIT_DEPTH: usize = 6;
/// The most patterns compiled in one search.
const MAX_PATTERNS: usize = 256;

/// The `pattern`s (and `patternProperties` names) of one search, compiled once each (`None` for
/// one the `regex` crate does not take: it is then not checked locally), and the strings spelled
/// from them. Both are keyed by where the pattern lives in the schemas, which outlive the search.
#[derive(Default)]
struct Patterns {
    compiled: RefCell<Vec<(Place, Option<regex::Regex>)>>,
    spelled: RefCell<Vec<Spelled>>,
    /// A validator of each `format` met so far, by name and draft (`None` when it does not
    /// build): a string spelled from a pattern may still not be a date.
    formats: RefCell<Vec<(String, jsonschema::Draft, Option<jsonschema::Validator>)>>,
}

/// Where a string of the schemas lives: its address and length.
type Place = (usize, usize);

/// The strings spelled from a pattern for a minimum and maximum length.
type Spelled = (Place, usize, Option<usize>, Vec<String>);

fn place(text: &str) -> Place {
    (text.as_ptr() as usize, text.len())
}

impl Patterns {
    /// Whether `text` matches `pattern`; `None` when that is not known here.
    fn matches(&self, pattern: &str, text: &str) -> Option<bool> {
        let key = place(pattern);
        let mut compiled = self.compiled.borrow_mut();
        let index = match compiled.iter().position(|(place, _)| *place == key) {
            Some(index) => index,
            None if compiled.len() >= MAX_PATTERNS => return None,
            None => {
                let regex = regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20)
                    .build()
                    .ok();
                compiled.push((key, regex));
                compiled.len() - 1
            }
        };
        compiled[index].1.as_ref().map(|regex| regex.is_match(text))
    }

    /// Whether `text` is a `format` as the validator checks it under `draft` (unknown formats
    /// are anything); `None` when that is not known here.
    fn format_matches(&self, format: &str, draft: jsonschema::Draft, text: &str) -> Option<bool> {
        let mut formats = self.formats.borrow_mut();
        let index = match formats
            .iter()
            .position(|(name, known, _)| name == format && *known == draft)
        {
            Some(index) => index,
            None if formats.len() >= MAX_PATTERNS => return None,
            None => {
                let schema = json!({ "format": format });
                let validator = jsonschema::options()
                    .with_draft(draft)
                    .should_validate_formats(true)
                    .should_ignore_unknown_formats(true)
                    .build(&schema)
                    .ok();
                formats.push((format.to_owned(), draft, validator));
                formats.len() - 1
            }
        };
        formats[index]
            .2
            .as_ref()
            .map(|validator| validator.is_valid(&Value::String(text.to_owned())))
    }

    /// [`pattern_strings`], spelled once per pattern and lengths.
    fn strings(&self, pattern: &str, minimum: usize, maximum: Option<usize>) -> Vec<String> {
        let key = place(pattern);
        let mut spelled = self.spelled.borrow_mut();
        let found = spelled
            .iter()
            .find(|(place, low, high, _)| (*place, *low, *high) == (key, minimum, maximum));
        if let Some((_, _, _, strings)) = found {
            return strings.clone();
        }
        let strings = pattern_strings(pattern, minimum, maximum);
        if spelled.len() < MAX_PATTERNS {
            spelled.push((key, minimum, maximum, strings.clone()));
        }
        strings
    }
}

/// Hashes the addresses that key the `$ref` cache.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_usize(&mut self, address: usize) {
        self.0 = (self.0 ^ address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type AddressMap<V> = HashMap<usize, V, std::hash::BuildHasherDefault<AddressHasher>>;

impl<'a> Generator<'_, 'a> {
    /// The target of `at` when it is a `$ref` and nothing else that constrains documents (up to
    /// draft-07, what is beside a `$ref` is ignored).
    fn bare_reference(&self, at: At<'a>) -> Option<At<'a>> {
        let object = at.value.as_object()?;
        let Some(Value::String(reference)) = object.get("$ref") else {
            return None;
        };
        let bare = object
            .keys()
            .all(|keyword| ANNOTATIONS.contains(&keyword.as_str()))
            || model::ignores_ref_siblings(at.doc.draft);
        if bare {
            self.resolve(at, reference)
        } else {
            None
        }
    }

    /// The target of a `$ref` found in `at` (resolved once per `$ref` of the schemas).
    fn resolve(&self, at: At<'a>, reference: &'a str) -> Option<At<'a>> {
        let key = reference.as_ptr() as usize;
        if let Some(target) = self.references.borrow().get(&key) {
            return *target;
        }
        let target = model::resolve(self.schemas, at, reference).ok();
        self.references.borrow_mut().insert(key, target);
        target
    }

    /// False when `value` surely breaks the schema at `at` (type, enum, const, lengths,
    /// `pattern`, bounds, required and declared properties, items, `allOf`/`anyOf`/`oneOf`,
    /// `$ref`); true otherwise, also when the check ran out of steps.
    fn fits(&self, at: At<'a>, value: &Value) -> bool {
        let mut steps = FIT_STEPS;
        self.fits_within(at, value, 0, &mut steps)
    }

    fn fits_within(&self, at: At<'a>, value: &Value, depth: usize, steps: &mut usize) -> bool {
        if depth > FIT_DEPTH || *steps == 0 {
            return true;
        }
        *steps -= 1;
        let object = match at.value {
            Value::Bool(accepts) => return *accepts,
            Value::Object(object) => object,
            _ => return true,
        };
        if let Some(Value::String(reference)) = object.get("$ref")
            && let Some(target) = self.resolve(at, reference)
        {
            let fits = self.fits_within(target, value, depth + 1, steps);
            // Up to draft-07, the keywords beside `$ref` are ignored.
            if !fits || model::ignores_ref_siblings(at.doc.draft) {
                return fits;
            }
        }
        // One pass over the keywords (a schema has few; the checks below are many).
        let cx = Fit { at, object, depth };
        object
            .iter()
            .all(|(keyword, schema)| self.keyword_fits(&cx, keyword, schema, value, steps))
    }

    /// Whether one keyword of a schema object surely rejects `value` (false) or not.
    fn keyword_fits(
        &self,
        cx: &Fit<'_, 'a>,
        keyword: &str,
        schema: &'a Value,
        value: &Value,
        steps: &mut usize,
    ) -> bool {
        let Fit { at, object, depth } = *cx;
        let mut sub = |schema: &'a Value, value: &Value| {
            self.fits_within(at.child(schema), value, depth + 1, steps)
        };
        let count = |bound: &Value, actual: usize, at_least: bool| {
            bound.as_u64().is_none_or(|bound| {
                let actual = actual as u64;
                if at_least {
                    actual >= bound
                } else {
                    actual <= bound
                }
            })
        };
        match (keyword, value) {
            ("type", _) => type_fits(schema, value),
            ("enum", _) => schema
                .as_array()
                .is_none_or(|options| options.iter().any(|option| json_equal(option, value))),
            ("const", _) => json_equal(schema, value),
            ("allOf", _) => members(schema).all(|member| sub(member, value)),
            // `oneOf` as `anyOf`: this check does not see everything, so it cannot count matches.
            ("anyOf" | "oneOf", _) => {
                let mut members = members(schema).peekable();
                members.peek().is_none() || members.any(|member| sub(member, value))
            }
            ("minLength", Value::String(text)) => count(schema, text.chars().count(), true),
            ("maxLength", Value::String(text)) => count(schema, text.chars().count(), false),
            ("pattern", Value::String(text)) => schema
                .as_str()
                .and_then(|pattern| self.patterns.matches(pattern, text))
                .unwrap_or(true),
            ("format", Value::String(text)) => schema
                .as_str()
                .and_then(|format| self.patterns.format_matches(format, at.doc.draft, text))
                .unwrap_or(true),
            (
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf",
                Value::Number(number),
            ) => number
                .as_f64()
                .is_none_or(|number| number_fits(object, keyword, schema, number)),
            ("minProperties", Value::Object(map)) => count(schema, map.len(), true),
            ("maxProperties", Value::Object(map)) => count(schema, map.len(), false),
            ("required", Value::Object(map)) => names(schema).all(|name| map.contains_key(name)),
            ("dependentRequired" | "dependencies" | "dependentSchemas", Value::Object(map)) => {
                let entries = schema.as_object().into_iter().flatten();
                for (_, dependency) in entries.filter(|(name, _)| map.contains_key(*name)) {
                    let fits = match dependency {
                        Value::Array(_) => names(dependency).all(|name| map.contains_key(name)),
                        _ => sub(dependency, value),
                    };
                    if !fits {
                        return false;
                    }
                }
                true
            }
            ("properties", Value::Object(map)) => {
                let declared = schema.as_object();
                map.iter().all(|(name, value)| {
                    declared
                        .and_then(|declared| declared.get(name))
                        .is_none_or(|schema| sub(schema, value))
                })
            }
            ("patternProperties", Value::Object(map)) => {
                let patterned = schema.as_object().into_iter().flatten();
                for (pattern, schema) in patterned {
                    for (name, value) in map {
                        if self.patterns.matches(pattern, name) == Some(true) && !sub(schema, value)
                        {
                            return false;
                        }
                    }
                }
                true
            }
            ("additionalProperties", Value::Object(map)) => {
                let declared = object.get("properties").and_then(Value::as_object);
                let patterned = object.get("patternProperties").and_then(Value::as_object);
                map.iter().all(|(name, value)| {
                    if declared.is_some_and(|declared| declared.contains_key(name)) {
                        return true;
                    }
                    // Only where every pattern is known not to match.
                    let unmatched = patterned
                        .into_iter()
                        .flatten()
                        .all(|(pattern, _)| self.patterns.matches(pattern, name) == Some(false));
                    !unmatched || sub(schema, value)
                })
            }
            ("propertyNames", Value::Object(map)) => map
                .keys()
                .all(|name| sub(schema, &Value::String(name.clone()))),
            ("minItems", Value::Array(items)) => count(schema, items.len(), true),
            ("maxItems", Value::Array(items)) => count(schema, items.len(), false),
            ("uniqueItems", Value::Array(items)) => {
                schema != &Value::Bool(true)
                    || items.len() > 64
                    || items.iter().enumerate().all(|(index, item)| {
                        !items[..index].iter().any(|before| json_equal(before, item))
                    })
            }
            ("prefixItems", Value::Array(items)) => {
                let tuple = schema.as_array().into_iter().flatten();
                tuple.zip(items).all(|(schema, item)| sub(schema, item))
            }
            ("items", Value::Array(items)) => match schema {
                Value::Array(tuple) => tuple
                    .iter()
                    .zip(items)
                    .all(|(schema, item)| sub(schema, item)),
                _ => {
                    let skip = object
                        .get("prefixItems")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    items.iter().skip(skip).all(|item| sub(schema, item))
                }
            },
            ("additionalItems", Value::Array(items)) => match object.get("items") {
                Some(Value::Array(tuple)) => {
                    items.iter().skip(tuple.len()).all(|item| sub(schema, item))
                }
                _ => true,
            },
            ("contains", Value::Array(items)) => {
                object.get("minContains").and_then(Value::as_u64) == Some(0)
                    || items.iter().any(|item| sub(schema, item))
            }
            _ => true,
        }
    }
}

/// What the keywords of one schema object are checked in.
#[derive(Clone, Copy)]
struct Fit<'m, 'a> {
    at: At<'a>,
    object: &'m Map<String, Value>,
    depth: usize,
}

/// The members of `allOf`/`anyOf`/`oneOf`.
fn members(schema: &Value) -> std::slice::Iter<'_, Value> {
    schema
        .as_array()
        .map_or([].iter(), |members| members.iter())
}

/// The names in an array of names (`required`, a dependency).
fn names(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Whether a value has one of the types `type` names.
fn type_fits(declared: &Value, value: &Value) -> bool {
    let one = |name: &str| match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_f64().is_some_and(|number| number.fract() == 0.0),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    };
    match declared {
        Value::String(name) => one(name),
        Value::Array(names) => names.iter().filter_map(Value::as_str).any(one),
        _ => true,
    }
}

/// Whether a number keeps one bound (draft-04's boolean `exclusiveMinimum`/`exclusiveMaximum`
/// make `minimum`/`maximum` strict).
fn number_fits(object: &Map<String, Value>, keyword: &str, bound: &Value, number: f64) -> bool {
    let Some(bound) = bound.as_f64() else {
        return true;
    };
    let strict = |keyword: &str| object.get(keyword) == Some(&Value::Bool(true));
    match keyword {
        "minimum" if strict("exclusiveMinimum") => number > bound,
        "minimum" => number >= bound,
        "maximum" if strict("exclusiveMaximum") => number < bound,
        "maximum" => number <= bound,
        "exclusiveMinimum" => number > bound,
        "exclusiveMaximum" => number < bound,
        "multipleOf" if bound > 0.0 => {
            let quotient = number / bound;
            !quotient.is_finite() || (quotient - quotient.round()).abs() < 1e-9
        }
        _ => true,
    }
}

/// JSON Schema equality: numbers by value (`1` equals `1.0`), the rest structurally.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            left == right || matches!((left.as_f64(), right.as_f64()), (Some(l), Some(r)) if l == r)
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(l, r)| json_equal(l, r))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .all(|(name, l)| right.get(name).is_some_and(|r| json_equal(l, r)))
        }
        _ => left == right,
    }
}

// Strings that match a `pattern`, spelled from its syntax tree (`regex-syntax`): literals as
// they are, a class as one of its members, a repetition its minimum number of times (more to
// reach a length), an alternation its first branch that can be spelled, assertions as nothing.

/// The longest string spelled from a pattern.
const MAX_SPELLED: usize = 2 * LONGEST;
/// How long the "long" spelling of an unbounded pattern is.
const LONG_SPELLING: usize = 16;

/// A few strings matching `pattern` with a length in `minimum..=maximum`, the most ordinary
/// first: at least one character, then the longest allowed (or a long one), each with two
/// choices of class members and branches. Empty when the pattern cannot be read or spelled.
fn pattern_strings(pattern: &str, minimum: usize, maximum: Option<usize>) -> Vec<String> {
    let Some(hir) = parse_pattern(pattern) else {
        return Vec::new();
    };
    // A match with nothing to look at after it stays one when characters follow it: a string
    // too short for a length can then be padded (`[A-Z]{3}` → `AAAx`).
    let paddable = hir
        .properties()
        .look_set()
        .remove(regex_syntax::hir::Look::Start)
        .is_empty();
    let mut spelled: Vec<String> = Vec::new();
    for choice in [Choice::First, Choice::Ones, Choice::Last] {
        let Some(shortest) = spell(&hir, choice, 0) else {
            continue;
        };
        let length = shortest.chars().count();
        let targets = [
            minimum.max(1),
            maximum.unwrap_or(LONG_SPELLING).min(MAX_SPELLED),
        ];
        for target in targets {
            let text = if target > length {
                spell(&hir, choice, target - length)
            } else {
                Some(shortest.clone())
            };
            let Some(mut text) = text else { continue };
            let short_by = target.saturating_sub(text.chars().count());
            if paddable && short_by > 0 {
                text.push_str(&"x".repeat(short_by));
            }
            let length = text.chars().count();
            let fits = length >= minimum && maximum.is_none_or(|maximum| length <= maximum);
            if fits && !spelled.contains(&text) {
                spelled.push(text);
            }
        }
    }
    spelled
}

/// The syntax tree of a pattern, read with Unicode classes when this build has them.
fn parse_pattern(pattern: &str) -> Option<Hir> {
    if pattern.len() > 4_096 {
        return None;
    }
    let parse = |unicode: bool| {
        regex_syntax::ParserBuilder::new()
            .nest_limit(64)
            .unicode(unicode)
            .utf8(unicode)
            .build()
            .parse(pattern)
            .ok()
    };
    parse(true).or_else(|| parse(false))
}

/// Which member of a class (and branch of an alternation) a spelling takes.
#[derive(Clone, Copy, PartialEq)]
enum Choice {
    /// The most ordinary: a letter or digit where the class has one, the first branch.
    First,
    /// As `First`, with `1` for digits: patterns of dates and times then spell valid ones
    /// (`1111-11-11`, where `0000-00-00` is no date).
    Ones,
    /// Another: the class's last printable ASCII member, the last branch that can be spelled.
    Last,
}

/// A string `hir` matches, about `extra` characters longer than its shortest when repetitions
/// allow it; `None` when the pattern has no such string (an empty class) or it would be too long.
fn spell(hir: &Hir, choice: Choice, extra: usize) -> Option<String> {
    let mut text = String::new();
    let mut extra = extra;
    spell_into(hir, choice, &mut text, &mut extra)?;
    Some(text)
}

fn spell_into(hir: &Hir, choice: Choice, text: &mut String, extra: &mut usize) -> Option<()> {
    if text.len() > MAX_SPELLED {
        return None;
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(()),
        HirKind::Literal(literal) => {
            text.push_str(std::str::from_utf8(&literal.0).ok()?);
            Some(())
        }
        HirKind::Class(class) => {
            text.push(class_member(class, choice)?);
            Some(())
        }
        HirKind::Capture(capture) => spell_into(&capture.sub, choice, text, extra),
        HirKind::Concat(parts) => parts
            .iter()
            .try_for_each(|part| spell_into(part, choice, text, extra)),
        HirKind::Alternation(branches) => {
            let (mark, saved) = (text.len(), *extra);
            let mut spell_branch = |branch: &Hir| {
                text.truncate(mark);
                *extra = saved;
                spell_into(branch, choice, text, extra)
            };
            let found = match choice {
                Choice::First | Choice::Ones => branches.iter().find_map(&mut spell_branch),
                Choice::Last => branches.iter().rev().find_map(spell_branch),
            };
            if found.is_none() {
                text.truncate(mark);
            }
            found
        }
        HirKind::Repetition(repetition) => {
            let mut count: u32 = 0;
            while count < repetition.min {
                let mark = text.len();
                spell_into(&repetition.sub, choice, text, extra)?;
                count += 1;
                if text.len() == mark {
                    // Spelled as nothing: so are the other copies.
                    return Some(());
                }
            }
            // More copies while characters are wanted and the repetition allows them.
            while *extra > 0 && repetition.max.is_none_or(|maximum| count < maximum) {
                let mark = text.len();
                let mut none = 0;
                if spell_into(&repetition.sub, choice, text, &mut none).is_none() {
                    text.truncate(mark);
                    break;
                }
                let added = text[mark..].chars().count();
                if added == 0 || added > *extra {
                    text.truncate(mark);
                    break;
                }
                *extra -= added;
                count += 1;
            }
            Some(())
        }
    }
}

/// A member of a class: for `First` a common letter or digit when the class has one, for `Ones`
/// the same with `1` first, for `Last` its last printable ASCII member; else the first printable
/// member, else any.
fn class_member(class: &Class, choice: Choice) -> Option<char> {
    const PREFERRED: [char; 8] = ['a', '0', 'A', 'x', '-', '_', ' ', '.'];
    const PREFERRED_ONES: [char; 8] = ['1', 'a', 'A', 'x', '-', '_', ' ', '.'];
    let ranges: Vec<(char, char)> = match class {
        Class::Unicode(class) => class
            .ranges()
            .iter()
            .map(|range| (range.start(), range.end()))
            .collect(),
        // Bytes: only ASCII ones make a string on their own.
        Class::Bytes(class) => class
            .ranges()
            .iter()
            .filter(|range| range.start() < 0x80)
            .map(|range| (char::from(range.start()), char::from(range.end().min(0x7f))))
            .collect(),
    };
    let has = |member: char| {
        ranges
            .iter()
            .any(|(start, end)| (*start..=*end).contains(&member))
    };
    // The ranges are sorted: the first (last) printable ASCII member is in the first (last)
    // range that reaches into ' '..='~'.
    let printable = || {
        ranges.iter().filter_map(|(start, end)| {
            let (low, high) = ((*start).max(' '), (*end).min('~'));
            (low <= high).then_some((low, high))
        })
    };
    let chosen = match choice {
        Choice::First | Choice::Ones => {
            let preferred = if choice == Choice::First {
                PREFERRED
            } else {
                PREFERRED_ONES
            };
            preferred
                .into_iter()
                .find(|member| has(*member))
                .or_else(|| printable().next().map(|(low, _)| low))
        }
        Choice::Last => printable().next_back().map(|(_, high)| high),
    };
    chosen
        .or_else(|| {
            // Past ASCII: the first member that is not a control character.
            ranges.iter().find_map(|(start, end)| {
                let member = (*start).max('\u{a0}');
                (member <= *end).then_some(member)
            })
        })
        .or_else(|| ranges.first().map(|(start, _)| *start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).is_ok_and(|regex| regex.is_match(text))
    }

    #[test]
    fn spelled_strings_match_their_pattern_and_lengths() {
        let cases: [(&str, usize, Option<usize>); 10] = [
            ("^[A-Z]{3}$", 0, None),
            ("^o-[0-9]+$", 0, Some(40)),
            ("^[A-Z0-9-]+$", 1, Some(40)),
            ("^[A-Z]{2}-\\d+$", 8, Some(12)),
            (
                "^(?:[a-z0-9]+\\.)*[a-z0-9]+@example\\.(?:com|org)$",
                0,
                Some(64),
            ),
            ("^[^\\s]+$", 0, Some(4)),
            ("colou?r", 0, None),
            ("^(?i)abc$", 0, None),
            ("^\\p{L}+$", 2, None),
            ("^[a-z]*$", 5, Some(5)),
        ];
        for (pattern, minimum, maximum) in cases {
            let spelled = pattern_strings(pattern, minimum, maximum);
            assert!(!spelled.is_empty(), "{pattern}");
            for text in spelled {
                let length = text.chars().count();
                assert!(matches(pattern, &text), "{pattern}: {text:?}");
                assert!(length >= minimum && maximum.is_none_or(|maximum| length <= maximum));
            }
        }
        assert_eq!(pattern_strings("^[A-Z]{3}$", 0, None)[0], "AAA");
        assert_eq!(pattern_strings("^o-[0-9]+$", 0, Some(40))[1].len(), 40);
        assert!(pattern_strings("^(EUR|USD)$", 0, None).contains(&"USD".to_owned()));
    }

    #[test]
    fn unspellable_patterns_give_nothing_rather_than_a_wrong_string() {
        assert!(pattern_strings("^[a-z]{3}$", 4, None).is_empty());
        assert!(
            pattern_strings("(?=a)b", 0, None).is_empty(),
            "look-ahead: not read"
        );
        assert!(
            pattern_strings("^(?:a{1000}){1000}$", 0, None).is_empty(),
            "too long"
        );
        assert_eq!(
            pattern_strings("^[a-z]*$", 0, None)[0],
            "a",
            "one character at least"
        );
        assert!(pattern_strings("[", 0, None).is_empty());
    }
}
