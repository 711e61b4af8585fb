//! Routes: a relationship from an upstream context to a downstream context for some contract
//! versions, with its mode, its failure policy, its ordering key and (enrich) its look-ups.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::contract::ContractVersion;
use super::names::{ContextName, ContractId, ContractName, RouteName};
use super::translator::Translator;
use crate::stages::Stage;

/// How a route's outputs go on the wire (CloudEvents content modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wire {
    /// Attributes in `cloudEvents_` headers, `datacontenttype` as the content type, data as the body.
    #[default]
    Binary,
    /// The whole event as an `application/cloudevents+json` body.
    Structured,
}

/// The four relationship modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Downstream takes upstream's model as it is: validate, forward unchanged.
    Conformist,
    /// Upstream's translator turns its internal events into its published language.
    OpenHost,
    /// Downstream's translator turns upstream's published contract into its own model.
    AntiCorruption,
    /// Look-ups add what upstream does not provide; a translator or a merge builds the result.
    Enrich,
}

impl Mode {
    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "conformist" => Self::Conformist,
            "open-host" => Self::OpenHost,
            "anti-corruption" => Self::AntiCorruption,
            "enrich" => Self::Enrich,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conformist => "conformist",
            Self::OpenHost => "open-host",
            Self::AntiCorruption => "anti-corruption",
            Self::Enrich => "enrich",
        }
    }
}

/// What a route does with a failure of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Keep the message unchanged with the reason (the default).
    DeadLetter,
    /// Count it, log it, and let it go.
    Drop,
    /// Try again later with backoff, up to the limit, then dead-letter. Only transient
    /// failures are retried: a message that failed for good is dead-lettered at once.
    Retry,
}

impl Action {
    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "dead-letter" => Self::DeadLetter,
            "drop" => Self::Drop,
            "retry" => Self::Retry,
            _ => return None,
        })
    }
}

/// A route's failure policy: an action per stage, and the backoff for retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub validate_in: Action,
    pub translate: Action,
    pub enrich: Action,
    pub validate_out: Action,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            validate_in: Action::DeadLetter,
            translate: Action::DeadLetter,
            enrich: Action::DeadLetter,
            validate_out: Action::DeadLetter,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl Policy {
    /// The action for a failure at `stage`. Decode and publish failures are always dead letters
    /// here (the transport handles publish retries).
    pub fn action(&self, stage: Stage) -> Action {
        match stage {
            Stage::ValidateIn => self.validate_in,
            Stage::Translate => self.translate,
            Stage::Enrich => self.enrich,
            Stage::ValidateOut => self.validate_out,
            Stage::Decode | Stage::Publish => Action::DeadLetter,
        }
    }

    /// The wait before attempt `next_attempt` (2 or more): doubling from the initial backoff,
    /// capped, and never shorter than what the other side asked for.
    pub fn backoff(&self, next_attempt: u32, asked: Option<Duration>) -> Duration {
        let doublings = next_attempt.saturating_sub(2).min(30);
        let wait = self
            .initial_backoff
            .saturating_mul(1_u32 << doublings)
            .min(self.max_backoff);
        asked.map_or(wait, |asked| wait.max(asked.min(self.max_backoff)))
    }
}

/// The shards of an ordered route when `contextgate.toml` does not say: 3 instances hold 4
/// each, 4 hold 3, 6 hold 2.
pub const DEFAULT_SHARDS: u16 = 12;
/// The most shards a route may have: each is a quorum queue (a Raft group on every node).
pub const MAX_SHARDS: u16 = 256;

/// What keeps messages of one route in order: the same key, the same lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum OrderingKey {
    /// The CloudEvents `subject`.
    Subject,
    /// A JSON pointer into the data.
    Pointer(String),
}

