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
    let mark = out.len();
    compare_shapes(cx, out, original, update);
    // Ours: an original that lists its values (an enum or a const, alone or with a type) is
    // compatible whenever the update accepts every one of them, whatever the structural rules
    // said (`{"type": "string", "enum": ["a"]}` → `{"type": "string", "enum": ["a"],
    // "minLength": 1}`); only the compatible differences are kept then.
    if !cx.all_compatible(&out[mark..]) && values_fit(original, update) {
        let kept: Vec<Found> = out
            .drain(mark..)
            .filter(|found| found.kind.is_compatible(cx.policy))
            .collect();
        out.extend(kept);
    }
}

fn compare_shapes<'a>(
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
            compare_values(cx, out, original, update);
        }
        _ => {}
    }
}

/// Whether every value the original lists (an enum or a const, alone or beside other keywords
/// of the same object) is valid under the update, as far as [`Checker`] can tell: Confluent
/// calls any change between an enum and a typed schema a type change, though
/// `{"enum": ["a", "b"]}` → `{"type": "string"}` keeps every document valid.
fn values_fit(original: &Node<'_>, update: &Node<'_>) -> bool {
    let listed: Vec<&Value> = match &original.shape {
        Shape::Enum(values) => values.iter().collect(),
        Shape::Const(value) => vec![*value],
        Shape::Combined {
            criterion: model::Criterion::All,
            members,
            synthetic: true,
        } => {
            let listed =
                members
                    .iter()
                    .find_map(|member| match model::member_node(*member).shape {
                        Shape::Enum(values) => Some(values.iter().collect()),
                        Shape::Const(value) => Some(vec![value]),
                        _ => None,
                    });
            let Some(listed) = listed else {
                return false;
            };
            listed
        }
        _ => return false,
    };
    let Some(update) = Checker::of(update) else {
        return false;
    };
    // Values the original itself rejects (its type, its other keywords) are no documents.
    let original = Checker::of(original);
    listed
        .into_iter()
        .filter(|value| reachable_in(original.as_ref(), value))
        .all(|value| update.accepts(value))
}

fn reachable_in(checker: Option<&Checker>, value: &Value) -> bool {
    checker.is_none_or(|checker| checker.accepts(value))
}

/// What a schema node accepts, for the nodes that are decided value by value: `true`/`false`,
/// enums and consts, typed views on their own keywords (strings, numbers, booleans, null, and
/// objects and arrays without keywords of their type), and the synthetic `allOf`/`anyOf` of
/// those. Anything else (a `$ref`, `not`, a written combinator) has no checker.
enum Checker {
    Always(bool),
    Values(Vec<Value>),
    View(jsonschema::Validator),
    All(Vec<Checker>),
    Any(Vec<Checker>),
}

impl Checker {
    fn of(node: &Node<'_>) -> Option<Checker> {
        Some(match &node.shape {
            Shape::Empty => Checker::Always(true),
            Shape::False => Checker::Always(false),
            Shape::Enum(values) => Checker::Values(values.to_vec()),
            Shape::Const(value) => Checker::Values(vec![(*value).clone()]),
            Shape::Combined {
                criterion,
                members,
                synthetic: true,
            } => {
                let members = members
                    .iter()
                    .map(|member| Checker::of(&model::member_node(*member)))
                    .collect::<Option<Vec<Checker>>>()?;
                match criterion {
                    model::Criterion::All => Checker::All(members),
                    model::Criterion::Any => Checker::Any(members),
                    model::Criterion::One => return None,
                }
            }
            _ => Checker::View(view_validator(node)?),
        })
    }

    fn accepts(&self, value: &Value) -> bool {
        match self {
            Checker::Always(accepts) => *accepts,
            Checker::Values(values) => values.iter().any(|listed| json_equal(listed, value)),
            Checker::View(validator) => validator.is_valid(value),
            Checker::All(members) => members.iter().all(|member| member.accepts(value)),
            Checker::Any(members) => members.iter().any(|member| member.accepts(value)),
        }
    }
}

