//! Point-in-time replay (`ledgerstack replay --at`, `ledgerstack state --at`): every read
//! model, usage and quota included, as it was at a moment of the past.
//!
//! Two clocks matter. *Occurred-at* is when a thing happened in the cloud; *recorded-at* is
//! when the log learned of it. They differ for imported history: a backfill recorded in April
//! can say a VM ran on March 3. `--at TIME` asks what had happened by TIME (occurred-at, every
//! event the log holds now); `--as-known-at TIME` narrows that to what the log had recorded by
//! TIME, so the answer before and after a correction can both be audited. Events are applied in
//! log order either way, so each resource's events keep their order.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use engine::event::RecordedEvent;
use engine::store::embedded::scan::{LogScanner, ScanError};
use engine::time::Timestamp;
use projections::State;

/// Which events of the log a point-in-time replay applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Events up to this log position (1 is the first event).
    Position(u64),
    /// Events that occurred at or before this instant.
    OccurredAt(Timestamp),
}

/// Why `--at` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is neither a log position (1, 2, ...) nor an RFC 3339 time (2026-03-03T14:00:00Z)")]
pub struct AtParseError(String);

impl FromStr for At {
    type Err = AtParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(position) = s.parse::<u64>() {
            return Ok(At::Position(position));
        }
        s.parse::<Timestamp>()
            .map(At::OccurredAt)
            .map_err(|_| AtParseError(s.to_owned()))
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Position(p) => write!(f, "position {p}"),
            At::OccurredAt(t) => write!(f, "{t} (occurred-at)"),
        }
    }
}

/// The moment to replay to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// What had happened by then; `None`: everything.
    pub at: Option<At>,
    /// Only what the log had recorded by this instant; `None`: everything it holds now.
    pub known_at: Option<Timestamp>,
}

impl Moment {
    /// Whether `event` belongs to the state at this moment.
    fn includes(&self, event: &RecordedEvent) -> bool {
        let envelope = &event.envelope;
        let happened = match self.at {
            None => true,
            Some(At::Position(p)) => envelope.position.0 <= p,
            Some(At::OccurredAt(t)) => envelope.occurred_at <= t,
        };
        happened && self.known_at.is_none_or(|t| envelope.recorded_at <= t)
    }

    /// Whether no event from `event` on can belong: the scan may stop. Positions and
    /// recorded-at only grow along the log; occurred-at does not (a backfill comes late).
    fn past_the_end(&self, event: &RecordedEvent) -> bool {
        let envelope = &event.envelope;
        matches!(self.at, Some(At::Position(p)) if envelope.position.0 > p)
            || self.known_at.is_some_and(|t| envelope.recorded_at > t)
    }

    /// The instant the state is "now" at, for answers that depend on the clock: the moment
    /// itself when it is a time, else the last applied event's recorded-at.
    pub fn now(&self, last_recorded: Option<Timestamp>) -> Option<Timestamp> {
        match (self.at, self.known_at) {
            (Some(At::OccurredAt(t)), _) => Some(t),
            (_, Some(t)) => Some(t),
            _ => last_recorded,
        }
    }
}

/// What a replay read and applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Events applied to the read models.
    pub applied: u64,
    /// Events read and left out: they occurred after the moment (late-recorded history
    /// included) or were recorded after `known_at`.
    pub skipped: u64,
    /// Position of the last event applied (0 when none).
    pub last_applied: u64,
    /// Recorded-at of the last event applied.
    pub last_recorded: Option<Timestamp>,
    /// The log's last position read (the head, unless the scan could stop early).
    pub last_read: u64,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log could not be read, or a record is damaged (`ledgerstack verify` says more).
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// `--at` names a position the log does not have yet.
    #[error("position {asked} is beyond the log's head ({head})")]
    BeyondHead {
        /// The position asked for.
        asked: u64,
        /// The log's last position.
        head: u64,
    },
}

/// Replays the log of `data_dir` (read-only: the server may be running) into fresh read
/// models as of `moment`; `progress(bytes read, total bytes)` reports as it goes.
pub fn replay(
    data_dir: &Path,
    moment: Moment,
    downstream: projections::runner::DownstreamFactory,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(State, ReplaySummary), ReplayError> {
    let mut scanner = LogScanner::open(data_dir)?;
    let mut state = State::with_downstream(downstream);
    let mut summary = ReplaySummary::default();
    let mut since_progress = 0u32;
    while let Some(scanned) = scanner.next_event()? {
        let event = scanned.event;
        if moment.past_the_end(&event) {
            break;
        }
        summary.last_read = event.envelope.position.0;
        if moment.includes(&event) {
            state.apply(&event);
            summary.applied += 1;
            summary.last_applied = event.envelope.position.0;
            summary.last_recorded = Some(event.envelope.recorded_at);
        } else {
            summary.skipped += 1;
        }
        since_progress += 1;
        if since_progress == 4096 {
            since_progress = 0;
            progress(scanner.read_bytes(), scanner.total_bytes());
        }
    }
    progress(scanner.read_bytes(), scanner.total_bytes());
    if let Some(At::Position(asked)) = moment.at
        && asked > summary.last_read
        && moment.known_at.is_none()
    {
        return Err(ReplayError::BeyondHead {
            asked,
            head: summary.last_read,
        });
    }
    Ok((state, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_parses_as_a_position_or_an_occurred_at_time() {
        assert_eq!("42".parse::<At>().unwrap(), At::Position(42));
        assert_eq!(
            "2026-03-03T14:00:00Z".parse::<At>().unwrap(),
            At::OccurredAt("2026-03-03T14:00:00.000Z".parse().unwrap())
        );
        assert!("March 3".parse::<At>().is_err());
    }

    #[test]
    fn now_is_the_moment_when_it_is_a_time() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let last = Some(t("2026-03-09T00:00:00Z"));
        let by_time = Moment {
            at: Some(At::OccurredAt(t("2026-03-03T14:00:00Z"))),
            known_at: Some(t("2026-03-05T00:00:00Z")),
        };
        assert_eq!(by_time.now(last), Some(t("2026-03-03T14:00:00Z")));
        let known = Moment {
            at: Some(At::Position(7)),
            known_at: Some(t("2026-03-05T00:00:00Z")),
        };
        assert_eq!(known.now(last), Some(t("2026-03-05T00:00:00Z")));
        let whole = Moment {
            at: None,
            known_at: None,
        };
        assert_eq!(whole.now(last), last);
    }
}
