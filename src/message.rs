//! The transport-neutral message: CloudEvents 1.0 attributes plus JSON data, and the
//! deterministic ids of what the gateway emits.
//!
//! # Layout
//! - [`cloudevents`]: decoding from binary mode (header maps) and structured mode (JSON body).
//! - [`json`]: strict JSON parsing (duplicate keys refused, inexact numbers found).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;

use crate::registry::names::{ContractId, RouteName};

pub mod cloudevents;
pub mod document;
pub mod json;

/// The largest message body the gateway takes; larger ones are dead letters (`too_large`)
/// before any parsing.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A CloudEvent: its context attributes and its JSON data, kept as the bytes it arrived with.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub attributes: Attributes,
    /// The event's data as JSON text. A conformist route forwards these bytes unchanged.
    pub data: Bytes,
}

/// CloudEvents context attributes. `specversion` is always `1.0` and not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attributes {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The contract version the data claims to follow: `contextgate:orders/OrderPlaced@2`.
    pub dataschema: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Extension attributes, `traceparent` and `tracestate` among them.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, String>,
}

impl Message {
    /// The contract version this message claims, from `dataschema`.
    pub fn contract(&self) -> Option<ContractId> {
        ContractId::from_dataschema(&self.attributes.dataschema).ok()
    }
}

/// A message serializes as a structured-mode CloudEvent (`application/cloudevents+json`) whose
/// `data` is the message's bytes exactly as they are: a conformist route's output keeps the
/// input's numbers (`7.90`), key order and spacing.
impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Structured<'a> {
            specversion: &'static str,
            #[serde(flatten)]
            attributes: &'a Attributes,
            datacontenttype: &'static str,
            data: Data<'a>,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Data<'a> {
            Json(&'a serde_json::value::RawValue),
            /// Not JSON (never, for what the gateway emits): shown as text rather than lost.
            Text(std::borrow::Cow<'a, str>),
        }
        let data = match serde_json::from_slice(&self.data) {
            Ok(raw) => Data::Json(raw),
            Err(_) => Data::Text(String::from_utf8_lossy(&self.data)),
        };
        Structured {
            specversion: "1.0",
            attributes: &self.attributes,
            datacontenttype: "application/json",
            data,
        }
        .serialize(serializer)
    }
}

/// Derives the id of an output deterministically from the input's `source` and `id`, the route
/// and the output's position, so that a redelivered or replayed input gives the same output id.
pub fn output_id(input: &Attributes, route: &RouteName, index: usize) -> String {
    // A fixed namespace for contextgate output ids (UUIDv5 over source, id, route, index).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5c1e_3e0a_9d5b_4c5e_8a47_2f3b_6c1d_0e42);
    let mut name = Vec::with_capacity(input.source.len() + input.id.len() + 64);
    for part in [
        input.source.as_bytes(),
        input.id.as_bytes(),
        route.as_str().as_bytes(),
    ] {
        // Length-prefixed, so that no two different triples give the same name.
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part);
    }
    name.extend_from_slice(&(index as u64).to_be_bytes());
    uuid::Uuid::new_v5(&NAMESPACE, &name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(source: &str, id: &str) -> Attributes {
        Attributes {
            id: id.into(),
            source: source.into(),
            event_type: "orders.OrderPlaced".into(),
            dataschema: "contextgate:orders/OrderPlaced@1".into(),
            subject: None,
            time: None,
            extensions: BTreeMap::new(),
        }
    }

    #[test]
    fn output_ids_are_deterministic_and_distinct_per_route_and_index() {
        let route = RouteName::parse("orders-to-shipping").unwrap();
        let other = RouteName::parse("orders-to-billing").unwrap();
        let input = attributes("/orders", "42");
        assert_eq!(output_id(&input, &route, 0), output_id(&input, &route, 0));
        assert_ne!(output_id(&input, &route, 0), output_id(&input, &route, 1));
        assert_ne!(output_id(&input, &route, 0), output_id(&input, &other, 0));
        assert_ne!(
            output_id(&attributes("/orders", "42"), &route, 0),
            output_id(&attributes("/orders4", "2"), &route, 0),
            "source and id are length-prefixed"
        );
    }
}
