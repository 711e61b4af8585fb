//! AsyncAPI 3.0 per context: what one bounded context publishes and receives through the gateway
//! on RabbitMQ, in the format event-API tools read (documentation, code generation). Built from a
//! loaded registry and the broker's names; it does no I/O.
//!
//! The document of context `C`:
//! - **servers**: the RabbitMQ broker (host, `amqp`/`amqps`, AMQP 0.9.1) from the gateway's
//!   `--amqp-url`, never its credentials; without one, a placeholder that says so.
//! - **channels**: `outbound`, the topic exchange `<p>C.out` C publishes to (routing key = the
//!   message type); `inbound`, the topic exchange `<p>C.in` the gateway delivers C's routes'
//!   outputs to; and `route.<r>` per route into C, the queue the route reads its inputs from
//!   (`<p>route.<r>`, or `<p>route.<r>.sequencer` for an ordered route). Names come from
//!   [`Names`], the ones the AMQP bus declares. Each has AMQP 0.9.1 channel bindings.
//! - **operations**: `send.<ctx>.<Name>` per message type C publishes (its published events,
//!   and whatever a route takes from it); `receive.<r>` per route that delivers to C, naming the
//!   mode, the relationship, the upstream and the translator.
//! - **components**: a message per contract version (payload by `$ref` to `components.schemas`,
//!   where each contract's schema sits in a multi-format schema object whose `schemaFormat`
//!   names its JSON Schema draft; `$ref`s between registry schemas are rewritten to point inside
//!   the document, so it is self-contained), and the CloudEvents binary-mode headers as the
//!   message trait `cloudEventsBinary`.
//!
//! What a viewer gets is [`Viewer`]'s rule, as on the context map: the operator everything; a
//! context the contracts it may read (published ones and its own), never another context's
//! internal contract — not as a message, and not through a `$ref` (the referenced schema is
//! replaced by the open schema `withheld`); of the routes into `C`, those [`Viewer::sees`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map as JsonMap, Value, json};

use crate::bus::amqp::topology::Names;
use crate::map::{Carried, Edge, Viewer};
use crate::message::Attributes;
use crate::message::cloudevents::{self, STRUCTURED_CONTENT_TYPE};
use crate::registry::{
    ContextName, ContractId, ContractName, ContractVersion, MessageKind, Mode, Registry, Route,
    Visibility, Wire,
};

/// The AsyncAPI version of every document.
pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// The version of the AMQP bindings used (channel, operation, message).
pub const AMQP_BINDING_VERSION: &str = "0.3.0";
/// The AMQP protocol version the gateway speaks.
pub const AMQP_PROTOCOL_VERSION: &str = "0.9.1";
/// The server's key under `servers`.
pub const SERVER: &str = "rabbitmq";
/// The channel of the exchange the context publishes to.
pub const OUTBOUND: &str = "outbound";
/// The channel of the exchange the gateway delivers the context's routes' outputs to.
pub const INBOUND: &str = "inbound";
/// The message trait of the CloudEvents binary content mode.
pub const BINARY_TRAIT: &str = "cloudEventsBinary";
/// The schema that stands for one the viewer may not read.
pub const WITHHELD: &str = "withheld";
/// Where the placeholder server points when the gateway has no broker URL.
pub const PLACEHOLDER_HOST: &str = "localhost:5672";

/// Keywords whose values are data, not schemas: never walked for `$ref` or `$id`.
const DATA_KEYWORDS: &[&str] = &["const", "default", "enum", "example", "examples"];
/// Keywords whose value maps names to schemas: every member is a schema, whatever its name.
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "$defs",
    "definitions",
    "dependencies",
    "dependentSchemas",
    "patternProperties",
    "properties",
];

/// The broker a document names: its server (none: a placeholder) and the topology's names.
#[derive(Debug, Clone)]
pub struct Broker {
    pub server: Option<Server>,
    pub names: Names,
}

/// A RabbitMQ server as the document shows it: no user, no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `amqp` or `amqps`.
    pub protocol: &'static str,
    /// `host:port`, the port filled in (5672, or 5671 for `amqps`).
    pub host: String,
    /// The virtual host, as lapin reads it from the URL's path (none: `/`).
    pub vhost: String,
}

/// Why there is no document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsyncApiError {
    #[error("no context {0}")]
    UnknownContext(ContextName),
}

