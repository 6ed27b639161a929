//! The claim rules, each a pure function of the claims (or a header value or a name): `kid` and
//! claim-name safety, `typ`, claim sizes, NumericDate parsing, the time checks (`exp`, `nbf`,
//! `iat` with leeway, maximum lifetime), audience comparison and matching, the `act` chain,
//! scopes and roles.

use crate::Error;
use crate::error::TokenError;
use crate::json::{Json, Object};

/// How deep a chain of nested `act` claims may go before the token is refused.
pub const MAX_ACTOR_DEPTH: usize = 8;

/// Longest accepted `kid`. Longer ones (and ones outside `A-Z a-z 0-9 - _ . ~ + / = :`, or
/// containing `..`) are refused as unknown without a lookup or a re-fetch.
pub const MAX_KID_LEN: usize = 256;

/// How deeply claim values may nest (objects in arrays in objects …) before the token is refused.
pub(crate) const MAX_CLAIM_DEPTH: usize = 16;

/// Claim names a roles or tenant claim may not reuse, because they already mean something else.
pub(crate) const RESERVED_CLAIMS: [&str; 12] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "scp",
    "client_id",
    "azp",
    "act",
];

/// Checks a configurable claim name: non-empty and not one the verifier already interprets.
pub(crate) fn check_claim_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || RESERVED_CLAIMS.contains(&name) {
        return Err(Error::ReservedClaimName {
            claim: name.to_owned(),
        });
    }
    Ok(())
}

/// Whether a `kid` is one we are willing to look up: short, from a conservative character set,
/// and without `..`, so path or SQL fragments never reach a map, a log line or a re-fetch.
pub(crate) fn kid_is_safe(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && !kid.contains("..")
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=:".contains(&b))
}

/// Whether a `typ` header is the RFC 9068 access-token type (media types are case-insensitive,
/// and the `application/` prefix may be left out).
pub(crate) fn typ_is_at_jwt(typ: Option<&Json<'_>>) -> bool {
    let Some(typ) = typ.and_then(Json::as_str) else {
        return false;
    };
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case("at+jwt")
}

/// Refuses oversized claims: long strings (values and member names), long arrays, objects with
/// many members, and deep nesting. Real tokens are far inside these limits; the limits keep a
/// misbehaving issuer from pushing huge role lists into every decision and audit record.
pub(crate) fn check_claim_sizes(
    claims: &Object<'_>,
    max_bytes: usize,
    max_items: usize,
) -> Result<(), TokenError> {
    fn walk(
        v: &Json<'_>,
        depth: usize,
        max_bytes: usize,
        max_items: usize,
    ) -> Result<(), TokenError> {
        match v {
            Json::Str(s) if s.len() > max_bytes => {
                Err(TokenError::InvalidClaims("a claim string is too long"))
            }
            Json::Array(items) => {
                if items.len() > max_items {
                    return Err(TokenError::InvalidClaims(
                        "a claim array has too many items",
                    ));
                }
                if depth >= MAX_CLAIM_DEPTH {
                    return Err(TokenError::InvalidClaims("claims are nested too deeply"));
                }
                items
                    .iter()
                    .try_for_each(|i| walk(i, depth + 1, max_bytes, max_items))
            }
            Json::Object(map) => {
                if depth >= MAX_CLAIM_DEPTH {
                    return Err(TokenError::InvalidClaims("claims are nested too deeply"));
                }
                walk_object(map, depth + 1, max_bytes, max_items)
            }
            _ => Ok(()),
        }
    }
    fn walk_object(
        map: &Object<'_>,
        depth: usize,
        max_bytes: usize,
        max_items: usize,
    ) -> Result<(), TokenError> {
        if map.len() > max_items {
            return Err(TokenError::InvalidClaims(
                "a claim object has too many members",
            ));
        }
        for (name, value) in map.iter() {
            if name.len() > max_bytes {
                return Err(TokenError::InvalidClaims("a claim name is too long"));
            }
            walk(value, depth, max_bytes, max_items)?;
        }
        Ok(())
    }
    walk_object(claims, 0, max_bytes, max_items)
}

