//! The log writer: the state that appends to the log, and one group commit.
//!
//! A commit takes a batch of append requests, decides each one (idempotency, expected version,
//! sequencing: see [`crate::store::sequencer`]), encodes all their records into one buffer,
//! writes it with a single `write`, makes it durable with a single `fdatasync`, and only then
//! answers each request. Who runs a commit, and how requests are batched, is the
//! [`super::committer`]'s business. No acknowledgement is ever sent before the fsync that covers
//! it (checked on every reply).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{oneshot, watch};
use tracing::{error, info};
use uuid::Uuid;

use super::format::{self, SEGMENT_HEADER_LEN, SegmentHeader, encode_frame, mark_commit};
use super::fs::LogFs;
use super::histogram::{BATCH_BOUNDS_EVENTS, Histogram, LATENCY_BOUNDS_MICROS};
use super::id_filter::IdFilter;
use super::index::{Index, IndexEntry, IndexQueue, UnindexedTail};
use super::segments::{Location, SPARSE_EVERY, Segment, SegmentSet, segment_name};
use crate::clock::Clock;
use crate::event::{Position, StreamId};
use crate::store::sequencer::{
    self, ChainTip, Decision, PreparedEvent, SequencedEvent, SequencerView, StoredEvent,
};
use crate::store::{AppendOutcome, ExpectedVersion, StoreError};

/// An append waiting for the writer.
pub(crate) struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<PreparedEvent>,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// Counters the writer keeps for benchmarks and metrics.
#[derive(Debug)]
pub struct WriterStats {
    /// fdatasync calls that committed at least one event.
    pub fsyncs: AtomicU64,
    /// Events committed.
    pub events: AtomicU64,
    /// Append requests answered.
    pub appends: AtomicU64,
    /// Events per fdatasync: how well group commit shares fsyncs among concurrent appenders.
    pub fsync_batch_events: Histogram,
    /// Microseconds from an append's submission to its answer (queueing, write and fsync):
    /// what a command waits for the log.
    pub append_latency_micros: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            fsyncs: AtomicU64::default(),
            events: AtomicU64::default(),
            appends: AtomicU64::default(),
            fsync_batch_events: Histogram::new(BATCH_BOUNDS_EVENTS),
            append_latency_micros: Histogram::new(LATENCY_BOUNDS_MICROS),
        }
    }
}

/// What the writer knows to decide appends without waiting for sled: every stream touched since
/// open, and every event not yet confirmed in sled (including the batch being built).
struct WriterView {
    index: Arc<Index>,
    segments: Arc<SegmentSet>,
    /// Stream versions, authoritative for every stream appended to since open (the index holds
    /// the rest, since it is caught up before the writer starts).
    heads: HashMap<StreamId, u64>,
    /// Events the indexer has not confirmed yet, for idempotency checks.
    recent: HashMap<Uuid, StoredEvent>,
    /// `recent` in position order, to drop what the indexer has confirmed.
    recent_order: VecDeque<(u64, Uuid)>,
    /// Every id in the log (and possibly a few more): lets most new ids skip sled.
    filter: IdFilter,
}

impl SequencerView for WriterView {
    fn stream_version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        if let Some(&v) = self.heads.get(stream) {
            return Ok(v);
        }
        let v = self.index.stream_head(stream)?;
        self.heads.insert(stream.clone(), v);
        Ok(v)
    }

    fn find_event(&mut self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        if let Some(e) = self.recent.get(&id) {
            return Ok(Some(e.clone()));
        }
        if !self.filter.may_contain(&id) {
            return Ok(None);
        }
        let Some((_, location)) = self.index.lookup_id(&id)? else {
            return Ok(None);
        };
        let segment = self.segments.get(location.segment).ok_or_else(|| {
            StoreError::Index(format!("index names missing segment {}", location.segment))
        })?;
        let body = segment.read_record(location.offset)?;
        Ok(Some(format::decode_stored(&body)?))
    }

    fn note_sequenced(&mut self, stream: &StreamId, events: &[SequencedEvent]) {
        if let Some(last) = events.last() {
            self.heads.insert(stream.clone(), last.envelope.version);
        }
        for e in events {
            self.filter.insert(&e.envelope.id);
            self.recent.insert(e.envelope.id, e.stored());
            self.recent_order
                .push_back((e.envelope.position.0, e.envelope.id));
        }
    }
}

impl WriterView {
    fn forget_indexed(&mut self, watermark: u64) {
        while let Some(&(position, id)) = self.recent_order.front() {
            if position > watermark {
                break;
            }
            self.recent_order.pop_front();
            self.recent.remove(&id);
        }
    }
}