impl Broker {
    /// The broker of `url` (`--amqp-url`) with `prefix` (`--amqp-prefix`); a placeholder server
    /// when there is no URL.
    pub fn new(url: Option<&str>, prefix: &str) -> Result<Self, String> {
        Ok(Self {
            server: url.map(Server::from_url).transpose()?,
            names: Names::new(prefix),
        })
    }
}

impl Server {
    /// The server of an AMQP URL (`amqp://user:password@host:port/vhost`), without its
    /// credentials; the vhost read as lapin reads it (no path: `/`; `/%2f`: `/`).
    pub fn from_url(url: &str) -> Result<Self, String> {
        let parsed =
            url::Url::parse(url).map_err(|error| format!("the AMQP URL is invalid: {error}"))?;
        let (protocol, default_port) = match parsed.scheme() {
            "amqp" => ("amqp", 5672),
            "amqps" => ("amqps", 5671),
            other => {
                return Err(format!(
                    "the AMQP URL's scheme is {other:?}, not amqp or amqps"
                ));
            }
        };
        let host = parsed
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| "the AMQP URL has no host".to_owned())?;
        let port = parsed.port().unwrap_or(default_port);
        let vhost = percent_encoding::percent_decode_str(parsed.path().get(1..).unwrap_or("/"))
            .decode_utf8()
            .map_err(|_| "the AMQP URL's vhost is not UTF-8".to_owned())?
            .into_owned();
        Ok(Self {
            protocol,
            host: format!("{host}:{port}"),
            vhost,
        })
    }
}

