//! The external form of events: one canonical JSON object per line (JSON Lines).
//!
//! **Canonical JSON** (what is hashed, and what an export writes): object members sorted by the
//! bytes of their UTF-8 keys, members whose value is `null` left out, no insignificant white
//! space, strings escaped as `serde_json` (and Python's `json.dumps(..., ensure_ascii=False)`)
//! escape them, integers only (money and quantities travel as decimal strings). Each record's
//! `prev_hash` is the SHA-256 of the previous record's canonical line, so an auditor verifies an
//! export with nothing but a JSON parser and SHA-256 (`docs/events.md` shows how).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Actor, ChainHash, CodecError, Envelope, EventBody, EventState, EventType, Level, Position,
    RecordedEvent, StreamId,
};
use crate::time::Timestamp;

/// The canonical text of a JSON value (see the module documentation).
///
/// ```
/// use engine::event::json::canonical_json;
/// let v = serde_json::json!({"b": 1, "a": {"y": null, "x": "é"}});
/// assert_eq!(canonical_json(&v), r#"{"a":{"x":"é"},"b":1}"#);
/// ```
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            // Sort explicitly rather than trusting serde_json's map order: a dependency enabling
            // serde_json's `preserve_order` feature would otherwise silently change every hash.
            let mut members: Vec<(&String, &Value)> =
                map.iter().filter(|(_, v)| !v.is_null()).collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping: `"` `\\` and control characters; everything else verbatim UTF-8.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serialising a &str cannot fail; keep the function total anyway.
        Err(_) => out.push_str("\"\""),
    }
}

/// SHA-256 of a canonical line: the next record's `prev_hash`.
pub fn hash_line(line: &str) -> ChainHash {
    ChainHash(Sha256::digest(line.as_bytes()).into())
}

/// The envelope members of an event's JSON line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    actor: Actor,
    causation_id: Option<Uuid>,
    correlation_id: Option<Uuid>,
    data: Value,
    id: Uuid,
    level: Level,
    occurred_at: Timestamp,
    position: Position,
    prev_hash: ChainHash,
    recorded_at: Timestamp,
    schema: u16,
    state: EventState,
    stream: StreamId,
    #[serde(rename = "type")]
    event_type: String,
    version: u64,
}

