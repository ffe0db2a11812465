//! The fields of a `usage` object that pricing reads, in one pass over its
//! text: no tree of values, no allocation, no general-purpose deserializer
//! (which cost a small response more than the rest of its metering).
//!
//! A field that is present with the wrong type is not an error while
//! reading: it is one only if pricing consults it, as when a parsed tree is
//! queried. The last of duplicate keys wins, as in a tree. The text must be
//! one JSON object (RFC 8259: UTF-8, escapes, numbers, no trailing commas),
//! nested at most [`MAX_DEPTH`] deep.

use crate::json_scan::{ends_plain_text, is_json_whitespace, json_string};
use std::fmt;

/// Objects and arrays may nest fewer than this many levels deep (as in
/// `serde_json`, which the reading it replaced used).
const MAX_DEPTH: usize = 128;

/// A field as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Field<T> {
    /// Not there, or `null`.
    #[default]
    Absent,
    Value(T),
    /// There, with another type.
    Wrong,
}

/// A token count: a non-negative integer.
pub type Count = Field<u64>;

/// `input_token_details.cached_tokens_details` (Realtime).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CachedDetails {
    pub audio_tokens: Count,
    pub image_tokens: Count,
}

/// An input or output details object (named differently by each API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Details {
    pub cached_tokens: Count,
    pub audio_tokens: Count,
    pub image_tokens: Count,
    pub reasoning_tokens: Count,
    pub cached_tokens_details: Field<CachedDetails>,
}

/// The `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageFields {
    pub input_tokens: Count,
    pub prompt_tokens: Count,
    pub output_tokens: Count,
    pub completion_tokens: Count,
    pub input_token_details: Field<Details>,
    pub input_tokens_details: Field<Details>,
    pub prompt_tokens_details: Field<Details>,
    pub output_token_details: Field<Details>,
    pub output_tokens_details: Field<Details>,
    pub completion_tokens_details: Field<Details>,
}

/// The text is not one JSON object: where reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJson {
    pub at: usize,
    pub why: &'static str,
}

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "usage is not a JSON object: {} at byte {}",
            self.why, self.at
        )
    }
}

/// Reads a `usage` object; an error if the text is not one JSON object.
pub fn read(bytes: &[u8]) -> Result<UsageFields, NotJson> {
    // UTF-8 once for the whole text: outside strings any non-ASCII byte is
    // a syntax error anyway.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(NotJson {
            at: e.valid_up_to(),
            why: "invalid UTF-8",
        });
    }
    let mut text = Text { bytes, at: 0 };
    text.skip_whitespace();
    if text.peek() != Some(b'{') {
        return Err(text.error("expected an object"));
    }
    // Filled in place: the fields are several hundred bytes.
    let mut fields = UsageFields::default();
    text.object_into(&mut fields, 1)?;
    text.skip_whitespace();
    match text.peek() {
        None => Ok(fields),
        Some(_) => Err(text.error("trailing characters")),
    }
}

/// An object whose known keys are read into fields; others are skipped.
trait Object: Default {
    /// Which field `key` (its unescaped text) names.
    fn field(key: &[u8]) -> Option<usize>;
    /// Reads the value of field `index`.
    fn read_value(&mut self, index: usize, text: &mut Text, depth: usize) -> Result<(), NotJson>;
}

impl Object for UsageFields {
    fn field(key: &[u8]) -> Option<usize> {
        Some(match key {
            b"input_tokens" => 0,
            b"prompt_tokens" => 1,
            b"output_tokens" => 2,
            b"completion_tokens" => 3,
            b"input_token_details" => 4,
            b"input_tokens_details" => 5,
            b"prompt_tokens_details" => 6,
            b"output_token_details" => 7,
            b"output_tokens_details" => 8,
            b"completion_tokens_details" => 9,
            _ => return None,
        })
    }
    fn read_value(&mut self, index: usize, text: &mut Text, depth: usize) -> Result<(), NotJson> {
        let details = match index {
            0 => return text.count(depth).map(|v| self.input_tokens = v),
            1 => return text.count(depth).map(|v| self.prompt_tokens = v),
            2 => return text.count(depth).map(|v| self.output_tokens = v),
            3 => return text.count(depth).map(|v| self.completion_tokens = v),
            4 => &mut self.input_token_details,
            5 => &mut self.input_tokens_details,
            6 => &mut self.prompt_tokens_details,
            7 => &mut self.output_token_details,
            8 => &mut self.output_tokens_details,
            _ => &mut self.completion_tokens_details,
        };
        *details = text.object_field(depth)?;
        Ok(())
    }
}

