//! The stream index in sled, the background indexer that maintains it, and the overlay that
//! covers what the indexer has not reached yet.
//!
//! sled costs around ten microseconds per insert here, more than the writer can spend per event
//! and still keep up with group commit; so the writer never waits for it. After each fsync the
//! writer puts the batch's entries into the [`UnindexedTail`] overlay and hands them to the
//! indexer thread, which writes them to sled, then records its watermark, then drops them from
//! the overlay. Readers look in the overlay first and sled second, so every acknowledged event
//! is always found in at least one of them.
//!
//! The index is a cache (DESIGN.md invariant 1): its watermark names the last position it holds
//! and that event's id; on open, an index that is missing, unreadable, of another format, or
//! whose watermark the log does not confirm is rebuilt from the segments.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};
use uuid::Uuid;

use super::id_filter::IdFilter;
use super::segments::Location;
use crate::event::StreamId;
use crate::store::StoreError;

/// Bumped whenever the layout of the index trees changes; an index of another version is
/// rebuilt.
const INDEX_FORMAT: u32 = 1;

/// One event's index entry.
#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    pub id: Uuid,
    pub stream: StreamId,
    pub version: u64,
    pub position: u64,
    pub location: Location,
}

/// The sled database and its trees.
pub(crate) struct Index {
    db: sled::Db,
    /// event id → position, location
    ids: sled::Tree,
    /// stream key ++ version (big-endian) → position, location
    streams: sled::Tree,
    /// position (big-endian) → location, for the sparse read index
    sparse: sled::Tree,
    /// `format` → u32; `watermark` → position ++ event id
    meta: sled::Tree,
}

fn index_error(e: sled::Error) -> StoreError {
    StoreError::Index(e.to_string())
}

/// The key prefix of a stream: its category, a zero byte (categories never contain one), then
/// a marker and the aggregate id, so that no stream's keys are a prefix of another's.
fn stream_key(stream: &StreamId) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.category().len() + 18 + 8);
    key.extend_from_slice(stream.category().as_bytes());
    key.push(0);
    match stream.id() {
        Some(id) => {
            key.push(1);
            key.extend_from_slice(id.as_bytes());
        }
        None => key.push(0),
    }
    key
}

fn encode_location(position: u64, location: Location) -> [u8; 24] {
    let mut value = [0u8; 24];
    value[0..8].copy_from_slice(&position.to_be_bytes());
    value[8..16].copy_from_slice(&location.segment.to_be_bytes());
    value[16..24].copy_from_slice(&location.offset.to_be_bytes());
    value
}

