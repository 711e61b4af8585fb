//! OpenTelemetry traces: a span per input per route, exported over OTLP/HTTP (protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and nothing at
//! all otherwise.
//!
//! A route's span (`process <route>`, kind consumer) continues the input's W3C trace context —
//! the transport's `traceparent` header (AMQP header, HTTP header), else the CloudEvents
//! `traceparent` extension — and its stages are child spans with their own start and end
//! (`decode`, then `validate-in`, `enrich`, `translate`, `validate-out` as the route's mode runs
//! them, timed by `stages::timing`, then `publish` and, on RabbitMQ, `confirm`). Every output
//! carries a `traceparent` naming the route's span, with the input's `tracestate`.
//!
//! Off (no endpoint), [`RouteSpan::start`] returns `None` after one atomic load: no clock is
//! read, nothing is allocated or locked per input, and outputs pass the input's trace context
//! on unchanged, as before. On, spans go to the SDK's batch processor (its own thread, its own
//! blocking HTTP client), and [`Tracing::shutdown`] flushes what it holds when the gateway
//! stops.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::message::Message;
use crate::registry::Route;
use crate::stages::Failure;
use crate::stages::receive::Input;
use crate::stages::timing::{self, Mark};

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` gives one.
pub const SERVICE_NAME: &str = "contextgate";
/// The W3C trace context header and CloudEvents extension naming the parent span.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace state header and CloudEvents extension, carried from input to output.
pub const TRACESTATE: &str = "tracestate";

/// The tracer, set once when tracing is on.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("the OTLP trace exporter cannot be built: {0}")]
    Exporter(String),
    #[error("tracing was started twice")]
    AlreadyStarted,
}

/// Traces being exported; [`Tracing::shutdown`] flushes them.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Exports what the batch processor still holds and stops it (at most `timeout`).
    pub async fn shutdown(self, timeout: Duration) {
        let provider = self.provider;
        let stopped =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await;
        match stopped {
            Ok(Ok(())) => tracing::debug!("Traces flushed."),
            Ok(Err(error)) => tracing::warn!(%error, "Traces could not all be flushed."),
            Err(error) => tracing::warn!(%error, "Flushing the traces failed."),
        }
    }
}

/// Whether spans are made (an OTLP endpoint is set and tracing started).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Starts exporting traces when the environment names an OTLP endpoint (`None` when it names
/// none, or `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`). The standard variables
/// apply: `OTEL_SERVICE_NAME` (default `contextgate`), `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `…_TIMEOUT`, `OTEL_TRACES_SAMPLER[_ARG]`,
/// `OTEL_BSP_*`. The protocol is `http/protobuf`; another one asked for is named in a warning.
/// `instance` becomes the resource's `service.instance.id`.
pub fn start(instance: &str) -> Result<Option<Tracing>, TraceError> {
    if !wanted() {
        return Ok(None);
    }
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(protocol) = std::env::var(variable)
            && !protocol.is_empty()
            && protocol != "http/protobuf"
        {
            tracing::warn!(variable, %protocol, "Only OTLP over http/protobuf is supported: traces are exported with it.");
        }
    }
    let timeout = export_timeout();
    // reqwest's blocking client runs a runtime of its own: it is built (and, on failure,
    // dropped) on a thread of its own, never on one of the gateway's runtime threads.
    let exporter = std::thread::spawn(move || build_exporter(timeout))
        .join()
        .map_err(|_| TraceError::Exporter("building the exporter panicked".into()))??;
    let provider = provider(exporter, instance);
    let tracer = provider.tracer(SERVICE_NAME);
    TRACER.set(tracer).map_err(|_| TraceError::AlreadyStarted)?;
    Ok(Some(Tracing { provider }))
}

/// The OTLP/HTTP exporter, its client trusting what the look-ups trust (`tls::lookup_config`).
fn build_exporter(timeout: Duration) -> Result<opentelemetry_otlp::SpanExporter, TraceError> {
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(crate::tls::lookup_config())
        .timeout(timeout)
        .build()
        .map_err(|error| TraceError::Exporter(error.to_string()))?;
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(timeout)
        .build()
        .map_err(|error| TraceError::Exporter(error.to_string()))
}

