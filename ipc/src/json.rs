//! JSON read one way only. Every JSON input ember takes (control requests, MQTT payloads,
//! files it reads back) goes through here, so that:
//!
//! - a key given twice is an error, at any depth. serde_json's own `Value` keeps the last
//!   of two equal keys, and a derived struct takes the first it sees in some shapes and
//!   the last in others: `{"cmd":"status","cmd":"reboot"}` must not read as a reboot to
//!   one part of ember and as a status to another;
//! - a value of the wrong type names its field: `"names": expected an array, got a
//!   number` rather than "missing names" or a bare "invalid type".

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses one JSON document, refusing duplicate keys and anything after the document.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Unique
        .deserialize(&mut de)
        .map_err(|e| describe_syntax(&e))?;
    de.end().map_err(|e| describe_syntax(&e))?;
    Ok(value)
}

/// Parses and types one JSON document: [`parse`]'s checks, then the type read from the
/// same text, a mismatch naming the field it is in (`names[1]`, `error.kind`).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    check(bytes)?;
    typed(bytes)
}

/// [`parse`]'s checks without its value: nothing is built but each object's keys (a
/// status of 3,000 services is a megabyte, and its tree was most of `ember ctl status`).
fn check(bytes: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Checked
        .deserialize(&mut de)
        .map_err(|e| describe_syntax(&e))?;
    de.end().map_err(|e| describe_syntax(&e))
}

/// Types a parsed value; a mismatch names the field it is in.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    // Written out and read back, so that the error has a place in a text: the path is
    // read from that (see `path_at`). Values typed here are requests, a few hundred
    // bytes at most.
    let text = serde_json::to_vec(&value).map_err(|e| plain_words(&e.to_string()))?;
    typed(&text)
}

/// The type read from text already checked by [`parse`]. serde_json says where in the
/// text a mismatch was found; [`path_at`] turns that place into the field's path. (This
/// replaced serde_path_to_error, whose wrapper around every visitor cost ember 100 KB.)
fn typed<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        // serde_json's Display appends " at line L column C"; the path says it better.
        let why = match message.rfind(" at line ") {
            Some(at) if e.line() > 0 => &message[..at],
            _ => &message,
        };
        let why = plain_words(why);
        match offset_of(bytes, e.line(), e.column()).map(|end| path_at(bytes, end)) {
            Some(path) if !path.is_empty() => format!("\"{path}\": {why}"),
            _ => why,
        }
    })
}

/// The byte offset of 1-based `line` and `column` (serde_json's column counts bytes, and
/// points at the last byte it read), or None when serde_json gave no place.
fn offset_of(bytes: &[u8], line: usize, column: usize) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut start = 0;
    for _ in 1..line {
        start += bytes[start..].iter().position(|&b| b == b'\n')? + 1;
    }
    Some((start + column).min(bytes.len()))
}

/// The path (`names[1]`, `inner.kind`) of the value that the first `end` bytes of a valid
/// JSON text leave open or have just closed: the field a mismatch found there is in.
/// Keys are given as written, escapes and all (`a\"b`), which is how they read best in
/// an error.
fn path_at(bytes: &[u8], end: usize) -> String {
    enum Frame<'a> {
        /// `key`: the last key read; `in_value`: its value has begun (not a new key yet).
        Object { key: &'a [u8], in_value: bool },
        /// Element `index` is being read: one that has begun, or (an error is found
        /// before a value it peeked at, and with `[` read the array is being read as
        /// one) the next.
        Array { index: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => stack.push(Frame::Object {
                key: b"",
                in_value: false,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { in_value, .. }) => *in_value = false,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                i = start;
                while i < bytes.len() && bytes[i] != b'"' {
                    // An escape takes the next byte with it (\" does not end the string).
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Object { key, in_value }) = stack.last_mut() {
                    if !*in_value {
                        // A key: what follows is its value (or, for an unknown field, the
                        // error is about the key itself, which names it too).
                        *key = &bytes[start..i.min(bytes.len())];
                        *in_value = true;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object {
                key,
                in_value: true,
            } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&String::from_utf8_lossy(key));
            }
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
            // Just opened (the error is about the object itself), or between two members.
            _ => {}
        }
    }
    path
}

fn describe_syntax(e: &serde_json::Error) -> String {
    plain_words(&e.to_string())
}

/// serde's words for JSON's: a "sequence" is an array, a "map" an object.
fn plain_words(message: &str) -> String {
    message
        .replace("a sequence", "an array")
        .replace("a map", "an object")
        .replace("unit value", "null")
}

/// A `serde_json::Value` that refuses a key given twice in one object.
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so a number always converts.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Unique)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "key \"{}\" is given twice; give each key once",
                    key.escape_default()
                )));
            }
            let value = map.next_value_seed(Unique)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// [`Unique`]'s refusal of a key given twice, keeping nothing of the values.
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Checked)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Keys as written when they hold no escape (most), decoded when they do; a set,
        // so that an object of a million keys costs no more than its size.
        let mut keys = std::collections::BTreeSet::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "key \"{}\" is given twice; give each key once",
                    key.escape_default()
                )));
            }
            map.next_value_seed(Checked)?;
            keys.insert(key);
        }
        Ok(())
    }
}