/// What a writer starts from, as recovery left the log.
pub(crate) struct WriterSetup {
    pub fs: Arc<dyn LogFs>,
    pub segments: Arc<SegmentSet>,
    /// The last segment, where appends go until it is full.
    pub active: Arc<Segment>,
    pub segment_bytes: u64,
    pub tip: ChainTip,
    pub clock: Arc<dyn Clock>,
    pub index: Arc<Index>,
    pub tail: Arc<UnindexedTail>,
    pub filter: IdFilter,
    pub index_queue: Arc<IndexQueue>,
    /// Last position in sled, published by the indexer.
    pub indexed_watermark: Arc<AtomicU64>,
    /// The committed head, for readers and subscribers.
    pub head: watch::Sender<Position>,
    pub stats: Arc<WriterStats>,
}

/// Everything the writer thread owns.
pub(crate) struct Writer {
    fs: Arc<dyn LogFs>,
    segments: Arc<SegmentSet>,
    active: Arc<Segment>,
    /// Bytes in the active segment: where the next batch is written.
    active_len: u64,
    segment_bytes: u64,
    tip: ChainTip,
    clock: Arc<dyn Clock>,
    tail: Arc<UnindexedTail>,
    index_queue: Arc<IndexQueue>,
    indexed_watermark: Arc<AtomicU64>,
    /// Dropped on close, which ends every subscription.
    head: Option<watch::Sender<Position>>,
    stats: Arc<WriterStats>,
    view: WriterView,
    /// Last position covered by a completed fsync: nothing past it may be acknowledged.
    synced_through: u64,
    /// A write or fsync failed: refuse everything until reopened.
    poisoned: bool,
    frames: Vec<u8>,
    body: Vec<u8>,
}

/// Where each record of a batch went, for the index.
struct Written {
    entries: Vec<IndexEntry>,
    sparse: Vec<(u64, Location)>,
}

impl Writer {
    /// A writer continuing the log from `setup`.
    pub(crate) fn new(setup: WriterSetup) -> Self {
        let active_len = setup.active.committed_len();
        let synced_through = setup.tip.last_position.0;
        Writer {
            view: WriterView {
                index: setup.index,
                segments: setup.segments.clone(),
                heads: HashMap::new(),
                recent: HashMap::new(),
                recent_order: VecDeque::new(),
                filter: setup.filter,
            },
            fs: setup.fs,
            segments: setup.segments,
            active: setup.active,
            active_len,
            segment_bytes: setup.segment_bytes,
            tip: setup.tip,
            clock: setup.clock,
            tail: setup.tail,
            index_queue: setup.index_queue,
            indexed_watermark: setup.indexed_watermark,
            head: Some(setup.head),
            stats: setup.stats,
            synced_through,
            poisoned: false,
            frames: Vec::with_capacity(1 << 16),
            body: Vec::with_capacity(1024),
        }
    }

    /// Events acknowledged but not yet in sled.
    pub(crate) fn unindexed(&self) -> u64 {
        index_backlog(self.synced_through, &self.indexed_watermark)
    }

    /// Ends every subscription (they see the store closed).
    pub(crate) fn end_subscriptions(&mut self) {
        self.head = None;
    }
}

/// Acknowledged events not yet in sled, given the acknowledged head and the index watermark.
pub(crate) fn index_backlog(acknowledged: u64, watermark: &AtomicU64) -> u64 {
    acknowledged.saturating_sub(watermark.load(Ordering::Acquire))
}

impl Writer {
    /// Saves the id filter, covering everything acknowledged, for the next open.
    pub(crate) fn save_filter(&self, path: &std::path::Path) {
        if self.poisoned {
            return;
        }
        if let Err(e) = self.view.filter.save(path, self.synced_through) {
            tracing::warn!(error = %e, "could not save the id filter; it will be rebuilt on open");
        }
    }

