//! The in-process bus: the embedded default that runs the whole product with one command and no
//! broker. Each context has an inbox in memory, bounded by count and by bytes (the oldest pushed
//! out and counted when full); reading it over HTTP takes the messages out. Dead letters are
//! kept in memory with their failure, bounded the same way, but never pushed out: past the bound
//! a new one is refused ([`DeadLettersFull`]), and whoever holds the input is told. A redrive
//! takes them out one at a time ([`Redriving`]) and keeps the room of the one it runs until it is
//! decided, so one that fails again is kept anew in that room, or else put back: never lost. Nothing
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
    dead_letters: Mutex<DeadLetters>,
    /// The id of the next dead letter: ids grow, so that one names where a listing goes on.
    next_id: AtomicU64,
}

/// Messages or dead letters in arrival order, with the bytes they weigh together.
#[derive(Debug)]
struct Held<T> {
    items: VecDeque<T>,
    bytes: usize,
}

/// The dead letters kept, and the room of those a redrive took out and has not decided yet.
#[derive(Debug, Default)]
struct DeadLetters {
    /// Their bytes include those of the dead letters being redriven.
    held: Held<DeadLetter>,
    /// How many dead letters are being redriven: out of `held.items`, their room still held.
    in_redrive: usize,
}

impl DeadLetters {
    fn count(&self) -> usize {
        self.held.items.len() + self.in_redrive
    }

    /// Puts a dead letter among the others in order of id, where it was before it was taken.
    fn put_back(&mut self, dead_letter: DeadLetter) {
        let id = numeric_id(&dead_letter);
        let at = self
            .held
            .items
            .partition_point(|kept| numeric_id(kept) < id);
        self.held.items.insert(at, dead_letter);
    }
}

/// A dead letter a redrive took out and runs through its route. Its room (count and bytes)
/// stays held until it is decided: [`Redriving::settle`] when it left (forwarded, dropped,
/// scheduled for a retry), [`Redriving::keep_again`] when it failed again. Dropped undecided, it
/// goes back where it was.
#[derive(Debug)]
#[must_use = "an undecided redrive puts the dead letter back"]
pub struct Redriving<'a> {
    bus: &'a InProcessBus,
    /// `None` once decided.
    dead_letter: Option<DeadLetter>,
    weight: usize,
}

impl Redriving<'_> {
    /// The input as it arrived, to run again.
    pub fn input(&self) -> &Arc<Delivery> {
        &self
            .dead_letter
            .as_ref()
            .expect("a redrive is undecided until it is consumed")
            .input
    }

    /// It left the dead letters: its room is free.
    pub fn settle(mut self) {
        self.dead_letter = None;
        let mut dead_letters = self.bus.lock_dead_letters();
        dead_letters.in_redrive -= 1;
        dead_letters.held.bytes -= self.weight;
    }

    /// It failed again: kept anew (a new id, last) in the room it held. When the new failure
    /// does not fit (it weighs more and the bytes are at their bound), the dead letter is put back
    /// as it was, where it was, and the refusal returned.
    pub fn keep_again(mut self, failure: Failure, attempt: u32) -> Result<(), DeadLettersFull> {
        let original = self
            .dead_letter
            .take()
            .expect("a redrive is undecided until it is consumed");
        let again =
            self.bus
                .new_dead_letter(original.route.as_ref(), &original.input, failure, attempt);
        let mut dead_letters = self.bus.lock_dead_letters();
        dead_letters.in_redrive -= 1;
        dead_letters.held.bytes -= self.weight;
        let kept = self.bus.keep(&mut dead_letters, again);
        if kept.is_err() {
            dead_letters.held.bytes += self.weight;
            dead_letters.put_back(original);
        }
        kept
    }
}

