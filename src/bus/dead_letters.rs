//! Dead letters as the API shows them, the same on both buses: an id, the route, why it failed,
//! when, on which attempt, and the input exactly as it arrived.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::pipeline::Delivery;

/// The most dead letters one request redrives (more are worked through in several requests).
pub const MAX_SCAN: usize = 10_000;
/// The most dead letters one page lists.
pub const MAX_PAGE: usize = 1_000;
/// About how many bytes of dead letters (their inputs and headers) one page holds at most; a
/// page always holds at least one.
pub const PAGE_BYTES: usize = 4 << 20;

/// What a listing asks for: up to `max` dead letters after the one with id `after`, oldest
/// first, within about `max_bytes`.
#[derive(Debug, Clone)]
pub struct Page {
    pub after: Option<String>,
    pub max: usize,
    pub max_bytes: usize,
}

/// One page of a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    /// How many dead letters are kept now, on every page.
    pub total: usize,
    /// The cursor of the next page (`?after=`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Oldest first.
    pub dead_letters: Vec<DeadLetterView>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    /// Stable for as long as the dead letter is kept; names it in the API, and later ones have
    /// greater ids (on RabbitMQ its offset in the route's dead-letter stream).
    pub id: String,
    /// `None` when it failed before any route was picked.
    pub route: Option<String>,
    pub failure: FailureView,
    /// RFC 3339, when the gateway knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    pub input: KeptDelivery,
}

/// Why it failed: the stage, the reason, the problems (with JSON pointers).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FailureView {
    pub stage: String,
    pub reason: String,
    #[schema(value_type = Vec<crate::stages::Problem>)]
    pub problems: serde_json::Value,
}

/// A delivery as kept with a dead letter: content type, headers and body (as text when it is
/// UTF-8, otherwise lossily).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeptDelivery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `[name, value]` pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl KeptDelivery {
    pub fn of(delivery: &Delivery) -> Self {
        Self {
            content_type: delivery.content_type.clone(),
            headers: delivery.headers.clone(),
            body: String::from_utf8_lossy(&delivery.body).into_owned(),
        }
    }
}

/// What a redrive did: how many dead letters it took, and what became of them.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Redriven {
    pub redriven: usize,
    /// In process: `forward`, `drop`, `retry`, `dead-letter` (failed again, kept anew),
    /// `unchanged` (failed again, its new failure did not fit: put back as it was). On
    /// RabbitMQ: `queued`, back on the route's queue, where the route's consumers take them.
    pub outcomes: BTreeMap<String, usize>,
    /// Dead letters of the route still kept after this request.
    pub remaining: usize,
}

impl Redriven {
    pub fn count(&mut self, outcome: &str) {
        self.redriven += 1;
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }
}
