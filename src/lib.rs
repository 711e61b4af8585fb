//! contextgate: an integration gateway between bounded contexts.
//!
//! A message enters from one context, is decoded into a [`message::Message`], matched to the
//! routes that accept its contract, and run through each route's relationship mode. The result
//! is data: one [`pipeline::Verdict`] per route, saying forward, drop, retry or dead-letter.
//!
//! # Layout, in reading order
//! - [`compat`]: compatibility between two JSON Schema versions (no I/O), as a schema registry
//!   checks it: the differences, a verdict per level and policy, a checked counterexample.
//! - [`registry`]: the registry folder (contexts, contracts, translators, routes), loaded and
//!   checked as a whole, then compiled once.
//! - [`evolution`]: the registry against a baseline (`check --against`): immutable versions,
//!   compatible new versions.
//! - [`map`]: the context map: contexts, routes with their relationship (CF, OHS/PL, ACL,
//!   enrichment), U/D roles, types and order; what each viewer sees; Mermaid, DOT, SVG, JSON.
//! - [`asyncapi`]: a context's AsyncAPI 3.0 document: its exchanges and route queues with AMQP
//!   bindings, its messages (contracts by reference, CloudEvents headers), send/receive operations.
//! - [`import`]: `contextgate import`: a folder of existing schemas becomes a context's
//!   contracts.
//! - [`message`]: the transport-neutral CloudEvent and its decoding from binary or structured mode.
//! - [`scripting`]: the one hardened Rhai engine and the JSON ⇄ Rhai conversions.
//! - [`stages`]: the flow, one verb per module (receive, validate, translate, lookup).
//! - [`modes`]: the four relationships, each a short composition of stages.
//! - [`pipeline`]: one input message → a verdict per route, with each route's failure policy.
//! - [`dedup`]: idempotent routes: what each route forwarded within its dedup window.
//! - [`bus`]: the transports: the in-process bus and RabbitMQ.
//! - [`archive`]: every context's inputs kept for replays (a file archive in process; a
//!   RabbitMQ stream on the broker).
//! - [`replay`]: replay jobs: an archived window through today's routes.
//! - [`store`]: the registry store of a fleet (PostgreSQL): every revision, committed only on
//!   the head.
//! - [`gateway`]: the pipeline joined to a bus: acts on every verdict; follows the store's head.
//! - [`api`]: the HTTP API: registration, ingest, inboxes, dead letters, health, metrics, OpenAPI.
//! - [`cli`]: `contextgate serve`, `check`, `compat`, `translate` and `hash-token`.
//! - [`telemetry`]: tracing set-up, metric names, the Prometheus recorder, OpenTelemetry traces.
//! - [`tls`]: the CA files and client certificate of `amqps://` and https look-ups, read and
//!   checked at start; rustls with ring.

pub mod compat;
//
pub mod registry;
//
pub mod evolution;
//
pub mod map;
//
pub mod asyncapi;
//
pub mod import;
//
pub mod message;
//
pub mod scripting;
//
pub mod stages;
//
pub mod modes;
//
pub mod pipeline;
//
pub mod dedup;
//
pub mod bus;
//
pub mod archive;
//
pub mod replay;
//
pub mod store;
//
pub mod gateway;
//
pub mod api;
//
pub mod cli;
//
pub mod telemetry;
//
pub mod tls;
