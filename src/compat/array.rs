//! Array schemas, after Confluent's `ArraySchemaDiff`: the all-items schema, tuple items against
//! the content model (as for object properties), additional and unevaluated items, counts,
//! `uniqueItems`, and `contains` with its counts.
//!
//! Both spellings of tuples are read: `prefixItems` + `items` (2020-12) and `items: [..]` +
//! `additionalItems` (draft-07). Paths use Confluent's `#/items/<index>` for tuple members.

use serde_json::Value;

use super::diff::{self, Cx, Found};
use super::kind::ChangeKind;
use super::model::{At, Member, Part};
use super::object::{Rest, RestKinds, compare_rest};

/// Compares two array views.
pub(crate) fn compare<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: At<'a>,
    update: At<'a>,
) {
    let (old, new) = (Model::of(original), Model::of(update));
    cx.within("items", |cx| {
        diff::compare_optional(cx, out, old.all_items, new.all_items)
    });
    compare_tuples(cx, out, &old, &new);
    compare_rest(
        cx,
        out,
        "additionalItems",
        old.additional,
        new.additional,
        ADDITIONAL,
    );
    compare_rest(
        cx,
        out,
        "unevaluatedItems",
        old.unevaluated,
        new.unevaluated,
        UNEVALUATED,
    );
    compare_counts(cx, out, original, update);
    cx.within("contains", |cx| {
        diff::compare_optional(cx, out, old.contains, new.contains)
    });
}

const ADDITIONAL: RestKinds = (
    ChangeKind::AdditionalItemsAdded,
    ChangeKind::AdditionalItemsRemoved,
    ChangeKind::AdditionalItemsExtended,
    ChangeKind::AdditionalItemsNarrowed,
);
const UNEVALUATED: RestKinds = (
    ChangeKind::UnevaluatedItemsAdded,
    ChangeKind::UnevaluatedItemsRemoved,
    ChangeKind::UnevaluatedItemsExtended,
    ChangeKind::UnevaluatedItemsNarrowed,
);

struct Model<'a> {
    all_items: Option<At<'a>>,
    tuple: Vec<At<'a>>,
    additional: Rest<'a>,
    unevaluated: Rest<'a>,
    contains: Option<At<'a>>,
}

impl<'a> Model<'a> {
    fn of(at: At<'a>) -> Model<'a> {
        let items = at.get("items");
        let (all_items, tuple, additional) = match (at.get("prefixItems"), items) {
            (Some(Value::Array(prefix)), _) => (None, prefix.as_slice(), Rest::of(at, "items")),
            (_, Some(Value::Array(tuple))) => {
                (None, tuple.as_slice(), Rest::of(at, "additionalItems"))
            }
            // `items: {}` (or `true`) allows what no `items` allows.
            (_, Some(items)) if is_true(items) => (None, &[][..], Rest::of(at, "additionalItems")),
            (_, Some(items)) => (
                Some(at.child(items)),
                &[][..],
                Rest::of(at, "additionalItems"),
            ),
            (_, None) => (None, &[][..], Rest::of(at, "additionalItems")),
        };
        Model {
            all_items,
            tuple: tuple.iter().map(|item| at.child(item)).collect(),
            additional,
            unevaluated: Rest::of(at, "unevaluatedItems"),
            contains: at.get("contains").map(|contains| at.child(contains)),
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.additional, Rest::Anything) && matches!(self.unevaluated, Rest::Anything)
    }

    fn partial_schema(&self) -> Option<At<'a>> {
        if let Some(schema) = self.additional.schema() {
            return Some(schema);
        }
        match (self.additional, self.unevaluated) {
            (Rest::Anything, Rest::Schema(schema)) if !is_true(schema.value) => Some(schema),
            _ => None,
        }
    }
}

fn is_true(value: &Value) -> bool {
    matches!(value, Value::Bool(true)) || value.as_object().is_some_and(|object| object.is_empty())
}

fn compare_tuples<'a>(cx: &mut Cx<'a, '_>, out: &mut Vec<Found>, old: &Model<'a>, new: &Model<'a>) {
    let length = old.tuple.len().max(new.tuple.len());
    for index in 0..length {
        cx.within_index("items", index, |cx| {
            match (old.tuple.get(index), new.tuple.get(index)) {
                (Some(original), Some(update)) => diff::compare(cx, out, *original, *update),
                (Some(original), None) => item_removed(cx, out, *original, new),
                (None, Some(update)) => item_added(cx, out, *update, old),
                (None, None) => {}
            }
        });
    }
}

fn item_removed<'a>(cx: &mut Cx<'a, '_>, out: &mut Vec<Found>, original: At<'a>, new: &Model<'a>) {
    use ChangeKind as K;
    if new.is_open() {
        cx.add(out, K::ItemRemovedFromOpenContentModel);
    } else if let Some(partial) = new.partial_schema() {
        let kind = if covered(cx, out, original, partial) {
            K::ItemRemovedIsCoveredByPartiallyOpenContentModel
        } else {
            K::ItemRemovedNotCoveredByPartiallyOpenContentModel
        };
        cx.add(out, kind);
    } else if original.value == &Value::Bool(false) {
        cx.add(out, K::ItemWithFalseRemovedFromClosedContentModel);
    } else {
        cx.add(out, K::ItemRemovedFromClosedContentModel);
    }
}

fn item_added<'a>(cx: &mut Cx<'a, '_>, out: &mut Vec<Found>, update: At<'a>, old: &Model<'a>) {
    use ChangeKind as K;
    if old.is_open() {
        let kind = if is_true(update.value) {
            K::ItemWithEmptySchemaAddedToOpenContentModel
        } else {
            K::ItemAddedToOpenContentModel
        };
        cx.add(out, kind);
    } else if let Some(partial) = old.partial_schema() {
        let kind = if covered(cx, out, partial, update) {
            K::ItemAddedIsCoveredByPartiallyOpenContentModel
        } else {
            K::ItemAddedNotCoveredByPartiallyOpenContentModel
        };
        cx.add(out, kind);
    } else {
        cx.add(out, K::ItemAddedToClosedContentModel);
    }
}

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

fn compare_counts(cx: &Cx<'_, '_>, out: &mut Vec<Found>, original: At<'_>, update: At<'_>) {
    use ChangeKind as K;
    let counts = [
        (
            "maxItems",
            (
                K::MaxItemsAdded,
                K::MaxItemsRemoved,
                K::MaxItemsIncreased,
                K::MaxItemsDecreased,
            ),
        ),
        (
            "minItems",
            (
                K::MinItemsAdded,
                K::MinItemsRemoved,
                K::MinItemsIncreased,
                K::MinItemsDecreased,
            ),
        ),
        (
            "maxContains",
            (
                K::MaxContainsAdded,
                K::MaxContainsRemoved,
                K::MaxContainsIncreased,
                K::MaxContainsDecreased,
            ),
        ),
        (
            "minContains",
            (
                K::MinContainsAdded,
                K::MinContainsRemoved,
                K::MinContainsIncreased,
                K::MinContainsDecreased,
            ),
        ),
    ];
    for (keyword, kinds) in counts {
        let bound = if keyword == "minItems" {
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
    let unique = |at: At<'_>| at.get("uniqueItems") == Some(&Value::Bool(true));
    match (unique(original), unique(update)) {
        (true, false) => cx.add_at(out, "uniqueItems", K::UniqueItemsRemoved),
        (false, true) => cx.add_at(out, "uniqueItems", K::UniqueItemsAdded),
        _ => {}
    }
}