fn decode_u64(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

fn decode_location(value: &[u8]) -> Result<(u64, Location), StoreError> {
    match (
        decode_u64(value, 0),
        decode_u64(value, 8),
        decode_u64(value, 16),
    ) {
        (Some(position), Some(segment), Some(offset)) => {
            Ok((position, Location { segment, offset }))
        }
        _ => Err(StoreError::Index(format!(
            "index value of {} bytes, expected 24",
            value.len()
        ))),
    }
}

impl Index {
    /// Opens the index in `dir`; an index that cannot be opened is deleted and created afresh
    /// (it is only a cache of the log).
    pub(crate) fn open(dir: &Path) -> Result<Index, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            // No periodic fsync of its own: its writes competed with the log's fsyncs, and the
            // index need not be durable (flushed on close, caught up from the log on open).
            .flush_every_ms(None);
        let db = match config.open() {
            Ok(db) => db,
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(StoreError::Locked { path: dir.into() });
            }
            Err(e) => {
                warn!(index = %dir.display(), error = %e, "index unreadable, rebuilding it from the log");
                std::fs::remove_dir_all(dir).map_err(|e| StoreError::io("remove", dir, e))?;
                config.open().map_err(index_error)?
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(index_error);
        let index = Index {
            ids: tree("ids")?,
            streams: tree("streams")?,
            sparse: tree("sparse")?,
            meta: tree("meta")?,
            db,
        };
        let format = index.meta.get("format").map_err(index_error)?;
        match format.as_deref() {
            Some(bytes) if bytes == INDEX_FORMAT.to_le_bytes() => {}
            found => {
                if found.is_some() {
                    warn!("index has another format, rebuilding it from the log");
                }
                index.clear()?;
            }
        }
        Ok(index)
    }

    /// Empties the index (it will be rebuilt from the log).
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        for tree in [&self.ids, &self.streams, &self.sparse, &self.meta] {
            tree.clear().map_err(index_error)?;
        }
        self.meta
            .insert("format", &INDEX_FORMAT.to_le_bytes())
            .map_err(index_error)?;
        Ok(())
    }

    /// The last position indexed and the id of the event there.
    pub(crate) fn watermark(&self) -> Result<Option<(u64, Uuid)>, StoreError> {
        let Some(value) = self.meta.get("watermark").map_err(index_error)? else {
            return Ok(None);
        };
        match (decode_u64(&value, 0), value.get(8..24)) {
            (Some(position), Some(id)) => Ok(Some((
                position,
                Uuid::from_slice(id).map_err(|e| StoreError::Index(e.to_string()))?,
            ))),
            _ => Err(StoreError::Index("damaged watermark".into())),
        }
    }

    /// Writes entries (and sparse read points), then moves the watermark to the last entry.
    pub(crate) fn apply(
        &self,
        entries: &[IndexEntry],
        sparse: &[(u64, Location)],
    ) -> Result<(), StoreError> {
        for entry in entries {
            let value = encode_location(entry.position, entry.location);
            self.ids
                .insert(entry.id.as_bytes(), &value[..])
                .map_err(index_error)?;
            let mut key = stream_key(&entry.stream);
            key.extend_from_slice(&entry.version.to_be_bytes());
            self.streams.insert(key, &value[..]).map_err(index_error)?;
        }
        for (position, location) in sparse {
            let value = encode_location(*position, *location);
            self.sparse
                .insert(position.to_be_bytes(), &value[8..])
                .map_err(index_error)?;
        }
        if let Some(last) = entries.last() {
            let mut mark = [0u8; 24];
            mark[0..8].copy_from_slice(&last.position.to_be_bytes());
            mark[8..24].copy_from_slice(last.id.as_bytes());
            self.meta
                .insert("watermark", &mark[..])
                .map_err(index_error)?;
        }
        Ok(())
    }

    /// Where the event with this id is.
    pub(crate) fn lookup_id(&self, id: &Uuid) -> Result<Option<(u64, Location)>, StoreError> {
        match self.ids.get(id.as_bytes()).map_err(index_error)? {
            Some(value) => decode_location(&value).map(Some),
            None => Ok(None),
        }
    }

    /// The stream's last indexed version (0 if none).
    pub(crate) fn stream_head(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let prefix = stream_key(stream);
        match self.streams.scan_prefix(&prefix).next_back() {
            Some(item) => {
                let (key, _) = item.map_err(index_error)?;
                decode_u64(&key, prefix.len())
                    .ok_or_else(|| StoreError::Index("damaged stream key".into()))
            }
            None => Ok(0),
        }
    }

    /// Indexed entries of `stream` with version in `from..` (at most `max`): (version,
    /// position, location).
    pub(crate) fn stream_entries(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<(u64, u64, Location)>, StoreError> {
        let prefix = stream_key(stream);
        let mut start = prefix.clone();
        start.extend_from_slice(&from_version.to_be_bytes());
        let mut end = prefix.clone();
        end.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        for item in self.streams.range(start..=end).take(max) {
            let (key, value) = item.map_err(index_error)?;
            let version = decode_u64(&key, prefix.len())
                .ok_or_else(|| StoreError::Index("damaged stream key".into()))?;
            let (position, location) = decode_location(&value)?;
            out.push((version, position, location));
        }
        Ok(out)
    }

    /// Every sparse read point, in position order.
    pub(crate) fn sparse_points(&self) -> Result<Vec<(u64, Location)>, StoreError> {
        self.sparse
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(index_error)?;
                let position = decode_u64(&key, 0)
                    .ok_or_else(|| StoreError::Index("damaged sparse key".into()))?;
                let mut full = [0u8; 24];
                full[8..].copy_from_slice(
                    value
                        .get(..16)
                        .ok_or_else(|| StoreError::Index("damaged sparse value".into()))?,
                );
                decode_location(&full).map(|(_, l)| (position, l))
            })
            .collect()
    }

    /// Makes everything written so far durable in sled.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(index_error)
    }
}

