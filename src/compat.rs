//! Compatibility between contract versions: which changes to a JSON Schema keep the documents of
//! another version valid, modelled on Confluent Schema Registry's JSON Schema checker.
//!
//! Backward compatible means every document valid under the previous version is valid under the
//! new one (a reader on the new version accepts what writers of the old one sent); forward is the
//! reverse; full is both; the transitive levels check every earlier version, not only the latest.
//! As in Confluent, the checker compares the two schemas structurally and lists each difference
//! with a type name and a path; a level holds when no difference is incompatible under the chosen
//! [`Policy`]. When it does not, a counterexample document is searched for and returned only once
//! the real validators (the `jsonschema` crate, compiled as the registry compiles contracts) agree
//! it is valid under one version and rejected by the other. docs/compatibility.md describes
//! the model, the difference types and every deviation from Confluent.
//!
//! The core is pure: no I/O, no panics on untrusted schemas, bounded work (a budget of pair
//! comparisons; exhausted, the answer is "too complex to decide", never a hang) and bounded
//! stack (a comparison that nests very deep is moved to a thread with a large stack, and past
//! that limit is too complex too).
//!
//! # Layout
//! - `kind`: the difference types and which of them each policy accepts.
//! - `model`: how a schema value is classified (everit's shapes) and how `$ref` resolves.
//! - `diff`: the comparison driver, memo and budget; strings, numbers, enums, `not`.
//! - `object`, `array`, `combined`: the rules for those shapes.
//! - `counterexample`: candidate documents, checked with the real validators.

mod kind;
mod model;

mod diff;

mod array;
mod combined;
mod object;

mod counterexample;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub use counterexample::Counterexample;
pub use kind::ChangeKind;

/// Pair comparisons allowed for one diff before it is called too complex. A typical contract
/// needs a few dozen; nested combinators compared member by member may need many more.
pub const DEFAULT_BUDGET: usize = 20_000;

/// Comparisons recurse once per nested pair of subschemas. Most stay shallow and run on the
/// caller's stack, nesting at most this deep (about 5 KiB a level in debug builds, so it fits the
/// 2 MiB of a tokio worker).
const MAX_PAIR_DEPTH_INLINE: usize = 192;
/// Recursive schemas compared with each other can nest pairs much deeper (Confluent's own
/// "twelve products" case needs about 300): a comparison that reaches the inline limit is run
/// again on a thread of its own with this much stack (reserved address space, committed only as
/// used), nesting at most `MAX_PAIR_DEPTH` deep before it is called too complex.
const COMPARISON_STACK_BYTES: usize = 256 << 20;
const MAX_PAIR_DEPTH: usize = 4_096;

/// A compatibility level, as contracts declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "none" => Self::None,
            "backward" => Self::Backward,
            "backward-transitive" => Self::BackwardTransitive,
            "forward" => Self::Forward,
            "forward-transitive" => Self::ForwardTransitive,
            "full" => Self::Full,
            "full-transitive" => Self::FullTransitive,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Backward => "backward",
            Self::BackwardTransitive => "backward-transitive",
            Self::Forward => "forward",
            Self::ForwardTransitive => "forward-transitive",
            Self::Full => "full",
            Self::FullTransitive => "full-transitive",
        }
    }

    /// The directions this level checks.
    pub fn directions(self) -> &'static [Direction] {
        match self {
            Self::None => &[],
            Self::Backward | Self::BackwardTransitive => &[Direction::Backward],
            Self::Forward | Self::ForwardTransitive => &[Direction::Forward],
            Self::Full | Self::FullTransitive => &[Direction::Backward, Direction::Forward],
        }
    }

    /// Whether every earlier version is checked, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }
}

/// Which differences count as compatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Confluent's default (`COMPATIBLE_CHANGES_STRICT`).
    #[default]
    Strict,
    /// Confluent 8.0.3+'s `COMPATIBLE_CHANGES_LENIENT`: also accepts declaring or dropping
    /// optional properties of open content models and narrowing `additionalProperties`.
    Lenient,
}

