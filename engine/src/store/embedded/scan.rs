//! A read-only, streaming reader of the segment files of a data directory.
//!
//! Auditing tools (`ledgerstack export` and `ledgerstack verify`) must read a log without
//! opening the store: a running server holds the log's lock, and even a stopped server's log
//! must not be touched (opening the store would truncate a torn tail and rebuild the index).
//! This reader opens each segment file read-only, checks every record's CRCs as it goes, and
//! yields the events in log order using one read buffer, so memory stays constant whatever the
//! size of the log.
//!
//! What is acknowledged is decided as recovery decides it (see `docs/storage.md`): records after
//! the last group-commit marker of the last segment, or a record cut short by the end of the
//! last segment, were never acknowledged and are reported as an ignored tail rather than as
//! damage. Anything else that does not check out is [`ScanError::Damaged`], naming the position
//! the damaged record holds (the one after the last good record).
//!
//! A scan that reached the end can go on when a running server appends more
//! ([`LogScanner::resume`], for `ledgerstack tail --follow`): it reads the last segment again
//! from the end of its last commit marker, and any segment created since. Records of a group
//! commit still being written are held back exactly as a torn tail is, so an event is handed
//! out only once the record carrying its commit marker is whole.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{
    FLAG_COMMIT, FRAME_HEADER_LEN, FRAME_TRAILER_LEN, Frame, SEGMENT_HEADER_LEN, SegmentHeader,
    decode_event, parse_frame,
};
use super::log_dir;
use super::segments::parse_segment_name;
use crate::event::RecordedEvent;

/// How much is read from a file at once.
const READ_CHUNK: usize = 256 * 1024;

