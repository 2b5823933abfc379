//! The date formats of the CloudStack API (spec/api.md "Transport", "Signing", "Envelopes").
//!
//! A small hand-written reader rather than chrono's `parse_from_str`: the accepted forms are few
//! and exact (four-digit year, two-digit fields, an offset as `Z`, `+hhmm` or `+hh:mm`), and
//! chrono's format parser is more lenient than that in places (padding, optional fields).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// `expires` formats: `yyyy-MM-dd'T'HH:mm:ssZ` (`+0000`), ISO offset `+01:00`, `Z`; with or without fractional seconds.
///
/// The offset is required: a signed expiry with no zone means nothing definite.
pub fn parse_expires(value: &str) -> Option<DateTime<Utc>> {
    let mut reader = Reader::new(value);
    let date = reader.date()?;
    reader.expect(b'T')?;
    let time = reader.time()?;
    let offset = reader.offset()?;
    reader.end()?;
    to_utc(date.and_time(time), offset)
}

/// List-filter dates: `yyyy-MM-dd` (start of day 00:00:00 when `end_of_day` is false, 23:59:59 when true), `yyyy-MM-dd HH:mm:ss` (UTC), ISO-8601 with offset (`2024-05-01T10:00:00+0000`, `+01:00`, `Z`).
///
/// `end_of_day` only matters for the date-only form; a given time is taken as is. Fractional
/// seconds are accepted after any time.
pub fn parse_filter_date(value: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    let mut reader = Reader::new(value);
    let date = reader.date()?;
    match reader.next() {
        None => {
            let time = if end_of_day {
                NaiveTime::from_hms_opt(23, 59, 59)?
            } else {
                NaiveTime::MIN
            };
            Some(date.and_time(time).and_utc())
        }
        Some(b' ') => {
            let time = reader.time()?;
            reader.end()?;
            Some(date.and_time(time).and_utc())
        }
        Some(b'T') => {
            let time = reader.time()?;
            let offset = reader.offset()?;
            reader.end()?;
            to_utc(date.and_time(time), offset)
        }
        Some(_) => None,
    }
}

/// CloudStack's response date format `yyyy-MM-dd'T'HH:mm:ssZ`, e.g. `2024-05-01T10:00:00+0000` (always UTC here).
pub fn format_date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

fn to_utc(local: NaiveDateTime, offset: FixedOffset) -> Option<DateTime<Utc>> {
    local
        .and_local_timezone(offset)
        .single()
        .map(|at| at.with_timezone(&Utc))
}

