//! The event log: the [`EventStore`] trait and its backends.
//!
//! - [`memory::MemoryStore`]: in memory, for fast unit tests; held to the same conformance suite.
//! - [`embedded::EmbeddedStore`]: the default. Append-only segment files with per-record CRCs and
//!   the hash chain, a group-commit writer, and a sled index (see `docs/storage.md`).
//!
//! The trait is shaped so that a NATS JetStream backend and an EventStoreDB backend can implement
//! it without changing callers: positions are only promised to increase, never to be contiguous;
//! the store, not the caller, assigns position, version, recorded-at and the previous hash.

pub mod embedded;
pub mod memory;
mod sequencer;
mod subscription;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use uuid::Uuid;

use crate::event::{CodecError, NewEvent, Position, RecordedEvent, StreamId};

/// A stream of events in position order: what [`EventStore::subscribe`] returns.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RecordedEvent, StoreError>> + Send>>;

/// What the caller believes the stream's version to be (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version (its number of events).
    Exact(u64),
}

impl ExpectedVersion {
    fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The result of a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Positions of the events, in the order given. For a duplicate append, the positions where
    /// the events were first stored.
    pub positions: Vec<Position>,
    /// The stream's version after the last of these events.
    pub stream_version: u64,
    /// Every event id was already stored (with the same payload): nothing was appended.
    pub deduplicated: bool,
}

impl AppendOutcome {
    /// Position of the last event of the append: what a reader must have reached to see it all.
    pub fn last_position(&self) -> Position {
        self.positions.last().copied().unwrap_or_default()
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency: another writer got there first.
    #[error(
        "wrong expected version for stream {stream}: expected {expected}, stream is at version {actual}"
    )]
    WrongExpectedVersion {
        /// The stream.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// What the stream is at.
        actual: u64,
    },
    /// An event id is already stored, with a different payload or in another stream.
    #[error("event {id} is already stored at position {position} with a different payload")]
    IdConflict {
        /// The event id.
        id: Uuid,
        /// Where it is stored.
        position: Position,
    },
    /// Some events of the append are already stored and others are not: a batch is all new or
    /// all duplicates, so the whole append is refused.
    #[error("append to {stream} mixes {duplicates} already stored events with {new} new ones")]
    PartialDuplicate {
        /// The stream.
        stream: StreamId,
        /// How many were already stored.
        duplicates: usize,
        /// How many were new.
        new: usize,
    },
    /// The same event id appears twice in one append.
    #[error("event {id} appears more than once in one append")]
    DuplicateIdInAppend {
        /// The event id.
        id: Uuid,
    },
    /// An append with no events.
    #[error("append to {stream} has no events")]
    EmptyAppend {
        /// The stream.
        stream: StreamId,
    },
    /// An event too large for one log record.
    #[error("event {id} encodes to {size} bytes, more than the {limit} a record may hold")]
    EventTooLarge {
        /// The event id.
        id: Uuid,
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An event could not be encoded or a record could not be decoded.
    #[error("{0}")]
    Codec(Arc<CodecError>),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// Acknowledged data is damaged: the log refuses to open or read rather than lose it.
    #[error("log corrupt in {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The index (a rebuildable cache) failed.
    #[error("index: {0}")]
    Index(String),
    /// Another process holds the log.
    #[error(
        "{path} is locked by another process (is a ledgerstack server running on this data directory?)"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A write or fsync failed earlier; what reached the disk is unknown, so the store refuses
    /// further appends until it is reopened (and recovery has looked at the tail).
    #[error("the log stopped accepting appends after a failed write or fsync; reopen it")]
    Poisoned,
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Codec(Arc::new(e))
    }
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// An append-only log of typed events with per-stream optimistic concurrency.
///
/// Promises (held by the conformance suite in `engine/tests/conformance.rs` for every backend):
/// - `append` is atomic (all events or none), returns only once the events are durable, checks
///   the expected version, and is idempotent by event id (see [`StoreError::IdConflict`] and
///   [`StoreError::PartialDuplicate`]).
/// - Positions strictly increase in commit order; a stream's versions are 1, 2, 3, ...
/// - `read_all` returns exactly the acknowledged events in commit order; `subscribe` yields every
///   event from a position once and in order, catching up and then following live appends.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its version satisfies `expected`.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Up to `max_count` events of `stream` with version ≥ `from_version`, in version order.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `max_count` events with position ≥ `from`, in position order.
    async fn read_all(
        &self,
        from: Position,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Every event with position ≥ `from`: first those already stored, then new ones as they
    /// are acknowledged, each exactly once, in position order. The stream ends with
    /// [`StoreError::Closed`] when the store closes.
    fn subscribe(&self, from: Position) -> EventStream;

    /// Position of the last acknowledged event (`Position::START` for an empty log).
    async fn head(&self) -> Result<Position, StoreError>;

    /// Current version of `stream` (0 if it has no events).
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError>;
}