impl OrderingKey {
    /// The key of one message; `None` when the message has none (it may then go in any lane).
    pub fn of<D: KeyData + ?Sized>(&self, subject: Option<&str>, data: &D) -> Option<String> {
        match self {
            Self::Subject => subject.map(str::to_owned),
            Self::Pointer(pointer) => match data.at_pointer(pointer)?.as_ref() {
                Value::String(text) => Some(text.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            },
        }
    }
}

/// What an ordering key is read from: a `serde_json::Value`, or an input's parsed document.
pub trait KeyData {
    /// The value at a JSON pointer, as `serde_json::Value::pointer` finds it.
    fn at_pointer(&self, pointer: &str) -> Option<std::borrow::Cow<'_, Value>>;
}

impl KeyData for Value {
    fn at_pointer(&self, pointer: &str) -> Option<std::borrow::Cow<'_, Value>> {
        self.pointer(pointer).map(std::borrow::Cow::Borrowed)
    }
}

impl KeyData for crate::message::document::Document {
    fn at_pointer(&self, pointer: &str) -> Option<std::borrow::Cow<'_, Value>> {
        let node = self.root().pointer(pointer)?;
        Some(std::borrow::Cow::Owned(node.value()))
    }
}

/// The longest a look-up's `timeout` and `connect_timeout` may be: a message waits for its
/// look-ups, and an API request (a dry run) is cut at 30 s.
pub const MAX_LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer a look-up's `max_bytes` may allow (read into memory, per request).
pub const MAX_LOOKUP_BYTES: usize = 16 * 1024 * 1024;

/// One HTTP GET an enrich route makes per message.
pub struct Lookup {
    pub name: String,
    pub template: UrlTemplate,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub cache_ttl: Duration,
    pub max_bytes: usize,
    pub client: reqwest::Client,
    /// Answers by URL; errors are never cached, and concurrent identical look-ups share one
    /// request. One cache per look-up, so two routes or contexts never share entries.
    pub cache: moka::future::Cache<String, Arc<Value>>,
    /// Stops calling a service that keeps failing.
    pub breaker: Breaker,
}

/// A circuit breaker: after `threshold` transient failures in a row the look-up fails at once,
/// without a request, for `cooldown`; then one request may try again (success closes it, a
/// failure opens it for another cooldown).
#[derive(Debug)]
pub struct Breaker {
    pub threshold: u32,
    pub cooldown: Duration,
    state: std::sync::Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures_in_a_row: u32,
    open_until: Option<std::time::Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: std::sync::Mutex::default(),
        }
    }

    /// How long the breaker stays open, or `None` when a request may go.
    pub fn open_for(&self) -> Option<Duration> {
        let state = self
            .state
            .lock()
            .expect("no code panics while holding the breaker lock");
        let remaining = state
            .open_until?
            .checked_duration_since(std::time::Instant::now())?;
        (!remaining.is_zero()).then_some(remaining)
    }

    pub fn record(&self, transient_failure: bool) {
        let mut state = self
            .state
            .lock()
            .expect("no code panics while holding the breaker lock");
        if !transient_failure {
            *state = BreakerState::default();
            return;
        }
        state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
        if state.failures_in_a_row >= self.threshold {
            state.open_until = Some(std::time::Instant::now() + self.cooldown);
        }
    }
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup")
            .field("name", &self.name)
            .field("template", &self.template.source)
            .finish_non_exhaustive()
    }
}

/// A URL with `{/json/pointer}` placeholders filled from the message data, percent-encoded.
///
/// It stays under one of its context's `lookup_allow` base URLs, compared after normalising the
/// path as a server might read it (dot segments, percent-encoded dots and slashes, duplicate
/// slashes, `;` path parameters; double percent-encoding refused): checked on the template at
/// load, and on every filled URL before its request. A value filling the path never reads as
/// `..` to any of those servers.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    pub source: String,
    parts: Vec<TemplatePart>,
    /// The base URLs a filled URL must stay under (the downstream context's `lookup_allow`).
    allowed: Vec<url::Url>,
}

#[derive(Debug, Clone)]
enum TemplatePart {
    Literal(String),
    Pointer(String),
}

