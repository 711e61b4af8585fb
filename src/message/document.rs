//! An input's data parsed once into a flat document: one copy of the text and one array of
//! entries, with no allocation per string, array or object. The validator reads it in place
//! ([`Doc`] is a `jsonschema` representation), the translators' converter walks it, and a
//! `serde_json::Value` is built from it only where one is needed (error reports, enrich).
//!
//! It is parsed by the same strict rules as [`super::json::parse_strict`], through the same
//! `serde_json` parser: duplicate keys refused with the same message at the same position, the
//! same recursion limit, the same errors, and the same record of wide numbers.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use jsonschema::JsonType;
use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::json::truncate;

/// From this many keys on, an object's keys are checked for duplicates through a hash set
/// rather than by comparing each new key with the ones before.
const LINEAR_KEYS: usize = 16;

/// A parsed JSON document (see the module's documentation).
#[derive(Clone, Default)]
pub struct Document {
    /// The original text, followed by the strings that held escapes, unescaped.
    text: String,
    /// The values in document order: a container is followed by its members (an object's as key,
    /// value, key, value…), each value by its own members.
    entries: Vec<Entry>,
    /// How many containers the deepest value is inside (the root is at depth 0).
    deepest: usize,
    /// Some integer is beyond `i64::MAX`.
    beyond_i64: bool,
}

#[derive(Debug, Clone)]
enum Entry {
    Null,
    Bool(bool),
    Number(Number),
    String(Span),
    /// `end`: the index just past its last member.
    Array {
        len: u32,
        end: u32,
    },
    Object {
        len: u32,
        end: u32,
    },
}

/// Where a string's text is in [`Document::text`].
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// A document and whether it may hold a number a translator could not hold exactly.
#[derive(Debug, Clone)]
pub struct ParsedDocument {
    pub document: Document,
    /// Some number was parsed as a float or as an integer beyond `i64::MAX`.
    pub has_wide_numbers: bool,
}

impl Document {
    /// Parses `bytes` as one JSON value by the rules of [`super::json::parse_strict`].
    pub fn parse(bytes: &[u8]) -> Result<ParsedDocument, serde_json::Error> {
        let text = std::str::from_utf8(bytes).map_err(|error| {
            <serde_json::Error as serde::de::Error>::custom(format_args!(
                "invalid UTF-8 at byte {}",
                error.valid_up_to()
            ))
        })?;
        if text.len() > (u32::MAX / 4) as usize {
            return Err(<serde_json::Error as serde::de::Error>::custom(
                "the document is too large",
            ));
        }
        let mut state = State {
            text,
            base: text.as_ptr() as usize,
            unescaped: String::new(),
            entries: Vec::with_capacity(text.len() / 8),
            keys: Vec::new(),
            wide: false,
            depth: 0,
            deepest: 0,
            beyond_i64: false,
        };
        // The common document (no escapes, no duplicate keys, not deep, valid) on the fast path;
        // anything else through serde_json, which also words every error.
        if Fast::new(&mut state).document().is_none() {
            state.entries.clear();
            state.keys.clear();
            state.wide = false;
            state.depth = 0;
            state.deepest = 0;
            state.beyond_i64 = false;
            let mut deserializer = serde_json::Deserializer::from_str(text);
            Tape { state: &mut state }.deserialize(&mut deserializer)?;
            deserializer.end()?;
        }
        let mut all = String::with_capacity(text.len() + state.unescaped.len());
        all.push_str(text);
        all.push_str(&state.unescaped);
        Ok(ParsedDocument {
            document: Document {
                text: all,
                entries: state.entries,
                deepest: state.deepest,
                beyond_i64: state.beyond_i64,
            },
            has_wide_numbers: state.wide,
        })
    }

    /// How many arrays and objects the deepest value is inside (the root is at depth 0).
    pub fn deepest(&self) -> usize {
        self.deepest
    }

    /// The bytes of text it holds: its strings take no more than this together.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Whether some integer is beyond `i64::MAX` (what a translator cannot hold).
    pub fn has_integers_beyond_i64(&self) -> bool {
        self.beyond_i64
    }

