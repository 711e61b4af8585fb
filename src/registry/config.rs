//! The raw shapes of the registry's files, as serde reads them (`deny_unknown_fields`
//! everywhere, so a typo is an error rather than a silently ignored setting). `load` turns them
//! into the checked, compiled types of the registry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// `contextgate.toml` at the registry's root.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Every context that talks through the gateway, by slug.
    #[serde(default)]
    pub contexts: BTreeMap<String, ContextFile>,
    /// The relationships between contexts.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// The JSON Schema draft of a contract without `$schema` (`2020-12` unless set).
    #[serde(default)]
    pub default_draft: Option<Spanned<String>>,
}

/// `[contexts.<slug>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextFile {
    /// What the context does, for people reading the registry.
    #[serde(default)]
    pub description: Option<String>,
    /// Base URLs this context's enrich look-ups may query (each ends with `/`); nothing else.
    #[serde(default)]
    pub lookup_allow: Vec<String>,
    /// The archive of the context's inputs (what replays read): `true` (7 days, 1 GiB), or
    /// `{ max_age = "7d", max_bytes = "1GiB" }`; on with those defaults unless `false`.
    #[serde(default)]
    pub archive: Option<ArchiveFile>,
}

/// `archive` of a context: `false` (or `true` for the defaults), or a table.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "archive must be false, true, or a table such as { max_age = \"7d\", max_bytes = \"1GiB\" }"
)]
pub enum ArchiveFile {
    On(bool),
    Kept(ArchiveTable),
}

/// `archive = { max_age = "7d", max_bytes = "1GiB" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveTable {
    /// How long an input is kept (default `7d`).
    #[serde(default)]
    pub max_age: Option<String>,
    /// How many bytes the archive keeps at most, oldest first out (default `1GiB`).
    #[serde(default)]
    pub max_bytes: Option<String>,
}

/// `[[routes]]` (and a route over the API: the same fields, as JSON).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteFile<N = Spanned<String>> {
    /// Unique slug; errors about the route point at this line.
    pub name: N,
    /// What the route is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The context messages come from.
    pub upstream: String,
    /// The context that receives them, and owns the route.
    pub downstream: String,
    /// `conformist`, `open-host`, `anti-corruption` or `enrich`.
    pub mode: String,
    /// Contract versions the route takes. Required for conformist routes; translating routes
    /// default to their translator's input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepts: Vec<String>,
    /// `<context>/<name>` of the translator (open-host: upstream's; others: downstream's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translator: Option<String>,
    /// How many messages one input may become (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outputs: Option<usize>,
    /// How outputs go on the wire over AMQP: `binary` (default; attributes in `cloudEvents_`
    /// headers, data as the body) or `structured` (the whole event as the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<String>,
    /// `subject` or a JSON pointer into the data: messages with the same key keep their order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// With an `ordering_key`, on RabbitMQ: how many shards (queues) the route's keys are
    /// spread over, and so how many instances of a fleet can share its work (default 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u16>,
    /// The output contract of an enrich route that merges instead of translating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// What to do when a stage fails, per stage.
    #[serde(default, skip_serializing_if = "OnFailureFile::is_empty")]
    pub on_failure: OnFailureFile,
    /// Backoff for the stages whose policy is `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryFile>,
    /// HTTP look-ups of an enrich route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookups: Vec<LookupFile>,
    /// Idempotence: an input (by `source` and `id`) already forwarded on this route within this
    /// window is dropped as a `duplicate` (`10m`; none unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<String>,
}

impl<N> RouteFile<N> {
    /// The same route under another name type (the API reads routes without spans).
    pub fn with_name<M>(self, name: M) -> RouteFile<M> {
        RouteFile {
            name,
            description: self.description,
            upstream: self.upstream,
            downstream: self.downstream,
            mode: self.mode,
            accepts: self.accepts,
            translator: self.translator,
            max_outputs: self.max_outputs,
            wire: self.wire,
            ordering_key: self.ordering_key,
            shards: self.shards,
            output: self.output,
            on_failure: self.on_failure,
            retry: self.retry,
            lookups: self.lookups,
            dedup: self.dedup,
        }
    }
}

/// `[routes.on_failure]`: `dead-letter` (default), `drop` or `retry`, per stage.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OnFailureFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrich: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate_out: Option<String>,
}

impl OnFailureFile {
    fn is_empty(&self) -> bool {
        self.validate_in.is_none()
            && self.translate.is_none()
            && self.enrich.is_none()
            && self.validate_out.is_none()
    }
}

/// `[routes.retry]`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// Attempts in all, the first one included (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Wait before the second attempt; doubles each time (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff: Option<String>,
    /// The longest wait (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<String>,
}

/// `[[routes.lookups]]`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupFile {
    /// The key the result is merged under, and its name in the translator's `meta.lookups`.
    pub name: String,
    /// URL template: `{/json/pointer}` placeholders are filled from the message data.
    pub url: String,
    /// Total time for one request (default `2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time to connect (default `500ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// How long an answer is reused (default `60s`; `0s` turns the cache off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl: Option<String>,
    /// Bytes the cache may hold for this look-up (default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// The largest response body taken (default 256 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<usize>,
    /// Transient failures in a row after which the look-up stops calling for a while (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    /// How long it stops calling then (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_cooldown: Option<String>,
}

/// `contracts/<context>/<Name>/contract.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractFile {
    /// `event` or `command`.
    pub kind: String,
    /// `published` (default): offered to everyone; `internal`: only for the owner's open-host translators.
    #[serde(default)]
    pub visibility: Option<String>,
    /// How versions may evolve: none, backward, backward-transitive, forward,
    /// forward-transitive, full, full-transitive.
    #[serde(default)]
    pub compatibility: Option<String>,
    /// Which differences count as compatible: `strict` (default) or `lenient`.
    #[serde(default)]
    pub compatibility_policy: Option<String>,
    /// Breaking changes accepted on purpose, reviewed: `v3 = "why"`. Reported by `check
    /// --against`, never silent.
    #[serde(default)]
    pub accept_breaking: BTreeMap<String, String>,
    /// What the message means.
    #[serde(default)]
    pub description: Option<String>,
    /// Per version (`[versions.v2]`): where it came from.
    #[serde(default)]
    pub versions: BTreeMap<String, VersionFile>,
}

/// `[versions.vN]` in `contract.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFile {
    /// Its path in the collection it was imported from: relative `$ref`s resolve from there.
    #[serde(default)]
    pub source: Option<String>,
    /// What the collection called it (its semver, or the commit it comes from), shown by the
    /// API and the CLI beside the version number.
    #[serde(default)]
    pub label: Option<String>,
}

/// `translators/<context>/<name>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslatorFile {
    /// The contract version the translator reads.
    pub input: String,
    /// The contract version it writes.
    pub output: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
}

/// One entry of `translators/<context>/<name>.cases.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub name: String,
    pub input: serde_json::Value,
    /// `id`, `source`, `type`, `subject`, `time`, `lookups`, as the script's `meta` sees them.
    #[serde(default)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub expect: Option<serde_json::Value>,
    #[serde(default)]
    pub expect_many: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub expect_drop: Option<bool>,
    #[serde(default)]
    pub expect_error: Option<String>,
}
