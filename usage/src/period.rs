//! Period arithmetic: how the UTC timeline is cut into usage periods (spec/usage.md, "Periods").
//!
//! A period is a half-open interval `[start, end)` between two consecutive *boundaries* of the
//! aggregation rule in force. Three kinds of rule exist, decided by the range in minutes:
//!
//! - **daily** (1440): the period of local date D runs from the first instant whose local date is
//!   D to the first instant whose local date is D + 1, in the aggregation zone. That is local
//!   midnight on ordinary days, the earliest midnight when it occurs twice (America/Havana
//!   2026-11-01) and the end of the gap when it does not exist (America/Santiago 2026-09-06), so
//!   a spring-forward day is one 23-hour period and a fall-back day one 25-hour period;
//! - **sub-daily** (ranges below 1440 that divide it: 1, 2, ..., 30, 60, 120, 720): the boundaries
//!   are the instants whose local wall time is a whole multiple of the range after local
//!   midnight; a local time that does not exist is no boundary, one that occurs twice is two;
//! - **grid** (every other range: 7, 2880, 1441, ...): multiples of the range in absolute time
//!   from the Unix epoch, whatever the zone.
//!
//! Everything here is a pure function of its arguments: no wall clock, no floats. Durations are
//! integer milliseconds.
//!
//! The zone-aware rules are evaluated within about 190,000 years either side of 1970 (well
//! inside what chrono can represent); outside that range they
//! have no boundaries, so the first and last periods stretch to [`BEGINNING_OF_TIME`] and
//! [`END_OF_TIME`]. Values that far out can only come from damaged input; this keeps them from
//! panicking.

use std::collections::VecDeque;

use chrono::{DateTime, LocalResult, Offset, TimeZone};
use chrono_tz::Tz;
use engine::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The earliest representable instant. Treated as a boundary of every rule, so that every
/// instant belongs to some period.
pub const BEGINNING_OF_TIME: Timestamp = Timestamp::from_millis(i64::MIN);

/// The latest representable instant: what [`AggregationRule::next_boundary`] returns when there
/// is no later boundary. Periods are half-open, so this one millisecond belongs to no period.
pub const END_OF_TIME: Timestamp = Timestamp::from_millis(i64::MAX);

/// Earliest instant (in ms) at which zone-aware boundaries are computed: about 190,000 years
/// before 1970, far from chrono's limits so that date arithmetic around it cannot overflow.
const ZONED_MIN: i64 = -6_000_000_000_000_000;

/// Latest instant (in ms) at which zone-aware boundaries are computed (mirror of [`ZONED_MIN`]).
const ZONED_MAX: i64 = 6_000_000_000_000_000;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
const MINUTES_PER_DAY: u32 = 1440;

/// No UTC offset in the time-zone database reaches 26 hours (the widest are LMT offsets of about
/// ±15 h), so the local time of an instant is within this distance of its UTC time.
const MAX_OFFSET_MS: i64 = 26 * HOUR_MS;

/// How far around a window to look for local times when mapping local boundaries to instants:
/// ordinary offset changes (DST, 30-minute shifts, zone corrections) are at most a few hours.
/// Wider changes (date-line moves such as Pacific/Apia 2011) widen it, see
/// [`local_margin`].
const LOCAL_MARGIN_MS: i64 = 3 * HOUR_MS;

/// Why a period setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// `usage.stats.job.aggregation.range` must be at least one minute.
    #[error("the aggregation range must be at least 1 minute, got 0")]
    ZeroRange,
    /// `usage.aggregation.timezone` must name a zone of the IANA time-zone database.
    #[error("unknown time zone {0:?}: expected an IANA name such as GMT, UTC or America/New_York")]
    UnknownZone(String),
    /// A stored schedule breaks its invariants (read from disk or the network).
    #[error("invalid aggregation schedule: {0}")]
    InvalidSchedule(&'static str),
}

/// Parses an IANA zone name (`GMT`, `UTC`, `America/New_York`, ...) given for
/// `usage.aggregation.timezone`. Names are case-sensitive, as in the database; surrounding
/// whitespace is ignored because settings are often typed by hand.
pub fn parse_zone(name: &str) -> Result<Tz, PeriodError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| PeriodError::UnknownZone(name.to_owned()))
}

/// How periods are cut: `usage.stats.job.aggregation.range` minutes and the aggregation zone
/// (`usage.aggregation.timezone`, or an account's own zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct AggregationRule {
    /// Length of a period in minutes (at least 1). 1440 is daily; divisors of 1440 follow local
    /// wall time; anything else is a grid in absolute time.
    pub range_minutes: u32,
    /// The zone whose local dates and wall times the daily and sub-daily rules follow; ignored by
    /// grid ranges.
    pub zone: Tz,
}

/// The unchecked form of [`AggregationRule`] as stored, validated on the way in.
#[derive(Deserialize)]
struct RawRule {
    range_minutes: u32,
    zone: Tz,
}

impl TryFrom<RawRule> for AggregationRule {
    type Error = PeriodError;

    fn try_from(raw: RawRule) -> Result<Self, Self::Error> {
        AggregationRule::new(raw.range_minutes, raw.zone)
    }
}

/// Which of the three ways of cutting periods a rule uses (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Local dates in the zone.
    Daily,
    /// Local wall times that are multiples of this many milliseconds after local midnight.
    SubDaily(i64),
    /// Multiples of this many milliseconds from the Unix epoch.
    Grid(i64),
}

impl AggregationRule {
    /// Daily periods in GMT (CloudStack's defaults: range 1440, zone GMT).
    pub const DEFAULT: AggregationRule = AggregationRule {
        range_minutes: MINUTES_PER_DAY,
        zone: Tz::GMT,
    };

    /// A rule of `range_minutes` minutes in `zone`; the range must be at least one minute.
    pub fn new(range_minutes: u32, zone: Tz) -> Result<Self, PeriodError> {
        if range_minutes == 0 {
            return Err(PeriodError::ZeroRange);
        }
        Ok(AggregationRule {
            range_minutes,
            zone,
        })
    }

    /// The range in milliseconds. A `u32` count of minutes always fits.
    fn range_ms(&self) -> i64 {
        // max(1): a rule built by struct literal may bypass `new`; never divide by zero.
        i64::from(self.range_minutes.max(1)) * MINUTE_MS
    }

