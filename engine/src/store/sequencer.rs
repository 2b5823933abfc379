//! The rules of an append, shared by every backend that sequences events itself.
//!
//! Deciding an append (idempotency by event id, the expected-version check, assigning position,
//! version, recorded-at and the previous hash) is the same whether events then go to memory or
//! to segment files, so it lives here once and the backends only say how to look things up.

use std::sync::Arc;

use uuid::Uuid;

use super::{AppendOutcome, ExpectedVersion, StoreError};
use crate::event::json::{canonical_json, canonical_line, hash_line};
use crate::event::{
    Actor, ChainHash, Envelope, EventState, EventType, Level, NewEvent, Position, StreamId,
};
use crate::time::Timestamp;

/// The largest encoded payload one event may have. Records carry a 32-bit length; this much
/// smaller cap keeps a damaged or hostile length from ever turning into a huge allocation.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// An event encoded for appending. Preparation (binary payload, canonical JSON of the data) runs
/// on the caller's task, outside the single writer, so concurrent appenders encode in parallel.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEvent {
    /// The event as proposed.
    pub new: NewEvent,
    /// Its type.
    pub event_type: EventType,
    /// Its family's schema version.
    pub schema: u16,
    /// Binary payload (what the log stores after the envelope); shared, not copied, with the
    /// writer's memory of recent events.
    pub payload: Arc<[u8]>,
    /// Canonical JSON of the payload (what the chain hash covers).
    pub data_json: String,
}

/// Encodes a proposed append, refusing empty appends, repeated ids and oversized events.
pub(crate) fn prepare(
    stream: &StreamId,
    events: Vec<NewEvent>,
) -> Result<Vec<PreparedEvent>, StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyAppend {
            stream: stream.clone(),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    events
        .into_iter()
        .map(|new| {
            if !seen.insert(new.id) {
                return Err(StoreError::DuplicateIdInAppend { id: new.id });
            }
            let mut payload = Vec::with_capacity(128);
            new.body.encode_payload(&mut payload)?;
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Err(StoreError::EventTooLarge {
                    id: new.id,
                    size: payload.len(),
                    limit: MAX_PAYLOAD_BYTES,
                });
            }
            let data_json = canonical_json(&new.body.data_json()?);
            Ok(PreparedEvent {
                event_type: new.body.event_type(),
                schema: new.body.schema(),
                new,
                payload: payload.into(),
                data_json,
            })
        })
        .collect()
}

/// What the log holds about an event that a re-append of its id must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvent {
    /// Where it is.
    pub position: Position,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in that stream.
    pub version: u64,
    /// Its type.
    pub event_type: EventType,
    /// Its binary payload.
    pub payload: Arc<[u8]>,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// Its correlation id.
    pub correlation_id: Option<Uuid>,
    /// Its causation id.
    pub causation_id: Option<Uuid>,
    /// Its level.
    pub level: Level,
    /// Its state.
    pub state: EventState,
}

impl StoredEvent {
    /// Whether `proposed`, appended to `stream`, is this same event again. An unspecified
    /// occurred-at ("now") matches whatever was recorded, so a live retry dedupes.
    fn is_same_as(&self, stream: &StreamId, proposed: &PreparedEvent) -> bool {
        let new = &proposed.new;
        self.stream == *stream
            && self.event_type == proposed.event_type
            && self.payload == proposed.payload
            && self.actor == new.actor
            && self.correlation_id == new.correlation_id
            && self.causation_id == new.causation_id
            && self.level == new.level
            && self.state == new.state
            && new.occurred_at.is_none_or(|t| t == self.occurred_at)
    }
}

/// How a backend answers the sequencer's questions, including about events sequenced earlier in
/// the same group commit but not yet durable.
pub(crate) trait SequencerView {
    /// The stream's version, counting events already sequenced.
    fn stream_version(&mut self, stream: &StreamId) -> Result<u64, StoreError>;
    /// The event with this id, if stored or already sequenced.
    fn find_event(&mut self, id: Uuid) -> Result<Option<StoredEvent>, StoreError>;
    /// Takes note of newly sequenced events, so later decisions see them.
    fn note_sequenced(&mut self, stream: &StreamId, events: &[SequencedEvent]);
}

