//! The gateway: the pipeline joined to a bus. It takes an input, gets a verdict per route from
//! the pipeline, and acts on each: forwards go to the downstream context, dead letters are kept
//! with their failure, retries are scheduled after their backoff, drops are counted. Every
//! outcome is counted in the metrics of `telemetry`.

use std::sync::Arc;
use std::time::Instant;

use crate::bus::Bus;
use crate::pipeline::{Delivery, Outcome, Pipeline, Verdict};
use crate::registry::{ContextName, Route, RouteName};
use crate::stages::Failure;
use crate::telemetry;

#[derive(Debug)]
pub struct Gateway {
    pipeline: Pipeline,
    bus: Bus,
}

/// What became of one input.
#[derive(Debug)]
pub enum Ingested {
    /// It was routed: one verdict per route (none for an event no route takes).
    Routed(Vec<Verdict>),
    /// It failed before any route was picked (not a CloudEvent, unknown contract, a command no
    /// route or several routes take); the sender is told and nothing is kept.
    Refused(Failure),
}

impl Gateway {
    pub fn new(pipeline: Pipeline, bus: Bus) -> Arc<Self> {
        Arc::new(Self { pipeline, bus })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Takes one input from context `from` and acts on every verdict before returning.
    pub async fn ingest(self: &Arc<Self>, from: &ContextName, delivery: Delivery) -> Ingested {
        let started = Instant::now();
        metrics::counter!(telemetry::MESSAGES_IN, "context" => from.to_string()).increment(1);
        let mut verdicts = self.pipeline.process(from, &delivery).await;
        if let [
            Verdict {
                route: None,
                outcome: Outcome::DeadLetter { failure },
            },
        ] = verdicts.as_mut_slice()
        {
            let failure = failure.clone();
            metrics::counter!(telemetry::MESSAGES_DEAD_LETTERED, "route" => "none", "stage" => failure.stage.as_str())
                .increment(1);
            return Ingested::Refused(failure);
        }
        let delivery = Arc::new(delivery);
        for verdict in &verdicts {
            if let Some(route) = verdict.route.as_ref().and_then(|name| self.route(name)) {
                self.act(&route, verdict.outcome.clone(), &delivery).await;
            }
        }
        metrics::histogram!(telemetry::PROCESSING_SECONDS).record(started.elapsed().as_secs_f64());
        Ingested::Routed(verdicts)
    }

    fn route(&self, name: &RouteName) -> Option<Arc<Route>> {
        self.pipeline.registry().route(name).cloned()
    }

    async fn act(self: &Arc<Self>, route: &Arc<Route>, outcome: Outcome, delivery: &Arc<Delivery>) {
        let name = route.name.to_string();
        match outcome {
            Outcome::Forward { messages } => {
                metrics::counter!(telemetry::MESSAGES_FORWARDED, "route" => name)
                    .increment(messages.len() as u64);
                self.bus.publish(&route.downstream, messages).await;
            }
            Outcome::Drop { .. } => {
                metrics::counter!(telemetry::MESSAGES_DROPPED, "route" => name).increment(1);
            }
            Outcome::DeadLetter { failure } => {
                metrics::counter!(telemetry::MESSAGES_DEAD_LETTERED, "route" => name, "stage" => failure.stage.as_str())
                    .increment(1);
                self.bus
                    .dead_letter(Some(&route.name), delivery, failure)
                    .await;
            }
            Outcome::Retry {
                attempt,
                delay,
                failure,
            } => {
                metrics::counter!(telemetry::MESSAGES_RETRIED, "route" => name, "stage" => failure.stage.as_str())
                    .increment(1);
                self.schedule_retry(route.clone(), delivery.clone(), attempt, delay);
            }
        }
    }

    /// On the in-process bus a retry waits in a task (lost on restart, like everything in this
    /// bus); on RabbitMQ it waits in the route's delay queue.
    fn schedule_retry(
        self: &Arc<Self>,
        route: Arc<Route>,
        delivery: Arc<Delivery>,
        attempt: u32,
        delay: std::time::Duration,
    ) {
        let gateway = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let verdict = gateway
                .pipeline
                .process_on(&route, &delivery, attempt)
                .await;
            Box::pin(gateway.act(&route, verdict.outcome, &delivery)).await;
        });
    }
}
