//! Validate: check data against one contract version. Every error becomes a [`Problem`] with the
//! JSON pointer of the offending value and the schema keyword that failed.

use serde_json::Value;

use super::{Failure, Problem, Reason, Stage};
use crate::message::document::Document;
use crate::message::json::truncate;
use crate::registry::ContractVersion;

/// The most problems one failure lists.
pub const MAX_PROBLEMS: usize = 20;

/// Checks a parsed document against `contract`, in place. Only an invalid one is made a
/// `serde_json::Value` and checked again by [`against`], which lists its problems: the same
/// problems in the same order as for the value.
pub fn document(contract: &ContractVersion, data: &Document, stage: Stage) -> Result<(), Failure> {
    let _timed = super::timing::timed(stage);
    if contract.document_validator.is_valid(data.root()) {
        return Ok(());
    }
    against(contract, &data.to_value(), stage)
}

/// Checks `data` against `contract`; `stage` says whether this is the input or the output side.
pub fn against(contract: &ContractVersion, data: &Value, stage: Stage) -> Result<(), Failure> {
    let _timed = super::timing::timed(stage);
    if contract.validator.is_valid(data) {
        return Ok(());
    }
    let problems: Vec<Problem> = contract
        .validator
        .iter_errors(data)
        .take(MAX_PROBLEMS)
        .map(|error| Problem {
            pointer: Some(error.instance_path().to_string()),
            keyword: Some(error.kind().keyword().to_owned()),
            message: explain(&error),
        })
        .collect();
    let reason = match stage {
        Stage::ValidateOut => Reason::OutputContractViolation,
        _ => Reason::ContractViolation,
    };
    let mut failure = Failure::new(stage, reason, problems);
    failure.problems.insert(
        0,
        Problem::new(format!("the data is invalid against {}", contract.id)),
    );
    Err(failure)
}

/// What an error says, for people: a failed `anyOf`/`oneOf` names what failed in each branch,
/// the closest branch first (fewest failures; a branch that fails only on the value's type is
/// the furthest), instead of repeating the value; nested ones are explained two levels deep.
pub fn explain(error: &jsonschema::ValidationError<'_>) -> String {
    let text = explain_at(error, 0);
    truncate(&text, 1000).to_owned()
}

fn explain_at(error: &jsonschema::ValidationError<'_>, depth: usize) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let (keyword, branches) = match error.kind() {
        Kind::AnyOf { context } => ("anyOf", context),
        Kind::OneOfNotValid { context } => ("oneOf", context),
        Kind::OneOfMultipleValid { context } => {
            let valid: Vec<String> = (1..)
                .zip(context)
                .filter(|(_, errors)| errors.is_empty())
                .map(|(number, _)| number.to_string())
                .collect();
            return format!(
                "valid under more than one branch of oneOf ({}): exactly one must hold",
                valid.join(", ")
            );
        }
        _ => return truncate(&error.to_string(), 300).to_owned(),
    };
    if depth >= 2 || branches.is_empty() {
        return format!("no branch of {keyword} holds");
    }
    let here = error.instance_path().to_string();
    // A branch failing only because the value is of another type is the furthest.
    let far = |errors: &[jsonschema::ValidationError<'static>]| {
        errors.len() == 1
            && matches!(errors[0].kind(), Kind::Type { .. })
            && errors[0].instance_path().to_string() == here
    };
    let mut order: Vec<(usize, &Vec<jsonschema::ValidationError<'static>>)> =
        (1..).zip(branches).collect();
    order.sort_by_key(|(number, errors)| (far(errors), errors.len(), *number));
    let parts: Vec<String> = order
        .iter()
        .map(|(number, errors)| {
            let mut reasons: Vec<String> = errors
                .iter()
                .take(3)
                .map(|inner| {
                    let path = inner.instance_path().to_string();
                    let message = truncate(&explain_at(inner, depth + 1), 200).to_owned();
                    match path.strip_prefix(here.as_str()) {
                        Some("") | None => message,
                        Some(below) => format!("at {below}: {message}"),
                    }
                })
                .collect();
            if errors.len() > 3 {
                reasons.push(format!("and {} more", errors.len() - 3));
            }
            format!("branch {number}: {}", reasons.join("; "))
        })
        .collect();
    format!(
        "no branch of {keyword} holds; closest first — {}",
        parts.join(" | ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first_error(schema: &Value, instance: &Value) -> String {
        let validator = jsonschema::validator_for(schema).unwrap();
        let error = validator.iter_errors(instance).next().unwrap();
        explain(&error)
    }

    #[test]
    fn a_failed_one_of_names_what_failed_in_each_branch_closest_first() {
        let schema = json!({"oneOf": [
            {"type": "null"},
            {"type": "object", "required": ["login", "id"],
             "properties": {"login": {"type": "string"}, "id": {"type": "integer"}}}
        ]});
        let text = first_error(&schema, &json!({"login": "octocat", "id": "seven"}));
        assert_eq!(
            text,
            "no branch of oneOf holds; closest first — branch 2: at /id: \"seven\" is not of \
             type \"integer\" | branch 1: {\"id\":\"seven\",\"login\":\"octocat\"} is not of type \"null\""
        );
        let text = first_error(
            &json!({"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}]}),
            &json!("long"),
        );
        assert!(
            text.starts_with("no branch of anyOf holds; closest first — branch 1: \"long\" is longer than 2 characters | branch 2:"),
            "{text}"
        );
        let text = first_error(
            &json!({"oneOf": [{"type": "string"}, {"maxLength": 5}]}),
            &json!("ab"),
        );
        assert_eq!(
            text,
            "valid under more than one branch of oneOf (1, 2): exactly one must hold"
        );
    }
}