impl UrlTemplate {
    /// Parses a template and checks it stays under one of the allowed base URLs.
    pub fn parse(source: &str, allowed: &[url::Url]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|offset| open + offset)
                .ok_or_else(|| format!("url {source:?} has an unclosed placeholder"))?;
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_owned()));
            }
            let pointer = &rest[open + 1..close];
            if !pointer.starts_with('/') {
                return Err(format!(
                    "url placeholder {{{pointer}}} must be a JSON pointer such as {{/customer_id}}"
                ));
            }
            parts.push(TemplatePart::Pointer(pointer.to_owned()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_owned()));
        }
        if rest.contains('}') {
            return Err(format!("url {source:?} has a stray '}}'"));
        }
        let prefix = match parts.first() {
            Some(TemplatePart::Literal(prefix)) => prefix.as_str(),
            _ => "",
        };
        let sample: String = parts
            .iter()
            .map(|part| match part {
                TemplatePart::Literal(text) => text.as_str(),
                TemplatePart::Pointer(_) => "x",
            })
            .collect();
        let parsed = url::Url::parse(&sample)
            .map_err(|error| format!("url {source:?} is not a valid URL: {error}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("url {source:?} must be http or https"));
        }
        let under_a_base = allowed
            .iter()
            .any(|base| prefix.starts_with(base.as_str()) && is_under(&sample, &parsed, base));
        if !under_a_base {
            return Err(format!(
                "url {source:?} is not under any of the context's lookup_allow base URLs \
                 (compared after resolving dot segments, percent-encoded dots and slashes, \
                 duplicate slashes and `;` path parameters; double percent-encoding such as \
                 %252e is refused)"
            ));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
            allowed: allowed.to_vec(),
        })
    }

    /// A filled URL, parsed, when it is still under one of the allowed base URLs: what a
    /// look-up requests, checked again before each request.
    pub fn check(&self, filled: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(filled).map_err(|error| format!("not a valid URL: {error}"))?;
        if is_double_encoded(url.path()) {
            Err(
                "its path is double percent-encoded (`%25` and two hex digits), which some \
                 servers decode twice; lookup_allow is compared without guessing"
                    .to_owned(),
            )
        } else if self.allowed.iter().any(|base| is_under(filled, &url, base)) {
            Ok(url)
        } else {
            Err("it leaves the context's lookup_allow base URLs".to_owned())
        }
    }

    /// The URL for one message, or the pointer that has no usable value.
    pub fn fill(&self, data: &Value) -> Result<String, String> {
        let mut url = String::with_capacity(self.source.len() + 32);
        // Placeholders after a `?` or `#` fill the query or fragment, not the path.
        let mut in_path = true;
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => {
                    in_path &= !text.contains(['?', '#']);
                    url.push_str(text);
                }
                TemplatePart::Pointer(pointer) => {
                    let value = match data.pointer(pointer) {
                        Some(Value::String(text)) => text.clone(),
                        Some(Value::Number(number)) => number.to_string(),
                        Some(Value::Bool(flag)) => flag.to_string(),
                        Some(_) => {
                            return Err(format!("{pointer} must be a string, number or boolean"));
                        }
                        None => return Err(format!("{pointer} is missing")),
                    };
                    // URL parsers treat `..` (even percent-encoded) as a dot segment.
                    if value.is_empty() || value == "." || value == ".." {
                        return Err(format!("{pointer} is {value:?}, not a usable URL segment"));
                    }
                    if in_path && reads_as_a_dot_segment(&value) {
                        return Err(format!(
                            "{pointer} is {value:?}, which a server may read as `..` \
                             (a path segment starting with `..` once decoded)"
                        ));
                    }
                    url.extend(url::form_urlencoded::byte_serialize(value.as_bytes()).map(
                        // form encoding writes spaces as '+'; a path needs %20.
                        |piece| if piece == "+" { "%20" } else { piece },
                    ));
                }
            }
        }
        Ok(url)
    }
}

