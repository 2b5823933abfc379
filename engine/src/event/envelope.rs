//! The envelope every event travels in: identity, place in the log, times, who and why.

use std::fmt;
use std::str::FromStr;

use compact_str::CompactString;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use super::EventBody;
use crate::time::Timestamp;

/// A place in the global log. Positions are strictly increasing in commit order; the embedded
/// and in-memory backends number events 1, 2, 3, ... and `Position(0)` means "before the first".
///
/// Callers must not assume positions are contiguous: a distributed backend may leave gaps.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event: reading or subscribing from here starts at the beginning.
    pub const START: Position = Position(0);

    /// The position right after this one (the next one to read from a checkpoint).
    pub fn next(self) -> Position {
        Position(self.0.saturating_add(1))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The stream an event belongs to: one stream per aggregate (`vm-<uuid>`, `account-<uuid>`), or
/// a singleton stream that owns a global invariant (`config`).
///
/// The category is short lowercase ASCII (`[a-z][a-z0-9_]*`, at most 24 bytes) so it is stored
/// inline without allocation and maps onto NATS subjects and EventStoreDB stream names unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// What kind of aggregate this stream holds.
    category: CompactString,
    /// Which aggregate; `None` for a singleton stream.
    id: Option<Uuid>,
}

/// Why a text is not a valid [`StreamId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid stream id {text:?}: expected a lowercase category such as `vm`, optionally followed by `-<uuid>`"
)]
pub struct StreamIdError {
    text: String,
}

impl StreamId {
    /// The longest category accepted, so that every category is stored inline.
    pub const MAX_CATEGORY_LEN: usize = 24;

    /// The stream of one aggregate, such as `StreamId::new("vm", vm_id)`.
    pub fn new(category: &str, id: Uuid) -> Result<Self, StreamIdError> {
        Self::build(category, Some(id))
    }

    /// A singleton stream, such as `StreamId::singleton("config")`.
    pub fn singleton(category: &str) -> Result<Self, StreamIdError> {
        Self::build(category, None)
    }

    fn build(category: &str, id: Option<Uuid>) -> Result<Self, StreamIdError> {
        let valid = !category.is_empty()
            && category.len() <= Self::MAX_CATEGORY_LEN
            && category.as_bytes()[0].is_ascii_lowercase()
            && category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StreamIdError {
                text: match id {
                    Some(id) => format!("{category}-{id}"),
                    None => category.to_owned(),
                },
            });
        }
        Ok(StreamId {
            category: CompactString::from(category),
            id,
        })
    }

    /// The aggregate kind, such as `vm`.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The aggregate id, or `None` for a singleton stream.
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{}-{}", self.category, id.hyphenated()),
            None => f.write_str(&self.category),
        }
    }
}

impl FromStr for StreamId {
    type Err = StreamIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || StreamIdError { text: s.to_owned() };
        match s.split_once('-') {
            None => StreamId::singleton(s),
            Some((category, id)) => {
                let id = Uuid::try_parse(id).map_err(|_| error())?;
                // Only the canonical hyphenated lowercase form round-trips through the chain hash.
                if id.hyphenated().to_string() != s[category.len() + 1..] {
                    return Err(error());
                }
                StreamId::new(category, id)
            }
        }
    }
}

/// Binary form of a [`StreamId`]: no string formatting or parsing on the hot path.
#[derive(Serialize, Deserialize)]
struct StreamIdParts(CompactString, Option<Uuid>);

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            StreamIdParts(self.category.clone(), self.id).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = CompactString::deserialize(deserializer)?;
            text.parse().map_err(de::Error::custom)
        } else {
            let StreamIdParts(category, id) = StreamIdParts::deserialize(deserializer)?;
            StreamId::build(&category, id).map_err(de::Error::custom)
        }
    }
}

/// Who caused an event. Both ids absent means the system itself (a scheduler, a projection, the
/// orchestrator); imported history keeps the actor it was recorded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Actor {
    /// The CloudStack user that made the call.
    pub user_id: Option<Uuid>,
    /// The account that user belongs to (what scoping and billing go by).
    pub account_id: Option<Uuid>,
}

impl Actor {
    /// The system itself.
    pub const SYSTEM: Actor = Actor {
        user_id: None,
        account_id: None,
    };

    /// A user of an account.
    pub fn user(user_id: Uuid, account_id: Uuid) -> Self {
        Actor {
            user_id: Some(user_id),
            account_id: Some(account_id),
        }
    }
}

/// CloudStack's event level (`listEvents level=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Level {
    /// Normal activity.
    #[default]
    #[serde(rename = "INFO")]
    Info,
    /// Something worth a look.
    #[serde(rename = "WARN")]
    Warn,
    /// A failure.
    #[serde(rename = "ERROR")]
    Error,
}

/// CloudStack's event state: where in its life an action is (`listEvents` shows all four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum EventState {
    /// The resource was created by a synchronous action.
    Created,
    /// An asynchronous action was accepted and queued.
    Scheduled,
    /// An asynchronous action began.
    Started,
    /// The action finished; usage accrues from Completed events only.
    #[default]
    Completed,
}