/// The provider: the exporter behind a batch processor, the service named.
fn provider(exporter: opentelemetry_otlp::SpanExporter, instance: &str) -> SdkTracerProvider {
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attributes| attributes.contains("service.name="));
    if !named {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.instance.id", instance.to_owned()))
        .with_attribute(KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION").to_owned(),
        ))
        .build();
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build()
}

/// Whether the environment asks for traces.
fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let is = |name: &str, value: &str| {
        std::env::var(name).is_ok_and(|found| found.trim().eq_ignore_ascii_case(value))
    };
    (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else
/// 10 s.
fn export_timeout() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.trim().parse::<u64>().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// Where an input's trace context is: the transport's headers first (the latest hop), then the
/// CloudEvents extensions.
#[derive(Debug, Default, Clone, Copy)]
pub struct Carrier<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl<'a> Carrier<'a> {
    /// The trace context among transport headers (names in any case).
    pub fn from_headers(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut carrier = Self::default();
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(TRACEPARENT) {
                carrier.traceparent = Some(value);
            } else if name.eq_ignore_ascii_case(TRACESTATE) {
                carrier.tracestate = Some(value);
            }
        }
        carrier
    }

    /// This carrier, or the message's `traceparent` and `tracestate` extensions when the
    /// headers had no `traceparent`.
    pub fn or_extensions(self, extensions: Option<&'a BTreeMap<String, String>>) -> Self {
        match (self.traceparent, extensions) {
            (None, Some(extensions)) => Self {
                traceparent: extensions.get(TRACEPARENT).map(String::as_str),
                tracestate: extensions.get(TRACESTATE).map(String::as_str),
            },
            _ => self,
        }
    }

    fn parent(&self) -> Context {
        static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
        PROPAGATOR
            .get_or_init(TraceContextPropagator::new)
            .extract(self)
    }
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// Which transport runs the route, as the span's `messaging.system` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Rabbitmq,
    InProcess,
}

impl System {
    fn as_str(self) -> &'static str {
        match self {
            System::Rabbitmq => "rabbitmq",
            System::InProcess => "contextgate",
        }
    }
}

/// The span of one input on one route, open from the input's arrival until its outcome is
/// settled; its stages become child spans when it ends.
#[derive(Debug)]
pub struct RouteSpan {
    tracer: &'static SdkTracer,
    span: opentelemetry_sdk::trace::Span,
    /// The span's own context, the parent of its stages.
    context: Context,
    /// `traceparent` naming this span, for the outputs.
    traceparent: String,
    /// The input's `tracestate`, carried to the outputs.
    tracestate: Option<String>,
    marks: Vec<Mark>,
}

impl RouteSpan {
    /// A span for an input of `route` that arrived at `arrived`, child of the carrier's trace
    /// context (a new trace without one); `None` when tracing is off. `input` is `None` when
    /// the input could not be decoded or is not the route's.
    pub fn start(
        route: &Route,
        carrier: Carrier<'_>,
        input: Option<&Input>,
        attempt: u32,
        system: System,
        arrived: SystemTime,
    ) -> Option<Self> {
        let tracer = TRACER.get()?;
        let parent = carrier.parent();
        let mut attributes = vec![
            KeyValue::new("messaging.system", system.as_str()),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", route.name.to_string()),
            KeyValue::new("contextgate.route", route.name.to_string()),
            KeyValue::new("contextgate.mode", route.mode.as_str()),
            KeyValue::new("contextgate.upstream", route.upstream.to_string()),
            KeyValue::new("contextgate.downstream", route.downstream.to_string()),
            KeyValue::new("contextgate.attempt", i64::from(attempt)),
        ];
        if let Some(input) = input {
            let attributes_of = &input.message.attributes;
            attributes.extend([
                KeyValue::new("messaging.message.id", attributes_of.id.clone()),
                KeyValue::new("cloudevents.event_id", attributes_of.id.clone()),
                KeyValue::new("cloudevents.event_source", attributes_of.source.clone()),
                KeyValue::new("cloudevents.event_type", attributes_of.event_type.clone()),
                KeyValue::new("contextgate.contract", input.contract.to_string()),
            ]);
            if let Some(subject) = &attributes_of.subject {
                attributes.push(KeyValue::new("cloudevents.event_subject", subject.clone()));
            }
        }
        let span = tracer
            .span_builder(format!("process {}", route.name))
            .with_kind(SpanKind::Consumer)
            .with_start_time(arrived)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let span_context = span.span_context().clone();
        let traceparent = traceparent(&span_context);
        let tracestate = carrier.tracestate.map(str::to_owned);
        let context = parent.with_remote_span_context(span_context);
        Some(Self {
            tracer,
            span,
            context,
            traceparent,
            tracestate,
            marks: Vec::new(),
        })
    }

