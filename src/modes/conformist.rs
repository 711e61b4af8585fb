//! Conformist: downstream takes upstream's model as it is. Validate against the contract
//! version the message declares (and the route accepts), forward the input bytes unchanged.

use super::{accepted, emit};
use crate::message::Message;
use crate::registry::Route;
use crate::stages::receive::Input;
use crate::stages::{Failure, Stage, validate};

pub fn run(route: &Route, input: &Input) -> Result<Vec<Message>, Failure> {
    validate::document(accepted(route, input), &input.data, Stage::ValidateIn)?;
    Ok(emit(
        route,
        input,
        &input.contract,
        vec![input.message.data.clone()],
    ))
}