/// A validator for a typed view's own keywords (its type, when it requires it, and the string
/// or number keywords); `None` for other shapes, for an object or array view with keywords of
/// its type, for an object with keywords that apply to every type and are no part of the model
/// (`if`, dynamic references, content keywords), or when the keywords do not compile.
fn view_validator(node: &Node<'_>) -> Option<jsonschema::Validator> {
    let has_any = |keywords: &[&str]| {
        keywords
            .iter()
            .any(|keyword| node.at.get(keyword).is_some())
    };
    if has_any(&[
        "if",
        "$dynamicRef",
        "$recursiveRef",
        "contentEncoding",
        "contentMediaType",
    ]) {
        return None;
    }
    let (name, requires, keywords): (&str, bool, &[&str]) = match node.shape {
        Shape::String { requires } => ("string", requires, model::STRING_KEYWORDS),
        Shape::Number { requires, integer } => (
            if integer { "integer" } else { "number" },
            requires,
            model::NUMBER_KEYWORDS,
        ),
        Shape::Boolean => ("boolean", true, &[]),
        Shape::Null => ("null", true, &[]),
        Shape::Object { requires } if !has_any(model::OBJECT_KEYWORDS) => ("object", requires, &[]),
        Shape::Array { requires } if !has_any(model::ARRAY_KEYWORDS) => ("array", requires, &[]),
        _ => return None,
    };
    let mut view = serde_json::Map::new();
    if requires {
        view.insert("type".into(), Value::from(name));
    }
    for keyword in keywords {
        if let Some(value) = node.at.get(keyword) {
            view.insert((*keyword).to_owned(), value.clone());
        }
    }
    let view = Value::Object(view);
    let built = std::panic::catch_unwind(|| {
        jsonschema::options()
            .with_draft(node.at.doc.draft)
            .with_pattern_options(
                jsonschema::PatternOptions::regex()
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20),
            )
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .build(&view)
    });
    built.ok()?.ok()
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
    // An `if` without `then` or `else` asserts nothing.
    let conditional = |at: At<'a>| {
        let parts = [at.get("if"), at.get("then"), at.get("else")];
        (parts[0].is_some() && (parts[1].is_some() || parts[2].is_some())).then_some(parts)
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

/// A lower bound on a count (`minLength`, `minItems`, `minProperties`); 0 bounds nothing, so it
/// reads as absent.
pub(crate) fn lower_count(at: At<'_>, keyword: &str) -> Option<f64> {
    number(at, keyword).filter(|bound| *bound > 0.0)
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
    // Where the update sets a length, the original's format or pattern may already imply it (a
    // `uuid` is 36 characters, `^[A-Z]{3}$` three): the original's bound is then the tighter of
    // the two (ours).
    let (shortest, longest) = implied_lengths(original);
    for (keyword, kinds) in lengths {
        let minimum = keyword == "minLength";
        let bound = |at: At<'a>| {
            if minimum {
                lower_count(at, keyword)
            } else {
                number(at, keyword)
            }
        };
        let (update_bound, own) = (bound(update), bound(original));
        let implied = if minimum { shortest } else { longest };
        let original_bound = match (own, implied) {
            (Some(own), Some(implied)) if update_bound.is_some() && minimum => {
                Some(own.max(implied))
            }
            (Some(own), Some(implied)) if update_bound.is_some() => Some(own.min(implied)),
            (None, Some(implied)) if update_bound.is_some() => Some(implied),
            (own, _) => own,
        };
        compare_bound(cx, out, keyword, original_bound, update_bound, kinds);
    }
    // A pattern every string matches and a format the validator does not know constrain
    // nothing: they read as absent.
    let text = |at: At<'a>, keyword: &str| {
        let text = at.get(keyword).and_then(Value::as_str)?;
        let constrains = match keyword {
            "pattern" => !matches_every_string(text),
            _ => is_known_format(at.doc.draft, text),
        };
        constrains.then_some(text)
    };
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

