//! Ledgerstack's usage server (DESIGN.md, spec/usage.md): the usage projection, period
//! arithmetic in the aggregation time zone, the usage record store and its queries, alerts and
//! quota.
//!
//! Architecture Invariant: nothing in this crate reads the wall clock; periods close on
//! period-close events appended by a scheduler.
//!
//! It is empty until the usage issue lands; the crate exists so the dependency direction
//! `usage → projections → engine` is fixed from the start.
