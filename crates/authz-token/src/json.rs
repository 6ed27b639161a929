//! A strict, borrowing JSON tree for token headers and claims.
//!
//! Same rules as `authz_types::parse_strict` (valid UTF-8, one value, no trailing data, and a
//! repeated object key is an error, never "last one wins"), but strings borrow from the decoded
//! segment where they need no unescaping and objects are small vectors instead of hash maps. A
//! token's claims are read once and mostly thrown away, so not allocating a map and a `String`
//! per member is most of the difference between our verification cost and the raw signature
//! check.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// One JSON value borrowing from its input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object: members in document order, keys unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    /// The member called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl Json<'_> {
    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Parses `bytes` as one JSON object, strictly; `None` for anything else (invalid JSON, trailing
/// data, a repeated key at any depth, or a value that is not an object).
pub(crate) fn parse_object(bytes: &[u8]) -> Option<Object<'_>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = de.deserialize_any(StrictVisitor).ok()?;
    de.end().ok()?;
    match value {
        Json::Object(o) => Some(o),
        _ => None,
    }
}

struct StrictVisitor;

impl<'de> de::DeserializeSeed<'de> for StrictVisitor {
    type Value = Json<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

/// A key that borrows when it can (the visitor below only sees map keys).
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

impl<'de> Visitor<'de> for StrictVisitor {
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
        while let Some(item) = seq.next_element_seed(StrictVisitor)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let value = map.next_value_seed(StrictVisitor)?;
            members.push((key, value));
        }
        if has_duplicates(&members) {
            return Err(de::Error::custom("duplicate object key"));
        }
        Ok(Json::Object(Object(members)))
    }
}

/// Whether two members share a key: pairwise for the usual handful of members, sorted beyond
/// that so a hostile object with thousands of keys stays O(n log n).
fn has_duplicates(members: &[(Cow<'_, str>, Json<'_>)]) -> bool {
    if members.len() <= 16 {
        return members
            .iter()
            .enumerate()
            .any(|(i, (k, _))| members[..i].iter().any(|(other, _)| other == k));
    }
    let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_and_borrow() {
        let text = br#"{"a":"x","b":[1,-2,3.5,true,null],"c":{"d":"e\"f"}}"#;
        let o = parse_object(text).expect("object");
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
            assert!(
                parse_object(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
            // The shared strict parser refuses the same inputs (or they are not objects).
            assert!(!matches!(
                authz_types::parse_strict(bad),
                Ok(serde_json::Value::Object(_))
            ));
        }
        // An escaped key equal to a plain one is still a duplicate.
        assert!(parse_object(br#"{"a":1,"\u0061":2}"#).is_none());
    }
}
