//! CloudEvents 1.0 in and out of transport-neutral shapes.
//!
//! Binary mode: each attribute in a header named `cloudEvents_<attribute>`; on input the
//! `cloudEvents:`, `ce-` and `ce_` prefixes are accepted too, one style per message. The data is
//! the body and its content type the transport's `content_type`. Structured mode: content type
//! `application/cloudevents+json` and the whole event as a JSON body. Only JSON data is taken.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::json::{parse_strict, truncate};
use super::{Attributes, MAX_MESSAGE_BYTES, Message};

/// The content type of a structured-mode CloudEvent.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The header prefixes accepted on input, the preferred one first (the one used on output).
pub const HEADER_PREFIXES: [&str; 4] = ["cloudEvents_", "cloudEvents:", "ce-", "ce_"];

/// Trace context headers (W3C), which describe the message's place in a trace.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

const MAX_ATTRIBUTE_BYTES: usize = 4096;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    TooLarge,
    ParseError,
    DuplicateKey,
    InvalidEnvelope,
    UnsupportedEncoding,
}

impl DecodeError {
    fn new(kind: DecodeErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn envelope(message: impl Into<String>) -> Self {
        Self::new(DecodeErrorKind::InvalidEnvelope, message)
    }

    /// Classifies a serde_json error from strict parsing.
    pub fn from_json(error: &serde_json::Error) -> Self {
        let text = error.to_string();
        let kind = if text.contains("duplicate key") {
            DecodeErrorKind::DuplicateKey
        } else {
            DecodeErrorKind::ParseError
        };
        Self::new(kind, format!("invalid JSON: {text}"))
    }
}

/// Decodes a message whichever mode it came in: structured when the content type says so,
/// binary otherwise.
pub fn decode<'a>(
    content_type: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: Bytes,
) -> Result<Message, DecodeError> {
    match content_type {
        Some(content_type) if media_type(content_type) == STRUCTURED_CONTENT_TYPE => {
            decode_structured(body)
        }
        _ => decode_binary(content_type, headers, body),
    }
}

/// Decodes a structured-mode CloudEvent: the whole event as one JSON object.
pub fn decode_structured(body: Bytes) -> Result<Message, DecodeError> {
    check_size(&body)?;
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let envelope = deserializer
        .deserialize_map(EnvelopeVisitor)
        .map_err(|error| DecodeError::from_json(&error))?;
    deserializer
        .end()
        .map_err(|error| DecodeError::from_json(&error))?;
    let Envelope { fields, data } = envelope;

    let mut raw = BTreeMap::new();
    for (name, value) in fields {
        let text = match value {
            Value::String(text) => text,
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            Value::Null => continue,
            _ => {
                return Err(DecodeError::envelope(format!(
                    "attribute {:?} must be a string, number or boolean",
                    truncate(&name, 64)
                )));
            }
        };
        raw.insert(name, text);
    }
    if raw.contains_key("data_base64") {
        return Err(DecodeError::new(
            DecodeErrorKind::UnsupportedEncoding,
            "data_base64 is not supported: the gateway carries JSON data only",
        ));
    }
    check_data_content_type(raw.remove("datacontenttype").as_deref())?;
    let attributes = attributes_from(raw)?;
    let data = match data {
        Some(data) => body.slice_ref(data.get().as_bytes()),
        None => return Err(DecodeError::envelope("the event has no data")),
    };
    Ok(Message { attributes, data })
}