/// The shortest and longest strings a view's `format` and `pattern` allow, where they say.
fn implied_lengths(at: At<'_>) -> (Option<f64>, Option<f64>) {
    let (format_shortest, format_longest) = format_lengths(at);
    let (pattern_shortest, pattern_longest) = at
        .get("pattern")
        .and_then(Value::as_str)
        .map_or((None, None), pattern_lengths);
    let tighter = |a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64| match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    };
    (
        tighter(format_shortest, pattern_shortest, f64::max),
        tighter(format_longest, pattern_longest, f64::min),
    )
}

/// The shortest and longest strings of a view's format, for the formats whose strings have such
/// lengths as the validator checks them (the `jsonschema` crate's own length windows).
fn format_lengths(at: At<'_>) -> (Option<f64>, Option<f64>) {
    let format = at.get("format").and_then(Value::as_str).unwrap_or_default();
    if !is_known_format(at.doc.draft, format) {
        return (None, None);
    }
    match format {
        "date" => (Some(10.0), Some(10.0)),
        "uuid" => (Some(36.0), Some(36.0)),
        "ipv4" => (Some(7.0), Some(15.0)),
        "ipv6" => (Some(2.0), Some(45.0)),
        "hostname" => (Some(1.0), Some(253.0)),
        "date-time" => (Some(20.0), None),
        "time" => (Some(9.0), None),
        "duration" => (Some(3.0), None),
        _ => (None, None),
    }
}

/// A pattern's syntax tree, when `regex-syntax` reads it.
fn parse_pattern(pattern: &str) -> Option<regex_syntax::hir::Hir> {
    regex_syntax::ParserBuilder::new()
        .nest_limit(64)
        .build()
        .parse(pattern)
        .ok()
}

/// Whether a pattern matches every string: it can match the empty string without looking
/// around, so an unanchored search (as `pattern` is) finds a match at the start of any string.
fn matches_every_string(pattern: &str) -> bool {
    parse_pattern(pattern).is_some_and(|hir| {
        let properties = hir.properties();
        properties.minimum_len() == Some(0) && properties.look_set().is_empty()
    })
}

/// The shortest and longest strings, in characters, that a pattern allows: a string holds a
/// match, so it is at least as long as the shortest match; a pattern anchored at both ends
/// (`^...$`) is the whole string, so it is at most as long as the longest.
fn pattern_lengths(pattern: &str) -> (Option<f64>, Option<f64>) {
    use regex_syntax::hir::Look;
    let Some(hir) = parse_pattern(pattern) else {
        return (None, None);
    };
    let properties = hir.properties();
    let anchored = properties.look_set_prefix().contains(Look::Start)
        && properties.look_set_suffix().contains(Look::End);
    let (shortest, longest) = match_lengths(&hir);
    (
        Some(shortest as f64).filter(|shortest| *shortest > 0.0),
        longest.filter(|_| anchored).map(|longest| longest as f64),
    )
}

/// The fewest and most characters a match of `hir` has (`None`: no most).
fn match_lengths(hir: &regex_syntax::hir::Hir) -> (usize, Option<usize>) {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => (0, Some(0)),
        HirKind::Literal(literal) => {
            let n_chars = String::from_utf8_lossy(&literal.0).chars().count();
            (n_chars, Some(n_chars))
        }
        HirKind::Class(_) => (1, Some(1)),
        HirKind::Capture(capture) => match_lengths(&capture.sub),
        HirKind::Repetition(repetition) => {
            let (shortest, longest) = match_lengths(&repetition.sub);
            let times = |count: u32| usize::try_from(count).unwrap_or(usize::MAX);
            let most = match (longest, repetition.max) {
                (Some(0), _) => Some(0),
                (Some(longest), Some(max)) => longest.checked_mul(times(max)),
                _ => None,
            };
            (shortest.saturating_mul(times(repetition.min)), most)
        }
        HirKind::Concat(parts) => parts.iter().map(match_lengths).fold(
            (0, Some(0)),
            |(shortest, longest), (part_shortest, part_longest)| {
                (
                    shortest.saturating_add(part_shortest),
                    longest
                        .zip(part_longest)
                        .and_then(|(a, b)| a.checked_add(b)),
                )
            },
        ),
        HirKind::Alternation(branches) => {
            let lengths: Vec<_> = branches.iter().map(match_lengths).collect();
            let shortest = lengths.iter().map(|(shortest, _)| *shortest).min();
            let longest = lengths
                .iter()
                .map(|(_, longest)| *longest)
                .try_fold(0, |most, longest| longest.map(|longest| most.max(longest)));
            (shortest.unwrap_or(0), longest)
        }
    }
}