    /// The whole document.
    pub fn root(&self) -> DocNode<'_> {
        DocNode { doc: self, at: 0 }
    }

    /// The document as a `serde_json::Value`, as `parse_strict` would have returned it.
    pub fn to_value(&self) -> Value {
        self.root().value()
    }

    fn str(&self, span: Span) -> &str {
        &self.text[span.start as usize..(span.start + span.len) as usize]
    }

    /// The index just past the value at `at` and its members.
    fn next(&self, at: u32) -> u32 {
        match self.entries[at as usize] {
            Entry::Array { end, .. } | Entry::Object { end, .. } => end,
            _ => at + 1,
        }
    }

    /// Makes this document the one string `string` (the validator's buffer for names).
    fn set_string(&mut self, string: &str) {
        self.text.clear();
        self.text.push_str(string);
        self.entries.clear();
        self.entries.push(Entry::String(Span {
            start: 0,
            len: string.len() as u32,
        }));
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_value(), f)
    }
}

/// One value of a [`Document`].
#[derive(Clone, Copy)]
pub struct DocNode<'a> {
    doc: &'a Document,
    at: u32,
}

/// What a [`DocNode`] is.
pub enum Item<'a> {
    Null,
    Bool(bool),
    Number(&'a Number),
    String(&'a str),
    Array(DocArray<'a>),
    Object(DocObject<'a>),
}

impl<'a> DocNode<'a> {
    /// The document it is in.
    pub fn document(&self) -> &'a Document {
        self.doc
    }

    fn entry(&self) -> &'a Entry {
        &self.doc.entries[self.at as usize]
    }

    /// What this value is.
    pub fn item(&self) -> Item<'a> {
        let doc = self.doc;
        match self.entry() {
            Entry::Null => Item::Null,
            Entry::Bool(flag) => Item::Bool(*flag),
            Entry::Number(number) => Item::Number(number),
            Entry::String(span) => Item::String(doc.str(*span)),
            Entry::Array { .. } => Item::Array(DocArray { doc, at: self.at }),
            Entry::Object { .. } => Item::Object(DocObject { doc, at: self.at }),
        }
    }

    /// The value at a JSON pointer (RFC 6901) from here, read as `serde_json::Value::pointer`
    /// reads it.
    pub fn pointer(&self, pointer: &str) -> Option<DocNode<'a>> {
        if pointer.is_empty() {
            return Some(*self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut node = *self;
        for token in rest.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            node = match node.item() {
                Item::Object(object) => object.get(&token)?,
                Item::Array(array) => {
                    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
                        return None;
                    }
                    array.iter().nth(token.parse().ok()?)?
                }
                _ => return None,
            };
        }
        Some(node)
    }

    /// This value as a `serde_json::Value`.
    pub fn value(&self) -> Value {
        match self.item() {
            Item::Null => Value::Null,
            Item::Bool(flag) => Value::Bool(flag),
            Item::Number(number) => Value::Number(number.clone()),
            Item::String(text) => Value::String(text.to_owned()),
            Item::Array(array) => Value::Array(array.iter().map(|item| item.value()).collect()),
            Item::Object(object) => {
                let mut map = Map::new();
                for (key, value) in object.iter() {
                    map.insert(key.to_owned(), value.value());
                }
                Value::Object(map)
            }
        }
    }
}

/// An array of a [`Document`].
#[derive(Clone, Copy)]
pub struct DocArray<'a> {
    doc: &'a Document,
    at: u32,
}

impl<'a> DocArray<'a> {
    /// How many entries its items take, nested values included: at least one each.
    pub fn entries(&self) -> usize {
        (self.doc.next(self.at) - self.at - 1) as usize
    }

    pub fn len(&self) -> usize {
        match self.doc.entries[self.at as usize] {
            Entry::Array { len, .. } => len as usize,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Elements<'a> {
        Elements {
            doc: self.doc,
            next: self.at + 1,
            end: self.doc.next(self.at),
        }
    }
}

/// The items of a [`DocArray`].
pub struct Elements<'a> {
    doc: &'a Document,
    next: u32,
    end: u32,
}

impl<'a> Iterator for Elements<'a> {
    type Item = DocNode<'a>;

    fn next(&mut self) -> Option<DocNode<'a>> {
        if self.next >= self.end {
            return None;
        }
        let node = DocNode {
            doc: self.doc,
            at: self.next,
        };
        self.next = self.doc.next(self.next);
        Some(node)
    }
}