/// Decodes a binary-mode CloudEvent: attributes in headers, data in the body.
pub fn decode_binary<'a>(
    content_type: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: Bytes,
) -> Result<Message, DecodeError> {
    check_size(&body)?;
    let mut prefix_used: Option<&str> = None;
    let mut raw = BTreeMap::new();
    for (name, value) in headers {
        let Some((prefix, attribute)) = attribute_header(name) else {
            continue;
        };
        match prefix_used {
            Some(used) if used != prefix => {
                return Err(DecodeError::envelope(format!(
                    "headers mix the prefixes {used:?} and {prefix:?}: use one style per message"
                )));
            }
            _ => prefix_used = Some(prefix),
        }
        let attribute = attribute.to_ascii_lowercase();
        if raw.insert(attribute.clone(), value.to_owned()).is_some() {
            return Err(DecodeError::new(
                DecodeErrorKind::DuplicateKey,
                format!("attribute {:?} is given twice", truncate(&attribute, 64)),
            ));
        }
    }
    if prefix_used.is_none() {
        return Err(DecodeError::envelope(
            "no CloudEvents attributes: expected cloudEvents_* headers (binary mode) \
             or content type application/cloudevents+json (structured mode)",
        ));
    }
    // In binary mode the data's content type travels in the transport's content type.
    let declared = raw.remove("datacontenttype");
    check_data_content_type(content_type.or(declared.as_deref()))?;
    let attributes = attributes_from(raw)?;
    Ok(Message {
        attributes,
        data: body,
    })
}

/// Whether a transport header describes the message, and so is kept with it: a CloudEvents
/// attribute or extension in binary mode, or trace context. Everything else a transport carries
/// (credentials such as `Authorization`, `Cookie` or `X-Api-Key`, hop-by-hop headers, proxies'
/// headers) is about the request, never kept, never shown in a dead letter.
pub fn describes_message(name: &str) -> bool {
    attribute_header(name).is_some()
        || TRACE_HEADERS
            .iter()
            .any(|trace| name.eq_ignore_ascii_case(trace))
}

/// The prefix and attribute name of a binary-mode attribute header.
fn attribute_header(name: &str) -> Option<(&'static str, &str)> {
    HEADER_PREFIXES
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix).map(|rest| (*prefix, rest)))
}

/// Binary-mode headers for a message, with the preferred `cloudEvents_` prefix.
pub fn binary_headers(attributes: &Attributes) -> Vec<(String, String)> {
    binary_header_pairs(attributes)
        .map(|(name, value)| (name.into_owned(), value.to_owned()))
        .collect()
}

/// [`binary_headers`], borrowed: the names of the standard attributes are constants, an
/// extension's is built.
pub fn binary_header_pairs(
    attributes: &Attributes,
) -> impl Iterator<Item = (std::borrow::Cow<'static, str>, &str)> {
    let standard = [
        ("cloudEvents_specversion", Some("1.0")),
        ("cloudEvents_id", Some(attributes.id.as_str())),
        ("cloudEvents_source", Some(attributes.source.as_str())),
        ("cloudEvents_type", Some(attributes.event_type.as_str())),
        (
            "cloudEvents_dataschema",
            Some(attributes.dataschema.as_str()),
        ),
        ("cloudEvents_subject", attributes.subject.as_deref()),
        ("cloudEvents_time", attributes.time.as_deref()),
    ];
    debug_assert!(
        standard
            .iter()
            .all(|(name, _)| name.starts_with(HEADER_PREFIXES[0]))
    );
    standard
        .into_iter()
        .filter_map(|(name, value)| Some((std::borrow::Cow::Borrowed(name), value?)))
        .chain(attributes.extensions.iter().map(|(name, value)| {
            (
                std::borrow::Cow::Owned(format!("{}{name}", HEADER_PREFIXES[0])),
                value.as_str(),
            )
        }))
}

fn check_size(body: &[u8]) -> Result<(), DecodeError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::new(
            DecodeErrorKind::TooLarge,
            format!(
                "the message is {} bytes, over the gateway's cap of {MAX_MESSAGE_BYTES}",
                body.len()
            ),
        ));
    }
    Ok(())
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn check_data_content_type(content_type: Option<&str>) -> Result<(), DecodeError> {
    let Some(content_type) = content_type else {
        return Ok(());
    };
    let media = media_type(content_type);
    let json = media == "application/json" || media == "text/json" || media.ends_with("+json");
    let charset_ok =
        content_type
            .split(';')
            .skip(1)
            .all(|parameter| match parameter.trim().split_once('=') {
                Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                    value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
                }
                _ => true,
            });
    if json && charset_ok && media != STRUCTURED_CONTENT_TYPE {
        Ok(())
    } else {
        Err(DecodeError::new(
            DecodeErrorKind::UnsupportedEncoding,
            format!(
                "content type {:?} is not supported: the gateway carries UTF-8 JSON data only",
                truncate(content_type, 100)
            ),
        ))
    }
}

