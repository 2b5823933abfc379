//! Auditor tools over Ledgerstack's event log (`docs/auditors.md`).
//!
//! - [`export`] streams the log of a data directory, read-only and in constant memory, as JSON
//!   Lines in the external form of `docs/events.md`, ending with a [`Trailer`] line that carries
//!   the chain head.
//! - [`verify`] checks an export (plain or zstd-compressed) or a data directory: record CRCs,
//!   the hash chain, that every event decodes, and the log's invariants; it names the first
//!   line or position that does not check out.
//! - [`inspect`] finds one event by position or id, with its record's place, its hashes and
//!   the other events of the same request or job.
//! - [`tail`] prints the last events, filtered by type or stream, and follows a running
//!   server's appends.
//! - [`point_in_time`] replays the log into the read models as they were at a moment (by
//!   occurred-at or position, optionally as known at a recorded-at).
//! - [`backup`] copies a consistent, checked prefix of a running server's log with its master
//!   key and admin credentials, and a manifest; [`restore`] checks one and puts it back.
//!
//! None opens the store: a running server holds the log's lock, and an auditor must be able
//! to read a copy of a data directory without changing a byte of it. Sealed secrets stay sealed:
//! events are exported and backed up as recorded, and nothing here opens one (a backup copies
//! the master key file as a file).

pub mod backup;
pub mod export;
pub mod inspect;
mod parallel;
pub mod point_in_time;
pub mod tail;
pub mod trailer;
pub mod verify;

pub use backup::{BackupError, BackupSummary, Manifest, RestoreSummary, backup, restore};
pub use export::{Bound, ExportError, ExportSummary, Range, export};
pub use inspect::{InspectError, Inspection, Target, inspect};
pub use point_in_time::{At, Moment, ReplayError, ReplaySummary};
pub use tail::{Filter, Format, TailError, TailOptions, TypePattern, tail};
pub use trailer::Trailer;
pub use verify::{VerifyError, VerifySummary, open_export, verify_data_dir, verify_export};