    /// Which way this rule cuts periods, from its range.
    fn kind(&self) -> Kind {
        let range = self.range_minutes.max(1);
        if range == MINUTES_PER_DAY {
            Kind::Daily
        } else if range < MINUTES_PER_DAY && MINUTES_PER_DAY.is_multiple_of(range) {
            Kind::SubDaily(self.range_ms())
        } else {
            Kind::Grid(self.range_ms())
        }
    }

    /// The first boundary strictly after `at`, or [`END_OF_TIME`] if there is none.
    pub fn next_boundary(&self, at: Timestamp) -> Timestamp {
        let at = at.millis();
        let next = match self.kind() {
            Kind::Grid(range) => at
                .div_euclid(range)
                .checked_add(1)
                .and_then(|k| k.checked_mul(range)),
            Kind::Daily | Kind::SubDaily(_) => self.zoned_next(at),
        };
        next.map_or(END_OF_TIME, Timestamp::from_millis)
    }

    /// The last boundary at or before `at`, or [`BEGINNING_OF_TIME`] if there is none.
    pub fn boundary_at_or_before(&self, at: Timestamp) -> Timestamp {
        let at = at.millis();
        let previous = match self.kind() {
            Kind::Grid(range) => at.div_euclid(range).checked_mul(range),
            Kind::Daily | Kind::SubDaily(_) => self.zoned_at_or_before(at),
        };
        previous.map_or(BEGINNING_OF_TIME, Timestamp::from_millis)
    }

    /// The period of this rule containing `at` (unbounded by any schedule change).
    pub fn period_containing(&self, at: Timestamp) -> Period {
        Period {
            start: self.boundary_at_or_before(at),
            end: self.next_boundary(at),
        }
    }

    /// How far ahead the period iterator computes boundaries at once: a day's worth for short
    /// ranges, a few periods for long ones.
    fn window_ms(&self) -> i64 {
        self.range_ms().saturating_mul(4).max(DAY_MS)
    }

    /// The sizes of the windows searched for a neighbouring boundary, smallest first. One range
    /// holds the neighbour almost always (consecutive boundaries are a range apart except
    /// around offset changes); a range plus a few hours covers any gap but a skipped date; the
    /// larger ones cover those.
    fn search_windows(&self) -> impl Iterator<Item = i64> {
        let range = self.range_ms();
        std::iter::once(range).chain(
            std::iter::successors(Some(range + LOCAL_MARGIN_MS), |w| w.checked_mul(4)).take(3),
        )
    }

    /// Zone-aware: the first boundary after `at`.
    fn zoned_next(&self, at: i64) -> Option<i64> {
        if at >= ZONED_MAX {
            return None;
        }
        let at = at.max(ZONED_MIN - 1);
        for window in self.search_windows() {
            let hi = at.saturating_add(window).min(ZONED_MAX);
            if let Some(&first) = self.boundaries_between(at, hi).first() {
                return Some(first);
            }
            if hi == ZONED_MAX {
                return None;
            }
        }
        None
    }

    /// Zone-aware: the last boundary at or before `at`.
    fn zoned_at_or_before(&self, at: i64) -> Option<i64> {
        if at < ZONED_MIN {
            return None;
        }
        let at = at.min(ZONED_MAX);
        for window in self.search_windows() {
            let lo = at.saturating_sub(window).max(ZONED_MIN - 1);
            if let Some(&last) = self.boundaries_between(lo, at).last() {
                return Some(last);
            }
            if lo == ZONED_MIN - 1 {
                return None;
            }
        }
        None
    }

    /// Every boundary `b` with `lo < b <= hi`, in increasing order.
    fn boundaries_between(&self, lo: i64, hi: i64) -> Vec<i64> {
        match self.kind() {
            Kind::Grid(range) => {
                let mut out = Vec::new();
                let mut k = lo.div_euclid(range).saturating_add(1);
                while let Some(b) = k.checked_mul(range) {
                    if b > hi {
                        break;
                    }
                    out.push(b);
                    k += 1;
                }
                out
            }
            Kind::SubDaily(range) => zoned_window(lo, hi)
                .map(|(lo, hi)| sub_daily_boundaries(self.zone, range, lo, hi))
                .unwrap_or_default(),
            Kind::Daily => zoned_window(lo, hi)
                .map(|(lo, hi)| daily_boundaries(self.zone, lo, hi))
                .unwrap_or_default(),
        }
    }
}

/// The part of the window `(lo, hi]` where zone-aware boundaries are computed, if any.
fn zoned_window(lo: i64, hi: i64) -> Option<(i64, i64)> {
    let lo = lo.max(ZONED_MIN - 1);
    let hi = hi.min(ZONED_MAX);
    (lo < hi).then_some((lo, hi))
}

impl Default for AggregationRule {
    fn default() -> Self {
        AggregationRule::DEFAULT
    }
}

/// The UTC offset of `zone` at the instant `at` (ms), in milliseconds.
fn offset_ms(zone: Tz, at: i64) -> i64 {
    let utc = Timestamp::from_millis(at).to_datetime().naive_utc();
    i64::from(zone.offset_from_utc_datetime(&utc).fix().local_minus_utc()) * 1000
}

/// The local wall time of the instant `at` in `zone`, as milliseconds since the naive epoch
/// (1970-01-01T00:00 local): the local date is `div_euclid(DAY_MS)`, the time of day the rest.
fn local_ms(zone: Tz, at: i64) -> i64 {
    at + offset_ms(zone, at)
}

/// The instants (ms) whose local wall time in `zone` is `local` (ms since the naive epoch):
/// none in a gap, two where the wall time repeats, otherwise one.
fn instants_of_local(zone: Tz, local: i64) -> LocalResult<i64> {
    let Some(naive) = DateTime::from_timestamp_millis(local).map(|t| t.naive_utc()) else {
        return LocalResult::None;
    };
    zone.from_local_datetime(&naive)
        .map(|t| t.timestamp_millis())
}

/// The first instant whose local date is `day` (days since 1970-01-01, local) in `zone`: local
/// midnight, the earlier one when it repeats, the end of the gap when it does not exist.
fn day_start(zone: Tz, day: i64) -> i64 {
    let midnight = day * DAY_MS;
    match instants_of_local(zone, midnight) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(a, b) => a.min(b),
        LocalResult::None => gap_end(zone, midnight),
    }
}

