//! Property tests: the classifier's `(method, target)` is exactly what an ordinary JSON parser
//! (`serde_json`) reads from any body it accepts, however the body is spelled (escapes,
//! whitespace), and a well-formed call is always accepted with the target it names.

use authz_types::{MessageKind, Target, classify};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Arbitrary JSON values, small and nested.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        // Eighths are exact in binary, so their text reads back as the same number.
        (-1_000_000i64..1_000_000).prop_map(|n| json!(n as f64 / 8.0)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tools/call".to_owned()),
        Just("resources/read".to_owned()),
        Just("prompts/get".to_owned()),
        Just("ping".to_owned()),
        Just("tools/list".to_owned()),
        Just("notifications/initialized".to_owned()),
        "[a-z/]{1,20}",
    ]
}

/// A name or URI: tool-name characters mostly, anything sometimes.
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.-]{1,20}", any::<String>()]
}

/// A JSON-RPC message: method, optional id, params with `name`/`uri` and arguments.
fn message() -> impl Strategy<Value = Value> {
    (
        method(),
        prop_oneof![
            Just(None),
            any::<i64>().prop_map(|n| Some(json!(n))),
            "[a-z0-9]{1,8}".prop_map(|s| Some(json!(s)))
        ],
        name(),
        name(),
        any_json(),
        any::<bool>(),
    )
        .prop_map(|(method, id, name, uri, arguments, with_params)| {
            let mut m = Map::new();
            m.insert("jsonrpc".into(), json!("2.0"));
            m.insert("method".into(), json!(method));
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            if with_params {
                m.insert(
                    "params".into(),
                    json!({"name": name, "uri": uri, "arguments": arguments}),
                );
            }
            Value::Object(m)
        })
}

/// `v` as JSON text, with each string character `\u`-escaped where `escape` says and
/// whitespace between tokens where `space` says (both cycled).
fn spell(v: &Value, escape: &[bool], space: &[bool]) -> String {
    struct Writer<'a> {
        out: String,
        escape: &'a [bool],
        space: &'a [bool],
        e: usize,
        s: usize,
    }
    impl Writer<'_> {
        fn gap(&mut self) {
            if !self.space.is_empty() {
                if self.space[self.s % self.space.len()] {
                    self.out.push_str(" \n\t");
                }
                self.s += 1;
            }
        }
        fn string(&mut self, text: &str) {
            self.out.push('"');
            for c in text.chars() {
                let forced = !self.escape.is_empty() && self.escape[self.e % self.escape.len()];
                self.e += 1;
                if forced || c == '"' || c == '\\' || c.is_control() {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                } else {
                    self.out.push(c);
                }
            }
            self.out.push('"');
        }
        fn value(&mut self, v: &Value) {
            self.gap();
            match v {
                Value::Object(m) => {
                    self.out.push('{');
                    for (i, (k, v)) in m.iter().enumerate() {
                        if i > 0 {
                            self.out.push(',');
                        }
                        self.gap();
                        self.string(k);
                        self.gap();
                        self.out.push(':');
                        self.value(v);
                    }
                    self.gap();
                    self.out.push('}');
                }
                Value::Array(a) => {
                    self.out.push('[');
                    for (i, v) in a.iter().enumerate() {
                        if i > 0 {
                            self.out.push(',');
                        }
                        self.value(v);
                    }
                    self.gap();
                    self.out.push(']');
                }
                Value::String(s) => self.string(s),
                other => self.out.push_str(&other.to_string()),
            }
            self.gap();
        }
    }
    let mut w = Writer {
        out: String::new(),
        escape,
        space,
        e: 0,
        s: 0,
    };
    w.value(v);
    w.out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn what_the_classifier_accepts_means_the_same_to_serde_json(
        msg in message(),
        escape in prop::collection::vec(any::<bool>(), 0..8),
        space in prop::collection::vec(any::<bool>(), 0..8),
    ) {
        let body = spell(&msg, &escape, &space);
        let ordinary: Value = serde_json::from_str(&body).expect("the spelling is valid JSON");
        prop_assert_eq!(&ordinary, &msg, "the spelling changed the message");
        let Ok(classified) = classify(body.as_bytes()) else {
            return Ok(());
        };
        prop_assert_eq!(&classified.value, &ordinary);
        prop_assert_ne!(classified.kind, MessageKind::Response);
        let method = ordinary["method"].as_str();
        prop_assert_eq!(Some(classified.operation.method.as_str()), method);
        let param = |k: &str| ordinary.pointer(&format!("/params/{k}")).and_then(Value::as_str);
        match &classified.operation.target {
            Target::Tool(n) => {
                prop_assert_eq!(method, Some("tools/call"));
                prop_assert_eq!(Some(n.as_str()), param("name"));
            }
            Target::Prompt(n) => {
                prop_assert_eq!(method, Some("prompts/get"));
                prop_assert_eq!(Some(n.as_str()), param("name"));
            }
            Target::Resource(u) => prop_assert_eq!(Some(u.as_str()), param("uri")),
            _ => {}
        }
    }

    #[test]
    fn a_well_formed_call_is_accepted_with_the_tool_it_names(
        tool in "[A-Za-z0-9_.-]{1,128}",
        id in any::<i64>(),
        arguments in any_json(),
        escape in prop::collection::vec(any::<bool>(), 0..8),
        space in prop::collection::vec(any::<bool>(), 0..8),
    ) {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                         "params": {"name": tool, "arguments": arguments}});
        let body = spell(&msg, &escape, &space);
        let classified = classify(body.as_bytes());
        prop_assert!(classified.is_ok(), "{:?} refused: {:?}", body, classified);
        let classified = classified.expect("checked");
        prop_assert_eq!(classified.operation.target, Target::Tool(tool));
        prop_assert_eq!(classified.id, Some(json!(id)));
    }
}
