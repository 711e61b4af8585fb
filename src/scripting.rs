//! The one hardened Rhai engine of the gateway, and the JSON ⇄ Rhai conversions.
//!
//! Scripts are untrusted. The engine has no module resolver (`import` does not parse: the crate
//! is built with `no_module`), no `eval`, no clock (`no_time`: a translator is a function of its
//! input, so a replay gives the same output), `sleep` and `parse_json` refused, `print`/`debug`
//! sent to tracing truncated and rate-limited, and limits on operations, wall time, call and
//! expression depth, string, array and map sizes. Conversions are depth-capped and never change
//! a number: an integer the script cannot hold is an error, as is a float that is NaN or
//! infinite on the way out.
//!
//! A script's values may share one string, array or map many times over (the engine counts it
//! once), so the way out is also bounded, counted while converting and before copying. As JSON
//! text: one output at most the message cap, one run's outputs at most [`MAX_RUN_OUTPUT_BYTES`]
//! together. In memory (what the converted `serde_json::Value`s take on the heap, estimated per
//! node: a small scalar of JSON takes 16 times its text, a one-key object a hundred times): one run's
//! outputs at most [`MAX_RUN_OUTPUT_MEMORY`], and every translator's outputs across the process
//! at most [`MAX_TRANSLATION_MEMORY_IN_FLIGHT`], held from conversion until the outputs are
//! dropped (the modes drop them once validated and serialized). A conversion that finds no room
//! fails at once as transient: nothing waits on a runtime worker.
//!
//! Translators run on the runtime's workers, inline (a hand-off to the blocking pool cost more
//! than the script), so they run only with one of the process's [`script_permits`]: one fewer
//! than the worker threads, so that one worker always stays free for I/O, acks and the health
//! probes however busy the scripts are.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, Map, Module, Position};
use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::message::document::{DocArray, DocNode, DocObject, Document, Item};

mod reads;
pub use reads::{Read, Reads, reads};

/// How many operations one translator run may take.
pub const MAX_OPERATIONS: u64 = 500_000;
/// How long one translator run may take, checked every [`DEADLINE_CHECK_EVERY`] operations.
pub const MAX_RUN_TIME: Duration = Duration::from_millis(50);
const DEADLINE_CHECK_EVERY: u64 = 1024;
/// How deep a value may be nested on its way into or out of a script.
pub const MAX_VALUE_DEPTH: usize = 64;
pub const MAX_STRING_BYTES: usize = 64 * 1024;
pub const MAX_ARRAY_ITEMS: usize = 10_000;
pub const MAX_MAP_ENTRIES: usize = 10_000;
/// The most one output of a translator may take as JSON: the message cap.
pub const MAX_OUTPUT_BYTES: usize = crate::message::MAX_MESSAGE_BYTES;
/// The most the outputs of one translator run may take as JSON together.
pub const MAX_RUN_OUTPUT_BYTES: usize = 8 * MAX_OUTPUT_BYTES;
/// The most the outputs of one translator run may take in memory once converted: half the
/// process's budget, so that a run never waits for room it could never get. A scalar takes at
/// most 16 times its JSON text, a non-empty object at least one B-tree leaf (about 700 bytes), so
/// one output within the message cap stays under this unless it holds more than about 25 000
/// non-empty objects.
pub const MAX_RUN_OUTPUT_MEMORY: usize = 32 * 1024 * 1024;
/// The most memory every translator's converted outputs take together across the process, from
/// conversion until they are dropped.
pub const MAX_TRANSLATION_MEMORY_IN_FLIGHT: usize = 64 * 1024 * 1024;
/// Room is taken from the process budget in steps of this many bytes.
const CONVERSION_STEP: usize = 64 * 1024;
/// What one `serde_json::Value` node takes inline, in its array or map or as an output.
const VALUE_BYTES: usize = size_of::<Value>();
/// What a non-empty `serde_json::Map` (a B-tree) allocates at least: one leaf of 11 entries.
const MAP_NODE_BYTES: usize = 11 * (size_of::<String>() + size_of::<Value>()) + 16;
/// What one more map entry takes besides its key's text and its value's own weight: keys
/// arrive in order, so B-tree leaves stay about half full (measured: 115 bytes an entry with
/// six-byte keys).
const MAP_ENTRY_BYTES: usize = 2 * (size_of::<String>() + size_of::<Value>());
/// Log lines a script may write per second across the gateway; more are counted and dropped.
const MAX_LOG_LINES_PER_SECOND: u64 = 100;
const MAX_LOG_LINE_BYTES: usize = 256;

