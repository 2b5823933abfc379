//! Ledgerstack's write side.
//!
//! - [`event`]: every event type, named on the wire as CloudStack names it, in its envelope;
//!   binary (bincode) and JSON Lines encodings; the hash chain.
//! - [`store`]: the [`store::EventStore`] trait (append with optimistic concurrency and
//!   idempotency, read, subscribe) and its backends.
//! - [`clock`], [`time`], [`ids`]: where "now" comes from, instants, derived event ids.
//!
//! Architecture Invariant: this crate depends on nothing else of Ledgerstack's, and nothing in it
//! reads the wall clock except [`clock::SystemClock`].

pub mod bench;
pub mod clock;
pub mod event;
pub mod ids;
pub mod secrets;
pub mod store;
pub mod time;
