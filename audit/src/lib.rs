//! Auditor tools over Ledgerstack's event log (`docs/auditors.md`).
//!
//! - [`export`] streams the log of a data directory, read-only and in constant memory, as JSON
//!   Lines in the external form of `docs/events.md`, ending with a [`Trailer`] line that carries
//!   the chain head.
//! - [`verify`] checks an export (plain or zstd-compressed) or a data directory: record CRCs,
//!   the hash chain, that every event decodes, and the log's invariants; it names the first
//!   line or position that does not check out.
//!
//! Neither opens the store: a running server holds the log's lock, and an auditor must be able
//! to read a copy of a data directory without changing a byte of it. Sealed secrets stay sealed:
//! events are exported as recorded, and nothing here holds a key.

pub mod export;
pub mod trailer;
pub mod verify;

pub use export::{Bound, ExportError, ExportSummary, Range, export};
pub use trailer::Trailer;
pub use verify::{VerifyError, VerifySummary, open_export, verify_data_dir, verify_export};
