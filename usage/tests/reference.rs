//! The usage ledger against a reference implementation that shares no code with it.
//!
//! The reference computes period boundaries its own way (daily: the first instant of each local
//! date, found by bisecting UTC minutes; sub-daily: every local wall time `D 00:00 + k × range`
//! mapped through chrono-tz, none in a gap and both where it repeats; other ranges: an epoch
//! grid), folds each track's facts into intervals, and expands them into periods by plain
//! overlap. Random histories (several accounts, VMs with offering changes, volumes with resizes,
//! IPs, rules, routers and disks with counter resets, closes at random times, facts delivered
//! after a close covering them, rule changes, an account deletion) around the 2026 DST
//! transitions of eight zones, for ranges 1440, 60 and 7, must give:
//!
//! - (a) the reference's records exactly;
//! - (b) conservation: per track and variant, the records sum to the open time up to the last
//!   closed boundary (and counters to the sum of their deltas);
//! - (c) periods that are the reference's (so they tile);
//! - (d) nothing new from closing again with a recomputation of everything;
//! - (e) byte-identical tables from a replay of the same log.
//!
//! Readings may be late anywhere; of a track's facts only the last may be late in the main
//! property, and any of them in `ledger_matches_the_reference_with_any_fact_late`.

use std::collections::BTreeMap;

