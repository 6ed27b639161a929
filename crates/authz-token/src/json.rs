//! Token headers and claims as strict, borrowing JSON trees: the workspace's one strict parser,
//! `authz_types::parse_borrowed`, kept to objects.

pub(crate) use authz_types::{Json, JsonObject as Object};

/// Parses `bytes` as one JSON object, strictly; `None` for anything else (invalid JSON, trailing
/// data, a repeated key at any depth, or a value that is not an object).
pub(crate) fn parse_object(bytes: &[u8]) -> Option<Object<'_>> {
    match authz_types::parse_borrowed(bytes) {
        Ok(Json::Object(o)) => Some(o),
        _ => None,
    }
}