/// The end of the chain: what the next event continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainTip {
    /// Position of the last event (`Position::START` for an empty log).
    pub last_position: Position,
    /// Its recorded-at: the next one may not be earlier.
    pub last_recorded_at: Timestamp,
    /// Hash of its canonical line: the next one's `prev_hash`.
    pub head_hash: ChainHash,
}

impl ChainTip {
    /// The tip of an empty log.
    pub(crate) const EMPTY: ChainTip = ChainTip {
        last_position: Position::START,
        last_recorded_at: Timestamp::EPOCH,
        head_hash: ChainHash::GENESIS,
    };
}

/// An event with its place in the log assigned.
#[derive(Debug, Clone)]
pub(crate) struct SequencedEvent {
    /// Its envelope, complete.
    pub envelope: Envelope,
    /// The event as prepared.
    pub prepared: PreparedEvent,
}

impl SequencedEvent {
    /// What a later re-append of this id is compared with.
    pub(crate) fn stored(&self) -> StoredEvent {
        let e = &self.envelope;
        StoredEvent {
            position: e.position,
            stream: e.stream.clone(),
            version: e.version,
            event_type: self.prepared.event_type,
            payload: self.prepared.payload.clone(),
            occurred_at: e.occurred_at,
            actor: e.actor,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            level: e.level,
            state: e.state,
        }
    }
}

/// What to do with an append.
pub(crate) enum Decision {
    /// Every event is already stored: answer with where they are, write nothing.
    Duplicate(AppendOutcome),
    /// Write these events; answer with the outcome once they are durable.
    Append(Vec<SequencedEvent>, AppendOutcome),
}

/// Decides an append against the current state and, if it is new, sequences it: assigns
/// positions after `tip`, the stream's next versions, recorded-at `max(now, last recorded-at)`,
/// and the hash chain. Advances `tip` and tells `view` about the new events.
pub(crate) fn decide(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<PreparedEvent>,
    view: &mut impl SequencerView,
    tip: &mut ChainTip,
    now: Timestamp,
) -> Result<Decision, StoreError> {
    let mut duplicates = Vec::new();
    for proposed in &events {
        if let Some(stored) = view.find_event(proposed.new.id)? {
            if !stored.is_same_as(stream, proposed) {
                return Err(StoreError::IdConflict {
                    id: proposed.new.id,
                    position: stored.position,
                });
            }
            duplicates.push(stored);
        }
    }
    if !duplicates.is_empty() {
        if duplicates.len() != events.len() {
            return Err(StoreError::PartialDuplicate {
                stream: stream.clone(),
                duplicates: duplicates.len(),
                new: events.len() - duplicates.len(),
            });
        }
        return Ok(Decision::Duplicate(AppendOutcome {
            positions: duplicates.iter().map(|d| d.position).collect(),
            stream_version: duplicates.iter().map(|d| d.version).max().unwrap_or(0),
            deduplicated: true,
        }));
    }

    let actual = view.stream_version(stream)?;
    if !expected.admits(actual) {
        return Err(StoreError::WrongExpectedVersion {
            stream: stream.clone(),
            expected,
            actual,
        });
    }

    let recorded_at = now.max(tip.last_recorded_at);
    let mut sequenced = Vec::with_capacity(events.len());
    for (i, prepared) in events.into_iter().enumerate() {
        let new = &prepared.new;
        let envelope = Envelope {
            id: new.id,
            position: tip.last_position.next(),
            stream: stream.clone(),
            version: actual + 1 + i as u64,
            occurred_at: new.occurred_at.unwrap_or(recorded_at),
            recorded_at,
            actor: new.actor,
            correlation_id: new.correlation_id,
            causation_id: new.causation_id,
            level: new.level,
            state: new.state,
            schema: prepared.schema,
            prev_hash: tip.head_hash,
        };
        let line = canonical_line(&envelope, prepared.event_type.name(), &prepared.data_json);
        tip.last_position = envelope.position;
        tip.last_recorded_at = recorded_at;
        tip.head_hash = hash_line(&line);
        sequenced.push(SequencedEvent { envelope, prepared });
    }
    let outcome = AppendOutcome {
        positions: sequenced.iter().map(|s| s.envelope.position).collect(),
        stream_version: actual + sequenced.len() as u64,
        deduplicated: false,
    };
    view.note_sequenced(stream, &sequenced);
    Ok(Decision::Append(sequenced, outcome))
}
