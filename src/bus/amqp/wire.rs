//! What goes on the AMQP wire: a delivery as the pipeline sees it, outputs in CloudEvents binary
//! or structured mode, and the gateway's own headers on dead letters and retries.
//!
//! The gateway's headers all start with `x-gateway-`. Any such header a producer set is removed
//! before the gateway adds its own, so a dead letter's reason always comes from the gateway.

use std::borrow::Cow;
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
/// The exchange an input of an ordered route first came through (its upstream's outbound
/// exchange, or a retry exchange), written by the sequencer when it republishes the input to
/// the route's shards: a shard's consumer takes it for the delivery's exchange, so that a
/// retry's attempt number still counts only when it came back through a retry exchange.
pub const VIA: &str = "x-gateway-via";
/// Trace context headers passed on from input to output as they are.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];
/// The input's own headers, as JSON (`serde` of the AMQP field table), on a dead letter whose
/// input has headers a stream would not keep as they are.
pub const INPUT_HEADERS: &str = "x-gateway-input-headers";
/// The most bytes of [`INPUT_HEADERS`]; past it, the values a stream cannot keep are dropped.
const MAX_INPUT_HEADERS: usize = 64 * 1024;
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
            exchange: delivery.exchange.as_str().to_owned(),
            routing_key: delivery.routing_key.as_str().to_owned(),
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

    /// Its headers as text, borrowed where they are UTF-8 strings: what
    /// [`Pipeline::receive_parts_on`](crate::pipeline::Pipeline::receive_parts_on) takes, the
    /// same texts as [`Taken::delivery`] without a `String` per name and value.
    pub fn header_texts(&self) -> Vec<(&str, Cow<'_, str>)> {
        self.properties
            .headers()
            .as_ref()
            .map(header_texts)
            .unwrap_or_default()
    }

    /// The content type, as the pipeline takes it.
    pub fn content_type(&self) -> Option<&str> {
        self.properties
            .content_type()
            .as_ref()
            .map(ShortString::as_str)
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

    /// The exchange the sequencer says this input first came through ([`VIA`]).
    pub fn via(&self) -> Option<String> {
        match self.header(VIA)? {
            AMQPValue::LongString(value) => {
                Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
            }
            AMQPValue::ShortString(value) => Some(value.to_string()),
            _ => None,
        }
    }

    /// The input's properties with [`VIA`] set to the exchange it was delivered from (any value
    /// a producer put there replaced): what the sequencer republishes.
    pub fn sequenced_properties(&self) -> BasicProperties {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(
            VIA.into(),
            AMQPValue::LongString(LongString::from(self.exchange.as_str())),
        );
        self.properties.clone().with_headers(headers)
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

    /// The input's headers without any of the gateway's (`x-gateway-*`, the retry's route):
    /// exactly as they came when a dead letter kept them in [`INPUT_HEADERS`].
    fn own_headers(&self) -> FieldTable {
        if let Some(AMQPValue::LongString(json)) = self.header(INPUT_HEADERS)
            && let Ok(table) = serde_json::from_slice::<FieldTable>(json.as_bytes())
        {
            return table;
        }
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
    header_texts(table)
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text.into_owned()))
        .collect()
}

/// [`header_strings`], borrowed where the values are UTF-8 strings.
fn header_texts(table: &FieldTable) -> Vec<(&str, Cow<'_, str>)> {
    table
        .inner()
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()),
                AMQPValue::ShortString(text) => text.as_str().into(),
                other => header_text(other)?.into(),
            };
            Some((name.as_str(), text))
        })
        .collect()
}