/// An object of a [`Document`], its members in document order.
#[derive(Clone, Copy)]
pub struct DocObject<'a> {
    doc: &'a Document,
    at: u32,
}

impl<'a> DocObject<'a> {
    pub fn len(&self) -> usize {
        match self.doc.entries[self.at as usize] {
            Entry::Object { len, .. } => len as usize,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Members<'a> {
        Members {
            doc: self.doc,
            next: self.at + 1,
            end: self.doc.next(self.at),
        }
    }

    /// The member named `key`.
    pub fn get(&self, key: &str) -> Option<DocNode<'a>> {
        self.iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }
}

/// The members of a [`DocObject`].
pub struct Members<'a> {
    doc: &'a Document,
    next: u32,
    end: u32,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, DocNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let Entry::String(span) = self.doc.entries[self.next as usize] else {
            unreachable!("an object's members start with their key")
        };
        let value = DocNode {
            doc: self.doc,
            at: self.next + 1,
        };
        self.next = self.doc.next(self.next + 1);
        Some((self.doc.str(span), value))
    }
}

// The parser: serde_json's, with a visitor that appends entries.

struct State<'t> {
    text: &'t str,
    /// The address of `text`: a string borrowed from it is a span of it.
    base: usize,
    /// Strings that held escapes, unescaped; their spans start past `text`.
    unescaped: String,
    entries: Vec<Entry>,
    /// The keys of the objects being parsed, innermost last.
    keys: Vec<Span>,
    wide: bool,
    /// How many containers are open.
    depth: usize,
    deepest: usize,
    beyond_i64: bool,
}

impl State<'_> {
    fn span(&mut self, text: &str, borrowed: bool) -> Span {
        let offset = (text.as_ptr() as usize).wrapping_sub(self.base);
        if borrowed
            && offset
                .checked_add(text.len())
                .is_some_and(|end| end <= self.text.len())
        {
            return Span {
                start: offset as u32,
                len: text.len() as u32,
            };
        }
        let start = self.text.len() + self.unescaped.len();
        self.unescaped.push_str(text);
        Span {
            start: start as u32,
            len: text.len() as u32,
        }
    }

    fn str(&self, span: Span) -> &str {
        let (start, end) = (span.start as usize, (span.start + span.len) as usize);
        if end <= self.text.len() {
            &self.text[start..end]
        } else {
            let past = self.text.len();
            &self.unescaped[start - past..end - past]
        }
    }

    fn push(&mut self, entry: Entry) {
        self.deepest = self.deepest.max(self.depth);
        self.entries.push(entry);
    }
}

/// The fast path: the entries for a valid document without escapes, duplicate keys or deep
/// nesting, the very ones `Tape` would append; `None` as soon as the text is anything else
/// (serde_json then parses it again, and finds the error if there is one).
struct Fast<'s, 't> {
    state: &'s mut State<'t>,
    bytes: &'t [u8],
    at: usize,
}

/// Deeper than this, the fast path leaves the document to serde_json (and its recursion limit).
const FAST_DEPTH: usize = 100;

impl<'s, 't> Fast<'s, 't> {
    fn new(state: &'s mut State<'t>) -> Self {
        let bytes = state.text.as_bytes();
        Self {
            state,
            bytes,
            at: 0,
        }
    }