/// Which way documents must stay valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Documents of the earlier version stay valid under the new one.
    Backward,
    /// Documents of the new version are valid under the earlier one.
    Forward,
}

/// One difference between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// Confluent's path form: `#/` then keywords and names, e.g. `#/properties/address/required/zip`.
    pub path: String,
    /// Whether this difference keeps documents valid, under the policy of the diff.
    pub compatible: bool,
}

/// Why a comparison could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecided {
    #[error("too complex to decide: more schema pairs to compare than the budget allows")]
    TooComplex,
    #[error("$ref {0:?} does not resolve inside the registry")]
    UnresolvedReference(String),
    /// Comparisons nested deeper than the stack they run on allows; `diff` retries these on a
    /// larger stack and reports `TooComplex` if that is not enough, so callers never see it.
    #[error("too complex to decide: comparisons nest too deep")]
    TooDeep,
}

/// The `$ref` world: every registry document by absolute URI (without fragment).
#[derive(Debug, Clone, Copy)]
pub struct Schemas<'a> {
    documents: &'a BTreeMap<String, Value>,
}

impl<'a> Schemas<'a> {
    pub fn new(documents: &'a BTreeMap<String, Value>) -> Self {
        Schemas { documents }
    }
}

/// The `$ref`s one schema document makes, each once: only where schemas stand (a `$ref` inside
/// `enum`, `const`, `default` or `examples` is data). A caller that reads schemas from files loads
/// what these reach, so that [`Schemas`] holds every document a comparison needs.
pub fn references(schema: &Value) -> Vec<&str> {
    model::references(schema)
}

/// One version of a contract: its number, schema, and the URI its `$ref`s resolve from
/// (`contextgate://registry/contracts/<ctx>/<Name>/v<N>.json`).
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    pub number: u32,
    pub schema: &'a Value,
    pub uri: &'a str,
    /// The version's validator, when the caller has compiled it (registered versions have one,
    /// and so has a candidate being registered): counterexamples are then checked with it rather
    /// than compiling the schema again, which is most of a counterexample's cost.
    pub validator: Option<&'a jsonschema::Validator>,
}

impl<'a> Version<'a> {
    /// A version without a compiled validator (one is compiled if a counterexample is needed).
    pub fn new(number: u32, schema: &'a Value, uri: &'a str) -> Self {
        Version {
            number,
            schema,
            uri,
            validator: None,
        }
    }
}

/// The differences between two versions in the backward sense: documents valid under
/// `original` must stay valid under `update`. For the forward direction swap the arguments.
pub fn diff(
    original: &Version<'_>,
    update: &Version<'_>,
    schemas: &Schemas<'_>,
    policy: Policy,
) -> Result<Vec<Change>, Undecided> {
    diff_with_budget(original, update, schemas, policy, DEFAULT_BUDGET)
}

/// [`diff`] with an explicit budget of pair comparisons.
pub fn diff_with_budget(
    original: &Version<'_>,
    update: &Version<'_>,
    schemas: &Schemas<'_>,
    policy: Policy,
    budget: usize,
) -> Result<Vec<Change>, Undecided> {
    match diff_within(
        original,
        update,
        schemas,
        policy,
        budget,
        MAX_PAIR_DEPTH_INLINE,
    ) {
        Err(Undecided::TooDeep) => {
            let deep = on_big_stack(|| {
                diff_within(original, update, schemas, policy, budget, MAX_PAIR_DEPTH)
            });
            match deep {
                Some(Err(Undecided::TooDeep)) | None => Err(Undecided::TooComplex),
                Some(decided) => decided,
            }
        }
        decided => decided,
    }
}

/// Runs `work` on a thread with `COMPARISON_STACK_BYTES` of stack; `None` if none can start.
fn on_big_stack<T: Send>(work: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("compat".into())
            .stack_size(COMPARISON_STACK_BYTES)
            .spawn_scoped(scope, work)
            .ok()?;
        Some(
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    })
}