    /// Decides, writes, syncs and answers one group of requests.
    pub(crate) fn commit(&mut self, batch: Vec<AppendRequest>) {
        if self.poisoned {
            for request in batch {
                let _ = request.reply.send(Err(StoreError::Poisoned));
            }
            return;
        }
        self.view
            .forget_indexed(self.indexed_watermark.load(Ordering::Acquire));
        let now = self.clock.now();
        let mut replies = Vec::with_capacity(batch.len());
        let mut sequenced: Vec<SequencedEvent> = Vec::new();
        let mut frame_starts = Vec::new();
        self.frames.clear();
        let mut failure = None;
        for request in batch {
            let decided = sequencer::decide(
                &request.stream,
                request.expected,
                request.events,
                &mut self.view,
                &mut self.tip,
                now,
            );
            let result = match decided {
                Ok(Decision::Duplicate(outcome)) => Ok(outcome),
                Ok(Decision::Append(events, outcome)) => {
                    for event in events {
                        frame_starts.push(self.frames.len());
                        self.body.clear();
                        if let Err(e) = format::encode_body(&event, &mut self.body) {
                            failure.get_or_insert(StoreError::from(e));
                        }
                        encode_frame(&self.body, 0, &mut self.frames);
                        sequenced.push(event);
                    }
                    Ok(outcome)
                }
                Err(e) => Err(e),
            };
            replies.push((request.reply, result));
        }

        if !sequenced.is_empty() {
            let written = match failure {
                Some(e) => Err(e),
                None => self.write_and_sync(&frame_starts, &sequenced),
            };
            match written {
                Ok(written) => self.publish(written),
                Err(e) => {
                    // What reached the disk is unknown; the in-memory view already counts these
                    // events. Refuse everything until a reopen recovers the tail (fsyncgate).
                    error!(error = %e, "log write failed; refusing appends until reopened");
                    self.poisoned = true;
                    for (reply, result) in replies {
                        let _ = reply.send(result.and(Err(e.clone())));
                    }
                    return;
                }
            }
        }

        for (reply, result) in replies {
            if let Ok(outcome) = &result {
                // The promise of the whole store: never acknowledge what an fsync has not
                // covered.
                assert!(
                    outcome.last_position().0 <= self.synced_through,
                    "acknowledging position {} before the fsync covering it (synced through {})",
                    outcome.last_position(),
                    self.synced_through
                );
            }
            let _ = reply.send(result);
            self.stats.appends.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes the batch's records (marking the last as a commit), fsyncs, and says where each
    /// record went.
    fn write_and_sync(
        &mut self,
        frame_starts: &[usize],
        sequenced: &[SequencedEvent],
    ) -> Result<Written, StoreError> {
        if let Some(&last) = frame_starts.last() {
            mark_commit(&mut self.frames, last);
        }
        let first_position = sequenced[0].envelope.position.0;
        if self.active_len > SEGMENT_HEADER_LEN
            && self.active_len + self.frames.len() as u64 > self.segment_bytes
        {
            self.roll_over(first_position)?;
        }
        let base = self.active_len;
        self.active
            .file
            .write_all_at(&self.frames, base)
            .map_err(|e| StoreError::io("write", &self.active.path, e))?;
        self.active
            .file
            .sync_data()
            .map_err(|e| StoreError::io("fsync", &self.active.path, e))?;
        self.active_len += self.frames.len() as u64;
        self.synced_through = self.tip.last_position.0;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .events
            .fetch_add(sequenced.len() as u64, Ordering::Relaxed);
        self.stats
            .fsync_batch_events
            .observe(sequenced.len() as u64);

        let segment = self.active.first_position;
        let mut written = Written {
            entries: Vec::with_capacity(sequenced.len()),
            sparse: Vec::new(),
        };
        for (event, &start) in sequenced.iter().zip(frame_starts) {
            let position = event.envelope.position.0;
            let location = Location {
                segment,
                offset: base + start as u64,
            };
            if position % SPARSE_EVERY == 0 || position == segment {
                written.sparse.push((position, location));
            }
            written.entries.push(IndexEntry {
                id: event.envelope.id,
                stream: event.envelope.stream.clone(),
                version: event.envelope.version,
                position,
                location,
            });
        }
        Ok(written)
    }

    /// Makes the batch visible: to readers of the segment, the overlay, the indexer, and
    /// subscribers (in that order, so a subscriber woken by the head finds everything).
    fn publish(&mut self, written: Written) {
        for &(position, location) in &written.sparse {
            self.active.note_sparse(position, location.offset);
        }
        self.active.set_committed_len(self.active_len);
        self.tail.add(&written.entries);
        self.index_queue.push(written.entries, written.sparse);
        if let Some(head) = &self.head {
            head.send_replace(Position(self.synced_through));
        }
    }

    /// Starts a new segment whose first record will be at `first_position`. The new file and
    /// its header are durable (file and directory fsynced) before any record goes into it.
    fn roll_over(&mut self, first_position: u64) -> Result<(), StoreError> {
        let name = segment_name(first_position);
        let path = self.fs.path().join(&name);
        let file = self
            .fs
            .create(&name)
            .map_err(|e| StoreError::io("create", &path, e))?;
        let header = SegmentHeader { first_position }.encode();
        file.write_all_at(&header, 0)
            .map_err(|e| StoreError::io("write", &path, e))?;
        file.sync_data()
            .map_err(|e| StoreError::io("fsync", &path, e))?;
        self.fs
            .sync_dir()
            .map_err(|e| StoreError::io("fsync directory", self.fs.path(), e))?;
        let segment = Arc::new(Segment::new(first_position, path, file, SEGMENT_HEADER_LEN));
        self.segments.push(segment.clone());
        self.active = segment;
        self.active_len = SEGMENT_HEADER_LEN;
        info!(segment = %name, "log rolled over to a new segment");
        // Save the id filter now and then, so a reopen after a crash scans little of the log.
        self.index_queue
            .save_filter(Box::new(self.view.filter.clone()), self.synced_through);
        Ok(())
    }
}
