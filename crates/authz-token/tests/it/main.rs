//! Integration tests of authz-token: real keys in a TempDir, minted and hand-built tokens.

mod config;
mod hostile;
mod mapping;
mod roundtrip;
mod support;
