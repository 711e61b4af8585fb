//! Lookup: the enrich stage's HTTP GET queries to the contexts that own the data. URLs come
//! from templates checked against an allow-list at load, and each filled URL is checked against
//! it again before its request; requests have connect and total
//! timeouts, follow no redirects and read at most `max_bytes`. Answers are cached per look-up
//! (moka): concurrent identical look-ups share one request, and errors are never cached.
//!
//! Refused connections, timeouts, 5xx and 429 are transient (the route may retry them, honouring
//! `Retry-After`); other answers that cannot be used fail for good. After a look-up's
//! `breaker_failures` transient failures in a row, its circuit opens: for `breaker_cooldown` it
//! fails at once without a request.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{Failure, Problem, Reason, Stage};
use crate::message::json::{parse_strict, truncate};
use crate::registry::{Lookup, Route};

/// Runs every look-up of `route` for one message: results by look-up name.
pub async fn fetch_all(route: &Route, data: &Value) -> Result<Map<String, Value>, Failure> {
    let _timed = super::timing::timed(Stage::Enrich);
    let mut results = Map::new();
    for lookup in &route.lookups {
        let value = fetch(lookup, data).await?;
        results.insert(lookup.name.clone(), Value::clone(&value));
    }
    Ok(results)
}

/// One look-up for one message, through the cache.
pub async fn fetch(lookup: &Lookup, data: &Value) -> Result<Arc<Value>, Failure> {
    let url = lookup.template.fill(data).map_err(|message| {
        failure(
            lookup,
            Reason::EnrichmentFailed,
            format!("cannot build the URL: {message}"),
        )
    })?;
    if lookup.cache_ttl.is_zero() {
        return request(lookup, &url).await.map(Arc::new);
    }
    lookup
        .cache
        .try_get_with(url.clone(), async {
            request(lookup, &url).await.map(Arc::new)
        })
        .await
        .map_err(|shared: Arc<Failure>| Failure::clone(&shared))
}

async fn request(lookup: &Lookup, url: &str) -> Result<Value, Failure> {
    if let Some(remaining) = lookup.breaker.open_for() {
        return Err(failure(
            lookup,
            Reason::EnrichmentUnavailable,
            format!(
                "not calling {}: it failed {} times in a row (circuit open for {} ms more)",
                lookup.template.source,
                lookup.breaker.threshold,
                remaining.as_millis()
            ),
        )
        .transient(Some(remaining)));
    }
    let result = call(lookup, url).await;
    lookup
        .breaker
        .record(matches!(&result, Err(failure) if failure.transient));
    result
}

async fn call(lookup: &Lookup, url: &str) -> Result<Value, Failure> {
    // The template was checked at load; the filled URL is checked again, as it will be sent.
    let checked = lookup.template.check(url).map_err(|message| {
        failure(
            lookup,
            Reason::EnrichmentFailed,
            format!("not calling {url}: {message}"),
        )
    })?;
    let response = lookup.client.get(checked).send().await.map_err(|error| {
        let what = if error.is_timeout() {
            format!("timed out after {} ms", lookup.timeout.as_millis())
        } else if error.is_connect() {
            // The innermost cause says why: refused, or over https a certificate the trusted
            // roots do not vouch for (then `--lookup-ca-file` is the fix).
            format!("could not connect: {}", root_cause(&error))
        } else {
            "the request failed".to_owned()
        };
        failure(
            lookup,
            Reason::EnrichmentUnavailable,
            format!("GET {url}: {what}"),
        )
        .transient(None)
    })?;
    let status = response.status();
    if status.as_u16() == 429 || status.is_server_error() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(failure(
            lookup,
            Reason::EnrichmentUnavailable,
            format!("GET {url}: answered {status}"),
        )
        .transient(retry_after));
    }
    if !status.is_success() {
        return Err(failure(
            lookup,
            Reason::EnrichmentFailed,
            format!("GET {url}: answered {status}"),
        ));
    }
    if response
        .content_length()
        .is_some_and(|length| length > lookup.max_bytes as u64)
    {
        return Err(too_large(lookup, url));
    }
    let mut response = response;
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|_| {
            failure(
                lookup,
                Reason::EnrichmentUnavailable,
                format!("GET {url}: the body was cut off"),
            )
            .transient(None)
        })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > lookup.max_bytes {
            return Err(too_large(lookup, url));
        }
        body.extend_from_slice(&chunk);
    }
    parse_strict(&body)
        .map(|parsed| parsed.value)
        .map_err(|error| {
            failure(
                lookup,
                Reason::EnrichmentFailed,
                format!(
                    "GET {url}: the answer is not JSON: {}",
                    truncate(&error.to_string(), 200)
                ),
            )
        })
}

/// The innermost error of `error`'s chain, e.g. `invalid peer certificate: UnknownIssuer`.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn too_large(lookup: &Lookup, url: &str) -> Failure {
    failure(
        lookup,
        Reason::EnrichmentFailed,
        format!(
            "GET {url}: the answer is larger than {} bytes",
            lookup.max_bytes
        ),
    )
}

fn failure(lookup: &Lookup, reason: Reason, message: String) -> Failure {
    Failure::one(
        Stage::Enrich,
        reason,
        Problem::new(format!("look-up {}: {message}", lookup.name)),
    )
}