impl Object for Details {
    fn field(key: &[u8]) -> Option<usize> {
        Some(match key {
            b"cached_tokens" => 0,
            b"audio_tokens" => 1,
            b"image_tokens" => 2,
            b"reasoning_tokens" => 3,
            b"cached_tokens_details" => 4,
            _ => return None,
        })
    }
    fn read_value(&mut self, index: usize, text: &mut Text, depth: usize) -> Result<(), NotJson> {
        let count = match index {
            0 => &mut self.cached_tokens,
            1 => &mut self.audio_tokens,
            2 => &mut self.image_tokens,
            3 => &mut self.reasoning_tokens,
            _ => {
                return text
                    .object_field(depth)
                    .map(|v| self.cached_tokens_details = v)
            }
        };
        *count = text.count(depth)?;
        Ok(())
    }
}

impl Object for CachedDetails {
    fn field(key: &[u8]) -> Option<usize> {
        match key {
            b"audio_tokens" => Some(0),
            b"image_tokens" => Some(1),
            _ => None,
        }
    }
    fn read_value(&mut self, index: usize, text: &mut Text, depth: usize) -> Result<(), NotJson> {
        let count = if index == 0 {
            &mut self.audio_tokens
        } else {
            &mut self.image_tokens
        };
        *count = text.count(depth)?;
        Ok(())
    }
}