/// Whether a placeholder value, percent-decoded until nothing is left to decode, has a path
/// segment starting with `..`: `..;x` is `..` to servers that strip path parameters (Tomcat,
/// Spring), and `%2e%2e` is `..` to servers that decode twice.
fn reads_as_a_dot_segment(value: &str) -> bool {
    let mut decoded = value.to_owned();
    loop {
        let again = percent_encoding::percent_decode_str(&decoded)
            .decode_utf8_lossy()
            .into_owned();
        // Each decoding that changes something makes the text shorter, so this ends.
        if again == decoded {
            break;
        }
        decoded = again;
    }
    decoded
        .split(['/', '\\'])
        .any(|segment| segment.starts_with(".."))
}

/// Whether a path holds `%25` followed by two hex digits: percent-encoded percent-encoding, such
/// as `%252e%252e`, which servers that decode twice read as `..`.
fn is_double_encoded(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.windows(5).any(|window| {
        window[0] == b'%'
            && window[1] == b'2'
            && window[2] == b'5'
            && window[3].is_ascii_hexdigit()
            && window[4].is_ascii_hexdigit()
    })
}

/// Whether a URL is under `base` (origin and path) however a server reads its path: no user
/// information, the same scheme, host and port, no double percent-encoding, and a normalised
/// path that starts with the base's path segments — both the path the `url` crate sends (it
/// resolved `.` and `..`, also as `%2e`, and backslashes) and the path as written in `text` (for
/// servers that merge `//` before they resolve dot segments).
fn is_under(text: &str, url: &url::Url, base: &url::Url) -> bool {
    if !url.username().is_empty()
        || url.password().is_some()
        || url.scheme() != base.scheme()
        || url.host() != base.host()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return false;
    }
    let Some(base_path) = normalised_path(base.path()) else {
        return false;
    };
    let written = text
        .strip_prefix(&base.origin().ascii_serialization())
        .map(|rest| rest.split(['?', '#']).next().unwrap_or_default());
    [Some(url.path()), written].into_iter().all(|path| {
        path.filter(|path| !is_double_encoded(path))
            .and_then(normalised_path)
            .is_some_and(|path| path.starts_with(&base_path))
    })
}

/// The path's segments as a lenient server reads them, or `None` when `..` climbs above the root:
/// percent-decoded once (so `..%2f..` is two dot segments, as servers that decode `%2F` read it),
/// `;parameters` stripped from each segment (so `..;x` is `..`, as Tomcat and Spring read it),
/// empty segments dropped (`//` read as `/`), then dot segments resolved.
fn normalised_path(path: &str) -> Option<Vec<String>> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            other => segments.push(other.to_owned()),
        }
    }
    Some(segments)
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: RouteName,
    pub description: Option<String>,
    pub upstream: ContextName,
    /// Owns the route: the context that subscribes.
    pub downstream: ContextName,
    pub mode: Mode,
    /// The contract versions this route takes.
    pub accepts: Vec<Arc<ContractVersion>>,
    pub translator: Option<Arc<Translator>>,
    /// What validate-out checks: the translator's output, or an enrich route's merge output.
    /// `None` for conformist routes, whose output is their input.
    pub output: Option<Arc<ContractVersion>>,
    pub max_outputs: usize,
    pub ordering_key: Option<OrderingKey>,
    /// The shards of an ordered route on RabbitMQ (`DEFAULT_SHARDS` unless set); unused
    /// without an ordering key.
    pub shards: u16,
    /// How outputs are encoded on AMQP.
    pub wire: Wire,
    pub policy: Policy,
    pub lookups: Vec<Lookup>,
    /// What each pattern in `accepts` expanded to at load (`check` shows it).
    pub expansions: Vec<Expansion>,
    /// The dedup window: an input already forwarded on this route within it (by `source` and
    /// `id`) is dropped as a duplicate. `None`: no window (replays still use one, see `replay`).
    pub dedup: Option<std::time::Duration>,
}

