//! A strict JSON parser: like `serde_json::from_slice::<Value>`, but duplicate object keys are
//! an error instead of "last one wins".
//!
//! Why: the gateway authorizes the bytes it forwards. If the gateway read `{"name":"get",
//! "name":"delete"}` one way and the upstream another, authorization would be bypassed (a parser
//! differential). Refusing ambiguous input removes the question.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why strict parsing failed.
#[derive(Debug, thiserror::Error)]
#[error("invalid JSON: {message}")]
pub struct StrictJsonError {
    message: String,
    duplicate_key: bool,
}

impl StrictJsonError {
    /// True when the input was valid JSON apart from a repeated object key.
    pub fn is_duplicate_key(&self) -> bool {
        self.duplicate_key
    }
}

const DUPLICATE_MARKER: &str = "duplicate object key";

/// Parses `bytes` as one JSON value, refusing invalid UTF-8, trailing data and duplicate keys.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize_value(&mut de).map_err(to_error)?;
    de.end().map_err(to_error)?;
    Ok(value)
}

fn to_error(e: serde_json::Error) -> StrictJsonError {
    let message = e.to_string();
    StrictJsonError {
        duplicate_key: message.contains(DUPLICATE_MARKER),
        message,
    }
}

struct StrictValue;

impl StrictValue {
    fn deserialize_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

impl<'de> de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize_value(d)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
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
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
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
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "{DUPLICATE_MARKER} `{key}`"
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_serde_json_accepts() {
        let v = parse_strict(br#"{"a":[1,2.5,"x",null,true,{"b":{}}]}"#).expect("valid");
        assert_eq!(v["a"][1], serde_json::json!(2.5));
        assert_eq!(v["a"][5]["b"], serde_json::json!({}));
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        for input in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"p":{"name":"x","name":"y"}}"#,
            br#"[{"k":1},{"k":1,"k":1}]"#,
        ] {
            let err = parse_strict(input).expect_err("duplicate");
            assert!(err.is_duplicate_key(), "{err}");
        }
    }

    #[test]
    fn refuses_escaped_spelling_of_the_same_key() {
        // "\u006eame" is "name": a naive byte comparison would miss it.
        let err = parse_strict(br#"{"name":"a","\u006eame":"b"}"#).expect_err("duplicate");
        assert!(err.is_duplicate_key());
    }

    #[test]
    fn refuses_invalid_utf8_and_trailing_data() {
        assert!(
            !parse_strict(b"{\"a\":\"\xff\"}")
                .expect_err("utf8")
                .is_duplicate_key()
        );
        assert!(parse_strict(b"{} {}").is_err());
        assert!(parse_strict(b"").is_err());
        assert!(
            parse_strict(br#"{"a":"\ud800"}"#).is_err(),
            "lone surrogate"
        );
    }
}
