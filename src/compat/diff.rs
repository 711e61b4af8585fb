//! The comparison of two schemas, after Confluent's `SchemaDiff.compare`: normalize references,
//! handle a combined schema against a plain one, compare classes, then delegate to the rules of
//! the class (here for strings, numbers, enums and `not`; objects, arrays and combined schemas
//! have their own modules).
//!
//! "original" is the schema whose documents must stay valid and "update" the one that must accept
//! them; the backward direction passes (old, new) and the forward one (new, old).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::Value;

use super::kind::ChangeKind;
use super::model::{self, At, Member, Node, NodeKey, Shape};
use super::{Policy, Schemas, Undecided, array, combined, object};

/// One difference, with its Confluent-style path (`#/properties/a`), relative to the root of the
/// comparison that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) kind: ChangeKind,
    pub(crate) path: String,
}

/// The state of one comparison: where we are, what is known, what is left to spend.
pub(crate) struct Cx<'a, 's> {
    pub(crate) schemas: &'s Schemas<'a>,
    pub(crate) policy: Policy,
    /// Path segments from the root of the current comparison (Confluent's `jsonPath` deque),
    /// borrowed so that walking allocates nothing until a difference is recorded.
    path: Vec<Segment<'a>>,
    /// Results of pairs already compared, with paths relative to the pair (Confluent's memo):
    /// recursive and heavily shared schemas are compared once per pair, not once per path.
    memo: HashMap<Pair, Vec<Found>, PairHash>,
    /// Pairs on the call stack: meeting one again is a cycle, taken as compatible...
    in_progress: HashSet<Pair, PairHash>,
    /// ...and remembered, so that the assumption can be checked once the pass is over.
    assumed: HashSet<Pair, PairHash>,
    /// Cycle pairs a previous pass proved incompatible, with their differences: later passes use
    /// these instead of the optimistic assumption (the greatest-fixed-point refinement Confluent
    /// added so that memoized results cannot mask an incompatibility behind a cycle).
    refuted: HashMap<Pair, Vec<Found>, PairHash>,
    /// Pair comparisons left before we give up with `TooComplex`.
    budget: usize,
    /// Pair comparisons on the call stack, capped at `max_depth` so that no schema can exhaust
    /// the stack.
    depth: usize,
    max_depth: usize,
    pub(crate) undecided: Option<Undecided>,
    /// Compiled `patternProperties` patterns, by source (None when the pattern does not compile).
    patterns: HashMap<String, Option<jsonschema::Validator>>,
}

/// A pair of nodes being compared (original, update).
type Pair = (NodeKey, NodeKey);

/// The memo is hit on every comparison; its keys are addresses and small tags, which need no
/// protection against crafted collisions, so a multiply-rotate hash (as rustc's Fx) does.
type PairHash = BuildHasherDefault<FxHasher>;

#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.hash = (self.hash.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn write_u8(&mut self, value: u8) {
        self.write_u64(u64::from(value));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// One segment of a path: a keyword or a name, or a keyword and an index (`items/2`).
#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Text(&'a str),
    Indexed(&'static str, usize),
}

/// Follows `$ref` chains at most this far before calling the reference unresolvable.
const MAX_REF_HOPS: usize = 32;

impl<'a, 's> Cx<'a, 's> {
    pub(crate) fn new(
        schemas: &'s Schemas<'a>,
        policy: Policy,
        budget: usize,
        max_depth: usize,
    ) -> Self {
        Cx {
            schemas,
            policy,
            path: Vec::new(),
            memo: HashMap::default(),
            in_progress: HashSet::default(),
            assumed: HashSet::default(),
            refuted: HashMap::default(),
            budget,
            depth: 0,
            max_depth,
            undecided: None,
            patterns: HashMap::new(),
        }
    }

    /// Records a difference at the current path.
    pub(crate) fn add(&self, out: &mut Vec<Found>, kind: ChangeKind) {
        out.push(Found {
            kind,
            path: self.path_string(None),
        });
    }

    /// Records a difference at the current path plus one keyword (`#/maxLength`).
    pub(crate) fn add_at(&self, out: &mut Vec<Found>, keyword: &str, kind: ChangeKind) {
        out.push(Found {
            kind,
            path: self.path_string(Some(keyword)),
        });
    }

