//! The in-process bus: the embedded default that runs the whole product with one command and no
//! broker. Each context has an inbox in memory, bounded by count and by bytes (the oldest pushed
//! out and counted when full); reading it over HTTP takes the messages out. Dead letters are
//! kept in memory with their failure, bounded the same way, but never pushed out: past the bound
//! a new one is refused ([`DeadLettersFull`]), and whoever holds the input is told. Nothing
//! survives a restart: this bus is for trying contextgate out and for tests, RabbitMQ is for
//! production.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::dead_letters::{DeadLetterPage, DeadLetterView, FailureView, KeptDelivery, Page};
use crate::message::Message;
use crate::pipeline::Delivery;
use crate::registry::{ContextName, RouteName};
use crate::stages::Failure;

/// How many messages one inbox holds, and how many dead letters are kept in all.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// How many bytes one inbox holds (data and attributes); the oldest go first past it.
pub const DEFAULT_INBOX_BYTES: usize = 64 * 1024 * 1024;
/// How many bytes the dead letters hold in all (inputs as they arrived, with their failures).
pub const DEFAULT_DEAD_LETTER_BYTES: usize = 128 * 1024 * 1024;

/// What the in-process bus holds at most.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Messages per inbox, and dead letters in all.
    pub messages: usize,
    /// Bytes per inbox.
    pub inbox_bytes: usize,
    /// Bytes of all dead letters together.
    pub dead_letter_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            messages: DEFAULT_CAPACITY,
            inbox_bytes: DEFAULT_INBOX_BYTES,
            dead_letter_bytes: DEFAULT_DEAD_LETTER_BYTES,
        }
    }
}

#[derive(Debug)]
pub struct InProcessBus {
    bounds: Bounds,
    inboxes: Mutex<HashMap<ContextName, Held<Message>>>,
    dead_letters: Mutex<Held<DeadLetter>>,
    /// The id of the next dead letter: ids grow, so that one names where a listing goes on.
    next_id: AtomicU64,
}

/// Messages or dead letters in arrival order, with the bytes they weigh together.
#[derive(Debug)]
struct Held<T> {
    items: VecDeque<T>,
    bytes: usize,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// A dead letter the bus could not keep: the dead letters are at their bound. Nothing was pushed
/// out to make room; the input stays with whoever holds it (over HTTP: 503, send it again).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the in-process dead letters are full ({held} kept, {held_bytes} bytes; at most {max} and {max_bytes} bytes): redrive or delete some"
)]
pub struct DeadLettersFull {
    pub held: usize,
    pub held_bytes: usize,
    pub max: usize,
    pub max_bytes: usize,
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
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds: Bounds {
                messages: bounds.messages.max(1),
                ..bounds
            },
            inboxes: Mutex::default(),
            dead_letters: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Delivers `messages` to a context's inbox; past its bounds (count or bytes) the oldest are
    /// pushed out and counted (`contextgate_inbox_overflow_total`). A message heavier than the
    /// whole byte bound is still delivered, alone.
    pub fn publish(&self, context: &ContextName, messages: Vec<Message>) {
        let mut inboxes = self
            .inboxes
            .lock()
            .expect("no code panics while holding the inbox lock");
        let inbox = inboxes.entry(context.clone()).or_default();
        for message in messages {
            let weight = message_weight(&message);
            while !inbox.items.is_empty()
                && (inbox.items.len() >= self.bounds.messages
                    || inbox.bytes + weight > self.bounds.inbox_bytes)
            {
                let oldest = inbox.items.pop_front().expect("the inbox is not empty");
                inbox.bytes -= message_weight(&oldest);
                metrics::counter!(crate::telemetry::INBOX_OVERFLOW, "context" => context.to_string())
                    .increment(1);
            }
            inbox.bytes += weight;
            inbox.items.push_back(message);
        }
    }