use chrono::{Duration, LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;
use engine::time::Timestamp;
use proptest::prelude::*;
use sha2::Digest;
use usage::fact::{Counters, DeviceKey, DeviceKind, Fact, RecordFacts, TrackKey};
use usage::ledger::{Applying, Ledger};
use usage::usage_type::UsageType;
use uuid::Uuid;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The zones under test and two 2026 dates each around which histories are drawn (their DST
/// transitions; Asia/Kolkata has none and gets two other dates).
const ZONES: [(&str, [&str; 2]); 8] = [
    ("America/New_York", ["2026-03-08", "2026-11-01"]),
    ("Europe/London", ["2026-03-29", "2026-10-25"]),
    ("Australia/Lord_Howe", ["2026-04-05", "2026-10-04"]),
    ("Asia/Kolkata", ["2026-03-08", "2026-10-25"]),
    ("Pacific/Chatham", ["2026-04-05", "2026-09-27"]),
    ("America/Santiago", ["2026-04-05", "2026-09-06"]),
    ("America/Havana", ["2026-03-08", "2026-11-01"]),
    ("Asia/Beirut", ["2026-03-29", "2026-10-25"]),
];

const RANGES: [u32; 3] = [1440, 60, 7];

fn zone(index: usize) -> Tz {
    ZONES[index].0.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The reference: period boundaries.

/// An aggregation rule: range in minutes, zone.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rule {
    range: u32,
    zone: Tz,
}

const GMT_DAILY: Rule = Rule {
    range: 1440,
    zone: chrono_tz::GMT,
};

fn local_date(zone: Tz, ms: i64) -> NaiveDate {
    zone.timestamp_millis_opt(ms).unwrap().date_naive()
}

fn naive_ms(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// The first instant whose local date in `zone` is `date` or later, by bisection over whole UTC
/// minutes (every offset and transition of the zones under test is on a whole minute).
fn day_start(zone: Tz, date: NaiveDate) -> i64 {
    let midnight = naive_ms(date) / MINUTE;
    let (mut lo, mut hi) = (midnight - 16 * 60, midnight + 16 * 60);
    assert!(local_date(zone, lo * MINUTE) < date && local_date(zone, hi * MINUTE) >= date);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_date(zone, mid * MINUTE) >= date {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi * MINUTE
}

/// The boundaries `b` of `rule` with `lo < b <= hi`, in order.
fn rule_boundaries(rule: Rule, lo: i64, hi: i64) -> Vec<i64> {
    let range = i64::from(rule.range) * MINUTE;
    let mut out = Vec::new();
    let first = Timestamp::from_millis(lo).to_datetime().date_naive() - Duration::days(2);
    let last = Timestamp::from_millis(hi).to_datetime().date_naive() + Duration::days(2);
    let dates = || first.iter_days().take_while(move |d| *d <= last);
    if rule.range == 1440 {
        out.extend(dates().map(|date| day_start(rule.zone, date)));
    } else if 1440 % rule.range == 0 {
        for date in dates() {
            for k in 0..1440 / i64::from(rule.range) {
                let wall = date.and_hms_opt(0, 0, 0).unwrap() + Duration::milliseconds(k * range);
                match rule.zone.from_local_datetime(&wall) {
                    LocalResult::Single(t) => out.push(t.timestamp_millis()),
                    LocalResult::Ambiguous(a, b) => {
                        out.push(a.timestamp_millis());
                        out.push(b.timestamp_millis());
                    }
                    LocalResult::None => {}
                }
            }
        }
    } else {
        let mut b = (lo.div_euclid(range) + 1) * range;
        while b <= hi {
            out.push(b);
            b += range;
        }
    }
    out.retain(|b| lo < *b && *b <= hi);
    out.sort_unstable();
    out.dedup();
    out
}

/// The first boundary of `rule` strictly after `at`.
fn next_boundary(rule: Rule, at: i64) -> i64 {
    rule_boundaries(rule, at, at + 3 * DAY)[0]
}

/// A rule over time: `(effective from, rule)`, the first from the beginning of time.
#[derive(Debug, Clone)]
struct RefSchedule {
    segments: Vec<(i64, Rule)>,
}

impl RefSchedule {
    fn new() -> Self {
        RefSchedule {
            segments: vec![(i64::MIN, GMT_DAILY)],
        }
    }

    fn index_at(&self, at: i64) -> usize {
        self.segments
            .iter()
            .rposition(|(from, _)| *from <= at)
            .unwrap()
    }

    fn rule_at(&self, at: i64) -> Rule {
        self.segments[self.index_at(at)].1
    }

    /// A change decided at `at`: from the next boundary of the rule then in force, replacing any
    /// change still pending.
    fn change(&mut self, at: i64, rule: Rule) {
        let index = self.index_at(at);
        let current = self.segments[index].1;
        let effective = next_boundary(current, at);
        self.segments.truncate(index + 1);
        if rule != current {
            self.segments.push((effective, rule));
        }
    }

    /// Every boundary in `(lo, hi]`, in order.
    fn boundaries(&self, lo: i64, hi: i64) -> Vec<i64> {
        let mut out = Vec::new();
        for (i, &(from, rule)) in self.segments.iter().enumerate() {
            let until = self.segments.get(i + 1).map_or(i64::MAX, |s| s.0);
            if i > 0 && lo < from && from <= hi {
                out.push(from);
            }
            let (a, b) = (lo.max(from), hi.min(until - 1));
            if a < b {
                out.extend(rule_boundaries(rule, a, b));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Histories.

#[derive(Debug, Clone)]
struct Step {
    /// Milliseconds after the previous fact of the track.
    gap: u32,
    /// `Some(label)`: open with that variant; `None`: close.
    label: Option<u8>,
    /// Delivered this much after it occurred (after closes covering it).
    late: Option<u32>,
}

#[derive(Debug, Clone)]
struct TrackSpec {
    account: u8,
    kind: u8,
    /// Milliseconds after the window's start of the first open.
    start: u32,
    first_label: u8,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct ReadingSpec {
    gap: u32,
    increments: [u32; 4],
    reset: bool,
    late: Option<u32>,
}

#[derive(Debug, Clone)]
struct DeviceSpec {
    account: u8,
    disk: bool,
    start: u32,
    readings: Vec<ReadingSpec>,
}

#[derive(Debug, Clone)]
struct Case {
    zone: usize,
    range: usize,
    second_date: bool,
    /// Within 12 h after the window's start minus three days: when the rule is set.
    setup: u32,
    /// Account 1's own zone, decided a day and a half before the window.
    account_zone: Option<usize>,
    /// A global change during the window: `(ms after the window's start, range, zone)`.
    change: Option<(u32, usize, Option<usize>)>,
    /// Account 0 deleted this long after the window's start.
    delete: Option<u32>,
    tracks: Vec<TrackSpec>,
    devices: Vec<DeviceSpec>,
    /// `(recorded ms after the window's start, until this much earlier)`.
    closes: Vec<(u32, u32)>,
}

fn late() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![3 => Just(None), 1 => (HOUR as u32..3 * DAY as u32).prop_map(Some)]
}

fn gap(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(0u32), 1 => 0u32..1000, 8 => 0u32..max]
}

fn track_spec() -> impl Strategy<Value = TrackSpec> {
    let step = (
        gap(36 * HOUR as u32),
        prop_oneof![2 => Just(None), 3 => (0u8..3).prop_map(Some)],
        late(),
    )
        .prop_map(|(gap, label, late)| Step { gap, label, late });
    (
        0u8..3,
        0u8..5,
        0u32..9 * DAY as u32,
        0u8..3,
        prop::collection::vec(step, 0..10),
    )
        .prop_map(|(account, kind, start, first_label, steps)| TrackSpec {
            account,
            kind,
            start,
            first_label,
            steps,
        })
}

fn device_spec() -> impl Strategy<Value = DeviceSpec> {
    let reading = (
        gap(12 * HOUR as u32),
        [0u32..5000, 0u32..5000, 0u32..50, 0u32..1_000_000],
        prop::bool::weighted(0.15),
        late(),
    )
        .prop_map(|(gap, increments, reset, late)| ReadingSpec {
            gap,
            increments,
            reset,
            late,
        });
    (
        0u8..3,
        any::<bool>(),
        0u32..9 * DAY as u32,
        prop::collection::vec(reading, 0..14),
    )
        .prop_map(|(account, disk, start, readings)| DeviceSpec {
            account,
            disk,
            start,
            readings,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        0usize..ZONES.len(),
        0usize..RANGES.len(),
        any::<bool>(),
        0u32..12 * HOUR as u32,
        prop::option::weighted(0.4, 0usize..ZONES.len()),
        prop::option::weighted(
            0.4,
            (
                DAY as u32..9 * DAY as u32,
                0usize..RANGES.len(),
                prop::option::of(0usize..ZONES.len()),
            ),
        ),
        prop::option::weighted(0.3, DAY as u32..9 * DAY as u32),
        prop::collection::vec(track_spec(), 1..10),
        prop::collection::vec(device_spec(), 0..3),
        prop::collection::vec(
            (
                0u32..11 * DAY as u32,
                prop_oneof![Just(0u32), 0u32..2 * DAY as u32],
            ),
            1..12,
        ),
    )
        .prop_map(
            |(
                zone,
                range,
                second_date,
                setup,
                account_zone,
                change,
                delete,
                tracks,
                devices,
                closes,
            )| {
                Case {
                    zone,
                    range,
                    second_date,
                    setup,
                    account_zone,
                    change,
                    delete,
                    tracks,
                    devices,
                    closes,
                }
            },
        )
}

/// One event of the log, as the usage projection would see it.
#[derive(Debug, Clone)]
enum Entry {
    Fact(Box<Fact>),
    Close {
        until: i64,
    },
    GlobalRule {
        at: i64,
        range: u32,
        zone: Option<Tz>,
    },
    AccountZone {
        at: i64,
        account: Uuid,
        zone: Tz,
    },
}

/// A history: the log (recorded-at, entry) in log order, and where it ends.
struct History {
    log: Vec<(i64, Entry)>,
    /// The final close's `until` (and recorded-at): after everything.
    end: i64,
    /// Earliest instant anything is about.
    start: i64,
}

fn account(n: u8) -> Uuid {
    Uuid::from_u128(0xacc0_0000 + u128::from(n))
}

const KINDS: [(UsageType, &str, u8); 5] = [
    (UsageType::RunningVm, "offering", 3),
    (UsageType::AllocatedVm, "offering", 3),
    (UsageType::Volume, "size", 3),
    (UsageType::IpAddress, "ip", 1),
    (UsageType::PortForwardingRule, "rule", 1),
];

fn record_facts(kind: u8, label: u8) -> RecordFacts {
    let (_, name, labels) = KINDS[kind as usize];
    RecordFacts {
        description: format!("{name} {}", label % labels),
        ..RecordFacts::default()
    }
}

fn device_facts(disk: bool) -> RecordFacts {
    RecordFacts {
        description: if disk { "disk" } else { "router" }.to_owned(),
        ..RecordFacts::default()
    }
}

/// The log of `case`. With `late_anywhere`, any fact of a track may be delivered late; without,
/// only its last.
fn history(case: &Case, late_anywhere: bool) -> History {
    let date: NaiveDate = ZONES[case.zone].1[usize::from(case.second_date)]
        .parse()
        .unwrap();
    let h0 = naive_ms(date) - 5 * DAY;
    let h1 = h0 + 10 * DAY;
    let end = h1 + 2 * DAY;
    let mut log: Vec<(i64, Entry)> = Vec::new();
    let t0 = h0 - 3 * DAY + i64::from(case.setup);
    log.push((
        t0,
        Entry::GlobalRule {
            at: t0,
            range: RANGES[case.range],
            zone: Some(zone(case.zone)),
        },
    ));
    if let Some(own) = case.account_zone {
        let t1 = h0 - 36 * HOUR + i64::from(case.setup) / 2;
        log.push((
            t1,
            Entry::AccountZone {
                at: t1,
                account: account(1),
                zone: zone(own),
            },
        ));
    }
    if let Some((offset, range, new_zone)) = case.change {
        let at = h0 + i64::from(offset);
        log.push((
            at,
            Entry::GlobalRule {
                at,
                range: RANGES[range],
                zone: new_zone.map(zone),
            },
        ));
    }
    let deleted = case.delete.map(|offset| h0 + i64::from(offset));
    if let Some(at) = deleted {
        log.push((
            at,
            Entry::Fact(Box::new(Fact::AccountDeleted {
                account_id: account(0),
                at: Timestamp::from_millis(at),
            })),
        ));
    }
    let horizon = h1 + DAY;
    let delivered = |at: i64, late: Option<u32>, on_time: bool| match late {
        Some(delay) if !on_time => (at + i64::from(delay)).min(end - 1),
        _ => at,
    };
    for (i, spec) in case.tracks.iter().enumerate() {
        let account_index = spec.account % 3;
        // The deleted account's facts all come before its deletion, on time.
        let limit = match deleted {
            Some(at) if account_index == 0 => at,
            _ => horizon,
        };
        let (usage_type, _, _) = KINDS[spec.kind as usize];
        let track = TrackKey {
            account_id: account(account_index),
            usage_type,
            entity_id: Uuid::from_u128(1000 + i as u128),
            sub_id: Uuid::nil(),
        };
        let mut at = h0 + i64::from(spec.start);
        if at >= limit {
            continue;
        }
        log.push((
            at,
            Entry::Fact(Box::new(Fact::Open {
                track,
                at: Timestamp::from_millis(at),
                facts: record_facts(spec.kind, spec.first_label),
            })),
        ));
        let steps: Vec<(i64, &Step)> = spec
            .steps
            .iter()
            .map(|step| {
                at += i64::from(step.gap);
                (at, step)
            })
            .take_while(|(at, _)| *at < limit)
            .collect();
        for (index, &(at, step)) in steps.iter().enumerate() {
            // Unless asked otherwise, only a track's last fact may be late (see
            // `ledger_matches_the_reference_with_any_fact_late`).
            let on_time = (deleted.is_some() && account_index == 0)
                || (!late_anywhere && index + 1 < steps.len());
            let fact = match step.label {
                Some(label) => Fact::Open {
                    track,
                    at: Timestamp::from_millis(at),
                    facts: record_facts(spec.kind, label),
                },
                None => Fact::Close {
                    track,
                    at: Timestamp::from_millis(at),
                },
            };
            log.push((
                delivered(at, step.late, on_time),
                Entry::Fact(Box::new(fact)),
            ));
        }
    }
    for (i, spec) in case.devices.iter().enumerate() {
        let device = DeviceKey {
            account_id: account(spec.account % 3),
            kind: if spec.disk {
                DeviceKind::Disk
            } else {
                DeviceKind::Router
            },
            device_id: Uuid::from_u128(2000 + i as u128),
        };
        let counters_used = if spec.disk { 4 } else { 2 };
        let mut at = h0 + i64::from(spec.start);
        let mut counters: Counters = [0; 4];
        for reading in &spec.readings {
            at += i64::from(reading.gap);
            if at >= horizon {
                break;
            }
            for (k, counter) in counters.iter_mut().enumerate().take(counters_used) {
                let increment = u64::from(reading.increments[k]);
                *counter = if reading.reset {
                    increment
                } else {
                    *counter + increment
                };
            }
            let fact = Fact::Reading {
                device,
                at: Timestamp::from_millis(at),
                counters,
                facts: device_facts(spec.disk),
            };
            log.push((
                delivered(at, reading.late, false),
                Entry::Fact(Box::new(fact)),
            ));
        }
    }
    for &(offset, lag) in &case.closes {
        let recorded = h0 + i64::from(offset);
        log.push((
            recorded,
            Entry::Close {
                until: recorded - i64::from(lag),
            },
        ));
    }
    log.push((end, Entry::Close { until: end }));
    // Log order: by recorded-at, ties in the order pushed.
    log.sort_by_key(|(recorded, _)| *recorded);
    History {
        log,
        end,
        start: h0 - 3 * DAY,
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger side.

fn feed(log: &[(i64, Entry)]) -> Ledger {
    let mut ledger = Ledger::default();
    for (index, (recorded, entry)) in log.iter().enumerate() {
        let recorded_at = Timestamp::from_millis(*recorded);
        ledger.observe(recorded_at);
        match entry {
            Entry::Fact(fact) => ledger.apply_fact(
                (**fact).clone(),
                Applying {
                    position: index as u64 + 1,
                    recorded_at,
                },
            ),
            Entry::Close { until } => {
                ledger.close(Timestamp::from_millis(*until), None, recorded_at)
            }
            Entry::GlobalRule { at, range, zone } => {
                ledger.change_global_rule(Timestamp::from_millis(*at), Some(*range), *zone)
            }
            Entry::AccountZone { at, account, zone } => {
                ledger.change_account_zone(Timestamp::from_millis(*at), *account, Some(*zone))
            }
        }
    }
    ledger
}

/// A record's identity independent of variant numbering: period, track, variant's description.
type Key = (i64, i64, TrackKey, String);

/// The ledger's current records with a quantity (a correction down to zero is a zero revision;
/// a first revision of zero must not exist).
fn ledger_records(ledger: &Ledger) -> BTreeMap<Key, u64> {
    let mut out = BTreeMap::new();
    for (key, row) in ledger.records.iter() {
        if row.quantity == 0 {
            assert!(
                row.revision > 1,
                "a zero record was published: {key:?} {row:?}"
            );
            continue;
        }
        let description = ledger.facts_of(key).unwrap().description.clone();
        let previous = out.insert(
            (
                key.period_start,
                row.period_end.millis(),
                key.track,
                description,
            ),
            row.quantity,
        );
        assert!(previous.is_none(), "two variants with equal facts: {key:?}");
    }
    out
}

fn digest(ledger: &mut Ledger) -> Vec<u8> {
    let mut hasher = sha2::Sha256::new();
    for table in ledger.tables() {
        table.digest(&mut hasher).unwrap();
    }
    hasher.finalize().to_vec()
}

// ---------------------------------------------------------------------------------------------
// The reference side.

struct Expected {
    records: BTreeMap<Key, u64>,
    /// Per account: its boundaries over the history.
    boundaries: BTreeMap<Uuid, Vec<i64>>,
    /// Per (track, description): open time before the account's last closed boundary.
    lifetimes: BTreeMap<(TrackKey, String), u64>,
}

fn reference(history: &History) -> Expected {
    let mut global = RefSchedule::new();
    let mut own: BTreeMap<Uuid, (Tz, RefSchedule)> = BTreeMap::new();
    let mut tracks: BTreeMap<TrackKey, Vec<(i64, u64, Option<String>)>> = BTreeMap::new();
    let mut devices: BTreeMap<DeviceKey, Vec<(i64, u64, Counters, String)>> = BTreeMap::new();
    let mut until = i64::MIN;
    for (index, (_, entry)) in history.log.iter().enumerate() {
        let position = index as u64 + 1;
        match entry {
            Entry::GlobalRule { at, range, zone } => {
                let current = global.rule_at(*at);
                let rule = Rule {
                    range: *range,
                    zone: zone.unwrap_or(current.zone),
                };
                global.change(*at, rule);
                for (zone, schedule) in own.values_mut() {
                    schedule.change(
                        *at,
                        Rule {
                            range: rule.range,
                            zone: *zone,
                        },
                    );
                }
            }
            Entry::AccountZone { at, account, zone } => {
                let mut schedule = global.clone();
                schedule.change(
                    *at,
                    Rule {
                        range: global.rule_at(*at).range,
                        zone: *zone,
                    },
                );
                own.insert(*account, (*zone, schedule));
            }
            Entry::Close { until: u } => until = until.max(*u),
            Entry::Fact(fact) => match &**fact {
                Fact::Open { track, at, facts } => tracks.entry(*track).or_default().push((
                    at.millis(),
                    position,
                    Some(facts.description.clone()),
                )),
                Fact::Close { track, at } => {
                    if let Some(transitions) = tracks.get_mut(track) {
                        transitions.push((at.millis(), position, None));
                    }
                }
                Fact::AccountDeleted { account_id, at } => {
                    for (track, transitions) in tracks.iter_mut() {
                        if track.account_id == *account_id {
                            transitions.push((at.millis(), position, None));
                        }
                    }
                }
                Fact::Reading {
                    device,
                    at,
                    counters,
                    facts,
                } => devices.entry(*device).or_default().push((
                    at.millis(),
                    position,
                    *counters,
                    facts.description.clone(),
                )),
            },
        }
    }
    let (lo, hi) = (history.start - 2 * DAY, history.end + 3 * DAY);
    let mut boundaries: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    let mut boundaries_of = |account_id: Uuid| -> Vec<i64> {
        boundaries
            .entry(account_id)
            .or_insert_with(|| match own.get(&account_id) {
                Some((_, schedule)) => schedule.boundaries(lo, hi),
                None => global.boundaries(lo, hi),
            })
            .clone()
    };
    let mut records: BTreeMap<Key, u64> = BTreeMap::new();
    let mut lifetimes: BTreeMap<(TrackKey, String), u64> = BTreeMap::new();
    for (track, mut transitions) in tracks {
        let bounds = boundaries_of(track.account_id);
        let closed = *bounds.iter().rev().find(|b| **b <= until).unwrap();
        transitions.sort_by_key(|(at, position, _)| (*at, *position));
        for (i, (from, _, state)) in transitions.iter().enumerate() {
            let Some(description) = state else { continue };
            let to = transitions.get(i + 1).map_or(i64::MAX, |t| t.0).min(closed);
            if *from >= to {
                continue;
            }
            *lifetimes.entry((track, description.clone())).or_default() += (to - from) as u64;
            let mut p = bounds.partition_point(|b| *b <= *from) - 1;
            while bounds[p] < to {
                let (start, end) = (bounds[p], bounds[p + 1]);
                let overlap = end.min(to) - start.max(*from);
                *records
                    .entry((start, end, track, description.clone()))
                    .or_default() += overlap as u64;
                p += 1;
            }
        }
    }
    for (device, mut readings) in devices {
        let bounds = boundaries_of(device.account_id);
        let closed = *bounds.iter().rev().find(|b| **b <= until).unwrap();
        readings.sort_by_key(|(at, position, _, _)| (*at, *position));
        let types: &[UsageType] = match device.kind {
            DeviceKind::Router => &[UsageType::NetworkBytesSent, UsageType::NetworkBytesReceived],
            DeviceKind::Disk => &[
                UsageType::VmDiskIoRead,
                UsageType::VmDiskIoWrite,
                UsageType::VmDiskBytesRead,
                UsageType::VmDiskBytesWrite,
            ],
        };
        let mut previous: Counters = [0; 4];
        for (at, _, counters, description) in readings {
            let p = bounds.partition_point(|b| *b <= at) - 1;
            for (k, usage_type) in types.iter().enumerate() {
                let delta = if counters[k] >= previous[k] {
                    counters[k] - previous[k]
                } else {
                    counters[k]
                };
                if at < closed {
                    let track = TrackKey {
                        account_id: device.account_id,
                        usage_type: *usage_type,
                        entity_id: device.device_id,
                        sub_id: Uuid::nil(),
                    };
                    *records
                        .entry((bounds[p], bounds[p + 1], track, description.clone()))
                        .or_default() += delta;
                    *lifetimes.entry((track, description.clone())).or_default() += delta;
                }
            }
            previous = counters;
        }
    }
    records.retain(|_, quantity| *quantity > 0);
    lifetimes.retain(|_, quantity| *quantity > 0);
    Expected {
        records,
        boundaries,
        lifetimes,
    }
}

// ---------------------------------------------------------------------------------------------
// The checks.

fn check(case: &Case, late_anywhere: bool) -> Result<(), TestCaseError> {
    let history = history(case, late_anywhere);
    let expected = reference(&history);
    let mut ledger = feed(&history.log);
    let actual = ledger_records(&ledger);

    // (a) Exactly the reference's records.
    if actual != expected.records {
        let missing: Vec<_> = expected
            .records
            .iter()
            .filter(|(k, v)| actual.get(*k) != Some(*v))
            .take(5)
            .collect();
        let extra: Vec<_> = actual
            .iter()
            .filter(|(k, v)| expected.records.get(*k) != Some(*v))
            .take(5)
            .collect();
        return Err(TestCaseError::fail(format!(
            "records differ: expected but not published {missing:?}; published but not expected {extra:?}"
        )));
    }

    // (b) Conservation, per track and variant.
    let mut sums: BTreeMap<(TrackKey, String), u64> = BTreeMap::new();
    for ((_, _, track, description), quantity) in &actual {
        *sums.entry((*track, description.clone())).or_default() += quantity;
    }
    prop_assert_eq!(&sums, &expected.lifetimes);

    // (c) Every record's period is a period of the reference: they tile.
    for (key, row) in ledger.records.iter() {
        let bounds = &expected.boundaries[&key.track.account_id];
        let at = bounds.binary_search(&key.period_start);
        prop_assert!(at.is_ok(), "{:?} starts at no boundary", key);
        prop_assert_eq!(bounds[at.unwrap_or_default() + 1], row.period_end.millis());
        prop_assert!(row.period_end.millis() <= history.end);
    }

    // (d) Closing again and recomputing everything publishes nothing new.
    let before: Vec<_> = ledger
        .records
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    ledger.close(
        Timestamp::from_millis(history.end),
        Some(Timestamp::from_millis(history.start)),
        Timestamp::from_millis(history.end + 1000),
    );
    let after: Vec<_> = ledger
        .records
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    prop_assert!(before == after, "a recomputation changed records");
    prop_assert_eq!(ledger.status().last_run_records, 0);

    // (e) A replay of the same log gives byte-identical tables.
    let mut again = feed(&history.log);
    let mut first = feed(&history.log);
    prop_assert_eq!(digest(&mut again), digest(&mut first));
    let replayed: Vec<_> = again.records.iter().map(|(k, v)| (*k, v.clone())).collect();
    prop_assert!(replayed == before, "a replay published other records");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::with_cases(64)
    })]

    #[test]
    fn ledger_matches_the_reference(case in case()) {
        check(&case, false)?;
    }

    /// Any fact late, not only each track's last: a fact that changed nothing when applied
    /// must count once a late fact before it makes it matter.
    #[test]
    fn ledger_matches_the_reference_with_any_fact_late(case in case()) {
        check(&case, true)?;
    }
}

/// The same checks over one fixed history (offering changes, a late stop, a resize delivered
/// late, a router with resets and late readings, an account with its own zone) for every zone,
/// range and date: every combination is run, whatever proptest draws.
#[test]
fn every_zone_and_range() {
    for (zone, (name, _)) in ZONES.iter().enumerate() {
        for (range, minutes) in RANGES.iter().enumerate() {
            for second_date in [false, true] {
                let step =
                    |gap: u32, label: Option<u8>, late: Option<u32>| Step { gap, label, late };
                let case = Case {
                    zone,
                    range,
                    second_date,
                    setup: 3 * HOUR as u32 + 17,
                    account_zone: Some((zone + 3) % ZONES.len()),
                    change: None,
                    delete: None,
                    tracks: vec![
                        TrackSpec {
                            account: 0,
                            kind: 0,
                            start: 3 * DAY as u32 + 1234,
                            first_label: 0,
                            steps: vec![
                                step(20 * HOUR as u32, Some(1), None),
                                step(9 * HOUR as u32 + 7, None, Some(2 * DAY as u32)),
                                step(5 * HOUR as u32, Some(2), None),
                                step(30 * HOUR as u32, None, None),
                            ],
                        },
                        TrackSpec {
                            account: 1,
                            kind: 2,
                            start: DAY as u32,
                            first_label: 1,
                            steps: vec![step(5 * DAY as u32 + 999, Some(2), Some(DAY as u32))],
                        },
                    ],
                    devices: vec![DeviceSpec {
                        account: 1,
                        disk: false,
                        start: 4 * DAY as u32,
                        readings: (0..12)
                            .map(|i| ReadingSpec {
                                gap: 3 * HOUR as u32 + i * 1000,
                                increments: [i * 100, i * 7, 0, 0],
                                reset: i % 5 == 4,
                                late: (i % 4 == 1).then_some(DAY as u32),
                            })
                            .collect(),
                    }],
                    closes: (1..10)
                        .map(|d| (d * DAY as u32 + 5 * HOUR as u32, 0))
                        .collect(),
                };
                check(&case, true).unwrap_or_else(|e| panic!("{name} {minutes}: {e}"));
            }
        }
    }
}

/// The reference's daily boundaries are the spec's table (so the reference itself is right).
#[test]
fn reference_days_match_the_spec_table() {
    let rows: &[(&str, &str, &str, &str)] = &[
        (
            "America/New_York",
            "2026-03-08",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
        ),
        (
            "America/New_York",
            "2026-11-01",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
        ),
        (
            "Europe/London",
            "2026-03-29",
            "2026-03-29T00:00:00Z",
            "2026-03-29T23:00:00Z",
        ),
        (
            "Europe/London",
            "2026-10-25",
            "2026-10-24T23:00:00Z",
            "2026-10-26T00:00:00Z",
        ),
        (
            "Australia/Lord_Howe",
            "2026-04-05",
            "2026-04-04T13:00:00Z",
            "2026-04-05T13:30:00Z",
        ),
        (
            "Australia/Lord_Howe",
            "2026-10-04",
            "2026-10-03T13:30:00Z",
            "2026-10-04T13:00:00Z",
        ),
        (
            "Pacific/Chatham",
            "2026-04-05",
            "2026-04-04T10:15:00Z",
            "2026-04-05T11:15:00Z",
        ),
        (
            "Asia/Kolkata",
            "2026-03-08",
            "2026-03-07T18:30:00Z",
            "2026-03-08T18:30:00Z",
        ),
        (
            "America/Santiago",
            "2026-09-06",
            "2026-09-06T04:00:00Z",
            "2026-09-07T03:00:00Z",
        ),
        (
            "America/Havana",
            "2026-03-08",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
        ),
        (
            "America/Havana",
            "2026-11-01",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
        ),
        (
            "Asia/Beirut",
            "2026-03-29",
            "2026-03-28T22:00:00Z",
            "2026-03-29T21:00:00Z",
        ),
    ];
    for &(name, day, start, end) in rows {
        let tz: Tz = name.parse().unwrap();
        let day: NaiveDate = day.parse().unwrap();
        let ms = |text: &str| text.parse::<Timestamp>().unwrap().millis();
        assert_eq!(day_start(tz, day), ms(start), "{name} {day}");
        assert_eq!(
            day_start(tz, day + Duration::days(1)),
            ms(end),
            "{name} {day}"
        );
        let rule = Rule {
            range: 1440,
            zone: tz,
        };
        assert_eq!(next_boundary(rule, ms(start)), ms(end), "{name} {day}");
    }
    // Sub-daily: Kolkata's hours start at :30 UTC; London skips 01:00 on 2026-03-29 and has
    // 01:00 twice on 2026-10-25.
    let hourly = |name: &str| Rule {
        range: 60,
        zone: name.parse().unwrap(),
    };
    let ms = |text: &str| text.parse::<Timestamp>().unwrap().millis();
    assert_eq!(
        next_boundary(hourly("Asia/Kolkata"), ms("2026-03-08T00:00:00Z")),
        ms("2026-03-08T00:30:00Z")
    );
    assert_eq!(
        rule_boundaries(
            hourly("Europe/London"),
            ms("2026-03-29T00:00:00Z"),
            ms("2026-03-29T02:00:00Z")
        ),
        vec![ms("2026-03-29T01:00:00Z"), ms("2026-03-29T02:00:00Z")]
    );
    assert_eq!(
        rule_boundaries(
            hourly("Europe/London"),
            ms("2026-10-24T23:00:00Z"),
            ms("2026-10-25T02:00:00Z")
        ),
        vec![
            ms("2026-10-25T00:00:00Z"),
            ms("2026-10-25T01:00:00Z"),
            ms("2026-10-25T02:00:00Z")
        ]
    );
}
