//! Instants on the UTC timeline.
//!
//! Every time inside Ledgerstack is a [`Timestamp`]: whole milliseconds since the Unix epoch, UTC.
//! Usage arithmetic needs exact integer durations (spec/usage.md: "durations are integer
//! milliseconds"), so the log stores the integer and only presentation converts it to text.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// An instant in UTC with millisecond precision.
///
/// Its JSON form is RFC 3339 with milliseconds and a `Z` suffix
/// (`2026-03-08T05:00:00.000Z`), which is also the form hashed into the event chain; its binary
/// form is the integer count of milliseconds since 1970-01-01T00:00:00Z.
///
/// ```
/// use engine::time::Timestamp;
/// let t: Timestamp = "2026-03-08T05:00:00Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-03-08T05:00:00.000Z");
/// assert_eq!(t.millis(), 1_772_946_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This instant as a chrono UTC date-time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        // Every i64 millisecond count within chrono's range maps; outside it (±262,000 years) we
        // clamp rather than panic, since such values can only come from damaged input.
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(if self.0 < 0 {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            })
    }

    /// The later of two instants.
    pub fn max(self, other: Timestamp) -> Timestamp {
        if other > self { other } else { self }
    }

    /// This instant moved by a signed number of milliseconds, saturating at the ends of time.
    pub fn add_millis(self, millis: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Timestamp(value.timestamp_millis())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        )
    }
}

/// Why a text could not be read as a [`Timestamp`].
#[derive(Debug, thiserror::Error)]
#[error("invalid timestamp {text:?}: expected RFC 3339 such as 2026-03-08T05:00:00.000Z")]
pub struct TimestampParseError {
    text: String,
}

impl FromStr for Timestamp {
    type Err = TimestampParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|_| TimestampParseError { text: s.to_owned() })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                v.parse().map_err(E::custom)
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(TextVisitor)
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_is_rfc3339_millis_utc() {
        let t = Timestamp::from_millis(1_772_946_000_123);
        assert_eq!(t.to_string(), "2026-03-08T05:00:00.123Z");
        assert_eq!("2026-03-08T05:00:00.123Z".parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let t: Timestamp = "2026-03-08T00:00:00-05:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-03-08T05:00:00.000Z");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = "yesterday".parse::<Timestamp>().unwrap_err();
        assert!(err.to_string().contains("\"yesterday\""));
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let _ = Timestamp::from_millis(i64::MAX).to_string();
        let _ = Timestamp::from_millis(i64::MIN).to_string();
    }
}
