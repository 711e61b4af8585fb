//! The four relationship modes. [`run`] matches a route's mode to exactly one of them; each is a
//! short composition of stages read top to bottom. Modes return messages and never publish.
//!
//! # Layout
//! - [`conformist`]: validate against the declared upstream version → forward unchanged.
//! - [`open_host`]: validate → upstream's translator → validate the published contract; computed
//!   once per input and fanned out to every open-host route using the same translator.
//! - [`anti_corruption`]: validate upstream's contract → downstream's translator → validate
//!   downstream's contract.
//! - [`enrich`]: validate → look-ups → translator (or merge) → validate the enriched result.
//!
//! A translating mode's CPU-bound work (validating, translating) runs with one of the process's
//! script permits (`scripting::script_permit`), taken here: open-host and anti-corruption hold
//! one for their whole run; enrich holds one for validate-in and another for what follows its
//! look-ups, none while they wait. Conformist runs no script and only validates, as receive
//! already did: it takes none, so that routes that only move bytes never queue behind
//! translators. Whoever calls [`run`] holds none.

use bytes::Bytes;
use serde_json::Value;

use crate::message::{self, MAX_MESSAGE_BYTES, Message};
use crate::registry::{ContractId, ContractVersion, Route, Translator, TranslatorId};
use crate::scripting;
use crate::stages::receive::Input;
use crate::stages::translate::{self, Meta, Outputs};
use crate::stages::{Failure, Problem, Reason, Stage, validate};

pub mod conformist;
pub mod open_host;
//
pub mod anti_corruption;
pub mod enrich;

pub use crate::registry::Mode;

/// Work shared between the routes of one input: open-host translations, computed once.
#[derive(Debug, Default)]
pub struct Shared {
    open_host: Vec<(TranslatorId, Result<Vec<Bytes>, Failure>)>,
}

impl Shared {
    /// How many open-host translations were computed (one per translator, however many routes).
    pub fn n_translations(&self) -> usize {
        self.open_host.len()
    }
}

/// Runs one route on one input: the messages to forward (none for a drop by the translator).
pub async fn run(
    route: &Route,
    input: &Input,
    shared: &mut Shared,
) -> Result<Vec<Message>, Failure> {
    match route.mode {
        Mode::Conformist => conformist::run(route, input),
        Mode::OpenHost => {
            let _permit = scripting::script_permit().await;
            open_host::run(route, input, shared)
        }
        Mode::AntiCorruption => {
            let _permit = scripting::script_permit().await;
            anti_corruption::run(route, input)
        }
        Mode::Enrich => enrich::run(route, input).await,
    }
}

/// The accepted contract version of this input; receive only hands a route inputs it accepts.
fn accepted<'a>(route: &'a Route, input: &Input) -> &'a ContractVersion {
    route
        .accepted(&input.contract)
        .expect("receive picks only routes that accept the input's contract")
}

/// The translator on the input (already validated), with the input's numbers checked first.
fn translate_input(
    translator: &Translator,
    input: &Input,
    meta: impl FnOnce() -> Meta,
) -> Result<Outputs, Failure> {
    translate::check_numbers(&input.message.data, input.has_wide_numbers)?;
    let meta = if translator.takes_meta {
        meta()
    } else {
        Meta::default()
    };
    translate::run_document(translator, &input.data, &meta)
}

/// Validate-out each output and serialize it. Translated outputs give their room in the
/// process's budget back once this returns: what is left of them is the serialized messages,
/// each within the message cap.
fn validate_outputs(
    contract: &ContractVersion,
    outputs: impl IntoIterator<Item = Value>,
) -> Result<Vec<Bytes>, Failure> {
    outputs
        .into_iter()
        .map(|output| {
            validate::against(contract, &output, Stage::ValidateOut)?;
            let bytes = serde_json::to_vec(&output).expect("a JSON value always serializes");
            if bytes.len() > MAX_MESSAGE_BYTES {
                return Err(Failure::one(
                    Stage::ValidateOut,
                    Reason::TooLarge,
                    Problem::new(format!(
                        "the output is {} bytes, over the gateway's cap of {MAX_MESSAGE_BYTES}",
                        bytes.len()
                    )),
                ));
            }
            Ok(Bytes::from(bytes))
        })
        .collect()
}

fn check_output_count(route: &Route, n_outputs: usize) -> Result<(), Failure> {
    if n_outputs <= route.max_outputs {
        return Ok(());
    }
    Err(Failure::one(
        Stage::Translate,
        Reason::TooManyOutputs,
        Problem::new(format!(
            "the translator emitted {n_outputs} messages; route {} allows at most {}",
            route.name, route.max_outputs
        )),
    ))
}

/// The messages a route emits: the input's attributes, with a deterministic id per route and
/// position, the output contract's type and dataschema, and trace context passed on.
fn emit(route: &Route, input: &Input, contract: &ContractId, outputs: Vec<Bytes>) -> Vec<Message> {
    outputs
        .into_iter()
        .enumerate()
        .map(|(index, data)| {
            let mut attributes = input.message.attributes.clone();
            attributes.id = message::output_id(&input.message.attributes, &route.name, index);
            if contract != &input.contract {
                attributes.event_type = contract.name().event_type();
                attributes.dataschema = contract.dataschema();
            }
            Message { attributes, data }
        })
        .collect()
}
