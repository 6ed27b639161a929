//! Integration tests of `authzctl`: every command driven through `execute` against real files,
//! a real SQLite file and (when DATABASE_URL is set) a fresh Postgres database.

mod approvals;
mod audit;
mod common;
mod conditions;
mod errors;
mod keys;
mod lifecycle;
mod policy;
mod replay;
mod revoke;
mod roles;
mod snapshots;
mod tools;
mod trail;