/// The AsyncAPI 3.0 document of `context`, as `viewer` may see it.
pub fn document(
    registry: &Registry,
    context: &ContextName,
    viewer: &Viewer,
    broker: &Broker,
) -> Result<Value, AsyncApiError> {
    let found = registry
        .contexts
        .get(context)
        .ok_or_else(|| AsyncApiError::UnknownContext(context.clone()))?;
    let vhost = broker
        .server
        .as_ref()
        .map_or("/", |server| server.vhost.as_str());
    let mut builder = Builder {
        registry,
        viewer,
        schemas: Schemas::new(registry, viewer),
        messages: JsonMap::new(),
    };

    // What the context publishes, by message type.
    let sends = builder.sends(context);
    let mut outbound_messages = JsonMap::new();
    let mut operations = JsonMap::new();
    for (name, versions) in &sends {
        let mut refs = Vec::new();
        for version in versions {
            let key = builder.message(version, Wire::Binary);
            outbound_messages.insert(key.clone(), message_ref(&key));
            refs.push(json!({"$ref": format!("#/channels/{OUTBOUND}/messages/{key}")}));
        }
        operations.insert(
            format!("send.{}", name.event_type()),
            json!({
                "action": "send",
                "channel": {"$ref": format!("#/channels/{OUTBOUND}")},
                "title": format!("Publish {name}"),
                "summary": format!(
                    "{context} publishes {name} to its outbound exchange with routing key {}.",
                    name.event_type()
                ),
                "description": send_description(versions),
                "messages": refs,
                "bindings": {"amqp": {
                    "cc": [name.event_type()],
                    "deliveryMode": 2,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }},
            }),
        );
    }

    // What the routes into the context deliver, one operation per route.
    let mut channels = JsonMap::new();
    let mut inbound_messages = JsonMap::new();
    let mut route_channels = Vec::new();
    for route in registry
        .routes
        .iter()
        .filter(|route| &route.downstream == context)
    {
        let Some(seen) = viewer.sees(&Edge::of(route)) else {
            continue;
        };
        let versions = |carried: &[Carried]| -> Vec<Arc<ContractVersion>> {
            carried
                .iter()
                .filter_map(|carried| registry.contract_version(&carried.id).cloned())
                .collect()
        };
        let inputs = versions(&seen.types);
        let delivered = if route.output.is_some() {
            versions(seen.output.as_slice())
        } else {
            inputs.clone()
        };
        let channel_key = format!("route.{}", route.name);
        let mut queue_messages = JsonMap::new();
        for version in &inputs {
            let key = builder.message(version, Wire::Binary);
            queue_messages.insert(key.clone(), message_ref(&key));
        }
        route_channels.push((
            channel_key.clone(),
            route_channel(route, &broker.names, vhost, queue_messages),
        ));
        let mut refs = Vec::new();
        let mut routing_keys = BTreeSet::new();
        for version in &delivered {
            let key = builder.message(version, route.wire);
            inbound_messages.insert(key.clone(), message_ref(&key));
            refs.push(json!({"$ref": format!("#/channels/{INBOUND}/messages/{key}")}));
            routing_keys.insert(version.id.name().event_type());
        }
        let translator_shown = match viewer {
            Viewer::Operator => true,
            Viewer::Context(me) => me == &route.upstream || me == &route.downstream,
        };
        operations.insert(
            format!("receive.{}", route.name),
            receive_operation(
                route,
                &seen,
                &channel_key,
                &broker.names,
                refs,
                routing_keys,
                translator_shown,
            ),
        );
    }

    channels.insert(
        OUTBOUND.to_owned(),
        exchange_channel(
            &broker.names.outbound(context),
            vhost,
            format!("{context} publishes its messages here"),
            format!(
                "The topic exchange {context} publishes to, one routing key per message type \
                 (`<context>.<Name>`, the CloudEvents `type`). Each route's queue is bound to it \
                 for the types the route takes; what no route takes goes to the alternate \
                 exchange `{}`.",
                broker.names.unrouted()
            ),
            outbound_messages,
        ),
    );
    channels.insert(
        INBOUND.to_owned(),
        exchange_channel(
            &broker.names.inbound(context),
            vhost,
            format!("The gateway delivers to {context} here"),
            format!(
                "The topic exchange the gateway publishes the outputs of the routes into \
                 {context} to, with the output's type as routing key. The team of {context} \
                 binds its own queues to it."
            ),
            inbound_messages,
        ),
    );
    for (key, channel) in route_channels {
        channels.insert(key, channel);
    }

    let Builder {
        schemas, messages, ..
    } = builder;
    let description = found
        .description
        .clone()
        .unwrap_or_else(|| format!("The bounded context {context}."));
    let seen_as = match viewer {
        Viewer::Operator => "the whole document, as the operator sees it".to_owned(),
        Viewer::Context(me) if me == context => format!(
            "as {context} itself sees it: its own contracts and what other contexts publish"
        ),
        Viewer::Context(me) => format!(
            "as {me} sees it: only published contracts and {me}'s own, never {context}'s \
             internal ones"
        ),
    };
    Ok(json!({
        "asyncapi": ASYNCAPI_VERSION,
        "id": format!("urn:contextgate:context:{context}"),
        "info": {
            "title": context.as_str(),
            "version": format!("registry-{}", &crate::registry::hex(&registry.digest)[..12]),
            "description": format!(
                "{description}\n\nGenerated by contextgate from its registry ({seen_as}). \
                 Messages are CloudEvents 1.0 in binary content mode unless a route says \
                 structured; the version names the registry's digest."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {SERVER: server_object(broker.server.as_ref())},
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas.components,
            "messages": messages,
            "messageTraits": {BINARY_TRAIT: binary_trait()},
        },
    }))
}

/// The key of a contract version under `components`: `orders.OrderPlaced.v2`.
pub fn key(id: &ContractId) -> String {
    format!("{}.{}.v{}", id.context(), id.name().name(), id.version())
}

/// The `schemaFormat` of a JSON Schema draft: `application/schema+json;version=draft-07`.
pub fn schema_format(draft: jsonschema::Draft) -> String {
    let version = match draft {
        jsonschema::Draft::Draft4 => "draft-04",
        jsonschema::Draft::Draft6 => "draft-06",
        jsonschema::Draft::Draft7 => "draft-07",
        jsonschema::Draft::Draft201909 => "2019-09",
        _ => "2020-12",
    };
    format!("application/schema+json;version={version}")
}

/// The binary-mode header names the gateway writes, each with its CloudEvents attribute: those
/// of [`cloudevents::binary_header_pairs`] on attributes that have every optional one.
pub fn binary_headers() -> Vec<(String, String)> {
    let attributes = Attributes {
        id: "id".into(),
        source: "source".into(),
        event_type: "type".into(),
        dataschema: "dataschema".into(),
        subject: Some("subject".into()),
        time: Some("time".into()),
        extensions: BTreeMap::new(),
    };
    cloudevents::binary_header_pairs(&attributes)
        .map(|(name, _)| {
            let attribute = name
                .strip_prefix(cloudevents::HEADER_PREFIXES[0])
                .unwrap_or(&name)
                .to_owned();
            (name.into_owned(), attribute)
        })
        .collect()
}

/// Builds the components as the document needs them.
struct Builder<'a> {
    registry: &'a Registry,
    viewer: &'a Viewer,
    schemas: Schemas<'a>,
    messages: JsonMap<String, Value>,
}