/// How many script permits the process has: one fewer than the current runtime's worker threads
/// (read once, when the pool is first used), at least one.
pub fn script_permits() -> usize {
    let workers = tokio::runtime::Handle::try_current()
        .map(|handle| handle.metrics().num_workers())
        .unwrap_or(1);
    workers.saturating_sub(1).max(1)
}

/// Waits for one of the process's [`script_permits`], shared by both buses, dry runs and the
/// command line. Held around CPU-bound pipeline work (decoding, validating, translating) and
/// never across a wait on I/O; whoever holds one never asks for another.
pub async fn script_permit() -> SemaphorePermit<'static> {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS
        .get_or_init(|| Semaphore::new(script_permits()))
        .acquire()
        .await
        .expect("the script permits are never closed")
}

/// The gateway's engine, built once.
pub fn engine() -> &'static Engine {
    static ENGINE: LazyLock<Engine> = LazyLock::new(build_engine);
    &ENGINE
}

thread_local! {
    /// When the script now running on this thread started (read by the progress callback).
    static RUN_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `run` with this thread's script clock started; the progress callback stops the script
/// once [`MAX_RUN_TIME`] has passed.
pub fn with_deadline<T>(run: impl FnOnce() -> T) -> T {
    RUN_STARTED.with(|started| started.set(Some(Instant::now())));
    let result = run();
    RUN_STARTED.with(|started| started.set(None));
    result
}

/// The token a script is stopped with when it runs out of time.
pub const TIMEOUT_TOKEN: &str = "contextgate: script time budget exhausted";

fn build_engine() -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());

    // Overrides of what the standard package offers and a translator must not do.
    let mut refused = Module::new();
    refused.set_native_fn("sleep", |_: INT| refuse::<()>("sleep"));
    refused.set_native_fn("sleep", |_: FLOAT| refuse::<()>("sleep"));
    refused.set_native_fn("parse_json", |_: ImmutableString| {
        refuse::<Dynamic>("parse_json")
    });
    refused.set_native_fn("exit", || refuse::<Dynamic>("exit"));
    refused.set_native_fn("exit", |_: Dynamic| refuse::<Dynamic>("exit"));
    engine.register_global_module(refused.into());
    engine.disable_symbol("eval");

    engine.on_print(|text| log_script_line("print", text));
    engine.on_debug(|text, _source, position| {
        log_script_line("debug", &format!("{position}: {text}"))
    });
    engine.on_progress(|operations| {
        if operations % DEADLINE_CHECK_EVERY != 0 {
            return None;
        }
        let started = RUN_STARTED.with(Cell::get)?;
        (started.elapsed() > MAX_RUN_TIME).then(|| Dynamic::from(TIMEOUT_TOKEN))
    });

    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(32);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(MAX_STRING_BYTES);
    engine.set_max_array_size(MAX_ARRAY_ITEMS);
    engine.set_max_map_size(MAX_MAP_ENTRIES);
    engine.set_max_variables(256);
    engine.set_max_functions(64);
    engine.set_strict_variables(true);
    engine
}

fn refuse<T>(what: &str) -> Result<T, Box<EvalAltResult>> {
    Err(format!("{what} is not available to translators").into())
}

fn log_script_line(kind: &'static str, text: &str) {
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static LINES: AtomicU64 = AtomicU64::new(0);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if WINDOW.swap(second, Ordering::Relaxed) != second {
        LINES.store(0, Ordering::Relaxed);
    }
    if LINES.fetch_add(1, Ordering::Relaxed) >= MAX_LOG_LINES_PER_SECOND {
        return;
    }
    let text = crate::message::json::truncate(text, MAX_LOG_LINE_BYTES);
    tracing::info!(target: "contextgate::script", kind, text, "Translator wrote a line.");
}

