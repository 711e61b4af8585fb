//! One input message → a verdict per route: receive → pick routes → `modes::run` → the route's
//! failure policy. Nothing here publishes; the transport acts on the verdicts (forward, drop,
//! retry later, dead-letter) and acknowledges the input only once all of them are done.
//!
//! CPU-bound work runs with one of the process's script permits (`scripting::script_permit`):
//! decoding where a method here decodes (`process`, `process_on`, `validate_on`), each route's
//! run in `modes::run`. Callers hold none.
//!
//! # Layout
//! - [`policy`]: a route's failure policy turns a [`Failure`] into an [`Outcome`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::message::Message;
use crate::modes::{self, Shared};
use crate::registry::{ContextName, Registry, Route, RouteName};
use crate::scripting;
use crate::stages::receive::{self, Input};
use crate::stages::{Failure, Problem, Reason, Stage, validate};
use crate::telemetry::trace::RouteSpan;

pub mod policy;

/// What happens to one input on one route.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `None` when the input failed before any route was picked (decode, unknown contract,
    /// a command that matches no route or several).
    pub route: Option<RouteName>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The outcome of one input on one route.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Publish these messages to the downstream context.
    Forward { messages: Vec<Message> },
    /// Let it go; counted and logged.
    Drop { reason: String },
    /// Process it again on this route after `delay`, as attempt number `attempt`.
    Retry {
        attempt: u32,
        #[serde(serialize_with = "serialize_duration")]
        delay: Duration,
        failure: Failure,
    },
    /// Keep the input unchanged with the failure.
    DeadLetter { failure: Failure },
}

impl Outcome {
    /// `forward`, `drop`, `retry` or `dead-letter`, as the API reports it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Forward { .. } => "forward",
            Outcome::Drop { .. } => "drop",
            Outcome::Retry { .. } => "retry",
            Outcome::DeadLetter { .. } => "dead-letter",
        }
    }
}

