//! What an upstream may ask the client for while it serves a call: sampling
//! (`sampling/createMessage`), elicitation (`elicitation/create`, form or URL mode) and the
//! client's roots (`roots/list`). In 2026-07-28 those requests come back inside an
//! `input_required` result (`inputRequests`); in session-based versions they are server-to-client
//! requests on the call's SSE stream. Either way they reach the person or model behind the agent,
//! so a route's `input_requests` rules say which a call may make (first rule matching the call's
//! method and target; no rule: anything), and URL elicitation may be limited to named origins.
//!
//! A forbidden request fails the call: the client gets a JSON-RPC error naming what was asked
//! (`input_request_forbidden`) instead of the request, and the audit trail one deny record per
//! forbidden request (method asked; target the URL's origin, else the call's target). It is never
//! stripped: the server would only ask again, and the call would go on without the client
//! knowing.

use std::sync::{Arc, Mutex};

use authz_types::Operation;
use serde_json::{Value, json};

use crate::config::InputRule;
use crate::error::FORBIDDEN_CODE;

/// The rule governing the input requests made while serving `op`, if any.
pub(crate) fn rule_for<'a>(rules: &'a [InputRule], op: &Operation) -> Option<&'a InputRule> {
    let method = op.method.as_str();
    let target = op.target.display();
    rules.iter().find(|r| {
        (r.method == "*" || r.method == method)
            && match &target {
                Some(t) => r.target.is_match(t),
                None => r.target.as_str() == "*",
            }
    })
}

/// One forbidden input request: what was asked, for the answer and the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asked {
    /// Its key in `inputRequests` (2026-07-28), or its JSON-RPC id on an SSE stream.
    pub(crate) key: String,
    /// The method asked for, e.g. `elicitation/create`.
    pub(crate) method: String,
    /// For URL elicitation, the origin of the URL (or the URL as sent, if it is none).
    pub(crate) url_origin: Option<String>,
}

/// Where a rewrite leaves the forbidden requests it found, for the outcome recorder.
pub(crate) type AskedSink = Arc<Mutex<Vec<Asked>>>;

