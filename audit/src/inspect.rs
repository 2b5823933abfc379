//! `ledgerstack inspect POS|EVENT_ID`: one event of the log with everything an auditor asks
//! about it (its place, times, actor, correlation and causation, its hashes, the segment file
//! and byte offset of its record, its data), and the other events of the same request or job.
//!
//! The log has no index an offline reader may use (the sled index belongs to the server), so
//! this is a scan of the segment files, read-only as `export` reads them. The events of one
//! request or job sit close together in the log; the other events with the same correlation id
//! are looked for within `window` events on either side of the event, so memory stays bounded
//! and a lookup by position stops `window` events after it. The answer says which positions
//! were searched.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use engine::event::{ChainHash, CodecError, RecordedEvent};
use engine::store::embedded::scan::{LogScanner, ScanError};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::tail::{Actor, external_form, label, one_line};

/// The event to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// By log position (1 is the first event).
    Position(u64),
    /// By event id.
    Id(Uuid),
}

/// Why a target could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a log position (1, 2, ...) nor an event id (a UUID)")]
pub struct TargetParseError(String);

impl FromStr for Target {
    type Err = TargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<u64>() {
            Ok(0) => Err(TargetParseError(s.to_owned())),
            Ok(position) => Ok(Target::Position(position)),
            Err(_) => Uuid::try_parse(s)
                .map(Target::Id)
                .map_err(|_| TargetParseError(s.to_owned())),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Position(p) => write!(f, "position {p}"),
            Target::Id(id) => write!(f, "event id {id}"),
        }
    }
}

impl Target {
    fn matches(self, event: &RecordedEvent) -> bool {
        match self {
            Target::Position(p) => event.envelope.position.0 == p,
            Target::Id(id) => event.envelope.id == id,
        }
    }

    /// Whether `event` comes after where the target would be (positions only increase).
    fn passed(self, event: &RecordedEvent) -> bool {
        matches!(self, Target::Position(p) if event.envelope.position.0 > p)
    }
}

/// Why an event could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The log could not be read, or a record is damaged (`ledgerstack verify` says more).
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// No acknowledged event is at that position or has that id.
    #[error("no event with {target} in the log (its head is at position {head})")]
    NotFound {
        /// What was looked for.
        target: Target,
        /// The last position of the log (0 for an empty log).
        head: u64,
    },
    /// A stored event has no JSON form (a payload this build cannot render).
    #[error("position {position}: {source}")]
    Render {
        /// The event's position.
        position: u64,
        /// Why it could not be rendered.
        #[source]
        source: CodecError,
    },
}

/// One event and what surrounds it.
#[derive(Debug)]
pub struct Inspection {
    /// The event.
    pub event: RecordedEvent,
    /// SHA-256 of its canonical line: the next event's `prev_hash`.
    pub hash: ChainHash,
    /// The segment file holding its record.
    pub segment: PathBuf,
    /// Byte offset of its record in that file.
    pub offset: u64,
    /// The other events with its correlation id (the same API request or async job) found in
    /// `searched`, in log order; empty when it has none.
    pub correlated: Vec<RecordedEvent>,
    /// First and last positions searched for correlated events.
    pub searched: (u64, u64),
}

/// Finds `target` in the log of `data_dir`, reading the segment files read-only, and gathers
/// the events with the same correlation id within `window` events on either side.
pub fn inspect(data_dir: &Path, target: Target, window: usize) -> Result<Inspection, InspectError> {
    let mut scanner = LogScanner::open(data_dir)?;
    // The events before the target that may share its correlation id: a ring of `window`.
    let mut before: VecDeque<RecordedEvent> = VecDeque::new();
    let mut first_kept = 1u64;
    let mut head = 0u64;
    let found = loop {
        let Some(scanned) = scanner.next_event()? else {
            return Err(InspectError::NotFound { target, head });
        };
        head = scanned.event.envelope.position.0;
        if target.matches(&scanned.event) {
            break scanned;
        }
        if target.passed(&scanned.event) {
            // Positions have no gaps in this backend, but a gap must not read as the next event.
            while let Some(later) = scanner.next_event()? {
                head = later.event.envelope.position.0;
            }
            return Err(InspectError::NotFound { target, head });
        }
        if window == 0 {
            first_kept = head + 1;
            continue;
        }
        if before.len() == window
            && let Some(dropped) = before.pop_front()
        {
            first_kept = dropped.envelope.position.0 + 1;
        }
        before.push_back(scanned.event);
    };
    let event = found.event;
    let position = event.envelope.position.0;
    let hash = event
        .chain_hash()
        .map_err(|source| InspectError::Render { position, source })?;
    let mut correlated = Vec::new();
    let mut last_searched = position;
    if let Some(correlation) = event.envelope.correlation_id {
        correlated.extend(
            before
                .into_iter()
                .filter(|e| e.envelope.correlation_id == Some(correlation)),
        );
        for _ in 0..window {
            let Some(scanned) = scanner.next_event()? else {
                break;
            };
            last_searched = scanned.event.envelope.position.0;
            if scanned.event.envelope.correlation_id == Some(correlation) {
                correlated.push(scanned.event);
            }
        }
    } else {
        first_kept = position;
    }
    Ok(Inspection {
        event,
        hash,
        segment: found.segment,
        offset: found.offset,
        correlated,
        searched: (first_kept.min(position), last_searched),
    })
}