    fn document(&mut self) -> Option<()> {
        self.value()?;
        self.whitespace();
        (self.at == self.bytes.len()).then_some(())
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8], entry: Entry) -> Option<()> {
        if !self.bytes[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        self.state.push(entry);
        Some(())
    }

    fn value(&mut self) -> Option<()> {
        self.whitespace();
        match *self.bytes.get(self.at)? {
            b'n' => self.literal(b"null", Entry::Null),
            b't' => self.literal(b"true", Entry::Bool(true)),
            b'f' => self.literal(b"false", Entry::Bool(false)),
            b'"' => {
                let span = self.string()?;
                self.state.push(Entry::String(span));
                Some(())
            }
            b'-' | b'0'..=b'9' => self.number(),
            b'[' => self.array(),
            b'{' => self.object(),
            _ => None,
        }
    }

    /// A string without escapes or control characters, its quotes included.
    fn string(&mut self) -> Option<Span> {
        let start = self.at + 1;
        let length = string_end(&self.bytes[start..])?;
        let end = start + length;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some(Span {
            start: start as u32,
            len: length as u32,
        })
    }

    fn number(&mut self) -> Option<()> {
        let start = self.at;
        let negative = self.bytes[start] == b'-';
        let mut end = start + usize::from(negative);
        let digits = end;
        while let Some(b'0'..=b'9') = self.bytes.get(end) {
            end += 1;
        }
        let integral = &self.bytes[digits..end];
        if integral.is_empty() || (integral[0] == b'0' && integral.len() > 1) {
            return None;
        }
        let simple = !matches!(self.bytes.get(end), Some(b'.' | b'e' | b'E'));
        let magnitude = integral.iter().try_fold(0_u64, |value, digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        });
        let number = match (simple, negative, magnitude) {
            (true, false, Some(value)) => Number::from(value),
            // What serde_json makes of `-0` and of what `i64` cannot hold is a float.
            (true, true, Some(value)) if value != 0 && value <= 1 << 63 => {
                Number::from((value as i64).wrapping_neg())
            }
            _ => {
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.bytes.get(end)
                {
                    end += 1;
                }
                // The literal alone, parsed by serde_json as it would have parsed it in place.
                let literal = std::str::from_utf8(&self.bytes[start..end]).ok()?;
                serde_json::from_str::<Number>(literal).ok()?
            }
        };
        if number.is_f64() || number.as_u64().is_some_and(|value| value > i64::MAX as u64) {
            self.state.wide = true;
            self.state.beyond_i64 |= number.is_u64();
        }
        self.at = end;
        self.state.push(Entry::Number(number));
        Some(())
    }

    fn array(&mut self) -> Option<()> {
        if self.state.depth >= FAST_DEPTH {
            return None;
        }
        let at = self.state.entries.len();
        self.state.push(Entry::Array { len: 0, end: 0 });
        self.state.depth += 1;
        self.at += 1;
        self.whitespace();
        let mut len = 0_u32;
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
        } else {
            loop {
                self.value()?;
                len += 1;
                self.whitespace();
                match *self.bytes.get(self.at)? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.state.depth -= 1;
        let end = self.state.entries.len() as u32;
        self.state.entries[at] = Entry::Array { len, end };
        Some(())
    }

    fn object(&mut self) -> Option<()> {
        if self.state.depth >= FAST_DEPTH {
            return None;
        }
        let at = self.state.entries.len();
        self.state.push(Entry::Object { len: 0, end: 0 });
        self.state.depth += 1;
        self.at += 1;
        self.whitespace();
        let first_key = self.state.keys.len();
        let mut many: Option<HashSet<&'t str>> = None;
        let mut len = 0_u32;
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
        } else {
            loop {
                if self.bytes.get(self.at) != Some(&b'"') {
                    return None;
                }
                let span = self.string()?;
                let text = self.state.text;
                let key = &text[span.start as usize..(span.start + span.len) as usize];
                let duplicate = match &mut many {
                    Some(seen) => !seen.insert(key),
                    None => {
                        let earlier = &self.state.keys[first_key..];
                        let duplicate = earlier.iter().any(|earlier| {
                            &text[earlier.start as usize..(earlier.start + earlier.len) as usize]
                                == key
                        });
                        if !duplicate && earlier.len() + 1 >= LINEAR_KEYS {
                            many = Some(
                                earlier
                                    .iter()
                                    .map(|earlier| {
                                        &text[earlier.start as usize
                                            ..(earlier.start + earlier.len) as usize]
                                    })
                                    .chain([key])
                                    .collect(),
                            );
                        }
                        duplicate
                    }
                };
                if duplicate {
                    return None;
                }
                self.state.keys.push(span);
                self.state.push(Entry::String(span));
                self.whitespace();
                if self.bytes.get(self.at) != Some(&b':') {
                    return None;
                }
                self.at += 1;
                self.value()?;
                len += 1;
                self.whitespace();
                match *self.bytes.get(self.at)? {
                    b',' => {
                        self.at += 1;
                        self.whitespace();
                    }
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.state.keys.truncate(first_key);
        self.state.depth -= 1;
        let end = self.state.entries.len() as u32;
        self.state.entries[at] = Entry::Object { len, end };
        Some(())
    }
}

/// Where a string's text ends: the first `"`, `\\` or control character, eight bytes a step.
fn string_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte below `n` (n ≤ 0x80). Borrows may mark bytes above a marked one
    // too, never below: the lowest mark of each test, so of all three, is exact.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let marks = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if marks != 0 {
            return Some(at + (marks.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        .map(|position| at + position)
}

struct Tape<'s, 't> {
    state: &'s mut State<'t>,
}

impl<'de> DeserializeSeed<'de> for Tape<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tape<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.state.push(Entry::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.state.push(Entry::Number(v.into()));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        if v > i64::MAX as u64 {
            self.state.wide = true;
            self.state.beyond_i64 = true;
        }
        self.state.push(Entry::Number(v.into()));
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.state.wide = true;
        let number = Number::from_f64(v).ok_or_else(|| E::custom("number out of range"))?;
        self.state.push(Entry::Number(number));
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        let span = self.state.span(v, true);
        self.state.push(Entry::String(span));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let span = self.state.span(v, false);
        self.state.push(Entry::String(span));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.state.push(Entry::Null);
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.state.push(Entry::Null);
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.state.entries.len();
        self.state.push(Entry::Array { len: 0, end: 0 });
        self.state.depth += 1;
        let mut len = 0_u32;
        while seq
            .next_element_seed(Tape {
                state: &mut *self.state,
            })?
            .is_some()
        {
            len += 1;
        }
        self.state.depth -= 1;
        let end = self.state.entries.len() as u32;
        self.state.entries[at] = Entry::Array { len, end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let at = self.state.entries.len();
        self.state.push(Entry::Object { len: 0, end: 0 });
        self.state.depth += 1;
        let first_key = self.state.keys.len();
        let mut many: Option<HashSet<String>> = None;
        let mut len = 0_u32;
        while let Some(span) = access.next_key_seed(Key {
            state: &mut *self.state,
        })? {
            let state = &*self.state;
            let key = state.str(span);
            let duplicate = match &mut many {
                Some(seen) => !seen.insert(key.to_owned()),
                None => {
                    let earlier = &state.keys[first_key..];
                    let duplicate = earlier.iter().any(|earlier| state.str(*earlier) == key);
                    if !duplicate && earlier.len() + 1 >= LINEAR_KEYS {
                        many = Some(
                            earlier
                                .iter()
                                .map(|earlier| state.str(*earlier).to_owned())
                                .chain([key.to_owned()])
                                .collect(),
                        );
                    }
                    duplicate
                }
            };
            if duplicate {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    truncate(key, 64)
                )));
            }
            self.state.keys.push(span);
            self.state.push(Entry::String(span));
            access.next_value_seed(Tape {
                state: &mut *self.state,
            })?;
            len += 1;
        }
        self.state.keys.truncate(first_key);
        self.state.depth -= 1;
        let end = self.state.entries.len() as u32;
        self.state.entries[at] = Entry::Object { len, end };
        Ok(())
    }
}