/// Reads ASCII fields off the front of a string; every method returns `None` on a mismatch.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            position: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.position += 1;
        Some(byte)
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.next()? == wanted).then_some(())
    }

    fn end(&self) -> Option<()> {
        (self.position == self.bytes.len()).then_some(())
    }

    /// Exactly `count` ASCII digits.
    fn number(&mut self, count: usize) -> Option<u32> {
        let mut number = 0;
        for _ in 0..count {
            let byte = self.next()?;
            if !byte.is_ascii_digit() {
                return None;
            }
            number = number * 10 + u32::from(byte - b'0');
        }
        Some(number)
    }

    /// `yyyy-MM-dd`.
    fn date(&mut self) -> Option<NaiveDate> {
        let year = self.number(4)?;
        self.expect(b'-')?;
        let month = self.number(2)?;
        self.expect(b'-')?;
        let day = self.number(2)?;
        NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
    }

    /// `HH:mm:ss` with an optional fraction of any length; digits past nanoseconds are read
    /// and dropped.
    fn time(&mut self) -> Option<NaiveTime> {
        let hour = self.number(2)?;
        self.expect(b':')?;
        let minute = self.number(2)?;
        self.expect(b':')?;
        let second = self.number(2)?;
        let mut nanos = 0;
        if self.peek() == Some(b'.') {
            self.position += 1;
            let mut digits = 0;
            while let Some(byte) = self.peek().filter(u8::is_ascii_digit) {
                if digits < 9 {
                    nanos = nanos * 10 + u32::from(byte - b'0');
                }
                digits += 1;
                self.position += 1;
            }
            if digits == 0 {
                return None;
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
    }

    /// `Z`, `+hhmm` or `+hh:mm` (or `-`).
    fn offset(&mut self) -> Option<FixedOffset> {
        let sign = match self.next()? {
            b'Z' | b'z' => return FixedOffset::east_opt(0),
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours = self.number(2)?;
        if self.peek() == Some(b':') {
            self.position += 1;
        }
        let minutes = self.number(2)?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
        FixedOffset::east_opt(sign * seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn expires_in_cs_format_with_plus_0000() {
        assert_eq!(
            parse_expires("2026-11-23T10:00:00+0000"),
            Some(utc(2026, 11, 23, 10, 0, 0))
        );
    }

    #[test]
    fn expires_with_iso_offset_is_converted_to_utc() {
        assert_eq!(
            parse_expires("2026-11-23T10:00:00+01:00"),
            Some(utc(2026, 11, 23, 9, 0, 0))
        );
        assert_eq!(
            parse_expires("2026-11-23T10:00:00-0530"),
            Some(utc(2026, 11, 23, 15, 30, 0))
        );
    }

    #[test]
    fn expires_with_z() {
        assert_eq!(
            parse_expires("2026-11-23T10:00:00Z"),
            Some(utc(2026, 11, 23, 10, 0, 0))
        );
    }

    #[test]
    fn expires_with_fractional_seconds() {
        let at = parse_expires("2026-11-23T10:00:00.250+0000").expect("fraction");
        assert_eq!(
            at,
            utc(2026, 11, 23, 10, 0, 0) + chrono::Duration::milliseconds(250)
        );
        let at = parse_expires("2026-11-23T10:00:00.123456789123Z").expect("long fraction");
        assert_eq!(at.timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn expires_rejects_everything_else() {
        for bad in [
            "",
            "garbage",
            "2026-11-23",
            "2026-11-23T10:00:00",
            "2026-11-23 10:00:00+0000",
            "2026-11-23T10:00+0000",
            "2026-11-23T10:00:00 0000",
            "2026-11-23T10:00:00+00",
            "2026-11-23T10:00:00+2400",
            "2026-11-23T10:00:00+0060",
            "2026-11-23T10:00:00.+0000",
            "2026-11-23T10:00:00+0000x",
            "2026-13-01T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T10:00:60Z",
            "26-11-23T10:00:00Z",
            "2026-1-23T10:00:00Z",
            "２０２６-11-23T10:00:00Z",
        ] {
            assert_eq!(parse_expires(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn filter_date_only_is_start_or_end_of_day() {
        assert_eq!(
            parse_filter_date("2024-05-01", false),
            Some(utc(2024, 5, 1, 0, 0, 0))
        );
        assert_eq!(
            parse_filter_date("2024-05-01", true),
            Some(utc(2024, 5, 1, 23, 59, 59))
        );
    }

    #[test]
    fn filter_date_with_space_separated_time_is_utc() {
        for end_of_day in [false, true] {
            assert_eq!(
                parse_filter_date("2024-05-01 10:11:12", end_of_day),
                Some(utc(2024, 5, 1, 10, 11, 12))
            );
        }
    }

    #[test]
    fn filter_date_iso_with_offset() {
        assert_eq!(
            parse_filter_date("2024-05-01T10:00:00+0000", false),
            Some(utc(2024, 5, 1, 10, 0, 0))
        );
        assert_eq!(
            parse_filter_date("2024-05-01T10:00:00+01:00", true),
            Some(utc(2024, 5, 1, 9, 0, 0))
        );
        assert_eq!(
            parse_filter_date("2024-05-01T10:00:00Z", false),
            Some(utc(2024, 5, 1, 10, 0, 0))
        );
    }

    #[test]
    fn filter_date_rejects_other_forms() {
        for bad in [
            "",
            "yesterday",
            "2024-05-01T10:00:00",
            "2024-05-01 10:00",
            "2024-05-01 10:00:00Z",
            "2024-05-01x",
            "2024/05/01",
            "2024-05-32",
        ] {
            assert_eq!(parse_filter_date(bad, false), None, "{bad:?}");
        }
    }

    #[test]
    fn format_is_cloudstacks_with_plus_0000() {
        assert_eq!(
            format_date(utc(2024, 5, 1, 10, 0, 0)),
            "2024-05-01T10:00:00+0000"
        );
        let with_fraction = utc(2024, 5, 1, 10, 0, 0) + chrono::Duration::milliseconds(999);
        assert_eq!(format_date(with_fraction), "2024-05-01T10:00:00+0000");
    }

    #[test]
    fn formatted_dates_parse_back() {
        let at = utc(1999, 12, 31, 23, 59, 59);
        assert_eq!(parse_expires(&format_date(at)), Some(at));
        assert_eq!(parse_filter_date(&format_date(at), false), Some(at));
    }
}