/// Why a value could not cross between JSON and the script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error("{pointer}: nested deeper than {MAX_VALUE_DEPTH} levels")]
    TooDeep { pointer: String },
    #[error("{pointer}: the number {number} cannot be held exactly by a translator")]
    InexactNumber { pointer: String, number: String },
    #[error("{pointer}: the translator returned {what}, which JSON cannot hold")]
    NotJson { pointer: String, what: String },
    #[error("{pointer}: the translator returned more than {limit} bytes of JSON {scope}")]
    TooLarge {
        pointer: String,
        /// "in one output" or "in all outputs of one run".
        scope: &'static str,
        limit: usize,
    },
    #[error(
        "{pointer}: the translator's outputs would take more than {MAX_RUN_OUTPUT_MEMORY} bytes \
         of memory once converted (many small values or objects)"
    )]
    TooLargeInMemory { pointer: String },
    #[error(
        "{pointer}: the gateway's room for translations in flight \
         ({MAX_TRANSLATION_MEMORY_IN_FLIGHT} bytes of memory) is full; try again"
    )]
    Busy { pointer: String },
}

/// JSON → Rhai. Objects become maps, arrays arrays, integers `INT`, other numbers `FLOAT`.
pub fn to_dynamic(value: &Value) -> Result<Dynamic, ConversionError> {
    to_dynamic_at(value, 0)
}

fn to_dynamic_at(value: &Value, depth: usize) -> Result<Dynamic, ConversionError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(ConversionError::TooDeep {
            pointer: String::new(),
        });
    }
    Ok(match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(flag) => Dynamic::from_bool(*flag),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                Dynamic::from_int(integer)
            } else if number.is_u64() {
                return Err(ConversionError::InexactNumber {
                    pointer: String::new(),
                    number: number.to_string(),
                });
            } else {
                Dynamic::from_float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(text) => Dynamic::from(ImmutableString::from(text.as_str())),
        Value::Array(items) => {
            let mut array = rhai::Array::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let converted = to_dynamic_at(item, depth + 1)
                    .map_err(|error| error.within(&index.to_string()))?;
                array.push(converted);
            }
            Dynamic::from_array(array)
        }
        Value::Object(object) => {
            let mut map = Map::new();
            for (key, item) in object {
                let converted =
                    to_dynamic_at(item, depth + 1).map_err(|error| error.within(key))?;
                map.insert(key.as_str().into(), converted);
            }
            Dynamic::from_map(map)
        }
    })
}

/// JSON → Rhai from a parsed document: the same values as [`to_dynamic`] on
/// `document.to_value()`, without building that value. Its errors are [`to_dynamic`]'s, found by
/// converting the value only then.
pub fn document_to_dynamic(document: &Document) -> Result<Dynamic, ConversionError> {
    node_to_dynamic(document.root(), 0).or_else(|()| to_dynamic(&document.to_value()))
}

/// [`document_to_dynamic`] for a script that reads only `reads` of it (see [`reads`]): only
/// that much is converted. The same errors, found first on the whole document.
pub fn document_to_dynamic_reading(
    document: &Document,
    reads: &Reads,
) -> Result<Dynamic, ConversionError> {
    let (Reads::Members(members), Item::Object(object)) = (reads, document.root().item()) else {
        return document_to_dynamic(document);
    };
    // What the whole conversion would refuse, it refuses whatever is read.
    if document.deepest() > MAX_VALUE_DEPTH || document.has_integers_beyond_i64() {
        return document_to_dynamic(document);
    }
    Ok(Dynamic::from_map(members_to_dynamic(object, members, 1)))
}

fn members_to_dynamic(
    object: DocObject<'_>,
    members: &BTreeMap<String, Read>,
    depth: usize,
) -> Map {
    let mut map = Map::new();
    for (key, node) in object.iter() {
        if let Some(read) = members.get(key) {
            map.insert(key.into(), read_to_dynamic(node, read, depth));
        }
    }
    map
}

/// One member, converted as far as it is read (the depth and the numbers were checked).
fn read_to_dynamic(node: DocNode<'_>, read: &Read, depth: usize) -> Dynamic {
    let text_len = node.document().text_len();
    match (read, node.item()) {
        (Read::Members(members), Item::Object(object)) => {
            Dynamic::from_map(members_to_dynamic(object, members, depth + 1))
        }
        (Read::Length, Item::Array(items)) if within_script_limits(items, text_len) => {
            Dynamic::from_array(vec![Dynamic::UNIT; items.len()])
        }
        _ => node_to_dynamic(node, depth).unwrap_or(Dynamic::UNIT),
    }
}

