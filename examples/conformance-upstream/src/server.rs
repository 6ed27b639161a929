//! The MCP handler: the tools, resources, prompts, completion, logging and subscriptions the
//! conformance suite's server scenarios call, on both protocol generations.

#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577, yet the 2025-11-25 scenarios score them"
)]

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities,
        CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock,
        CreateMessageRequestParams, ElicitRequestParams, ElicitationAction, ElicitationSchema,
        GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, JsonObject,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
        ProgressNotificationParam, ProgressToken, Prompt, PromptArgument, PromptMessage,
        ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
        Reference, Resource, ResourceContents, ResourceTemplate, Role, SamplingMessage,
        ServerCapabilities, ServerConfig, SetLevelRequestMethod, SetLevelRequestParams,
        SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
    },
    service::{RequestContext, SubscriptionContext},
};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::mrtr::Mrtr;

/// A 1×1 red PNG, base64: the image of `test_image_content`, `test://static-binary` and
/// `test_prompt_with_image`.
const TEST_IMAGE_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// A minimal WAV file, base64: the audio of `test_audio_content`.
const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// How long clients may cache list results and resource reads (SEP-2549 `ttlMs`).
const CACHE_TTL_MS: u64 = 300_000;

/// Pause between the notifications of the logging and progress tools, so they arrive as
/// separate events before the result.
const NOTIFICATION_GAP: Duration = Duration::from_millis(20);

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";

/// Which list changed, as announced on open `subscriptions/listen` streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListChange {
    Tools,
    Prompts,
}

/// State shared by every session and every stateless request (the HTTP service builds one
/// handler per session or request by cloning).
#[derive(Debug)]
struct Shared {
    /// The level last set with `logging/setLevel` on a session (process-wide: the fixture
    /// does not track it per session). 2026-07-28 requests bring their own in `_meta`.
    log_level: Mutex<LoggingLevel>,
    /// List changes fanned out to open `subscriptions/listen` streams.
    list_changes: broadcast::Sender<ListChange>,
}

/// The MCP handler. Cheap to clone: all state is shared.
#[derive(Debug, Clone)]
pub(crate) struct ConformanceServer {
    shared: Arc<Shared>,
    mrtr: Arc<Mrtr>,
}

impl ConformanceServer {
    pub(crate) fn new() -> Self {
        let (list_changes, _) = broadcast::channel(16);
        Self {
            shared: Arc::new(Shared {
                log_level: Mutex::new(LoggingLevel::Debug),
                list_changes,
            }),
            mrtr: Arc::new(Mrtr::new()),
        }
    }