    /// The `traceparent` that names this span.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The input's `tracestate`, if it had one.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// Sets every output's `traceparent` extension to this span (and `tracestate` to the
    /// input's), so that a downstream consumer continues the trace from the route.
    pub fn stamp(&self, messages: &mut [Message]) {
        for message in messages {
            let extensions = &mut message.attributes.extensions;
            extensions.insert(TRACEPARENT.to_owned(), self.traceparent.clone());
            match &self.tracestate {
                Some(state) => extensions.insert(TRACESTATE.to_owned(), state.clone()),
                None => extensions.remove(TRACESTATE),
            };
        }
    }

    /// Records a step the transport timed itself (`decode`, `publish`, `confirm`).
    pub fn mark(&mut self, name: &'static str, start: SystemTime, end: SystemTime) {
        timing::push(&mut self.marks, Mark { name, start, end });
    }

    /// Runs a route's stages with each timed (see `stages::timing`).
    pub async fn record<T>(&mut self, run: impl Future<Output = T>) -> T {
        let (output, marks) = timing::record(run).await;
        self.marks.extend(marks);
        output
    }

    /// Ends the span with the route's outcome: `forward` (with how many outputs), `drop`,
    /// `retry` or `dead-letter` (with the failure's stage and reason; the span's status is
    /// an error). `failure` is the failure of a retry or a dead letter.
    pub fn end(mut self, outcome: &'static str, outputs: usize, failure: Option<&Failure>) {
        let end = SystemTime::now();
        for mark in &self.marks {
            let mut stage = self
                .tracer
                .span_builder(mark.name)
                .with_kind(SpanKind::Internal)
                .with_start_time(mark.start)
                .start_with_context(self.tracer, &self.context);
            if let Some(failure) = failure
                && failure.stage.as_str() == mark.name
            {
                stage.set_status(Status::error(failure.reason.as_str()));
            }
            stage.end_with_timestamp(mark.end);
        }
        self.span
            .set_attribute(KeyValue::new("contextgate.outcome", outcome));
        if outcome == "forward" {
            self.span
                .set_attribute(KeyValue::new("contextgate.outputs", outputs as i64));
        }
        if let Some(failure) = failure {
            self.span.set_attributes([
                KeyValue::new("contextgate.failure.stage", failure.stage.as_str()),
                KeyValue::new("contextgate.failure.reason", failure.reason.as_str()),
            ]);
            if outcome == "dead-letter" {
                self.span.set_attributes([
                    KeyValue::new("contextgate.dead_letter.stage", failure.stage.as_str()),
                    KeyValue::new("contextgate.dead_letter.reason", failure.reason.as_str()),
                ]);
                self.span.set_status(Status::error(format!(
                    "dead-lettered at {}: {}",
                    failure.stage, failure.reason
                )));
            }
        }
        self.span.end_with_timestamp(end);
    }

    /// Ends the span with a drop and its reason.
    pub fn end_dropped(mut self, reason: &str) {
        self.span
            .set_attribute(KeyValue::new("contextgate.drop.reason", reason.to_owned()));
        self.end("drop", 0, None);
    }
}

/// `00-<trace id>-<span id>-<flags>`.
fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headers_trace_context_comes_before_the_extensions() {
        let extensions = BTreeMap::from([(
            TRACEPARENT.to_owned(),
            "00-11111111111111111111111111111111-2222222222222222-01".to_owned(),
        )]);
        let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let carrier =
            Carrier::from_headers([("TraceParent", header)]).or_extensions(Some(&extensions));
        assert_eq!(carrier.traceparent, Some(header));
        let carrier = Carrier::from_headers([]).or_extensions(Some(&extensions));
        let parent = carrier.parent();
        assert_eq!(
            parent.span().span_context().trace_id().to_string(),
            "11111111111111111111111111111111"
        );
        assert!(parent.span().span_context().is_remote());
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        let carrier = Carrier::from_headers([(TRACEPARENT, "00-not-a-trace-01")]);
        assert!(!carrier.parent().span().span_context().is_valid());
    }
}
