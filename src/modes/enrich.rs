//! Enrich: downstream wants more than upstream provides. Validate, run the route's look-ups,
//! then hand message and results to the route's translator — or, without one, merge the results
//! into the data under the look-ups' names — and validate the enriched result. A script permit
//! is held for validate-in and again for what follows the look-ups, never while they wait: look-ups
//! of many inputs run side by side while the translators take turns.

use serde_json::Value;

use super::{accepted, check_output_count, emit, translate_input, validate_outputs};
use crate::message::Message;
use crate::registry::Route;
use crate::scripting;
use crate::stages::receive::Input;
use crate::stages::translate::{self, Meta};
use crate::stages::{Failure, Problem, Reason, Stage, lookup, validate};

pub async fn run(route: &Route, input: &Input) -> Result<Vec<Message>, Failure> {
    {
        let _permit = scripting::script_permit().await;
        validate::document(accepted(route, input), &input.data, Stage::ValidateIn)?;
    }
    let data = input.data.to_value();
    let results = lookup::fetch_all(route, &data).await?;
    let output = route
        .output
        .as_ref()
        .expect("the loader gives every enrich route an output contract");
    let _permit = scripting::script_permit().await;
    let outputs = match &route.translator {
        Some(translator) => {
            let outputs = translate_input(translator, input, || {
                Meta::from_message(&input.message.attributes, results)
            })?;
            check_output_count(route, outputs.len())?;
            validate_outputs(output, outputs)?
        }
        None => validate_outputs(output, [merge(input, data, results)?])?,
    };
    Ok(emit(route, input, &output.id, outputs))
}

/// The input data with each look-up result under its name.
fn merge(
    input: &Input,
    data: Value,
    results: serde_json::Map<String, Value>,
) -> Result<Value, Failure> {
    // The merged data is re-serialized: its numbers must survive that exactly.
    translate::check_numbers(&input.message.data, input.has_wide_numbers).map_err(|failure| {
        Failure {
            stage: Stage::Enrich,
            ..failure
        }
    })?;
    let Value::Object(mut data) = data else {
        return Err(Failure::one(
            Stage::Enrich,
            Reason::EnrichmentFailed,
            Problem::new("only object data can have look-up results merged into it"),
        ));
    };
    for (name, value) in results {
        if data.contains_key(&name) {
            return Err(Failure::one(
                Stage::Enrich,
                Reason::EnrichmentFailed,
                Problem::at(
                    format!("/{name}"),
                    format!(
                        "the data already has a field {name:?}: the look-up result would overwrite it"
                    ),
                ),
            ));
        }
        data.insert(name, value);
    }
    Ok(Value::Object(data))
}
