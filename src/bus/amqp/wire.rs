//! What goes on the AMQP wire: a delivery as the pipeline sees it, outputs in CloudEvents binary
//! or structured mode, and the gateway's own headers on dead letters and retries.
//!
//! The gateway's headers all start with `x-gateway-`. Any such header a producer set is removed
//! before the gateway adds its own, so a dead letter's reason always comes from the gateway.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use super::topology::RETRY_ROUTE;
use crate::bus::dead_letters::{DeadLetterView, FailureView, KeptDelivery};
use crate::message::Message;
use crate::message::cloudevents::{self, STRUCTURED_CONTENT_TYPE};
use crate::pipeline::Delivery;
use crate::registry::{Route, Wire};
use crate::stages::Failure;

/// Every header the gateway sets starts with this.
pub const GATEWAY_PREFIX: &str = "x-gateway-";
/// The attempt number of a retried input (2 for the first retry).
pub const ATTEMPT: &str = "x-gateway-attempt";
/// Trace context headers passed on from input to output as they are.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];
/// A record of a dead-letter stream that names a dead letter settled (deleted or redriven) by
/// its offset; the body is empty.
pub const SETTLES: &str = "x-gateway-settles";
/// How a tombstone's dead letter was settled: `deleted` or `redriven`.
pub const SETTLED_HOW: &str = "x-gateway-settled";
/// A record of a dead-letter stream that a starting reader appends to know when it has read
/// everything before it; the body is empty.
pub const DEAD_LETTER_MARKER: &str = "x-gateway-marker";
/// Headers the broker adds when it dead-letters by itself (a delivery limit reached).
const BROKER_DEATH_HEADERS: [&str; 7] = [
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];
/// AMQP `delivery_mode` for persistent messages.
const PERSISTENT: u8 = 2;

/// A delivery taken from a queue, kept whole: a dead letter or a retry republishes it unchanged.
#[derive(Debug, Clone)]
pub struct Taken {
    pub tag: u64,
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Bytes,
}

impl Taken {
    pub fn from_lapin(delivery: lapin::message::Delivery) -> Self {
        Self {
            tag: delivery.delivery_tag,
            exchange: delivery.exchange.to_string(),
            routing_key: delivery.routing_key.to_string(),
            properties: delivery.properties,
            body: Bytes::from(delivery.data),
        }
    }

    /// The delivery as the pipeline takes it: content type, headers as text, body.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            content_type: self
                .properties
                .content_type()
                .as_ref()
                .map(|value| value.to_string()),
            headers: self
                .properties
                .headers()
                .as_ref()
                .map(header_strings)
                .unwrap_or_default(),
            body: self.body.clone(),
        }
    }

    /// The attempt this delivery is: the gateway's header when it came back from a delay
    /// queue through one of `retry_exchanges`, 1 otherwise (a producer cannot forge it).
    pub fn attempt(&self, retry_exchanges: &[String]) -> u32 {
        if !retry_exchanges.contains(&self.exchange) {
            return 1;
        }
        self.header(ATTEMPT)
            .and_then(integer)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
            .max(1)
    }

    fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.properties.headers().as_ref()?.inner().get(name)
    }

    /// A dead letter as the API shows it, with the id it is kept under. One the broker
    /// dead-lettered by itself (the route's delivery limit) has no gateway headers: its reason
    /// is the broker's.
    pub fn dead_letter_view(&self, id: String, route: Option<&str>) -> DeadLetterView {
        let text = |name: &str| match self.header(name) {
            Some(AMQPValue::LongString(value)) => {
                Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
            }
            Some(AMQPValue::ShortString(value)) => Some(value.to_string()),
            _ => None,
        };
        let (stage, reason) = match text("x-gateway-stage") {
            Some(stage) => (stage, text("x-gateway-reason").unwrap_or_default()),
            None => (
                "broker".to_owned(),
                text("x-first-death-reason").unwrap_or_else(|| "unknown".to_owned()),
            ),
        };
        let problems = text("x-gateway-problems")
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_else(|| serde_json::Value::Array(Vec::new()));
        let mut input = self.delivery();
        input.headers = header_strings(&self.own_headers());
        DeadLetterView {
            id,
            route: text("x-gateway-route").or(route.map(str::to_owned)),
            failure: FailureView {
                stage,
                reason,
                problems,
            },
            failed_at: text("x-gateway-failed-at"),
            attempt: self
                .header(ATTEMPT)
                .and_then(integer)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            input: KeptDelivery::of(&input),
        }
    }

    /// The properties a redriven dead letter goes back with: the input's own, without the
    /// gateway's headers or the broker's death records, so it starts again as a first attempt.
    pub fn redrive_properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in self.own_headers().inner() {
            if !BROKER_DEATH_HEADERS.contains(&name.as_str()) {
                headers.insert(name.clone(), value.clone());
            }
        }
        self.properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(PERSISTENT)
    }

    /// The input's headers without any of the gateway's (`x-gateway-*`, the retry's route).
    fn own_headers(&self) -> FieldTable {
        let mut table = FieldTable::default();
        if let Some(headers) = self.properties.headers() {
            for (name, value) in headers.inner() {
                if !name.as_str().starts_with(GATEWAY_PREFIX) && name.as_str() != RETRY_ROUTE {
                    table.insert(name.clone(), value.clone());
                }
            }
        }
        table
    }
}