/// A validator for RFC 3339 date-times, reusing the JSON Schema `date-time` format.
static DATE_TIME: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&serde_json::json!({"type": "string", "format": "date-time"}))
        .expect("a fixed, valid schema")
});

fn attributes_from(mut raw: BTreeMap<String, String>) -> Result<Attributes, DecodeError> {
    match raw.remove("specversion").as_deref() {
        Some("1.0") => {}
        Some(other) => {
            return Err(DecodeError::envelope(format!(
                "specversion {:?} is not supported: expected \"1.0\"",
                truncate(other, 20)
            )));
        }
        None => {
            return Err(DecodeError::envelope(
                "the specversion attribute is missing",
            ));
        }
    }
    for (name, value) in &raw {
        let valid_name = !name.is_empty()
            && name.len() <= 20
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_name {
            return Err(DecodeError::envelope(format!(
                "attribute name {:?} is invalid: lowercase letters and digits, at most 20",
                truncate(name, 64)
            )));
        }
        if value.len() > MAX_ATTRIBUTE_BYTES {
            return Err(DecodeError::envelope(format!(
                "attribute {name:?} is longer than {MAX_ATTRIBUTE_BYTES} bytes"
            )));
        }
    }
    let mut required = |name: &str| {
        raw.remove(name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                DecodeError::envelope(format!("the {name} attribute is missing or empty"))
            })
    };
    let id = required("id")?;
    let source = required("source")?;
    let event_type = required("type")?;
    let dataschema = required("dataschema")?;
    let subject = raw.remove("subject");
    let time = raw.remove("time");
    if let Some(time) = &time
        && !DATE_TIME.is_valid(&Value::String(time.clone()))
    {
        return Err(DecodeError::envelope(format!(
            "time {:?} is not an RFC 3339 date-time",
            truncate(time, 64)
        )));
    }
    Ok(Attributes {
        id,
        source,
        event_type,
        dataschema,
        subject,
        time,
        extensions: raw,
    })
}

/// The top level of a structured event: attributes parsed strictly, `data` kept as raw text.
struct Envelope<'de> {
    fields: Vec<(String, Value)>,
    data: Option<&'de RawValue>,
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvent as a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Envelope<'de>, A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        let mut data = None;
        while let Some(key) = access.next_key::<String>()? {
            let duplicate = if key == "data" {
                data.replace(access.next_value::<&'de RawValue>()?)
                    .is_some()
            } else {
                let value = access.next_value_seed(StrictSeed)?;
                let duplicate = fields.iter().any(|(name, _)| *name == key);
                fields.push((key.clone(), value));
                duplicate
            };
            if duplicate {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    truncate(&key, 64)
                )));
            }
        }
        Ok(Envelope { fields, data })
    }
}

/// Parses one attribute value strictly (re-using the strict parser on its raw text).
struct StrictSeed;

