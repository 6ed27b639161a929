//! Multi round-trip requests (SEP-2322) on the 2026-07-28 wire: the `test_input_required_result_*`
//! tools and prompt, which answer `resultType: "input_required"` with `inputRequests` (and a
//! `requestState`) until the client retries with the matching `inputResponses`.
//!
//! Every `requestState` is sealed with rmcp's [`RequestStateCodec`] (HMAC-SHA256 over the
//! payload, a ten-minute expiry, and the method and name that issued it as associated data), so
//! a retry whose state was tampered with, has expired, or was issued for another tool is refused
//! with `-32602`. Answers are untrusted too: an `inputResponses` entry that is not the result
//! type its request asked for is refused with `-32602`; a missing entry is asked for again.

#![expect(
    deprecated,
    reason = "sampling and roots/list are deprecated by SEP-2577, yet remain SEP-2322 input requests"
)]

use std::time::Duration;

use rmcp::{
    ErrorData,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock,
        CreateMessageRequest, CreateMessageRequestParams, ElicitRequest, ElicitRequestParams,
        ElicitResult, ElicitationAction, ElicitationSchema, GetPromptRequestParams,
        GetPromptResponse, GetPromptResult, InputRequest, InputRequests, InputRequiredResult,
        InputResponses, ListRootsRequest, PromptMessage, RequestStateCodec, Role, SamplingMessage,
        SealOptions,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The prompt that needs elicited context before it is rendered.
pub(crate) const PROMPT: &str = "test_input_required_result_prompt";

/// The multi round-trip tools: `(name, description)`.
pub(crate) const TOOLS: &[(&str, &str)] = &[
    (
        "test_input_required_result_elicitation",
        "Asks for the user's name (elicitation/create), then greets them.",
    ),
    (
        "test_input_required_result_sampling",
        "Asks the client to sample an answer (sampling/createMessage), then returns it.",
    ),
    (
        "test_input_required_result_list_roots",
        "Asks for the client's roots (roots/list), then counts them.",
    ),
    (
        "test_input_required_result_request_state",
        "Asks for a confirmation with a sealed requestState; answers state-ok when both come back.",
    ),
    (
        "test_input_required_result_multiple_inputs",
        "Asks for an elicitation, a sampling and a roots/list answer in one round.",
    ),
    (
        "test_input_required_result_multi_round",
        "Asks for a name, then a colour, carrying the name in the sealed requestState.",
    ),
    (
        "test_input_required_result_tampered_state",
        "Issues a sealed requestState and refuses a retry whose state fails verification.",
    ),
    (
        "test_input_required_result_capabilities",
        "Only asks for input the request's clientCapabilities declare (elicitation, sampling).",
    ),
];

/// Whether `name` is one of [`TOOLS`].
pub(crate) fn is_mrtr_tool(name: &str) -> bool {
    TOOLS.iter().any(|(tool, _)| *tool == name)
}

/// How long a sealed `requestState` stays valid.
const STATE_TTL: Duration = Duration::from_secs(600);

/// What the fixture keeps in a `requestState` between rounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The round the client is answering (1-based).
    round: u8,
    /// The name collected in round 1 of `test_input_required_result_multi_round`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// The MRTR fixtures and the key their states are sealed with.
#[derive(Debug)]
pub(crate) struct Mrtr {
    codec: RequestStateCodec,
}

fn invalid(message: impl Into<String>) -> ErrorData {
    ErrorData::invalid_params(message.into(), None)
}

fn text(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

/// An `elicitation/create` request for one required property.
fn elicit(message: &str, property: &str, kind: &str) -> Result<InputRequest, ErrorData> {
    let schema = ElicitationSchema::from_json_schema(
        json!({
            "type": "object",
            "properties": { property: { "type": kind } },
            "required": [property]
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    )
    .map_err(|error| ErrorData::internal_error(format!("elicitation schema: {error}"), None))?;
    Ok(InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema: schema,
        },
    )))
}

fn sample(prompt: &str, max_tokens: u32) -> InputRequest {
    InputRequest::CreateMessage(CreateMessageRequest::new(CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(prompt)],
        max_tokens,
    )))
}

fn list_roots() -> InputRequest {
    InputRequest::ListRoots(ListRootsRequest::default())
}

/// The client's answer to `key`, or `None` when it sent none (`inputResponses` may be absent).
fn answer<'a>(responses: Option<&'a InputResponses>, key: &str) -> Option<&'a Value> {
    responses.and_then(|r| r.get(key))
}

