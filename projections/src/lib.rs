//! Ledgerstack's read side (DESIGN.md): the projection runner (checkpoints, catch-up, rebuild)
//! the read models behind every list and query command, the hypervisor driver trait with its
//! simulator, and the orchestrator that turns requested actions into driver commands.
//!
//! Architecture Invariant: this crate reads the log only through `engine::store::EventStore`,
//! never reads the wall clock (times come from events), and never iterates a hash map into
//! output: every table is a `BTreeMap`, so the same log always gives the same read models.

pub mod catalog;
pub mod compute;
pub mod configuration;
pub mod driver;
pub mod event_history;
pub mod identity;
pub mod infrastructure;
pub mod jobs;
pub mod network;
pub mod orchestration;
pub mod orchestrator;
pub mod router_commands;
pub mod runner;
pub mod storage;
pub mod table;

use engine::store::StoreError;

pub use runner::{ReadModels, RunnerHandle, State};

/// Why the read side failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The log could not be read.
    #[error("reading the event log: {0}")]
    Store(#[from] StoreError),
    /// The read-model store could not be opened, read or written.
    #[error("read-model store: {0}")]
    Sled(#[from] sled::Error),
    /// A row could not be encoded.
    #[error("encoding a row of {table}: {message}")]
    Encode {
        /// The table.
        table: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A stored row could not be decoded (the store is then rebuilt from the log).
    #[error("decoding a row of {table}: {message}")]
    Decode {
        /// The table.
        table: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The runner stopped (the store closed or the server is shutting down).
    #[error("the projection runner stopped")]
    Stopped,
    /// A partial rebuild was asked for no table at all.
    #[error("no read-model table matches what was asked to rebuild")]
    NothingSelected,
}
