//! `ledgerstack export`: the log of a data directory as JSON Lines, streaming.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;

use engine::event::json::hash_line;
use engine::event::{ChainHash, CodecError, RecordedEvent};
use engine::store::embedded::scan::{LogScanner, ScanError};
use engine::time::Timestamp;

use crate::parallel;
use crate::trailer::Trailer;

/// One end of an export's range: a log position, or a recorded-at time. Recorded-at (not
/// occurred-at) because it never goes backwards along the log, so a time range is a contiguous
/// run of positions and the export stays a valid piece of the hash chain; imported history keeps
/// an older occurred-at and would otherwise fall outside the range of its neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A log position (1 is the first event).
    Position(u64),
    /// An RFC 3339 instant, compared with each event's `recorded_at`.
    RecordedAt(Timestamp),
}

/// Why a bound could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is neither a log position (1, 2, ...) nor an RFC 3339 time (2026-03-08T05:00:00Z)")]
pub struct BoundParseError(String);

impl FromStr for Bound {
    type Err = BoundParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(position) = s.parse::<u64>() {
            return Ok(Bound::Position(position));
        }
        s.parse::<Timestamp>()
            .map(Bound::RecordedAt)
            .map_err(|_| BoundParseError(s.to_owned()))
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Position(p) => write!(f, "position {p}"),
            Bound::RecordedAt(t) => write!(f, "recorded at {t}"),
        }
    }
}

/// Which events to export: both ends inclusive; an absent end is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// Export nothing before this.
    pub from: Option<Bound>,
    /// Export nothing after this.
    pub to: Option<Bound>,
}

impl Range {
    fn starts_after(from: Bound, event: &RecordedEvent) -> bool {
        match from {
            Bound::Position(p) => event.envelope.position.0 < p,
            Bound::RecordedAt(t) => event.envelope.recorded_at < t,
        }
    }

    fn ends_before(to: Bound, event: &RecordedEvent) -> bool {
        match to {
            Bound::Position(p) => event.envelope.position.0 > p,
            Bound::RecordedAt(t) => event.envelope.recorded_at > t,
        }
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The log could not be read, or a record is damaged (`ledgerstack verify` says more).
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A stored event has no JSON form (a payload this build cannot render).
    #[error("position {position}: {source}")]
    Render {
        /// The event's position.
        position: u64,
        /// Why it could not be rendered.
        #[source]
        source: CodecError,
    },
    /// Writing the output failed.
    #[error("writing the export: {0}")]
    Write(#[source] io::Error),
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// The final line written.
    pub trailer: Trailer,
    /// Position of the first exported event, if any.
    pub first_position: Option<u64>,
    /// Events in the log that were read (those before the range included).
    pub scanned: u64,
    /// Bytes of a torn, never acknowledged tail at the end of the log that were left out.
    pub ignored_tail: u64,
}

/// Streams the events of `data_dir` in `range` to `out`, one canonical line each, then the
/// [`Trailer`]. Reads the segment files read-only (the server may be running); memory stays
/// constant. `progress` is called with the bytes of the log read so far and its total size.
pub fn export(
    data_dir: &Path,
    range: Range,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary, ExportError> {
    let mut scanner = LogScanner::open(data_dir)?;
    let total = scanner.total_bytes();
    let threads = parallel::threads();
    let mut batch = Vec::with_capacity(parallel::BATCH);
    let mut last_line = None;
    let mut events = 0u64;
    let mut position = 0u64;
    let mut first_position = None;
    let mut scanned = 0u64;
    loop {
        let next = scanner.next_event()?;
        let at_end = match &next {
            None => true,
            Some(scanned_event) => range
                .to
                .is_some_and(|to| Range::ends_before(to, &scanned_event.event)),
        };
        if let Some(scanned_event) = next.filter(|_| !at_end) {
            let event = scanned_event.event;
            scanned += 1;
            if scanned.is_multiple_of(1024) {
                progress(scanner.read_bytes(), total);
            }
            if !range
                .from
                .is_some_and(|from| Range::starts_after(from, &event))
            {
                batch.push(event);
            }
        }
        if batch.len() == parallel::BATCH || (at_end && !batch.is_empty()) {
            let rendered = render_batch(&batch, threads)?;
            out.write_all(rendered.text.as_bytes())
                .map_err(ExportError::Write)?;
            last_line = Some(rendered.last_line);
            events += batch.len() as u64;
            let (first, last) = (&batch[0], &batch[batch.len() - 1]);
            first_position.get_or_insert(first.envelope.position.0);
            position = last.envelope.position.0;
            batch.clear();
        }
        if at_end {
            break;
        }
    }
    // Every line's hash is the next event's stored prev_hash: only the last one is needed.
    let head = last_line.map_or(ChainHash::GENESIS, |line| hash_line(&line));
    progress(scanner.read_bytes(), total);
    let trailer = Trailer {
        chain_head: head,
        events,
        position,
    };
    out.write_all(trailer.to_line().as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(ExportError::Write)?;
    Ok(ExportSummary {
        trailer,
        first_position,
        scanned,
        ignored_tail: scanner.ignored_tail(),
    })
}

/// Renders `batch` (not empty) as canonical lines, each ending in a newline, and returns them
/// with the last line alone (whose hash is the chain head).
fn render_batch(batch: &[RecordedEvent], threads: usize) -> Result<Rendered, ExportError> {
    let lines = parallel::map_in_order(batch, threads, |event| {
        event.to_json_line().map_err(|source| ExportError::Render {
            position: event.envelope.position.0,
            source,
        })
    });
    let mut rendered = Rendered {
        text: String::with_capacity(batch.len() * 512),
        last_line: String::new(),
    };
    for line in lines {
        let line = line?;
        rendered.text.push_str(&line);
        rendered.text.push('\n');
        rendered.last_line = line;
    }
    Ok(rendered)
}

/// A batch rendered: its lines, and the last line alone.
struct Rendered {
    text: String,
    last_line: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_as_positions_or_times() {
        assert_eq!("42".parse::<Bound>().unwrap(), Bound::Position(42));
        assert_eq!(
            "2026-03-08T05:00:00Z".parse::<Bound>().unwrap(),
            Bound::RecordedAt("2026-03-08T05:00:00.000Z".parse().unwrap())
        );
        assert!("yesterday".parse::<Bound>().is_err());
        assert!("-3".parse::<Bound>().is_err());
    }
}
