//! The flow of one message, one verb per module, and the failures each stage can report.
//!
//! Failures are data: a [`Failure`] names its [`Stage`], a machine-readable [`Reason`] and
//! every [`Problem`] found, each with the JSON pointer of the offending value where there is one.
//! The route's policy (in `pipeline`) turns a failure into an outcome.
//!
//! # Layout, in the order a message meets them
//! - [`receive`]: decode and pick the routes (an event fans out, a command goes to one route).
//! - [`validate`]: check a message against a contract version.
//! - [`translate`]: run a translator in the sandbox: zero, one or many outputs.
//! - [`lookup`]: the enrich stage's HTTP look-ups, cached.
//!
//! [`timing`] times each stage of a run while a trace records it.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub mod receive;
pub mod validate;
//
pub mod lookup;
pub mod translate;
//
pub mod timing;

/// Where in the flow a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Decode,
    ValidateIn,
    Translate,
    Enrich,
    ValidateOut,
    Publish,
}

impl Stage {
    /// Every stage, in flow order.
    pub const ALL: [Stage; 6] = [
        Stage::Decode,
        Stage::ValidateIn,
        Stage::Translate,
        Stage::Enrich,
        Stage::ValidateOut,
        Stage::Publish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::ValidateIn => "validate-in",
            Stage::Translate => "translate",
            Stage::Enrich => "enrich",
            Stage::ValidateOut => "validate-out",
            Stage::Publish => "publish",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message failed, as a short stable code for dead-letter headers and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not JSON, not UTF-8, empty, or nested too deep.
    ParseError,
    /// The same key twice in one object.
    DuplicateKey,
    /// Over the gateway's size cap.
    TooLarge,
    /// Not a CloudEvent, or a required attribute is missing or malformed.
    InvalidEnvelope,
    /// A content type or encoding the gateway does not take.
    UnsupportedEncoding,
    /// `dataschema` names no contract version of the registry, or `type` does not match it.
    UnknownContract,
    /// A command that matched no route, or more than one.
    Unroutable,
    /// The sending context does not own the event it published.
    NotOwner,
    /// The data is invalid against the contract version it claims (or the route accepts).
    ContractViolation,
    /// The translator threw, or returned something that is not a message.
    ScriptError,
    /// The translator ran out of its time or operation budget.
    ScriptTimeout,
    /// The translator hit a size, depth or call limit of the sandbox.
    ScriptLimit,
    /// A number the translator cannot hold exactly (it would have been rounded).
    InexactNumber,
    /// The translator returned a value nested deeper than the converter allows.
    OutputTooDeep,
    /// The translator returned more than the message cap (1 MiB) as JSON in one output, or
    /// more than its run may return together; counted while converting.
    OutputTooLarge,
    /// The gateway's room for translations in flight stayed full: transient.
    TranslationBusy,
    /// The translator emitted more messages than the route allows.
    TooManyOutputs,
    /// The translated or enriched result is invalid against the output contract.
    OutputContractViolation,
    /// A look-up could not be answered (refused, timed out, 5xx): transient.
    EnrichmentUnavailable,
    /// A look-up answered, but with something unusable (4xx, not JSON, too large).
    EnrichmentFailed,
    /// The broker refused an output (`basic.nack`) or did not confirm it in time: transient.
    PublishFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ParseError => "parse_error",
            Reason::DuplicateKey => "duplicate_key",
            Reason::TooLarge => "too_large",
            Reason::InvalidEnvelope => "invalid_envelope",
            Reason::UnsupportedEncoding => "unsupported_encoding",
            Reason::UnknownContract => "unknown_contract",
            Reason::Unroutable => "unroutable",
            Reason::NotOwner => "not_owner",
            Reason::ContractViolation => "contract_violation",
            Reason::ScriptError => "script_error",
            Reason::ScriptTimeout => "script_timeout",
            Reason::ScriptLimit => "script_limit",
            Reason::InexactNumber => "inexact_number",
            Reason::OutputTooDeep => "output_too_deep",
            Reason::OutputTooLarge => "output_too_large",
            Reason::TranslationBusy => "translation_busy",
            Reason::TooManyOutputs => "too_many_outputs",
            Reason::OutputContractViolation => "output_contract_violation",
            Reason::EnrichmentUnavailable => "enrichment_unavailable",
            Reason::EnrichmentFailed => "enrichment_failed",
            Reason::PublishFailed => "publish_failed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// JSON pointer of the offending value in the message data, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The schema keyword that failed, for contract violations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            pointer: None,
            keyword: None,
            message: message.into(),
        }
    }

    pub fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: Some(pointer.into()),
            keyword: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pointer {
            Some(pointer) if pointer.is_empty() => write!(f, "(root): {}", self.message),
            Some(pointer) => write!(f, "{pointer}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a message could not go through a stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub stage: Stage,
    pub reason: Reason,
    pub problems: Vec<Problem>,
    /// A later attempt may succeed (a look-up timed out); only these are ever retried.
    pub transient: bool,
    /// How long the other side asked us to wait (`Retry-After`), if it did.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(stage: Stage, reason: Reason, problems: Vec<Problem>) -> Self {
        Self {
            stage,
            reason,
            problems,
            transient: false,
            retry_after: None,
        }
    }

    pub fn one(stage: Stage, reason: Reason, problem: Problem) -> Self {
        Self::new(stage, reason, vec![problem])
    }

    pub fn transient(mut self, retry_after: Option<Duration>) -> Self {
        self.transient = true;
        self.retry_after = retry_after;
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed ({})", self.stage, self.reason)?;
        for problem in &self.problems {
            write!(f, "; {problem}")?;
        }
        Ok(())
    }
}