/// A header value that is not a string, as text: booleans and numbers printed, timestamps as
/// RFC 3339; `None` for tables and arrays.
fn header_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::Boolean(flag) => flag.to_string(),
        AMQPValue::Timestamp(seconds) => humantime::format_rfc3339_seconds(
            SystemTime::UNIX_EPOCH + Duration::from_secs(*seconds),
        )
        .to_string(),
        other => integer(other)?.to_string(),
    })
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
/// deterministic id as `message_id`, and as trace context `trace` — the route's span
/// (`traceparent`) and the input's `tracestate` — when the route is traced, else the trace
/// headers among `input_headers` passed on as they are.
pub fn output(
    message: &Message,
    wire: Wire,
    input_headers: Option<&FieldTable>,
    trace: Option<(&str, Option<&str>)>,
) -> (Bytes, BasicProperties) {
    let mut headers = FieldTable::default();
    if let Some((traceparent, tracestate)) = trace {
        headers.insert(TRACE_HEADERS[0].into(), text(traceparent));
        if let Some(tracestate) = tracestate {
            headers.insert(TRACE_HEADERS[1].into(), text(tracestate));
        }
    } else if let Some(input_headers) = input_headers {
        for name in TRACE_HEADERS {
            if let Some(value) = input_headers.inner().get(name) {
                headers.insert(name.into(), value.clone());
            }
        }
    }
    let (body, content_type) = match wire {
        Wire::Binary => {
            for (name, value) in cloudevents::binary_header_pairs(&message.attributes) {
                headers.insert(ShortString::from(name.as_ref()), text(value));
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
    for_stream(input.properties.clone().with_headers(headers))
}

/// `properties` as a dead-letter stream keeps them. RabbitMQ 3.10 stores a stream's messages
/// as AMQP 1.0, whose application properties hold only simple values: it drops array and
/// table headers, and a decimal header makes it close the publishing connection
/// (`INTERNAL_ERROR`) — which a producer could use to stop the gateway over and over. So only
/// strings, integers, booleans, timestamps and voids stay headers; when the input has any other
/// value, its own headers are kept whole as JSON in [`INPUT_HEADERS`], from which a listing
/// and a redrive restore them exactly.
pub fn for_stream(properties: BasicProperties) -> BasicProperties {
    let Some(headers) = properties.headers().clone() else {
        return properties;
    };
    if headers.inner().values().all(stream_keeps) {
        return properties;
    }
    let own: FieldTable = headers
        .inner()
        .iter()
        .filter(|(name, _)| !name.as_str().starts_with(GATEWAY_PREFIX))
        .fold(FieldTable::default(), |mut own, (name, value)| {
            own.insert(name.clone(), value.clone());
            own
        });
    let mut kept = FieldTable::default();
    for (name, value) in headers.inner() {
        if stream_keeps(value) {
            kept.insert(name.clone(), value.clone());
        }
    }
    match serde_json::to_string(&own) {
        Ok(json) if json.len() <= MAX_INPUT_HEADERS => {
            kept.insert(INPUT_HEADERS.into(), text(json));
        }
        _ => tracing::warn!(
            "A dead letter's input headers are too large (or not representable) to keep whole; the values a stream cannot hold are dropped."
        ),
    }
    properties.with_headers(kept)
}

/// Whether a stream keeps a header value as it is.
fn stream_keeps(value: &AMQPValue) -> bool {
    matches!(
        value,
        AMQPValue::LongString(_)
            | AMQPValue::ShortString(_)
            | AMQPValue::Boolean(_)
            | AMQPValue::ShortShortInt(_)
            | AMQPValue::ShortShortUInt(_)
            | AMQPValue::ShortInt(_)
            | AMQPValue::ShortUInt(_)
            | AMQPValue::LongInt(_)
            | AMQPValue::LongUInt(_)
            | AMQPValue::LongLongInt(_)
            | AMQPValue::Timestamp(_)
            | AMQPValue::Void
    )
}

/// The input's properties, unchanged but for its `expiration` (the delay queue's TTL decides
/// when a retry leaves, never the producer's), with the attempt number it will be and the route
/// it goes back to when its delay queue lets it go.
pub fn retry(input: &Taken, attempt: u32, route: &Route) -> BasicProperties {
    let mut headers = input.own_headers();
    headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(attempt)));
    headers.insert(RETRY_ROUTE.into(), text(route.name.as_str()));
    without_expiration(&input.properties)
        .with_headers(headers)
        .with_delivery_mode(PERSISTENT)
}

/// `properties` without `expiration` (AMQP properties can be set but not unset).
fn without_expiration(properties: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    if let Some(value) = properties.content_type() {
        copy = copy.with_content_type(value.clone());
    }
    if let Some(value) = properties.content_encoding() {
        copy = copy.with_content_encoding(value.clone());
    }
    if let Some(value) = properties.headers() {
        copy = copy.with_headers(value.clone());
    }
    if let Some(value) = properties.delivery_mode() {
        copy = copy.with_delivery_mode(*value);
    }
    if let Some(value) = properties.priority() {
        copy = copy.with_priority(*value);
    }
    if let Some(value) = properties.correlation_id() {
        copy = copy.with_correlation_id(value.clone());
    }
    if let Some(value) = properties.reply_to() {
        copy = copy.with_reply_to(value.clone());
    }
    if let Some(value) = properties.message_id() {
        copy = copy.with_message_id(value.clone());
    }
    if let Some(value) = properties.timestamp() {
        copy = copy.with_timestamp(*value);
    }
    if let Some(value) = properties.kind() {
        copy = copy.with_type(value.clone());
    }
    if let Some(value) = properties.user_id() {
        copy = copy.with_user_id(value.clone());
    }
    if let Some(value) = properties.app_id() {
        copy = copy.with_app_id(value.clone());
    }
    if let Some(value) = properties.cluster_id() {
        copy = copy.with_cluster_id(value.clone());
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_passes_the_inputs_trace_context_on_or_names_the_routes_span_when_traced() {
        let mut input = FieldTable::default();
        input.insert("traceparent".into(), text("00-aaaa-bbbb-01"));
        input.insert("tracestate".into(), text("vendor=in"));
        input.insert("x-other".into(), text("not passed on"));
        let message = Message {
            attributes: crate::message::Attributes {
                id: "out-1".into(),
                source: "/up".into(),
                event_type: "up.Thing".into(),
                dataschema: "contextgate:up/Thing@1".into(),
                subject: None,
                time: None,
                extensions: Default::default(),
            },
            data: Bytes::from_static(b"{}"),
        };
        let header = |properties: &BasicProperties, name: &str| {
            properties
                .headers()
                .as_ref()
                .and_then(|headers| headers.inner().get(name).cloned())
        };

        let (_, untraced) = output(&message, Wire::Binary, Some(&input), None);
        let (_, traced) = output(
            &message,
            Wire::Binary,
            Some(&input),
            Some(("00-aaaa-cccc-01", None)),
        );

        assert_eq!(
            header(&untraced, "traceparent"),
            Some(text("00-aaaa-bbbb-01"))
        );
        assert_eq!(header(&untraced, "tracestate"), Some(text("vendor=in")));
        assert_eq!(header(&untraced, "x-other"), None);
        assert_eq!(
            header(&traced, "traceparent"),
            Some(text("00-aaaa-cccc-01"))
        );
        assert_eq!(header(&traced, "tracestate"), None);
    }

    #[test]
    fn a_dead_letter_keeps_headers_a_stream_cannot_hold_and_gives_them_back_exactly() {
        let mut headers = FieldTable::default();
        headers.insert("plain".into(), text("kept"));
        headers.insert(
            "price".into(),
            AMQPValue::DecimalValue(lapin::types::DecimalValue {
                scale: 2,
                value: 150,
            }),
        );
        let mut array = lapin::types::FieldArray::default();
        array.push(AMQPValue::LongInt(1));
        headers.insert("list".into(), AMQPValue::FieldArray(array));
        headers.insert("x-gateway-stage".into(), text("forged"));
        let input = Taken {
            tag: 1,
            exchange: "up.out".into(),
            routing_key: "up.Thing".into(),
            properties: BasicProperties::default().with_headers(headers.clone()),
            body: Bytes::from_static(b"{}"),
        };
        let failure = Failure::one(
            crate::stages::Stage::Publish,
            crate::stages::Reason::Unroutable,
            crate::stages::Problem::new("no queue"),
        );
        let kept = dead_letter(
            &input,
            &DeadLetterInfo {
                route: None,
                failure: &failure,
                contract: None,
                attempt: 1,
            },
        );
        // What the stream holds: no value it would drop or choke on.
        let stored = kept.headers().clone().unwrap();
        assert!(stored.inner().values().all(stream_keeps), "{stored:?}");
        assert_eq!(
            stored.inner().get("x-gateway-stage"),
            Some(&text("publish"))
        );
        let read = Taken {
            properties: kept,
            ..input
        };
        let own = headers
            .inner()
            .iter()
            .filter(|(name, _)| name.as_str() != "x-gateway-stage")
            .fold(FieldTable::default(), |mut own, (name, value)| {
                own.insert(name.clone(), value.clone());
                own
            });
        assert_eq!(read.redrive_properties().headers().clone().unwrap(), own);
    }

    #[test]
    fn a_retry_keeps_the_input_s_properties_but_its_expiration() {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id("m-1".into())
            .with_correlation_id("c-1".into())
            .with_priority(3)
            .with_timestamp(7)
            .with_expiration("10".into());
        let kept = without_expiration(&properties);
        assert_eq!(kept.expiration(), &None);
        assert_eq!(kept.content_type(), properties.content_type());
        assert_eq!(kept.message_id(), properties.message_id());
        assert_eq!(kept.correlation_id(), properties.correlation_id());
        assert_eq!(kept.priority(), properties.priority());
        assert_eq!(kept.timestamp(), properties.timestamp());
    }
}