impl<'de> serde::de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        let raw = <&RawValue as serde::Deserialize>::deserialize(deserializer)?;
        parse_strict(raw.get().as_bytes())
            .map(|parsed| parsed.value)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn structured(body: &str) -> Result<Message, DecodeError> {
        decode(
            Some("application/cloudevents+json; charset=utf-8"),
            [],
            Bytes::from(body.to_owned()),
        )
    }

    const EVENT: &str = r#"{"specversion":"1.0","id":"1","source":"/orders","type":"orders.OrderPlaced",
        "dataschema":"contextgate:orders/OrderPlaced@1","time":"2026-11-27T10:00:00Z",
        "traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "data":{"order_id":"o-1","total":12}}"#;

    #[test]
    fn structured_events_keep_their_data_bytes_unchanged() {
        let message = structured(EVENT).unwrap();
        assert_eq!(message.attributes.id, "1");
        assert_eq!(message.attributes.event_type, "orders.OrderPlaced");
        assert_eq!(&message.data[..], br#"{"order_id":"o-1","total":12}"#);
        assert_eq!(
            message.attributes.extensions["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    #[test]
    fn every_binary_prefix_is_accepted_and_output_uses_cloud_events_underscore() {
        let message = structured(EVENT).unwrap();
        let headers = binary_headers(&message.attributes);
        assert!(
            headers
                .iter()
                .all(|(name, _)| name.starts_with("cloudEvents_"))
        );
        for prefix in HEADER_PREFIXES {
            let renamed: Vec<(String, String)> = headers
                .iter()
                .map(|(name, value)| (name.replacen("cloudEvents_", prefix, 1), value.clone()))
                .collect();
            let decoded = decode(
                Some("application/json"),
                renamed.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                message.data.clone(),
            )
            .unwrap();
            assert_eq!(decoded, message, "prefix {prefix}");
        }
    }

    #[test]
    fn bad_envelopes_are_refused_with_their_kind() {
        let cases: &[(&str, DecodeErrorKind)] = &[
            ("", DecodeErrorKind::ParseError),
            ("not json", DecodeErrorKind::ParseError),
            ("[1]", DecodeErrorKind::ParseError),
            (r#"{"id":"1","id":"2"}"#, DecodeErrorKind::DuplicateKey),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","dataschema":"d","data":1,"data":2}"#,
                DecodeErrorKind::DuplicateKey,
            ),
            (
                r#"{"specversion":"0.3","id":"1","source":"s","type":"t","dataschema":"d","data":{}}"#,
                DecodeErrorKind::InvalidEnvelope,
            ),
            (
                r#"{"specversion":"1.0","source":"s","type":"t","dataschema":"d","data":{}}"#,
                DecodeErrorKind::InvalidEnvelope,
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","dataschema":"d"}"#,
                DecodeErrorKind::InvalidEnvelope,
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","dataschema":"d","time":"yesterday","data":{}}"#,
                DecodeErrorKind::InvalidEnvelope,
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","dataschema":"d","data_base64":"AA=="}"#,
                DecodeErrorKind::UnsupportedEncoding,
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","dataschema":"d","datacontenttype":"text/xml","data":"<a/>"}"#,
                DecodeErrorKind::UnsupportedEncoding,
            ),
        ];
        for (body, kind) in cases {
            let error = structured(body).unwrap_err();
            assert_eq!(error.kind, *kind, "{body}: {error}");
        }
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let body = vec![b' '; MAX_MESSAGE_BYTES + 1];
        let error = decode_structured(Bytes::from(body)).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::TooLarge);
    }

    #[test]
    fn only_attribute_and_trace_headers_describe_a_message() {
        for kept in [
            "ce-id",
            "ce_tenant",
            "cloudEvents_type",
            "traceparent",
            "TraceState",
        ] {
            assert!(describes_message(kept), "{kept}");
        }
        for left in [
            "authorization",
            "cookie",
            "x-api-key",
            "proxy-authorization",
            "connection",
            "te",
            "forwarded",
            "x-forwarded-for",
            "content-length",
            "cex-id",
        ] {
            assert!(!describes_message(left), "{left}");
        }
    }

    #[test]
    fn binary_mode_refuses_mixed_prefixes_and_non_json_content() {
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce_source", "s"),
        ];
        let error = decode_binary(None, headers, Bytes::from_static(b"{}")).unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::InvalidEnvelope);

        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
            ("ce-dataschema", "d"),
        ];
        let error = decode_binary(
            Some("application/octet-stream"),
            headers,
            Bytes::from_static(b"{}"),
        )
        .unwrap_err();
        assert_eq!(error.kind, DecodeErrorKind::UnsupportedEncoding);
        assert!(decode_binary(None, headers, Bytes::from_static(b"{}")).is_ok());
    }
}
