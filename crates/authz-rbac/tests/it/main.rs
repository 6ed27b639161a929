//! Integration tests of authz-rbac: decision tables, behaviour, reloads and the SQL stores.

mod approvals;
mod behaviour;
mod bindings;
mod common;
mod conditions;
mod decisions;
mod equivalence;
mod generate;
mod history;
mod lint;
mod pins;
mod reload;
mod shadow;
mod store;
mod watch;
