//! The ticket-system MCP server itself: an in-memory store and its tools, resource and prompt.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{
        router::{prompt::PromptRouter, tool::ToolRouter},
        wrapper::Parameters,
    },
    model::{
        CallToolResult, ContentBlock, GetPromptResult, Implementation, ListResourcesResult,
        PaginatedRequestParams, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, Resource, ResourceContents, Role, ServerCapabilities, ServerConfig,
    },
    prompt, prompt_handler, prompt_router,
    schemars::JsonSchema,
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::{Deserialize, Serialize};

/// The URI of the one resource this server exposes.
pub const OPEN_TICKETS_URI: &str = "tickets://open";

/// Whether a ticket still needs work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(crate = "rmcp::schemars")]
pub enum TicketStatus {
    /// Needs work.
    Open,
    /// Done.
    Closed,
}

/// One ticket as the tools return it (serialized as JSON text content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Server-assigned identifier, starting at 1.
    pub id: u64,
    /// One-line summary.
    pub title: String,
    /// Free-form description.
    pub body: String,
    /// Open or closed.
    pub status: TicketStatus,
}

/// The shared, in-memory ticket store. Every session and every stateless request sees the same
/// store, because the HTTP service builds one handler per session or request by cloning.
#[derive(Debug)]
struct Store {
    tickets: BTreeMap<u64, Ticket>,
    next_id: u64,
}

impl Store {
    fn seeded() -> Self {
        let seed = [
            (
                "Login page returns 500",
                "Users report an internal error after submitting the login form.",
                TicketStatus::Open,
            ),
            (
                "Add dark mode",
                "Several customers asked for a dark colour scheme.",
                TicketStatus::Open,
            ),
            (
                "Typo on pricing page",
                "\"Anual\" should read \"Annual\".",
                TicketStatus::Closed,
            ),
        ];
        let mut store = Self {
            tickets: BTreeMap::new(),
            next_id: 1,
        };
        for (title, body, status) in seed {
            store.insert(title.to_owned(), body.to_owned(), status);
        }
        store
    }

    fn insert(&mut self, title: String, body: String, status: TicketStatus) -> Ticket {
        let ticket = Ticket {
            id: self.next_id,
            title,
            body,
            status,
        };
        self.next_id += 1;
        self.tickets.insert(ticket.id, ticket.clone());
        ticket
    }

    fn with_status(&self, status: Option<TicketStatus>) -> Vec<Ticket> {
        self.tickets
            .values()
            .filter(|t| status.is_none_or(|s| t.status == s))
            .cloned()
            .collect()
    }
}

/// Arguments of `list_tickets`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct ListTicketsArgs {
    /// Only return tickets with this status; all tickets when absent.
    #[serde(default)]
    pub status: Option<TicketStatus>,
}

/// Arguments of `get_ticket` and `delete_ticket`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct TicketIdArgs {
    /// The ticket identifier.
    pub id: u64,
}

/// Arguments of `create_ticket`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct CreateTicketArgs {
    /// One-line summary.
    pub title: String,
    /// Free-form description.
    pub body: String,
}

/// Arguments of the `triage_ticket` prompt. Prompt arguments are strings on the wire, so the id
/// is parsed here rather than declared as a number.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct TriageArgs {
    /// The ticket identifier, as a decimal string.
    pub id: String,
}

/// The MCP handler. Cheap to clone: the store is shared and the routers are built once.
#[derive(Debug, Clone)]
pub(crate) struct TicketServer {
    store: Arc<Mutex<Store>>,
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
}

impl TicketServer {
    pub(crate) fn new() -> Self {
        Self {
            store: Arc::new(Mutex::new(Store::seeded())),
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }

    /// This server with the descriptions of some tools replaced (tool name → description), as
    /// an upstream that changes its definitions at run time does.
    pub(crate) fn with_descriptions(
        &self,
        edits: &std::collections::HashMap<String, String>,
    ) -> Self {
        let mut server = self.clone();
        for (name, description) in edits {
            if let Some(route) = server.tool_router.map.get_mut(name.as_str()) {
                route.attr.description = Some(description.clone().into());
            }
        }
        server
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is still safe to use.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn json_text<T: Serialize>(value: &T) -> Result<String, ErrorData> {
    serde_json::to_string_pretty(value)
        .map_err(|_| ErrorData::internal_error("could not serialize the result", None))
}

fn no_such_ticket(id: u64) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("no ticket with id {id}"))])
}

