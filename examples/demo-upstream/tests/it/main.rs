//! Integration tests of the demo upstream: rmcp clients of both protocol generations, raw HTTP
//! exchanges (the wire format the gateway has to forward) and the bearer-token check.

mod auth;
mod raw_http;
mod rmcp_clients;
mod support;