/// Index entries that are acknowledged but not yet in sled, by stream, for readers.
#[derive(Default)]
pub(crate) struct UnindexedTail {
    inner: Mutex<TailEntries>,
}

#[derive(Default)]
struct TailEntries {
    by_stream: HashMap<StreamId, BTreeMap<u64, (u64, Location)>>,
    /// (position, stream, version) in position order, to drop entries once indexed.
    order: VecDeque<(u64, StreamId, u64)>,
}

impl UnindexedTail {
    fn lock(&self) -> MutexGuard<'_, TailEntries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(&self, entries: &[IndexEntry]) {
        let mut tail = self.lock();
        for e in entries {
            tail.by_stream
                .entry(e.stream.clone())
                .or_default()
                .insert(e.version, (e.position, e.location));
            tail.order
                .push_back((e.position, e.stream.clone(), e.version));
        }
    }

    /// Drops entries at or before `position` (they are in sled now).
    pub(crate) fn drop_through(&self, position: u64) {
        let mut tail = self.lock();
        while tail.order.front().is_some_and(|(p, _, _)| *p <= position) {
            if let Some((_, stream, version)) = tail.order.pop_front()
                && let Some(versions) = tail.by_stream.get_mut(&stream)
            {
                versions.remove(&version);
                if versions.is_empty() {
                    tail.by_stream.remove(&stream);
                }
            }
        }
    }

    /// Unindexed entries of `stream` with version ≥ `from_version`.
    pub(crate) fn stream_entries(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Vec<(u64, u64, Location)> {
        self.lock()
            .by_stream
            .get(stream)
            .map(|versions| {
                versions
                    .range(from_version..)
                    .map(|(&v, &(p, l))| (v, p, l))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The stream's last unindexed version, if any.
    pub(crate) fn stream_head(&self, stream: &StreamId) -> Option<u64> {
        self.lock()
            .by_stream
            .get(stream)
            .and_then(|v| v.keys().next_back().copied())
    }
}

/// Work handed from the writer to the indexer thread.
///
/// Indexing is deferred work, and it waits for a quiet moment: sled's CPU and disk traffic
/// measurably slow the fsyncs that appends wait for (it runs exactly when an appender's CPU is
/// idle, during its fsync). So the indexer applies a chunk only when no commit has happened for
/// [`QUIET`], or when [`DEFER_LIMIT`] entries are waiting (then it indexes while appends go on);
/// the committer's own bound on the backlog caps how far behind it can fall. The writer never
/// wakes the indexer: it only appends to the queue under a short lock.
#[derive(Default)]
pub(crate) struct IndexQueue {
    pending: Mutex<PendingWork>,
    ready: Condvar,
    /// Set on close: stop between chunks rather than index the whole backlog first.
    stopping: AtomicBool,
}

#[derive(Default)]
struct PendingWork {
    entries: VecDeque<IndexEntry>,
    sparse: VecDeque<(u64, Location)>,
    /// The latest copy of the id filter to save, and the position it covers.
    filter: Option<(Box<IdFilter>, u64)>,
    /// When the writer last queued entries (a commit happened).
    last_push: Option<Instant>,
}

/// Appends are considered over once no commit happened for this long.
const QUIET: Duration = Duration::from_millis(10);
/// Beyond this many waiting entries the indexer stops waiting for quiet.
const DEFER_LIMIT: usize = 100_000;
/// Entries applied to sled at a time; between chunks the indexer checks again for quiet and for
/// a stop request, so it yields to appends and closes promptly.
const APPLY_CHUNK: usize = 4096;

impl IndexQueue {
    fn lock(&self) -> MutexGuard<'_, PendingWork> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues acknowledged events (and sparse read points) for indexing.
    pub(crate) fn push(&self, entries: Vec<IndexEntry>, sparse: Vec<(u64, Location)>) {
        let mut pending = self.lock();
        pending.entries.extend(entries);
        pending.sparse.extend(sparse);
        pending.last_push = Some(Instant::now());
    }

    /// Queues a copy of the id filter to save.
    pub(crate) fn save_filter(&self, filter: Box<IdFilter>, covers_through: u64) {
        self.lock().filter = Some((filter, covers_through));
        self.ready.notify_one();
    }

    /// Asks the indexer to stop as soon as it can.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _guard = self.lock();
        self.ready.notify_one();
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Waits until there is work and it is time to do it (quiet, or too much waiting, or a
    /// filter to save), then takes up to one chunk of entries, their sparse points and the filter.
    fn take(&self) -> IndexWork {
        let mut pending = self.lock();
        loop {
            if self.is_stopping() {
                return IndexWork::default();
            }
            let quiet = pending.last_push.is_none_or(|t| t.elapsed() >= QUIET);
            let due =
                !pending.entries.is_empty() && (quiet || pending.entries.len() >= DEFER_LIMIT);
            if due || pending.filter.is_some() {
                break;
            }
            let wait = if pending.entries.is_empty() {
                QUIET * 10
            } else {
                QUIET
            };
            pending = self
                .ready
                .wait_timeout(pending, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let n = pending.entries.len().min(APPLY_CHUNK);
        let entries: Vec<IndexEntry> = pending.entries.drain(..n).collect();
        let last = entries.last().map_or(0, |e| e.position);
        let mut sparse = Vec::new();
        while pending.sparse.front().is_some_and(|(p, _)| *p <= last) {
            sparse.extend(pending.sparse.pop_front());
        }
        IndexWork {
            entries,
            sparse,
            filter: pending.filter.take(),
        }
    }
}

/// One helping of work for the indexer.
#[derive(Default)]
struct IndexWork {
    /// Consecutive entries, at most [`APPLY_CHUNK`].
    entries: Vec<IndexEntry>,
    /// Sparse read points among them.
    sparse: Vec<(u64, Location)>,
    /// A copy of the id filter to save, with the position it covers.
    filter: Option<(Box<IdFilter>, u64)>,
}

/// The indexer thread: applies queued work in order until told to stop, then flushes sled.
pub(crate) struct Indexer {
    pub index: Arc<Index>,
    pub tail: Arc<UnindexedTail>,
    pub queue: Arc<IndexQueue>,
    /// Last position in sled, read by the writer to prune its own recent-id map.
    pub watermark: Arc<AtomicU64>,
    pub filter_path: PathBuf,
}

impl Indexer {
    pub(crate) fn run(self) {
        run_in_background();
        while !self.queue.is_stopping() {
            let work = self.queue.take();
            if let Some(last) = work.entries.last().map(|e| e.position) {
                if let Err(e) = self.index.apply(&work.entries, &work.sparse) {
                    // Never move the watermark past a hole. The overlay keeps serving what is not
                    // indexed; the committer's backlog bound eventually holds appends; a reopen
                    // catches the index up from the segments.
                    error!(error = %e, "index update failed; indexing stops until the store is reopened");
                    break;
                }
                self.watermark.store(last, Ordering::Release);
                self.tail.drop_through(last);
                debug!(watermark = last, indexed = work.entries.len(), "indexed");
            }
            if let Some((filter, covers)) = work.filter
                && let Err(e) = filter.save(&self.filter_path, covers)
            {
                warn!(error = %e, "could not save the id filter; it will be rebuilt on open");
            }
        }
        if let Err(e) = self.index.flush() {
            warn!(error = %e, "index flush failed; it will be caught up from the log on open");
        }
    }
}

/// Lets the calling thread run only when no other thread wants the CPU (Linux `SCHED_IDLE`).
/// Indexing is deferred work: during a burst of appends it must not take CPU from the appenders,
/// and it catches up as soon as they pause (the committer bounds how far behind it may fall).
#[allow(unsafe_code)]
fn run_in_background() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is initialised and outlives the call;
    // lowering one's own scheduling class needs no privilege and affects nothing else.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        debug!(error = %std::io::Error::last_os_error(), "indexer keeps normal priority");
    }
}
