//! Receive: decode a delivery into a message, check the contract it claims, parse its data
//! strictly, and pick the routes it goes to. An event fans out to every route that accepts it
//! (possibly none); a command goes to exactly one route, and none or several is a failure.

use std::sync::Arc;

use super::{Failure, Problem, Reason, Stage};
use crate::message::Message;
use crate::message::cloudevents::{self, DecodeError, DecodeErrorKind};
use crate::message::document::Document;
use crate::registry::{ContextName, ContractId, MessageKind, Registry, Route};
use bytes::Bytes;

/// A message that passed decoding: its contract is known and its data parsed.
#[derive(Debug, Clone)]
pub struct Input {
    pub message: Message,
    pub contract: ContractId,
    pub kind: MessageKind,
    /// The data, parsed once: validated in place, converted for translators, and made a
    /// `serde_json::Value` only where one is needed (`Document::to_value`).
    pub data: Document,
    /// Some number in the data is a float or beyond `i64` (see `message::json`).
    pub has_wide_numbers: bool,
}

/// Decodes a delivery from its transport shape.
pub fn decode<'a>(
    content_type: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: Bytes,
) -> Result<Message, Failure> {
    cloudevents::decode(content_type, headers, body).map_err(decode_failure)
}

/// Checks the claimed contract, parses the data and picks the routes.
pub fn accept(
    registry: &Registry,
    from: &ContextName,
    message: Message,
) -> Result<(Input, Vec<Arc<Route>>), Failure> {
    let input = check(registry, from, message)?;
    let routes = routes_for(registry, from, &input)?;
    Ok((input, routes))
}

/// Checks the contract a message claims (known version, matching type, an event only from its
/// owner) and parses its data strictly.
pub fn check(registry: &Registry, from: &ContextName, message: Message) -> Result<Input, Failure> {
    let unknown =
        |text: String| Failure::one(Stage::Decode, Reason::UnknownContract, Problem::new(text));
    let contract = ContractId::from_dataschema(&message.attributes.dataschema)
        .map_err(|error| unknown(error.to_string()))?;
    let version = registry.contract_version(&contract).ok_or_else(|| {
        unknown(format!(
            "dataschema names {contract}, which the registry does not have"
        ))
    })?;
    let expected_type = contract.name().event_type();
    if message.attributes.event_type != expected_type {
        return Err(unknown(format!(
            "type {:?} does not match the contract {contract}: expected {expected_type:?}",
            crate::message::json::truncate(&message.attributes.event_type, 100)
        )));
    }
    if version.kind == MessageKind::Event && contract.context() != from {
        return Err(Failure::one(
            Stage::Decode,
            Reason::NotOwner,
            Problem::new(format!(
                "{from} cannot publish {contract}: an event is published only by the context that owns it"
            )),
        ));
    }
    let parsed = Document::parse(&message.data)
        .map_err(|error| decode_failure(DecodeError::from_json(&error)))?;
    Ok(Input {
        message,
        contract,
        kind: version.kind,
        data: parsed.document,
        has_wide_numbers: parsed.has_wide_numbers,
    })
}

/// The routes an input goes to: every route from `from` that accepts it, and for a command
/// exactly one.
pub fn routes_for(
    registry: &Registry,
    from: &ContextName,
    input: &Input,
) -> Result<Vec<Arc<Route>>, Failure> {
    let contract = &input.contract;
    let routes: Vec<Arc<Route>> = registry
        .routes
        .iter()
        .filter(|route| &route.upstream == from && route.accepted(contract).is_some())
        .cloned()
        .collect();
    if input.kind == MessageKind::Command && routes.len() != 1 {
        let problem = if routes.is_empty() {
            format!("no route takes the command {contract} from {from}")
        } else {
            let names: Vec<String> = routes.iter().map(|route| route.name.to_string()).collect();
            format!(
                "the command {contract} from {from} matches {} routes ({}): a command goes to exactly one",
                routes.len(),
                names.join(", ")
            )
        };
        return Err(Failure::one(
            Stage::Decode,
            Reason::Unroutable,
            Problem::new(problem),
        ));
    }
    Ok(routes)
}

fn decode_failure(error: DecodeError) -> Failure {
    let reason = match error.kind {
        DecodeErrorKind::TooLarge => Reason::TooLarge,
        DecodeErrorKind::ParseError => Reason::ParseError,
        DecodeErrorKind::DuplicateKey => Reason::DuplicateKey,
        DecodeErrorKind::InvalidEnvelope => Reason::InvalidEnvelope,
        DecodeErrorKind::UnsupportedEncoding => Reason::UnsupportedEncoding,
    };
    Failure::one(Stage::Decode, reason, Problem::new(error.message))
}