impl Drop for Redriving<'_> {
    fn drop(&mut self) {
        if let Some(original) = self.dead_letter.take() {
            let mut dead_letters = self.bus.lock_dead_letters();
            dead_letters.in_redrive -= 1;
            dead_letters.put_back(original);
        }
    }
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
        let dead_letter = self.new_dead_letter(route, input, failure, attempt);
        let mut dead_letters = self.lock_dead_letters();
        self.keep(&mut dead_letters, dead_letter)
    }

    fn new_dead_letter(
        &self,
        route: Option<&RouteName>,
        input: &Arc<Delivery>,
        failure: Failure,
        attempt: u32,
    ) -> DeadLetter {
        DeadLetter {
            id: self.next_id.fetch_add(1, Ordering::Relaxed).to_string(),
            route: route.cloned(),
            failure,
            failed_at: SystemTime::now(),
            attempt,
            input: input.clone(),
        }
    }

    /// Keeps `dead_letter` last when it fits within the bounds; counts a refusal.
    fn keep(
        &self,
        dead_letters: &mut DeadLetters,
        dead_letter: DeadLetter,
    ) -> Result<(), DeadLettersFull> {
        let weight = dead_letter_weight(&dead_letter);
        let over_count = dead_letters.count() >= self.bounds.messages;
        let over_bytes = dead_letters.count() > 0
            && dead_letters.held.bytes + weight > self.bounds.dead_letter_bytes;
        if over_count || over_bytes {
            let route = dead_letter
                .route
                .as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string);
            metrics::counter!(crate::telemetry::DEAD_LETTERS_REFUSED, "route" => route)
                .increment(1);
            return Err(DeadLettersFull {
                held: dead_letters.count(),
                held_bytes: dead_letters.held.bytes,
                max: self.bounds.messages,
                max_bytes: self.bounds.dead_letter_bytes,
            });
        }
        dead_letters.held.bytes += weight;
        dead_letters.held.items.push_back(dead_letter);
        Ok(())
    }

    fn lock_dead_letters(&self) -> std::sync::MutexGuard<'_, DeadLetters> {
        self.dead_letters
            .lock()
            .expect("no code panics while holding the dead-letter lock")
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
        self.lock_dead_letters()
            .held
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
        let dead_letters = self.lock_dead_letters();
        let of_route: Vec<&DeadLetter> = dead_letters
            .held
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
        let mut dead_letters = self.lock_dead_letters();
        let mut taken = Vec::new();
        let mut freed = 0;
        dead_letters.held.items.retain(|kept| {
            let chosen = taken.len() < max
                && kept.route.as_ref() == Some(route)
                && id.is_none_or(|id| kept.id == id);
            if chosen {
                freed += dead_letter_weight(kept);
                taken.push(kept.clone());
            }
            !chosen
        });
        dead_letters.held.bytes -= freed;
        taken
    }

    /// The ids of the dead letters of `route`, oldest first, up to `max`: what a redrive of all
    /// of them runs (not those kept while it runs).
    pub fn dead_letter_ids(&self, route: &RouteName, max: usize) -> Vec<String> {
        self.lock_dead_letters()
            .held
            .items
            .iter()
            .filter(|kept| kept.route.as_ref() == Some(route))
            .take(max)
            .map(|kept| kept.id.clone())
            .collect()
    }

    /// Takes the dead letter of `route` with `id` out for a redrive, its room still held; `None`
    /// when there is none (deleted, or taken by another redrive).
    pub fn redrive(&self, route: &RouteName, id: &str) -> Option<Redriving<'_>> {
        let mut dead_letters = self.lock_dead_letters();
        let at = dead_letters
            .held
            .items
            .iter()
            .position(|kept| kept.route.as_ref() == Some(route) && kept.id == id)?;
        let dead_letter = dead_letters
            .held
            .items
            .remove(at)
            .expect("the position was just found");
        dead_letters.in_redrive += 1;
        Some(Redriving {
            bus: self,
            weight: dead_letter_weight(&dead_letter),
            dead_letter: Some(dead_letter),
        })
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

/// A dead letter's id as a number, for its place among the others (ids are a counter here).
fn numeric_id(dead_letter: &DeadLetter) -> u64 {
    dead_letter.id.parse().unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::{Problem, Reason, Stage};

    fn failure(message: &str) -> Failure {
        Failure::one(
            Stage::Enrich,
            Reason::EnrichmentFailed,
            Problem::new(message),
        )
    }

    fn ids(bus: &InProcessBus) -> Vec<String> {
        bus.dead_letters(None, usize::MAX)
            .into_iter()
            .map(|kept| kept.id)
            .collect()
    }

    #[test]
    fn a_redriven_dead_letter_holds_its_room_and_is_never_lost() {
        let bus = InProcessBus::new(Bounds {
            messages: 3,
            inbox_bytes: DEFAULT_INBOX_BYTES,
            dead_letter_bytes: 1_000,
        });
        let route = RouteName::parse("up-to-down").unwrap();
        let input = Arc::new(Delivery::structured("{}"));
        for _ in 0..3 {
            bus.dead_letter(Some(&route), &input, failure("first"), 1)
                .unwrap();
        }
        assert_eq!(ids(&bus), ["1", "2", "3"]);

        // A new failure that does not fit: the dead letter is put back as it was, where it was.
        let redriving = bus.redrive(&route, "2").unwrap();
        assert!(
            redriving
                .keep_again(failure(&"x".repeat(2_000)), 1)
                .is_err()
        );
        assert_eq!(ids(&bus), ["1", "2", "3"]);
        assert_eq!(
            bus.dead_letters(None, 3)[1].failure.problems[0].message,
            "first"
        );

        // Undecided (dropped): back where it was.
        drop(bus.redrive(&route, "2").unwrap());
        assert_eq!(ids(&bus), ["1", "2", "3"]);

        // While one runs, its room stays held: others are refused, and it is kept anew.
        let redriving = bus.redrive(&route, "1").unwrap();
        assert!(bus.redrive(&route, "1").is_none(), "taken once");
        assert!(
            bus.dead_letter(Some(&route), &input, failure("other"), 1)
                .is_err()
        );
        redriving.keep_again(failure("again"), 1).unwrap();
        // Ids are never reused: the refused ones took 4 and 5.
        assert_eq!(ids(&bus), ["2", "3", "6"]);

        // Settled (it left): its room is free.
        bus.redrive(&route, "3").unwrap().settle();
        assert_eq!(ids(&bus), ["2", "6"]);
        bus.dead_letter(Some(&route), &input, failure("other"), 1)
            .unwrap();
        assert_eq!(ids(&bus), ["2", "6", "7"]);
    }
}
