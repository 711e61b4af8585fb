//! The transports the gateway delivers over. A closed set: each variant is its own type and the
//! `match` forwards each call to it.
//!
//! # Layout
//! - [`in_process`]: the embedded default: inboxes and dead letters in memory, readable over HTTP.
//!   (RabbitMQ over AMQP is the next step of the transport work.)

use crate::message::Message;
use crate::pipeline::Delivery;
use crate::registry::{ContextName, RouteName};
use crate::stages::Failure;

pub mod in_process;

pub use in_process::{DeadLetter, InProcessBus};

/// Where outputs and dead letters go.
#[derive(Debug)]
pub enum Bus {
    InProcess(InProcessBus),
}

impl Bus {
    /// Delivers messages to a context's inbound side.
    pub async fn publish(&self, context: &ContextName, messages: Vec<Message>) {
        match self {
            Bus::InProcess(bus) => bus.publish(context, messages),
        }
    }

    /// Keeps an input that could not be delivered, unchanged, with the failure.
    pub async fn dead_letter(&self, route: Option<&RouteName>, input: &Delivery, failure: Failure) {
        match self {
            Bus::InProcess(bus) => bus.dead_letter(route, input, failure),
        }
    }
}