/// An object's key.
struct Key<'s, 't> {
    state: &'s mut State<'t>,
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = Span;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Span, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = Span;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Span, E> {
        Ok(self.state.span(v, true))
    }

    fn visit_str<E>(self, v: &str) -> Result<Span, E> {
        Ok(self.state.span(v, false))
    }
}

// The validator's view of a document.

/// The `jsonschema` representation of a [`Document`]: validators built for it read the entries
/// in place.
pub struct Doc;

impl Json for Doc {
    type Node<'a> = DocNode<'a>;
    type PreparedKey = String;
    type StringBuffer = Document;

    // A lookup scans the members: a pass over them is never slower.
    const KEYS_PER_LOOKUP: usize = 4;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(
        buffer: &mut Document,
        string: &str,
        f: impl FnOnce(DocNode<'_>) -> T,
    ) -> T {
        buffer.set_string(string);
        f(buffer.root())
    }
}

impl<'a> Node<'a, Doc> for DocNode<'a> {
    type Object = DocObject<'a>;
    type Array = DocArray<'a>;
    type Number = &'a Number;

    fn as_object(&self) -> Option<DocObject<'a>> {
        match self.entry() {
            Entry::Object { .. } => Some(DocObject {
                doc: self.doc,
                at: self.at,
            }),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<DocArray<'a>> {
        match self.entry() {
            Entry::Array { .. } => Some(DocArray {
                doc: self.doc,
                at: self.at,
            }),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.entry() {
            Entry::String(span) => Some(Cow::Borrowed(self.doc.str(*span))),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self.entry() {
            Entry::Number(number) => Some(number),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry() {
            Entry::Bool(flag) => Some(*flag),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.entry(), Entry::Null)
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            Entry::Null => JsonType::Null,
            Entry::Bool(_) => JsonType::Boolean,
            Entry::Number(_) => JsonType::Number,
            Entry::String(_) => JsonType::String,
            Entry::Array { .. } => JsonType::Array,
            Entry::Object { .. } => JsonType::Object,
        }
    }

    fn equals_value(&self, expected: &Value) -> bool {
        match (self.entry(), expected) {
            (Entry::Null, _) => expected.is_null(),
            (Entry::Bool(flag), _) => expected.as_bool() == Some(*flag),
            (Entry::String(span), Value::String(text)) => self.doc.str(*span) == text,
            (Entry::String(_), _) => false,
            (Entry::Number(number), _) => {
                jsonschema::json::cmp::equal(&Value::Number(number.clone()), expected)
            }
            _ => jsonschema::json::cmp::equal(&self.value(), expected),
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(self.value())
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(std::ptr::from_ref(self.entry()) as usize))
    }
}

impl<'a> Object<'a, Doc> for DocObject<'a> {
    type Node = DocNode<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        DocObject::len(self)
    }

