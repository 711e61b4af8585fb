//! Translate: run a translator in the sandbox. Zero outputs is a drop, one is the usual case,
//! several where the route allows. The outputs hold their memory in the process's budget for
//! translations in flight until they are dropped.

use rhai::{CallFnOptions, Dynamic, EvalAltResult, Scope};
use serde_json::{Map, Value};

use super::{Failure, Problem, Reason, Stage};
use crate::message::Attributes;
use crate::message::document::Document;
use crate::message::json::{first_inexact_number, truncate};
use crate::registry::Translator;
use crate::registry::translator::ENTRY_POINT;
use crate::scripting::{self, ConversionError};

const MAX_ERROR_BYTES: usize = 500;

/// What a translator's `meta` parameter holds: `id`, `source`, `type`, `subject`, `time` and
/// `lookups` (the enrich look-up results by name; empty elsewhere).
#[derive(Debug, Clone, Default)]
pub struct Meta(Map<String, Value>);

impl Meta {
    pub fn from_message(attributes: &Attributes, lookups: Map<String, Value>) -> Self {
        let optional = |value: &Option<String>| value.clone().map_or(Value::Null, Value::String);
        let mut map = Map::new();
        map.insert("id".into(), attributes.id.clone().into());
        map.insert("source".into(), attributes.source.clone().into());
        map.insert("type".into(), attributes.event_type.clone().into());
        map.insert("subject".into(), optional(&attributes.subject));
        map.insert("time".into(), optional(&attributes.time));
        map.insert("lookups".into(), Value::Object(lookups));
        Self(map)
    }

    /// A test case's `meta`, with `lookups` defaulting to an empty map.
    pub fn from_case(case: &Map<String, Value>) -> Self {
        let mut map = case.clone();
        map.entry("lookups")
            .or_insert_with(|| Value::Object(Map::new()));
        Self(map)
    }
}

/// Refuses input data holding a number the translator could not hold exactly. `has_wide_numbers`
/// comes from the strict parser; the raw text is scanned only when it is set.
pub fn check_numbers(raw: &[u8], has_wide_numbers: bool) -> Result<(), Failure> {
    if !has_wide_numbers {
        return Ok(());
    }
    match first_inexact_number(raw) {
        None => Ok(()),
        Some(number) => Err(Failure::one(
            Stage::Translate,
            Reason::InexactNumber,
            Problem::new(format!(
                "the number {number} cannot be held exactly by a translator \
                 (64-bit integers and doubles only); it would have been rounded"
            )),
        )),
    }
}

/// What a translator run returned: the outputs' data (none for a drop), read as a slice. They
/// hold their memory in the process's budget for translations in flight (see `scripting`) until
/// they are dropped; consumed with `into_iter`, until the iterator is dropped, so that whoever
/// validates and serializes them gives the room back when that is done.
#[derive(Debug)]
pub struct Outputs {
    values: Vec<Value>,
    room: scripting::Conversion<'static>,
}

impl Outputs {
    /// The memory the outputs hold in the process's budget.
    pub fn held(&self) -> usize {
        self.room.held()
    }
}

impl std::ops::Deref for Outputs {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        &self.values
    }
}

impl IntoIterator for Outputs {
    type Item = Value;
    type IntoIter = IntoOutputs;

    fn into_iter(self) -> IntoOutputs {
        IntoOutputs {
            values: self.values.into_iter(),
            _room: self.room,
        }
    }
}

/// The outputs by value, with their room until dropped.
#[derive(Debug)]
pub struct IntoOutputs {
    // Dropped first: the memory goes, then its room.
    values: std::vec::IntoIter<Value>,
    _room: scripting::Conversion<'static>,
}

impl Iterator for IntoOutputs {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        self.values.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.values.size_hint()
    }
}

/// Runs `translator` on `data`: the outputs' data, none for a drop.
pub fn run(translator: &Translator, data: &Value, meta: &Meta) -> Result<Outputs, Failure> {
    let input = scripting::to_dynamic(data).map_err(conversion_failure)?;
    call(translator, input, meta)
}

/// [`run`] on an input's parsed document, converted for the script without a
/// `serde_json::Value` in between, and only as far as the script reads it
/// (`Translator::reads`): what it sees, and the errors, are the same.
pub fn run_document(
    translator: &Translator,
    data: &Document,
    meta: &Meta,
) -> Result<Outputs, Failure> {
    let input = scripting::document_to_dynamic_reading(data, &translator.reads)
        .map_err(conversion_failure)?;
    call(translator, input, meta)
}