/// Whether `rule` forbids asking for `method` with `params`; `Some(url origin)` inside the
/// `Err` for URL elicitation. Methods outside the three kinds are not input requests and pass.
fn forbids(rule: &InputRule, method: &str, params: Option<&Value>) -> Result<(), Option<String>> {
    match method {
        "sampling/createMessage" if !rule.sampling => Err(None),
        "roots/list" if !rule.roots => Err(None),
        "elicitation/create" => {
            let url_mode =
                params.and_then(|p| p.get("mode")).and_then(Value::as_str) == Some("url");
            if !rule.elicitation {
                return Err(url_mode.then(|| url_origin(params)));
            }
            match (&rule.url_origins, url_mode) {
                (Some(allowed), true) => {
                    let origin = url_origin(params);
                    if allowed.contains(&origin) {
                        Ok(())
                    } else {
                        Err(Some(origin))
                    }
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The ASCII origin of an elicitation's `url` (an opaque one, such as `data:`, never matches a
/// configured origin); the raw text when it is not a URL.
fn url_origin(params: Option<&Value>) -> String {
    let raw = params
        .and_then(|p| p.get("url"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match reqwest::Url::parse(raw) {
        Ok(url) if url.origin().is_tuple() => url.origin().ascii_serialization(),
        _ => raw.to_owned(),
    }
}

/// The forbidden requests of a 2026-07-28 `input_required` result (its `inputRequests` map:
/// key → `{method, params}`). Empty when the result asks for nothing forbidden. Only the three
/// kinds may be asked for this way, so under a rule an entry with another method, or none, is
/// forbidden too (a client must not be handed what the rule could not judge).
pub(crate) fn forbidden_in_result(rule: &InputRule, response: &Value) -> Vec<Asked> {
    let Some(requests) = response
        .pointer("/result/inputRequests")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    requests
        .iter()
        .filter_map(|(key, request)| {
            let method = request.get("method").and_then(Value::as_str);
            let judged = match method {
                Some(m @ ("sampling/createMessage" | "elicitation/create" | "roots/list")) => {
                    forbids(rule, m, request.get("params"))
                }
                _ => Err(None),
            };
            judged.err().map(|url_origin| Asked {
                key: key.clone(),
                method: method.unwrap_or("(none)").to_owned(),
                url_origin,
            })
        })
        .collect()
}

/// A server-to-client request on a session's SSE stream, if `rule` forbids it.
pub(crate) fn forbidden_request(rule: &InputRule, message: &Value) -> Option<Asked> {
    let method = message.get("method").and_then(Value::as_str)?;
    let id = message.get("id").filter(|id| !id.is_null())?;
    forbids(rule, method, message.get("params"))
        .err()
        .map(|url_origin| Asked {
            key: match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            method: method.to_owned(),
            url_origin,
        })
}

/// The JSON-RPC error that fails the call (request `id`) instead of its input requests.
pub(crate) fn refusal(id: &Value, asked: &[Asked], request_id: &str) -> Value {
    let asked: Vec<Value> = asked
        .iter()
        .map(|a| {
            let mut v = json!({"key": a.key, "method": a.method});
            if let Some(o) = &a.url_origin {
                v["urlOrigin"] = json!(o);
            }
            v
        })
        .collect();
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": FORBIDDEN_CODE,
            "message": "the server asked for input this call may not request",
            "data": {
                "reason": authz_types::ReasonCode::InputRequestForbidden.as_str(),
                "requestId": request_id,
                "inputRequests": asked,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scopes::Glob;

    fn rule(sampling: bool, elicitation: bool, origins: Option<&[&str]>, roots: bool) -> InputRule {
        InputRule {
            method: "*".into(),
            target: Glob::new("*").expect("glob"),
            sampling,
            elicitation,
            url_origins: origins.map(|o| o.iter().map(|s| (*s).to_owned()).collect()),
            roots,
        }
    }

    fn result(requests: Value) -> Value {
        json!({"result": {"resultType": "input_required", "inputRequests": requests}})
    }

    #[test]
    fn each_kind_of_input_request_is_judged_by_its_own_switch() {
        let sample = json!({"s": {"method": "sampling/createMessage", "params": {}}});
        let roots = json!({"r": {"method": "roots/list"}});
        let form = json!({"f": {"method": "elicitation/create", "params": {"message": "m"}}});
        let open = rule(true, true, None, true);
        for r in [&sample, &roots, &form] {
            assert!(forbidden_in_result(&open, &result(r.clone())).is_empty());
        }
        let got = forbidden_in_result(&rule(false, true, None, true), &result(sample));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].method, "sampling/createMessage");
        assert_eq!(got[0].key, "s");
        let got = forbidden_in_result(&rule(true, true, None, false), &result(roots));
        assert_eq!(got[0].method, "roots/list");
        let got = forbidden_in_result(&rule(true, false, None, true), &result(form));
        assert_eq!(got[0].method, "elicitation/create");
        assert_eq!(got[0].url_origin, None);
    }

    #[test]
    fn url_elicitation_is_limited_to_the_listed_origins() {
        let url = |u: &str| {
            result(json!({"u": {"method": "elicitation/create",
                "params": {"mode": "url", "url": u, "message": "m", "elicitationId": "e"}}}))
        };
        let only = rule(true, true, Some(&["https://login.example"]), true);
        assert!(forbidden_in_result(&only, &url("https://login.example/authorize?x=1")).is_empty());
        assert!(forbidden_in_result(&only, &url("https://LOGIN.example:443/a")).is_empty());
        for bad in [
            "https://login.example.evil/a",
            "http://login.example/a",
            "https://login.example:8443/a",
            "javascript:alert(1)",
            "not a url",
        ] {
            let got = forbidden_in_result(&only, &url(bad));
            assert_eq!(got.len(), 1, "{bad}");
        }
        assert_eq!(
            forbidden_in_result(&only, &url("https://evil.example/x"))[0]
                .url_origin
                .as_deref(),
            Some("https://evil.example")
        );
        // Under a rule, what is not one of the three kinds is not passed on unjudged.
        let odd = result(json!({"p": {"method": "ping"}, "n": {"params": {}}}));
        let got = forbidden_in_result(&rule(true, true, None, true), &odd);
        assert_eq!(got.len(), 2, "{got:?}");
        // No URL mode at all; form mode still fine.
        let none = rule(true, true, Some(&[]), true);
        assert_eq!(
            forbidden_in_result(&none, &url("https://login.example/")).len(),
            1
        );
        let form =
            result(json!({"f": {"method": "elicitation/create", "params": {"message": "m"}}}));
        assert!(forbidden_in_result(&none, &form).is_empty());
    }

    #[test]
    fn a_session_stream_request_is_judged_the_same_way_and_named_by_its_id() {
        let r = rule(false, true, None, true);
        let asked = forbidden_request(
            &r,
            &json!({"jsonrpc": "2.0", "id": 7, "method": "sampling/createMessage", "params": {}}),
        )
        .expect("forbidden");
        assert_eq!(asked.key, "7");
        // Notifications and responses are not requests.
        assert!(forbidden_request(&r, &json!({"method": "sampling/createMessage"})).is_none());
        assert!(forbidden_request(&r, &json!({"id": 1, "result": {}})).is_none());
    }

    #[test]
    fn the_refusal_names_what_was_asked() {
        let asked = [Asked {
            key: "u".into(),
            method: "elicitation/create".into(),
            url_origin: Some("https://evil.example".into()),
        }];
        let v = refusal(&json!(3), &asked, "req-1");
        assert_eq!(v["id"], 3);
        assert_eq!(v["error"]["code"], FORBIDDEN_CODE);
        assert_eq!(v["error"]["data"]["reason"], "input_request_forbidden");
        assert_eq!(v["error"]["data"]["requestId"], "req-1");
        assert_eq!(
            v["error"]["data"]["inputRequests"][0]["urlOrigin"],
            "https://evil.example"
        );
    }
}
