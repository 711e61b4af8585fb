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
    if contract.document_validator.is_valid(data.root()) {
        return Ok(());
    }
    against(contract, &data.to_value(), stage)
}

/// Checks `data` against `contract`; `stage` says whether this is the input or the output side.
pub fn against(contract: &ContractVersion, data: &Value, stage: Stage) -> Result<(), Failure> {
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
            message: truncate(&error.to_string(), 300).to_owned(),
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