/// Why a log could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A record (or a segment header) does not check out: the log is damaged there.
    #[error("position {position}: {reason} (in {path} at byte {offset})")]
    Damaged {
        /// The position the damaged record holds: one after the last good record.
        position: u64,
        /// The segment file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// One event read from the log, with where it is.
#[derive(Debug)]
pub struct ScannedEvent {
    /// The decoded event.
    pub event: RecordedEvent,
    /// The segment file holding it.
    pub segment: PathBuf,
    /// Offset of its record in that file.
    pub offset: u64,
}

/// Reads every acknowledged event of a data directory's log, in order, without opening the
/// store. Iterate with [`LogScanner::next_event`].
pub struct LogScanner {
    /// The `log/` directory, listed again by [`LogScanner::resume`].
    dir: PathBuf,
    /// Segment files not opened yet: (first position, path), in position order.
    remaining: VecDeque<(u64, PathBuf)>,
    /// The segment being read.
    current: Option<SegmentReader>,
    /// Acknowledged records of the current segment decoded but not handed out yet: records are
    /// held until a group-commit marker says they were acknowledged.
    ready: VecDeque<ScannedEvent>,
    /// Records read since the last group-commit marker.
    pending: Vec<ScannedEvent>,
    /// Bytes of the records in `pending`.
    pending_bytes: u64,
    /// Position of the last record read (0 before the first).
    last_position: u64,
    /// Bytes at the end of the last segment that were never acknowledged.
    ignored_tail: u64,
    /// Total bytes of the segment files, for progress reporting.
    total_bytes: u64,
    /// Bytes consumed so far, for progress reporting.
    read_bytes: u64,
    /// Where the last segment read ended: its first position, its path and the offset right
    /// after its last acknowledged record. [`LogScanner::resume`] reads on from there.
    end_of_log: Option<(u64, PathBuf, u64)>,
    /// Where to start reading the next segment opened instead of right after its header: set
    /// by [`LogScanner::resume`] for the segment the scan ended in.
    start_offset: Option<u64>,
}

/// An open segment file being read front to back.
struct SegmentReader {
    /// The position its name says it starts with.
    first: u64,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// Index in `buf` of the next record.
    cursor: usize,
    /// The file has no more bytes.
    eof: bool,
    /// This is the log's last segment (the only one that may end in a torn tail).
    last: bool,
    /// Once the segment has ended: bytes after its last whole record (a torn tail).
    unread_bytes: u64,
}

impl LogScanner {
    /// Lists the segment files of `data_dir` (under `log/`); opens nothing yet.
    pub fn open(data_dir: &Path) -> Result<Self, ScanError> {
        let dir = log_dir(data_dir);
        let (segments, total_bytes) = list_segments(&dir)?;
        Ok(LogScanner {
            dir,
            remaining: segments.into(),
            current: None,
            ready: VecDeque::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            last_position: 0,
            ignored_tail: 0,
            total_bytes,
            read_bytes: 0,
            end_of_log: None,
            start_offset: None,
        })
    }

    /// Once [`LogScanner::next_event`] has returned `None`: looks at the log again, so that the
    /// next calls hand out what was appended since (nothing, if nothing was). The last segment
    /// is read again from the end of its last acknowledged record (a group commit that was
    /// being written is read whole this time, or held back again), then every segment created
    /// since. Does nothing while the scan has not reached the end.
    pub fn resume(&mut self) -> Result<(), ScanError> {
        if self.current.is_some() || !self.remaining.is_empty() || !self.ready.is_empty() {
            return Ok(());
        }
        let (segments, total_bytes) = list_segments(&self.dir)?;
        let from = self.end_of_log.as_ref().map_or(0, |(first, _, _)| *first);
        self.remaining = segments
            .into_iter()
            .filter(|(first, _)| *first >= from)
            .collect();
        // The offset belongs to the segment the scan ended in; if that one is gone (recovery
        // removes a last segment that holds no record), its successor is read whole.
        self.start_offset = match (&self.end_of_log, self.remaining.front()) {
            (Some((ended, _, offset)), Some((first, _))) if ended == first => Some(*offset),
            _ => None,
        };
        self.total_bytes = total_bytes;
        // The held-back tail is read again: count its bytes once.
        self.read_bytes = self.read_bytes.saturating_sub(self.ignored_tail);
        self.ignored_tail = 0;
        Ok(())
    }

    /// Total size of the segment files in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes of the segment files read so far.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Bytes at the end of the log that were never acknowledged (a torn tail a crash left;
    /// the server cuts it at its next start). Meaningful once the scan has ended.
    pub fn ignored_tail(&self) -> u64 {
        self.ignored_tail
    }

    /// The next acknowledged event, `None` at the end of the log.
    pub fn next_event(&mut self) -> Result<Option<ScannedEvent>, ScanError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if self.current.is_none() {
                let Some((first, path)) = self.remaining.pop_front() else {
                    return Ok(None);
                };
                let last = self.remaining.is_empty();
                match SegmentReader::open(path, first, last, self.last_position)? {
                    Some(mut reader) => {
                        match self.start_offset.take() {
                            Some(offset) => reader.seek(offset)?,
                            None => self.read_bytes += SEGMENT_HEADER_LEN,
                        }
                        self.current = Some(reader);
                    }
                    None => continue,
                }
            }
            self.advance()?;
        }
    }

    /// Reads one more record of the current segment (or ends it).
    fn advance(&mut self) -> Result<(), ScanError> {
        let Some(reader) = self.current.as_mut() else {
            return Ok(());
        };
        let position = self.last_position + 1;
        match reader.next_frame(position)? {
            Some((offset, flags, body)) => {
                let len = (FRAME_HEADER_LEN + body.len() + FRAME_TRAILER_LEN) as u64;
                self.read_bytes += len;
                self.pending_bytes += len;
                let event = decode_event(&body).map_err(|e| reader.damaged(position, offset, e))?;
                self.last_position = event.envelope.position.0;
                self.pending.push(ScannedEvent {
                    event,
                    segment: reader.path.clone(),
                    offset,
                });
                if flags & FLAG_COMMIT != 0 {
                    self.ready.extend(self.pending.drain(..));
                    self.pending_bytes = 0;
                }
            }
            None => {
                let unacknowledged = reader.unread_bytes;
                if !self.pending.is_empty() && !reader.last {
                    let first = &self.pending[0];
                    return Err(ScanError::Damaged {
                        position: first.event.envelope.position.0,
                        path: reader.path.clone(),
                        offset: first.offset,
                        reason: "records after the last group commit marker in a segment that is not the last".into(),
                    });
                }
                let acknowledged_end = self
                    .pending
                    .first()
                    .map_or(reader.buf_start + reader.cursor as u64, |p| p.offset);
                self.end_of_log = Some((reader.first, reader.path.clone(), acknowledged_end));
                self.ignored_tail += unacknowledged + self.pending_bytes;
                self.read_bytes += unacknowledged;
                if let Some(first) = self.pending.first() {
                    self.last_position = first.event.envelope.position.0 - 1;
                }
                self.pending.clear();
                self.pending_bytes = 0;
                self.current = None;
            }
        }
        Ok(())
    }
}

/// The segment files in `dir` as (first position, path), in position order, and their total
/// size in bytes.
fn list_segments(dir: &Path) -> Result<(Vec<(u64, PathBuf)>, u64), ScanError> {
    let io_error = |source| ScanError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut segments = Vec::new();
    let mut total_bytes = 0;
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        total_bytes += entry.metadata().map_err(io_error)?.len();
        segments.push((first, entry.path()));
    }
    segments.sort();
    Ok((segments, total_bytes))
}