    fn session_log_level(&self) -> LoggingLevel {
        // A plain value behind the lock: a poisoned lock still holds a valid level.
        *self
            .shared
            .log_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the request is served on the 2026-07-28 (stateless) wire.
fn is_modern(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn no_args() -> JsonObject {
    object(json!({ "type": "object", "properties": {} }))
}

fn string_arg(name: &str, description: &str) -> JsonObject {
    object(json!({
        "type": "object",
        "properties": { name: { "type": "string", "description": description } },
        "required": [name]
    }))
}

/// The SEP-1613 / SEP-2106 schema of `json_schema_2020_12_tool`: 2020-12 keywords (`$schema`,
/// `$defs`, `$anchor`, composition and conditionals) that must survive `tools/list` untouched.
fn json_schema_2020_12() -> JsonObject {
    object(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" }
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    }))
}

/// Tools served on both wires.
fn common_tools() -> Vec<Tool> {
    let plain = [
        ("test_simple_text", "Returns one text content block."),
        (
            "test_image_content",
            "Returns one image content block (PNG).",
        ),
        (
            "test_audio_content",
            "Returns one audio content block (WAV).",
        ),
        (
            "test_embedded_resource",
            "Returns one embedded text resource.",
        ),
        (
            "test_multiple_content_types",
            "Returns text, image and embedded resource content together.",
        ),
        (
            "test_tool_with_logging",
            "Sends three notifications/message log entries, then returns.",
        ),
        (
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100 against the request's progressToken.",
        ),
        (
            "test_error_handling",
            "Always fails with a tool error (isError: true).",
        ),
    ];
    let mut tools: Vec<Tool> = plain
        .into_iter()
        .map(|(name, description)| Tool::new(name, description, no_args()))
        .collect();
    tools.push(Tool::new(
        "json_schema_2020_12_tool",
        "Takes an input schema that uses JSON Schema 2020-12 keywords.",
        json_schema_2020_12(),
    ));
    tools
}

/// Tools that need the session wire (server-to-client requests while the call is open).
fn legacy_tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "test_sampling",
            "Asks the client to sample an LLM completion for `prompt` (sampling/createMessage).",
            string_arg("prompt", "The prompt to send to the LLM"),
        ),
        Tool::new(
            "test_elicitation",
            "Asks the user for input with `message` (elicitation/create).",
            string_arg("message", "The message to show the user"),
        ),
        Tool::new(
            "test_elicitation_sep1034_defaults",
            "Elicits a form whose fields all carry default values (SEP-1034).",
            no_args(),
        ),
        Tool::new(
            "test_elicitation_sep1330_enums",
            "Elicits a form with the five enum schema variants (SEP-1330).",
            no_args(),
        ),
    ]
}

/// Tools of the 2026-07-28 wire: the multi round-trip fixtures and the stateless diagnostics.
fn modern_tools() -> Vec<Tool> {
    let mut tools: Vec<Tool> = crate::mrtr::TOOLS
        .iter()
        .map(|(name, description)| Tool::new(*name, *description, no_args()))
        .collect();
    let diagnostics = [
        (
            "test_missing_capability",
            "Requires the sampling client capability; refused with -32021 without it.",
        ),
        (
            "test_streaming_elicitation",
            "Requires the elicitation capability; answers on the request's own stream.",
        ),
        (
            "test_logging_tool",
            "Logs one message, but only when the request's _meta sets a logLevel.",
        ),
        (
            "test_trigger_tool_change",
            "Announces notifications/tools/list_changed on open subscription streams.",
        ),
        (
            "test_trigger_prompt_change",
            "Announces notifications/prompts/list_changed on open subscription streams.",
        ),
    ];
    tools.extend(
        diagnostics
            .into_iter()
            .map(|(name, description)| Tool::new(name, description, no_args())),
    );
    tools
}

fn text_result(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

fn prompt_text(text: impl Into<String>) -> GetPromptResponse {
    GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).into()
}

/// The capabilities a request brings: its own `_meta` on 2026-07-28, the `initialize` ones on
/// a session.
fn client_capabilities(context: &RequestContext<RoleServer>) -> ClientCapabilities {
    context.client_capabilities().unwrap_or_default()
}

