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

impl Timestamp {
    /// Appends the canonical text form (`2026-03-08T05:00:00.000Z`) to `out`.
    ///
    /// Hand-written because it is on the append path (every event line holds two timestamps):
    /// calendar arithmetic on the millisecond count gives exactly what chrono prints for the
    /// years 0000 to 9999 (a test holds the two equal); other years go through chrono.
    pub fn write_canonical(self, out: &mut String) {
        const MILLIS_PER_DAY: i64 = 86_400_000;
        const FIRST: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
        const LAST: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        if !(FIRST..=LAST).contains(&self.0) {
            out.push_str(
                &self
                    .to_datetime()
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            );
            return;
        }
        let (year, month, day) = civil_from_days(self.0.div_euclid(MILLIS_PER_DAY));
        let ms = self.0.rem_euclid(MILLIS_PER_DAY);
        let mut text = *b"0000-00-00T00:00:00.000Z";
        put_digits(&mut text[0..4], year);
        put_digits(&mut text[5..7], month);
        put_digits(&mut text[8..10], day);
        put_digits(&mut text[11..13], ms / 3_600_000);
        put_digits(&mut text[14..16], ms / 60_000 % 60);
        put_digits(&mut text[17..19], ms / 1000 % 60);
        put_digits(&mut text[20..23], ms % 1000);
        out.extend(text.iter().map(|&b| char::from(b)));
    }
}

/// Writes `value` as zero-padded decimal digits filling `slot`.
fn put_digits(slot: &mut [u8], mut value: i64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// (year, month, day) of the day `days` after 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(24);
        self.write_canonical(&mut text);
        f.write_str(&text)
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

    /// The hand-written formatter agrees with chrono everywhere it is used.
    #[test]
    fn canonical_text_matches_chrono() {
        let chrono_text =
            |t: Timestamp| t.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut samples = vec![
            0,
            -1,
            1,
            951_782_400_000,     // 2000-02-29
            4_107_542_400_000,   // 2100-03-01
            -62_167_219_200_000, // 0000-01-01
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            1_772_946_000_123,
        ];
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples
                .push(x.rem_euclid(253_402_300_799_999 + 62_167_219_200_000) - 62_167_219_200_000);
        }
        for millis in samples {
            let t = Timestamp::from_millis(millis);
            assert_eq!(t.to_string(), chrono_text(t), "{millis}");
        }
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let _ = Timestamp::from_millis(i64::MAX).to_string();
        let _ = Timestamp::from_millis(i64::MIN).to_string();
    }
}