    fn path_string(&self, last: Option<&str>) -> String {
        use std::fmt::Write as _;
        let mut path = String::from("#/");
        let segments = self.path.iter().copied().chain(last.map(Segment::Text));
        for (index, segment) in segments.enumerate() {
            if index > 0 {
                path.push('/');
            }
            match segment {
                Segment::Text(text) => path.push_str(text),
                Segment::Indexed(keyword, position) => {
                    let _ = write!(path, "{keyword}/{position}");
                }
            }
        }
        path
    }

    /// Runs `body` with one more path segment.
    pub(crate) fn within<T>(&mut self, segment: &'a str, body: impl FnOnce(&mut Self) -> T) -> T {
        self.path.push(Segment::Text(segment));
        let result = body(self);
        self.path.pop();
        result
    }

    /// Runs `body` with one more `keyword/index` path segment.
    pub(crate) fn within_index<T>(
        &mut self,
        keyword: &'static str,
        index: usize,
        body: impl FnOnce(&mut Self) -> T,
    ) -> T {
        self.path.push(Segment::Indexed(keyword, index));
        let result = body(self);
        self.path.pop();
        result
    }

    /// Whether every difference is compatible under the policy (Confluent's `isCompatible`).
    pub(crate) fn all_compatible(&self, found: &[Found]) -> bool {
        found
            .iter()
            .all(|item| item.kind.is_compatible(self.policy))
    }

    /// Ends a pass: true when some cycle assumed compatible turned out not to be, so another
    /// pass must run with that knowledge (each pass refutes at least one more pair, and all
    /// passes share one budget, so this ends).
    pub(crate) fn refine(&mut self) -> bool {
        let mut refined = false;
        for key in std::mem::take(&mut self.assumed) {
            let Some(found) = self.memo.get(&key) else {
                continue;
            };
            if !self.refuted.contains_key(&key) && !self.all_compatible(found) {
                self.refuted.insert(key, found.clone());
                refined = true;
            }
        }
        self.memo.clear();
        self.in_progress.clear();
        self.path.clear();
        refined
    }

    pub(crate) fn stopped(&self) -> bool {
        self.undecided.is_some()
    }

    /// Whether `name` matches the pattern (ECMA semantics are unanchored, as Java's `find`).
    pub(crate) fn pattern_matches(&mut self, pattern: &str, name: &str) -> bool {
        let validator = self
            .patterns
            .entry(pattern.to_owned())
            .or_insert_with(|| compile_pattern(pattern));
        validator
            .as_ref()
            .is_some_and(|validator| validator.is_valid(&Value::String(name.to_owned())))
    }
}

fn compile_pattern(pattern: &str) -> Option<jsonschema::Validator> {
    let schema = serde_json::json!({ "pattern": pattern });
    jsonschema::options()
        .with_pattern_options(
            jsonschema::PatternOptions::regex()
                .size_limit(1 << 20)
                .dfa_size_limit(1 << 20),
        )
        .build(&schema)
        .ok()
}

/// Compares two optional subschemas: a missing one on either side is `SCHEMA_ADDED`/`REMOVED`.
pub(crate) fn compare_optional<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: Option<At<'a>>,
    update: Option<At<'a>>,
) {
    match (original, update) {
        (None, None) => {}
        (None, Some(_)) => cx.add(out, ChangeKind::SchemaAdded),
        (Some(_), None) => cx.add(out, ChangeKind::SchemaRemoved),
        (Some(original), Some(update)) => compare(cx, out, original, update),
    }
}

/// Compares two schema values.
pub(crate) fn compare<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: At<'a>,
    update: At<'a>,
) {
    let original = model::classify(original);
    let update = model::classify(update);
    compare_nodes(cx, out, original, update);
}

/// Compares two members of combined schemas.
pub(crate) fn compare_members<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: Member<'a>,
    update: Member<'a>,
) {
    compare_nodes(
        cx,
        out,
        model::member_node(original),
        model::member_node(update),
    );
}

/// Compares into a fresh list (Confluent's sub-context): for trial comparisons.
pub(crate) fn trial<'a>(
    cx: &mut Cx<'a, '_>,
    original: Member<'a>,
    update: Member<'a>,
) -> Vec<Found> {
    let mut found = Vec::new();
    compare_members(cx, &mut found, original, update);
    found
}

