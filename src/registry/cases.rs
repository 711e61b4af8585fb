//! Translator test cases: read from `<name>.cases.json`, run at load (and, for the registration
//! API, before a registration takes its turn), within a count cap and a time budget per
//! translator.
//!
//! A case's verdict depends only on the script, the case and the two contract versions (their
//! schemas and every schema they reach through `$ref`). Passing verdicts are remembered by a
//! digest of exactly that, with the time the case took, so a load runs only the cases a change
//! can affect: registering one context's translator or contract never re-runs another context's
//! cases. The time budget counts remembered cases at the time they took, so a translator's cases
//! stay within it however they were run. Failing verdicts are never remembered (a load that
//! fails changes nothing, and a case that ran out of time on a busy machine is run again).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::CaseFile;
use super::load::describe;
use super::names::TranslatorId;
use super::translator::{self, Case, Expectation, Translator};
use super::{Registry, RegistryProblem};
use crate::message::json::truncate;
use crate::stages::translate;

/// The most cases one translator may have.
pub const MAX_CASES: usize = 1_000;
/// The longest one translator's cases may take in all; past it the translator is refused.
pub const TIME_BUDGET: Duration = Duration::from_secs(5);
/// Passing verdicts remembered; past it the least recently used half is forgotten.
const MAX_REMEMBERED: usize = 100_000;

/// Where a translator's cases live, relative to the registry root.
pub fn file(id: &TranslatorId) -> PathBuf {
    PathBuf::from("translators")
        .join(id.context().as_str())
        .join(format!("{}.cases.json", id.name()))
}

/// The cases of a cases file's JSON, and a message for each thing wrong with it. Over
/// [`MAX_CASES`], no case is taken.
pub fn parse(value: Value) -> (Vec<Case>, Vec<String>) {
    let items = match value {
        Value::Array(items) => items,
        other => {
            let error = serde_json::from_value::<Vec<CaseFile>>(other)
                .err()
                .map_or_else(String::new, |error| error.to_string());
            return (Vec::new(), vec![format!("invalid cases file: {error}")]);
        }
    };
    if items.len() > MAX_CASES {
        return (
            Vec::new(),
            vec![format!(
                "{} cases, over the cap of {MAX_CASES} per translator: keep the cases that \
                 tell the behaviours apart",
                items.len()
            )],
        );
    }
    let mut cases = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let digest: [u8; 32] =
            Sha256::digest(serde_json::to_vec(&item).expect("a JSON value always serializes"))
                .into();
        let file: CaseFile = match serde_json::from_value(item) {
            Ok(file) => file,
            Err(error) => {
                problems.push(format!("invalid cases file: case {index}: {error}"));
                continue;
            }
        };
        let expect = match (
            file.expect,
            file.expect_many,
            file.expect_drop,
            file.expect_error,
        ) {
            (Some(one), None, None, None) => Expectation::One(one),
            (None, Some(many), None, None) => Expectation::Many(many),
            (None, None, Some(true), None) => Expectation::Drop,
            (None, None, None, Some(error)) => Expectation::Error(error),
            _ => {
                problems.push(format!(
                    "case {:?}: give exactly one of expect, expect_many, expect_drop: true, expect_error",
                    file.name
                ));
                continue;
            }
        };
        cases.push(Case {
            name: file.name,
            input: file.input,
            meta: file.meta.unwrap_or_default(),
            expect,
            digest,
        });
    }
    (cases, problems)
}

/// Runs `translator`'s cases, each unless its pass is remembered, and stops once they took
/// more than [`TIME_BUDGET`]: a message for each problem.
pub fn run(translator: &Translator) -> Vec<String> {
    let basis = basis(translator);
    let mut spent = Duration::ZERO;
    let mut problems = Vec::new();
    for (index, case) in translator.cases.iter().enumerate() {
        let key: [u8; 32] = Sha256::new()
            .chain_update(basis)
            .chain_update(case.digest)
            .finalize()
            .into();
        match remembered(&key) {
            Some(took) => spent += took,
            None => {
                let started = Instant::now();
                let found = run_one(translator, case);
                let took = started.elapsed();
                spent += took;
                if found.is_empty() {
                    remember(key, took);
                }
                problems.extend(found);
            }
        }
        if spent > TIME_BUDGET {
            problems.push(format!(
                "the cases of {} take more than {} s in all (stopped after {} of {}, {} ms): \
                 a translator's cases must run within {} s, so that a registration is answered \
                 in time; keep fewer or quicker cases",
                translator.id,
                TIME_BUDGET.as_secs(),
                index + 1,
                translator.cases.len(),
                spent.as_millis(),
                TIME_BUDGET.as_secs(),
            ));
            break;
        }
    }
    problems
}

/// Runs the cases of a translator about to be registered against the registry as it is now,
/// so that the registration's load finds their verdicts remembered: the problems found, placed
/// in the cases file. Nothing when the translator cannot be built here (a script that does not
/// compile, a contract the registry does not have): the registration's load says why.
pub fn rehearse(
    registry: &Registry,
    id: &TranslatorId,
    script: &str,
    input: &str,
    output: &str,
    cases: Vec<Value>,
) -> Vec<RegistryProblem> {
    let place = |messages: Vec<String>| {
        messages
            .into_iter()
            .map(|message| RegistryProblem::new(file(id), message))
            .collect::<Vec<_>>()
    };
    let (cases, problems) = parse(Value::Array(cases));
    if !problems.is_empty() {
        return place(problems);
    }
    let version = |text: &str| {
        super::ContractId::parse(text)
            .ok()
            .and_then(|id| registry.contract_version(&id).cloned())
    };
    let (Some(input), Some(output)) = (version(input), version(output)) else {
        return Vec::new();
    };
    let Ok(ast) = crate::scripting::engine().compile(script) else {
        return Vec::new();
    };
    let Ok(takes_meta) = translator::entry_point(&ast) else {
        return Vec::new();
    };
    let candidate = Translator {
        id: id.clone(),
        description: None,
        input,
        output,
        reads: crate::scripting::reads(&ast),
        ast: std::sync::Arc::new(ast),
        takes_meta,
        content_hash: translator::content_hash(script),
        cases,
    };
    place(run(&candidate))
}

