//! Object schemas, after Confluent's `ObjectSchemaDiff`: required, properties against the content
//! model (open, closed, partially open), dependencies, `additionalProperties`,
//! `unevaluatedProperties`, property counts, and (ours) `propertyNames`.
//!
//! A content model is *open* when any undeclared property may hold anything (no
//! `patternProperties`, `additionalProperties` absent or `true`, `unevaluatedProperties` absent or
//! `true`), *closed* when none may, and *partially open* when a schema says what they may hold.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::diff::{self, Cx, Found};
use super::kind::ChangeKind;
use super::model::{At, Member, Part};

/// Compares two object views.
pub(crate) fn compare<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: At<'a>,
    update: At<'a>,
) {
    let (old, new) = (Model::of(original), Model::of(update));
    compare_required(cx, out, &old, &new);
    compare_properties(cx, out, &old, &new);
    compare_dependencies(cx, out, &old, &new);
    compare_rest(
        cx,
        out,
        "additionalProperties",
        old.additional,
        new.additional,
        ADDITIONAL,
    );
    compare_rest(
        cx,
        out,
        "unevaluatedProperties",
        old.unevaluated,
        new.unevaluated,
        UNEVALUATED,
    );
    compare_counts(cx, out, original, update);
    cx.within("propertyNames", |cx| {
        diff::compare_optional(cx, out, old.property_names, new.property_names);
    });
}

/// What an `additionalProperties`-like keyword allows for undeclared properties.
#[derive(Clone, Copy)]
pub(crate) enum Rest<'a> {
    /// Absent or `true`.
    Anything,
    /// `false`.
    Nothing,
    /// A schema that constrains.
    Schema(At<'a>),
}

impl<'a> Rest<'a> {
    /// Reads the keyword; `{}` is read as `true` (ours: everit keeps it as a schema, which makes
    /// Confluent call `additionalProperties: {}` a narrowing, though it allows everything).
    pub(crate) fn of(at: At<'a>, keyword: &str) -> Rest<'a> {
        match at.get(keyword) {
            None | Some(Value::Bool(true)) => Rest::Anything,
            Some(Value::Bool(false)) => Rest::Nothing,
            Some(schema) if is_empty_schema(schema) => Rest::Anything,
            Some(schema) => Rest::Schema(at.child(schema)),
        }
    }

    fn permits(self) -> bool {
        !matches!(self, Rest::Nothing)
    }

    pub(crate) fn schema(self) -> Option<At<'a>> {
        match self {
            Rest::Schema(at) => Some(at),
            _ => None,
        }
    }
}

/// The kinds for one `additionalProperties`-like keyword: (added, removed, extended, narrowed).
pub(crate) type RestKinds = (ChangeKind, ChangeKind, ChangeKind, ChangeKind);

const ADDITIONAL: RestKinds = (
    ChangeKind::AdditionalPropertiesAdded,
    ChangeKind::AdditionalPropertiesRemoved,
    ChangeKind::AdditionalPropertiesExtended,
    ChangeKind::AdditionalPropertiesNarrowed,
);
const UNEVALUATED: RestKinds = (
    ChangeKind::UnevaluatedPropertiesAdded,
    ChangeKind::UnevaluatedPropertiesRemoved,
    ChangeKind::UnevaluatedPropertiesExtended,
    ChangeKind::UnevaluatedPropertiesNarrowed,
);

/// Confluent's `compareAdditionalProperties`, for any keyword of that form.
pub(crate) fn compare_rest<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    keyword: &'static str,
    original: Rest<'a>,
    update: Rest<'a>,
    (added, removed, extended, narrowed): RestKinds,
) {
    cx.within(keyword, |cx| {
        if original.permits() != update.permits() {
            cx.add(out, if update.permits() { added } else { removed });
            return;
        }
        match (original.schema(), update.schema()) {
            (None, Some(_)) => cx.add(out, narrowed),
            (Some(_), None) => cx.add(out, extended),
            (Some(original), Some(update)) => diff::compare(cx, out, original, update),
            (None, None) => {}
        }
    });
}

/// The object keywords of one schema.
struct Model<'a> {
    at: At<'a>,
    properties: Option<&'a Map<String, Value>>,
    required: BTreeSet<&'a str>,
    patterns: Vec<(&'a str, &'a Value)>,
    additional: Rest<'a>,
    unevaluated: Rest<'a>,
    property_names: Option<At<'a>>,
}