/// Why a JSON line is not a valid event.
#[derive(Debug, thiserror::Error)]
pub enum JsonLineError {
    /// Not JSON, or missing/extra/mistyped envelope members.
    #[error("not an event line: {0}")]
    Shape(#[source] serde_json::Error),
    /// The `type` or `data` could not be read.
    #[error("{0}")]
    Payload(#[from] CodecError),
    /// The line is valid JSON but not in canonical form, so its hash would not match.
    #[error("line is not in canonical form (keys sorted, no nulls, no spaces)")]
    NotCanonical,
}

impl RecordedEvent {
    /// The event as a JSON value: its export line before canonical serialisation.
    pub fn to_json_value(&self) -> Result<Value, CodecError> {
        let e = &self.envelope;
        let line = JsonLine {
            actor: e.actor,
            causation_id: e.causation_id,
            correlation_id: e.correlation_id,
            data: self.body.data_json()?,
            id: e.id,
            level: e.level,
            occurred_at: e.occurred_at,
            position: e.position,
            prev_hash: e.prev_hash,
            recorded_at: e.recorded_at,
            schema: e.schema,
            state: e.state,
            stream: e.stream.clone(),
            event_type: self.body.event_type().name().to_owned(),
            version: e.version,
        };
        serde_json::to_value(line).map_err(CodecError::Json)
    }

    /// The event's canonical JSON line (without the trailing newline).
    pub fn to_json_line(&self) -> Result<String, CodecError> {
        let data = canonical_json(&self.body.data_json()?);
        Ok(canonical_line(
            &self.envelope,
            self.body.event_type().name(),
            &data,
        ))
    }

    /// The hash that the next record's `prev_hash` must equal.
    pub fn chain_hash(&self) -> Result<ChainHash, CodecError> {
        Ok(hash_line(&self.to_json_line()?))
    }

    /// Reads an event from its JSON line. The line must be canonical, so that hashing the line
    /// as given and hashing the event agree.
    pub fn from_json_line(line: &str) -> Result<Self, JsonLineError> {
        let parsed: JsonLine = serde_json::from_str(line).map_err(JsonLineError::Shape)?;
        let event_type = EventType::from_name(&parsed.event_type)
            .ok_or_else(|| CodecError::UnknownEventName(parsed.event_type.clone()))?;
        if parsed.schema > event_type.schema() {
            return Err(CodecError::NewerSchema {
                event_type,
                found: parsed.schema,
                supported: event_type.schema(),
            }
            .into());
        }
        let body = EventBody::from_data_json(event_type, parsed.data)?;
        let event = RecordedEvent {
            envelope: Envelope {
                id: parsed.id,
                position: parsed.position,
                stream: parsed.stream,
                version: parsed.version,
                occurred_at: parsed.occurred_at,
                recorded_at: parsed.recorded_at,
                actor: parsed.actor,
                correlation_id: parsed.correlation_id,
                causation_id: parsed.causation_id,
                level: parsed.level,
                state: parsed.state,
                schema: parsed.schema,
                prev_hash: parsed.prev_hash,
            },
            body: Box::new(body),
        };
        if event.to_json_line()? != line {
            return Err(JsonLineError::NotCanonical);
        }
        Ok(event)
    }
}

/// Writes the canonical line of an event whose `data` is already canonical JSON text.
///
/// This is the writer's hot path: it produces exactly `canonical_json(&event.to_json_value())`
/// (a test holds it to that for every event type) without building a JSON tree or going through
/// `format!`, since the group-commit writer runs it once per event, serially.
pub(crate) fn canonical_line(envelope: &Envelope, type_name: &str, data: &str) -> String {
    let e = envelope;
    let mut out = String::with_capacity(420 + data.len());
    let uuid = |out: &mut String, key: &str, id: Uuid| {
        out.push_str(key);
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.push_str(id.hyphenated().encode_lower(&mut buf));
        out.push('"');
    };
    out.push_str("{\"actor\":{");
    if let Some(a) = e.actor.account_id {
        uuid(&mut out, "\"account_id\":\"", a);
    }
    if let Some(u) = e.actor.user_id {
        if e.actor.account_id.is_some() {
            out.push(',');
        }
        uuid(&mut out, "\"user_id\":\"", u);
    }
    out.push('}');
    if let Some(c) = e.causation_id {
        uuid(&mut out, ",\"causation_id\":\"", c);
    }
    if let Some(c) = e.correlation_id {
        uuid(&mut out, ",\"correlation_id\":\"", c);
    }
    out.push_str(",\"data\":");
    out.push_str(data);
    uuid(&mut out, ",\"id\":\"", e.id);
    out.push_str(",\"level\":\"");
    out.push_str(level_name(e.level));
    out.push_str("\",\"occurred_at\":\"");
    e.occurred_at.write_canonical(&mut out);
    out.push_str("\",\"position\":");
    push_u64(&mut out, e.position.0);
    out.push_str(",\"prev_hash\":\"");
    let mut hex = [0u8; 64];
    // Cannot fail: the buffer is exactly twice the hash's length.
    if hex::encode_to_slice(e.prev_hash.0, &mut hex).is_ok() {
        out.extend(hex.iter().map(|&b| char::from(b)));
    }
    out.push_str("\",\"recorded_at\":\"");
    e.recorded_at.write_canonical(&mut out);
    out.push_str("\",\"schema\":");
    push_u64(&mut out, u64::from(e.schema));
    out.push_str(",\"state\":\"");
    out.push_str(state_name(e.state));
    out.push_str("\",\"stream\":\"");
    out.push_str(e.stream.category());
    if let Some(id) = e.stream.id() {
        uuid(&mut out, "-", id);
        out.pop(); // `uuid` closes a JSON string; the stream's string goes on
    }
    out.push_str("\",\"type\":\"");
    out.push_str(type_name);
    out.push_str("\",\"version\":");
    push_u64(&mut out, e.version);
    out.push('}');
    out
}

/// Appends the decimal digits of `value`.
fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&b| char::from(b)));
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    }
}