/// The text being read, and where.
struct Text<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Text<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn error(&self, why: &'static str) -> NotJson {
        NotJson { at: self.at, why }
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(is_json_whitespace) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, why: &'static str) -> Result<(), NotJson> {
        self.skip_whitespace();
        if self.peek() != Some(byte) {
            return Err(self.error(why));
        }
        self.at += 1;
        Ok(())
    }

    /// Reads `{...}` at `depth` (the object's own level) into `object`.
    fn object_into<T: Object>(&mut self, object: &mut T, depth: usize) -> Result<(), NotJson> {
        self.entries(T::field, depth, |text, field, depth| match field {
            Some(index) => object.read_value(index, text, depth),
            None => text.skip_value(depth),
        })
    }

    /// Reads the entries of the object at the cursor, each value by `value`
    /// (given which field its key names, and the depth of the values).
    fn entries(
        &mut self,
        field: fn(&[u8]) -> Option<usize>,
        depth: usize,
        mut value: impl FnMut(&mut Self, Option<usize>, usize) -> Result<(), NotJson>,
    ) -> Result<(), NotJson> {
        self.list(depth, b'{', b'}', |text| {
            let named = text.key(field)?;
            text.expect(b':', "expected `:`")?;
            text.skip_whitespace();
            value(text, named, depth + 1)
        })
    }

    /// A bracketed list at `depth` (its own level): `open`, items read by
    /// `item` and separated by commas, `close`.
    fn list(
        &mut self,
        depth: usize,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), NotJson>,
    ) -> Result<(), NotJson> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.expect(open, "expected an object or an array")?;
        self.skip_whitespace();
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            item(self)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b) if b == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or the list's end")),
            }
        }
    }

    /// A field that holds an object of known keys; `depth` is its level.
    fn object_field<T: Object>(&mut self, depth: usize) -> Result<Field<T>, NotJson> {
        match self.peek() {
            Some(b'{') => {
                let mut object = T::default();
                self.object_into(&mut object, depth)?;
                Ok(Field::Value(object))
            }
            Some(b'n') => self.literal(b"null").map(|()| Field::Absent),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| Field::Wrong),
            _ => self.skip_value(depth).map(|()| Field::Wrong),
        }
    }

    /// A field that holds a token count: a non-negative integer that fits
    /// in 64 bits; `depth` is its level.
    fn count(&mut self, depth: usize) -> Result<Count, NotJson> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'n') => self.literal(b"null").map(|()| Field::Absent),
            _ => self.skip_value(depth).map(|()| Field::Wrong),
        }
    }

    /// A number: its value when it is an integer in `0..=u64::MAX` written
    /// without a sign, fraction or exponent; otherwise the wrong type — or
    /// not JSON when it is no number, or beyond a double's range (as in a
    /// parsed tree).
    fn number(&mut self) -> Result<Count, NotJson> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let digits = self.at;
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.error("invalid number")),
        }
        let integer = self.bytes.get(digits..self.at).unwrap_or(&[]);
        let mut plain = !negative;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digits()?;
            plain = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
            plain = false;
        }
        if plain {
            if let Some(n) = integer.iter().try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            }) {
                return Ok(Field::Value(n));
            }
        }
        let written = self.bytes.get(start..self.at).unwrap_or(&[]);
        // Rare (a count is an integer): the parse the tree uses decides, and
        // the filter already carries it (std's float parser would add 27 KiB).
        if serde_json::from_slice::<f64>(written).is_ok() {
            Ok(Field::Wrong)
        } else {
            Err(NotJson {
                at: start,
                why: "number out of range",
            })
        }
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    /// One or more digits.
    fn digits(&mut self) -> Result<(), NotJson> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error("invalid number"));
        }
        self.skip_digits();
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), NotJson> {
        if self
            .bytes
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }

    /// Skips any value; `depth` is its own level.
    fn skip_value(&mut self, depth: usize) -> Result<(), NotJson> {
        match self.peek() {
            Some(b'{') => self.entries(|_| None, depth, |text, _, depth| text.skip_value(depth)),
            Some(b'[') => self.skip_array(depth),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(self.error("expected a value")),
        }
    }

    fn skip_array(&mut self, depth: usize) -> Result<(), NotJson> {
        self.list(depth, b'[', b']', |text| text.skip_value(depth + 1))
    }

    /// A key: which field it names, by its unescaped text.
    fn key(&mut self, field: fn(&[u8]) -> Option<usize>) -> Result<Option<usize>, NotJson> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key"));
        }
        let quote = self.at;
        let (inner, escaped) = self.string()?;
        if !escaped {
            return Ok(field(inner));
        }
        // Rare: a key with escapes, already checked, unescaped as any
        // captured string is.
        let written = self.bytes.get(quote..self.at).unwrap_or(&[]);
        Ok(json_string(written).and_then(|key| field(key.as_bytes())))
    }

    /// A string at the cursor: its text between the quotes (escapes as
    /// written), and whether it has any; every escape is checked.
    fn string(&mut self) -> Result<(&'a [u8], bool), NotJson> {
        self.at += 1;
        let start = self.at;
        let mut escaped = false;
        loop {
            let mut at = self.at;
            while let Some(&b) = self.bytes.get(at) {
                if ends_plain_text(b) {
                    break;
                }
                at += 1;
            }
            self.at = at;
            match self.peek() {
                Some(b'"') => {
                    let inner = self.bytes.get(start..self.at).unwrap_or(&[]);
                    self.at += 1;
                    return Ok((inner, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// An escape at the cursor (its backslash): checked and passed.
    fn escape(&mut self) -> Result<(), NotJson> {
        self.at += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.at += 1;
                Ok(())
            }
            Some(b'u') => {
                let unit = self.hex4()?;
                if (0xDC00..0xE000).contains(&unit) {
                    return Err(self.error("lone trailing surrogate"));
                }
                if (0xD800..0xDC00).contains(&unit) {
                    let pair = self.bytes.get(self.at..self.at + 2) == Some(b"\\u");
                    if !pair {
                        return Err(self.error("lone leading surrogate"));
                    }
                    self.at += 1;
                    if !(0xDC00..0xE000).contains(&self.hex4()?) {
                        return Err(self.error("lone leading surrogate"));
                    }
                }
                Ok(())
            }
            _ => Err(self.error("invalid escape")),
        }
    }

    /// `u` and four hex digits at the cursor: their value.
    fn hex4(&mut self) -> Result<u32, NotJson> {
        let digits = self.bytes.get(self.at + 1..self.at + 5);
        let value = digits
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        match value {
            Some(v) => {
                self.at += 5;
                Ok(v)
            }
            None => Err(self.error("invalid escape")),
        }
    }
}