/// Compares two classified nodes, memoized by pair, with cycles taken as compatible.
pub(crate) fn compare_nodes<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: Node<'a>,
    update: Node<'a>,
) {
    if cx.stopped() {
        return;
    }
    let (Some(original), Some(update)) = (dereference(cx, original), dereference(cx, update))
    else {
        return;
    };
    let key = (original.key(), update.key());
    if let Some(found) = cx.memo.get(&key) {
        let prefix = cx.path_string(None);
        out.extend(found.iter().map(|item| rebase(&prefix, item)));
        return;
    }
    if !cx.in_progress.insert(key) {
        if let Some(found) = cx.refuted.get(&key) {
            let prefix = cx.path_string(None);
            out.extend(found.iter().map(|item| rebase(&prefix, item)));
        } else {
            cx.assumed.insert(key);
        }
        return;
    }
    if cx.budget == 0 {
        cx.undecided = Some(Undecided::TooComplex);
        return;
    }
    if cx.depth >= cx.max_depth {
        cx.undecided = Some(Undecided::TooDeep);
        return;
    }
    cx.budget -= 1;
    cx.depth += 1;
    let saved_path = std::mem::take(&mut cx.path);
    let mut found = Vec::new();
    compare_body(cx, &mut found, &original, &update);
    cx.path = saved_path;
    cx.depth -= 1;
    cx.in_progress.remove(&key);
    let prefix = cx.path_string(None);
    out.extend(found.iter().map(|item| rebase(&prefix, item)));
    cx.memo.insert(key, found);
}

fn rebase(prefix: &str, found: &Found) -> Found {
    let relative = found.path.strip_prefix("#/").unwrap_or(&found.path);
    let path = if relative.is_empty() {
        prefix.to_owned()
    } else if prefix.len() <= 2 {
        format!("#/{relative}")
    } else {
        format!("{prefix}/{relative}")
    };
    Found {
        kind: found.kind,
        path,
    }
}

/// Replaces a reference node by the node it points to (Confluent's `normalizeSchema`).
fn dereference<'a>(cx: &mut Cx<'a, '_>, mut node: Node<'a>) -> Option<Node<'a>> {
    for _ in 0..MAX_REF_HOPS {
        let Shape::Ref(reference) = node.shape else {
            return Some(node);
        };
        match model::resolve(cx.schemas, node.at, reference) {
            Ok(target) => node = model::classify(target),
            Err(undecided) => {
                cx.undecided = Some(undecided);
                return None;
            }
        }
    }
    cx.undecided = Some(Undecided::UnresolvedReference(
        "a chain of $ref that does not end".into(),
    ));
    None
}

fn compare_body<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: &Node<'a>,
    update: &Node<'a>,
) {
    if combined::compare_with_plain(cx, out, original, update) {
        return;
    }
    if !same_class(&original.shape, &update.shape) {
        if matches!(original.shape, Shape::False) || matches!(update.shape, Shape::Empty) {
            return;
        }
        if is_connect_bytes(original.at) && is_connect_bytes(update.at) {
            // Confluent: Kafka Connect's decimal moved between string and number encodings.
            return;
        }
        cx.add(out, ChangeKind::TypeChanged);
        return;
    }
    if original.is_whole() && update.is_whole() {
        compare_annotations(cx, out, original.at, update.at);
    }
    match (&original.shape, &update.shape) {
        (Shape::String { requires: a }, Shape::String { requires: b }) => {
            compare_requires(cx, out, *a, *b);
            compare_string(cx, out, original.at, update.at);
        }
        (
            Shape::Number {
                requires: a,
                integer: old_integer,
            },
            Shape::Number {
                requires: b,
                integer: new_integer,
            },
        ) => {
            compare_requires(cx, out, *a, *b);
            compare_number(cx, out, original.at, update.at);
            match (old_integer, new_integer) {
                (true, false) => cx.add(out, ChangeKind::TypeExtended),
                (false, true) => cx.add(out, ChangeKind::TypeNarrowed),
                _ => {}
            }
        }
        (Shape::Object { requires: a }, Shape::Object { requires: b }) => {
            compare_requires(cx, out, *a, *b);
            object::compare(cx, out, original.at, update.at);
        }
        (Shape::Array { requires: a }, Shape::Array { requires: b }) => {
            compare_requires(cx, out, *a, *b);
            array::compare(cx, out, original.at, update.at);
        }
        (Shape::Combined { .. }, Shape::Combined { .. }) => {
            combined::compare(cx, out, original, update);
        }
        (Shape::Not(original_not), Shape::Not(update_not)) => {
            compare_not(
                cx,
                out,
                original.at.child(original_not),
                update.at.child(update_not),
            );
        }
        (Shape::Enum(_) | Shape::Const(_), Shape::Enum(_) | Shape::Const(_)) => {
            compare_values(cx, out, &original.shape, &update.shape);
        }
        _ => {}
    }
}

