//! The embedded event store: Ledgerstack's default, with nothing to set up.
//!
//! A data directory holds `log/` (append-only segment files, the only durable truth) and
//! `index/` (sled trees and the id filter, caches rebuilt from the log whenever they are missing,
//! damaged or behind). `docs/storage.md` walks through the write path and the crash argument.

mod committer;
mod format;
pub mod fs;
pub mod histogram;
mod id_filter;
mod index;
pub mod scan;
mod segments;
mod writer;

#[cfg(test)]
mod sim_fs;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use self::committer::Committer;
use self::format::{SEGMENT_HEADER_LEN, SegmentHeader, TailVerdict, classify_tail};
use self::fs::{LogFs, OsFs, read_full_at};
use self::id_filter::IdFilter;
use self::index::{Index, IndexEntry, IndexQueue, Indexer, UnindexedTail};
use self::segments::{
    FrameReader, Location, SPARSE_EVERY, Segment, SegmentSet, parse_segment_name,
    segment_index_for, segment_name,
};
pub use self::writer::WriterStats;
use self::writer::{AppendRequest, Writer, WriterSetup};
use super::sequencer::{self, ChainTip};
use super::subscription::catch_up_then_live;
use super::{AppendOutcome, EventStore, EventStream, ExpectedVersion, StoreError};
use crate::clock::{Clock, SystemClock};
use crate::event::{NewEvent, Position, RecordedEvent, StreamId};

/// Bytes of the header at the start of every segment file (records follow it).
pub const SEGMENT_HEADER_BYTES: u64 = SEGMENT_HEADER_LEN;

/// How an embedded store is opened.
#[derive(Clone)]
pub struct EmbeddedOptions {
    /// A segment that reaches this size is closed and a new one started.
    pub segment_bytes: u64,
    /// Where recorded-at comes from.
    pub clock: Arc<dyn Clock>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            segment_bytes: 64 * 1024 * 1024,
            clock: Arc::new(SystemClock),
        }
    }
}

/// An event store in a data directory; clones share it. Open with [`EmbeddedStore::open`],
/// close with [`EmbeddedStore::close`] (dropping the last clone closes it too).
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    reader: Reader,
    committer: Arc<Committer>,
    index_queue: Arc<IndexQueue>,
    /// Last position the indexer has put in sled.
    indexed_watermark: Arc<AtomicU64>,
    filter_path: PathBuf,
    /// Writer and indexer threads, joined on close.
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    stats: Arc<WriterStats>,
    /// Held until the store closes: one process per log.
    lock_file: Mutex<Option<File>>,
}

