//! contextgate: an integration gateway between bounded contexts.
//!
//! A message enters from one context, is decoded into a [`message::Message`], matched to the
//! routes that accept its contract, and run through each route's relationship mode. The result
//! is data: one [`pipeline::Verdict`] per route, saying forward, drop, retry or dead-letter.
//!
//! # Layout, in reading order
//! - [`registry`]: the registry folder (contexts, contracts, translators, routes), loaded and
//!   checked as a whole, then compiled once.
//! - [`message`]: the transport-neutral CloudEvent and its decoding from binary or structured mode.
//! - [`scripting`]: the one hardened Rhai engine and the JSON ⇄ Rhai conversions.
//! - [`stages`]: the flow, one verb per module (receive, validate, translate, lookup).
//! - [`modes`]: the four relationships, each a short composition of stages.
//! - [`pipeline`]: one input message → a verdict per route, with each route's failure policy.
//! - [`bus`]: the transports: the in-process bus (RabbitMQ next).
//! - [`gateway`]: the pipeline joined to a bus: acts on every verdict.
//! - [`api`]: the HTTP API: ingest, inboxes, dead letters, health, metrics.
//! - [`cli`]: `contextgate serve`, `contextgate check` and `contextgate translate`.
//! - [`telemetry`]: tracing set-up, metric names, the Prometheus recorder.

pub mod registry;
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
pub mod bus;
//
pub mod gateway;
//
pub mod api;
//
pub mod cli;
//
pub mod telemetry;