impl Builder<'_> {
    /// The versions `context` publishes, by message type: every version of its published
    /// events, and every version a route takes from it, that the viewer may read.
    fn sends(&self, context: &ContextName) -> BTreeMap<ContractName, Vec<Arc<ContractVersion>>> {
        let mut sends: BTreeMap<ContractName, BTreeMap<u32, Arc<ContractVersion>>> =
            BTreeMap::new();
        let own_events = self
            .registry
            .contracts
            .values()
            .filter(|contract| {
                contract.name.context() == context
                    && contract.kind == MessageKind::Event
                    && contract.visibility == Visibility::Published
            })
            .flat_map(|contract| contract.versions.values());
        let taken = self
            .registry
            .routes
            .iter()
            .filter(|route| &route.upstream == context)
            .flat_map(|route| route.accepts.iter());
        for version in own_events.chain(taken) {
            if self
                .viewer
                .may_read(version.id.context(), version.visibility)
            {
                sends
                    .entry(version.id.name().clone())
                    .or_default()
                    .insert(version.id.version(), version.clone());
            }
        }
        sends
            .into_iter()
            .map(|(name, versions)| (name, versions.into_values().collect()))
            .collect()
    }

    /// The message of `version` as it travels in `wire` mode, added to the components; its key.
    fn message(&mut self, version: &ContractVersion, wire: Wire) -> String {
        let schema = self.schemas.add(version);
        let key = match wire {
            Wire::Binary => schema.clone(),
            Wire::Structured => format!("{schema}.structured"),
        };
        if self.messages.contains_key(&key) {
            return key;
        }
        let id = &version.id;
        let event_type = id.name().event_type();
        let description = self
            .registry
            .contracts
            .get(id.name())
            .and_then(|contract| contract.description.clone());
        let kind = match version.kind {
            MessageKind::Event => "event",
            MessageKind::Command => "command",
        };
        let visibility = match version.visibility {
            Visibility::Published => "published",
            Visibility::Internal => "internal",
        };
        let mut message = json!({
            "name": event_type,
            "title": id.to_string(),
            "tags": [
                {"name": kind, "description": match version.kind {
                    MessageKind::Event => "Something happened; owned by its single producer.",
                    MessageKind::Command => "A request to act; owned by its single consumer.",
                }},
                {"name": visibility, "description": match version.visibility {
                    Visibility::Published => "Part of its owner's published language.",
                    Visibility::Internal => "Its owner's internal model.",
                }},
            ],
            "bindings": {"amqp": {
                "messageType": event_type,
                "bindingVersion": AMQP_BINDING_VERSION,
            }},
            "x-contextgate-contract": id.to_string(),
        });
        if let Some(description) = description {
            message["summary"] = Value::String(description);
        }
        match wire {
            Wire::Binary => {
                message["contentType"] = json!("application/json");
                message["headers"] = json!({
                    "type": "object",
                    "properties": {
                        header_of("type"): {"const": event_type},
                        header_of("dataschema"): {"const": id.dataschema()},
                    },
                });
                message["payload"] = json!({"$ref": format!("#/components/schemas/{schema}")});
                message["traits"] =
                    json!([{"$ref": format!("#/components/messageTraits/{BINARY_TRAIT}")}]);
            }
            Wire::Structured => {
                message["title"] = json!(format!("{id} (structured)"));
                message["contentType"] = json!(STRUCTURED_CONTENT_TYPE);
                message["payload"] = json!({"$ref": format!("#/components/schemas/{key}")});
                self.schemas
                    .components
                    .insert(key.clone(), structured_envelope(version, &schema));
            }
        }
        self.messages.insert(key.clone(), message);
        key
    }
}