/// The first instant whose local time in `zone` is at or after `local`, for a `local` wall time
/// that does not exist: the instant the clocks jump over it.
///
/// chrono-tz does not expose its transitions, so this is a binary search on UTC milliseconds.
/// Within a day either side the local time only jumps forward over `local` (it never occurs,
/// hence cannot be returned to and left again), so the predicate "local time >= `local`" turns
/// from false to true once.
fn gap_end(zone: Tz, local: i64) -> i64 {
    // local(lo) < local and local(hi) >= local, since offsets are below MAX_OFFSET_MS.
    let mut lo = local - MAX_OFFSET_MS;
    let mut hi = local + MAX_OFFSET_MS;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_ms(zone, mid) >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// How far local times can be from the window `[lo, hi]` shifted by its end offsets: the usual
/// margin, widened when the zone's offset moves by more than that nearby (date-line changes).
fn local_margin(zone: Tz, lo: i64, hi: i64) -> i64 {
    let samples = [lo.saturating_sub(DAY_MS), lo, hi, hi.saturating_add(DAY_MS)]
        .map(|t| offset_ms(zone, t.clamp(ZONED_MIN - DAY_MS, ZONED_MAX + DAY_MS)));
    let spread =
        samples.iter().max().copied().unwrap_or(0) - samples.iter().min().copied().unwrap_or(0);
    LOCAL_MARGIN_MS.max(spread + 30 * MINUTE_MS)
}

/// Daily boundaries in `(lo, hi]`: the starts of the local dates around the window. Dates two
/// days beyond each end are included because offsets move local dates by up to a day.
fn daily_boundaries(zone: Tz, lo: i64, hi: i64) -> Vec<i64> {
    let first = local_ms(zone, lo).div_euclid(DAY_MS) - 2;
    let last = local_ms(zone, hi).div_euclid(DAY_MS) + 2;
    let mut out: Vec<i64> = (first..=last)
        .map(|day| day_start(zone, day))
        .filter(|&b| lo < b && b <= hi)
        .collect();
    // In order already on any real calendar; sorting keeps the result well-formed regardless.
    out.sort_unstable();
    out.dedup();
    out
}

/// Sub-daily boundaries in `(lo, hi]`: every local wall time that is a multiple of `range` (ms)
/// after local midnight, in a local window around `[lo, hi]`, mapped to its instants (none in a
/// gap, two where the wall time repeats). As `range` divides a day, multiples of it from the
/// naive epoch are exactly the multiples after each local midnight.
fn sub_daily_boundaries(zone: Tz, range: i64, lo: i64, hi: i64) -> Vec<i64> {
    let margin = local_margin(zone, lo, hi);
    let from = (local_ms(zone, lo) - margin).div_euclid(range) * range;
    let to = local_ms(zone, hi) + margin;
    let mut out = Vec::new();
    let mut local = from;
    while local <= to {
        match instants_of_local(zone, local) {
            LocalResult::Single(t) => out.push(t),
            LocalResult::Ambiguous(a, b) => out.extend([a, b]),
            LocalResult::None => {}
        }
        local += range;
    }
    out.retain(|&b| lo < b && b <= hi);
    // Repeated wall times yield their instants out of order, and a wide margin can map one
    // instant twice.
    out.sort_unstable();
    out.dedup();
    out
}

/// A half-open period `[start, end)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    /// The first instant of the period (a boundary).
    pub start: Timestamp,
    /// The first instant after the period (the next boundary).
    pub end: Timestamp,
}

impl Period {
    /// Whether `at` falls in `[start, end)`.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }

    /// The length in whole milliseconds, exact (saturating only for the open-ended periods at
    /// the ends of time).
    pub fn duration_millis(&self) -> i64 {
        self.end.millis().saturating_sub(self.start.millis())
    }
}

/// The rule in force over time.
///
/// A change takes effect at the next boundary of the rule in force when it was made, so periods
/// always tile the timeline: every instant is in exactly one period, and each period ends where
/// the next begins.
///
/// Stored as `{"initial": rule, "changes": [[effective from, rule], ...]}`: the beginning of time
/// has no text form, so the first rule is kept apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSchedule", into = "RawSchedule")]
pub struct Schedule {
    /// `(effective from, rule)` in strictly increasing order of instant; never empty, the first
    /// effective from [`BEGINNING_OF_TIME`]. Each later instant is a boundary of the rule before.
    changes: Vec<(Timestamp, AggregationRule)>,
}

/// The stored form of [`Schedule`], validated on the way in.
#[derive(Serialize, Deserialize)]
struct RawSchedule {
    /// The rule in force from the beginning of time.
    initial: AggregationRule,
    /// The later changes, each with the instant it takes effect.
    changes: Vec<(Timestamp, AggregationRule)>,
}

impl From<Schedule> for RawSchedule {
    fn from(schedule: Schedule) -> Self {
        let mut changes = schedule.changes.into_iter();
        let initial = changes
            .next()
            .map_or(AggregationRule::DEFAULT, |(_, rule)| rule);
        RawSchedule {
            initial,
            changes: changes.collect(),
        }
    }
}

impl TryFrom<RawSchedule> for Schedule {
    type Error = PeriodError;

    fn try_from(raw: RawSchedule) -> Result<Self, Self::Error> {
        let mut changes = Vec::with_capacity(raw.changes.len() + 1);
        changes.push((BEGINNING_OF_TIME, raw.initial));
        changes.extend(raw.changes);
        if changes.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(PeriodError::InvalidSchedule(
                "changes must take effect in strictly increasing order, after the beginning of time",
            ));
        }
        Ok(Schedule { changes })
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::new(AggregationRule::DEFAULT)
    }
}

impl Schedule {
    /// A schedule where `initial` has always been in force.
    pub fn new(initial: AggregationRule) -> Self {
        Schedule {
            changes: vec![(BEGINNING_OF_TIME, initial)],
        }
    }

    /// The rules and the instants from which each is in force, in order; the first is in force
    /// from [`BEGINNING_OF_TIME`].
    pub fn changes(&self) -> &[(Timestamp, AggregationRule)] {
        &self.changes
    }