impl Inspection {
    /// The JSON object `inspect --json` prints: the event in its external form, its hash,
    /// where its record is, and the correlated events in their external form.
    pub fn to_json(&self) -> Result<Value, InspectError> {
        let render = |e: &RecordedEvent| {
            external_form(e).map_err(|source| InspectError::Render {
                position: e.envelope.position.0,
                source,
            })
        };
        Ok(json!({
            "event": render(&self.event)?,
            "hash": self.hash.to_hex(),
            "segment": self.segment.display().to_string(),
            "offset": self.offset,
            "correlated": self.correlated.iter().map(render).collect::<Result<Vec<_>, _>>()?,
            "correlated_searched": {"from": self.searched.0, "to": self.searched.1},
        }))
    }

    /// The readable block `inspect` prints.
    pub fn to_text(&self) -> Result<String, InspectError> {
        let e = &self.event.envelope;
        let render_error = |position: u64| move |source| InspectError::Render { position, source };
        let data = external_form(&self.event).map_err(render_error(e.position.0))?;
        let data = serde_json::to_string_pretty(&data["data"])
            .map_err(|err| render_error(e.position.0)(CodecError::Json(err)))?;
        let optional = |id: Option<Uuid>| id.map_or_else(|| "-".to_owned(), |id| id.to_string());
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(text, "position       {}", e.position);
        let _ = writeln!(text, "id             {}", e.id);
        let _ = writeln!(
            text,
            "type           {} (schema {})",
            self.event.body.event_type().name(),
            e.schema
        );
        let _ = writeln!(text, "stream         {} (version {})", e.stream, e.version);
        let _ = writeln!(text, "occurred at    {}", e.occurred_at);
        let _ = writeln!(text, "recorded at    {}", e.recorded_at);
        let _ = writeln!(text, "actor          {}", Actor(e.actor));
        if let (Some(_), Some(account)) = (e.actor.user_id, e.actor.account_id) {
            let _ = writeln!(text, "               of account {account}");
        }
        let _ = writeln!(
            text,
            "level, state   {}, {}",
            label(&e.level),
            label(&e.state)
        );
        let _ = writeln!(text, "correlation id {}", optional(e.correlation_id));
        let _ = writeln!(text, "causation id   {}", optional(e.causation_id));
        let _ = writeln!(text, "prev hash      {}", e.prev_hash);
        let _ = writeln!(text, "hash           {}", self.hash);
        let _ = writeln!(
            text,
            "record         {} at byte {}",
            self.segment.display(),
            self.offset
        );
        let _ = writeln!(text, "data");
        for line in data.lines() {
            let _ = writeln!(text, "  {line}");
        }
        if e.correlation_id.is_some() {
            let (from, to) = self.searched;
            let _ = writeln!(
                text,
                "same correlation id: {} other event(s) in positions {from}..{to}",
                self.correlated.len()
            );
            for other in &self.correlated {
                let line = one_line(other).map_err(render_error(other.envelope.position.0))?;
                let _ = writeln!(text, "  {line}");
            }
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_positions_or_event_ids() {
        assert_eq!("42".parse::<Target>().unwrap(), Target::Position(42));
        let id = "a0000000-0000-4000-8000-000000000001";
        assert_eq!(
            id.parse::<Target>().unwrap(),
            Target::Id(Uuid::try_parse(id).unwrap())
        );
        assert!("0".parse::<Target>().is_err());
        assert!("-1".parse::<Target>().is_err());
        assert!("VM.START".parse::<Target>().is_err());
    }
}