/// An elicitation answer; the accepted content's string `field`, or `None` when declined.
fn elicited(value: &Value, key: &str, field: &str) -> Result<Option<Value>, ErrorData> {
    let result: ElicitResult = serde_json::from_value(value.clone()).map_err(|error| {
        invalid(format!(
            "inputResponses.{key} is not an ElicitResult: {error}"
        ))
    })?;
    if result.action != ElicitationAction::Accept {
        return Ok(None);
    }
    let content = result
        .content
        .as_ref()
        .and_then(|c| c.get(field))
        .cloned()
        .ok_or_else(|| invalid(format!("inputResponses.{key}.content has no {field}")))?;
    Ok(Some(content))
}

/// A sampling answer's text.
fn sampled(value: &Value, key: &str) -> Result<String, ErrorData> {
    let content = value
        .get("content")
        .filter(|_| value.get("role").is_some())
        .ok_or_else(|| invalid(format!("inputResponses.{key} is not a CreateMessageResult")))?;
    // `content` is one block or (2025-11-25 with tools) a list of blocks.
    let first = content
        .as_array()
        .and_then(|a| a.first())
        .unwrap_or(content);
    Ok(first
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("(no text)")
        .to_owned())
}

/// A roots/list answer's root count.
fn roots(value: &Value, key: &str) -> Result<usize, ErrorData> {
    value
        .get("roots")
        .and_then(Value::as_array)
        .map(Vec::len)
        .ok_or_else(|| invalid(format!("inputResponses.{key} is not a ListRootsResult")))
}