fn state_name(state: EventState) -> &'static str {
    match state {
        EventState::Created => "Created",
        EventState::Scheduled => "Scheduled",
        EventState::Started => "Started",
        EventState::Completed => "Completed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::samples;

    #[test]
    fn canonical_form_sorts_keys_and_drops_nulls() {
        let v = serde_json::json!({"z": [null, {"b": null, "a": 1}], "a": "x\u{1}\"", "m": true});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"x\u0001\"","m":true,"z":[null,{"a":1}]}"#
        );
    }

    /// The writer's fast path must produce byte for byte what the generic canonicaliser makes
    /// of the event's JSON value, for every event type: otherwise exported lines would not hash
    /// to the chain the log recorded.
    #[test]
    fn fast_line_equals_canonical_json_for_every_event_type() {
        for event in samples::recorded_events() {
            let generic = canonical_json(&event.to_json_value().unwrap());
            assert_eq!(
                event.to_json_line().unwrap(),
                generic,
                "{}",
                event.body.event_type()
            );
        }
    }

    #[test]
    fn fast_line_covers_every_combination_of_optional_envelope_members() {
        let base = samples::recorded_events().remove(0);
        let ids = [None, Some(Uuid::from_u128(1))];
        for account_id in ids {
            for user_id in ids {
                for correlation_id in ids {
                    for causation_id in ids {
                        let mut event = base.clone();
                        event.envelope.actor = Actor {
                            user_id,
                            account_id,
                        };
                        event.envelope.correlation_id = correlation_id;
                        event.envelope.causation_id = causation_id;
                        let generic = canonical_json(&event.to_json_value().unwrap());
                        assert_eq!(event.to_json_line().unwrap(), generic);
                    }
                }
            }
        }
        let mut singleton = base;
        singleton.envelope.stream = "config".parse().unwrap();
        let generic = canonical_json(&singleton.to_json_value().unwrap());
        assert_eq!(singleton.to_json_line().unwrap(), generic);
    }

    #[test]
    fn every_event_type_round_trips_through_its_json_line() {
        for event in samples::recorded_events() {
            let line = event.to_json_line().unwrap();
            let back = RecordedEvent::from_json_line(&line)
                .unwrap_or_else(|e| panic!("{}: {e}\n{line}", event.body.event_type()));
            assert_eq!(back, event);
        }
    }

    #[test]
    fn non_canonical_lines_are_refused() {
        let event = &samples::recorded_events()[0];
        let line = event.to_json_line().unwrap();
        let spaced = line.replacen(":", ": ", 1);
        assert!(matches!(
            RecordedEvent::from_json_line(&spaced),
            Err(JsonLineError::NotCanonical)
        ));
    }

    #[test]
    fn unknown_types_and_members_are_clear_errors() {
        let event = &samples::recorded_events()[0];
        let line = event.to_json_line().unwrap();
        let renamed = line.replace("\"type\":\"VM.CREATE\"", "\"type\":\"VM.NAP\"");
        let err = RecordedEvent::from_json_line(&renamed).unwrap_err();
        assert!(err.to_string().contains("VM.NAP"), "{err}");
        let extra = line.replacen("{", "{\"bogus\":1,", 1);
        assert!(matches!(
            RecordedEvent::from_json_line(&extra),
            Err(JsonLineError::Shape(_))
        ));
    }
}