fn is_connect_bytes(at: At<'_>) -> bool {
    at.get("connect.type").and_then(Value::as_str) == Some("bytes")
}

/// Confluent compares classes; `TrueSchema` is an `EmptySchema`, and any two numbers or combined
/// schemas are the same class. Ours: an enum and a const are both value sets.
fn same_class(original: &Shape<'_>, update: &Shape<'_>) -> bool {
    use Shape as S;
    matches!(
        (original, update),
        (S::Empty, S::Empty)
            | (S::False, S::False)
            | (S::String { .. }, S::String { .. })
            | (S::Number { .. }, S::Number { .. })
            | (S::Boolean, S::Boolean)
            | (S::Null, S::Null)
            | (S::Object { .. }, S::Object { .. })
            | (S::Array { .. }, S::Array { .. })
            | (S::Enum(_) | S::Const(_), S::Enum(_) | S::Const(_))
            | (S::Not(_), S::Not(_))
            | (S::Combined { .. }, S::Combined { .. })
    )
}

/// Ours (Confluent does not look): `{"properties": ..}` accepts non-objects, `{"type": "object",
/// "properties": ..}` does not, so declaring the type narrows.
fn compare_requires(cx: &Cx<'_, '_>, out: &mut Vec<Found>, original: bool, update: bool) {
    match (original, update) {
        (false, true) => cx.add(out, ChangeKind::TypeNarrowed),
        (true, false) => cx.add(out, ChangeKind::TypeExtended),
        _ => {}
    }
}

fn compare_annotations<'a>(
    cx: &Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: At<'a>,
    update: At<'a>,
) {
    let id = |at: At<'a>| {
        at.get("$id")
            .or_else(|| at.get("id"))
            .filter(|id| id.is_string())
    };
    if id(original) != id(update) {
        cx.add(out, ChangeKind::IdChanged);
    }
    for (keyword, kind) in [
        ("title", ChangeKind::TitleChanged),
        ("description", ChangeKind::DescriptionChanged),
        ("default", ChangeKind::DefaultChanged),
    ] {
        if original.get(keyword) != update.get(keyword) {
            cx.add(out, kind);
        }
    }
    compare_conditional(cx, out, original, update);
}

/// Ours: `if`/`then`/`else` are compared for equality only (Confluent ignores them).
fn compare_conditional<'a>(
    cx: &Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: At<'a>,
    update: At<'a>,
) {
    let conditional = |at: At<'a>| {
        let parts = [at.get("if"), at.get("then"), at.get("else")];
        parts[0].is_some().then_some(parts)
    };
    match (conditional(original), conditional(update)) {
        (None, Some(_)) => cx.add_at(out, "if", ChangeKind::ConditionalAdded),
        (Some(_), None) => cx.add_at(out, "if", ChangeKind::ConditionalRemoved),
        (Some(old), Some(new)) if old != new => {
            cx.add_at(out, "if", ChangeKind::ConditionalChanged)
        }
        _ => {}
    }
}

/// The kinds for one bound keyword: (added, removed, increased, decreased).
pub(crate) type BoundKinds = (ChangeKind, ChangeKind, ChangeKind, ChangeKind);