    /// A change made at `at`: effective from the next boundary (strictly after `at`) of the rule
    /// in force at `at`. Changes already scheduled after `at` (pending) are dropped: the latest
    /// decision wins at that boundary. Returns the instant the change takes effect.
    ///
    /// Choosing the rule that is in force at `at` cancels any pending change and adds nothing;
    /// the instant returned is then when a change would have taken effect. If the rule in force
    /// has no boundary after `at` (the end of time), nothing is scheduled and [`END_OF_TIME`] is
    /// returned.
    pub fn change(&mut self, at: Timestamp, rule: AggregationRule) -> Timestamp {
        let index = self.index_at(at);
        let current = self.changes[index].1;
        let effective = current.next_boundary(at);
        self.changes.truncate(index + 1);
        if rule != current && effective != END_OF_TIME {
            self.changes.push((effective, rule));
        }
        effective
    }

    /// The index of the change in force at `at`. The first change is in force from the
    /// beginning of time, so there always is one.
    fn index_at(&self, at: Timestamp) -> usize {
        self.changes
            .partition_point(|(from, _)| *from <= at)
            .saturating_sub(1)
    }

    /// The instant from which the change after `index` is in force, or [`END_OF_TIME`].
    fn segment_end(&self, index: usize) -> Timestamp {
        self.changes
            .get(index + 1)
            .map_or(END_OF_TIME, |(from, _)| *from)
    }

    /// The rule in force at `at`.
    pub fn rule_at(&self, at: Timestamp) -> AggregationRule {
        self.changes[self.index_at(at)].1
    }

    /// The first boundary strictly after `at` (a boundary of the rule in force, or the instant
    /// the next change takes effect), or [`END_OF_TIME`].
    pub fn next_boundary(&self, at: Timestamp) -> Timestamp {
        let index = self.index_at(at);
        self.changes[index]
            .1
            .next_boundary(at)
            .min(self.segment_end(index))
    }

    /// The period containing `at`.
    pub fn period_containing(&self, at: Timestamp) -> Period {
        let index = self.index_at(at);
        let (from, rule) = self.changes[index];
        Period {
            start: rule.boundary_at_or_before(at).max(from),
            end: rule.next_boundary(at).min(self.segment_end(index)),
        }
    }

    /// The periods overlapping `[from, to)`, in order, each whole (not clipped to the range):
    /// the first contains `from`, the last contains the instant before `to`. Empty when
    /// `from >= to`. An iterator because a year at a 1-minute range is half a million periods.
    pub fn periods_overlapping(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Iterator<Item = Period> + '_ {
        let start = if from < to {
            self.period_containing(from).start
        } else {
            to
        };
        Periods {
            schedule: self,
            start,
            to,
            ends: VecDeque::new(),
        }
    }
}

/// The iterator behind [`Schedule::periods_overlapping`]: computes boundaries a batch (about a
/// day's worth) at a time, so that a fine range costs little more per period than a coarse one.
struct Periods<'a> {
    schedule: &'a Schedule,
    /// The start of the next period to yield (a boundary).
    start: Timestamp,
    /// The end of the range asked for: no period starting at or after it is yielded.
    to: Timestamp,
    /// The next boundaries after `start`, in order, all within `start`'s schedule segment.
    ends: VecDeque<Timestamp>,
}

impl Periods<'_> {
    /// Fills `ends` with the next boundaries after `start`: at least one, unless `start` is the
    /// end of time.
    fn refill(&mut self) {
        let index = self.schedule.index_at(self.start);
        let rule = self.schedule.changes[index].1;
        let segment_end = self.schedule.segment_end(index);
        let hi = self
            .start
            .add_millis(rule.window_ms())
            .min(segment_end)
            .millis();
        self.ends.extend(
            rule.boundaries_between(self.start.millis(), hi)
                .into_iter()
                .map(Timestamp::from_millis),
        );
        if self.ends.is_empty() {
            self.ends
                .push_back(rule.next_boundary(self.start).min(segment_end));
        }
    }
}

