//! The one integration test binary. Each module covers one boundary.

/// Shared set-up: registry copies and fixtures, events, verdict helpers.
mod helpers;

/// The gateway on the real RabbitMQ, end to end (issue 3).
mod amqp;
/// Registration and dead letters over HTTP with the gateway on the real RabbitMQ (issue 4).
mod amqp_api;
/// AsyncAPI 3.0 per context: `contextgate asyncapi` and `GET /v1/contexts/{context}/asyncapi`,
/// every document valid against the vendored AsyncAPI 3.0.0 schema (issue 15).
mod asyncapi;
/// Credentials: 401 / 403 per endpoint and caller, `hash-token`, `serve --credentials`.
mod auth;
/// RabbitMQ for the tests: client, gateway start-up, clean-up, private nodes.
mod broker;
/// The real binary: `contextgate check` and `contextgate translate`.
mod cli;
/// The compatibility checker's data-driven suite (`tests/compat/*.json`) and its limits (issue 5).
mod compat_cases;
/// The web console at /ui in a real headless Chromium: sign-in, a context, a redriven dead
/// letter, a screenshot (issue 15).
mod console;
/// Enrich look-ups against a real HTTP server started by the test (RELIABILITY D1–D7).
mod enrich;
/// `contextgate compat` and `check --against` on a real git repository (issue 5).
mod evolution;
/// The ledger under broker and process faults (RELIABILITY B1, B2, B3, B4, B10).
mod faults;
/// A fleet's registry store on the real PostgreSQL: push, pull, log, following the head,
/// conflicts, a store that stops (issue 11).
mod fleet;
/// A fleet of three binaries on a 3-node RabbitMQ cluster under faults: an instance killed, a
/// node stopped, an instance frozen (issue 11).
mod fleet_faults;
/// `contextgate import` on collections in the shapes real ones have (issue 13).
mod import;
/// The HTTP listener's limits: slow clients, load shedding, body caps, timeouts.
mod limits;
/// The context map: `contextgate map` in every format, `GET /v1/map` per caller (issue 15).
mod map;
/// Bad messages: decode, envelope, duplicate keys, numbers, sizes (RELIABILITY M1–M8).
mod messages;
/// The four modes end to end through the pipeline, on the shipped registry and on fixtures,
/// through every failure stage.
mod modes;
/// `GET /openapi.json`, and schemathesis against the real binary (A7).
mod openapi;
/// PostgreSQL for the tests: a database per test on the shared server, private servers.
mod postgres;
/// Registering contract versions over HTTP, persisted and applied at once (issue 4).
mod registration;
/// Archive and replay, idempotent routes (issue 14).
mod replay;
/// Routes and dead letters over HTTP, the ownership matrix, the watched registry folder.
mod routes;
/// The script sandbox through the pipeline (RELIABILITY C6–C15).
mod sandbox;
/// Untrusted schemas at load (RELIABILITY C1–C5).
mod schemas;
/// The gateway on the in-process bus over HTTP, and `contextgate serve` as the README runs it.
mod serve;
/// Ordered routes on RabbitMQ: the sequencer, the shards, a fleet of three binaries sharing
/// them through a kill, a return and a SIGTERM (issue 11, part 2).
mod shards;
/// OpenTelemetry traces to an OTLP receiver the test starts, the route metrics moving, the
/// Grafana dashboard's queries against `/metrics` (issue 15).
mod telemetry;
/// Habits checked as tests: module docs, ARCHITECTURE.md's code map.
mod tidy;
/// TLS: `amqps://` on a private node's TLS listener, https look-ups, refused TLS settings.
mod tls;
/// Translator cases at load and registration: only what a change affects runs, count and time
/// budgets per translator, a registration's turn (issue 10).
mod translator_cases;
/// Unroutable outputs: every input ends exactly once, forwarded or dead-lettered (issue 10).
mod unroutable;