/// One diff with a given nesting limit; `TooDeep` when the limit was reached.
fn diff_within(
    original: &Version<'_>,
    update: &Version<'_>,
    schemas: &Schemas<'_>,
    policy: Policy,
    budget: usize,
    max_depth: usize,
) -> Result<Vec<Change>, Undecided> {
    model::check_references(schemas, at(original))?;
    model::check_references(schemas, at(update))?;
    let mut cx = diff::Cx::new(schemas, policy, budget, max_depth);
    let found = loop {
        let mut found = Vec::new();
        diff::compare(&mut cx, &mut found, at(original), at(update));
        if let Some(undecided) = cx.undecided.take() {
            return Err(undecided);
        }
        if !cx.refine() {
            break found;
        }
    };
    Ok(found
        .into_iter()
        .map(|found| Change {
            compatible: found.kind.is_compatible(policy),
            kind: found.kind,
            path: found.path,
        })
        .collect())
}

fn at<'a>(version: &Version<'a>) -> model::At<'a> {
    model::At::new(version.schema, model::Doc::new(version.uri, version.schema))
}

/// A difference found while checking a level, with the comparison it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportedChange {
    /// The earlier version compared with.
    pub against: u32,
    pub direction: Direction,
    #[serde(flatten)]
    pub change: Change,
}

/// The answer for one new version at one level.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when every required comparison was decided and found compatible.
    pub compatible: bool,
    pub level: Level,
    pub policy: Policy,
    /// Every difference of every comparison made (compatible ones too).
    pub changes: Vec<ReportedChange>,
    /// A checked document showing the first incompatibility, when one was found.
    pub counterexample: Option<Counterexample>,
    /// Why some comparison could not be decided (then `compatible` is false).
    pub undecided: Option<String>,
}

/// Checks a new version against the history of its contract at a level. `history` may be in
/// any order; the latest earlier version is the one with the highest number.
pub fn check(
    history: &[Version<'_>],
    new: &Version<'_>,
    level: Level,
    policy: Policy,
    schemas: &Schemas<'_>,
) -> Report {
    let mut report = Report {
        compatible: true,
        level,
        policy,
        changes: Vec::new(),
        counterexample: None,
        undecided: None,
    };
    let earlier: Vec<&Version<'_>> = if level.is_transitive() {
        history.iter().collect()
    } else {
        history
            .iter()
            .max_by_key(|version| version.number)
            .into_iter()
            .collect()
    };
    for previous in earlier {
        for direction in level.directions() {
            let pair = Pair {
                previous,
                new,
                direction: *direction,
            };
            check_pair(&mut report, &pair, policy, schemas);
        }
    }
    report
}

/// One comparison a level asks for.
struct Pair<'v, 'a> {
    previous: &'v Version<'a>,
    new: &'v Version<'a>,
    direction: Direction,
}

fn check_pair(report: &mut Report, pair: &Pair<'_, '_>, policy: Policy, schemas: &Schemas<'_>) {
    let Pair {
        previous,
        new,
        direction,
    } = *pair;
    let (original, update) = match direction {
        Direction::Backward => (previous, new),
        Direction::Forward => (new, previous),
    };
    match diff(original, update, schemas, policy) {
        Ok(changes) => {
            let incompatible = changes.iter().any(|change| !change.compatible);
            report
                .changes
                .extend(changes.into_iter().map(|change| ReportedChange {
                    against: previous.number,
                    direction,
                    change,
                }));
            if incompatible {
                report.compatible = false;
                if report.counterexample.is_none() {
                    report.counterexample = counterexample::search(original, update, schemas);
                }
            }
        }
        Err(undecided) => {
            report.compatible = false;
            report.undecided.get_or_insert_with(|| {
                format!("against v{} ({direction:?}): {undecided}", previous.number)
            });
        }
    }
}

/// Searches a document valid under `original` and rejected by `update`, checked with the real
/// validators; `None` when none is found within the search's limits.
pub fn counterexample(
    original: &Version<'_>,
    update: &Version<'_>,
    schemas: &Schemas<'_>,
) -> Option<Counterexample> {
    counterexample::search(original, update, schemas)
}
