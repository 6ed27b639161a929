//! Integration tests of the gateway over real loopback HTTP: a real demo upstream (rmcp), real
//! tokens, the repository's Casbin policy, and real SQLite / Postgres audit stores.

mod approvals;
mod binary;
mod conditions;
mod conformance;
mod connections;
mod crash;
mod denials;
mod deploy;
mod differential;
mod exchange;
mod floods;
mod harness;
mod hostile;
mod http2;
mod identity;
mod input_requests;
mod live_policy;
mod metrics;
mod mrtr;
mod outage;
mod param_headers;
mod peers;
mod pins;
mod pipeline;
mod proxy;
mod quotas;
mod replicas;
mod shadow;
mod shipping;
mod stdio;
mod tasks;
mod telemetry;
mod tls;
mod transport;
mod virtual_servers;