impl<'a> Model<'a> {
    fn of(at: At<'a>) -> Model<'a> {
        let required = at
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let patterns = at
            .get("patternProperties")
            .and_then(Value::as_object)
            .map(|patterns| {
                patterns
                    .iter()
                    .map(|(key, value)| (key.as_str(), value))
                    .collect()
            })
            .unwrap_or_default();
        Model {
            at,
            properties: at.get("properties").and_then(Value::as_object),
            required,
            patterns,
            additional: Rest::of(at, "additionalProperties"),
            unevaluated: Rest::of(at, "unevaluatedProperties"),
            property_names: at
                .get("propertyNames")
                .filter(|names| !is_empty_schema(names))
                .map(|names| at.child(names)),
        }
    }

    fn property(&self, name: &str) -> Option<At<'a>> {
        self.properties
            .and_then(|properties| properties.get(name))
            .map(|schema| self.at.child(schema))
    }

    fn names(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.properties
            .into_iter()
            .flat_map(|properties| properties.keys().map(String::as_str))
    }

    /// Open: an undeclared property may be anything.
    fn is_open(&self) -> bool {
        self.patterns.is_empty()
            && matches!(self.additional, Rest::Anything)
            && matches!(self.unevaluated, Rest::Anything)
    }

    /// What an undeclared property of that name may hold, if a schema says so.
    fn partial_schema(&self, cx: &mut Cx<'a, '_>, name: &str) -> Option<At<'a>> {
        for (pattern, schema) in &self.patterns {
            if cx.pattern_matches(pattern, name) {
                return Some(self.at.child(schema));
            }
        }
        if let Some(schema) = self.additional.schema() {
            return Some(schema);
        }
        match (self.additional, self.unevaluated) {
            (Rest::Anything, Rest::Schema(schema)) if !is_empty_schema(schema.value) => {
                Some(schema)
            }
            _ => None,
        }
    }

    fn has_default(&self, name: &str) -> bool {
        self.property(name)
            .is_some_and(|schema| schema.get("default").is_some())
    }
}

fn is_empty_schema(value: &Value) -> bool {
    match value {
        Value::Bool(true) => true,
        Value::Object(object) => object.is_empty(),
        _ => false,
    }
}

fn compare_required(cx: &mut Cx<'_, '_>, out: &mut Vec<Found>, old: &Model<'_>, new: &Model<'_>) {
    cx.within("required", |cx| {
        for name in old.names().filter(|name| new.property(name).is_some()) {
            let kind = match (old.required.contains(name), new.required.contains(name)) {
                (true, false) => ChangeKind::RequiredAttributeRemoved,
                (false, true) if new.has_default(name) => {
                    ChangeKind::RequiredAttributeWithDefaultAdded
                }
                (false, true) => ChangeKind::RequiredAttributeAdded,
                _ => continue,
            };
            cx.add_at(out, name, kind);
        }
    });
}

fn compare_properties<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    old: &Model<'a>,
    new: &Model<'a>,
) {
    let names: BTreeSet<&str> = old.names().chain(new.names()).collect();
    cx.within("properties", |cx| {
        for name in names {
            cx.within(name, |cx| match (old.property(name), new.property(name)) {
                (Some(original), Some(update)) => diff::compare(cx, out, original, update),
                (Some(original), None) => property_removed(cx, out, original, new, name),
                (None, Some(update)) => property_added(cx, out, update, old, new, name),
                (None, None) => {}
            });
            if cx.stopped() {
                return;
            }
        }
    });
}

fn property_removed<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: At<'a>,
    new: &Model<'a>,
    name: &str,
) {
    use ChangeKind as K;
    if new.is_open() {
        cx.add(out, K::PropertyRemovedFromOpenContentModel);
    } else if let Some(partial) = new.partial_schema(cx, name) {
        let covered = covered(cx, out, original, partial);
        cx.add(
            out,
            if covered {
                K::PropertyRemovedIsCoveredByPartiallyOpenContentModel
            } else {
                K::PropertyRemovedNotCoveredByPartiallyOpenContentModel
            },
        );
    } else if original.value == &Value::Bool(false) {
        cx.add(out, K::PropertyWithFalseRemovedFromClosedContentModel);
    } else {
        cx.add(out, K::PropertyRemovedFromClosedContentModel);
    }
}

fn property_added<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    update: At<'a>,
    old: &Model<'a>,
    new: &Model<'a>,
    name: &str,
) {
    use ChangeKind as K;
    let required = new.required.contains(name);
    let has_default = new.has_default(name);
    if old.is_open() {
        // Confluent 8.x splits its former PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL by requiredness.
        let kind = match (required, has_default) {
            (true, true) => K::RequiredPropertyWithDefaultAddedToOpenContentModel,
            (true, false) => K::RequiredPropertyAddedToOpenContentModel,
            (false, _) if is_empty_schema(update.value) => {
                K::PropertyWithEmptySchemaAddedToOpenContentModel
            }
            (false, _) => K::OptionalPropertyAddedToOpenContentModel,
        };
        cx.add(out, kind);
        return;
    }
    if let Some(partial) = old.partial_schema(cx, name) {
        let covered = covered(cx, out, partial, update);
        cx.add(
            out,
            if covered {
                K::PropertyAddedIsCoveredByPartiallyOpenContentModel
            } else {
                K::PropertyAddedNotCoveredByPartiallyOpenContentModel
            },
        );
    }
    cx.add(
        out,
        match (required, has_default) {
            (true, true) => K::RequiredPropertyWithDefaultAddedToUnopenContentModel,
            (true, false) => K::RequiredPropertyAddedToUnopenContentModel,
            (false, _) => K::OptionalPropertyAddedToUnopenContentModel,
        },
    );
}