fn display(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// Refuses an input request the client did not declare the capability for (SEP-2322: a server
/// must not ask for input the client cannot give).
fn require(
    capabilities: &ClientCapabilities,
    sampling: bool,
    elicitation: bool,
    roots: bool,
) -> Result<(), ErrorData> {
    let mut missing = ClientCapabilities::default();
    if sampling && capabilities.sampling.is_none() {
        missing.sampling = Some(Default::default());
    }
    if elicitation && capabilities.elicitation.is_none() {
        missing.elicitation = Some(Default::default());
    }
    if roots && capabilities.roots.is_none() {
        missing.roots = Some(Default::default());
    }
    if missing == ClientCapabilities::default() {
        Ok(())
    } else {
        Err(ErrorData::missing_required_client_capability(missing))
    }
}

impl Mrtr {
    /// A fixture with a fresh random signing key (states do not survive a restart).
    pub(crate) fn new() -> Self {
        let mut key = Vec::with_capacity(RequestStateCodec::MIN_KEY_LENGTH);
        while key.len() < RequestStateCodec::MIN_KEY_LENGTH {
            key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        // The loop above guarantees MIN_KEY_LENGTH, the only thing `try_new` would check.
        Self {
            codec: RequestStateCodec::new_unchecked(key),
        }
    }

    fn seal(&self, binding: &str, state: &State) -> Result<String, ErrorData> {
        let options = SealOptions::new()
            .associated_data(binding.as_bytes())
            .ttl(STATE_TTL);
        self.codec.seal_json_with(state, &options).map_err(|error| {
            ErrorData::internal_error(format!("sealing requestState: {error}"), None)
        })
    }

    /// Opens the echoed state; `None` when the client sent none.
    fn open(&self, binding: &str, sealed: Option<&str>) -> Result<Option<State>, ErrorData> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        self.codec
            .open_json_with(sealed, binding.as_bytes())
            .map(Some)
            .map_err(|error| {
                tracing::info!(%error, binding, "requestState refused");
                invalid(format!("requestState failed verification: {error}"))
            })
    }

    fn ask(
        &self,
        binding: &str,
        requests: impl IntoIterator<Item = (&'static str, InputRequest)>,
        state: Option<&State>,
    ) -> Result<InputRequiredResult, ErrorData> {
        let requests: InputRequests = requests
            .into_iter()
            .map(|(key, request)| (key.to_owned(), request))
            .collect();
        let sealed = state.map(|s| self.seal(binding, s)).transpose()?;
        Ok(InputRequiredResult::new(Some(requests), sealed))
    }

    /// `tools/call` of one of [`TOOLS`].
    pub(crate) fn call_tool(
        &self,
        name: &str,
        request: &CallToolRequestParams,
        capabilities: &ClientCapabilities,
    ) -> Result<CallToolResponse, ErrorData> {
        let binding = format!("tools/call:{name}");
        let responses = request.input_responses.as_ref();
        let sealed = request.request_state.as_deref();
        let response = match name {
            "test_input_required_result_elicitation" => {
                require(capabilities, false, true, false)?;
                match answer(responses, "user_name") {
                    Some(value) => match elicited(value, "user_name", "name")? {
                        Some(name) => text(format!("Hello, {}!", display(&name))),
                        None => text("The user declined to give a name."),
                    },
                    None => self
                        .ask(
                            &binding,
                            [("user_name", elicit("What is your name?", "name", "string")?)],
                            None,
                        )?
                        .into(),
                }
            }
            "test_input_required_result_sampling" => {
                require(capabilities, true, false, false)?;
                match answer(responses, "sample_request") {
                    Some(value) => text(format!(
                        "Sampling result: {}",
                        sampled(value, "sample_request")?
                    )),
                    None => self
                        .ask(
                            &binding,
                            [(
                                "sample_request",
                                sample("What is the capital of France?", 100),
                            )],
                            None,
                        )?
                        .into(),
                }
            }
            "test_input_required_result_list_roots" => {
                require(capabilities, false, false, true)?;
                match answer(responses, "roots_request") {
                    Some(value) => {
                        text(format!("Found {} root(s)", roots(value, "roots_request")?))
                    }
                    None => self
                        .ask(&binding, [("roots_request", list_roots())], None)?
                        .into(),
                }
            }
            "test_input_required_result_request_state" => {
                require(capabilities, false, true, false)?;
                let state = self.open(&binding, sealed)?;
                match (state, answer(responses, "confirm")) {
                    (Some(_), Some(value)) => match elicited(value, "confirm", "ok")? {
                        Some(Value::Bool(true)) => text("state-ok: requestState validated"),
                        _ => text("state-ok: requestState validated, but not confirmed"),
                    },
                    _ => self
                        .ask(
                            &binding,
                            [("confirm", elicit("Please confirm", "ok", "boolean")?)],
                            Some(&State {
                                round: 1,
                                name: None,
                            }),
                        )?
                        .into(),
                }
            }
            "test_input_required_result_multiple_inputs" => {
                require(capabilities, true, true, true)?;
                let state = self.open(&binding, sealed)?;
                let answers = (
                    answer(responses, "user_name"),
                    answer(responses, "greeting"),
                    answer(responses, "client_roots"),
                );
                match (state, answers) {
                    (Some(_), (Some(user), Some(greeting), Some(client_roots))) => {
                        let user = elicited(user, "user_name", "name")?
                            .map_or_else(|| "(declined)".to_owned(), |n| display(&n));
                        let greeting = sampled(greeting, "greeting")?;
                        let roots = roots(client_roots, "client_roots")?;
                        text(format!(
                            "Name: {user}; Greeting: {greeting}; Roots: {roots}"
                        ))
                    }
                    _ => self
                        .ask(
                            &binding,
                            [
                                ("user_name", elicit("What is your name?", "name", "string")?),
                                ("greeting", sample("Generate a greeting", 50)),
                                ("client_roots", list_roots()),
                            ],
                            Some(&State {
                                round: 1,
                                name: None,
                            }),
                        )?
                        .into(),
                }
            }
            "test_input_required_result_multi_round" => {
                require(capabilities, false, true, false)?;
                self.multi_round(&binding, responses, self.open(&binding, sealed)?)?
            }
            "test_input_required_result_tampered_state" => {
                require(capabilities, false, true, false)?;
                let state = self.open(&binding, sealed)?;
                match (state, answer(responses, "confirm")) {
                    (Some(_), Some(_)) => text("integrity-ok: state verified"),
                    _ => self
                        .ask(
                            &binding,
                            [("confirm", elicit("Please confirm", "ok", "boolean")?)],
                            Some(&State {
                                round: 1,
                                name: None,
                            }),
                        )?
                        .into(),
                }
            }
            "test_input_required_result_capabilities" => {
                let state = self.open(&binding, sealed)?;
                let mut requests = Vec::new();
                if capabilities.elicitation.is_some() {
                    requests.push((
                        "elicit_input",
                        elicit("Elicitation input", "value", "string")?,
                    ));
                }
                if capabilities.sampling.is_some() {
                    requests.push(("sample_input", sample("Sample request", 50)));
                }
                let received: Vec<&str> = responses
                    .map(|r| r.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if state.is_some() && !received.is_empty() {
                    text(format!("capabilities-ok: received {}", received.join(",")))
                } else if requests.is_empty() {
                    text("No supported capabilities declared")
                } else {
                    self.ask(
                        &binding,
                        requests,
                        Some(&State {
                            round: 1,
                            name: None,
                        }),
                    )?
                    .into()
                }
            }
            other => return Err(invalid(format!("unknown tool {other}"))),
        };
        Ok(response)
    }

    fn multi_round(
        &self,
        binding: &str,
        responses: Option<&InputResponses>,
        state: Option<State>,
    ) -> Result<CallToolResponse, ErrorData> {
        let step1 = || elicit("Step 1: What is your name?", "name", "string");
        let step2 = || elicit("Step 2: What is your favorite color?", "color", "string");
        let first = State {
            round: 1,
            name: None,
        };
        let response = match state {
            Some(State { round: 1, .. }) => match answer(responses, "step1") {
                Some(value) => {
                    let name = elicited(value, "step1", "name")?
                        .map_or_else(|| "friend".to_owned(), |n| display(&n));
                    let next = State {
                        round: 2,
                        name: Some(name),
                    };
                    self.ask(binding, [("step2", step2()?)], Some(&next))?
                        .into()
                }
                None => self
                    .ask(binding, [("step1", step1()?)], Some(&first))?
                    .into(),
            },
            Some(current @ State { round: 2, .. }) => match answer(responses, "step2") {
                Some(value) => {
                    let color = elicited(value, "step2", "color")?
                        .map_or_else(|| "no colour".to_owned(), |c| display(&c));
                    let name = current.name.as_deref().unwrap_or("friend");
                    text(format!("Multi-round complete for {name} who likes {color}"))
                }
                None => self
                    .ask(binding, [("step2", step2()?)], Some(&current))?
                    .into(),
            },
            // No state yet, or a round this tool never issues: start over.
            _ => self
                .ask(binding, [("step1", step1()?)], Some(&first))?
                .into(),
        };
        Ok(response)
    }

    /// `test_streaming_elicitation`: the 2026-07-28 way to ask for input while a call is open is
    /// an `input_required` result on the request's own stream, never an independent request.
    pub(crate) fn streaming_elicitation(&self) -> CallToolResponse {
        match elicit("What should the stream carry?", "value", "string") {
            Ok(request) => InputRequiredResult::from_input_requests(
                [("stream_input".to_owned(), request)].into_iter().collect(),
            )
            .into(),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.message)]).into(),
        }
    }

    /// `prompts/get` of [`PROMPT`].
    pub(crate) fn get_prompt(
        &self,
        request: &GetPromptRequestParams,
    ) -> Result<GetPromptResponse, ErrorData> {
        let binding = format!("prompts/get:{PROMPT}");
        // This prompt issues no state; one that comes back anyway must still be genuine.
        self.open(&binding, request.request_state.as_deref())?;
        let response = match answer(request.input_responses.as_ref(), "user_context") {
            Some(value) => {
                let context = elicited(value, "user_context", "context")?
                    .map_or_else(|| "none given".to_owned(), |c| display(&c));
                GetPromptResult::new(vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with context: {context}"),
                )])
                .into()
            }
            None => self
                .ask(
                    &binding,
                    [(
                        "user_context",
                        elicit("What context should the prompt use?", "context", "string")?,
                    )],
                    None,
                )?
                .into(),
        };
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_round_trips_only_for_its_binding() {
        let mrtr = Mrtr::new();
        let state = State {
            round: 2,
            name: Some("Alice".to_owned()),
        };
        let sealed = mrtr.seal("tools/call:a", &state).expect("seal");
        assert_eq!(
            mrtr.open("tools/call:a", Some(&sealed)).expect("open"),
            Some(state)
        );
        assert!(mrtr.open("tools/call:b", Some(&sealed)).is_err());
        assert!(
            mrtr.open("tools/call:a", Some(&format!("{sealed}-TAMPERED")))
                .is_err()
        );
    }

    #[test]
    fn malformed_answers_are_refused() {
        assert!(elicited(&json!(12345), "k", "name").is_err());
        assert!(sampled(&json!({ "nope": 1 }), "k").is_err());
        assert!(roots(&json!({ "roots": "x" }), "k").is_err());
        let declined = json!({ "action": "decline" });
        assert_eq!(elicited(&declined, "k", "name").expect("decline"), None);
    }
}