/// What every case verdict of `translator` depends on besides the case itself.
fn basis(translator: &Translator) -> [u8; 32] {
    let mut basis = Sha256::new();
    basis.update(b"contextgate translator cases 1\0");
    basis.update(translator.content_hash.as_bytes());
    for version in [&translator.input, &translator.output] {
        basis.update(version.id.to_string().as_bytes());
        basis.update([0]);
        basis.update(version.fingerprint);
    }
    basis.finalize().into()
}

/// Passing verdicts by digest: how long the case took, and when it was last used.
static PASSED: LazyLock<Mutex<Remembered>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct Remembered {
    verdicts: HashMap<[u8; 32], (Duration, u64)>,
    uses: u64,
}

fn remembered(key: &[u8; 32]) -> Option<Duration> {
    let mut passed = PASSED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    passed.uses += 1;
    let now = passed.uses;
    let (took, used) = passed.verdicts.get_mut(key)?;
    *used = now;
    Some(*took)
}

fn remember(key: [u8; 32], took: Duration) {
    let mut passed = PASSED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    passed.uses += 1;
    let now = passed.uses;
    if passed.verdicts.len() >= MAX_REMEMBERED {
        let mut uses: Vec<u64> = passed.verdicts.values().map(|(_, used)| *used).collect();
        let (_, median, _) = uses.select_nth_unstable(MAX_REMEMBERED / 2);
        let median = *median;
        passed.verdicts.retain(|_, (_, used)| *used > median);
    }
    passed.verdicts.insert(key, (took, now));
}

/// One case: a message for each problem.
fn run_one(translator: &Translator, case: &Case) -> Vec<String> {
    try_case(translator, case).problems
}

/// What one case did: the translator's outputs or its error, and every way it missed its
/// expectation (none when it passed).
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct CaseRun {
    /// True when the case met its expectation and every output is valid.
    pub passed: bool,
    /// What the translator returned (none for a drop or an error).
    #[schema(value_type = Vec<Object>)]
    pub outputs: Vec<Value>,
    /// The translator's error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each way the case missed: an invalid input, an unexpected result, an invalid output.
    pub problems: Vec<String>,
}

/// Runs one case in the sandbox, as `contextgate check` and a load do, and says what it did.
pub fn try_case(translator: &Translator, case: &Case) -> CaseRun {
    let label = format!("case {:?}", case.name);
    let problems: Vec<String> = translator
        .input
        .validator
        .iter_errors(&case.input)
        .take(20)
        .map(|error| {
            format!(
                "{label}: input is invalid against {}: {}",
                translator.input.id,
                describe(&error)
            )
        })
        .collect();
    let mut run = CaseRun {
        problems,
        ..CaseRun::default()
    };
    if !run.problems.is_empty() {
        return run;
    }
    let meta = translate::Meta::from_case(&case.meta);
    let result = translate::run(translator, &case.input, &meta)
        .map(|outputs| outputs.into_iter().collect::<Vec<Value>>());
    let problems = &mut run.problems;
    match (&case.expect, &result) {
        (Expectation::Error(expected), Err(failure)) => {
            let text = failure.to_string();
            if !text.contains(expected.as_str()) {
                problems.push(format!(
                    "{label}: expected an error containing {expected:?}, got: {text}"
                ));
            }
        }
        (_, Err(failure)) => {
            problems.push(format!("{label}: the translator failed: {failure}"));
        }
        (Expectation::Error(expected), Ok(outputs)) => {
            problems.push(format!(
                "{label}: expected an error containing {expected:?}, got {} output(s)",
                outputs.len()
            ));
        }
        (Expectation::Drop, Ok(outputs)) => {
            if !outputs.is_empty() {
                problems.push(format!(
                    "{label}: expected a drop, got {} output(s)",
                    outputs.len()
                ));
            }
        }
        (Expectation::One(expected), Ok(outputs)) => {
            if outputs.len() != 1 || &outputs[0] != expected {
                problems.push(format!(
                    "{label}: {}",
                    difference(std::slice::from_ref(expected), outputs)
                ));
            }
            check_outputs(translator, &label, outputs, problems);
        }
        (Expectation::Many(expected), Ok(outputs)) => {
            if outputs[..] != expected[..] {
                problems.push(format!("{label}: {}", difference(expected, outputs)));
            }
            check_outputs(translator, &label, outputs, problems);
        }
    }
    match result {
        Ok(outputs) => run.outputs = outputs,
        Err(failure) => run.error = Some(failure.to_string()),
    }
    run.passed = run.problems.is_empty();
    run
}

/// A problem for each way an output breaks the translator's output contract.
fn check_outputs(
    translator: &Translator,
    label: &str,
    outputs: &[Value],
    problems: &mut Vec<String>,
) {
    for (index, output) in outputs.iter().enumerate() {
        for error in translator.output.validator.iter_errors(output).take(20) {
            problems.push(format!(
                "{label}: output {index} is invalid against {}: {}",
                translator.output.id,
                describe(&error)
            ));
        }
    }
}

fn difference(expected: &[Value], actual: &[Value]) -> String {
    let show = |values: &[Value]| {
        let text = serde_json::to_string(values).unwrap_or_default();
        truncate(&text, 600).to_owned()
    };
    format!("expected {}, got {}", show(expected), show(actual))
}
