//! Ledgerstack's CloudStack-compatible HTTP API (spec/api.md): request parsing, signing and
//! sessions, authorization, routing each command to an engine decision or a read model, and
//! CloudStack's response envelopes.
//!
//! Architecture Invariant: only this crate knows about HTTP, and it maps each domain error to a
//! CloudStack error code in exactly one place ([`error::ApiError`]).

pub mod allocation;
pub mod app;
pub mod bench;
pub mod bootstrap;
pub mod call;
pub mod commands;
pub mod context;
pub mod error;
pub mod historical;
pub mod jobs;
pub mod lifecycle_bench;
pub mod metrics;
pub mod network_implementation;
pub mod protocol;
pub mod registry;
pub mod response;
pub mod rule_conflicts;
pub mod server;
pub mod usage_download;