/// What every read needs; cheap to clone into a blocking task.
#[derive(Clone)]
struct Reader {
    segments: Arc<SegmentSet>,
    index: Arc<Index>,
    tail: Arc<UnindexedTail>,
    head: watch::Receiver<Position>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The directory of segment files inside a data directory.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

/// The directory of the index inside a data directory.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`, recovering from a crash if there was
    /// one. Blocking: it may scan the tail of the log.
    pub fn open(data_dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let data_dir = data_dir.as_ref();
        let log = log_dir(data_dir);
        let fs = OsFs::new(&log).map_err(|e| StoreError::io("create", &log, e))?;
        let lock_path = log.join("LOCK");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io("open", &lock_path, e))?;
        lock_file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => StoreError::Locked {
                path: lock_path.clone(),
            },
            std::fs::TryLockError::Error(e) => StoreError::io("lock", &lock_path, e),
        })?;
        Self::open_on(Arc::new(fs), &index_dir(data_dir), options, Some(lock_file))
    }

    /// Opens the store over any file layer (the crash tests use one that loses unsynced data).
    pub(crate) fn open_on(
        fs: Arc<dyn LogFs>,
        index_dir: &Path,
        options: EmbeddedOptions,
        lock_file: Option<File>,
    ) -> Result<Self, StoreError> {
        let (segments, tip) = recover_segments(&fs)?;
        let segments = Arc::new(SegmentSet::new(segments));
        let index = Arc::new(Index::open(index_dir)?);
        let indexed_through = validate_index(&index, &segments, &tip)?;
        catch_up_index(&index, &segments, indexed_through, tip.last_position.0)?;
        let filter_path = index_dir.join("ids.filter");
        let filter = load_id_filter(&filter_path, &segments, tip.last_position.0)?;

        let (head_tx, head_rx) = watch::channel(tip.last_position);
        let tail = Arc::new(UnindexedTail::default());
        let watermark = Arc::new(AtomicU64::new(tip.last_position.0));
        let stats = Arc::new(WriterStats::default());
        let index_queue = Arc::new(IndexQueue::default());
        let indexer = Indexer {
            index: index.clone(),
            tail: tail.clone(),
            queue: index_queue.clone(),
            watermark: watermark.clone(),
            filter_path: filter_path.clone(),
        };
        let active = segments
            .snapshot()
            .last()
            .cloned()
            .ok_or_else(|| StoreError::Index("log has no segment after recovery".into()))?;
        let writer = Writer::new(WriterSetup {
            fs,
            segments: segments.clone(),
            active,
            segment_bytes: options.segment_bytes,
            tip,
            clock: options.clock,
            index: index.clone(),
            tail: tail.clone(),
            filter,
            index_queue: index_queue.clone(),
            indexed_watermark: watermark.clone(),
            head: head_tx,
            stats: stats.clone(),
        });
        let (committer, signals) = Committer::new(writer);
        let committer = Arc::new(committer);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::io("spawn thread", name, e))
        };
        let indexer_thread = spawn("ledgerstack-indexer", Box::new(move || indexer.run()))?;
        let writer_committer = committer.clone();
        let writer_thread = spawn(
            "ledgerstack-writer",
            Box::new(move || writer_committer.run_writer_thread(signals)),
        )?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                reader: Reader {
                    segments,
                    index,
                    tail,
                    head: head_rx,
                },
                committer,
                index_queue,
                indexed_watermark: watermark,
                filter_path,
                threads: Mutex::new(vec![writer_thread, indexer_thread]),
                closed: AtomicBool::new(false),
                stats,
                lock_file: Mutex::new(lock_file),
            }),
        })
    }

    /// Finishes pending appends, stops the writer and the indexer, flushes the index. Later
    /// appends fail with [`StoreError::Closed`] and subscriptions end. Blocking.
    pub fn close(&self) {
        self.inner.shutdown();
    }

    /// Acknowledged events the background indexer has not put in sled yet. Reads never wait for
    /// it (an in-memory overlay covers them); it only says how far behind the cache is.
    pub fn index_backlog(&self) -> u64 {
        writer::index_backlog(
            self.inner.reader.head.borrow().0,
            &self.inner.indexed_watermark,
        )
    }

    /// Group-commit counters (fsyncs, events, appends, batch sizes, append latency) since open.
    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    fn reader(&self) -> Reader {
        self.inner.reader.clone()
    }
}

