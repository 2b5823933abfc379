//! `ledgerstack verify`: checks an export or a data directory, naming the first line or
//! position that does not check out.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use engine::event::json::hash_line;
use engine::event::{ChainHash, RecordedEvent, StreamId};
use engine::store::embedded::scan::{LogScanner, ScanError};
use engine::time::Timestamp;

use crate::parallel;
use crate::trailer::Trailer;

/// The first bytes of a zstd frame: how a compressed export is recognised, whatever its name.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Why verification failed. [`VerifyError::Io`] means the input could not be read at all; every
/// other variant means it was read and does not check out.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The export or data directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's (or the decompressor's) error.
        #[source]
        source: io::Error,
    },
    /// A line of an export is wrong (1-based line number).
    #[error("line {line}: {what}")]
    Line {
        /// The line.
        line: u64,
        /// What is wrong with it.
        what: String,
    },
    /// An event of a data directory's log is wrong.
    #[error("position {position}: {what}")]
    Position {
        /// The event's position (for a damaged record: the position it holds).
        position: u64,
        /// What is wrong with it.
        what: String,
    },
    /// The export's final line is missing or disagrees with the events before it.
    #[error("final line: {0}")]
    Trailer(String),
}

impl VerifyError {
    /// Whether the input was read and found wrong (rather than unreadable).
    pub fn is_finding(&self) -> bool {
        !matches!(self, VerifyError::Io { .. })
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Events checked.
    pub events: u64,
    /// Position of the first event (`None` when there is none).
    pub first_position: Option<u64>,
    /// Position of the last event (0 when there is none).
    pub last_position: u64,
    /// SHA-256 of the last event's line: the head of the chain.
    pub chain_head: ChainHash,
    /// Distinct streams seen.
    pub streams: u64,
    /// Bytes of a torn, never acknowledged tail at the end of a data directory's log (a crash
    /// left them; the server cuts them at its next start). Always 0 for an export.
    pub ignored_tail: u64,
}

impl VerifySummary {
    /// Whether the chain was checked from its start (position 1, whose `prev_hash` is all
    /// zeros), rather than from a slice whose first `prev_hash` is taken on trust.
    pub fn from_genesis(&self) -> bool {
        self.first_position.is_none_or(|p| p == 1)
    }
}

/// The invariants, checked one event at a time in log order.
#[derive(Default)]
struct Checker {
    /// SHA-256 of the previous event's line (`None` before the first).
    previous_hash: Option<ChainHash>,
    first_position: Option<u64>,
    last_position: u64,
    last_recorded_at: Option<Timestamp>,
    /// Last version seen per stream: one entry per stream (the only state that grows).
    versions: HashMap<StreamId, u64>,
    events: u64,
}

impl Checker {
    /// Checks `event`, whose canonical line hashes to `line_hash`; `previous` names the
    /// previous line or position in messages.
    fn check(
        &mut self,
        event: &RecordedEvent,
        line_hash: ChainHash,
        previous: &str,
    ) -> Result<(), String> {
        let e = &event.envelope;
        let position = e.position.0;
        match self.previous_hash {
            Some(expected) if e.prev_hash != expected => {
                return Err(format!(
                    "hash chain broken: prev_hash {} is not the SHA-256 of {previous} ({expected}): {previous} was altered, or events were removed, inserted or reordered",
                    e.prev_hash
                ));
            }
            None if position == 1 && e.prev_hash != ChainHash::GENESIS => {
                return Err(format!(
                    "hash chain broken: the first event's prev_hash is {}, not 64 zeros",
                    e.prev_hash
                ));
            }
            _ => {}
        }
        if position == 0 {
            return Err("position 0 is not a log position (the first is 1)".into());
        }
        if self.previous_hash.is_some() && position != self.last_position + 1 {
            return Err(format!(
                "position {position} follows position {} (positions must be contiguous)",
                self.last_position
            ));
        }
        if let Some(last) = self.last_recorded_at
            && e.recorded_at < last
        {
            return Err(format!(
                "recorded_at {} is before {last}, the recorded_at of {previous} (the log's clock never goes backwards)",
                e.recorded_at
            ));
        }
        let from_genesis = self.first_position.unwrap_or(position) == 1;
        match self.versions.get(&e.stream) {
            Some(&last) if e.version != last + 1 => {
                return Err(format!(
                    "version {} of stream {} follows version {last} (versions must be contiguous per stream)",
                    e.version, e.stream
                ));
            }
            None if from_genesis && e.version != 1 => {
                return Err(format!(
                    "stream {} starts at version {}, not 1",
                    e.stream, e.version
                ));
            }
            _ => {}
        }
        self.versions.insert(e.stream.clone(), e.version);
        self.previous_hash = Some(line_hash);
        self.first_position.get_or_insert(position);
        self.last_position = position;
        self.last_recorded_at = Some(e.recorded_at);
        self.events += 1;
        Ok(())
    }