/// The contract schemas of a document: each in a multi-format schema object, its `$ref`s to
/// other registry schemas pointing inside the document.
struct Schemas<'a> {
    registry: &'a Registry,
    viewer: &'a Viewer,
    /// Every contract version by its registry URI (what the index names as a resource).
    by_uri: HashMap<String, Arc<ContractVersion>>,
    components: JsonMap<String, Value>,
}

impl<'a> Schemas<'a> {
    fn new(registry: &'a Registry, viewer: &'a Viewer) -> Self {
        let by_uri = registry
            .contracts
            .values()
            .flat_map(|contract| contract.versions.values())
            .map(|version| {
                (
                    crate::registry::contract::schema_uri(&version.id),
                    version.clone(),
                )
            })
            .collect();
        Self {
            registry,
            viewer,
            by_uri,
            components: JsonMap::new(),
        }
    }

    /// Adds `version`'s schema, and every schema it reaches, once; its key.
    fn add(&mut self, version: &ContractVersion) -> String {
        let key = key(&version.id);
        if self.components.contains_key(&key) {
            return key;
        }
        // Marked first: a schema that reaches itself again is not added twice.
        self.components.insert(key.clone(), Value::Null);
        let draft = version
            .resolved
            .get("$schema")
            .and_then(Value::as_str)
            .and_then(crate::registry::contract::draft_named)
            .unwrap_or(self.registry.default_draft);
        let mut schema = (*version.resolved).clone();
        let mut reached = Vec::new();
        let own = Own {
            key: &key,
            resolved: &version.resolved,
            draft,
        };
        self.rewrite(&mut schema, &own, &mut reached);
        self.components.insert(
            key.clone(),
            json!({"schemaFormat": schema_format(draft), "schema": schema}),
        );
        for reached in reached {
            self.add(&reached);
        }
        key
    }

    /// Rewrites every `$ref` of `value` to a pointer into the document and takes out the
    /// `$id`s and `$schema`s (the document is the base now; `schemaFormat` names the draft).
    fn rewrite(
        &mut self,
        value: &mut Value,
        own: &Own<'_>,
        reached: &mut Vec<Arc<ContractVersion>>,
    ) {
        match value {
            Value::Array(items) => {
                for item in items {
                    self.rewrite(item, own, reached);
                }
            }
            Value::Object(object) => {
                let id_keyword = if own.draft == jsonschema::Draft::Draft4 {
                    "id"
                } else {
                    "$id"
                };
                for keyword in ["$schema", id_keyword] {
                    if object.get(keyword).is_some_and(Value::is_string) {
                        object.remove(keyword);
                    }
                }
                if let Some(Value::String(reference)) = object.get("$ref") {
                    let rewritten = self.reference(reference, own, reached);
                    object.insert("$ref".into(), Value::String(rewritten));
                }
                for (keyword, child) in object.iter_mut() {
                    let keyword = keyword.as_str();
                    if keyword == "$ref" || DATA_KEYWORDS.contains(&keyword) {
                        continue;
                    }
                    match child {
                        // A map of names to schemas: a property may be called `default`.
                        Value::Object(members) if SCHEMA_MAP_KEYWORDS.contains(&keyword) => {
                            for member in members.values_mut() {
                                self.rewrite(member, own, reached);
                            }
                        }
                        child => self.rewrite(child, own, reached),
                    }
                }
            }
            _ => {}
        }
    }

    /// Where `reference` (absolute, or `#...` within `own`) points inside the document.
    fn reference(
        &mut self,
        reference: &str,
        own: &Own<'_>,
        reached: &mut Vec<Arc<ContractVersion>>,
    ) -> String {
        if let Some(fragment) = reference.strip_prefix('#') {
            return inside(own.key, own.resolved, "", fragment)
                .unwrap_or_else(|| reference.to_owned());
        }
        let (uri, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let Some((resource, pointer)) = self.registry.schemas.get(uri) else {
            return reference.to_owned();
        };
        let indexed = &self.registry.schemas.resources[resource];
        if !self.viewer.may_read(&indexed.owner, indexed.visibility) {
            self.components.insert(
                WITHHELD.to_owned(),
                json!({
                    "schemaFormat": schema_format(jsonschema::Draft::Draft7),
                    "schema": {"description": "A schema this caller may not read (internal to \
                        its owner), left open here."},
                }),
            );
            return format!("#/components/schemas/{WITHHELD}/schema");
        }
        let Some(version) = self.by_uri.get(&indexed.registry).cloned() else {
            return reference.to_owned();
        };
        let target = key(&version.id);
        let pointer = pointer.to_owned();
        reached.push(version);
        inside(&target, &indexed.resolved, &pointer, fragment)
            .unwrap_or_else(|| reference.to_owned())
    }
}

/// The schema being rewritten.
struct Own<'a> {
    key: &'a str,
    resolved: &'a Value,
    draft: jsonschema::Draft,
}