/// RFC 5424 severity order of the MCP log levels, lowest first.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl ConformanceServer {
    /// Sends an info log entry if the client wants one: on a session, unless `logging/setLevel`
    /// asked for a higher level; on 2026-07-28, only when the request's `_meta` sets a
    /// `logLevel` at or below info (SEP-2575: no logs without one).
    async fn log(&self, context: &RequestContext<RoleServer>, message: &str) {
        let threshold = if is_modern(context) {
            context.meta.log_level()
        } else {
            Some(self.session_log_level())
        };
        if threshold.is_none_or(|t| severity(t) > severity(LoggingLevel::Info)) {
            return;
        }
        let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message))
            .with_logger("conformance-upstream");
        if let Err(error) = context.peer.notify_logging_message(param).await {
            tracing::debug!(%error, "could not send a log notification");
        }
    }

    async fn tool_with_logging(&self, context: &RequestContext<RoleServer>) -> CallToolResponse {
        for message in [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ] {
            self.log(context, message).await;
            tokio::time::sleep(NOTIFICATION_GAP).await;
        }
        text_result("Tool with logging executed successfully")
    }

    async fn tool_with_progress(context: &RequestContext<RoleServer>) -> CallToolResponse {
        let token = context.meta.get_progress_token();
        if let Some(token) = &token {
            for step in [0.0, 50.0, 100.0] {
                let param = ProgressNotificationParam::new(token.clone(), step)
                    .with_total(100.0)
                    .with_message(format!("Completed step {step} of 100"));
                if let Err(error) = context.peer.notify_progress(param).await {
                    tracing::debug!(%error, "could not send a progress notification");
                }
                tokio::time::sleep(NOTIFICATION_GAP).await;
            }
        }
        let echoed = match token {
            Some(ProgressToken(number_or_string)) => number_or_string.to_string(),
            None => "no progress token".to_owned(),
        };
        text_result(echoed)
    }

    async fn sampling(args: &JsonObject, context: &RequestContext<RoleServer>) -> CallToolResponse {
        let prompt = args
            .get("prompt")
            .and_then(Value::as_str)
            .unwrap_or("Hello");
        let request =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
        match context.peer.create_message(request).await {
            Ok(result) => {
                let text = result
                    .message
                    .content
                    .first()
                    .and_then(|c| c.as_text())
                    .map_or_else(|| "No response".to_owned(), |t| t.text.clone());
                text_result(format!("LLM response: {text}"))
            }
            Err(error) => CallToolResult::error(vec![ContentBlock::text(format!(
                "Sampling not supported or failed: {error}"
            ))])
            .into(),
        }
    }

    async fn elicit(
        message: &str,
        schema: Value,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let schema = match ElicitationSchema::from_json_schema(object(schema)) {
            Ok(schema) => schema,
            Err(error) => {
                return CallToolResult::error(vec![ContentBlock::text(format!(
                    "invalid elicitation schema: {error}"
                ))])
                .into();
            }
        };
        let request = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema: schema,
        };
        match context.peer.create_elicitation(request).await {
            Ok(result) => {
                let action = match result.action {
                    ElicitationAction::Accept => "accept",
                    ElicitationAction::Decline => "decline",
                    ElicitationAction::Cancel => "cancel",
                    _ => "unknown",
                };
                let content = result.content.unwrap_or_else(|| json!({}));
                text_result(format!(
                    "Elicitation completed: action={action}, content={content}"
                ))
            }
            Err(error) => CallToolResult::error(vec![ContentBlock::text(format!(
                "Elicitation not supported or failed: {error}"
            ))])
            .into(),
        }
    }

    async fn logging_tool(&self, context: &RequestContext<RoleServer>) -> CallToolResponse {
        // `log` stays silent unless the request's _meta sets a logLevel.
        self.log(context, "Diagnostic trace logging activated")
            .await;
        text_result("Logging evaluated")
    }

    fn trigger(&self, change: ListChange) -> CallToolResponse {
        // No receiver just means no stream is listening right now.
        let listeners = self.shared.list_changes.send(change).unwrap_or(0);
        text_result(format!(
            "Mutation triggered; {listeners} listening stream(s)"
        ))
    }
}

fn resource_contents(uri: &str) -> Option<ResourceContents> {
    let contents = match uri {
        STATIC_TEXT_URI => ResourceContents::text(
            "This is the content of the static text resource.",
            STATIC_TEXT_URI,
        )
        .with_mime_type("text/plain"),
        STATIC_BINARY_URI => {
            ResourceContents::blob(TEST_IMAGE_BASE64, STATIC_BINARY_URI).with_mime_type("image/png")
        }
        WATCHED_URI => ResourceContents::text("Watched resource content", WATCHED_URI)
            .with_mime_type("text/plain"),
        _ => {
            // `test://template/{id}/data`
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")
                .filter(|id| !id.is_empty() && !id.contains('/'))?;
            let body =
                json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
            ResourceContents::text(body.to_string(), uri).with_mime_type("application/json")
        }
    };
    Some(contents)
}