/// SHA-256 of the canonical JSON of an event: the link of the hash chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of the very first event.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Lowercase hex, as written in JSON.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for ChainHash {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes)?;
        // Uppercase hex would decode but not round-trip into the canonical form.
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(hex::FromHexError::InvalidHexCharacter {
                c: s.chars().find(char::is_ascii_uppercase).unwrap_or('?'),
                index: 0,
            });
        }
        Ok(ChainHash(bytes))
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            // One byte string, not a 32-element tuple: decoding it is a single copy.
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl de::Visitor<'_> for BytesVisitor {
            type Value = ChainHash;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ChainHash, E> {
                <[u8; 32]>::try_from(v)
                    .map(ChainHash)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        if deserializer.is_human_readable() {
            let text = CompactString::deserialize(deserializer)?;
            text.parse().map_err(de::Error::custom)
        } else {
            deserializer.deserialize_bytes(BytesVisitor)
        }
    }
}

/// Everything the log records about an event besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Globally unique; appending the same id twice is idempotent.
    pub id: Uuid,
    /// Where the event sits in the global log.
    pub position: Position,
    /// The aggregate stream it belongs to.
    pub stream: StreamId,
    /// Its 1-based index within that stream: the stream's version after this event.
    pub version: u64,
    /// When it happened (UTC); usage bills by this.
    pub occurred_at: Timestamp,
    /// When the log took it (UTC); never earlier than the previous record's.
    pub recorded_at: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// The request or async job it belongs to, so one action's events can be found together.
    pub correlation_id: Option<Uuid>,
    /// The event that caused it (a driver result names its command's event).
    pub causation_id: Option<Uuid>,
    /// CloudStack level.
    pub level: Level,
    /// CloudStack state.
    pub state: EventState,
    /// Schema version of the event's family when it was recorded.
    pub schema: u16,
    /// Hash of the previous record's canonical JSON (all zeros for the first record).
    pub prev_hash: ChainHash,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Identity, place and provenance.
    pub envelope: Envelope,
    /// What happened. Boxed so that an event is small to move: replay decodes and moves
    /// millions of them, and the largest payloads are hundreds of bytes.
    pub body: Box<EventBody>,
}

/// An event proposed for appending; the store assigns its position, version, recorded-at and
/// previous hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Random for a fresh action ([`NewEvent::new`]), derived from the cause for events that a
    /// projection or scheduler appends ([`NewEvent::derived`]), so re-appending is a no-op.
    pub id: Uuid,
    /// What happened.
    pub body: EventBody,
    /// When it happened; `None` means "now", which makes occurred-at equal recorded-at (live API
    /// actions). Imported history sets it.
    pub occurred_at: Option<Timestamp>,
    /// Who caused it.
    pub actor: Actor,
    /// The request or job it belongs to.
    pub correlation_id: Option<Uuid>,
    /// The event that caused it.
    pub causation_id: Option<Uuid>,
    /// CloudStack level.
    pub level: Level,
    /// CloudStack state.
    pub state: EventState,
}

impl NewEvent {
    /// A new event with a random id, by the system, INFO and Completed.
    pub fn new(body: EventBody) -> Self {
        Self::with_id(Uuid::new_v4(), body)
    }

    /// A new event with a chosen id.
    pub fn with_id(id: Uuid, body: EventBody) -> Self {
        NewEvent {
            id,
            body,
            occurred_at: None,
            actor: Actor::SYSTEM,
            correlation_id: None,
            causation_id: None,
            level: Level::Info,
            state: EventState::Completed,
        }
    }

    /// An event appended because of another one (DESIGN.md invariant 9): its id is derived from
    /// the cause and a kind, and its causation id names the cause.
    pub fn derived(cause: Uuid, kind: &str, body: EventBody) -> Self {
        let mut event = Self::with_id(crate::ids::derived_event_id(cause, kind), body);
        event.causation_id = Some(cause);
        event
    }

    /// Set who caused it.
    pub fn by(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// Set when it happened (imported history).
    pub fn occurred_at(mut self, at: Timestamp) -> Self {
        self.occurred_at = Some(at);
        self
    }

    /// Set the request or job it belongs to.
    pub fn correlated_with(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    /// Set the event that caused it.
    pub fn caused_by(mut self, causation_id: Uuid) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    /// Set the CloudStack level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Set the CloudStack state.
    pub fn state(mut self, state: EventState) -> Self {
        self.state = state;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_through_text() {
        let id = Uuid::parse_str("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        let s = StreamId::new("vm", id).unwrap();
        assert_eq!(s.to_string(), "vm-0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(s.to_string().parse::<StreamId>().unwrap(), s);
        assert_eq!("config".parse::<StreamId>().unwrap().id(), None);
    }

    #[test]
    fn bad_stream_ids_are_rejected() {
        for bad in [
            "",
            "VM-0f8fad5b-d9cb-469f-a165-70867728950e",
            "vm-0F8FAD5B-D9CB-469F-A165-70867728950E",
            "vm-nope",
            "1vm",
            "a.b",
            "a_very_long_category_name_that_does_not_fit",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn chain_hash_hex_is_lowercase_only() {
        let h = ChainHash([0xab; 32]);
        assert_eq!(h.to_hex().parse::<ChainHash>().unwrap(), h);
        assert!(h.to_hex().to_uppercase().parse::<ChainHash>().is_err());
    }
}
