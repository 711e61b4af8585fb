//! The transports the gateway delivers over. A closed set: each variant is its own type.
//!
//! # Layout
//! - [`in_process`]: the embedded default: inboxes and dead letters in memory, readable over HTTP.
//! - [`dead_letters`]: dead letters as the API shows them, the same on both buses.
//! - [`amqp`]: RabbitMQ: route queues, confirms, acks after confirms, reconnects.

use std::sync::Arc;

pub mod amqp;
pub mod dead_letters;
pub mod in_process;

pub use amqp::{AmqpBus, AmqpSettings};
pub use in_process::{DeadLetter, DeadLettersFull, InProcessBus};

/// Where outputs and dead letters go.
#[derive(Debug)]
pub enum Bus {
    /// The gateway acts on verdicts itself (see `gateway`).
    InProcess(InProcessBus),
    /// RabbitMQ: its consumers drive the pipeline and act on verdicts (see `amqp::worker`).
    Amqp(Arc<AmqpBus>),
}

impl Bus {
    /// Ready to take messages: always in process; on RabbitMQ, connected and consuming.
    pub fn is_ready(&self) -> bool {
        match self {
            Bus::InProcess(_) => true,
            Bus::Amqp(bus) => bus.status().is_ready(),
        }
    }
}