/// Compares one numeric bound keyword, as Confluent does for each of them.
pub(crate) fn compare_bound(
    cx: &Cx<'_, '_>,
    out: &mut Vec<Found>,
    keyword: &str,
    original: Option<f64>,
    update: Option<f64>,
    (added, removed, increased, decreased): BoundKinds,
) {
    match (original, update) {
        (None, Some(_)) => cx.add_at(out, keyword, added),
        (Some(_), None) => cx.add_at(out, keyword, removed),
        (Some(old), Some(new)) if old < new => cx.add_at(out, keyword, increased),
        (Some(old), Some(new)) if old > new => cx.add_at(out, keyword, decreased),
        _ => {}
    }
}

pub(crate) fn number(at: At<'_>, keyword: &str) -> Option<f64> {
    at.get(keyword).and_then(Value::as_f64)
}

fn compare_string<'a>(cx: &Cx<'a, '_>, out: &mut Vec<Found>, original: At<'a>, update: At<'a>) {
    use ChangeKind as K;
    let lengths = [
        (
            "maxLength",
            (
                K::MaxLengthAdded,
                K::MaxLengthRemoved,
                K::MaxLengthIncreased,
                K::MaxLengthDecreased,
            ),
        ),
        (
            "minLength",
            (
                K::MinLengthAdded,
                K::MinLengthRemoved,
                K::MinLengthIncreased,
                K::MinLengthDecreased,
            ),
        ),
    ];
    for (keyword, kinds) in lengths {
        compare_bound(
            cx,
            out,
            keyword,
            number(original, keyword),
            number(update, keyword),
            kinds,
        );
    }
    let text = |at: At<'a>, keyword: &str| at.get(keyword).and_then(Value::as_str);
    for (keyword, kinds) in [
        (
            "pattern",
            (K::PatternAdded, K::PatternRemoved, K::PatternChanged),
        ),
        (
            "format",
            (K::FormatAdded, K::FormatRemoved, K::FormatChanged),
        ),
    ] {
        let (added, removed, changed) = kinds;
        match (text(original, keyword), text(update, keyword)) {
            (None, Some(_)) => cx.add_at(out, keyword, added),
            (Some(_), None) => cx.add_at(out, keyword, removed),
            (Some(old), Some(new)) if old != new => cx.add_at(out, keyword, changed),
            _ => {}
        }
    }
}

fn compare_number(cx: &Cx<'_, '_>, out: &mut Vec<Found>, original: At<'_>, update: At<'_>) {
    use ChangeKind as K;
    let (old_bounds, new_bounds) = (Bounds::of(original), Bounds::of(update));
    let bounds = [
        (
            "maximum",
            old_bounds.maximum,
            new_bounds.maximum,
            (
                K::MaximumAdded,
                K::MaximumRemoved,
                K::MaximumIncreased,
                K::MaximumDecreased,
            ),
        ),
        (
            "minimum",
            old_bounds.minimum,
            new_bounds.minimum,
            (
                K::MinimumAdded,
                K::MinimumRemoved,
                K::MinimumIncreased,
                K::MinimumDecreased,
            ),
        ),
        (
            "exclusiveMaximum",
            old_bounds.exclusive_maximum,
            new_bounds.exclusive_maximum,
            (
                K::ExclusiveMaximumAdded,
                K::ExclusiveMaximumRemoved,
                K::ExclusiveMaximumIncreased,
                K::ExclusiveMaximumDecreased,
            ),
        ),
        (
            "exclusiveMinimum",
            old_bounds.exclusive_minimum,
            new_bounds.exclusive_minimum,
            (
                K::ExclusiveMinimumAdded,
                K::ExclusiveMinimumRemoved,
                K::ExclusiveMinimumIncreased,
                K::ExclusiveMinimumDecreased,
            ),
        ),
    ];
    for (keyword, old, new, kinds) in bounds {
        compare_bound(cx, out, keyword, old, new, kinds);
    }
    let (old, new) = (number(original, "multipleOf"), number(update, "multipleOf"));
    let kind = match (old, new) {
        (None, None) => None,
        (None, Some(_)) => Some(K::MultipleOfAdded),
        (Some(_), None) => Some(K::MultipleOfRemoved),
        (Some(old), Some(new)) if old == new => None,
        (Some(old), Some(new)) if is_multiple(new, old) => Some(K::MultipleOfExpanded),
        (Some(old), Some(new)) if is_multiple(old, new) => Some(K::MultipleOfReduced),
        _ => Some(K::MultipleOfChanged),
    };
    if let Some(kind) = kind {
        cx.add_at(out, "multipleOf", kind);
    }
}

