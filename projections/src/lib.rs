//! Ledgerstack's read side (DESIGN.md): the projection runner (checkpoints, catch-up, rebuild),
//! the state read models behind every list command, the orchestrator that turns log events into
//! hypervisor and network driver commands, and the simulator drivers.
//!
//! Architecture Invariant: this crate reads the log only through `engine::store::EventStore`
//! and never appends an event whose id is not derived from its cause (DESIGN.md invariant 9).
//!
//! It is empty until the compute issue lands; the crate exists so the dependency direction
//! `projections → engine` is fixed from the start.
