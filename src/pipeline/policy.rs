//! A route's failure policy turns a failure into an outcome: dead-letter (the default), drop
//! (counted and logged), or retry with backoff — for transient failures only, up to the route's
//! attempt limit, after which the message is a dead letter.

use super::Outcome;
use crate::message::Message;
use crate::registry::{Action, Route};
use crate::stages::Failure;

/// The outcome of attempt number `attempt` (1 for the first) of `route` on one input.
pub fn outcome(route: &Route, result: Result<Vec<Message>, Failure>, attempt: u32) -> Outcome {
    let failure = match result {
        Ok(messages) if messages.is_empty() => {
            tracing::debug!(route = %route.name, "Translator dropped the message.");
            return Outcome::Drop {
                reason: "the translator returned no message".into(),
            };
        }
        Ok(messages) => return Outcome::Forward { messages },
        Err(failure) => failure,
    };
    match route.policy.action(failure.stage) {
        Action::DeadLetter => dead_letter(route, failure),
        Action::Drop => {
            tracing::info!(route = %route.name, stage = %failure.stage, reason = %failure.reason, "Message dropped by policy.");
            Outcome::Drop {
                reason: failure.to_string(),
            }
        }
        Action::Retry if failure.transient && attempt < route.policy.max_attempts => {
            let delay = route.policy.backoff(attempt + 1, failure.retry_after);
            tracing::info!(route = %route.name, attempt, ?delay, reason = %failure.reason, "Message will be retried.");
            Outcome::Retry {
                attempt: attempt + 1,
                delay,
                failure,
            }
        }
        Action::Retry => dead_letter(route, failure),
    }
}

fn dead_letter(route: &Route, failure: Failure) -> Outcome {
    tracing::warn!(route = %route.name, stage = %failure.stage, reason = %failure.reason, "Message dead-lettered.");
    Outcome::DeadLetter { failure }
}