/// One pattern of a route's `accepts`, expanded: the versions it took, and those it matched but
/// the route may not take (another context's event, an internal contract), with why.
#[derive(Debug, Clone)]
pub struct Expansion {
    pub pattern: String,
    pub taken: Vec<ContractId>,
    pub left_out: Vec<(ContractId, &'static str)>,
}

/// A pattern in `accepts`: `<context>/<name glob>[@<versions>]`. The name glob takes `*` (any
/// run of characters) and `?` (one); versions are `*`, `N`, `>=N`, `>N`, `<=N` or `<N`, and every
/// version when there is no `@`. `github/*`, `github/Issue*@*`, `orders/OrderPlaced@>=2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptPattern {
    pub context: ContextName,
    pub name: String,
    pub versions: Versions,
}

/// Which versions an accept pattern takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    All,
    Exactly(u32),
    AtLeast(u32),
    AtMost(u32),
}

impl Versions {
    pub fn take(self, version: u32) -> bool {
        match self {
            Versions::All => true,
            Versions::Exactly(n) => version == n,
            Versions::AtLeast(n) => version >= n,
            Versions::AtMost(n) => version <= n,
        }
    }
}

impl AcceptPattern {
    /// `None` when `text` is a plain contract id (`orders/OrderPlaced@2`), which names one
    /// version exactly; an error for a pattern that does not parse.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let (name, versions) = match text.rsplit_once('@') {
            Some((name, versions)) => (name, Some(versions)),
            None => (text, None),
        };
        let glob = name.contains(['*', '?']);
        let exact_version = versions
            .is_some_and(|versions| crate::registry::names::parse_version(versions).is_some());
        if !glob && exact_version {
            return None;
        }
        Some(Self::parse_pattern(name, versions))
    }

    fn parse_pattern(name: &str, versions: Option<&str>) -> Result<Self, String> {
        let (context, glob) = name
            .split_once('/')
            .ok_or_else(|| format!("{name:?} is not <context>/<Name pattern>"))?;
        let context = ContextName::parse(context).map_err(|error| error.to_string())?;
        if glob.is_empty()
            || glob.len() > 128
            || !glob
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
        {
            return Err(format!(
                "{glob:?} is not a contract name pattern: letters, digits, * and ?"
            ));
        }
        let number = |text: &str| {
            crate::registry::names::parse_version(text.trim())
                .ok_or_else(|| format!("{text:?} is not a version number"))
        };
        let versions = match versions.map(str::trim) {
            None | Some("*") => Versions::All,
            Some(text) => {
                if let Some(rest) = text.strip_prefix(">=") {
                    Versions::AtLeast(number(rest)?)
                } else if let Some(rest) = text.strip_prefix("<=") {
                    Versions::AtMost(number(rest)?)
                } else if let Some(rest) = text.strip_prefix('>') {
                    Versions::AtLeast(number(rest)?.saturating_add(1))
                } else if let Some(rest) = text.strip_prefix('<') {
                    let below = number(rest)?;
                    if below <= 1 {
                        return Err(format!("<{below} takes no version: versions start at 1"));
                    }
                    Versions::AtMost(below - 1)
                } else {
                    Versions::Exactly(number(text).map_err(|_| {
                        format!("{text:?} is not a version selector: *, N, >=N, >N, <=N or <N")
                    })?)
                }
            }
        };
        Ok(Self {
            context,
            name: glob.to_owned(),
            versions,
        })
    }

    /// Whether the pattern's name glob takes `name`.
    pub fn takes_name(&self, name: &ContractName) -> bool {
        name.context() == &self.context && glob(self.name.as_bytes(), name.name().as_bytes())
    }
}

/// `*` and `?` matching, without backtracking blow-up (the classic two-pointer walk).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                t += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