/// `#/components/schemas/<key>/schema<pointer><fragment>` for a JSON pointer fragment; for an
/// anchor, the pointer of the schema that names it (`None` when none does).
fn inside(key: &str, resolved: &Value, pointer: &str, fragment: &str) -> Option<String> {
    let fragment = if fragment.is_empty() || fragment.starts_with('/') {
        fragment.to_owned()
    } else {
        let anchor = percent_encoding::percent_decode_str(fragment)
            .decode_utf8()
            .ok()?;
        let scope = resolved.pointer(pointer)?;
        anchored(scope, &anchor, String::new())?
    };
    Some(format!(
        "#/components/schemas/{key}/schema{pointer}{fragment}"
    ))
}

/// The pointer (below `value`) of the schema whose `$anchor` (or draft-07 `$id: "#name"`) is
/// `anchor`.
fn anchored(value: &Value, anchor: &str, at: String) -> Option<String> {
    match value {
        Value::Object(object) => {
            let legacy = format!("#{anchor}");
            let names_it = object.get("$anchor").and_then(Value::as_str) == Some(anchor)
                || ["$id", "id"]
                    .iter()
                    .any(|keyword| object.get(*keyword).and_then(Value::as_str) == Some(&legacy));
            if names_it {
                return Some(at);
            }
            object
                .iter()
                .filter(|(keyword, _)| !DATA_KEYWORDS.contains(&keyword.as_str()))
                .find_map(|(keyword, child)| {
                    let token = keyword.replace('~', "~0").replace('/', "~1");
                    anchored(child, anchor, format!("{at}/{token}"))
                })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| anchored(item, anchor, format!("{at}/{index}"))),
        _ => None,
    }
}

fn message_ref(key: &str) -> Value {
    json!({"$ref": format!("#/components/messages/{key}")})
}

/// The header of a CloudEvents attribute in binary mode: `cloudEvents_type`.
fn header_of(attribute: &str) -> String {
    format!("{}{attribute}", cloudevents::HEADER_PREFIXES[0])
}

fn server_object(server: Option<&Server>) -> Value {
    match server {
        Some(server) => json!({
            "host": server.host,
            "protocol": server.protocol,
            "protocolVersion": AMQP_PROTOCOL_VERSION,
            "title": "RabbitMQ",
            "description": format!(
                "The broker the gateway runs on (virtual host {:?}).",
                server.vhost
            ),
        }),
        None => json!({
            "host": PLACEHOLDER_HOST,
            "protocol": "amqp",
            "protocolVersion": AMQP_PROTOCOL_VERSION,
            "title": "RabbitMQ (placeholder)",
            "description": "A placeholder: this gateway was given no broker URL (--amqp-url, \
                CONTEXTGATE_AMQP_URL), so the host is not known here. The channel names are \
                those the gateway declares on RabbitMQ with the prefix shown.",
        }),
    }
}