    fn get(&self, key: &String) -> Option<DocNode<'a>> {
        DocObject::get(self, key)
    }

    fn members(&self) -> Members<'a> {
        self.iter()
    }
}

impl<'a> Array<'a, Doc> for DocArray<'a> {
    type Node = DocNode<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        DocArray::len(self)
    }

    fn elements(&self) -> Elements<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::json::parse_strict;

    const SAMPLES: &[&str] = &[
        r#"{"a":[1,-2,"x",null,true,{"b":2.5}],"c":{},"d":[],"e":"t\"ab\u00e9","f\n":1}"#,
        r#"[{"x":1},{"y":[[[]]]},18446744073709551615,-9223372036854775808,1e300]"#,
        r#""just a string""#,
        "0",
        "null",
        r#"{"z":1,"y":2,"x":{"w":"\\","v":"é"},"u":[{"t":{}}]}"#,
    ];

    /// The document serde_json's path alone makes of `text`.
    fn through_serde(text: &str) -> Option<(Value, bool, usize, bool)> {
        let mut state = State {
            text,
            base: text.as_ptr() as usize,
            unescaped: String::new(),
            entries: Vec::new(),
            keys: Vec::new(),
            wide: false,
            depth: 0,
            deepest: 0,
            beyond_i64: false,
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        Tape { state: &mut state }
            .deserialize(&mut deserializer)
            .ok()?;
        deserializer.end().ok()?;
        let mut all = text.to_owned();
        all.push_str(&state.unescaped);
        let document = Document {
            text: all,
            entries: state.entries,
            deepest: state.deepest,
            beyond_i64: state.beyond_i64,
        };
        Some((
            document.to_value(),
            state.wide,
            state.deepest,
            state.beyond_i64,
        ))
    }

    #[test]
    fn the_fast_path_makes_what_serde_json_makes_or_leaves_it_to_serde_json() {
        let numbers = [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "01",
            "-01",
            "1.5",
            "-1.5",
            "1e3",
            "1E-3",
            "1e+3",
            "0.1",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234567890",
            "1.",
            ".5",
            "-",
            "1e",
            "1e400",
            "2.5e-308",
            "0.30000000000000000001",
            "1-2",
            "--1",
            "+1",
        ];
        let mut texts: Vec<String> = numbers
            .iter()
            .flat_map(|n| [n.to_string(), format!("[{n}]"), format!(r#"{{"n": {n} }}"#)])
            .collect();
        texts.extend(
            [
                "",
                " ",
                "null",
                " true ",
                "false",
                "nul",
                "tru",
                "[",
                "]",
                "{",
                "}",
                "[]",
                "{}",
                "[ ]",
                "{ }",
                "[1,]",
                "[,1]",
                "[1 2]",
                r#"{"a":1,}"#,
                r#"{"a" 1}"#,
                r#"{a:1}"#,
                r#"{"a":1 "b":2}"#,
                r#"{"a":1,"a":2}"#,
                r#"{"a":{"b":1,"b":1}}"#,
                r#"{"a\u0062":1,"ab":2}"#,
                r#"["a\"b"]"#,
                "[\"a\tb\"]",
                r#"["é ✓ \u00e9"]"#,
                "[\"\u{1}\"]",
                " {\"a\" : [ 1 , { \"b\" : null } ] } ",
                "[1] x",
                "[1]\n",
                "\t[\r\n]",
                r#"{"":""}"#,
                r#"[[[[[]]]]]"#,
                r#"{"a":[{"b":[{"c":[]}]}]}"#,
            ]
            .iter()
            .map(ToString::to_string),
        );
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        texts.push(format!("{{{many}\"k7\":1}}"));
        texts.push(format!("{{{many}\"k40\":1}}"));
        texts.push("[".repeat(99) + &"]".repeat(99));
        texts.push("[".repeat(101) + &"]".repeat(101));
        texts.push("[".repeat(129) + &"]".repeat(129));
        for text in &texts {
            let parsed = Document::parse(text.as_bytes());
            let expected = through_serde(text);
            match (&parsed, &expected) {
                (Ok(parsed), Some((value, wide, deepest, beyond))) => {
                    let document = &parsed.document;
                    assert_eq!(&document.to_value(), value, "{text}");
                    assert_eq!(parsed.has_wide_numbers, *wide, "{text}");
                    assert_eq!(document.deepest(), *deepest, "{text}");
                    assert_eq!(document.has_integers_beyond_i64(), *beyond, "{text}");
                    // The same numbers, not only equal ones (`-0` is a float, `0` is not).
                    assert_eq!(format!("{:?}", document.to_value()), format!("{value:?}"));
                }
                (Err(_), None) => {
                    let strict = parse_strict(text.as_bytes()).unwrap_err().to_string();
                    assert_eq!(parsed.as_ref().unwrap_err().to_string(), strict, "{text}");
                }
                _ => panic!("{text}: {:?} against {expected:?}", parsed.is_ok()),
            }
        }
    }

    #[test]
    fn a_string_ends_at_its_first_quote_backslash_or_control_character() {
        let naive = |bytes: &[u8]| {
            bytes
                .iter()
                .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        };
        let mut texts: Vec<Vec<u8>> = vec![b"".to_vec(), b"abc".to_vec(), "é✓ x".into()];
        for length in 0..20 {
            for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..length {
                    let mut text: Vec<u8> = (0..length).map(|i| b'a' + (i % 26) as u8).collect();
                    text[at] = special;
                    texts.push(text.clone());
                    // Bytes that borrow or look alike around it.
                    if at + 1 < length {
                        text[at + 1] = 0x21;
                        texts.push(text.clone());
                        text[at + 1] = 0x80;
                        texts.push(text.clone());
                    }
                    if at > 0 {
                        text[at - 1] = 0x20;
                        texts.push(text.clone());
                        text[at - 1] = 0xff;
                        texts.push(text.clone());
                    }
                }
            }
        }
        texts.push("très long texte sans fin, ✓✓✓ ".repeat(9).into());
        for text in &texts {
            assert_eq!(string_end(text), naive(text), "{text:?}");
        }
    }

    #[test]
    fn a_document_holds_what_parse_strict_returns() {
        for sample in SAMPLES {
            let parsed = Document::parse(sample.as_bytes()).unwrap();
            let strict = parse_strict(sample.as_bytes()).unwrap();
            assert_eq!(parsed.document.to_value(), strict.value, "{sample}");
            assert_eq!(parsed.has_wide_numbers, strict.has_wide_numbers, "{sample}");
        }
    }

    #[test]
    fn it_fails_where_parse_strict_fails_with_the_same_message() {
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        let large_duplicate = format!("{{{many}\"k7\":1}}");
        let deep = "[".repeat(129) + &"]".repeat(129);
        for input in [
            r#"{"amount":1,"amount":1000000}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"[{"x":1},{"y":1,"y":1}]"#,
            r#"{"a\u0062":1,"ab":2}"#,
            large_duplicate.as_str(),
            deep.as_str(),
            "1e400",
            r#""\ud800""#,
            "",
            "{} {}",
            "{\"a\":}",
            "[1,]",
        ] {
            let error = Document::parse(input.as_bytes()).unwrap_err().to_string();
            let strict = parse_strict(input.as_bytes()).unwrap_err().to_string();
            assert_eq!(error, strict, "{input}");
        }
        assert!(Document::parse(b"\xff\xfe").is_err());
        let wide = "[".repeat(100_000);
        assert!(Document::parse(wide.as_bytes()).is_err());
    }

    #[test]
    fn objects_and_arrays_are_read_in_place() {
        let parsed = Document::parse(br#"{"a":{"b":[1,{"c":"d"}],"e":null},"f":"g\u0041"}"#)
            .unwrap()
            .document;
        let Item::Object(root) = parsed.root().item() else {
            panic!("an object")
        };
        assert_eq!(root.len(), 2);
        let keys: Vec<&str> = root.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["a", "f"]);
        assert!(matches!(root.get("f").unwrap().item(), Item::String("gA")));
        assert!(root.get("b").is_none());
        let Item::Object(a) = root.get("a").unwrap().item() else {
            panic!("an object")
        };
        let Item::Array(b) = a.get("b").unwrap().item() else {
            panic!("an array")
        };
        assert_eq!(b.len(), 2);
        let items: Vec<Value> = b.iter().map(|item| item.value()).collect();
        assert_eq!(items, [serde_json::json!(1), serde_json::json!({"c": "d"})]);
        assert!(matches!(a.get("e").unwrap().item(), Item::Null));
    }

    #[test]
    fn pointers_read_what_value_pointer_reads() {
        let text = r#"{"a":{"b":[1,{"c":"d"}],"e/f":2,"g~h":3,"":4},"i":[0,1,2,3,4,5,6,7,8,9,10]}"#;
        let document = Document::parse(text.as_bytes()).unwrap().document;
        let value: Value = serde_json::from_str(text).unwrap();
        for pointer in [
            "",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/2",
            "/a/e~1f",
            "/a/g~0h",
            "/a/",
            "/i/10",
            "/i/01",
            "/i/+1",
            "/i/-1",
            "/i/x",
            "a",
            "/x",
            "/a/b/1/c/d",
        ] {
            assert_eq!(
                document.root().pointer(pointer).map(|node| node.value()),
                value.pointer(pointer).cloned(),
                "{pointer}"
            );
        }
    }

    #[test]
    fn a_validator_for_documents_agrees_with_one_for_values() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["id", "items"],
            "additionalProperties": false,
            "properties": {
                "id": {"type": "string", "pattern": "^o-[0-9]+$", "maxLength": 10},
                "kind": {"enum": ["a", "b", 3]},
                "fixed": {"const": {"x": [1, 2.0]}},
                "n": {"type": "integer", "minimum": 0, "multipleOf": 2},
                "items": {
                    "type": "array",
                    "uniqueItems": true,
                    "items": {"type": "object", "propertyNames": {"maxLength": 3}}
                }
            }
        });
        let for_values = jsonschema::options().build(&schema).unwrap();
        let for_documents = jsonschema::options_for::<Doc>().build(&schema).unwrap();
        for instance in [
            r#"{"id":"o-1","items":[]}"#,
            r#"{"id":"o-1","items":[{"abc":1},{"abd":1}],"kind":3,"n":4,"fixed":{"x":[1.0,2]}}"#,
            r#"{"id":"o-x","items":[]}"#,
            r#"{"id":"o-1","items":[{"abcd":1}]}"#,
            r#"{"id":"o-1","items":[{"a":1},{"a":1}]}"#,
            r#"{"id":"o-1","items":[],"kind":"c"}"#,
            r#"{"id":"o-1","items":[],"n":3}"#,
            r#"{"id":"o-1","items":[],"n":-2}"#,
            r#"{"id":"o-1","items":[],"fixed":{"x":[1,3]}}"#,
            r#"{"id":"o-1","items":[],"other":1}"#,
            r#"{"items":[]}"#,
            r#"[]"#,
        ] {
            let document = Document::parse(instance.as_bytes()).unwrap().document;
            let value: Value = serde_json::from_str(instance).unwrap();
            assert_eq!(
                for_documents.is_valid(document.root()),
                for_values.is_valid(&value),
                "{instance}"
            );
        }
    }
}
