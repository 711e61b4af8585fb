//! Open-host: upstream's translator turns its internal domain event into its published
//! language. The result is the same for every consumer, so it is computed once per input and
//! fanned out to every open-host route that uses the same translator.

use super::{Shared, check_output_count, emit, translate_input, validate_outputs};
use crate::message::Message;
use crate::registry::Route;
use crate::stages::receive::Input;
use crate::stages::translate::Meta;
use crate::stages::{Failure, Stage, validate};

pub fn run(route: &Route, input: &Input, shared: &mut Shared) -> Result<Vec<Message>, Failure> {
    let translator = route
        .translator
        .as_ref()
        .expect("the loader refuses open-host routes without a translator");
    let position = shared
        .open_host
        .iter()
        .position(|(id, _)| id == &translator.id);
    let translated = match position {
        Some(position) => &shared.open_host[position].1,
        None => {
            let result = validate::document(&translator.input, &input.data, Stage::ValidateIn)
                .and_then(|()| {
                    translate_input(translator, input, || {
                        Meta::from_message(&input.message.attributes, Default::default())
                    })
                })
                .and_then(|outputs| validate_outputs(&translator.output, outputs));
            shared.open_host.push((translator.id.clone(), result));
            &shared.open_host.last().expect("just pushed").1
        }
    };
    let outputs = translated.clone()?;
    check_output_count(route, outputs.len())?;
    Ok(emit(route, input, &translator.output.id, outputs))
}