/// Numeric bounds. Draft-04's boolean `exclusiveMaximum: true` makes `maximum` exclusive: it is
/// read as an exclusive limit equal to the maximum (Confluent ignores the flag, so it misses
/// `maximum` becoming exclusive).
struct Bounds {
    maximum: Option<f64>,
    minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
}

impl Bounds {
    fn of(at: At<'_>) -> Bounds {
        let exclusive = |keyword: &str, bound: &str| match at.get(keyword) {
            Some(Value::Bool(true)) => (number(at, bound), number(at, bound)),
            Some(value) => (number(at, bound), value.as_f64()),
            None => (number(at, bound), None),
        };
        let (maximum, exclusive_maximum) = exclusive("exclusiveMaximum", "maximum");
        let (minimum, exclusive_minimum) = exclusive("exclusiveMinimum", "minimum");
        Bounds {
            maximum,
            minimum,
            exclusive_maximum,
            exclusive_minimum,
        }
    }
}

/// Whether `value` is a whole multiple of `divisor` (Confluent uses `intValue`, which is wrong
/// for fractions and divides by zero below 1).
fn is_multiple(value: f64, divisor: f64) -> bool {
    if divisor == 0.0 || !value.is_finite() || !divisor.is_finite() {
        return false;
    }
    let ratio = value / divisor;
    (ratio - ratio.round()).abs() <= 1e-9 * ratio.abs().max(1.0)
}

fn compare_not<'a>(cx: &mut Cx<'a, '_>, out: &mut Vec<Found>, original: At<'a>, update: At<'a>) {
    cx.within("not", |cx| {
        let mut reversed = Vec::new();
        compare(cx, &mut reversed, update, original);
        let kind = if cx.all_compatible(&reversed) {
            ChangeKind::NotTypeNarrowed
        } else {
            ChangeKind::NotTypeExtended
        };
        cx.add(out, kind);
    });
}

/// Enum and const as sets of values (JSON equality: `1` equals `1.0`).
fn compare_values(cx: &Cx<'_, '_>, out: &mut Vec<Found>, original: &Shape<'_>, update: &Shape<'_>) {
    let values = |shape: &Shape<'_>| -> Vec<Value> {
        match shape {
            Shape::Enum(values) => values.to_vec(),
            Shape::Const(value) => vec![(*value).clone()],
            _ => Vec::new(),
        }
    };
    let (old, new) = (values(original), values(update));
    let contains_all = |set: &[Value], subset: &[Value]| {
        subset
            .iter()
            .all(|value| set.iter().any(|other| json_equal(value, other)))
    };
    let keyword = if matches!(original, Shape::Const(_)) && matches!(update, Shape::Const(_)) {
        "const"
    } else {
        "enum"
    };
    let kind = if contains_all(&new, &old) && contains_all(&old, &new) {
        return;
    } else if contains_all(&new, &old) {
        ChangeKind::EnumArrayExtended
    } else if contains_all(&old, &new) {
        ChangeKind::EnumArrayNarrowed
    } else {
        ChangeKind::EnumArrayChanged
    };
    cx.add_at(out, keyword, kind);
}

/// JSON Schema equality: numbers by value, objects regardless of key order.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_multiples_are_recognised() {
        assert!(is_multiple(0.5, 0.25));
        assert!(!is_multiple(0.25, 0.5));
        assert!(is_multiple(10.0, 2.0));
        assert!(!is_multiple(10.0, 0.0));
    }

    #[test]
    fn paths_are_rebased_onto_the_current_prefix() {
        let found = Found {
            kind: ChangeKind::TypeChanged,
            path: "#/items".into(),
        };
        assert_eq!(
            rebase("#/properties/a", &found).path,
            "#/properties/a/items"
        );
        assert_eq!(rebase("#/", &found).path, "#/items");
        let root = Found {
            kind: ChangeKind::TypeChanged,
            path: "#/".into(),
        };
        assert_eq!(rebase("#/properties/a", &root).path, "#/properties/a");
    }
}
