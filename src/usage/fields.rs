//! The fields of a `usage` object that pricing reads, in one pass over its
//! text: no tree of values, no allocation for keys or skipped values.
//!
//! A field that is present with the wrong type is not an error while
//! reading: it is one only if pricing consults it, as when a parsed tree is
//! queried. The last of duplicate keys wins, as in a tree.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

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

/// Reads a `usage` object; an error if the text is not one JSON object.
pub fn read(bytes: &[u8]) -> Result<UsageFields, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = de.deserialize_map(ObjectVisitor::<UsageFields>(PhantomData))?;
    de.end()?;
    Ok(fields)
}

/// An object whose known keys are read into fields; others are skipped.
trait Object: Default {
    const KEYS: &'static [&'static str];
    /// Reads the value of `KEYS[index]`.
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        map: &mut A,
    ) -> Result<(), A::Error>;
}

impl Object for UsageFields {
    const KEYS: &'static [&'static str] = &[
        "input_tokens",
        "prompt_tokens",
        "output_tokens",
        "completion_tokens",
        "input_token_details",
        "input_tokens_details",
        "prompt_tokens_details",
        "output_token_details",
        "output_tokens_details",
        "completion_tokens_details",
    ];
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let details = match index {
            0 => return map.next_value().map(|v| self.input_tokens = v),
            1 => return map.next_value().map(|v| self.prompt_tokens = v),
            2 => return map.next_value().map(|v| self.output_tokens = v),
            3 => return map.next_value().map(|v| self.completion_tokens = v),
            4 => &mut self.input_token_details,
            5 => &mut self.input_tokens_details,
            6 => &mut self.prompt_tokens_details,
            7 => &mut self.output_token_details,
            8 => &mut self.output_tokens_details,
            _ => &mut self.completion_tokens_details,
        };
        *details = map.next_value()?;
        Ok(())
    }
}

impl Object for Details {
    const KEYS: &'static [&'static str] = &[
        "cached_tokens",
        "audio_tokens",
        "image_tokens",
        "reasoning_tokens",
        "cached_tokens_details",
    ];
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let count = match index {
            0 => &mut self.cached_tokens,
            1 => &mut self.audio_tokens,
            2 => &mut self.image_tokens,
            3 => &mut self.reasoning_tokens,
            _ => return map.next_value().map(|v| self.cached_tokens_details = v),
        };
        *count = map.next_value()?;
        Ok(())
    }
}

impl Object for CachedDetails {
    const KEYS: &'static [&'static str] = &["audio_tokens", "image_tokens"];
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let count = if index == 0 {
            &mut self.audio_tokens
        } else {
            &mut self.image_tokens
        };
        *count = map.next_value()?;
        Ok(())
    }
}

/// Which of `keys` a key is (None: another), read without allocating.
struct KeyIndex(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyIndex {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIndex {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|k| *k == key))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

/// Reads every entry of a map into `T`.
fn read_object<'de, T: Object, A: MapAccess<'de>>(mut map: A) -> Result<T, A::Error> {
    let mut object = T::default();
    while let Some(key) = map.next_key_seed(KeyIndex(T::KEYS))? {
        match key {
            Some(index) => object.read_value(index, &mut map)?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(object)
}

impl<'de, T: Object> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a usage object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        read_object(map)
    }
}

/// What a field can hold: a count, or an object of known keys.
trait FieldValue: Sized {
    fn from_u64(value: u64) -> Option<Self>;
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error>;
}

impl FieldValue for u64 {
    fn from_u64(value: u64) -> Option<u64> {
        Some(value)
    }
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<u64>, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }
}

impl<T: Object> FieldValue for T {
    fn from_u64(_: u64) -> Option<T> {
        None
    }
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<T>, A::Error> {
        read_object(map).map(Some)
    }
}

struct FieldVisitor<T>(PhantomData<T>);

fn wrong<T, E>() -> Result<Field<T>, E> {
    Ok(Field::Wrong)
}

impl<'de, T: FieldValue> Visitor<'de> for FieldVisitor<T> {
    type Value = Field<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Field<T>, E> {
        Ok(Field::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Field<T>, E> {
        Ok(Field::Absent)
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Field<T>, E> {
        Ok(T::from_u64(value).map_or(Field::Wrong, Field::Value))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Field<T>, E> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) => wrong(),
        }
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field<T>, E> {
        wrong()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field<T>, E> {
        wrong()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Field<T>, E> {
        wrong()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<T>, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Field::Wrong)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<T>, A::Error> {
        Ok(T::from_map(map)?.map_or(Field::Wrong, Field::Value))
    }
}

impl<'de, T: FieldValue> de::Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field<T>, D::Error> {
        d.deserialize_any(FieldVisitor(PhantomData))
    }
}