impl Inner {
    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Commit what is queued, refuse the rest, end subscriptions, save the id filter; then
        // stop the indexer where it is (the next open catches the index up from the log).
        self.committer.close(&self.filter_path);
        self.index_queue.stop();
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for thread in threads {
            if thread.join().is_err() {
                warn!("a log thread panicked while shutting down");
            }
        }
        // Only now may another process (or a reopen) take the log.
        lock(&self.lock_file).take();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Creates an empty segment starting at `first_position`, durably (file and directory).
fn create_segment(fs: &Arc<dyn LogFs>, first_position: u64) -> Result<Arc<Segment>, StoreError> {
    let name = segment_name(first_position);
    let path = fs.path().join(&name);
    let file = fs
        .create(&name)
        .map_err(|e| StoreError::io("create", &path, e))?;
    file.write_all_at(&SegmentHeader { first_position }.encode(), 0)
        .map_err(|e| StoreError::io("write", &path, e))?;
    file.sync_data()
        .map_err(|e| StoreError::io("fsync", &path, e))?;
    fs.sync_dir()
        .map_err(|e| StoreError::io("fsync directory", fs.path(), e))?;
    Ok(Arc::new(Segment::new(
        first_position,
        path,
        file,
        SEGMENT_HEADER_LEN,
    )))
}

/// Finds the segments, checks their headers, and recovers the last one: a torn tail (an
/// unacknowledged group commit cut by a crash) is truncated; damage to acknowledged records is
/// an error. Returns the segments and the chain tip.
fn recover_segments(fs: &Arc<dyn LogFs>) -> Result<(Vec<Arc<Segment>>, ChainTip), StoreError> {
    let mut names: Vec<(u64, String)> = fs
        .list()
        .map_err(|e| StoreError::io("list", fs.path(), e))?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|first| (first, name)))
        .collect();
    names.sort();
    loop {
        let Some((first, name)) = names.last().cloned() else {
            return Ok((vec![create_segment(fs, 1)?], ChainTip::EMPTY));
        };
        let path = fs.path().join(&name);
        let file = fs
            .open(&name)
            .map_err(|e| StoreError::io("open", &path, e))?;
        let len = file.size().map_err(|e| StoreError::io("stat", &path, e))?;
        let mut data = vec![0u8; len as usize];
        read_full_at(file.as_ref(), &mut data, 0).map_err(|e| StoreError::io("read", &path, e))?;
        let corrupt = |offset, reason: String| StoreError::Corrupt {
            path: path.clone(),
            offset,
            reason,
        };
        match SegmentHeader::decode(&data) {
            Ok(header) if header.first_position == first => {}
            Ok(header) => {
                return Err(corrupt(
                    12,
                    format!("header says first position {}", header.first_position),
                ));
            }
            // A crash while starting a segment: nothing was ever written after its header.
            Err(defect) if len <= SEGMENT_HEADER_LEN => {
                warn!(segment = %name, %defect, "removing a segment whose creation was cut by a crash");
                remove_segment(fs, &name)?;
                names.pop();
                continue;
            }
            Err(defect) => return Err(corrupt(0, defect.to_string())),
        }

        let (frames, verdict) = classify_tail(&data);
        let kept_len = match verdict {
            TailVerdict::Clean => len,
            TailVerdict::Torn { keep, reason } => {
                warn!(segment = %name, bytes = len - keep, %reason, "cutting an unacknowledged torn tail");
                file.truncate(keep)
                    .map_err(|e| StoreError::io("truncate", &path, e))?;
                file.sync_data()
                    .map_err(|e| StoreError::io("fsync", &path, e))?;
                keep
            }
            TailVerdict::Corrupt { offset, reason } => return Err(corrupt(offset, reason)),
        };
        if frames.is_empty() && names.len() > 1 {
            // An empty last segment carries nothing; the one before it holds the tip.
            remove_segment(fs, &name)?;
            names.pop();
            continue;
        }

        let last = Arc::new(Segment::new(first, path.clone(), file, kept_len));
        let mut tip = ChainTip::EMPTY;
        if frames.is_empty() && first != 1 {
            return Err(corrupt(
                0,
                "the only segment does not start at position 1".into(),
            ));
        }
        for (expected, frame) in (first..).zip(&frames) {
            let start = frame.offset as usize + format::FRAME_HEADER_LEN;
            let body = &data[start..frame.offset as usize + frame.len - format::FRAME_TRAILER_LEN];
            let event = format::decode_event(body)
                .map_err(|e| corrupt(frame.offset, format!("undecodable record: {e}")))?;
            if event.envelope.position.0 != expected {
                return Err(corrupt(
                    frame.offset,
                    format!(
                        "record has position {}, expected {expected}",
                        event.envelope.position
                    ),
                ));
            }
            if expected % SPARSE_EVERY == 0 || expected == first {
                last.note_sparse(expected, frame.offset);
            }
            if expected == first + frames.len() as u64 - 1 {
                tip = ChainTip {
                    last_position: event.envelope.position,
                    last_recorded_at: event.envelope.recorded_at,
                    head_hash: event
                        .chain_hash()
                        .map_err(|e| corrupt(frame.offset, e.to_string()))?,
                };
            }
        }

        let mut segments = Vec::with_capacity(names.len());
        for (first, name) in &names[..names.len() - 1] {
            segments.push(open_sealed_segment(fs, *first, name)?);
        }
        segments.push(last);
        return Ok((segments, tip));
    }
}

/// Removes a segment file durably (the directory is fsynced).
fn remove_segment(fs: &Arc<dyn LogFs>, name: &str) -> Result<(), StoreError> {
    fs.remove(name)
        .map_err(|e| StoreError::io("remove", fs.path().join(name), e))?;
    fs.sync_dir()
        .map_err(|e| StoreError::io("fsync directory", fs.path(), e))
}