#[tool_router]
impl TicketServer {
    #[tool(
        description = "List tickets, optionally only those with the given status.",
        annotations(read_only_hint = true)
    )]
    fn list_tickets(
        &self,
        Parameters(args): Parameters<ListTicketsArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let tickets = self.store().with_status(args.status);
        tracing::debug!(count = tickets.len(), "list_tickets");
        Ok(CallToolResult::success(vec![ContentBlock::text(
            json_text(&tickets)?,
        )]))
    }

    #[tool(
        description = "Fetch one ticket by id.",
        annotations(read_only_hint = true)
    )]
    fn get_ticket(
        &self,
        Parameters(TicketIdArgs { id }): Parameters<TicketIdArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let ticket = self.store().tickets.get(&id).cloned();
        match ticket {
            Some(ticket) => Ok(CallToolResult::success(vec![ContentBlock::text(
                json_text(&ticket)?,
            )])),
            None => Ok(no_such_ticket(id)),
        }
    }

    #[tool(description = "Create a new open ticket and return it.")]
    fn create_ticket(
        &self,
        Parameters(CreateTicketArgs { title, body }): Parameters<CreateTicketArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let ticket = self.store().insert(title, body, TicketStatus::Open);
        tracing::info!(id = ticket.id, "ticket created");
        Ok(CallToolResult::success(vec![ContentBlock::text(
            json_text(&ticket)?,
        )]))
    }

    #[tool(
        description = "Delete a ticket by id and return the deleted ticket.",
        annotations(destructive_hint = true)
    )]
    fn delete_ticket(
        &self,
        Parameters(TicketIdArgs { id }): Parameters<TicketIdArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let removed = self.store().tickets.remove(&id);
        match removed {
            Some(ticket) => {
                tracing::info!(id, "ticket deleted");
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    json_text(&ticket)?,
                )]))
            }
            None => Ok(no_such_ticket(id)),
        }
    }
}

#[prompt_router]
impl TicketServer {
    #[prompt(
        name = "triage_ticket",
        description = "Ask the model to triage one ticket: severity, component and next step."
    )]
    async fn triage_ticket(
        &self,
        Parameters(TriageArgs { id }): Parameters<TriageArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        let parsed: u64 = id.trim().parse().map_err(|_| {
            ErrorData::invalid_params(format!("ticket id must be a number, got {id:?}"), None)
        })?;
        let ticket = self.store().tickets.get(&parsed).cloned().ok_or_else(|| {
            ErrorData::invalid_params(format!("no ticket with id {parsed}"), None)
        })?;
        let text = format!(
            "Triage ticket #{} ({:?}).\nTitle: {}\nBody: {}\n\nReply with a severity (low, medium, \
             high), the affected component and the next step.",
            ticket.id, ticket.status, ticket.title, ticket.body
        );
        Ok(
            GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
                .with_description(format!("Triage of ticket #{}", ticket.id)),
        )
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for TicketServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new(
            "demo-upstream",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions("An in-memory ticket system for gateway demos.")
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new(OPEN_TICKETS_URI, "open_tickets")
                .with_description("JSON list of all open tickets.")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != OPEN_TICKETS_URI {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {}", request.uri),
                None,
            ));
        }
        let open = self.store().with_status(Some(TicketStatus::Open));
        let contents = ResourceContents::text(json_text(&open)?, OPEN_TICKETS_URI)
            .with_mime_type("application/json");
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_store_has_two_open_and_one_closed_ticket() {
        let store = Store::seeded();
        assert_eq!(store.with_status(None).len(), 3);
        assert_eq!(store.with_status(Some(TicketStatus::Open)).len(), 2);
        assert_eq!(store.with_status(Some(TicketStatus::Closed)).len(), 1);
        assert_eq!(store.next_id, 4);
    }

    #[test]
    fn routers_expose_four_tools_and_one_prompt() {
        let server = TicketServer::new();
        let mut names: Vec<String> = server
            .tool_router
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "create_ticket",
                "delete_ticket",
                "get_ticket",
                "list_tickets"
            ]
        );
        assert_eq!(server.prompt_router.list_all().len(), 1);
    }
}
