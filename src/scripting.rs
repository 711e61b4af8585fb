//! The one hardened Rhai engine of the gateway, and the JSON ⇄ Rhai conversions.
//!
//! Scripts are untrusted. The engine has no module resolver (`import` does not parse: the crate
//! is built with `no_module`), no `eval`, no clock (`no_time`: a translator is a function of its
//! input, so a replay gives the same output), `sleep` and `parse_json` refused, `print`/`debug`
//! sent to tracing truncated and rate-limited, and limits on operations, wall time, call and
//! expression depth, string, array and map sizes. Conversions are depth-capped and never change
//! a number: an integer the script cannot hold is an error, as is a float that is NaN or
//! infinite on the way out.

use std::cell::Cell;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, Map, Module, Position};
use serde_json::Value;

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
/// Log lines a script may write per second across the gateway; more are counted and dropped.
const MAX_LOG_LINES_PER_SECOND: u64 = 100;
const MAX_LOG_LINE_BYTES: usize = 256;

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

/// Rhai → JSON, depth-capped. Unit becomes null; anything JSON has no form for is an error.
pub fn to_json(value: &Dynamic) -> Result<Value, ConversionError> {
    to_json_at(value, 0)
}

fn to_json_at(value: &Dynamic, depth: usize) -> Result<Value, ConversionError> {
    if depth > MAX_VALUE_DEPTH {
        return Err(ConversionError::TooDeep {
            pointer: String::new(),
        });
    }
    if value.is_string() {
        let text = value
            .as_immutable_string_ref()
            .expect("is_string said this is a string");
        return Ok(Value::String(text.as_str().to_owned()));
    }
    if value.is_map() {
        let map = value.as_map_ref().expect("is_map said this is a map");
        let mut object = serde_json::Map::new();
        for (key, item) in map.iter() {
            let converted = to_json_at(item, depth + 1).map_err(|error| error.within(key))?;
            object.insert(key.as_str().to_owned(), converted);
        }
        return Ok(Value::Object(object));
    }
    if value.is_int() {
        return Ok(Value::from(
            value.as_int().expect("is_int said this is an integer"),
        ));
    }
    if value.is_array() {
        let array = value
            .as_array_ref()
            .expect("is_array said this is an array");
        let mut items = Vec::with_capacity(array.len());
        for (index, item) in array.iter().enumerate() {
            items.push(
                to_json_at(item, depth + 1).map_err(|error| error.within(&index.to_string()))?,
            );
        }
        return Ok(Value::Array(items));
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if value.is_bool() {
        return Ok(Value::Bool(
            value.as_bool().expect("is_bool said this is a boolean"),
        ));
    }
    if value.is_float() {
        let float = value.as_float().expect("is_float said this is a float");
        return serde_json::Number::from_f64(float)
            .map(Value::Number)
            .ok_or_else(|| ConversionError::NotJson {
                pointer: String::new(),
                what: format!("the number {float}"),
            });
    }
    if value.is_char() {
        return Ok(Value::String(
            value
                .as_char()
                .expect("is_char said this is a char")
                .to_string(),
        ));
    }
    Err(ConversionError::NotJson {
        pointer: String::new(),
        what: format!("a value of type {}", value.type_name()),
    })
}

impl ConversionError {
    /// The same error, one level further out: `segment` is prepended to its pointer. Pointers
    /// are built only on the way out of an error, never on the happy path.
    fn within(mut self, segment: &str) -> Self {
        let (Self::TooDeep { pointer }
        | Self::InexactNumber { pointer, .. }
        | Self::NotJson { pointer, .. }) = &mut self;
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
