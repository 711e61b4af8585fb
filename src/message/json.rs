//! Strict JSON: duplicate keys refused, and numbers never changed silently.
//!
//! serde_json keeps the last of two duplicate keys and turns integers beyond 64 bits into
//! floats without a word. Two readers of the same bytes could then see two different messages,
//! so the gateway parses with a visitor that refuses duplicates and remembers whether any number
//! came out as a float or beyond `i64`. Only then, and only where a value is re-serialized
//! (translators, merges), [`first_inexact_number`] scans the raw text for a literal that an
//! `i64` or an `f64` cannot hold exactly.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

/// The parsed value and whether it may hold a number that a translator could not hold exactly.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub value: Value,
    /// Some number was parsed as a float or as an integer beyond `i64::MAX`.
    pub has_wide_numbers: bool,
}

/// Parses `bytes` as one JSON value, refusing duplicate keys anywhere.
/// Depth is capped by serde_json's recursion limit (128).
pub fn parse_strict(bytes: &[u8]) -> Result<Parsed, serde_json::Error> {
    // One UTF-8 check for the whole text, so the parser need not check each string again.
    let text = std::str::from_utf8(bytes).map_err(|error| {
        <serde_json::Error as serde::de::Error>::custom(format_args!(
            "invalid UTF-8 at byte {}",
            error.valid_up_to()
        ))
    })?;
    let wide = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Strict { wide: &wide }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(Parsed {
        value,
        has_wide_numbers: wide.get(),
    })
}

#[derive(Clone, Copy)]
struct Strict<'a> {
    wide: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        if v > i64::MAX as u64 {
            self.wide.set(true);
        }
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.wide.set(true);
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(access.next_value_seed(self)?);
                }
                Entry::Occupied(entry) => {
                    return Err(serde::de::Error::custom(format_args!(
                        "duplicate key {:?}",
                        truncate(entry.key(), 64)
                    )));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// Scans JSON text for the first number literal that neither an `i64` nor an `f64` holds
/// exactly, such as `18446744073709551617` or `0.30000000000000000001`.
pub fn first_inexact_number(bytes: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let literal = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
                if !is_exact(literal) {
                    return Some(truncate(literal, 64).to_owned());
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Whether a JSON number literal survives the trip into a translator and back unchanged in value.
fn is_exact(literal: &str) -> bool {
    let integral = !literal.contains(['.', 'e', 'E']);
    if integral {
        return literal.parse::<i64>().is_ok();
    }
    match literal.parse::<f64>() {
        Ok(float) if float.is_finite() => {
            Decimal::parse(literal) == Decimal::parse(&format!("{float:e}"))
        }
        _ => false,
    }
}

/// A decimal number as sign, significant digits and exponent, so that `1.50`, `15e-1` and
/// `1.5` compare equal.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    fn parse(text: &str) -> Option<Self> {
        let (negative, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match text.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().ok()?),
            None => (text, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut digits: String = whole.chars().chain(fraction.chars()).collect();
        let mut exponent = exponent - fraction.len() as i64;
        let trailing = digits.len() - digits.trim_end_matches('0').len();
        digits.truncate(digits.len() - trailing);
        exponent += trailing as i64;
        let digits = digits.trim_start_matches('0').to_owned();
        if digits.is_empty() {
            return Some(Self {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        Some(Self {
            negative,
            digits,
            exponent,
        })
    }
}

/// At most `max` bytes of `text`, cut on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for input in [
            r#"{"amount":1,"amount":1000000}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"[{"x":1},{"y":1,"y":1}]"#,
        ] {
            let error = parse_strict(input.as_bytes()).unwrap_err().to_string();
            assert!(error.contains("duplicate key"), "{input}: {error}");
        }
    }

    #[test]
    fn plain_documents_parse_like_serde_json() {
        let input = br#"{"a":[1,-2,"x",null,true,{"b":2.5}],"c":{}}"#;
        let parsed = parse_strict(input).unwrap();
        assert_eq!(
            parsed.value,
            serde_json::from_slice::<Value>(input).unwrap()
        );
        assert!(parsed.has_wide_numbers, "2.5 is a float");
        assert!(!parse_strict(br#"{"a":1}"#).unwrap().has_wide_numbers);
    }

    #[test]
    fn nesting_beyond_the_recursion_limit_is_an_error_not_a_crash() {
        let deep = "[".repeat(129) + &"]".repeat(129);
        assert!(parse_strict(deep.as_bytes()).is_err());
        let deep = "[".repeat(100_000);
        assert!(parse_strict(deep.as_bytes()).is_err());
    }

    #[test]
    fn out_of_range_numbers_and_lone_surrogates_are_errors() {
        assert!(parse_strict(b"1e400").is_err());
        assert!(parse_strict(br#""\ud800""#).is_err());
        assert!(parse_strict(b"").is_err());
        assert!(parse_strict(b"\xff\xfe").is_err());
        assert!(parse_strict(b"{} {}").is_err());
    }

    #[test]
    fn inexact_numbers_are_found_and_exact_ones_pass() {
        for exact in [
            "0",
            "-1",
            "9007199254740993",
            "9223372036854775807",
            "0.1",
            "1.5e3",
            "2.50",
            "-0.0",
            "1e20",
            "123.456",
        ] {
            assert_eq!(first_inexact_number(exact.as_bytes()), None, "{exact}");
        }
        for inexact in [
            "18446744073709551617",
            "9223372036854775808",
            "0.30000000000000000001",
            "3.14159265358979323846",
            "1e400",
        ] {
            let doc = format!(r#"{{"s":"1e999 inside a string","n":{inexact}}}"#);
            assert_eq!(
                first_inexact_number(doc.as_bytes()).as_deref(),
                Some(inexact),
                "{doc}"
            );
        }
    }
}