impl Iterator for Periods<'_> {
    type Item = Period;

    fn next(&mut self) -> Option<Period> {
        if self.start >= self.to {
            return None;
        }
        if self.ends.is_empty() {
            self.refill();
        }
        let end = self.ends.pop_front()?;
        let period = Period {
            start: self.start,
            end,
        };
        self.start = end;
        Some(period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn zone(name: &str) -> Tz {
        parse_zone(name).unwrap()
    }

    fn rule(range_minutes: u32, zone_name: &str) -> AggregationRule {
        AggregationRule::new(range_minutes, zone(zone_name)).unwrap()
    }

    /// Exact hours of a period, as the usage computation derives them.
    fn hours(period: Period) -> Decimal {
        Decimal::from(period.duration_millis()) / Decimal::from(HOUR_MS)
    }

    /// One row of the worked-example table of spec/usage.md: the daily period of `local_day`
    /// (given here as an instant at local noon, which is unambiguous on each of those days).
    fn check_day(zone_name: &str, local_noon: &str, start: &str, end: &str, expected: &str) {
        let rule = rule(1440, zone_name);
        let schedule = Schedule::new(rule);
        let noon = ts(local_noon);
        let period = schedule.period_containing(noon);
        assert_eq!(period.start, ts(start), "{zone_name} {local_noon} start");
        assert_eq!(period.end, ts(end), "{zone_name} {local_noon} end");
        assert_eq!(hours(period), Decimal::from_str(expected).unwrap());
        // The same period from its first and its last millisecond.
        assert_eq!(schedule.period_containing(period.start), period);
        assert_eq!(
            schedule.period_containing(period.end.add_millis(-1)),
            period
        );
        assert_eq!(rule.next_boundary(period.start), period.end);
        assert_eq!(
            rule.boundary_at_or_before(period.end.add_millis(-1)),
            period.start
        );
    }

    #[test]
    fn new_york_spring_forward_day_has_23_hours() {
        check_day(
            "America/New_York",
            "2026-03-08T12:00:00-04:00",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
            "23",
        );
    }

    #[test]
    fn new_york_fall_back_day_has_25_hours() {
        check_day(
            "America/New_York",
            "2026-11-01T12:00:00-05:00",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
            "25",
        );
    }

    #[test]
    fn london_spring_forward_day() {
        check_day(
            "Europe/London",
            "2026-03-29T12:00:00+01:00",
            "2026-03-29T00:00:00Z",
            "2026-03-29T23:00:00Z",
            "23",
        );
    }

    #[test]
    fn london_fall_back_day() {
        check_day(
            "Europe/London",
            "2026-10-25T12:00:00+00:00",
            "2026-10-24T23:00:00Z",
            "2026-10-26T00:00:00Z",
            "25",
        );
    }

    #[test]
    fn lord_howe_thirty_minute_fall_back_day() {
        check_day(
            "Australia/Lord_Howe",
            "2026-04-05T12:00:00+10:30",
            "2026-04-04T13:00:00Z",
            "2026-04-05T13:30:00Z",
            "24.5",
        );
    }

    #[test]
    fn lord_howe_thirty_minute_spring_forward_day() {
        check_day(
            "Australia/Lord_Howe",
            "2026-10-04T12:00:00+11:00",
            "2026-10-03T13:30:00Z",
            "2026-10-04T13:00:00Z",
            "23.5",
        );
    }

    #[test]
    fn chatham_fall_back_day() {
        check_day(
            "Pacific/Chatham",
            "2026-04-05T12:00:00+12:45",
            "2026-04-04T10:15:00Z",
            "2026-04-05T11:15:00Z",
            "25",
        );
    }

    #[test]
    fn kolkata_day_starts_at_utc_half_past() {
        check_day(
            "Asia/Kolkata",
            "2026-03-08T12:00:00+05:30",
            "2026-03-07T18:30:00Z",
            "2026-03-08T18:30:00Z",
            "24",
        );
    }

    #[test]
    fn santiago_day_without_midnight_starts_at_the_gap_end() {
        check_day(
            "America/Santiago",
            "2026-09-06T12:00:00-03:00",
            "2026-09-06T04:00:00Z",
            "2026-09-07T03:00:00Z",
            "23",
        );
    }

    #[test]
    fn havana_day_without_midnight_starts_at_the_gap_end() {
        check_day(
            "America/Havana",
            "2026-03-08T12:00:00-04:00",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
            "23",
        );
    }

    #[test]
    fn havana_day_with_two_midnights_starts_at_the_first() {
        check_day(
            "America/Havana",
            "2026-11-01T12:00:00-05:00",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
            "25",
        );
    }

    #[test]
    fn beirut_day_without_midnight_starts_at_the_gap_end() {
        check_day(
            "Asia/Beirut",
            "2026-03-29T12:00:00+03:00",
            "2026-03-28T22:00:00Z",
            "2026-03-29T21:00:00Z",
            "23",
        );
    }

    /// The reference 002 §6.4 example on an ordinary GMT day: 7 h running, 12 h allocated.
    #[test]
    fn ordinary_day_overlaps_give_the_reference_hours() {
        let period = Schedule::default().period_containing(ts("2026-05-12T15:00:00Z"));
        let overlap = |from: &str, to: &str| {
            let from = ts(from).max(period.start);
            let to = ts(to).min(period.end);
            Decimal::from((to.millis() - from.millis()).max(0)) / Decimal::from(HOUR_MS)
        };
        let running = overlap("2026-05-12T12:00:00Z", "2026-05-12T18:00:00Z")
            + overlap("2026-05-12T23:00:00Z", "2026-05-14T00:00:00Z");
        let allocated = overlap("2026-05-12T12:00:00Z", "2026-05-14T00:00:00Z");
        assert_eq!(running, Decimal::from(7));
        assert_eq!(allocated, Decimal::from(12));
        assert_eq!(hours(period), Decimal::from(24));
    }

    fn starts(schedule: &Schedule, from: &str, to: &str) -> Vec<String> {
        schedule
            .periods_overlapping(ts(from), ts(to))
            .map(|p| p.start.to_string())
            .collect()
    }

    #[test]
    fn kolkata_hours_start_at_utc_half_past() {
        let schedule = Schedule::new(rule(60, "Asia/Kolkata"));
        let period = schedule.period_containing(ts("2026-03-08T10:00:00Z"));
        assert_eq!(period.start, ts("2026-03-08T09:30:00Z"));
        assert_eq!(period.end, ts("2026-03-08T10:30:00Z"));
        assert_eq!(
            starts(&schedule, "2026-03-08T10:00:00Z", "2026-03-08T12:00:00Z"),
            [
                "2026-03-08T09:30:00.000Z",
                "2026-03-08T10:30:00.000Z",
                "2026-03-08T11:30:00.000Z"
            ]
        );
    }

    #[test]
    fn new_york_hours_skip_the_missing_two_o_clock() {
        let schedule = Schedule::new(rule(60, "America/New_York"));
        // 01:00 EST = 06:00Z; 02:00 does not exist; 03:00 EDT = 07:00Z.
        let period = schedule.period_containing(ts("2026-03-08T06:30:00Z"));
        assert_eq!(period.start, ts("2026-03-08T06:00:00Z"));
        assert_eq!(period.end, ts("2026-03-08T07:00:00Z"));
        assert_eq!(
            starts(&schedule, "2026-03-08T04:00:00Z", "2026-03-08T09:00:00Z"),
            [
                "2026-03-08T04:00:00.000Z",
                "2026-03-08T05:00:00.000Z",
                "2026-03-08T06:00:00.000Z",
                "2026-03-08T07:00:00.000Z",
                "2026-03-08T08:00:00.000Z"
            ]
        );
        // 23 hourly periods that local day.
        let day = Schedule::new(rule(1440, "America/New_York"))
            .period_containing(ts("2026-03-08T12:00:00Z"));
        assert_eq!(schedule.periods_overlapping(day.start, day.end).count(), 23);
    }

    #[test]
    fn new_york_repeated_one_o_clock_is_two_hourly_periods() {
        let schedule = Schedule::new(rule(60, "America/New_York"));
        // 01:00 EDT = 05:00Z and 01:00 EST = 06:00Z are both boundaries.
        let first = schedule.period_containing(ts("2026-11-01T05:30:00Z"));
        let second = schedule.period_containing(ts("2026-11-01T06:30:00Z"));
        assert_eq!(
            first,
            Period {
                start: ts("2026-11-01T05:00:00Z"),
                end: ts("2026-11-01T06:00:00Z")
            }
        );
        assert_eq!(
            second,
            Period {
                start: ts("2026-11-01T06:00:00Z"),
                end: ts("2026-11-01T07:00:00Z")
            }
        );
        let day = Schedule::new(rule(1440, "America/New_York"))
            .period_containing(ts("2026-11-01T12:00:00Z"));
        assert_eq!(schedule.periods_overlapping(day.start, day.end).count(), 25);
    }

    #[test]
    fn lord_howe_hours_around_the_half_hour_shifts() {
        let schedule = Schedule::new(rule(60, "Australia/Lord_Howe"));
        // 2026-04-05: 02:00 +11 (15:00Z) falls back to 01:30 +10:30. The local hours 01:00 +11
        // (14:00Z) and 02:00 +10:30 (15:30Z) bound a 90-minute period; 01:30 is no hour.
        assert_eq!(
            starts(&schedule, "2026-04-04T13:00:00Z", "2026-04-04T17:00:00Z"),
            [
                "2026-04-04T13:00:00.000Z",
                "2026-04-04T14:00:00.000Z",
                "2026-04-04T15:30:00.000Z",
                "2026-04-04T16:30:00.000Z"
            ]
        );
        // 2026-10-04: 02:00 +10:30 (15:30Z) jumps to 02:30 +11. 02:00 does not exist, so the
        // hour after 01:00 (14:30Z) ends at 03:00 +11 (16:00Z): 90 minutes of real time.
        assert_eq!(
            starts(&schedule, "2026-10-03T13:30:00Z", "2026-10-03T17:00:00Z"),
            [
                "2026-10-03T13:30:00.000Z",
                "2026-10-03T14:30:00.000Z",
                "2026-10-03T16:00:00.000Z"
            ]
        );
        // At a 30-minute range the repeated and the skipped half hours show too.
        let halves = Schedule::new(rule(30, "Australia/Lord_Howe"));
        assert_eq!(
            starts(&halves, "2026-04-04T14:00:00Z", "2026-04-04T16:00:00Z"),
            [
                "2026-04-04T14:00:00.000Z",
                "2026-04-04T14:30:00.000Z",
                "2026-04-04T15:00:00.000Z",
                "2026-04-04T15:30:00.000Z"
            ]
        );
    }

    #[test]
    fn seven_minute_range_is_a_grid_from_the_epoch() {
        for zone_name in ["GMT", "Asia/Kolkata", "America/New_York"] {
            let rule = rule(7, zone_name);
            let period = rule.period_containing(Timestamp::from_millis(1));
            assert_eq!(period.start, Timestamp::EPOCH);
            assert_eq!(period.end, Timestamp::from_millis(7 * MINUTE_MS));
            // Before the epoch: div_euclid, not truncation.
            let before = rule.period_containing(Timestamp::from_millis(-1));
            assert_eq!(before.start, Timestamp::from_millis(-7 * MINUTE_MS));
            assert_eq!(before.end, Timestamp::EPOCH);
            let t = ts("2026-03-08T07:03:00Z");
            let p = rule.period_containing(t);
            assert_eq!(p.start.millis() % (7 * MINUTE_MS), 0);
            assert_eq!(p.duration_millis(), 7 * MINUTE_MS);
            assert!(p.contains(t));
        }
        // 2880 minutes: two-day blocks from the epoch, whatever the zone.
        let two_days = rule(2880, "America/New_York").period_containing(ts("1970-01-03T12:00:00Z"));
        assert_eq!(two_days.start, ts("1970-01-03T00:00:00Z"));
        assert_eq!(two_days.end, ts("1970-01-05T00:00:00Z"));
    }

    #[test]
    fn schedule_change_takes_effect_at_the_next_boundary() {
        let new_york = zone("America/New_York");
        let mut schedule = Schedule::default();
        let hourly = AggregationRule::new(60, new_york).unwrap();
        let effective = schedule.change(ts("2026-03-07T15:20:00Z"), hourly);
        assert_eq!(effective, ts("2026-03-08T00:00:00Z"));
        assert_eq!(
            schedule.rule_at(ts("2026-03-07T23:59:59.999Z")),
            AggregationRule::DEFAULT
        );
        assert_eq!(schedule.rule_at(effective), hourly);
        // The GMT day in progress is untouched.
        assert_eq!(
            schedule.period_containing(ts("2026-03-07T15:20:00Z")),
            Period {
                start: ts("2026-03-07T00:00:00Z"),
                end: ts("2026-03-08T00:00:00Z")
            }
        );
        // New York hours start at 00:00Z? 19:00 EST, yes: a whole hour.
        assert_eq!(
            schedule.period_containing(effective),
            Period {
                start: effective,
                end: ts("2026-03-08T01:00:00Z")
            }
        );
        // Periods tile across the change, through New York's missing 02:00.
        let periods: Vec<Period> = schedule
            .periods_overlapping(ts("2026-03-06T12:00:00Z"), ts("2026-03-09T00:00:00Z"))
            .collect();
        assert_eq!(periods[0].start, ts("2026-03-06T00:00:00Z"));
        assert_eq!(periods[1].start, ts("2026-03-07T00:00:00Z"));
        assert_eq!(periods[2].start, effective);
        for pair in periods.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert_eq!(periods.last().unwrap().end, ts("2026-03-09T00:00:00Z"));
        // Two days, then 24 hours of real time: 24 hourly periods (one local hour is skipped but
        // the real-time span is still 24 h).
        assert_eq!(periods.len(), 2 + 24);
    }

    #[test]
    fn later_decision_replaces_a_pending_change() {
        let mut schedule = Schedule::default();
        let hourly = rule(60, "GMT");
        let weekly = rule(7 * 1440, "GMT");
        let effective = schedule.change(ts("2026-03-07T10:00:00Z"), hourly);
        assert_eq!(
            schedule.change(ts("2026-03-07T11:00:00Z"), weekly),
            effective
        );
        assert_eq!(schedule.changes().len(), 2);
        assert_eq!(schedule.rule_at(effective), weekly);
        // Changing back to the rule in force cancels the pending change.
        assert_eq!(
            schedule.change(ts("2026-03-07T12:00:00Z"), AggregationRule::DEFAULT),
            effective
        );
        assert_eq!(schedule, Schedule::default());
        // Repeating a pending change is idempotent.
        schedule.change(ts("2026-03-07T10:00:00Z"), hourly);
        let again = schedule.clone();
        schedule.change(ts("2026-03-07T13:00:00Z"), hourly);
        assert_eq!(schedule, again);
        // Once in force, a change is history: a later change applies after it.
        let next = schedule.change(ts("2026-03-08T05:10:00Z"), AggregationRule::DEFAULT);
        assert_eq!(next, ts("2026-03-08T06:00:00Z"));
        assert_eq!(schedule.changes().len(), 3);
        // A 7-minute grid after a daily rule starts with a partial grid period.
        let mut grid = Schedule::default();
        let at = grid.change(ts("2026-03-07T10:00:00Z"), rule(7, "GMT"));
        let first = grid.period_containing(at);
        assert_eq!(first.start, at);
        assert_eq!(first.end, rule(7, "GMT").next_boundary(at));
    }

    #[test]
    fn iterator_agrees_with_stepping_and_brute_force() {
        // Brute force: the instants (whole minutes) whose local time is a multiple of the range
        // after local midnight. No zone here has a sub-minute offset in 2026.
        for zone_name in [
            "America/New_York",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "America/Havana",
            "America/Santiago",
            "Asia/Beirut",
            "Europe/London",
        ] {
            let tz = zone(zone_name);
            for (day, range) in [
                ("2026-03-07T00:00:00Z", 30u32),
                ("2026-03-08T00:00:00Z", 60),
                ("2026-03-28T00:00:00Z", 120),
                ("2026-04-04T00:00:00Z", 15),
                ("2026-09-05T00:00:00Z", 60),
                ("2026-10-03T00:00:00Z", 30),
                ("2026-10-24T00:00:00Z", 60),
                ("2026-10-31T00:00:00Z", 720),
            ] {
                let from = ts(day);
                let to = from.add_millis(3 * DAY_MS);
                let mut expected = Vec::new();
                let mut t = from.millis() + MINUTE_MS;
                while t < to.millis() {
                    let local = local_ms(tz, t);
                    if local.rem_euclid(i64::from(range) * MINUTE_MS) == 0 {
                        expected.push(Timestamp::from_millis(t));
                    }
                    t += MINUTE_MS;
                }
                let schedule = Schedule::new(AggregationRule::new(range, tz).unwrap());
                let actual: Vec<Timestamp> = schedule
                    .periods_overlapping(from, to)
                    .map(|p| p.end)
                    .filter(|&end| end < to)
                    .collect();
                assert_eq!(actual, expected, "{zone_name} {day} {range}");
                // Stepping with next_boundary gives the same.
                let mut stepped = Vec::new();
                let mut b = schedule.next_boundary(from);
                while b < to {
                    stepped.push(b);
                    b = schedule.next_boundary(b);
                }
                assert_eq!(stepped, expected, "{zone_name} {day} {range} stepped");
            }
        }
    }

    #[test]
    fn daily_brute_force_first_instant_of_each_local_date() {
        for zone_name in [
            "America/Santiago",
            "America/Havana",
            "Asia/Beirut",
            "America/New_York",
        ] {
            let tz = zone(zone_name);
            let rule = AggregationRule::new(1440, tz).unwrap();
            for start in [
                "2026-03-06T00:00:00Z",
                "2026-03-27T00:00:00Z",
                "2026-09-04T00:00:00Z",
                "2026-10-30T00:00:00Z",
            ] {
                let from = ts(start).millis();
                let mut expected = Vec::new();
                let mut latest_date = local_ms(tz, from).div_euclid(DAY_MS);
                let mut t = from;
                while t < from + 5 * DAY_MS {
                    let date = local_ms(tz, t).div_euclid(DAY_MS);
                    if date > latest_date {
                        expected.push(t);
                        latest_date = date;
                    }
                    t += MINUTE_MS;
                }
                assert_eq!(
                    rule.boundaries_between(from, from + 5 * DAY_MS - 1),
                    expected,
                    "{zone_name} {start}"
                );
            }
        }
    }

    #[test]
    fn periods_overlapping_is_whole_periods_and_empty_for_empty_ranges() {
        let schedule = Schedule::default();
        let periods: Vec<Period> = schedule
            .periods_overlapping(ts("2026-03-07T12:00:00Z"), ts("2026-03-08T00:00:00.001Z"))
            .collect();
        assert_eq!(
            periods,
            [
                Period {
                    start: ts("2026-03-07T00:00:00Z"),
                    end: ts("2026-03-08T00:00:00Z")
                },
                Period {
                    start: ts("2026-03-08T00:00:00Z"),
                    end: ts("2026-03-09T00:00:00Z")
                }
            ]
        );
        let t = ts("2026-03-07T12:00:00Z");
        assert_eq!(schedule.periods_overlapping(t, t).count(), 0);
        assert_eq!(schedule.periods_overlapping(t, t.add_millis(-1)).count(), 0);
        // A year at one minute is an iterator: count without collecting.
        let minutes = Schedule::new(rule(1, "America/New_York"));
        assert_eq!(
            minutes
                .periods_overlapping(ts("2026-01-01T00:00:00Z"), ts("2027-01-01T00:00:00Z"))
                .count(),
            365 * 1440
        );
    }

    #[test]
    fn far_instants_do_not_panic() {
        let rules = [
            rule(1440, "America/New_York"),
            rule(60, "Asia/Kolkata"),
            rule(7, "GMT"),
            rule(u32::MAX, "GMT"),
            rule(1, "Pacific/Apia"),
        ];
        let instants = [
            i64::MIN,
            i64::MIN + 1,
            ZONED_MIN - 1,
            ZONED_MIN,
            -1,
            0,
            ts("1900-01-01T00:00:00Z").millis(),
            ts("2100-03-14T07:30:00Z").millis(),
            ZONED_MAX,
            ZONED_MAX + 1,
            i64::MAX - 1,
            i64::MAX,
        ];
        for rule in rules {
            let schedule = Schedule::new(rule);
            for &at in &instants {
                let at = Timestamp::from_millis(at);
                let period = schedule.period_containing(at);
                assert!(period.start <= at, "{rule:?} {at:?} {period:?}");
                assert!(period.start < period.end || at == END_OF_TIME);
                if at < END_OF_TIME {
                    assert!(period.contains(at), "{rule:?} {at:?} {period:?}");
                    assert_eq!(schedule.next_boundary(period.start), period.end);
                }
                let _ = schedule
                    .periods_overlapping(at, at.add_millis(3 * DAY_MS))
                    .take(10)
                    .count();
            }
        }
    }

    #[test]
    fn pacific_apia_skipped_date_is_no_period() {
        // 2011-12-30 did not exist in Samoa: 29 December (-10) was followed by 31 December (+14).
        let rule = rule(1440, "Pacific/Apia");
        // The transition is at 10:00Z: 29 December 24:00 (-10) became 31 December 00:00 (+14).
        let day = rule.period_containing(ts("2011-12-30T11:00:00Z"));
        assert_eq!(day.start, ts("2011-12-30T10:00:00Z"));
        assert_eq!(day.end, ts("2011-12-31T10:00:00Z"));
        let before = rule.period_containing(day.start.add_millis(-1));
        assert_eq!(before.end, day.start);
        assert_eq!(before.duration_millis(), DAY_MS);
    }

    /// Zones that moved across the date line: offsets changing by a whole day, in both
    /// directions. Boundaries still match the brute-force definition and tile.
    #[test]
    fn date_line_moves_keep_sub_daily_boundaries_exact() {
        for (zone_name, day) in [
            ("Pacific/Apia", "2011-12-28T00:00:00Z"),
            ("Pacific/Kwajalein", "1969-09-28T00:00:00Z"),
            ("Pacific/Kwajalein", "1993-08-18T00:00:00Z"),
        ] {
            let tz = zone(zone_name);
            for range in [60u32, 1440] {
                let from = ts(day);
                let to = from.add_millis(6 * DAY_MS);
                let schedule = Schedule::new(AggregationRule::new(range, tz).unwrap());
                let periods: Vec<Period> = schedule.periods_overlapping(from, to).collect();
                for pair in periods.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start, "{zone_name} {range}");
                    assert_eq!(schedule.period_containing(pair[1].start), pair[1]);
                }
                if range == 60 {
                    let mut expected = Vec::new();
                    let mut t = from.millis() + MINUTE_MS;
                    while t < to.millis() {
                        if local_ms(tz, t).rem_euclid(HOUR_MS) == 0 {
                            expected.push(Timestamp::from_millis(t));
                        }
                        t += MINUTE_MS;
                    }
                    let actual: Vec<Timestamp> = periods
                        .iter()
                        .map(|p| p.end)
                        .filter(|&end| end < to)
                        .collect();
                    assert_eq!(actual, expected, "{zone_name} {day}");
                }
            }
        }
    }

    #[test]
    fn settings_are_validated() {
        assert_eq!(
            AggregationRule::new(0, Tz::GMT),
            Err(PeriodError::ZeroRange)
        );
        assert_eq!(parse_zone("GMT").unwrap(), Tz::GMT);
        assert_eq!(parse_zone("UTC").unwrap(), Tz::UTC);
        assert_eq!(
            parse_zone(" America/New_York ").unwrap(),
            Tz::America__New_York
        );
        let err = parse_zone("Mars/Olympus").unwrap_err();
        assert!(err.to_string().contains("\"Mars/Olympus\""), "{err}");
        assert_eq!(AggregationRule::default(), rule(1440, "GMT"));
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let mut schedule = Schedule::default();
        schedule.change(ts("2026-03-07T10:00:00Z"), rule(60, "Asia/Kolkata"));
        let json = serde_json::to_string(&schedule).unwrap();
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), schedule);
        let config = bincode::config::standard();
        let binary = bincode::serde::encode_to_vec(&schedule, config).unwrap();
        let (decoded, _): (Schedule, usize) =
            bincode::serde::decode_from_slice(&binary, config).unwrap();
        assert_eq!(decoded, schedule);

        let zero = r#"{"range_minutes":0,"zone":"GMT"}"#;
        assert!(serde_json::from_str::<AggregationRule>(zero).is_err());
        let unknown = r#"{"range_minutes":60,"zone":"Nowhere"}"#;
        assert!(serde_json::from_str::<AggregationRule>(unknown).is_err());
        assert!(serde_json::from_str::<Schedule>(r#"{"changes":[]}"#).is_err());
        let late_start =
            r#"{"changes":[["2026-03-07T00:00:00.000Z",{"range_minutes":60,"zone":"GMT"}]]}"#;
        assert!(serde_json::from_str::<Schedule>(late_start).is_err());
    }

    const PROPTEST_ZONES: [Tz; 9] = [
        Tz::America__New_York,
        Tz::Europe__London,
        Tz::Australia__Lord_Howe,
        Tz::Asia__Kolkata,
        Tz::Pacific__Chatham,
        Tz::America__Santiago,
        Tz::America__Havana,
        Tz::Asia__Beirut,
        Tz::GMT,
    ];
    const PROPTEST_RANGES: [u32; 5] = [1440, 60, 30, 7, 2880];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn periods_contain_their_instant_and_tile(
            zone_index in 0..PROPTEST_ZONES.len(),
            range_index in 0..PROPTEST_RANGES.len(),
            // 2025-01-01T00:00Z .. 2028-01-01T00:00Z
            at in 1_735_689_600_000i64..1_830_297_600_000i64,
        ) {
            let rule = AggregationRule::new(PROPTEST_RANGES[range_index], PROPTEST_ZONES[zone_index])
                .unwrap();
            let schedule = Schedule::new(rule);
            let at = Timestamp::from_millis(at);
            let period = schedule.period_containing(at);
            prop_assert!(period.contains(at), "{:?} {:?} {:?}", rule, at, period);
            prop_assert!(period.start < period.end);
            prop_assert_eq!(rule.next_boundary(period.start), period.end);
            prop_assert_eq!(rule.boundary_at_or_before(period.end.add_millis(-1)), period.start);
            // The neighbours tile: each period ends where the next begins.
            let next = schedule.period_containing(period.end);
            prop_assert_eq!(next.start, period.end);
            prop_assert!(next.start < next.end);
            let previous = schedule.period_containing(period.start.add_millis(-1));
            prop_assert_eq!(previous.end, period.start);
            // The iterator over a few days agrees and is contiguous.
            let periods: Vec<Period> = schedule
                .periods_overlapping(at, at.add_millis(2 * DAY_MS))
                .collect();
            prop_assert_eq!(periods[0], period);
            for pair in periods.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
                prop_assert_eq!(schedule.period_containing(pair[1].start), pair[1]);
            }
            prop_assert!(periods.last().unwrap().end >= at.add_millis(2 * DAY_MS));
            // A change made at `at` takes effect at the end of the period and keeps tiling.
            let mut changed = schedule.clone();
            let other = AggregationRule::new(45, Tz::Asia__Kolkata).unwrap();
            prop_assert_eq!(changed.change(at, other), period.end);
            let across: Vec<Period> = changed
                .periods_overlapping(period.start, period.end.add_millis(DAY_MS))
                .collect();
            prop_assert_eq!(across[0], period);
            for pair in across.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
            }
        }
    }
}