/// An optional claim that, when present, must be a non-empty string.
pub(crate) fn non_empty_string(
    claims: &Object<'_>,
    name: &str,
    problem: &'static str,
) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Json::Str(s)) if !s.is_empty() => Ok(Some(s.to_string())),
        Some(_) => Err(TokenError::InvalidClaims(problem)),
    }
}

/// An optional NumericDate claim as whole Unix seconds (fractions are truncated). Negative
/// values are refused: no real token predates 1970, and a negative `exp` is a parser probe.
pub(crate) fn numeric_date(claims: &Object<'_>, name: &str) -> Result<Option<i64>, TokenError> {
    const NEGATIVE: TokenError = TokenError::InvalidClaims("a time claim is negative");
    match claims.get(name) {
        None => Ok(None),
        Some(Json::Number(n)) => {
            if let Some(v) = n.as_i64() {
                return if v < 0 { Err(NEGATIVE) } else { Ok(Some(v)) };
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f < 0.0 => Err(NEGATIVE),
                // A float beyond i64 saturates, which only makes the time checks stricter.
                Some(f) if f.is_finite() => Ok(Some(f.trunc() as i64)),
                _ => Err(TokenError::InvalidClaims("a time claim is not a number")),
            }
        }
        Some(_) => Err(TokenError::InvalidClaims("a time claim is not a number")),
    }
}

/// A token's time claims once they pass the time checks, and the window in which they would
/// pass again (the verified-token cache answers only inside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    /// `exp`.
    pub(crate) expires_at: i64,
    /// `iat`, if present.
    pub(crate) issued_at: Option<i64>,
    /// The first second at which every time check passes.
    pub(crate) valid_from: i64,
    /// The first second at which the token has expired (`exp` plus the leeway).
    pub(crate) valid_until: i64,
}

/// The time checks at `now`: `exp` is required and not past, `nbf` and `iat` are not in the
/// future (each with `leeway`), and the lifetime (`exp - iat`, or `exp - now` without `iat`) is
/// at most `max_lifetime`.
pub(crate) fn check_times(
    claims: &Object<'_>,
    now: i64,
    leeway: i64,
    max_lifetime: i64,
) -> Result<Times, TokenError> {
    // We require `exp`, since every token must be short-lived.
    let expires_at =
        numeric_date(claims, "exp")?.ok_or(TokenError::InvalidClaims("exp is missing"))?;
    let not_before = numeric_date(claims, "nbf")?;
    let issued_at = numeric_date(claims, "iat")?;
    if now >= expires_at.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = not_before
        && nbf > now.saturating_add(leeway)
    {
        return Err(TokenError::NotYetValid);
    }
    if let Some(iat) = issued_at
        && iat > now.saturating_add(leeway)
    {
        return Err(TokenError::InvalidClaims("iat is in the future"));
    }
    let lifetime = expires_at.saturating_sub(issued_at.unwrap_or(now));
    if lifetime > max_lifetime {
        return Err(TokenError::LifetimeTooLong);
    }

    // The window in which every check above passes again; the cache answers only inside
    // it. Without `iat`, the lifetime check passes only from `exp - max_lifetime` on.
    let mut valid_from = i64::MIN;
    for bound in [
        not_before.map(|nbf| nbf.saturating_sub(leeway)),
        issued_at.map(|iat| iat.saturating_sub(leeway)),
        issued_at
            .is_none()
            .then(|| expires_at.saturating_sub(max_lifetime)),
    ]
    .into_iter()
    .flatten()
    {
        valid_from = valid_from.max(bound);
    }

    Ok(Times {
        expires_at,
        issued_at,
        valid_from,
        valid_until: expires_at.saturating_add(leeway),
    })
}

/// An audience split for comparison: one trailing slash removed, then `scheme://authority` and
/// the rest for URIs; values that are not `scheme://…` URIs are one opaque string.
fn split_audience(aud: &str) -> (Option<(&str, &str)>, &str) {
    let aud = aud.strip_suffix('/').unwrap_or(aud);
    match aud.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            (Some((scheme, authority)), tail)
        }
        None => (None, aud),
    }
}

