//! The one strict JSON parser of the workspace: like `serde_json::from_slice::<Value>`, but a
//! repeated object key (at any depth, however it is escaped) is an error instead of "last one
//! wins", and so are invalid UTF-8 and trailing data.
//!
//! Why: the gateway authorizes the bytes it forwards. If the gateway read `{"name":"get",
//! "name":"delete"}` one way and the upstream another, authorization would be bypassed (a parser
//! differential). Refusing ambiguous input removes the question.
//!
//! [`parse_borrowed`] builds a [`Json`] tree whose strings borrow from the input where they need
//! no unescaping and whose objects are small vectors: token headers and claims are read once and
//! mostly thrown away, so not allocating a map and a `String` per member matters there.
//! [`parse_strict`] gives a `serde_json::Value` for callers that keep the document; it is the
//! same parse, converted.

use std::borrow::Cow;
use std::cell::Cell;
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

/// One JSON value borrowing from its input.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(JsonObject<'a>),
}

/// A JSON object: members in document order, keys unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonObject<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> JsonObject<'a> {
    /// The member called `name`.
    pub fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Whether there is a member called `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The members in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl Json<'_> {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The same document as a `serde_json::Value` (owned).
    pub fn into_value(self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => Value::Number(n),
            Json::Str(s) => Value::String(s.into_owned()),
            Json::Array(items) => Value::Array(items.into_iter().map(Json::into_value).collect()),
            Json::Object(JsonObject(members)) => {
                let mut map = Map::with_capacity(members.len());
                for (k, v) in members {
                    map.insert(k.into_owned(), v.into_value());
                }
                Value::Object(map)
            }
        }
    }
}

/// Parses `bytes` as one JSON value, refusing invalid UTF-8, trailing data and duplicate keys.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    parse_borrowed(bytes).map(Json::into_value)
}

/// Parses `bytes` as one JSON value into a tree borrowing from `bytes`, with the same rules as
/// [`parse_strict`].
pub fn parse_borrowed(bytes: &[u8]) -> Result<Json<'_>, StrictJsonError> {
    let duplicate = Cell::new(false);
    let error = |e: serde_json::Error| StrictJsonError {
        message: e.to_string(),
        duplicate_key: duplicate.get(),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = de
        .deserialize_any(StrictVisitor {
            duplicate: &duplicate,
        })
        .map_err(error)?;
    de.end().map_err(error)?;
    Ok(value)
}

/// Builds the tree; sets `duplicate` when it refuses a repeated key, so the error says so
/// without reading serde's message.
#[derive(Clone, Copy)]
struct StrictVisitor<'f> {
    duplicate: &'f Cell<bool>,
}

impl<'de> de::DeserializeSeed<'de> for StrictVisitor<'_> {
    type Value = Json<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

/// A key that borrows when it can.
struct Key;

impl<'de> de::DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> Visitor<'de> for StrictVisitor<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let value = map.next_value_seed(self)?;
            members.push((key, value));
        }
        if let Some(key) = repeated_key(&members) {
            self.duplicate.set(true);
            return Err(de::Error::custom(format_args!(
                "duplicate object key `{key}`"
            )));
        }
        Ok(Json::Object(JsonObject(members)))
    }
}

/// A key two members share, if any: pairwise for the usual handful of members, sorted beyond
/// that so a hostile object with thousands of keys stays O(n log n).
fn repeated_key<'m>(members: &'m [(Cow<'_, str>, Json<'_>)]) -> Option<&'m str> {
    if members.len() <= 16 {
        return members.iter().enumerate().find_map(|(i, (k, _))| {
            members[..i]
                .iter()
                .any(|(other, _)| other == k)
                .then_some(k.as_ref())
        });
    }
    let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
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

    #[test]
    fn objects_parse_and_borrow() {
        let text = br#"{"a":"x","b":[1,-2,3.5,true,null],"c":{"d":"e\"f"}}"#;
        let o = object(text).expect("object");
        assert_eq!(o.len(), 3);
        assert!(matches!(o.get("a"), Some(Json::Str(Cow::Borrowed("x")))));
        assert!(matches!(o.get("b"), Some(Json::Array(items)) if items.len() == 5));
        let Some(Json::Object(c)) = o.get("c") else {
            panic!("c is an object");
        };
        assert_eq!(c.get("d").and_then(Json::as_str), Some("e\"f"));
        assert!(o.get("z").is_none() && o.contains_key("a"));
    }

    #[test]
    fn strictness_matches_parse_strict() {
        let many: String = {
            let members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
            format!("{{{},\"k7\":0}}", members.join(","))
        };
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"a":{"b":1,"b":1}}"#,
            br#"{"a":[{"b":1,"b":2}]}"#,
            br#"{"a":1} x"#,
            br#"[1]"#,
            br#""s""#,
            br#"{"a":1"#,
            b"{\"a\":\"\xff\"}",
            many.as_bytes(),
        ] {
            assert!(object(bad).is_none(), "{}", String::from_utf8_lossy(bad));
            // The shared strict parser refuses the same inputs (or they are not objects).
            assert!(!matches!(
                parse_strict(bad),
                Ok(serde_json::Value::Object(_))
            ));
        }
        // An escaped key equal to a plain one is still a duplicate.
        assert!(object(br#"{"a":1,"\u0061":2}"#).is_none());
    }

    /// The borrowed tree's object, or `None` for anything else.
    fn object(bytes: &[u8]) -> Option<JsonObject<'_>> {
        match parse_borrowed(bytes) {
            Ok(Json::Object(o)) => Some(o),
            _ => None,
        }
    }

    #[test]
    fn a_duplicate_is_named_in_the_message() {
        let err = parse_strict(br#"{"p":{"name":"x","name":"y"}}"#).expect_err("duplicate");
        assert!(err.is_duplicate_key());
        assert!(
            err.to_string().contains("duplicate object key `name`"),
            "{err}"
        );
    }
}
