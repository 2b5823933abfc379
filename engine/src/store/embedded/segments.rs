//! The segment files of a log and reading records out of them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::format::{FRAME_HEADER_LEN, FRAME_TRAILER_LEN, Frame, SEGMENT_HEADER_LEN, parse_frame};
use super::fs::{LogFile, read_full_at};
use crate::store::StoreError;

/// A record whose position is a multiple of this gets an entry in its segment's sparse index,
/// so a read starting anywhere skips at most this many records.
pub(crate) const SPARSE_EVERY: u64 = 128;

/// How much a reader asks the file for at once.
const READ_CHUNK: usize = 256 * 1024;

/// The file name of the segment whose first record is at `first_position`: zero-padded so that
/// names sort like positions.
pub(crate) fn segment_name(first_position: u64) -> String {
    format!("{first_position:020}.seg")
}

/// The first position encoded in a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Where a record is: the segment (named by its first position) and the byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// First position of the segment.
    pub segment: u64,
    /// Offset of the record in the segment file.
    pub offset: u64,
}

/// One segment file.
pub(crate) struct Segment {
    /// Position of its first record.
    pub first_position: u64,
    /// Its path, for error messages.
    pub path: PathBuf,
    /// The open file, shared by the writer and every reader.
    pub file: Arc<dyn LogFile>,
    /// Bytes of acknowledged records. Readers never read past it, so they can never see a record
    /// whose fsync has not completed.
    committed_len: AtomicU64,
    /// (position, offset) of the segment's first record and of every record whose position is a
    /// multiple of [`SPARSE_EVERY`], in position order: where reads start.
    sparse: RwLock<Vec<(u64, u64)>>,
}

impl Segment {
    pub(crate) fn new(
        first_position: u64,
        path: PathBuf,
        file: Arc<dyn LogFile>,
        committed_len: u64,
    ) -> Self {
        Segment {
            first_position,
            path,
            file,
            committed_len: AtomicU64::new(committed_len),
            sparse: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn committed_len(&self) -> u64 {
        self.committed_len.load(Ordering::Acquire)
    }

    /// Publishes that records up to `len` bytes are acknowledged.
    pub(crate) fn set_committed_len(&self, len: u64) {
        self.committed_len.store(len, Ordering::Release);
    }

    /// Remembers where the record at `position` starts (positions must arrive in order).
    pub(crate) fn note_sparse(&self, position: u64, offset: u64) {
        let mut sparse = write(&self.sparse);
        if sparse.last().is_none_or(|&(p, _)| p < position) {
            sparse.push((position, offset));
        }
    }

    /// Forgets the sparse index (when the index it was loaded from turned out to be stale).
    pub(crate) fn clear_sparse(&self) {
        write(&self.sparse).clear();
    }

    /// The offset to start reading from to find the record at `position`.
    pub(crate) fn seek(&self, position: u64) -> u64 {
        let sparse = read(&self.sparse);
        match sparse.partition_point(|&(p, _)| p <= position) {
            0 => SEGMENT_HEADER_LEN,
            i => sparse[i - 1].1,
        }
    }

    pub(crate) fn corrupt(&self, offset: u64, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            offset,
            reason: reason.into(),
        }
    }

    /// Reads the whole record at `offset`; returns its body.
    pub(crate) fn read_record(&self, offset: u64) -> Result<Vec<u8>, StoreError> {
        let mut reader = FrameReader::new(self, offset, self.committed_len());
        match reader.next()? {
            Some((_, body)) => Ok(body.to_vec()),
            None => Err(self.corrupt(offset, "indexed record is past the end of the segment")),
        }
    }
}

/// Sparse indexes are plain data: a panic elsewhere cannot leave them half-updated.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// The segments of a log, in position order. The writer adds one at each rollover; readers take
/// a snapshot of the list.
pub(crate) struct SegmentSet {
    list: RwLock<Vec<Arc<Segment>>>,
}

impl SegmentSet {
    pub(crate) fn new(segments: Vec<Arc<Segment>>) -> Self {
        SegmentSet {
            list: RwLock::new(segments),
        }
    }

    pub(crate) fn push(&self, segment: Arc<Segment>) {
        write(&self.list).push(segment);
    }

    pub(crate) fn snapshot(&self) -> Vec<Arc<Segment>> {
        read(&self.list).clone()
    }

    /// The segment whose first position is `first`.
    pub(crate) fn get(&self, first: u64) -> Option<Arc<Segment>> {
        let list = read(&self.list);
        list.binary_search_by_key(&first, |s| s.first_position)
            .ok()
            .map(|i| list[i].clone())
    }
}

/// Index of the segment that holds `position` in a snapshot (the last one starting at or
/// before it).
pub(crate) fn segment_index_for(segments: &[Arc<Segment>], position: u64) -> usize {
    segments
        .partition_point(|s| s.first_position <= position)
        .saturating_sub(1)
}

/// Reads records sequentially from one segment, a chunk at a time.
pub(crate) struct FrameReader<'a> {
    segment: &'a Segment,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// Index in `buf` of the next record.
    cursor: usize,
    /// Read no record that starts at or after this offset.
    end: u64,
}

impl<'a> FrameReader<'a> {
    pub(crate) fn new(segment: &'a Segment, offset: u64, end: u64) -> Self {
        FrameReader {
            segment,
            buf: Vec::new(),
            buf_start: offset,
            cursor: 0,
            end,
        }
    }

    /// The next record before `end`: its offset and body.
    pub(crate) fn next(&mut self) -> Result<Option<(u64, &[u8])>, StoreError> {
        loop {
            let offset = self.buf_start + self.cursor as u64;
            if offset >= self.end {
                return Ok(None);
            }
            match parse_frame(&self.buf[self.cursor..]) {
                Frame::Valid { len, .. } => {
                    let start = self.cursor;
                    self.cursor += len;
                    let body = &self.buf[start + FRAME_HEADER_LEN..start + len - FRAME_TRAILER_LEN];
                    return Ok(Some((offset, body)));
                }
                Frame::Incomplete { needed } => self.fill(offset, needed)?,
                Frame::Defective { defect, .. } => {
                    return Err(self.segment.corrupt(offset, defect.to_string()));
                }
            }
        }
    }

    /// Reads more of the file so that at least `needed` bytes (or one chunk) follow `offset`.
    fn fill(&mut self, offset: u64, needed: usize) -> Result<(), StoreError> {
        self.buf.drain(..self.cursor);
        self.buf_start = offset;
        self.cursor = 0;
        let have = self.buf.len();
        let want = needed.max(READ_CHUNK).max(have + 1);
        self.buf.resize(want, 0);
        let read = read_full_at(
            self.segment.file.as_ref(),
            &mut self.buf[have..],
            offset + have as u64,
        )
        .map_err(|e| StoreError::io("read", &self.segment.path, e))?;
        self.buf.truncate(have + read);
        if read == 0 {
            return Err(self
                .segment
                .corrupt(offset, "acknowledged record runs past the end of the file"));
        }
        Ok(())
    }
}