/// Suggestions for `completion/complete`: prompt arguments and the template's `id`.
fn completions(reference: &Reference, argument: &str, prefix: &str) -> Vec<String> {
    let candidates: &[&str] = match reference {
        Reference::Prompt(prompt) if prompt.name == "test_prompt_with_arguments" => {
            match argument {
                "arg1" | "arg2" => &["paris", "park", "party", "test", "testing"],
                _ => &[],
            }
        }
        Reference::Resource(template) if template.uri == TEMPLATE_URI && argument == "id" => {
            &["1", "2", "42", "123"]
        }
        _ => &[],
    };
    candidates
        .iter()
        .filter(|c| c.starts_with(prefix))
        .map(|c| (*c).to_owned())
        .collect()
}

impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_logging()
                .enable_completions()
                .build(),
        )
        .with_server_info(Implementation::new(
            "conformance-upstream",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions("Fixtures of the MCP conformance suite's server scenarios.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = common_tools();
        if is_modern(&context) {
            tools.extend(modern_tools());
        } else {
            tools.extend(legacy_tools());
        }
        Ok(ListToolsResult::with_all_items(tools)
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let modern = is_modern(&context);
        let response = match request.name.as_ref() {
            "test_simple_text" => text_result("This is a simple text response for testing."),
            "test_image_content" => {
                CallToolResult::success(vec![ContentBlock::image(TEST_IMAGE_BASE64, "image/png")])
                    .into()
            }
            "test_audio_content" => {
                CallToolResult::success(vec![ContentBlock::audio(TEST_AUDIO_BASE64, "audio/wav")])
                    .into()
            }
            "test_embedded_resource" => CallToolResult::success(vec![ContentBlock::resource(
                ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                )
                .with_mime_type("text/plain"),
            )])
            .into(),
            "test_multiple_content_types" => CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(TEST_IMAGE_BASE64, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        json!({ "test": "data", "value": 123 }).to_string(),
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ])
            .into(),
            "test_tool_with_logging" => self.tool_with_logging(&context).await,
            "test_tool_with_progress" => Self::tool_with_progress(&context).await,
            "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )])
            .into(),
            "json_schema_2020_12_tool" => text_result(format!(
                "JSON Schema 2020-12 tool called with: {}",
                Value::Object(args)
            )),
            "test_sampling" if !modern => Self::sampling(&args, &context).await,
            "test_elicitation" if !modern => {
                let message = args
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Please provide your response");
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "response": { "type": "string", "description": "User's response" }
                    },
                    "required": ["response"]
                });
                Self::elicit(message, schema, &context).await
            }
            "test_elicitation_sep1034_defaults" if !modern => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "User name", "default": "John Doe" },
                        "age": { "type": "integer", "description": "User age", "default": 30 },
                        "score": { "type": "number", "description": "User score", "default": 95.5 },
                        "status": {
                            "type": "string",
                            "description": "User status",
                            "enum": ["active", "inactive", "pending"],
                            "default": "active"
                        },
                        "verified": { "type": "boolean", "description": "Verification status", "default": true }
                    },
                    "required": []
                });
                Self::elicit(
                    "Please review and update the form fields with defaults",
                    schema,
                    &context,
                )
                .await
            }
            "test_elicitation_sep1330_enums" if !modern => {
                let titled = |prefix: &str, label: &str| {
                    json!([
                        { "const": format!("{prefix}1"), "title": format!("First {label}") },
                        { "const": format!("{prefix}2"), "title": format!("Second {label}") },
                        { "const": format!("{prefix}3"), "title": format!("Third {label}") }
                    ])
                };
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": {
                            "type": "string",
                            "description": "Select one option",
                            "enum": ["option1", "option2", "option3"]
                        },
                        "titledSingle": {
                            "type": "string",
                            "description": "Select one option with titles",
                            "oneOf": titled("value", "Option")
                        },
                        "legacyEnum": {
                            "type": "string",
                            "description": "Select one option (legacy)",
                            "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"]
                        },
                        "untitledMulti": {
                            "type": "array",
                            "description": "Select multiple options",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                        },
                        "titledMulti": {
                            "type": "array",
                            "description": "Select multiple options with titles",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": { "anyOf": titled("value", "Choice") }
                        }
                    },
                    "required": []
                });
                Self::elicit(
                    "Please select options from the enum fields",
                    schema,
                    &context,
                )
                .await
            }
            "test_missing_capability" if modern => {
                if client_capabilities(&context).sampling.is_none() {
                    return Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_sampling().build(),
                    ));
                }
                text_result("Success")
            }
            "test_streaming_elicitation" if modern => {
                if client_capabilities(&context).elicitation.is_none() {
                    return Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_elicitation().build(),
                    ));
                }
                self.mrtr.streaming_elicitation()
            }
            "test_logging_tool" if modern => self.logging_tool(&context).await,
            "test_trigger_tool_change" if modern => self.trigger(ListChange::Tools),
            "test_trigger_prompt_change" if modern => self.trigger(ListChange::Prompts),
            name if modern && crate::mrtr::is_mrtr_tool(name) => {
                self.mrtr
                    .call_tool(name, &request, &client_capabilities(&context))?
            }
            name => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {name}"),
                    None,
                ));
            }
        };
        Ok(response)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = vec![
            Resource::new(STATIC_TEXT_URI, "static-text")
                .with_title("Static Text Resource")
                .with_description("A static text resource for testing")
                .with_mime_type("text/plain"),
            Resource::new(STATIC_BINARY_URI, "static-binary")
                .with_title("Static Binary Resource")
                .with_description("A static binary resource (image) for testing")
                .with_mime_type("image/png"),
            Resource::new(WATCHED_URI, "watched-resource")
                .with_title("Watched Resource")
                .with_description("A resource clients may subscribe to")
                .with_mime_type("text/plain"),
        ];
        Ok(ListResourcesResult::with_all_items(resources)
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new(TEMPLATE_URI, "template")
            .with_title("Resource Template")
            .with_description("A resource template with parameter substitution")
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template])
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(contents) = resource_contents(&request.uri) else {
            // rmcp turns RESOURCE_NOT_FOUND into -32602 for 2026-07-28 peers (SEP-2164).
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {}", request.uri),
                Some(json!({ "uri": request.uri })),
            ));
        };
        Ok(ReadResourceResult::new(vec![contents])
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Private)
            .into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Nothing to record: the fixture's resources never change, so no
        // notifications/resources/updated is ever due.
        self.log(
            &context,
            &format!("Subscribed to resource: {}", request.uri),
        )
        .await;
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.log(
            &context,
            &format!("Unsubscribed from resource: {}", request.uri),
        )
        .await;
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut prompts = vec![
            Prompt::new(
                "test_simple_prompt",
                Some("A simple prompt without arguments"),
                None,
            )
            .with_title("Simple Test Prompt"),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A prompt with required arguments"),
                Some(vec![
                    PromptArgument::new("arg1")
                        .with_description("First test argument")
                        .with_required(true),
                    PromptArgument::new("arg2")
                        .with_description("Second test argument")
                        .with_required(true),
                ]),
            )
            .with_title("Prompt With Arguments"),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A prompt that includes an embedded resource"),
                Some(vec![
                    PromptArgument::new("resourceUri")
                        .with_description("URI of the resource to embed")
                        .with_required(true),
                ]),
            )
            .with_title("Prompt With Embedded Resource"),
            Prompt::new(
                "test_prompt_with_image",
                Some("A prompt that includes image content"),
                None,
            )
            .with_title("Prompt With Image"),
        ];
        if is_modern(&context) {
            prompts.push(Prompt::new(
                crate::mrtr::PROMPT,
                Some("Asks for context with an input_required result before it is rendered"),
                None,
            ));
        }
        Ok(ListPromptsResult::with_all_items(prompts)
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let arg = |name: &str| -> Result<String, ErrorData> {
            args.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ErrorData::invalid_params(format!("missing required argument {name}"), None)
                })
        };
        let response = match request.name.as_str() {
            "test_simple_prompt" => prompt_text("This is a simple prompt for testing."),
            "test_prompt_with_arguments" => {
                let (arg1, arg2) = (arg("arg1")?, arg("arg2")?);
                prompt_text(format!(
                    "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
                ))
            }
            "test_prompt_with_embedded_resource" => {
                let uri = arg("resourceUri")?;
                GetPromptResult::new(vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(
                            ResourceContents::text("Embedded resource content for testing.", uri)
                                .with_mime_type("text/plain"),
                        ),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ])
                .into()
            }
            "test_prompt_with_image" => GetPromptResult::new(vec![
                PromptMessage::new(
                    Role::User,
                    ContentBlock::image(TEST_IMAGE_BASE64, "image/png"),
                ),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ])
            .into(),
            crate::mrtr::PROMPT if is_modern(&context) => self.mrtr.get_prompt(&request)?,
            name => {
                return Err(ErrorData::invalid_params(
                    format!("unknown prompt {name}"),
                    None,
                ));
            }
        };
        Ok(response)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let values = completions(
            &request.r#ref,
            &request.argument.name,
            &request.argument.value,
        );
        let info = CompletionInfo::with_all_values(values)
            .map_err(|error| ErrorData::internal_error(error, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // 2026-07-28 removed logging/setLevel (the level travels in each request's _meta), but
        // rmcp 3.11 still dispatches a well-formed one to this handler; refuse it as rmcp does
        // ping and resources/subscribe, so a stateless client cannot change the sessions' level.
        if is_modern(&context) {
            return Err(ErrorData::method_not_found::<SetLevelRequestMethod>());
        }
        *self
            .shared
            .log_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = request.level;
        self.log(&context, &format!("Log level set to: {:?}", request.level))
            .await;
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // rmcp intersects this with what was requested and what get_info advertises. Resource
        // subscriptions are accepted for resources that exist; they never change, so no
        // notifications/resources/updated is ever sent for them.
        let known: Vec<String> = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| resource_contents(uri).is_some())
            .cloned()
            .collect();
        Some(
            SubscriptionFilter::builder()
                .tools_list_changed()
                .prompts_list_changed()
                .resource_subscriptions(known)
                .build(),
        )
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.shared.list_changes.subscribe();
        loop {
            let change = tokio::select! {
                () = subscription.cancelled() => return Ok(()),
                change = changes.recv() => change,
            };
            let sent = match change {
                Ok(ListChange::Tools) => subscription.sink().notify_tool_list_changed().await,
                Ok(ListChange::Prompts) => subscription.sink().notify_prompt_list_changed().await,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            };
            if let Err(error) = sent {
                // A category the stream did not ask for is filtered out by the sink; any other
                // failure means the stream is gone.
                tracing::debug!(%error, "subscription notification not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_uris_resolve_and_others_do_not() {
        assert!(resource_contents("test://template/123/data").is_some());
        assert!(resource_contents("test://template//data").is_none());
        assert!(resource_contents("test://template/1/2/data").is_none());
        assert!(resource_contents("test://nonexistent").is_none());
    }

    #[test]
    fn completions_filter_by_prefix() {
        let prompt = Reference::for_prompt("test_prompt_with_arguments");
        assert_eq!(
            completions(&prompt, "arg1", "par"),
            ["paris", "park", "party"]
        );
        assert!(completions(&prompt, "other", "").is_empty());
    }
}