/// Opens a segment that is not the last one: it was complete and fsynced before the next began.
fn open_sealed_segment(
    fs: &Arc<dyn LogFs>,
    first: u64,
    name: &str,
) -> Result<Arc<Segment>, StoreError> {
    let path = fs.path().join(name);
    let file = fs
        .open(name)
        .map_err(|e| StoreError::io("open", &path, e))?;
    let len = file.size().map_err(|e| StoreError::io("stat", &path, e))?;
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    read_full_at(file.as_ref(), &mut header, 0).map_err(|e| StoreError::io("read", &path, e))?;
    match SegmentHeader::decode(&header) {
        Ok(h) if h.first_position == first => Ok(Arc::new(Segment::new(first, path, file, len))),
        Ok(h) => Err(StoreError::Corrupt {
            path,
            offset: 12,
            reason: format!("header says first position {}", h.first_position),
        }),
        Err(defect) => Err(StoreError::Corrupt {
            path,
            offset: 0,
            reason: defect.to_string(),
        }),
    }
}

/// Calls `visit` with the location and body of every record with position in `from..=until`,
/// in order, until it breaks.
fn for_each_record(
    segments: &[Arc<Segment>],
    from: u64,
    until: u64,
    mut visit: impl FnMut(Location, &[u8]) -> Result<ControlFlow<()>, StoreError>,
) -> Result<(), StoreError> {
    if from > until || segments.is_empty() {
        return Ok(());
    }
    let mut i = segment_index_for(segments, from);
    let mut offset = segments[i].seek(from);
    loop {
        let segment = &segments[i];
        let mut reader = FrameReader::new(segment, offset, segment.committed_len());
        while let Some((at, body)) = reader.next()? {
            let position = format::peek_position(body)
                .map_err(|e| segment.corrupt(at, format!("undecodable record: {e}")))?;
            if position < from {
                continue;
            }
            if position > until {
                return Ok(());
            }
            let location = Location {
                segment: segment.first_position,
                offset: at,
            };
            if visit(location, body)?.is_break() {
                return Ok(());
            }
        }
        i += 1;
        if i == segments.len() {
            return Ok(());
        }
        offset = SEGMENT_HEADER_LEN;
    }
}

/// Checks the index against the log; returns the position it is valid through (0 after
/// clearing it). Loads the persisted sparse read points into the segments.
fn validate_index(index: &Index, segments: &SegmentSet, tip: &ChainTip) -> Result<u64, StoreError> {
    let Some((position, id)) = index.watermark()? else {
        return Ok(0);
    };
    let snapshot = segments.snapshot();
    let last_first = snapshot.last().map_or(1, |s| s.first_position);
    for (point, location) in index.sparse_points()? {
        // The last segment's read points come from the recovery scan, which is authoritative.
        if location.segment < last_first
            && let Some(segment) = segments.get(location.segment)
        {
            segment.note_sparse(point, location.offset);
        }
    }
    let mut found = None;
    if position <= tip.last_position.0 {
        for_each_record(&snapshot, position, position, |_, body| {
            found = Some(format::decode_envelope(body)?.0.id);
            Ok(ControlFlow::Break(()))
        })?;
    }
    if found == Some(id) {
        return Ok(position);
    }
    warn!(
        watermark = position,
        "index disagrees with the log; rebuilding it from the log"
    );
    index.clear()?;
    for segment in &snapshot[..snapshot.len().saturating_sub(1)] {
        segment.clear_sparse();
    }
    Ok(0)
}

