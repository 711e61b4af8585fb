//! Anti-corruption: downstream's translator turns upstream's published contract into
//! downstream's own model. Validate upstream's contract, translate, validate downstream's.

use super::{accepted, check_output_count, emit, translate_input, validate_outputs};
use crate::message::Message;
use crate::registry::Route;
use crate::stages::receive::Input;
use crate::stages::translate::Meta;
use crate::stages::{Failure, Stage, validate};

pub fn run(route: &Route, input: &Input) -> Result<Vec<Message>, Failure> {
    let translator = route
        .translator
        .as_ref()
        .expect("the loader refuses anti-corruption routes without a translator");
    validate::document(accepted(route, input), &input.data, Stage::ValidateIn)?;
    let outputs = translate_input(translator, input, || {
        Meta::from_message(&input.message.attributes, Default::default())
    })?;
    check_output_count(route, outputs.len())?;
    let outputs = validate_outputs(&translator.output, outputs)?;
    Ok(emit(route, input, &translator.output.id, outputs))
}
