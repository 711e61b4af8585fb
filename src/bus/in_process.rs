//! The in-process bus: the embedded default that runs the whole product with one command and no
//! broker. Each context has a bounded inbox in memory; reading it over HTTP takes the messages
//! out. Dead letters are kept in memory with their failure. Nothing survives a restart: this bus
//! is for trying contextgate out and for tests, RabbitMQ is for production.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::message::Message;
use crate::pipeline::Delivery;
use crate::registry::{ContextName, RouteName};
use crate::stages::Failure;

/// How many messages one inbox (and the dead-letter list) holds; the oldest go first when full,
/// and are counted.
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug)]
pub struct InProcessBus {
    capacity: usize,
    inboxes: Mutex<HashMap<ContextName, VecDeque<Message>>>,
    dead_letters: Mutex<VecDeque<DeadLetter>>,
}

/// A message that could not be delivered, kept unchanged with why.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// `None` when it failed before any route was picked.
    pub route: Option<RouteName>,
    pub failure: Failure,
    /// The input as it arrived.
    pub input: KeptDelivery,
}

/// A delivery as kept with a dead letter: content type, headers and body (as text when it is
/// UTF-8, otherwise lossily).
#[derive(Debug, Clone, Serialize)]
pub struct KeptDelivery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl InProcessBus {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inboxes: Mutex::default(),
            dead_letters: Mutex::default(),
        }
    }

    pub fn publish(&self, context: &ContextName, messages: Vec<Message>) {
        let mut inboxes = self
            .inboxes
            .lock()
            .expect("no code panics while holding the inbox lock");
        let inbox = inboxes.entry(context.clone()).or_default();
        for message in messages {
            if inbox.len() == self.capacity {
                inbox.pop_front();
                metrics::counter!(crate::telemetry::INBOX_OVERFLOW, "context" => context.to_string())
                    .increment(1);
            }
            inbox.push_back(message);
        }
    }

    pub fn dead_letter(&self, route: Option<&RouteName>, input: &Delivery, failure: Failure) {
        let mut dead_letters = self
            .dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock");
        if dead_letters.len() == self.capacity {
            dead_letters.pop_front();
        }
        dead_letters.push_back(DeadLetter {
            route: route.cloned(),
            failure,
            input: KeptDelivery {
                content_type: input.content_type.clone(),
                headers: input.headers.clone(),
                body: String::from_utf8_lossy(&input.body).into_owned(),
            },
        });
    }

    /// Takes up to `max` messages out of a context's inbox, oldest first.
    pub fn take(&self, context: &ContextName, max: usize) -> Vec<Message> {
        let mut inboxes = self
            .inboxes
            .lock()
            .expect("no code panics while holding the inbox lock");
        match inboxes.get_mut(context) {
            Some(inbox) => {
                let n = max.min(inbox.len());
                inbox.drain(..n).collect()
            }
            None => Vec::new(),
        }
    }

    /// The dead letters kept, oldest first (they stay until the bus is dropped).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock")
            .iter()
            .cloned()
            .collect()
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}