/// Indexes the records after `from` up to `through` (the index was behind the log).
fn catch_up_index(
    index: &Index,
    segments: &SegmentSet,
    from: u64,
    through: u64,
) -> Result<(), StoreError> {
    if from >= through {
        return Ok(());
    }
    info!(
        from = from + 1,
        through, "catching the index up with the log"
    );
    let snapshot = segments.snapshot();
    let mut entries = Vec::with_capacity(4096);
    let mut sparse = Vec::new();
    let flush = |entries: &mut Vec<IndexEntry>, sparse: &mut Vec<(u64, Location)>| {
        let result = index.apply(entries, sparse);
        entries.clear();
        sparse.clear();
        result
    };
    for_each_record(&snapshot, from + 1, through, |location, body| {
        let (envelope, _) = format::decode_envelope(body)?;
        if envelope.position % SPARSE_EVERY == 0 || envelope.position == location.segment {
            sparse.push((envelope.position, location));
            if let Some(segment) = segments.get(location.segment) {
                segment.note_sparse(envelope.position, location.offset);
            }
        }
        entries.push(IndexEntry {
            id: envelope.id,
            stream: envelope.stream,
            version: envelope.version,
            position: envelope.position,
            location,
        });
        if entries.len() >= 4096 {
            flush(&mut entries, &mut sparse)?;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    flush(&mut entries, &mut sparse)?;
    index.flush()
}

/// The id filter as saved, topped up with the ids logged after it was saved; rebuilt from the
/// whole log if the file is missing, damaged, or ahead of the log.
fn load_id_filter(
    path: &Path,
    segments: &SegmentSet,
    through: u64,
) -> Result<IdFilter, StoreError> {
    let (mut filter, covers) = match IdFilter::load(path) {
        Some((filter, covers)) if covers <= through => (filter, covers),
        _ => {
            if through > 0 {
                info!(events = through, "rebuilding the id filter from the log");
            }
            (IdFilter::new(), 0)
        }
    };
    for_each_record(&segments.snapshot(), covers + 1, through, |_, body| {
        filter.insert(&format::decode_envelope(body)?.0.id);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(filter)
}

impl Reader {
    fn read_all(&self, from: Position, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let committed = self.head.borrow().0;
        let from = from.0.max(1);
        let mut events = Vec::with_capacity(max.min(committed.saturating_sub(from) as usize + 1));
        if max == 0 {
            return Ok(events);
        }
        for_each_record(
            &self.segments.snapshot(),
            from,
            committed,
            |location, body| {
                let event = format::decode_event(body).map_err(|e| StoreError::Corrupt {
                    path: PathBuf::from(segment_name(location.segment)),
                    offset: location.offset,
                    reason: format!("undecodable record: {e}"),
                })?;
                events.push(event);
                Ok(if events.len() >= max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            },
        )?;
        Ok(events)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from_version = from_version.max(1);
        // The overlay first, then sled: entries move from the overlay to sled, never back, so
        // reading in this order cannot miss one that moves in between.
        let mut found = std::collections::BTreeMap::new();
        for (version, position, location) in self.tail.stream_entries(stream, from_version) {
            found.insert(version, (position, location));
        }
        for (version, position, location) in self.index.stream_entries(stream, from_version, max)? {
            found.insert(version, (position, location));
        }
        found
            .into_iter()
            .take(max)
            .map(|(version, (position, location))| {
                let segment = self.segments.get(location.segment).ok_or_else(|| {
                    StoreError::Index(format!("index names missing segment {}", location.segment))
                })?;
                let event = format::decode_event(&segment.read_record(location.offset)?)?;
                if event.envelope.position.0 != position
                    || event.envelope.version != version
                    || event.envelope.stream != *stream
                {
                    return Err(StoreError::Index(format!(
                        "index entry {stream} v{version} points at position {} of {} v{}",
                        event.envelope.position, event.envelope.stream, event.envelope.version
                    )));
                }
                Ok(event)
            })
            .collect()
    }

    fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let unindexed = self.tail.stream_head(stream).unwrap_or(0);
        Ok(unindexed.max(self.index.stream_head(stream)?))
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(StoreError::Closed))
}

#[async_trait::async_trait]
impl EventStore for EmbeddedStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let events = sequencer::prepare(stream, events)?;
        let (reply, answer) = oneshot::channel();
        // A monotonic interval for the latency metric, not a wall-clock reading.
        let submitted = std::time::Instant::now();
        // Commits right here if the writer is free (see `committer`), else waits for the batch.
        self.inner.committer.submit(AppendRequest {
            stream: stream.clone(),
            expected,
            events,
            reply,
        });
        let answered = answer.await.map_err(|_| StoreError::Closed)?;
        self.inner
            .stats
            .append_latency_micros
            .observe_micros(submitted.elapsed());
        answered
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let reader = self.reader();
        let stream = stream.clone();
        blocking(move || reader.read_stream(&stream, from_version, max_count)).await
    }

    async fn read_all(
        &self,
        from: Position,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let reader = self.reader();
        blocking(move || reader.read_all(from, max_count)).await
    }

    fn subscribe(&self, from: Position) -> EventStream {
        catch_up_then_live(self.clone(), self.inner.reader.head.clone(), from)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(*self.inner.reader.head.borrow())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let reader = self.reader();
        let stream = stream.clone();
        blocking(move || reader.stream_version(&stream)).await
    }
}