/// Whether `items`, converted, are within the sandbox's size limits as the engine counts them
/// (array items, map entries and string bytes nested in it, all together).
fn within_script_limits(items: DocArray<'_>, document_text_len: usize) -> bool {
    fn sizes(node: DocNode<'_>, totals: &mut (usize, usize, usize)) {
        match node.item() {
            Item::Array(items) => {
                for item in items.iter() {
                    totals.0 += 1;
                    sizes(item, totals);
                }
            }
            Item::Object(object) => {
                for (_, value) in object.iter() {
                    totals.1 += 1;
                    sizes(value, totals);
                }
            }
            Item::String(text) => totals.2 += text.len(),
            _ => {}
        }
    }
    // Each value takes an entry, and every string byte is one of the text's: a document that
    // small holds nothing larger.
    if document_text_len <= MAX_STRING_BYTES
        && items.entries() <= MAX_ARRAY_ITEMS.min(MAX_MAP_ENTRIES)
    {
        return true;
    }
    let mut totals = (0, 0, 0);
    for item in items.iter() {
        totals.0 += 1;
        sizes(item, &mut totals);
    }
    totals.0 <= MAX_ARRAY_ITEMS && totals.1 <= MAX_MAP_ENTRIES && totals.2 <= MAX_STRING_BYTES
}

