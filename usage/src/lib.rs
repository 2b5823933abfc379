//! Ledgerstack's usage server (DESIGN.md, spec/usage.md): the usage projection, period
//! arithmetic in the aggregation time zone, the usage record store and its queries.
//!
//! Architecture Invariant: nothing in this crate reads the wall clock; periods close on
//! `USAGE.CLOSE` events appended by a scheduler.
//!
//! Architecture Invariant: durations are integer milliseconds and quantities `rust_decimal`;
//! there is no float anywhere in the pipeline.

pub mod alerts;
pub mod bench;
pub mod delivery;
pub mod export;
pub mod fact;
pub mod facts;
pub mod ledger;
pub mod model;
pub mod period;
pub mod quota;
pub mod quota_watch;
pub mod scheduler;
pub mod task;
pub mod thresholds;
pub mod usage_type;
pub mod view;