impl Route {
    /// The accepted contract version a message claims, if this route takes it.
    pub fn accepted(&self, id: &ContractId) -> Option<&Arc<ContractVersion>> {
        self.accepts.iter().find(|version| &version.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accept_patterns_parse_and_match() {
        assert_eq!(AcceptPattern::parse("orders/OrderPlaced@2"), None);
        let every = AcceptPattern::parse("github/*").unwrap().unwrap();
        assert_eq!(every.versions, Versions::All);
        let issues = AcceptPattern::parse("github/Issue*@*").unwrap().unwrap();
        let name = |text: &str| ContractName::parse(text).unwrap();
        assert!(issues.takes_name(&name("github/IssuesOpened")));
        assert!(issues.takes_name(&name("github/Issue")));
        assert!(!issues.takes_name(&name("github/PullRequest")));
        assert!(!issues.takes_name(&name("gitlab/IssuesOpened")));
        let from_two = AcceptPattern::parse("orders/OrderPlaced@>=2")
            .unwrap()
            .unwrap();
        assert!(from_two.takes_name(&name("orders/OrderPlaced")));
        assert!(!from_two.takes_name(&name("orders/OrderPlacedLate")));
        assert!(!from_two.versions.take(1) && from_two.versions.take(2));
        let below = AcceptPattern::parse("orders/Order?laced@<3")
            .unwrap()
            .unwrap();
        assert!(below.versions.take(2) && !below.versions.take(3));
        assert!(below.takes_name(&name("orders/OrderPlaced")));
        assert_eq!(
            AcceptPattern::parse("orders/OrderPlaced")
                .unwrap()
                .unwrap()
                .versions,
            Versions::All
        );
        assert!(AcceptPattern::parse("orders/Order-*").unwrap().is_err());
        assert!(AcceptPattern::parse("orders/*@~2").unwrap().is_err());
        assert!(AcceptPattern::parse("orders/*@<1").unwrap().is_err());
        assert!(glob(b"*a*b*c*", b"xxaxxbxxc"));
        assert!(!glob(b"*a*b*c", b"xxaxxbxxcx"));
    }

    fn allowed() -> Vec<url::Url> {
        vec![url::Url::parse("http://127.0.0.1:9100/").unwrap()]
    }

    #[test]
    fn templates_fill_and_percent_encode_placeholders() {
        let template = UrlTemplate::parse(
            "http://127.0.0.1:9100/customers/{/customer_id}?v={/v}",
            &allowed(),
        )
        .unwrap();
        let url = template
            .fill(&json!({"customer_id": "c 1/admin?x#", "v": 2}))
            .unwrap();
        assert_eq!(
            url,
            "http://127.0.0.1:9100/customers/c%201%2Fadmin%3Fx%23?v=2"
        );
        assert!(template.fill(&json!({"v": 2})).is_err());
        assert!(template.fill(&json!({"customer_id": {}, "v": 2})).is_err());
    }

    #[test]
    fn templates_outside_the_allow_list_are_refused() {
        for bad in [
            "http://127.0.0.1:9101/customers/{/id}",
            "http://127.0.0.1:9100@evil.example/{/id}",
            "http://{/host}/x",
            "file:///etc/passwd",
            "http://169.254.169.254/latest/{/id}",
            "http://127.0.0.1:9100/{id}",
        ] {
            assert!(UrlTemplate::parse(bad, &allowed()).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_that_leave_their_base_once_normalised_are_refused() {
        let allowed = vec![url::Url::parse("http://127.0.0.1:9100/api/").unwrap()];
        for bad in [
            "http://127.0.0.1:9100/api/../admin/{/x}",
            "http://127.0.0.1:9100/api/%2e%2e/admin/{/x}",
            "http://127.0.0.1:9100/api/%2E./admin/{/x}",
            "http://127.0.0.1:9100/api/..%2fadmin/{/x}",
            "http://127.0.0.1:9100/api/..%2Fadmin/{/x}",
            "http://127.0.0.1:9100/api//../admin/{/x}",
            "http://127.0.0.1:9100/api/..\\admin/{/x}",
            "http://127.0.0.1:9100/api/./../admin/{/x}",
            "http://127.0.0.1:9100/api/{/x}/../../admin",
            "http://127.0.0.1:9100/api/v1/%2e%2e/%2e%2e/admin/{/x}",
            "http://127.0.0.1:9100/api/..;/admin/{/x}",
            "http://127.0.0.1:9100/api/..;jsessionid=1/admin/{/x}",
            "http://127.0.0.1:9100/api/%252e%252e/admin/{/x}",
            "http://127.0.0.1:9100/api/%252E%252E/admin/{/x}",
        ] {
            assert!(UrlTemplate::parse(bad, &allowed).is_err(), "{bad}");
        }
        for good in [
            "http://127.0.0.1:9100/api/customers/{/x}",
            "http://127.0.0.1:9100/api/v1/../v2/{/x}",
            "http://127.0.0.1:9100/api/customers/{/x}?expand=..",
        ] {
            assert!(UrlTemplate::parse(good, &allowed).is_ok(), "{good}");
        }
    }

    #[test]
    fn filled_urls_are_checked_again_before_their_request() {
        let allowed = vec![url::Url::parse("http://127.0.0.1:9100/api/").unwrap()];
        let template = UrlTemplate::parse("http://127.0.0.1:9100/api/{/a}/{/b}", &allowed).unwrap();
        let fill_and_check = |data: Value| {
            let filled = template.fill(&data)?;
            template.check(&filled).map(|url| url.to_string())
        };
        assert_eq!(
            fill_and_check(json!({"a": "c-1", "b": "x y"})).unwrap(),
            "http://127.0.0.1:9100/api/c-1/x%20y"
        );
        // `/` in a value is percent-encoded, and servers that decode it would climb out.
        assert!(fill_and_check(json!({"a": "../..", "b": "admin"})).is_err());
        assert!(fill_and_check(json!({"a": "..", "b": "admin"})).is_err());
        assert!(fill_and_check(json!({"a": "a/../../..", "b": "admin"})).is_err());
        // Path parameters and double encoding are dot segments to some servers.
        for value in [
            "..;",
            "..;x",
            "a/..;",
            "%2e%2e",
            "%252e%252e",
            ".%2E",
            "..%3b",
        ] {
            assert!(
                fill_and_check(json!({"a": value, "b": "admin"})).is_err(),
                "{value}"
            );
        }
        // Values with `;`, `%` or dots inside are sent, percent-encoded.
        assert_eq!(
            fill_and_check(json!({"a": "a;b", "b": "100%"})).unwrap(),
            "http://127.0.0.1:9100/api/a%3Bb/100%25"
        );
        assert!(fill_and_check(json!({"a": "x..y", "b": "v1.2"})).is_ok());
        // A value after `?` is not a path segment.
        let template = UrlTemplate::parse("http://127.0.0.1:9100/api/x?q={/a}", &allowed).unwrap();
        assert!(template.fill(&json!({"a": "..;"})).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let policy = Policy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..Policy::default()
        };
        assert_eq!(policy.backoff(2, None), Duration::from_secs(1));
        assert_eq!(policy.backoff(3, None), Duration::from_secs(2));
        assert_eq!(policy.backoff(5, None), Duration::from_secs(8));
        assert_eq!(policy.backoff(6, None), Duration::from_secs(10));
        assert_eq!(
            policy.backoff(2, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.backoff(2, Some(Duration::from_secs(700))),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn ordering_keys_come_from_subject_or_data() {
        let data = json!({"order_id": "o-1", "n": 3});
        assert_eq!(
            OrderingKey::Subject.of(Some("s"), &data).as_deref(),
            Some("s")
        );
        assert_eq!(
            OrderingKey::Pointer("/order_id".into())
                .of(None, &data)
                .as_deref(),
            Some("o-1")
        );
        assert_eq!(
            OrderingKey::Pointer("/n".into()).of(None, &data).as_deref(),
            Some("3")
        );
        assert_eq!(
            OrderingKey::Pointer("/missing".into()).of(None, &data),
            None
        );
    }
}