fn node_to_dynamic(node: DocNode<'_>, depth: usize) -> Result<Dynamic, ()> {
    if depth > MAX_VALUE_DEPTH {
        return Err(());
    }
    Ok(match node.item() {
        Item::Null => Dynamic::UNIT,
        Item::Bool(flag) => Dynamic::from_bool(flag),
        Item::Number(number) => {
            if let Some(integer) = number.as_i64() {
                Dynamic::from_int(integer)
            } else if number.is_u64() {
                return Err(());
            } else {
                Dynamic::from_float(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Item::String(text) => Dynamic::from(ImmutableString::from(text)),
        Item::Array(items) => {
            let mut array = rhai::Array::with_capacity(items.len());
            for item in items.iter() {
                array.push(node_to_dynamic(item, depth + 1)?);
            }
            Dynamic::from_array(array)
        }
        Item::Object(object) => {
            let mut map = Map::new();
            for (key, item) in object.iter() {
                map.insert(key.into(), node_to_dynamic(item, depth + 1)?);
            }
            Dynamic::from_map(map)
        }
    })
}

/// Rhai → JSON, depth-capped and at most [`MAX_OUTPUT_BYTES`]: one value, in a conversion of
/// its own.
pub fn to_json(value: &Dynamic) -> Result<Value, ConversionError> {
    Conversion::new().output(value)
}

/// The outputs of one translator run on their way out: each at most [`MAX_OUTPUT_BYTES`] of
/// JSON, all together at most [`MAX_RUN_OUTPUT_BYTES`] of JSON and [`MAX_RUN_OUTPUT_MEMORY`] in
/// memory, with their memory taken from the process budget as they grow and given back when the
/// conversion is dropped: keep it as long as the converted values live.
#[derive(Debug)]
pub struct Conversion<'a> {
    budget: &'a Budget,
    /// Bytes taken from `budget`.
    taken: usize,
    /// JSON text counted over every output so far.
    run_bytes: usize,
    /// JSON text counted in the output being converted.
    output_bytes: usize,
    /// Memory counted over every output so far.
    run_memory: usize,
}

impl Conversion<'static> {
    /// A conversion on the gateway's budget.
    pub fn new() -> Self {
        Conversion::on(&IN_FLIGHT)
    }
}

impl Default for Conversion<'static> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Conversion<'a> {
    fn on(budget: &'a Budget) -> Self {
        Self {
            budget,
            taken: 0,
            run_bytes: 0,
            output_bytes: 0,
            run_memory: 0,
        }
    }

    /// The memory of converted output this conversion holds in the process budget.
    pub fn held(&self) -> usize {
        self.taken
    }

    /// Rhai → JSON: one output. Unit becomes null; anything JSON has no form for is an error.
    pub fn output(&mut self, value: &Dynamic) -> Result<Value, ConversionError> {
        self.output_bytes = 0;
        self.convert(value, 0)
    }

    /// Counts `bytes` more of output as JSON and `memory` more in memory, before they are copied.
    fn count(&mut self, bytes: usize, memory: usize) -> Result<(), ConversionError> {
        self.output_bytes += bytes;
        self.run_bytes += bytes;
        self.run_memory += memory;
        let too_large = |scope, limit| ConversionError::TooLarge {
            pointer: String::new(),
            scope,
            limit,
        };
        if self.output_bytes > MAX_OUTPUT_BYTES {
            return Err(too_large("in one output", MAX_OUTPUT_BYTES));
        }
        if self.run_bytes > MAX_RUN_OUTPUT_BYTES {
            return Err(too_large("in all outputs of one run", MAX_RUN_OUTPUT_BYTES));
        }
        if self.run_memory > MAX_RUN_OUTPUT_MEMORY {
            return Err(ConversionError::TooLargeInMemory {
                pointer: String::new(),
            });
        }
        if self.run_memory > self.taken {
            let step = (self.run_memory - self.taken).next_multiple_of(CONVERSION_STEP);
            if !self.budget.take(step) {
                return Err(ConversionError::Busy {
                    pointer: String::new(),
                });
            }
            self.taken += step;
        }
        Ok(())
    }

    fn convert(&mut self, value: &Dynamic, depth: usize) -> Result<Value, ConversionError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(ConversionError::TooDeep {
                pointer: String::new(),
            });
        }
        if value.is_string() {
            let text = value
                .as_immutable_string_ref()
                .expect("is_string said this is a string");
            self.count(text.len() + 2, VALUE_BYTES + text.len())?;
            return Ok(Value::String(text.as_str().to_owned()));
        }
        if value.is_map() {
            let map = value.as_map_ref().expect("is_map said this is a map");
            let node = if map.is_empty() { 0 } else { MAP_NODE_BYTES };
            self.count(2, VALUE_BYTES + node)?;
            let mut object = serde_json::Map::new();
            for (key, item) in map.iter() {
                // "key": and a comma; the key's text and its share of the map's nodes.
                self.count(key.len() + 4, key.len() + MAP_ENTRY_BYTES)
                    .map_err(|error| error.within(key))?;
                let converted = self
                    .convert(item, depth + 1)
                    .map_err(|error| error.within(key))?;
                object.insert(key.as_str().to_owned(), converted);
            }
            return Ok(Value::Object(object));
        }
        if value.is_int() {
            let integer = value.as_int().expect("is_int said this is an integer");
            self.count(decimal_digits(integer), VALUE_BYTES)?;
            return Ok(Value::from(integer));
        }
        if value.is_array() {
            let array = value
                .as_array_ref()
                .expect("is_array said this is an array");
            // The items' nodes count as they are converted: the vector holds exactly them.
            self.count(2, VALUE_BYTES)?;
            let mut items = Vec::with_capacity(array.len());
            for (index, item) in array.iter().enumerate() {
                // A comma, and the item.
                self.count(1, 0)?;
                items.push(
                    self.convert(item, depth + 1)
                        .map_err(|error| error.within(&index.to_string()))?,
                );
            }
            return Ok(Value::Array(items));
        }
        if value.is_unit() {
            self.count(4, VALUE_BYTES)?;
            return Ok(Value::Null);
        }
        if value.is_bool() {
            self.count(5, VALUE_BYTES)?;
            return Ok(Value::Bool(
                value.as_bool().expect("is_bool said this is a boolean"),
            ));
        }
        if value.is_float() {
            let float = value.as_float().expect("is_float said this is a float");
            // The shortest form that round-trips is at most 24 characters.
            self.count(24, VALUE_BYTES)?;
            return serde_json::Number::from_f64(float)
                .map(Value::Number)
                .ok_or_else(|| ConversionError::NotJson {
                    pointer: String::new(),
                    what: format!("the number {float}"),
                });
        }
        if value.is_char() {
            let character = value.as_char().expect("is_char said this is a char");
            self.count(character.len_utf8() + 2, VALUE_BYTES + character.len_utf8())?;
            return Ok(Value::String(character.to_string()));
        }
        Err(ConversionError::NotJson {
            pointer: String::new(),
            what: format!("a value of type {}", value.type_name()),
        })
    }
}

