//! Integration tests of authz-token: real keys in a TempDir, minted and hand-built tokens, a JWKS
//! served over loopback, and revocation stores on SQLite files and a real Postgres.

mod cache;
mod config;
mod exchange;
mod hostile;
mod layering;
mod mapping;
mod remote;
mod revocation;
mod roundtrip;
mod rules;
mod support;
