//! Checking a sequence of events against the log's invariants: each `prev_hash` is the hash of
//! the previous event's canonical line, positions strictly increase, recorded-at never goes
//! back, and each stream's versions run 1, 2, 3, ... without a gap.

use std::collections::HashMap;

use super::{ChainHash, CodecError, Position, RecordedEvent, StreamId};
use crate::time::Timestamp;

/// The first way a sequence of events breaks the log's invariants.
#[derive(Debug, thiserror::Error)]
pub enum ChainViolation {
    /// The event's `prev_hash` is not the hash of the event before it.
    #[error(
        "position {position}: prev_hash {found} does not match the previous event's hash {expected}"
    )]
    HashMismatch {
        /// Where.
        position: Position,
        /// Hash of the previous event.
        expected: ChainHash,
        /// What the event says.
        found: ChainHash,
    },
    /// Positions did not increase.
    #[error("position {position} follows position {previous}")]
    PositionOrder {
        /// Where.
        position: Position,
        /// The position before it.
        previous: Position,
    },
    /// Recorded-at went backwards.
    #[error(
        "position {position}: recorded_at {recorded_at} is earlier than the previous event's {previous}"
    )]
    TimeWentBack {
        /// Where.
        position: Position,
        /// This event's recorded-at.
        recorded_at: Timestamp,
        /// The previous event's.
        previous: Timestamp,
    },
    /// A stream skipped or repeated a version.
    #[error("position {position}: stream {stream} has version {found}, expected {expected}")]
    VersionGap {
        /// Where.
        position: Position,
        /// The stream.
        stream: StreamId,
        /// The version that should come next.
        expected: u64,
        /// The version found.
        found: u64,
    },
    /// The event could not be put in canonical form.
    #[error("position {position}: {source}")]
    Codec {
        /// Where.
        position: Position,
        /// Why.
        source: CodecError,
    },
}

impl ChainViolation {
    /// The position of the offending event.
    pub fn position(&self) -> Position {
        match self {
            ChainViolation::HashMismatch { position, .. }
            | ChainViolation::PositionOrder { position, .. }
            | ChainViolation::TimeWentBack { position, .. }
            | ChainViolation::VersionGap { position, .. }
            | ChainViolation::Codec { position, .. } => *position,
        }
    }
}

/// Checks events one at a time, from the start of the log.
///
/// ```
/// use engine::event::chain::ChainVerifier;
/// let verifier = ChainVerifier::new();
/// assert_eq!(verifier.head(), engine::event::ChainHash::GENESIS);
/// ```
#[derive(Debug, Default)]
pub struct ChainVerifier {
    head: ChainHash,
    last: Option<(Position, Timestamp)>,
    versions: HashMap<StreamId, u64>,
}

impl ChainVerifier {
    /// A verifier expecting the first event of a log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hash of the last event checked (what the next `prev_hash` must be).
    pub fn head(&self) -> ChainHash {
        self.head
    }

    /// Checks the next event.
    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), ChainViolation> {
        let e = &event.envelope;
        if e.prev_hash != self.head {
            return Err(ChainViolation::HashMismatch {
                position: e.position,
                expected: self.head,
                found: e.prev_hash,
            });
        }
        if let Some((previous, previous_time)) = self.last {
            if e.position <= previous {
                return Err(ChainViolation::PositionOrder {
                    position: e.position,
                    previous,
                });
            }
            if e.recorded_at < previous_time {
                return Err(ChainViolation::TimeWentBack {
                    position: e.position,
                    recorded_at: e.recorded_at,
                    previous: previous_time,
                });
            }
        }
        let version = self.versions.entry(e.stream.clone()).or_insert(0);
        if e.version != *version + 1 {
            return Err(ChainViolation::VersionGap {
                position: e.position,
                stream: e.stream.clone(),
                expected: *version + 1,
                found: e.version,
            });
        }
        *version = e.version;
        self.head = event.chain_hash().map_err(|source| ChainViolation::Codec {
            position: e.position,
            source,
        })?;
        self.last = Some((e.position, e.recorded_at));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::samples;

    fn verify(events: &[RecordedEvent]) -> Result<(), ChainViolation> {
        let mut verifier = ChainVerifier::new();
        events.iter().try_for_each(|e| verifier.check(e))
    }

    #[test]
    fn samples_form_a_valid_chain() {
        verify(&samples::recorded_events()).unwrap();
    }

    #[test]
    fn a_changed_payload_breaks_the_next_link() {
        let mut events = samples::recorded_events();
        if let crate::event::EventBody::Vm(crate::event::VmEvent::Create(c)) = &mut *events[0].body
        {
            c.vm.memory += 1;
        }
        let err = verify(&events).unwrap_err();
        assert_eq!(err.position(), Position(2));
        assert!(matches!(err, ChainViolation::HashMismatch { .. }));
    }

    #[test]
    fn reordering_is_caught_where_it_happens() {
        let mut events = samples::recorded_events();
        events.swap(4, 5);
        assert_eq!(verify(&events).unwrap_err().position(), Position(6));
    }
}