impl Drop for Conversion<'_> {
    fn drop(&mut self) {
        self.budget.give(self.taken);
    }
}

/// The memory every translator's converted outputs hold now, across the process.
pub fn translation_memory_in_flight() -> usize {
    IN_FLIGHT.used()
}

/// Memory of converted output the gateway holds in flight, shared by every conversion.
static IN_FLIGHT: Budget = Budget::new(MAX_TRANSLATION_MEMORY_IN_FLIGHT);

/// A byte budget shared by threads: room is taken if there is some, never waited for (a wait
/// would block a runtime worker), and given back.
#[derive(Debug)]
struct Budget {
    capacity: usize,
    used: AtomicUsize,
}

impl Budget {
    const fn new(capacity: usize) -> Self {
        Self {
            capacity,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` if they fit: whether it got them.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|after| *after <= self.capacity)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// How many characters `integer` takes in decimal.
fn decimal_digits(integer: INT) -> usize {
    let sign = usize::from(integer < 0);
    let digits = integer
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |log| log as usize + 1);
    sign + digits
}

impl ConversionError {
    /// The same error, one level further out: `segment` is prepended to its pointer. Pointers
    /// are built only on the way out of an error, never on the happy path.
    fn within(mut self, segment: &str) -> Self {
        let (Self::TooDeep { pointer }
        | Self::InexactNumber { pointer, .. }
        | Self::NotJson { pointer, .. }
        | Self::TooLarge { pointer, .. }
        | Self::TooLargeInMemory { pointer }
        | Self::Busy { pointer }) = &mut self;
        let escaped = segment.replace('~', "~0").replace('/', "~1");
        pointer.insert_str(0, &format!("/{escaped}"));
        self
    }
}

/// A script error's position as `line L, column C`, when it has one.
pub fn describe_position(position: Position) -> Option<String> {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => Some(format!("line {line}, column {column}")),
        (Some(line), None) => Some(format!("line {line}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(script: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        with_deadline(|| engine().eval::<Dynamic>(script))
    }

    #[test]
    fn json_round_trips_through_the_script_side() {
        let value = json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}, "k/~": 9_007_199_254_740_993_i64});
        assert_eq!(to_json(&to_dynamic(&value).unwrap()).unwrap(), value);
    }

    #[test]
    fn integers_beyond_i64_are_refused_not_rounded() {
        let value: Value = serde_json::from_str(r#"{"id": 18446744073709551615}"#).unwrap();
        let error = to_dynamic(&value).unwrap_err();
        assert!(
            matches!(&error, ConversionError::InexactNumber { pointer, .. } if pointer == "/id"),
            "{error}"
        );
    }

    #[test]
    fn deep_script_output_is_refused_by_the_converter_without_a_crash() {
        // C10: nested maps that fit the size limits; from_dynamic overflows the stack at ~4 000.
        let value = run("let m = #{}; for i in 0..300 { m = #{ x: m }; } m").unwrap();
        let error = to_json(&value).unwrap_err();
        assert!(matches!(error, ConversionError::TooDeep { .. }), "{error}");

        // Building (and dropping) 5 000 levels is itself recursive in Rhai: give it room.
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| {
                let mut deep = Dynamic::from_map(Map::new());
                for _ in 0..5000 {
                    let mut map = Map::new();
                    map.insert("x".into(), deep);
                    deep = Dynamic::from_map(map);
                }
                assert!(matches!(
                    to_json(&deep),
                    Err(ConversionError::TooDeep { .. })
                ));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// The script of issue 10: one 65 000-byte string shared by 9 999 keys (650 MB as JSON).
    const AMPLIFIER: &str = "let s = \"a\"; for i in 0..16 { s += s; } s.truncate(65000); \
                             let m = #{}; for i in 0..9999 { m[\"k\" + i] = s; } m";

    #[test]
    fn a_shared_string_is_counted_each_time_and_stops_at_the_message_cap() {
        // Without the wall-time budget: what is under test is the conversion, not the machine.
        let value = engine().eval::<Dynamic>(AMPLIFIER).unwrap();
        let budget = Budget::new(MAX_TRANSLATION_MEMORY_IN_FLIGHT);
        let mut conversion = Conversion::on(&budget);
        let started = Instant::now();

        let error = conversion.output(&value).unwrap_err();

        assert!(
            matches!(&error, ConversionError::TooLarge { limit, .. } if *limit == MAX_OUTPUT_BYTES),
            "{error}"
        );
        assert!(error.to_string().contains("in one output"), "{error}");
        // It stopped within one string of the cap, and took no more room than that.
        assert!(
            conversion.run_bytes <= MAX_OUTPUT_BYTES + 65_010,
            "{}",
            conversion.run_bytes
        );
        assert!(conversion.taken <= MAX_OUTPUT_BYTES + 2 * CONVERSION_STEP);
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(conversion);
        assert_eq!(budget.used(), 0, "the room is given back");
    }

    /// A 10 000-item array shared by 50 keys: under 1 MiB of JSON (`1,` an item), but 500 000
    /// `serde_json::Value`s (16 MB) once converted.
    const SHARED_ARRAY: &str = "let a = []; for i in 0..10000 { a.push(1); } \
                                let m = #{}; for i in 0..50 { m[\"k\" + i] = a; } m";

    #[test]
    fn a_shared_array_is_weighed_by_the_memory_of_its_copies_not_by_their_text() {
        let value = engine().eval::<Dynamic>(SHARED_ARRAY).unwrap();
        let budget = Budget::new(MAX_TRANSLATION_MEMORY_IN_FLIGHT);

        // Outputs held at once (as by runs that have not published yet), until one finds no room.
        let mut held = Vec::new();
        let error = loop {
            let mut conversion = Conversion::on(&budget);
            match conversion.output(&value) {
                Ok(output) => held.push((conversion, output)),
                Err(error) => break error,
            }
            assert!(held.len() <= 64, "the budget never filled");
        };

        let text = serde_json::to_vec(&held[0].1).unwrap().len();
        assert!(
            text < MAX_OUTPUT_BYTES,
            "{text} bytes of JSON: within the message cap"
        );
        assert!(
            held[0].0.held() >= 50 * 10_000 * size_of::<Value>(),
            "{} bytes held for 500 000 values",
            held[0].0.held()
        );
        // 64 MiB of memory holds four such outputs, not the 64 their text would allow.
        assert_eq!(held.len(), 4);
        assert!(matches!(error, ConversionError::Busy { .. }), "{error}");
        assert!(budget.used() <= MAX_TRANSLATION_MEMORY_IN_FLIGHT);
        drop(held);
        assert_eq!(budget.used(), 0, "the room is given back with the outputs");
    }

    #[test]
    fn many_small_objects_within_the_message_cap_are_refused_past_the_run_s_memory_cap() {
        // 50 000 one-key objects: 400 KB of JSON, 40 MB of B-tree leaves once converted.
        let value = engine()
            .eval::<Dynamic>(
                "let a = []; for i in 0..10000 { a.push(#{ a: 0 }); } \
                 let m = #{}; for i in 0..5 { m[\"k\" + i] = a; } m",
            )
            .unwrap();
        let budget = Budget::new(MAX_TRANSLATION_MEMORY_IN_FLIGHT);
        let mut conversion = Conversion::on(&budget);

        let error = conversion.output(&value).unwrap_err();

        assert!(
            matches!(error, ConversionError::TooLargeInMemory { .. }),
            "{error}"
        );
        assert!(conversion.held() <= MAX_RUN_OUTPUT_MEMORY);
        drop(conversion);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn one_run_s_outputs_are_bounded_together() {
        // Sixteen strings of 64 000 bytes: about 1 MB of JSON, under the cap for one output.
        let value = run(
            "let s = \"a\"; for i in 0..16 { s += s; } s.truncate(64000); \
             let m = #{}; for i in 0..16 { m[\"k\" + i] = s; } m",
        )
        .unwrap();
        let mut conversion = Conversion::on(&IN_FLIGHT);
        for _ in 0..8 {
            conversion.output(&value).unwrap();
        }
        let error = conversion.output(&value).unwrap_err();
        assert!(
            matches!(&error, ConversionError::TooLarge { limit, .. } if *limit == MAX_RUN_OUTPUT_BYTES),
            "{error}"
        );
    }

    #[test]
    fn a_conversion_that_finds_the_process_budget_full_fails_at_once_as_busy() {
        let budget = Budget::new(4 * CONVERSION_STEP);
        let value = run("#{ a: \"x\" }").unwrap();
        assert!(budget.take(4 * CONVERSION_STEP));

        // No room: it fails without waiting (a wait would block a runtime worker).
        let started = Instant::now();
        let error = Conversion::on(&budget).output(&value).unwrap_err();
        assert!(matches!(error, ConversionError::Busy { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_millis(50));

        // Room came back: it goes on.
        budget.give(4 * CONVERSION_STEP);
        let mut conversion = Conversion::on(&budget);
        assert_eq!(conversion.output(&value).unwrap()["a"], "x");
        assert_eq!(budget.used(), CONVERSION_STEP);
        drop(conversion);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn non_json_values_are_refused() {
        let value = run("|x| x + 1").unwrap();
        assert!(matches!(
            to_json(&value),
            Err(ConversionError::NotJson { .. })
        ));
        let value = run("0.0 / 0.0").unwrap();
        assert!(matches!(
            to_json(&value),
            Err(ConversionError::NotJson { .. })
        ));
    }

    #[test]
    fn endless_loops_are_stopped() {
        // C6
        for script in ["loop {}", "while true {}", "let x = 0; loop { x += 1; }"] {
            let started = Instant::now();
            let error = run(script).unwrap_err();
            assert!(
                matches!(
                    *error,
                    EvalAltResult::ErrorTooManyOperations(..) | EvalAltResult::ErrorTerminated(..)
                ),
                "{script}: {error}"
            );
            assert!(started.elapsed() < Duration::from_secs(2), "{script}");
        }
    }

    #[test]
    fn sleep_is_refused_at_once() {
        // C7
        for script in ["sleep(100)", "sleep(1e9)", "sleep(1.5)"] {
            let started = Instant::now();
            let error = run(script).unwrap_err().to_string();
            assert!(error.contains("not available"), "{script}: {error}");
            assert!(started.elapsed() < Duration::from_millis(100), "{script}");
        }
    }

    #[test]
    fn deep_recursion_is_a_stack_overflow_error_not_a_crash() {
        // C8
        let error = run("fn f(x) { f(x) } f(1)").unwrap_err();
        assert!(
            matches!(*error.unwrap_inner(), EvalAltResult::ErrorStackOverflow(..)),
            "{error}"
        );
        let nested = "(".repeat(100_000) + "1" + &")".repeat(100_000);
        assert!(engine().compile(&nested).is_err());
    }

    #[test]
    fn growing_data_hits_the_size_limits() {
        // C9
        for script in [
            "let s = \"x\"; loop { s += s; }",
            "let a = []; loop { a.push(1); }",
            "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }",
        ] {
            let started = Instant::now();
            let error = run(script).unwrap_err();
            // Rhai re-measures nested sizes after each operation, so a growing array or map may
            // run out of time or of operations before it runs out of room (which one comes
            // first varies from run to run): any of them stops it, and quickly.
            assert!(
                matches!(
                    *error,
                    EvalAltResult::ErrorDataTooLarge(..)
                        | EvalAltResult::ErrorTerminated(..)
                        | EvalAltResult::ErrorTooManyOperations(..)
                ),
                "{script}: {error}"
            );
            assert!(started.elapsed() < Duration::from_secs(2), "{script}");
        }
    }

    #[test]
    fn import_and_eval_do_not_compile() {
        // C11
        assert!(engine().compile("import \"/etc/passwd\" as x;").is_err());
        assert!(engine().compile("eval(\"1 + 1\")").is_err());
    }

    #[test]
    fn print_goes_to_tracing_not_stdout_and_exit_and_parse_json_are_errors() {
        // C12, C15
        assert!(run("for i in 0..1000 { print(i) } 1").is_ok());
        assert!(run("exit(1)").is_err());
        assert!(run("parse_json(\"{}\")").is_err());
    }

    #[test]
    fn undeclared_variables_are_compile_errors() {
        assert!(engine().compile("fn translate(data) { dta.x }").is_err());
    }
}