    fn summary(&self, ignored_tail: u64) -> VerifySummary {
        VerifySummary {
            events: self.events,
            first_position: self.first_position,
            last_position: self.last_position,
            chain_head: self.previous_hash.unwrap_or(ChainHash::GENESIS),
            streams: self.versions.len() as u64,
            ignored_tail,
        }
    }
}

/// Opens an export for reading, decompressing it if it is zstd (recognised by its first bytes,
/// whatever the file is called).
pub fn open_export(path: &Path) -> Result<Box<dyn BufRead>, VerifyError> {
    let io_error = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut magic = Vec::with_capacity(ZSTD_MAGIC.len());
    (&mut file)
        .take(ZSTD_MAGIC.len() as u64)
        .read_to_end(&mut magic)
        .map_err(io_error)?;
    file.rewind().map_err(io_error)?;
    if magic == ZSTD_MAGIC {
        let decoder = zstd::Decoder::new(file).map_err(io_error)?;
        Ok(Box::new(BufReader::new(decoder)))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

/// Verifies an export read from `input` (`path` names it in messages): every line is a
/// canonical event line of a known type, the hash chain holds from line to line, positions are
/// contiguous, recorded-at never goes backwards, versions are contiguous per stream, and the
/// final line's chain head, count and position match the events. Reads one line at a time.
/// `progress` is called with the number of events checked so far.
pub fn verify_export(
    input: &mut dyn BufRead,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifySummary, VerifyError> {
    let threads = parallel::threads();
    let mut checker = Checker::default();
    let mut trailer: Option<(u64, Trailer)> = None;
    let mut number = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(parallel::BATCH);
    let mut ended = false;
    while !ended {
        batch.clear();
        while batch.len() < parallel::BATCH {
            let mut raw = Vec::new();
            let read = input
                .read_until(b'\n', &mut raw)
                .map_err(|source| VerifyError::Io {
                    path: path.to_owned(),
                    source,
                })?;
            if read == 0 {
                ended = true;
                break;
            }
            batch.push(raw);
        }
        // Parsing and hashing a line needs nothing from the lines before it: done in
        // parallel; the checks against the previous line follow in order.
        let parsed = parallel::map_in_order(&batch, threads, |raw| parse_line(raw));
        for line in parsed {
            number += 1;
            let bad = |what: String| VerifyError::Line { line: number, what };
            if let Some((line, _)) = trailer {
                return Err(bad(format!(
                    "follows the final chain_head line (line {line}): lines were appended after the end of the export"
                )));
            }
            match line.map_err(bad)? {
                ParsedLine::Trailer(parsed) => trailer = Some((number, parsed)),
                ParsedLine::Event(event, hash) => {
                    let previous = format!("line {}", number - 1);
                    checker.check(&event, hash, &previous).map_err(bad)?;
                    if checker.events % 1024 == 0 {
                        progress(checker.events);
                    }
                }
            }
        }
    }
    progress(checker.events);
    let Some((_, trailer)) = trailer else {
        return Err(VerifyError::Trailer(format!(
            "missing: the export ends after line {number} without its chain_head line (cut short?)"
        )));
    };
    let summary = checker.summary(0);
    if trailer.chain_head != summary.chain_head {
        return Err(VerifyError::Trailer(format!(
            "chain_head {} is not the SHA-256 of the last event line, line {} ({}): that line was altered, or event lines were removed at the end",
            trailer.chain_head,
            number - 1,
            summary.chain_head
        )));
    }
    if trailer.events != summary.events {
        return Err(VerifyError::Trailer(format!(
            "says {} events, the export holds {}",
            trailer.events, summary.events
        )));
    }
    if trailer.position != summary.last_position {
        return Err(VerifyError::Trailer(format!(
            "says the last position is {}, the last event line holds {}",
            trailer.position, summary.last_position
        )));
    }
    Ok(summary)
}

/// One line of an export, read on its own.
enum ParsedLine {
    /// The final `chain_head` line.
    Trailer(Trailer),
    /// An event line, with the SHA-256 of its text (the next line's `prev_hash`).
    Event(Box<RecordedEvent>, ChainHash),
}

/// Reads one raw line (with its newline) of an export; what is wrong with it otherwise.
fn parse_line(raw: &[u8]) -> Result<ParsedLine, String> {
    let Some(text) = raw.strip_suffix(b"\n") else {
        return Err("the last line has no newline: the export was cut short".into());
    };
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_owned())?;
    if Trailer::looks_like(text) {
        let parsed =
            Trailer::parse(text).map_err(|e| format!("not a valid chain_head line: {e}"))?;
        if parsed.to_line() != text {
            return Err("the chain_head line is not in canonical form".into());
        }
        return Ok(ParsedLine::Trailer(parsed));
    }
    let event = RecordedEvent::from_json_line(text).map_err(|e| e.to_string())?;
    Ok(ParsedLine::Event(Box::new(event), hash_line(text)))
}

/// Verifies the log of a data directory, reading its segment files read-only: every record's
/// CRCs, that every event decodes, the hash chain (each `prev_hash` against the SHA-256 of the
/// previous event's canonical line), and the invariants [`verify_export`] checks.
/// `progress` is called with the number of events checked so far.
pub fn verify_data_dir(
    data_dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifySummary, VerifyError> {
    let scan_error = |e: ScanError| match e {
        ScanError::Io { path, source } => VerifyError::Io { path, source },
        ScanError::Damaged {
            position,
            path,
            offset,
            reason,
        } => VerifyError::Position {
            position,
            what: format!(
                "damaged record: {reason} (in {} at byte {offset})",
                path.display()
            ),
        },
    };
    let mut scanner = LogScanner::open(data_dir).map_err(scan_error)?;
    let threads = parallel::threads();
    let mut checker = Checker::default();
    let mut batch = Vec::with_capacity(parallel::BATCH);
    let mut ended = false;
    while !ended {
        batch.clear();
        let mut damaged = None;
        while batch.len() < parallel::BATCH {
            match scanner.next_event() {
                Ok(Some(scanned)) => batch.push(scanned.event),
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) => {
                    damaged = Some(scan_error(e));
                    break;
                }
            }
        }
        // The events before a damaged record are checked first: an earlier finding wins.
        let hashes = parallel::map_in_order(&batch, threads, |event| {
            event.to_json_line().map(|line| hash_line(&line))
        });
        for (event, hash) in batch.iter().zip(hashes) {
            let position = event.envelope.position.0;
            let bad = |what: String| VerifyError::Position { position, what };
            let hash = hash.map_err(|e| bad(format!("has no JSON form: {e}")))?;
            let previous = format!("position {}", checker.last_position);
            checker.check(event, hash, &previous).map_err(bad)?;
            if checker.events % 1024 == 0 {
                progress(checker.events);
            }
        }
        if let Some(damaged) = damaged {
            return Err(damaged);
        }
    }
    progress(checker.events);
    Ok(checker.summary(scanner.ignored_tail()))
}