    /// Keeps a dead letter; past the bounds (count or bytes) it is refused, counted
    /// (`contextgate_dead_letters_refused_total`), and the caller decides what becomes of the
    /// input. The dead letters already kept are never pushed out.
    pub fn dead_letter(
        &self,
        route: Option<&RouteName>,
        input: &Arc<Delivery>,
        failure: Failure,
        attempt: u32,
    ) -> Result<(), DeadLettersFull> {
        let dead_letter = DeadLetter {
            id: self.next_id.fetch_add(1, Ordering::Relaxed).to_string(),
            route: route.cloned(),
            failure,
            failed_at: SystemTime::now(),
            attempt,
            input: input.clone(),
        };
        let weight = dead_letter_weight(&dead_letter);
        let mut dead_letters = self
            .dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock");
        let over_count = dead_letters.items.len() >= self.bounds.messages;
        let over_bytes = !dead_letters.items.is_empty()
            && dead_letters.bytes + weight > self.bounds.dead_letter_bytes;
        if over_count || over_bytes {
            let route = route.map_or_else(|| "none".to_owned(), ToString::to_string);
            metrics::counter!(crate::telemetry::DEAD_LETTERS_REFUSED, "route" => route)
                .increment(1);
            return Err(DeadLettersFull {
                held: dead_letters.items.len(),
                held_bytes: dead_letters.bytes,
                max: self.bounds.messages,
                max_bytes: self.bounds.dead_letter_bytes,
            });
        }
        dead_letters.bytes += weight;
        dead_letters.items.push_back(dead_letter);
        Ok(())
    }

    /// Takes messages out of a context's inbox, oldest first: up to `max`, and no more than
    /// `max_bytes` together (but always the oldest one, whatever it weighs).
    pub fn take(&self, context: &ContextName, max: usize, max_bytes: usize) -> Vec<Message> {
        let mut inboxes = self
            .inboxes
            .lock()
            .expect("no code panics while holding the inbox lock");
        let Some(inbox) = inboxes.get_mut(context) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut taken_bytes = 0;
        while taken.len() < max {
            let Some(next) = inbox.items.front() else {
                break;
            };
            let weight = message_weight(next);
            if !taken.is_empty() && taken_bytes + weight > max_bytes {
                break;
            }
            taken_bytes += weight;
            inbox.bytes -= weight;
            taken.push(inbox.items.pop_front().expect("the inbox has a front"));
        }
        taken
    }

    /// The dead letters kept, oldest first (they stay until redriven, deleted, or the bus is
    /// dropped), of one route or of all (`None`).
    pub fn dead_letters(&self, route: Option<&RouteName>, max: usize) -> Vec<DeadLetter> {
        self.dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock")
            .items
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
            .items
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
            let headers: usize = kept
                .input
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum();
            let size = kept.input.body.len() + headers + 512;
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
        let mut freed = 0;
        dead_letters.items.retain(|kept| {
            let chosen = taken.len() < max
                && kept.route.as_ref() == Some(route)
                && id.is_none_or(|id| kept.id == id);
            if chosen {
                freed += dead_letter_weight(kept);
                taken.push(kept.clone());
            }
            !chosen
        });
        dead_letters.bytes -= freed;
        taken
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(Bounds::default())
    }
}

/// What a message weighs in an inbox: its data and its attributes.
fn message_weight(message: &Message) -> usize {
    let attributes = &message.attributes;
    let extensions: usize = attributes
        .extensions
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    message.data.len()
        + attributes.id.len()
        + attributes.source.len()
        + attributes.event_type.len()
        + attributes.dataschema.len()
        + attributes.subject.as_ref().map_or(0, String::len)
        + attributes.time.as_ref().map_or(0, String::len)
        + extensions
}

/// What a dead letter weighs: the input as it arrived, and its failure.
fn dead_letter_weight(dead_letter: &DeadLetter) -> usize {
    let input = &dead_letter.input;
    let headers: usize = input
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    let problems: usize = dead_letter
        .failure
        .problems
        .iter()
        .map(|problem| problem.message.len() + problem.pointer.as_ref().map_or(0, String::len))
        .sum();
    input.body.len() + headers + input.content_type.as_ref().map_or(0, String::len) + problems
}
