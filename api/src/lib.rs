//! Ledgerstack's CloudStack-compatible HTTP API (spec/api.md): request parsing, signing and
//! sessions, authorization, routing each command to an engine decision or a read model, and
//! CloudStack's response envelopes.
//!
//! Architecture Invariant: only this crate knows about HTTP, and it maps each domain error to a
//! CloudStack error code in exactly one place.
//!
//! It is empty until the API issue lands; the crate exists so the dependency direction
//! `api → usage, projections, engine` is fixed from the start.