fn exchange_channel(
    address: &str,
    vhost: &str,
    title: String,
    description: String,
    messages: JsonMap<String, Value>,
) -> Value {
    json!({
        "address": address,
        "title": title,
        "description": description,
        "servers": [{"$ref": format!("#/servers/{SERVER}")}],
        "messages": messages,
        "bindings": {"amqp": {
            "is": "routingKey",
            "exchange": {
                "name": address,
                "type": "topic",
                "durable": true,
                "autoDelete": false,
                "vhost": vhost,
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }},
    })
}

/// The queue a route reads its inputs from: `route.<r>`, or an ordered route's sequencer queue.
fn route_queue(route: &Route, names: &Names) -> String {
    if route.ordering_key.is_some() {
        names.sequencer_queue(route.name.as_str())
    } else {
        names.route_queue(route.name.as_str())
    }
}

fn route_channel(
    route: &Route,
    names: &Names,
    vhost: &str,
    messages: JsonMap<String, Value>,
) -> Value {
    let name = route.name.as_str();
    let queue = route_queue(route, names);
    let mut description = format!(
        "The quorum queue route {name} reads its inputs from: bound to `{}` for every type the \
         route takes, read by the gateway, never by a context. Failures go to the stream `{}`.",
        names.outbound(&route.upstream),
        names.dead_letter_queue(Some(name)),
    );
    if route.ordering_key.is_some() {
        description.push_str(&format!(
            " The route is ordered: one sequencer at a time (x-single-active-consumer) \
             republishes each input to the consistent-hash exchange `{}`, which spreads the \
             keys over {} shard queues `{}` … `{}`.",
            names.shard_exchange(name),
            route.shards,
            names.shard_queue(name, 0),
            names.shard_queue(name, route.shards.saturating_sub(1)),
        ));
    }
    json!({
        "address": queue,
        "title": format!("Inputs of route {name}"),
        "description": description,
        "servers": [{"$ref": format!("#/servers/{SERVER}")}],
        "messages": messages,
        "bindings": {"amqp": {
            "is": "queue",
            "queue": {
                "name": queue,
                "durable": true,
                "exclusive": false,
                "autoDelete": false,
                "vhost": vhost,
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }},
    })
}

fn send_description(versions: &[Arc<ContractVersion>]) -> String {
    let ids: Vec<String> = versions.iter().map(|v| v.id.to_string()).collect();
    format!(
        "Versions {}: the CloudEvents `dataschema` (`{}`) names the one a message follows; the \
         gateway validates it against that version before any route runs.",
        ids.join(", "),
        versions
            .first()
            .map(|version| version.id.dataschema())
            .unwrap_or_default()
    )
}

fn receive_operation(
    route: &Route,
    seen: &Edge,
    channel_key: &str,
    names: &Names,
    messages: Vec<Value>,
    routing_keys: BTreeSet<String>,
    translator_shown: bool,
) -> Value {
    let relationship = seen.relationship.label();
    let mode = route.mode.as_str();
    let translator = route
        .translator
        .as_ref()
        .filter(|_| translator_shown)
        .map(|translator| translator.id.to_string());
    let how = match (route.mode, &translator) {
        (Mode::Conformist, _) => "forwards each input unchanged".to_owned(),
        (Mode::Enrich, None) => {
            "looks up what the input lacks and merges it into the output".to_owned()
        }
        (Mode::Enrich, Some(translator)) => {
            format!(
                "looks up what the input lacks, then the translator {translator} writes the output"
            )
        }
        (_, Some(translator)) => format!("runs the translator {translator}"),
        (_, None) => "runs its translator".to_owned(),
    };
    let taken: Vec<String> = seen.types.iter().map(|c| c.id.to_string()).collect();
    let mut description = format!(
        "Route {} ({mode}, {relationship}: [{}] → [{}]) takes {} from {} on the queue of channel \
         {channel_key}, {how}, validates the result and publishes it to `{}` with its type as \
         routing key.",
        route.name,
        seen.upstream_roles.join(","),
        seen.downstream_roles.join(","),
        if taken.is_empty() {
            "what it accepts".to_owned()
        } else {
            taken.join(", ")
        },
        route.upstream,
        names.inbound(&route.downstream),
    );
    if let Some(key) = &route.ordering_key {
        let key = match key {
            crate::registry::OrderingKey::Subject => "the CloudEvents subject".to_owned(),
            crate::registry::OrderingKey::Pointer(pointer) => format!("the data at {pointer}"),
        };
        description.push_str(&format!(
            " Ordered by {key}: one key's messages arrive in order."
        ));
    }
    if route.wire == Wire::Structured {
        description.push_str(" Outputs go in CloudEvents structured mode.");
    }
    let mut tags = vec![
        json!({"name": format!("mode:{mode}")}),
        json!({"name": format!("relationship:{relationship}")}),
        json!({"name": format!("upstream:{}", route.upstream)}),
    ];
    if let Some(translator) = &translator {
        tags.push(json!({"name": format!("translator:{translator}")}));
    }
    if route.ordering_key.is_some() {
        tags.push(json!({"name": "ordered"}));
    }
    let mut operation = json!({
        "action": "receive",
        "channel": {"$ref": format!("#/channels/{INBOUND}")},
        "title": format!("Receive from route {}", route.name),
        "summary": format!(
            "{} delivers to {} ({relationship}, upstream {}).",
            route.name, route.downstream, route.upstream
        ),
        "description": description,
        "tags": tags,
        "messages": messages,
        "bindings": {"amqp": {
            "cc": routing_keys.into_iter().collect::<Vec<_>>(),
            "ack": true,
            "bindingVersion": AMQP_BINDING_VERSION,
        }},
        "x-contextgate-route": {
            "name": route.name.as_str(),
            "mode": mode,
            "relationship": relationship,
            "upstream": route.upstream.as_str(),
            "channel": channel_key,
            "queue": route_queue(route, names),
        },
    });
    if let Some(translator) = translator {
        operation["x-contextgate-route"]["translator"] = Value::String(translator);
    }
    if let Some(description) = route.description.as_ref().filter(|_| translator_shown) {
        operation["summary"] = Value::String(description.clone());
    }
    operation
}

/// The CloudEvents binary content mode on AMQP, as the gateway writes and reads it.
fn binary_trait() -> Value {
    let mut properties = JsonMap::new();
    let mut required = Vec::new();
    for (header, attribute) in binary_headers() {
        let (schema, needed) = match attribute.as_str() {
            "specversion" => (json!({"const": "1.0"}), true),
            "id" => (
                json!({"type": "string", "minLength": 1, "description": "Unique per source; the gateway derives its outputs' ids from it (replays give the same ids)."}),
                true,
            ),
            "source" => (
                json!({"type": "string", "minLength": 1, "description": "Who produced the message (a URI reference)."}),
                true,
            ),
            "type" => (
                json!({"type": "string", "description": "The message type: `<context>.<Name>`; also the routing key."}),
                true,
            ),
            "dataschema" => (
                json!({"type": "string", "pattern": "^contextgate:", "description": "The contract version the data follows: `contextgate:<context>/<Name>@<version>`."}),
                true,
            ),
            "subject" => (
                json!({"type": "string", "description": "What the message is about; an ordering key when a route orders by subject."}),
                false,
            ),
            "time" => (
                json!({"type": "string", "format": "date-time", "description": "When it happened (RFC 3339)."}),
                false,
            ),
            _ => (json!({"type": "string"}), false),
        };
        if needed {
            required.push(Value::String(header.clone()));
        }
        properties.insert(header, schema);
    }
    for trace in cloudevents::TRACE_HEADERS {
        properties.insert(
            trace.to_owned(),
            json!({"type": "string", "description": "W3C trace context, passed on from input to output as it is."}),
        );
    }
    json!({
        "title": "CloudEvents 1.0, binary content mode (AMQP)",
        "summary": "CloudEvents attributes in AMQP application headers, the data as the body.",
        "description": format!(
            "Each attribute travels in a header `{prefix}<attribute>`: the gateway writes that \
             prefix, and reads `{prefix}`, `cloudEvents:`, `ce-` or `ce_` (one per message). The \
             data's content type is the AMQP `content_type` (JSON only), the message id the \
             CloudEvents id. Extension attributes travel as `{prefix}<name>` too. The same \
             event may instead be sent in structured mode, with content type \
             `{STRUCTURED_CONTENT_TYPE}` and the whole event as the body.",
            prefix = cloudevents::HEADER_PREFIXES[0],
        ),
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "required": required,
            "properties": properties,
        },
    })
}

/// A structured-mode event whose `data` is the contract's schema.
fn structured_envelope(version: &ContractVersion, schema_key: &str) -> Value {
    json!({
        "schemaFormat": schema_format(jsonschema::Draft::Draft7),
        "schema": {
            "type": "object",
            "required": ["specversion", "id", "source", "type", "dataschema", "data"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1},
                "type": {"const": version.id.name().event_type()},
                "dataschema": {"const": version.id.dataschema()},
                "subject": {"type": "string"},
                "time": {"type": "string", "format": "date-time"},
                "datacontenttype": {"const": "application/json"},
                "data": {"$ref": format!("#/components/schemas/{schema_key}/schema")},
            },
        },
    })
}

#[cfg(test)]
mod tests;