/// An object's key, borrowed from the text when it holds no escape (serde's own `Cow`
/// always copies).
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The same refusal for a type's own `Deserialize`: a value read through this seed is
/// checked whatever deserializer reads it.
pub fn unique_value<'de, D: de::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Unique.deserialize(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn a_key_given_twice_is_refused_when_typed_too() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Typed {
            cmd: String,
            #[serde(default)]
            a: Option<serde_json::Value>,
        }
        for text in [
            r#"{"cmd":"status","cmd":"reboot"}"#,
            r#"{"cmd":"x","a":{"b":1,"b":2}}"#,
            r#"{"cmd":"x","a":[{"x":1},{"y":1,"y":1}]}"#,
            r#"{"cmd":"a","\u0063md":"b"}"#,
            r#"{"cmd":"a","a":{"\u0062":1,"b":2}}"#,
        ] {
            let e = from_slice::<Typed>(text.as_bytes()).unwrap_err();
            assert!(e.contains("given twice"), "{text}: {e}");
        }
        let ok = from_slice::<Typed>(br#"{"cmd":"s","a":{"b":[1,{"b":2}],"c":null}}"#);
        assert_eq!(ok.unwrap().cmd, "s");
        assert!(from_slice::<Typed>(br#"{"cmd":"s"} x"#).is_err());
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for text in [
            r#"{"cmd":"status","cmd":"reboot"}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"[{"x":1},{"y":1,"y":1}]"#,
            // The same key however it is escaped.
            r#"{"cmd":"a","\u0063md":"b"}"#,
        ] {
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.contains("given twice"), "{text}: {e}");
        }
        assert!(parse(br#"{"a":{"b":1},"b":{"a":1}}"#).is_ok());
    }

    #[test]
    fn trailing_text_and_bad_syntax_are_refused() {
        assert!(parse(br#"{"a":1} {"a":2}"#).is_err());
        assert!(parse(br#"{"a":1"#).is_err());
        assert_eq!(
            parse(b" [1, 2.5, null, true] ").unwrap().to_string(),
            "[1,2.5,null,true]"
        );
    }

    #[test]
    fn a_wrong_type_names_its_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            kind: String,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            names: Vec<String>,
            inner: Option<Inner>,
        }
        let e = from_slice::<Outer>(br#"{"names":5}"#).unwrap_err();
        assert_eq!(e, "\"names\": invalid type: integer `5`, expected an array");
        let e = from_slice::<Outer>(br#"{"names":["a",5]}"#).unwrap_err();
        assert!(
            e.starts_with("\"names[1]\": invalid type: integer `5`"),
            "{e}"
        );
        // An object or array where a value was expected is named as a whole.
        let e = from_slice::<Outer>(br#"{"names":{"a":1}}"#).unwrap_err();
        assert!(e.starts_with("\"names\": invalid type: "), "{e}");
        let e = from_slice::<Outer>(br#"{"names":[[1]]}"#).unwrap_err();
        assert!(e.starts_with("\"names[0]\": invalid type: "), "{e}");
        // A missing field is in the object that lacks it; at the top, no path.
        let e = from_slice::<Outer>(br#"{"names":[],"inner":{}}"#).unwrap_err();
        assert_eq!(e, "\"inner\": missing field `kind`");
        let e = from_slice::<Outer>(br#" {} "#).unwrap_err();
        assert_eq!(e, "missing field `names`");
        // Keys with escapes and strings with brackets and quotes do not lose the place;
        // nor do other lines.
        let e =
            from_slice::<Outer>(b"{\"x\\\"]\":\"[{,\\\"\",\n \"names\":\n [\"a\",\n \"b]\", 7]}")
                .unwrap_err();
        assert!(
            e.starts_with("\"names[2]\": invalid type: integer `7`"),
            "{e}"
        );
        // A value typed after parsing (a request's arguments) is named the same way.
        let e = from_value::<Outer>(serde_json::json!({"names": ["a", false]})).unwrap_err();
        assert!(e.starts_with("\"names[1]\": invalid type: boolean"), "{e}");
        let e = from_slice::<Outer>(br#"{"names":[],"inner":{"kind":true}}"#).unwrap_err();
        assert!(
            e.starts_with("\"inner.kind\": invalid type: boolean"),
            "{e}"
        );
    }
}
