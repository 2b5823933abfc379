//! The last line of an export: what the export claims, so that a truncated export (or one
//! missing its last events) is caught, and so that an auditor can compare the chain head with
//! the one a running server reports.

use engine::event::ChainHash;
use serde::{Deserialize, Serialize};

/// The final line of an export, in canonical JSON:
/// `{"chain_head":"<64 hex>","events":K,"position":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    /// SHA-256 of the last event line of the export: the `prev_hash` the next event of the log
    /// will carry. 64 zeros when the export holds no event.
    pub chain_head: ChainHash,
    /// Event lines in the export.
    pub events: u64,
    /// Position of the last event line (0 when the export holds no event).
    pub position: u64,
}

impl Trailer {
    /// The trailer's line (without the newline). Members are written in sorted order and hold
    /// no nulls, so the line is canonical like every event line.
    pub fn to_line(&self) -> String {
        format!(
            r#"{{"chain_head":"{}","events":{},"position":{}}}"#,
            self.chain_head, self.events, self.position
        )
    }

    /// Whether `line` is meant as a trailer (rather than an event): it starts with its first
    /// member. Event lines start with `{"actor"`.
    pub fn looks_like(line: &str) -> bool {
        line.starts_with(r#"{"chain_head""#)
    }

    /// Reads a trailer line.
    pub fn parse(line: &str) -> Result<Trailer, serde_json::Error> {
        serde_json::from_str(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trips_in_canonical_form() {
        let trailer = Trailer {
            chain_head: ChainHash([0xab; 32]),
            events: 3,
            position: 7,
        };
        let line = trailer.to_line();
        assert!(Trailer::looks_like(&line));
        assert_eq!(Trailer::parse(&line).unwrap(), trailer);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(engine::event::json::canonical_json(&value), line);
    }
}