/// Compares in a sub-context, keeps its differences, and says whether they were compatible.
fn covered<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: At<'a>,
    update: At<'a>,
) -> bool {
    let member = |at| Member {
        at,
        part: Part::Whole,
    };
    let found = diff::trial(cx, member(original), member(update));
    let compatible = cx.all_compatible(&found);
    out.extend(found);
    compatible
}

fn compare_dependencies<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    old: &Model<'a>,
    new: &Model<'a>,
) {
    use ChangeKind as K;
    let (old_arrays, new_arrays) = (dependency_arrays(old.at), dependency_arrays(new.at));
    let (old_schemas, new_schemas) = (dependency_schemas(old.at), dependency_schemas(new.at));
    cx.within("dependencies", |cx| {
        let names: BTreeSet<&str> = old_arrays
            .iter()
            .chain(&new_arrays)
            .map(|(name, _)| *name)
            .collect();
        for name in names {
            let find = |arrays: &[(&'a str, BTreeSet<&'a str>)]| -> Option<BTreeSet<&'a str>> {
                arrays
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, set)| set.clone())
            };
            let kind = match (find(&old_arrays), find(&new_arrays)) {
                (_, None) => K::DependencyArrayRemoved,
                (None, Some(_)) => K::DependencyArrayAdded,
                (Some(old), Some(new)) if old == new => continue,
                (Some(old), Some(new)) if new.is_superset(&old) => K::DependencyArrayExtended,
                (Some(old), Some(new)) if old.is_superset(&new) => K::DependencyArrayNarrowed,
                _ => K::DependencyArrayChanged,
            };
            cx.add_at(out, name, kind);
        }
        let names: BTreeSet<&str> = old_schemas
            .iter()
            .chain(&new_schemas)
            .map(|(name, _)| *name)
            .collect();
        for name in names {
            let find = |schemas: &[(&str, At<'a>)]| {
                schemas
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, at)| *at)
            };
            cx.within(name, |cx| match (find(&old_schemas), find(&new_schemas)) {
                (_, None) => cx.add(out, K::DependencySchemaRemoved),
                (None, Some(_)) => cx.add(out, K::DependencySchemaAdded),
                (Some(original), Some(update)) => diff::compare(cx, out, original, update),
            });
        }
    });
}

/// `dependencies` with array values and `dependentRequired` (2019-09+), merged.
fn dependency_arrays<'a>(at: At<'a>) -> Vec<(&'a str, BTreeSet<&'a str>)> {
    let mut arrays = Vec::new();
    for keyword in ["dependencies", "dependentRequired"] {
        for (name, value) in at
            .get(keyword)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            // An empty list requires nothing: it reads as absent.
            if let Value::Array(names) = value
                && !names.is_empty()
            {
                arrays.push((
                    name.as_str(),
                    names.iter().filter_map(Value::as_str).collect(),
                ));
            }
        }
    }
    arrays
}

/// `dependencies` with schema values and `dependentSchemas` (2019-09+), merged.
fn dependency_schemas<'a>(at: At<'a>) -> Vec<(&'a str, At<'a>)> {
    let mut schemas = Vec::new();
    for keyword in ["dependencies", "dependentSchemas"] {
        for (name, value) in at
            .get(keyword)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            // `{}` and `true` require nothing: they read as absent.
            if !value.is_array() && !is_empty_schema(value) {
                schemas.push((name.as_str(), at.child(value)));
            }
        }
    }
    schemas
}

fn compare_counts(cx: &Cx<'_, '_>, out: &mut Vec<Found>, original: At<'_>, update: At<'_>) {
    use ChangeKind as K;
    let counts = [
        (
            "maxProperties",
            (
                K::MaxPropertiesAdded,
                K::MaxPropertiesRemoved,
                K::MaxPropertiesIncreased,
                K::MaxPropertiesDecreased,
            ),
        ),
        (
            "minProperties",
            (
                K::MinPropertiesAdded,
                K::MinPropertiesRemoved,
                K::MinPropertiesIncreased,
                K::MinPropertiesDecreased,
            ),
        ),
    ];
    for (keyword, kinds) in counts {
        let bound = if keyword == "minProperties" {
            diff::lower_count
        } else {
            diff::number
        };
        diff::compare_bound(
            cx,
            out,
            keyword,
            bound(original, keyword),
            bound(update, keyword),
            kinds,
        );
    }
}
