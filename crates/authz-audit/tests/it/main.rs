//! Integration tests of the audit store against real databases: a SQLite file in a temporary
//! directory always, and Postgres when `DATABASE_URL` is set (a fresh database per test).

mod db;
mod store;