/// Header values as text: strings as they are (lossy UTF-8), numbers and booleans printed,
/// timestamps as RFC 3339; tables and arrays (such as `x-death`) are left out.
fn header_strings(table: &FieldTable) -> Vec<(String, String)> {
    table
        .inner()
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                AMQPValue::LongString(text) => {
                    String::from_utf8_lossy(text.as_bytes()).into_owned()
                }
                AMQPValue::ShortString(text) => text.to_string(),
                AMQPValue::Boolean(flag) => flag.to_string(),
                AMQPValue::Timestamp(seconds) => humantime::format_rfc3339_seconds(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(*seconds),
                )
                .to_string(),
                other => integer(other)?.to_string(),
            };
            Some((name.to_string(), text))
        })
        .collect()
}

fn integer(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok()?.parse().ok()?,
        _ => return None,
    })
}

fn text(value: impl Into<Vec<u8>>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The trace context among text headers (any case), as AMQP headers named in lower case.
pub fn trace_headers(headers: &[(String, String)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        if let Some(trace) = TRACE_HEADERS
            .iter()
            .find(|trace| name.eq_ignore_ascii_case(trace))
        {
            table.insert((*trace).into(), text(value.as_str()));
        }
    }
    table
}

/// An output message as an AMQP body and properties, in the route's wire mode: persistent, its
/// deterministic id as `message_id`, the trace headers among `input_headers` passed on.
pub fn output(
    message: &Message,
    wire: Wire,
    input_headers: Option<&FieldTable>,
) -> (Bytes, BasicProperties) {
    let mut headers = FieldTable::default();
    if let Some(input_headers) = input_headers {
        for name in TRACE_HEADERS {
            if let Some(value) = input_headers.inner().get(name) {
                headers.insert(name.into(), value.clone());
            }
        }
    }
    let (body, content_type) = match wire {
        Wire::Binary => {
            for (name, value) in cloudevents::binary_headers(&message.attributes) {
                headers.insert(ShortString::from(name), text(value));
            }
            (message.data.clone(), "application/json")
        }
        Wire::Structured => (structured(message), STRUCTURED_CONTENT_TYPE),
    };
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(content_type.into())
        .with_headers(headers);
    if let Ok(id) = ShortString::try_new(message.attributes.id.as_str()) {
        properties = properties.with_message_id(id);
    }
    (body, properties)
}

/// A structured-mode body that keeps the data's bytes exactly as they are (numbers included).
fn structured(message: &Message) -> Bytes {
    let mut attributes = serde_json::to_value(&message.attributes)
        .expect("attributes are strings, always representable as JSON");
    if let Some(object) = attributes.as_object_mut() {
        object.insert("specversion".into(), "1.0".into());
        object.insert("datacontenttype".into(), "application/json".into());
    }
    let mut body = serde_json::to_vec(&attributes).expect("a JSON value always serializes");
    // `{...}` → `{...,"data":<data>}`: the data is already valid JSON text.
    body.pop();
    body.extend_from_slice(b",\"data\":");
    body.extend_from_slice(&message.data);
    body.push(b'}');
    Bytes::from(body)
}

/// Why an input became a dead letter, as the gateway's headers say it.
#[derive(Debug)]
pub struct DeadLetterInfo<'a> {
    pub route: Option<&'a Route>,
    pub failure: &'a Failure,
    /// The contract version the input claimed, when it got that far.
    pub contract: Option<String>,
    pub attempt: u32,
}

/// The input's properties, unchanged, with the dead-letter headers added.
pub fn dead_letter(input: &Taken, info: &DeadLetterInfo<'_>) -> BasicProperties {
    let mut headers = input.own_headers();
    let mut set = |name: &str, value: String| {
        headers.insert(ShortString::from(name), text(value));
    };
    let failure = info.failure;
    set("x-gateway-stage", failure.stage.as_str().to_owned());
    set("x-gateway-reason", failure.reason.as_str().to_owned());
    set(
        "x-gateway-problems",
        serde_json::to_string(&failure.problems).expect("problems serialize"),
    );
    let accepts = info.route.map(|route| {
        route
            .accepts
            .iter()
            .map(|version| version.id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    set(
        "x-gateway-contract",
        info.contract
            .clone()
            .or_else(|| accepts.clone())
            .unwrap_or_else(|| "unknown".to_owned()),
    );
    if let Some(route) = info.route {
        set("x-gateway-route", route.name.to_string());
        set("x-gateway-mode", route.mode.as_str().to_owned());
        set("x-gateway-accepts", accepts.unwrap_or_default());
        if let Some(output) = &route.output {
            set("x-gateway-output-contract", output.id.to_string());
        }
        if let Some(translator) = &route.translator {
            set("x-gateway-translator", translator.id.to_string());
            set("x-gateway-translator-hash", translator.content_hash.clone());
        }
    }
    set(
        "x-gateway-failed-at",
        humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    );
    headers.insert(
        ATTEMPT.into(),
        AMQPValue::LongLongInt(i64::from(info.attempt)),
    );
    input.properties.clone().with_headers(headers)
}

/// The input's properties, unchanged, with the attempt number it will be and the route it
/// goes back to when its delay queue lets it go.
pub fn retry(input: &Taken, attempt: u32, route: &Route) -> BasicProperties {
    let mut headers = input.own_headers();
    headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(attempt)));
    headers.insert(RETRY_ROUTE.into(), text(route.name.as_str()));
    input
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(PERSISTENT)
}
