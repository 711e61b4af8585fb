//! The in-process bus: the embedded default that runs the whole product with one command and no
//! broker. Each context has a bounded inbox in memory; reading it over HTTP takes the messages
//! out. Dead letters are kept in memory with their failure. Nothing survives a restart: this bus
//! is for trying contextgate out and for tests, RabbitMQ is for production.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::dead_letters::{DeadLetterPage, DeadLetterView, FailureView, KeptDelivery, Page};
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
    /// The id of the next dead letter: ids grow, so that one names where a listing goes on.
    next_id: AtomicU64,
}

/// A message that could not be delivered, kept unchanged with why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: String,
    /// `None` when it failed before any route was picked.
    pub route: Option<RouteName>,
    pub failure: Failure,
    pub failed_at: SystemTime,
    pub attempt: u32,
    /// The input as it arrived.
    pub input: Arc<Delivery>,
}

impl DeadLetter {
    pub fn view(&self) -> DeadLetterView {
        DeadLetterView {
            id: self.id.clone(),
            route: self.route.as_ref().map(ToString::to_string),
            failure: FailureView {
                stage: self.failure.stage.as_str().to_owned(),
                reason: self.failure.reason.as_str().to_owned(),
                problems: serde_json::to_value(&self.failure.problems).expect("problems serialize"),
            },
            failed_at: Some(humantime::format_rfc3339_millis(self.failed_at).to_string()),
            attempt: self.attempt,
            input: KeptDelivery::of(&self.input),
        }
    }
}

impl InProcessBus {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inboxes: Mutex::default(),
            dead_letters: Mutex::default(),
            next_id: AtomicU64::new(1),
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

    pub fn dead_letter(
        &self,
        route: Option<&RouteName>,
        input: &Arc<Delivery>,
        failure: Failure,
        attempt: u32,
    ) {
        let mut dead_letters = self
            .dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock");
        if dead_letters.len() == self.capacity {
            dead_letters.pop_front();
        }
        dead_letters.push_back(DeadLetter {
            id: self.next_id.fetch_add(1, Ordering::Relaxed).to_string(),
            route: route.cloned(),
            failure,
            failed_at: SystemTime::now(),
            attempt,
            input: input.clone(),
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

    /// The dead letters kept, oldest first (they stay until redriven, deleted, or the bus is
    /// dropped), of one route or of all (`None`).
    pub fn dead_letters(&self, route: Option<&RouteName>, max: usize) -> Vec<DeadLetter> {
        self.dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock")
            .iter()
            .filter(|kept| route.is_none() || kept.route.as_ref() == route)
            .take(max)
            .cloned()
            .collect()
    }

    /// A page of the dead letters of one route or of all (`None`), oldest first.
    pub fn dead_letter_page(&self, route: Option<&RouteName>, page: &Page) -> DeadLetterPage {
        let after = page
            .after
            .as_deref()
            .and_then(|after| after.parse::<u64>().ok())
            .unwrap_or(0);
        let dead_letters = self
            .dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock");
        let of_route: Vec<&DeadLetter> = dead_letters
            .iter()
            .filter(|kept| route.is_none() || kept.route.as_ref() == route)
            .collect();
        let mut views = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for kept in of_route
            .iter()
            .filter(|kept| kept.id.parse::<u64>().is_ok_and(|id| id > after))
        {
            let size = kept.input.body.len() + 512;
            if views.len() == page.max || (!views.is_empty() && bytes + size > page.max_bytes) {
                more = true;
                break;
            }
            views.push(kept.view());
            bytes += size;
        }
        DeadLetterPage {
            total: of_route.len(),
            next: more
                .then(|| views.last().map(|view: &DeadLetterView| view.id.clone()))
                .flatten(),
            dead_letters: views,
        }
    }

    /// Takes the dead letters of `route` out: the one with `id`, or (`None`) up to `max`.
    pub fn take_dead_letters(
        &self,
        route: &RouteName,
        id: Option<&str>,
        max: usize,
    ) -> Vec<DeadLetter> {
        let mut dead_letters = self
            .dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock");
        let mut taken = Vec::new();
        dead_letters.retain(|kept| {
            let chosen = taken.len() < max
                && kept.route.as_ref() == Some(route)
                && id.is_none_or(|id| kept.id == id);
            if chosen {
                taken.push(kept.clone());
            }
            !chosen
        });
        taken
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}