impl SegmentReader {
    /// Opens a segment and checks its header; `None` for a last segment whose creation a crash
    /// cut short (nothing but a partial header: recovery removes it).
    fn open(
        path: PathBuf,
        first: u64,
        last: bool,
        last_position: u64,
    ) -> Result<Option<Self>, ScanError> {
        let io_error = |source| ScanError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io_error)?;
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
        (&mut file)
            .take(SEGMENT_HEADER_LEN)
            .read_to_end(&mut header)
            .map_err(io_error)?;
        let damaged = |reason: String| ScanError::Damaged {
            position: last_position + 1,
            path: path.clone(),
            offset: 0,
            reason,
        };
        match SegmentHeader::decode(&header) {
            Ok(h) if h.first_position == first => {}
            Ok(h) => {
                return Err(damaged(format!(
                    "segment header says first position {}, its name says {first}",
                    h.first_position
                )));
            }
            Err(_) if last && header.len() < SEGMENT_HEADER_LEN as usize => return Ok(None),
            Err(defect) => return Err(damaged(defect.to_string())),
        }
        Ok(Some(SegmentReader {
            first,
            path,
            file,
            buf: Vec::new(),
            buf_start: SEGMENT_HEADER_LEN,
            cursor: 0,
            eof: false,
            last,
            unread_bytes: 0,
        }))
    }

    /// Reads on from byte `offset` (the end of a record) instead of from the header's end.
    fn seek(&mut self, offset: u64) -> Result<(), ScanError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|source| ScanError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.buf.clear();
        self.buf_start = offset;
        self.cursor = 0;
        self.eof = false;
        self.unread_bytes = 0;
        Ok(())
    }

    fn damaged(&self, position: u64, offset: u64, reason: impl ToString) -> ScanError {
        ScanError::Damaged {
            position,
            path: self.path.clone(),
            offset,
            reason: reason.to_string(),
        }
    }

    /// The next record: its offset, flags and body; `None` at the end of the segment (the end
    /// of the file, or a record cut short by it in the last segment).
    fn next_frame(&mut self, position: u64) -> Result<Option<(u64, u8, Vec<u8>)>, ScanError> {
        loop {
            let offset = self.buf_start + self.cursor as u64;
            match parse_frame(&self.buf[self.cursor..]) {
                Frame::Valid { flags, body, len } => {
                    let body = body.to_vec();
                    self.cursor += len;
                    return Ok(Some((offset, flags, body)));
                }
                Frame::Incomplete { needed } => {
                    if self.eof {
                        self.unread_bytes = (self.buf.len() - self.cursor) as u64;
                        if self.unread_bytes == 0 || self.last {
                            return Ok(None);
                        }
                        return Err(self.damaged(
                            position,
                            offset,
                            "record cut short by the end of a segment that is not the last",
                        ));
                    }
                    self.fill(needed)?;
                }
                Frame::Defective { defect, len } => {
                    // As recovery judges it: damage followed only by zero bytes in the last
                    // segment is a torn write (a file extended with zeros by a crash).
                    let extent = self.cursor + len.unwrap_or(FRAME_HEADER_LEN);
                    if self.last && self.rest_is_zero(extent)? {
                        self.unread_bytes = self.file_len_from_cursor()?;
                        return Ok(None);
                    }
                    return Err(self.damaged(position, offset, defect));
                }
            }
        }
    }

    /// Whether every byte of the file from `buf[from]` on is zero (reads to the end).
    fn rest_is_zero(&mut self, from: usize) -> Result<bool, ScanError> {
        if self
            .buf
            .get(from..)
            .is_some_and(|rest| rest.iter().any(|&b| b != 0))
        {
            return Ok(false);
        }
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            match self.file.read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if chunk[..n].iter().any(|&b| b != 0) {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ScanError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Bytes from the cursor to the end of the file.
    fn file_len_from_cursor(&self) -> Result<u64, ScanError> {
        let len = self
            .file
            .metadata()
            .map_err(|source| ScanError::Io {
                path: self.path.clone(),
                source,
            })?
            .len();
        Ok(len.saturating_sub(self.buf_start + self.cursor as u64))
    }

    /// Reads more of the file so that at least `needed` bytes (or one chunk) follow the cursor.
    fn fill(&mut self, needed: usize) -> Result<(), ScanError> {
        self.buf.drain(..self.cursor);
        self.buf_start += self.cursor as u64;
        self.cursor = 0;
        let want = needed.max(READ_CHUNK).max(self.buf.len() + 1);
        let have = self.buf.len();
        self.buf.resize(want, 0);
        let mut filled = have;
        while filled < want {
            match self.file.read(&mut self.buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ScanError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
        self.buf.truncate(filled);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;
    use crate::clock::ManualClock;
    use crate::event::operations::AlertRaised;
    use crate::event::{AlertEvent, EventBody, NewEvent, StreamId};
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
    use crate::store::{EventStore, ExpectedVersion};
    use crate::time::Timestamp;

    fn open_store(dir: &Path, segment_bytes: u64) -> EmbeddedStore {
        let options = EmbeddedOptions {
            segment_bytes,
            clock: Arc::new(ManualClock::new(Timestamp::from_millis(1_772_946_000_000))),
        };
        EmbeddedStore::open(dir, options).unwrap()
    }

    fn event(n: u64) -> NewEvent {
        NewEvent::new(EventBody::Alert(AlertEvent::Raise(AlertRaised {
            alert_id: Uuid::from_u128(7),
            alert_type: 20,
            name: "ALERT.USAGE.RESULT".into(),
            description: format!("event {n}"),
            zone_id: None,
            pod_id: None,
            cluster_id: None,
            account_id: None,
        })))
    }

    /// Appends `count` events in one group commit.
    async fn append(store: &EmbeddedStore, count: u64) {
        let stream = StreamId::new("scan", Uuid::from_u128(1)).unwrap();
        let events = (0..count).map(event).collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }

    /// Positions of the events the scanner hands out until it reports the end.
    fn drain(scanner: &mut LogScanner) -> Vec<u64> {
        std::iter::from_fn(|| scanner.next_event().unwrap())
            .map(|e| e.event.envelope.position.0)
            .collect()
    }

    #[tokio::test]
    async fn resume_reads_what_a_running_store_appended_since_across_rollovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path(), 2048);
        for _ in 0..3 {
            append(&store, 1).await;
        }
        let mut scanner = LogScanner::open(dir.path()).unwrap();
        assert_eq!(drain(&mut scanner), [1, 2, 3]);
        scanner.resume().unwrap();
        assert_eq!(drain(&mut scanner), Vec::<u64>::new());
        for _ in 0..30 {
            append(&store, 1).await;
        }
        scanner.resume().unwrap();
        assert_eq!(drain(&mut scanner), (4..=33).collect::<Vec<_>>());
        let segments = std::fs::read_dir(log_dir(dir.path())).unwrap().count();
        assert!(segments > 2, "the log rolled over ({segments} segments)");
        append(&store, 2).await;
        scanner.resume().unwrap();
        assert_eq!(drain(&mut scanner), [34, 35]);
        store.close();
    }

    #[tokio::test]
    async fn a_group_commit_being_written_is_held_back_until_its_commit_record_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path(), 64 * 1024 * 1024);
        append(&store, 1).await;
        append(&store, 2).await;
        store.close();
        let mut scanner = LogScanner::open(dir.path()).unwrap();
        let all: Vec<ScannedEvent> = std::iter::from_fn(|| scanner.next_event().unwrap()).collect();
        assert_eq!(all.len(), 3);
        let segment = all[0].segment.clone();
        let full = std::fs::read(&segment).unwrap();
        let second = all[1].offset as usize;
        let third = all[2].offset as usize;

        // Record 2 whole but without a commit marker, record 3 cut short: a write in progress.
        std::fs::write(&segment, &full[..third + 5]).unwrap();
        let mut scanner = LogScanner::open(dir.path()).unwrap();
        assert_eq!(drain(&mut scanner), [1]);
        assert_eq!(scanner.ignored_tail(), (third + 5 - second) as u64);
        scanner.resume().unwrap();
        assert_eq!(drain(&mut scanner), Vec::<u64>::new());

        // All but the last byte of the commit record: still held back.
        std::fs::write(&segment, &full[..full.len() - 1]).unwrap();
        scanner.resume().unwrap();
        assert_eq!(drain(&mut scanner), Vec::<u64>::new());

        // The commit record is whole: both events of the group, once.
        std::fs::write(&segment, &full).unwrap();
        scanner.resume().unwrap();
        assert_eq!(drain(&mut scanner), [2, 3]);
        assert_eq!(scanner.ignored_tail(), 0);
        scanner.resume().unwrap();
        assert_eq!(drain(&mut scanner), Vec::<u64>::new());
    }

    #[tokio::test]
    async fn resume_finds_the_first_segment_of_a_log_that_had_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(log_dir(dir.path())).unwrap();
        let mut scanner = LogScanner::open(dir.path()).unwrap();
        assert_eq!(drain(&mut scanner), Vec::<u64>::new());
        let store = open_store(dir.path(), 64 * 1024 * 1024);
        append(&store, 1).await;
        scanner.resume().unwrap();
        assert_eq!(drain(&mut scanner), [1]);
        store.close();
    }
}