/// A delivery as a transport hands it over.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Delivery {
    /// A structured-mode CloudEvent body.
    pub fn structured(body: impl Into<Bytes>) -> Self {
        Self {
            content_type: Some(crate::message::cloudevents::STRUCTURED_CONTENT_TYPE.to_owned()),
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

/// The gateway's processing core over one registry.
#[derive(Debug, Clone)]
pub struct Pipeline {
    registry: Arc<Registry>,
}

impl Pipeline {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Processes a first delivery from context `from`: a verdict per route it goes to (none for
    /// an event no route takes), or one route-less dead letter when it fails before routing.
    pub async fn process(&self, from: &ContextName, delivery: &Delivery) -> Vec<Verdict> {
        let accepted = {
            let _permit = scripting::script_permit().await;
            self.accept(from, delivery)
        };
        match accepted {
            Ok((input, routes)) => self.run_routes(&input, routes).await,
            Err(failure) => vec![unrouted(failure)],
        }
    }

    /// Runs an accepted input on each of its routes: a verdict per route. Each route's run takes
    /// a script permit of its own: the caller holds none.
    pub async fn run_routes(&self, input: &Input, routes: Vec<Arc<Route>>) -> Vec<Verdict> {
        let mut shared = Shared::default();
        let mut verdicts = Vec::with_capacity(routes.len());
        for route in routes {
            let result = modes::run(&route, input, &mut shared).await;
            verdicts.push(Verdict {
                route: Some(route.name.clone()),
                outcome: policy::outcome(&route, result, 1),
            });
        }
        verdicts
    }

    /// [`Pipeline::run_routes`], each route's stages recorded in its span: `spans[i]` is the
    /// span of `routes[i]`. Kept apart from the untraced run, whose future stays as small as it
    /// was.
    pub async fn run_routes_traced(
        &self,
        input: &Input,
        routes: Vec<Arc<Route>>,
        spans: &mut [RouteSpan],
    ) -> Vec<Verdict> {
        let mut shared = Shared::default();
        let mut verdicts = Vec::with_capacity(routes.len());
        for (index, route) in routes.into_iter().enumerate() {
            let result = match spans.get_mut(index) {
                None => modes::run(&route, input, &mut shared).await,
                Some(span) => span.record(modes::run(&route, input, &mut shared)).await,
            };
            verdicts.push(Verdict {
                route: Some(route.name.clone()),
                outcome: policy::outcome(&route, result, 1),
            });
        }
        verdicts
    }

    /// Decodes a delivery from context `from`, checks it and picks its routes, running none.
    pub fn accept(
        &self,
        from: &ContextName,
        delivery: &Delivery,
    ) -> Result<(Input, Vec<Arc<Route>>), Failure> {
        self.decode(delivery)
            .and_then(|message| receive::accept(&self.registry, from, message))
    }

    /// Processes a message on one route only: a retry (`attempt` ≥ 2), a redrive or a dry run.
    pub async fn process_on(&self, route: &Route, delivery: &Delivery, attempt: u32) -> Verdict {
        let received = {
            let _permit = scripting::script_permit().await;
            self.receive_on(route, delivery)
        };
        let outcome = match received {
            Ok(input) => self.run_on(route, &input, attempt).await,
            Err(failure) => Outcome::DeadLetter { failure },
        };
        Verdict {
            route: Some(route.name.clone()),
            outcome,
        }
    }

    /// Runs a message on one route up to validate-in and no further (no look-up, no
    /// translator): `None` when it passes, else the verdict the route's policy gives its failure.
    /// A dry run by a caller who may not see what the rest of the route would disclose.
    pub async fn validate_on(&self, route: &Route, delivery: &Delivery) -> Option<Verdict> {
        let _permit = scripting::script_permit().await;
        let outcome = match self.receive_on(route, delivery) {
            Err(failure) => Outcome::DeadLetter { failure },
            Ok(input) => {
                let version = route
                    .accepted(&input.contract)
                    .expect("receive_on keeps only inputs the route accepts");
                let failure = validate::document(version, &input.data, Stage::ValidateIn).err()?;
                policy::outcome(route, Err(failure), 1)
            }
        };
        Some(Verdict {
            route: Some(route.name.clone()),
            outcome,
        })
    }

    /// Decodes and checks a delivery taken from one route's queue: the input, if the route
    /// takes it. Transports call this first to find the input's ordering key.
    pub fn receive_on(&self, route: &Route, delivery: &Delivery) -> Result<Input, Failure> {
        self.decode(delivery)
            .and_then(|message| self.check_on(route, message))
    }

    /// [`Pipeline::receive_on`] from a transport's own form of the headers, text borrowed
    /// where it can be: no [`Delivery`] is built.
    pub fn receive_parts_on<'a>(
        &self,
        route: &Route,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: Bytes,
    ) -> Result<Input, Failure> {
        receive::decode(content_type, headers, body)
            .and_then(|message| self.check_on(route, message))
    }

    /// Checks a decoded message against the route's upstream and contracts.
    fn check_on(&self, route: &Route, message: Message) -> Result<Input, Failure> {
        let input = receive::check(&self.registry, &route.upstream, message)?;
        match route.accepted(&input.contract) {
            Some(_) => Ok(input),
            None => Err(Failure::one(
                Stage::Decode,
                Reason::Unroutable,
                Problem::new(format!(
                    "route {} does not accept {}",
                    route.name, input.contract
                )),
            )),
        }
    }

    /// Runs a received input on one route as attempt number `attempt`, through its policy. The
    /// route's run takes a script permit: the caller holds none.
    pub async fn run_on(&self, route: &Route, input: &Input, attempt: u32) -> Outcome {
        let result = modes::run(route, input, &mut Shared::default()).await;
        policy::outcome(route, result, attempt)
    }

    /// [`Pipeline::run_on`], the route's stages recorded in `span`.
    pub async fn run_on_traced(
        &self,
        route: &Route,
        input: &Input,
        attempt: u32,
        span: &mut RouteSpan,
    ) -> Outcome {
        let result = span
            .record(modes::run(route, input, &mut Shared::default()))
            .await;
        policy::outcome(route, result, attempt)
    }

    fn decode(&self, delivery: &Delivery) -> Result<Message, Failure> {
        receive::decode(
            delivery.content_type.as_deref(),
            delivery
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            delivery.body.clone(),
        )
    }
}

fn unrouted(failure: Failure) -> Verdict {
    tracing::warn!(stage = %failure.stage, reason = %failure.reason, "Message failed before routing.");
    Verdict {
        route: None,
        outcome: Outcome::DeadLetter { failure },
    }
}

fn serialize_duration<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}
