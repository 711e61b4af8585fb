//! `GET /v1/routes/{route}/stats`: a route's counters as this instance's own metrics hold them
//! (the series `/metrics` exposes with the label `route`), for whoever may read the route (its
//! downstream context, or the operator). Counters only, totals since the process started: the
//! console turns two readings into rates (per second over the time between its polls), so the
//! gateway keeps no extra state and the numbers are exactly Prometheus's.
//!
//! In a fleet each instance counts what it did; this answers for the instance asked.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use serde::Serialize;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::telemetry;

/// A route's counters.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RouteStats {
    pub route: String,
    /// Messages forwarded to the downstream context (`contextgate_messages_forwarded_total`).
    pub forwarded: f64,
    /// Inputs dropped by the translator or by policy, duplicates included.
    pub dropped: f64,
    /// Inputs scheduled for another attempt, every stage.
    pub retried: f64,
    /// Inputs dead-lettered, every stage.
    pub dead_lettered: f64,
    /// Dead-lettered inputs by failing stage.
    pub dead_lettered_by_stage: BTreeMap<String, f64>,
    /// Retried inputs by failing stage.
    pub retried_by_stage: BTreeMap<String, f64>,
    /// Every series labelled with this route, by metric name, summed over its other labels
    /// (histogram buckets left out): what later metrics add shows here too.
    pub series: BTreeMap<String, f64>,
}

/// The route's counters on this instance.
#[utoipa::path(
    get,
    path = "/v1/routes/{route}/stats",
    tag = "routes",
    params(("route" = String, Path, description = "The route (lowercase slug).", pattern = "^[a-z][a-z0-9-]{0,63}$")),
    responses((status = 200, description = "The route's counters since this instance started.", body = RouteStats), super::openapi::Refusals)
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(raw_route): UrlPath<String>,
) -> Result<Json<RouteStats>, ApiError> {
    let route = super::known_route(&state.gateway.pipeline(), &raw_route)?;
    caller.may_act_for(&route.downstream)?;
    Ok(Json(of_route(&state.metrics.render(), route.name.as_str())))
}

/// The counters of `route` in a rendering of the Prometheus text format.
fn of_route(rendered: &str, route: &str) -> RouteStats {
    let mut stats = RouteStats {
        route: route.to_owned(),
        ..RouteStats::default()
    };
    for sample in rendered.lines().filter_map(Sample::parse) {
        if sample.label("route") != Some(route) || sample.label("le").is_some() {
            continue;
        }
        *stats.series.entry(sample.name.to_owned()).or_default() += sample.value;
        let stage = || sample.label("stage").unwrap_or("none").to_owned();
        match sample.name {
            telemetry::MESSAGES_FORWARDED => stats.forwarded += sample.value,
            telemetry::MESSAGES_DROPPED => stats.dropped += sample.value,
            telemetry::MESSAGES_RETRIED => {
                stats.retried += sample.value;
                *stats.retried_by_stage.entry(stage()).or_default() += sample.value;
            }
            telemetry::MESSAGES_DEAD_LETTERED => {
                stats.dead_lettered += sample.value;
                *stats.dead_lettered_by_stage.entry(stage()).or_default() += sample.value;
            }
            _ => {}
        }
    }
    stats
}

/// One sample line: `name{label="value",...} value`.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        if line.starts_with('#') || line.trim().is_empty() {
            return None;
        }
        let (name, rest) = match line.find('{') {
            Some(open) => (&line[..open], &line[open + 1..]),
            None => {
                let (name, value) = line.split_once(' ')?;
                return Some(Sample {
                    name,
                    labels: Vec::new(),
                    value: value.split_whitespace().next()?.parse().ok()?,
                });
            }
        };
        let mut labels = Vec::new();
        let mut rest = rest;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let (value, after) = quoted(after)?;
            labels.push((key.trim(), value));
            rest = after;
        }
        let value = rest.split_whitespace().next()?.parse().ok()?;
        Some(Sample {
            name,
            labels,
            value,
        })
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n` undone), and what follows.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, character)) = chars.next() {
        match character {
            '"' => return Some((value, &text[index + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_counters_are_read_from_the_prometheus_text() {
        let rendered = "\
# HELP contextgate_messages_forwarded_total Messages forwarded.
# TYPE contextgate_messages_forwarded_total counter
contextgate_messages_forwarded_total{instance=\"a\",route=\"orders-to-shipping\"} 7
contextgate_messages_forwarded_total{instance=\"a\",route=\"orders-to-shipping-2\"} 100
contextgate_messages_dead_lettered_total{instance=\"a\",route=\"orders-to-shipping\",stage=\"translate\"} 2
contextgate_messages_dead_lettered_total{instance=\"a\",route=\"orders-to-shipping\",stage=\"validate-in\"} 1
contextgate_messages_retried_total{route=\"orders-to-shipping\",stage=\"enrich\"} 4
contextgate_messages_dropped_total{route=\"orders-to-shipping\"} 3
contextgate_latency_seconds_bucket{route=\"orders-to-shipping\",le=\"0.1\"} 9
contextgate_latency_seconds_count{route=\"orders-to-shipping\"} 9
contextgate_odd{note=\"a \\\"quoted\\\" } value\",route=\"orders-to-shipping\"} 5
";
        let stats = of_route(rendered, "orders-to-shipping");
        assert_eq!(stats.forwarded, 7.0);
        assert_eq!(stats.dead_lettered, 3.0);
        assert_eq!(stats.dead_lettered_by_stage["translate"], 2.0);
        assert_eq!(stats.retried, 4.0);
        assert_eq!(stats.retried_by_stage["enrich"], 4.0);
        assert_eq!(stats.dropped, 3.0);
        assert_eq!(stats.series["contextgate_latency_seconds_count"], 9.0);
        assert!(
            !stats
                .series
                .contains_key("contextgate_latency_seconds_bucket")
        );
        assert_eq!(stats.series["contextgate_odd"], 5.0);
    }
}