fn call(translator: &Translator, input: Dynamic, meta: &Meta) -> Result<Outputs, Failure> {
    let _timed = super::timing::timed(Stage::Translate);
    let mut scope = Scope::new();
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
    let engine = scripting::engine();
    let call = || {
        scripting::with_deadline(|| {
            if translator.takes_meta {
                let meta = scripting::to_dynamic(&Value::Object(meta.0.clone()))
                    .map_err(|error| Box::new(EvalAltResult::from(error.to_string())))?;
                engine.call_fn_with_options::<Dynamic>(
                    options,
                    &mut scope,
                    &translator.ast,
                    ENTRY_POINT,
                    (input, meta),
                )
            } else {
                engine.call_fn_with_options::<Dynamic>(
                    options,
                    &mut scope,
                    &translator.ast,
                    ENTRY_POINT,
                    (input,),
                )
            }
        })
    };
    // Rhai treats every panic as a bug; one must still not take the gateway down.
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|_| {
            Err(Box::new(EvalAltResult::from(
                "the script engine failed on this input",
            )))
        });
    let returned = result.map_err(|error| script_failure(&error))?;
    outputs(&returned)
}

fn outputs(returned: &Dynamic) -> Result<Outputs, Failure> {
    // One conversion for the run: its outputs are bounded together, and by the process budget.
    let mut room = scripting::Conversion::new();
    if returned.is_unit() {
        return Ok(Outputs {
            values: Vec::new(),
            room,
        });
    }
    let not_a_message = |what: &str| {
        Failure::one(
            Stage::Translate,
            Reason::ScriptError,
            Problem::new(format!(
                "translate returned {what}: expected a map (one message), an array of maps \
                 (several) or () (drop)"
            )),
        )
    };
    if returned.is_map() {
        let output = room.output(returned).map_err(conversion_failure)?;
        return Ok(Outputs {
            values: vec![output],
            room,
        });
    }
    if returned.is_array() {
        let values = returned
            .as_array_ref()
            .expect("is_array said this is an array");
        let mut outputs = Vec::with_capacity(values.len());
        for value in values.iter() {
            if !value.is_map() {
                return Err(not_a_message(&format!(
                    "an array holding a {}",
                    value.type_name()
                )));
            }
            outputs.push(room.output(value).map_err(conversion_failure)?);
        }
        return Ok(Outputs {
            values: outputs,
            room,
        });
    }
    Err(not_a_message(&format!("a {}", returned.type_name())))
}

fn conversion_failure(error: ConversionError) -> Failure {
    let reason = match &error {
        ConversionError::TooDeep { .. } => Reason::OutputTooDeep,
        ConversionError::InexactNumber { .. } => Reason::InexactNumber,
        ConversionError::NotJson { .. } => Reason::ScriptError,
        ConversionError::TooLarge { .. } | ConversionError::TooLargeInMemory { .. } => {
            Reason::OutputTooLarge
        }
        ConversionError::Busy { .. } => Reason::TranslationBusy,
    };
    let failure = Failure::one(Stage::Translate, reason, Problem::new(error.to_string()));
    match error {
        ConversionError::Busy { .. } => failure.transient(None),
        _ => failure,
    }
}

fn script_failure(error: &EvalAltResult) -> Failure {
    let inner = error.unwrap_inner();
    let reason = match inner {
        EvalAltResult::ErrorTerminated(..) | EvalAltResult::ErrorTooManyOperations(..) => {
            Reason::ScriptTimeout
        }
        EvalAltResult::ErrorDataTooLarge(..)
        | EvalAltResult::ErrorStackOverflow(..)
        | EvalAltResult::ErrorTooManyVariables(..)
        | EvalAltResult::ErrorTooManyModules(..) => Reason::ScriptLimit,
        _ => Reason::ScriptError,
    };
    let text = match inner {
        EvalAltResult::ErrorRuntime(thrown, _) => format!("the translator threw: {thrown}"),
        EvalAltResult::ErrorTerminated(..) => format!(
            "the translator ran longer than {} ms",
            scripting::MAX_RUN_TIME.as_millis()
        ),
        EvalAltResult::ErrorTooManyOperations(..) => format!(
            "the translator ran more than {} operations",
            scripting::MAX_OPERATIONS
        ),
        other => other.to_string(),
    };
    let mut message = truncate(&text, MAX_ERROR_BYTES).to_owned();
    if let Some(position) = scripting::describe_position(error.position())
        .or_else(|| scripting::describe_position(inner.position()))
    {
        message = format!("{message} (at {position})");
    }
    Failure::one(Stage::Translate, reason, Problem::new(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_hold_their_memory_in_the_process_budget_until_they_are_dropped() {
        // A 10 000-item array shared by 50 keys: 16 MB of values once converted.
        let returned = scripting::engine()
            .eval::<Dynamic>(
                "let a = []; for i in 0..10000 { a.push(1); } \
                 let m = #{}; for i in 0..50 { m[\"k\" + i] = a; } m",
            )
            .unwrap();

        let outputs = outputs(&returned).unwrap();

        // Still held once the run returned, and while the outputs are validated one by one.
        assert!(outputs.held() >= 50 * 10_000 * size_of::<Value>());
        let held = outputs.held();
        assert!(scripting::translation_memory_in_flight() >= held);
        let mut values = outputs.into_iter();
        let first = values.next().expect("one output");
        assert_eq!(first.as_object().map(Map::len), Some(50));
        assert!(scripting::translation_memory_in_flight() >= held);
        drop(values);
    }
}
