//! `ledgerstack tail`: the last events of the log, filtered, and then (`--follow`) the events a
//! running server appends, as they become acknowledged.
//!
//! Like `export`, it reads the segment files read-only through [`LogScanner`]: a running server
//! holds the store's lock, and opening the store a second time is not allowed. Following is
//! polling: when the scan reaches the end it waits, then [`LogScanner::resume`]s, which reads
//! the last segment on from its last commit marker and picks up segments created by a rollover.
//! A group commit still being written is held back until its commit record is whole, so no
//! event is printed that the log could still lose to a torn write.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use engine::event::{CodecError, EventType, RecordedEvent};
use engine::store::embedded::scan::{LogScanner, ScanError};
use serde::Serialize;
use serde_json::Value;

/// One `--type` pattern over the dotted CloudStack type name: an exact name (`VM.START`), or a
/// prefix followed by `*` (`VM.*`, `NET.RULE*`, `*` for every type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    /// Exactly this type.
    Exact(EventType),
    /// Every type whose name starts with this text.
    Prefix(String),
}

/// Why a `--type` pattern was refused: it could never match, which is almost always a typo an
/// auditor would otherwise take for "no such events".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypePatternError {
    /// `*` somewhere else than at the end.
    #[error("type pattern {0:?}: `*` may only end a pattern (VM.* or VM.START)")]
    Wildcard(String),
    /// An exact name not in the catalogue.
    #[error("unknown event type {0:?} (docs/events.md lists them)")]
    UnknownType(String),
    /// A prefix no type in the catalogue starts with.
    #[error("no event type matches {0:?} (docs/events.md lists them)")]
    NoMatch(String),
}

impl FromStr for TypePattern {
    type Err = TypePatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => Err(TypePatternError::Wildcard(s.to_owned())),
            Some(prefix) => {
                if EventType::all().any(|t| t.name().starts_with(prefix)) {
                    Ok(TypePattern::Prefix(prefix.to_owned()))
                } else {
                    Err(TypePatternError::NoMatch(s.to_owned()))
                }
            }
            None if s.contains('*') => Err(TypePatternError::Wildcard(s.to_owned())),
            None => EventType::from_name(s)
                .map(TypePattern::Exact)
                .ok_or_else(|| TypePatternError::UnknownType(s.to_owned())),
        }
    }
}

impl TypePattern {
    /// Whether an event of this type matches.
    pub fn matches(&self, event_type: EventType) -> bool {
        match self {
            TypePattern::Exact(t) => *t == event_type,
            TypePattern::Prefix(prefix) => event_type.name().starts_with(prefix.as_str()),
        }
    }
}

/// Which events to show. An event matches when it matches one of the type patterns (or there
/// are none) and one of the streams (or there are none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `--type` patterns.
    pub types: Vec<TypePattern>,
    /// `--stream` values: a whole stream id (`vm-0f00…`) or a category (`vm`, `identity`).
    pub streams: Vec<String>,
}

impl Filter {
    /// Whether `event` is to be shown.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let event_type = event.body.event_type();
        let stream = &event.envelope.stream;
        (self.types.is_empty() || self.types.iter().any(|p| p.matches(event_type)))
            && (self.streams.is_empty()
                || self
                    .streams
                    .iter()
                    .any(|s| s == stream.category() || *s == stream.to_string()))
    }
}

/// How each event is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One readable line: position, recorded-at, type, stream, actor, a short summary.
    #[default]
    Line,
    /// The canonical line of the external form (`docs/events.md`), exactly as `export` writes
    /// it, so the output can be piped to `jq` or checked against an export.
    Json,
}

/// What to show and whether to keep following.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Which events.
    pub filter: Filter,
    /// How many of the last matching events to print first.
    pub last: usize,
    /// How to print them.
    pub format: Format,
    /// After the last events, keep printing new ones, looking at the log this often.
    pub follow: Option<Duration>,
}

/// Why `tail` stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
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
    #[error("writing the output: {0}")]
    Write(#[source] io::Error),
}