/// Whether two audiences name the same resource: scheme and host compared case-insensitively,
/// one trailing slash ignored, the path compared exactly. Allocation-free, since it runs for
/// every audience of every uncached token.
pub(crate) fn audience_eq(a: &str, b: &str) -> bool {
    match (split_audience(a), split_audience(b)) {
        ((Some((s1, h1)), t1), (Some((s2, h2)), t2)) => {
            s1.eq_ignore_ascii_case(s2) && h1.eq_ignore_ascii_case(h2) && t1 == t2
        }
        ((None, x), (None, y)) => x == y,
        _ => false,
    }
}

/// Whether an audience is empty once its trailing slash is removed (never a real resource).
pub(crate) fn audience_is_empty(aud: &str) -> bool {
    aud.strip_suffix('/').unwrap_or(aud).is_empty()
}

pub(crate) fn check_audience(aud: Option<&Json<'_>>, expected: &str) -> Result<(), TokenError> {
    // An empty expected audience would match a token with an empty `aud`; never accept that.
    if audience_is_empty(expected) {
        return Err(TokenError::WrongAudience);
    }
    let matches = |v: &Json<'_>| match v {
        Json::Str(s) => Ok(audience_eq(s, expected)),
        _ => Err(TokenError::InvalidClaims(
            "aud is not a string or array of strings",
        )),
    };
    let found = match aud {
        None => false,
        Some(Json::Array(values)) => {
            let mut found = false;
            for v in values {
                // Check every element's type, so a bad entry is refused even after a match.
                found |= matches(v)?;
            }
            found
        }
        Some(v) => matches(v)?,
    };
    if found {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

/// The delegation chain of nested `act` claims (RFC 8693), outermost (current actor) first.
pub(crate) fn actors(claims: &Object<'_>) -> Result<Vec<String>, TokenError> {
    let mut out = Vec::new();
    let mut current = claims.get("act");
    while let Some(act) = current {
        if out.len() == MAX_ACTOR_DEPTH {
            return Err(TokenError::InvalidClaims("act is nested too deeply"));
        }
        let Json::Object(act) = act else {
            return Err(TokenError::InvalidClaims("act is not an object"));
        };
        let sub = non_empty_string(act, "sub", "act.sub is not a non-empty string")?
            .ok_or(TokenError::InvalidClaims("act.sub is missing"))?;
        out.push(sub);
        current = act.get("act");
    }
    Ok(out)
}

/// Scopes from `scope` (a space-delimited string, RFC 9068) and `scp` (an array of strings, or a
/// space-delimited string as some providers emit it); both are merged if both are present.
pub(crate) fn scopes(claims: &Object<'_>) -> Result<Vec<String>, TokenError> {
    let split = |s: &str| -> Vec<String> {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut out = Vec::new();
    match claims.get("scope") {
        None => {}
        Some(Json::Str(s)) => out.extend(split(s)),
        Some(_) => return Err(TokenError::InvalidClaims("scope is not a string")),
    }
    match claims.get("scp") {
        None => {}
        Some(Json::Str(s)) => out.extend(split(s)),
        Some(Json::Array(values)) => {
            for v in values {
                match v {
                    Json::Str(s) if !s.is_empty() && !s.contains(' ') => out.push(s.to_string()),
                    _ => {
                        return Err(TokenError::InvalidClaims(
                            "scp is not an array of scope strings",
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(TokenError::InvalidClaims("scp is not an array of strings")),
    }
    Ok(out)
}

/// Roles from the issuer's roles claim: an array of non-empty strings or one string.
pub(crate) fn roles(claims: &Object<'_>, claim: &str) -> Result<Vec<String>, TokenError> {
    const PROBLEM: &str = "roles claim is not a string or array of non-empty strings";
    match claims.get(claim) {
        None => Ok(Vec::new()),
        Some(Json::Str(s)) if !s.is_empty() => Ok(vec![s.to_string()]),
        Some(Json::Array(values)) => values
            .iter()
            .map(|v| match v {
                Json::Str(s) if !s.is_empty() => Ok(s.to_string()),
                _ => Err(TokenError::InvalidClaims(PROBLEM)),
            })
            .collect(),
        Some(_) => Err(TokenError::InvalidClaims(PROBLEM)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;
    use authz_types::ReasonCode;
    use serde_json::{Value, json};

    /// Runs `f` on the strict borrowed parse of `v` (which must be an object).
    fn with_obj<R>(v: Value, f: impl FnOnce(&Object<'_>) -> R) -> R {
        let text = v.to_string();
        let obj = json::parse_object(text.as_bytes()).expect("object");
        f(&obj)
    }

    /// Runs `check_audience` on the `aud` value `v`.
    fn check_aud(v: &Value, expected: &str) -> Result<(), TokenError> {
        with_obj(json!({ "aud": v }), |o| {
            check_audience(o.get("aud"), expected)
        })
    }

    #[test]
    fn time_checks_and_the_window_they_pass_in() {
        let times = |v: Value, now: i64| with_obj(v, |o| check_times(o, now, 30, 200));
        let full = json!({"exp": 1000, "iat": 900, "nbf": 950});
        let window = Times {
            expires_at: 1000,
            issued_at: Some(900),
            valid_from: 920,
            valid_until: 1030,
        };
        assert_eq!(times(full.clone(), 960), Ok(window));
        assert_eq!(times(full.clone(), 1029), Ok(window));
        assert_eq!(times(full.clone(), 1030), Err(TokenError::Expired));
        assert_eq!(times(full, 919), Err(TokenError::NotYetValid));
        // Without `iat` the lifetime runs from now, so the window opens at `exp - max_lifetime`.
        let no_iat = json!({"exp": 1000});
        assert_eq!(times(no_iat.clone(), 900).map(|t| t.valid_from), Ok(800));
        assert_eq!(times(no_iat, 799), Err(TokenError::LifetimeTooLong));
        assert_eq!(
            times(json!({"exp": 1000, "iat": 990}), 950),
            Err(TokenError::InvalidClaims("iat is in the future"))
        );
        assert_eq!(
            times(json!({"iat": 900}), 950),
            Err(TokenError::InvalidClaims("exp is missing"))
        );
    }

    #[test]
    fn audience_comparison() {
        for (a, b) in [
            (
                "HTTPS://Gw.Example:8443/mcp/Tickets/",
                "https://gw.example:8443/mcp/Tickets",
            ),
            ("https://h/", "https://h"),
            ("urn:Thing/", "urn:Thing"),
            ("https://h/A//", "https://h/A//"),
        ] {
            assert!(audience_eq(a, b), "{a} {b}");
            assert!(audience_eq(b, a), "{b} {a}");
        }
        for (a, b) in [
            ("https://h/A", "https://h/a"),
            // Only one trailing slash is ignored on each side.
            ("https://h/A//", "https://h/A"),
            ("https://h/A//", "https://h/A/"),
            ("urn:thing", "urn:Thing"),
            ("https://h", "http://h"),
            ("https://h", "h"),
        ] {
            assert!(!audience_eq(a, b), "{a} {b}");
        }
        assert!(audience_is_empty("/") && audience_is_empty("") && !audience_is_empty("x"));
    }

    #[test]
    fn audience_matching() {
        let want = "https://gw.example/mcp/tickets";
        assert!(check_aud(&json!("HTTPS://GW.example/mcp/tickets/"), want).is_ok());
        assert!(check_aud(&json!(["other", "https://gw.example/mcp/tickets"]), want).is_ok());
        for (aud, code) in [
            (
                json!("https://gw.example/mcp/other"),
                ReasonCode::TokenWrongAudience,
            ),
            (
                json!("https://gw.example/mcp/Tickets"),
                ReasonCode::TokenWrongAudience,
            ),
            (
                json!("https://gw.example/mcp"),
                ReasonCode::TokenWrongAudience,
            ),
            (json!([]), ReasonCode::TokenWrongAudience),
            (json!("*"), ReasonCode::TokenWrongAudience),
            (json!(7), ReasonCode::TokenInvalidClaims),
            (json!([want, 7]), ReasonCode::TokenInvalidClaims),
        ] {
            let err = check_aud(&aud, want).expect_err("refused");
            assert_eq!(err.reason(), code, "{aud}");
        }
        assert_eq!(check_audience(None, want), Err(TokenError::WrongAudience));
        assert_eq!(check_aud(&json!(""), ""), Err(TokenError::WrongAudience));
        assert_eq!(check_aud(&json!("/"), "/"), Err(TokenError::WrongAudience));
    }

    #[test]
    fn actors_walk_outermost_first_and_are_bounded() {
        let c = json!({"act": {"sub": "agent", "act": {"sub": "orchestrator"}}});
        assert_eq!(
            with_obj(c, actors),
            Ok(vec!["agent".to_owned(), "orchestrator".to_owned()])
        );
        let mut deep = json!({"sub": "a8"});
        for i in (0..8).rev() {
            deep = json!({"sub": format!("a{i}"), "act": deep});
        }
        assert_eq!(
            with_obj(json!({ "act": deep }), actors),
            Err(TokenError::InvalidClaims("act is nested too deeply"))
        );
        for bad in [
            json!({"act": "agent"}),
            json!({"act": {}}),
            json!({"act": {"sub": 1}}),
        ] {
            assert!(with_obj(bad, actors).is_err());
        }
    }

    #[test]
    fn scopes_and_roles_shapes() {
        let c = json!({"scope": "a  b", "scp": ["c"], "roles": "admin"});
        assert_eq!(
            with_obj(c.clone(), scopes),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(with_obj(c, |o| roles(o, "roles")), Ok(vec!["admin".into()]));
        for bad in [
            json!({"scope": ["a"]}),
            json!({"scp": [1]}),
            json!({"scp": 1}),
            json!({"scp": ["a b"]}),
        ] {
            assert!(with_obj(bad, scopes).is_err());
        }
        for bad in [
            json!({"roles": 1}),
            json!({"roles": [""]}),
            json!({"roles": [true]}),
        ] {
            assert!(with_obj(bad, |o| roles(o, "roles")).is_err());
        }
    }

    #[test]
    fn numeric_dates_accept_non_negative_integers_and_finite_floats() {
        let c = json!({"a": 10, "b": 10.9, "c": "10", "n": -1, "f": -0.5});
        with_obj(c, |c| {
            assert_eq!(numeric_date(c, "a"), Ok(Some(10)));
            assert_eq!(numeric_date(c, "b"), Ok(Some(10)));
            assert!(numeric_date(c, "c").is_err());
            assert!(numeric_date(c, "n").is_err());
            assert!(numeric_date(c, "f").is_err());
            assert_eq!(numeric_date(c, "d"), Ok(None));
        });
    }

    #[test]
    fn kids_typ_and_claim_sizes() {
        for ok in ["k1", "a-b_c.d~e+f/g=h:i", &"k".repeat(MAX_KID_LEN)] {
            assert!(kid_is_safe(ok), "{ok}");
        }
        for bad in [
            "",
            "../../etc/passwd",
            "' OR 1=1 --",
            "k 1",
            "k\u{0}",
            "ké",
            &"k".repeat(MAX_KID_LEN + 1),
        ] {
            assert!(!kid_is_safe(bad), "{bad:.20}");
        }
        let typ = |v: Value| with_obj(json!({ "typ": v }), |o| typ_is_at_jwt(o.get("typ")));
        assert!(typ(json!("at+JWT")) && typ(json!("APPLICATION/at+jwt")));
        assert!(!typ(json!("jwt")) && !typ(json!(1)) && !typ(json!("application/")));
        let sizes = |v: Value| with_obj(v, |o| check_claim_sizes(o, 8, 3));
        assert!(sizes(json!({"a": "12345678", "b": [1, 2, 3], "c": {"x": 1}})).is_ok());
        for bad in [
            json!({"a": "123456789"}),
            json!({"a": [1, 2, 3, 4]}),
            json!({"a": {"w": 1, "x": 1, "y": 1, "z": 1}}),
            json!({"a": 1, "b": 2, "c": 3, "d": 4}),
            json!({"abcdefghi": 1}),
            json!({"a": [["123456789"]]}),
        ] {
            assert!(sizes(bad.clone()).is_err(), "{bad}");
        }
        // A claim value may nest MAX_CLAIM_DEPTH objects deep, not one more.
        let nested = |levels: usize| {
            let mut v = json!(1);
            for _ in 0..levels {
                v = json!({ "d": v });
            }
            with_obj(v, |o| check_claim_sizes(o, 8, 3))
        };
        assert!(nested(MAX_CLAIM_DEPTH + 1).is_ok());
        assert!(nested(MAX_CLAIM_DEPTH + 2).is_err());
    }
}