/// Whether the validator asserts a format under a draft (the registry compiles contracts with
/// formats asserted and unknown ones ignored; this is the `jsonschema` crate's list, with
/// `idn-email` and `idn-hostname`).
fn is_known_format(draft: jsonschema::Draft, format: &str) -> bool {
    crate::registry::contract::format_checked(draft, format)
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

/// Enum and const as sets of values (JSON equality: `1` equals `1.0`). Only the values the
/// schema itself can accept count: an enum member that fails the object's own `type` or `const`
/// (`null` in `{"type": "string", "enum": ["a", null]}`) was never valid, so removing it breaks
/// nothing (ours; Confluent compares the lists as written).
fn compare_values(cx: &Cx<'_, '_>, out: &mut Vec<Found>, original: &Node<'_>, update: &Node<'_>) {
    let values = |node: &Node<'_>| -> Vec<Value> {
        let listed = match node.shape {
            Shape::Enum(values) => values.to_vec(),
            Shape::Const(value) => vec![value.clone()],
            _ => Vec::new(),
        };
        listed
            .into_iter()
            .filter(|value| reachable(node.at, value))
            .collect()
    };
    let (old, new) = (values(original), values(update));
    let contains_all = |set: &[Value], subset: &[Value]| {
        subset
            .iter()
            .all(|value| set.iter().any(|other| json_equal(value, other)))
    };
    let keyword =
        if matches!(original.shape, Shape::Const(_)) && matches!(update.shape, Shape::Const(_)) {
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

/// Whether a listed value can be valid under the schema object that lists it, as far as its
/// `type`, `const` and `enum` say.
fn reachable(at: At<'_>, value: &Value) -> bool {
    let draft4 = at.doc.draft == jsonschema::Draft::Draft4;
    let has_type = |name: &str| match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || (!draft4 && value.as_f64().is_some_and(|number| number.fract() == 0.0))
        }
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    };
    let typed = match at.get("type") {
        Some(Value::String(name)) => has_type(name),
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).any(has_type),
        _ => true,
    };
    let constant = at
        .get("const")
        .is_none_or(|constant| json_equal(constant, value));
    let listed = match at.get("enum") {
        Some(Value::Array(options)) => options.iter().any(|option| json_equal(option, value)),
        _ => true,
    };
    typed && constant && listed
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
    fn patterns_imply_lengths_in_characters() {
        assert_eq!(pattern_lengths("^[A-Z]{3}$"), (Some(3.0), Some(3.0)));
        assert_eq!(pattern_lengths("[A-Z]{3}"), (Some(3.0), None));
        assert_eq!(pattern_lengths("^\\p{L}{2}$"), (Some(2.0), Some(2.0)));
        assert_eq!(pattern_lengths("^(?:a|bb)$"), (Some(1.0), Some(2.0)));
        assert_eq!(pattern_lengths("^o-[0-9]+$"), (Some(3.0), None));
        assert_eq!(pattern_lengths("^.*$"), (None, None));
        assert!(matches_every_string(".*") && matches_every_string(""));
        assert!(!matches_every_string("^.*$") && !matches_every_string("a*\\b"));
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