impl TailError {
    /// Whether the reader of the output went away (`tail --follow | head -3`): the normal way
    /// for a pipeline to end, not a failure.
    pub fn is_closed_output(&self) -> bool {
        matches!(self, TailError::Write(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Prints the last `options.last` events of `data_dir` that match the filter, then, when
/// following, every matching event appended later, until `stop` answers true (checked between
/// polls). Memory stays constant: the initial tail is a ring of `last` events. Returns how many
/// events were printed.
pub fn tail(
    data_dir: &Path,
    options: &TailOptions,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<u64, TailError> {
    let mut scanner = LogScanner::open(data_dir)?;
    let mut ring: VecDeque<RecordedEvent> = VecDeque::with_capacity(options.last.min(4096));
    while let Some(scanned) = scanner.next_event()? {
        if options.last == 0 || !options.filter.matches(&scanned.event) {
            continue;
        }
        if ring.len() == options.last {
            ring.pop_front();
        }
        ring.push_back(scanned.event);
    }
    let mut printed = 0u64;
    for event in ring.drain(..) {
        print(&event, options.format, out)?;
        printed += 1;
    }
    out.flush().map_err(TailError::Write)?;
    let Some(poll) = options.follow else {
        return Ok(printed);
    };
    while !stop() {
        std::thread::sleep(poll);
        scanner.resume()?;
        let mut any = false;
        while let Some(scanned) = scanner.next_event()? {
            if options.filter.matches(&scanned.event) {
                print(&scanned.event, options.format, out)?;
                printed += 1;
                any = true;
            }
        }
        if any {
            out.flush().map_err(TailError::Write)?;
        }
    }
    Ok(printed)
}

fn print(event: &RecordedEvent, format: Format, out: &mut dyn Write) -> Result<(), TailError> {
    let line = render(event, format).map_err(|source| TailError::Render {
        position: event.envelope.position.0,
        source,
    })?;
    out.write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(TailError::Write)
}

/// An event as one line (without the newline) in `format`.
pub fn render(event: &RecordedEvent, format: Format) -> Result<String, CodecError> {
    match format {
        Format::Json => event.to_json_line(),
        Format::Line => one_line(event),
    }
}

/// The readable line: `position  recorded-at  TYPE  state  stream  actor  summary`. The state
/// is there because a hypervisor action is two events of one type (the request `Started`, the
/// driver's result `Completed`).
pub fn one_line(event: &RecordedEvent) -> Result<String, CodecError> {
    let e = &event.envelope;
    let data = event.body.data_json()?;
    let line = format!(
        "{:>7}  {}  {:<24} {:<9}  {}  {}  {}",
        e.position.0,
        e.recorded_at,
        event.body.event_type().name(),
        label(&e.state),
        e.stream,
        Actor(e.actor),
        summary(&data)
    );
    Ok(line.trim_end().to_owned())
}

/// The event in the external form of `docs/events.md` as a JSON value: its canonical line
/// parsed, so members are sorted and absent values left out exactly as `export` writes them.
pub fn external_form(event: &RecordedEvent) -> Result<Value, CodecError> {
    serde_json::from_str(&event.to_json_line()?).map_err(CodecError::Json)
}

/// The actor in a few words: `system`, `user <id>` (which implies the account), or
/// `account <id>` when only the account is known.
pub(crate) struct Actor(pub(crate) engine::event::Actor);

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.user_id, self.0.account_id) {
            (Some(user), _) => write!(f, "user {user}"),
            (None, Some(account)) => write!(f, "account {account}"),
            (None, None) => f.write_str("system"),
        }
    }
}

/// Longest summary printed on a line, in characters.
const SUMMARY_CHARS: usize = 100;

/// A short summary of an event's data: its scalar members as `key=value` (names first, nested
/// objects flattened one level deep), leaving out ids (the stream and `inspect` show them),
/// cut at [`SUMMARY_CHARS`].
pub fn summary(data: &Value) -> String {
    let mut leaves: Vec<(&str, &Value)> = Vec::new();
    collect_leaves(data, 0, &mut leaves);
    // Names say most about what an event is about: show them first.
    leaves.sort_by_key(|(key, _)| !key.ends_with("name"));
    let mut text = String::new();
    for (key, value) in leaves {
        let value = match value {
            Value::String(s) if s.contains(char::is_whitespace) || s.is_empty() => {
                format!("{s:?}")
            }
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(key);
        text.push('=');
        text.push_str(&value);
        if text.chars().count() > SUMMARY_CHARS {
            let mut cut: String = text.chars().take(SUMMARY_CHARS - 1).collect();
            cut.push('…');
            return cut;
        }
    }
    text
}

/// Scalar members of `value` down to two levels of objects, ids left out.
fn collect_leaves<'a>(value: &'a Value, depth: usize, leaves: &mut Vec<(&'a str, &'a Value)>) {
    let Value::Object(members) = value else {
        return;
    };
    for (key, member) in members {
        match member {
            Value::Object(_) if depth < 1 => collect_leaves(member, depth + 1, leaves),
            Value::Object(_) | Value::Array(_) | Value::Null => {}
            _ if key.ends_with("_id") || key == "id" => {}
            Value::String(s) if uuid::Uuid::try_parse(s).is_ok() => {}
            _ => leaves.push((key, member)),
        }
    }
}

/// A serde enum's wire name (`INFO`, `Completed`), as the external form writes it.
pub(crate) fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::from("?"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn type_patterns_are_exact_names_or_prefixes_that_match_something() {
        let vm_start = EventType::from_name("VM.START").unwrap();
        let vm_stop = EventType::from_name("VM.STOP").unwrap();
        let net = EventType::from_name("NET.IPASSIGN").unwrap();
        let vm: TypePattern = "VM.*".parse().unwrap();
        assert!(vm.matches(vm_start) && vm.matches(vm_stop) && !vm.matches(net));
        let exact: TypePattern = "VM.START".parse().unwrap();
        assert!(exact.matches(vm_start) && !exact.matches(vm_stop));
        let all: TypePattern = "*".parse().unwrap();
        assert!(all.matches(net));
        assert_eq!(
            "VM.STRAT".parse::<TypePattern>(),
            Err(TypePatternError::UnknownType("VM.STRAT".into()))
        );
        assert_eq!(
            "VN.*".parse::<TypePattern>(),
            Err(TypePatternError::NoMatch("VN.*".into()))
        );
        assert_eq!(
            "*.START".parse::<TypePattern>(),
            Err(TypePatternError::Wildcard("*.START".into()))
        );
    }

    #[test]
    fn summaries_show_names_first_and_leave_ids_out() {
        let data = json!({
            "vm": {"vm_id": "0f000000-0000-4000-8000-0000000000a1", "memory": 1024,
                   "name": "web-01", "hypervisor": "Simulator"},
            "forced": false,
            "host_id": "0f000000-0000-4000-8000-0000000000a2",
            "note": "two words",
        });
        assert_eq!(
            summary(&data),
            "name=web-01 memory=1024 hypervisor=Simulator forced=false note=\"two words\""
        );
        let long = json!({ "description": "x".repeat(300) });
        assert_eq!(summary(&long).chars().count(), SUMMARY_CHARS);
        assert!(summary(&long).ends_with('…'));
    }
}
