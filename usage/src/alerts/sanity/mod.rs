//! The usage sanity check (CloudStack's `UsageSanityChecker`, alert 23 `ALERT.USAGE.SANITY`):
//! run over the ledger after each `USAGE.CLOSE`, it reports what must never be there whatever
//! the log said, so a report means a bug or a damaged store, not bad input:
//!
//! - overlapping intervals: one resource (usage type, entity and sub id) open in two tracks at
//!   once (two accounts billed for it), or a track's transitions out of time order;
//! - a time-based record longer than its period;
//! - a record of a resource that did not exist: no track (or device) behind it, or a track
//!   never open during the record's period;
//! - a negative counter delta: a device counter lower than the reading before it with no time
//!   between them (a reset needs time to count again), or readings out of time order.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

use crate::fact::{DeviceKey, TrackKey};
use crate::ledger::{Device, Ledger, RecordKey, Track};
use crate::usage_type::{Unit, UsageType};

/// One problem the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanityProblem {
    /// A resource open in two tracks at once, from `at` (ms).
    OverlappingTracks {
        /// One track.
        first: TrackKey,
        /// The other.
        second: TrackKey,
        /// Where the overlap starts.
        at: i64,
    },
    /// A track whose transitions are not in `(at, seq)` order.
    UnorderedTransitions {
        /// The track.
        track: TrackKey,
    },
    /// A time-based record holding more milliseconds than its period has.
    RecordLongerThanPeriod {
        /// The record.
        record: RecordKey,
        /// Its quantity (ms).
        quantity: u64,
        /// Its period's length (ms).
        period: i64,
    },
    /// A record with no track or device behind it, or of a track never open in its period.
    RecordWithoutResource {
        /// The record.
        record: RecordKey,
    },
    /// A device counter that went down with no time between two readings, or readings out of
    /// time order.
    NegativeCounterDelta {
        /// The device.
        device: DeviceKey,
        /// When (ms).
        at: i64,
    },
}

impl fmt::Display for SanityProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SanityProblem::OverlappingTracks { first, second, at } => write!(
                f,
                "{} of {} is open for accounts {} and {} at once from {at} ms",
                first.usage_type.name(),
                first.entity_id,
                first.account_id,
                second.account_id
            ),
            SanityProblem::UnorderedTransitions { track } => write!(
                f,
                "{} of {} (account {}) has intervals out of order",
                track.usage_type.name(),
                track.entity_id,
                track.account_id
            ),
            SanityProblem::RecordLongerThanPeriod {
                record,
                quantity,
                period,
            } => write!(
                f,
                "{} record of {} (account {}) from {} ms holds {quantity} ms, longer than its {period} ms period",
                record.track.usage_type.name(),
                record.track.entity_id,
                record.track.account_id,
                record.period_start
            ),
            SanityProblem::RecordWithoutResource { record } => write!(
                f,
                "{} record of {} (account {}) from {} ms has no resource behind it",
                record.track.usage_type.name(),
                record.track.entity_id,
                record.track.account_id,
                record.period_start
            ),
            SanityProblem::NegativeCounterDelta { device, at } => write!(
                f,
                "{:?} {} (account {}) has a negative counter delta at {at} ms",
                device.kind, device.device_id, device.account_id
            ),
        }
    }
}

/// Every problem in `ledger`, in a fixed order (tracks, records, devices; each in key order).
pub fn check(ledger: &Ledger) -> Vec<SanityProblem> {
    let mut problems = Vec::new();
    check_tracks(ledger, &mut problems);
    check_records(ledger, &mut problems);
    check_devices(ledger, &mut problems);
    problems
}

/// A track's open intervals `[from, to)` (`to` = `i64::MAX` while open).
fn intervals(track: &Track) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut open: Option<i64> = None;
    for t in &track.transitions {
        match (open, t.variant) {
            (None, Some(_)) => open = Some(t.at),
            (Some(from), None) => {
                if t.at > from {
                    out.push((from, t.at));
                }
                open = None;
            }
            _ => {}
        }
    }
    if let Some(from) = open {
        out.push((from, i64::MAX));
    }
    out
}

/// A resource: usage type, entity and sub id.
type Resource = (UsageType, Uuid, Uuid);

/// A track and its open intervals.
type TrackIntervals = (TrackKey, Vec<(i64, i64)>);

fn check_tracks(ledger: &Ledger, problems: &mut Vec<SanityProblem>) {
    let mut by_resource: BTreeMap<Resource, Vec<TrackIntervals>> = BTreeMap::new();
    for (key, track) in ledger.tracks.iter() {
        let ordered = track
            .transitions
            .windows(2)
            .all(|w| (w[0].at, w[0].seq) <= (w[1].at, w[1].seq));
        if !ordered {
            problems.push(SanityProblem::UnorderedTransitions { track: *key });
            continue;
        }
        by_resource
            .entry((key.usage_type, key.entity_id, key.sub_id))
            .or_default()
            .push((*key, intervals(track)));
    }
    for tracks in by_resource.values().filter(|t| t.len() > 1) {
        for (i, (first, a)) in tracks.iter().enumerate() {
            for (second, b) in &tracks[i + 1..] {
                let overlap = a.iter().find_map(|&(a0, a1)| {
                    b.iter()
                        .find(|&&(b0, b1)| a0.max(b0) < a1.min(b1))
                        .map(|&(b0, _)| a0.max(b0))
                });
                if let Some(at) = overlap {
                    problems.push(SanityProblem::OverlappingTracks {
                        first: *first,
                        second: *second,
                        at,
                    });
                }
            }
        }
    }
}

/// The device whose counter feeds `track`'s usage type, for counter types.
fn device_of(track: &TrackKey) -> Option<DeviceKey> {
    [
        crate::fact::DeviceKind::Router,
        crate::fact::DeviceKind::Disk,
    ]
    .into_iter()
    .find(|kind| Device::usage_types(*kind).contains(&track.usage_type))
    .map(|kind| DeviceKey {
        account_id: track.account_id,
        kind,
        device_id: track.entity_id,
    })
}

fn check_records(ledger: &Ledger, problems: &mut Vec<SanityProblem>) {
    for (key, row) in ledger.records.iter() {
        if row.quantity == 0 {
            continue;
        }
        if let Some(device) = device_of(&key.track) {
            if ledger.devices.get(&device).is_none() {
                problems.push(SanityProblem::RecordWithoutResource { record: *key });
            }
            continue;
        }
        if key.track.usage_type.unit() != Unit::Hours {
            continue;
        }
        let period = row.period_end.millis() - key.period_start;
        if i64::try_from(row.quantity).map_or(true, |q| q > period) {
            problems.push(SanityProblem::RecordLongerThanPeriod {
                record: *key,
                quantity: row.quantity,
                period,
            });
        }
        let existed = ledger.tracks.get(&key.track).is_some_and(|track| {
            intervals(track)
                .iter()
                .any(|&(from, to)| from < row.period_end.millis() && key.period_start < to)
        });
        if !existed {
            problems.push(SanityProblem::RecordWithoutResource { record: *key });
        }
    }
}

fn check_devices(ledger: &Ledger, problems: &mut Vec<SanityProblem>) {
    for (key, device) in ledger.devices.iter() {
        let bad = device.readings.windows(2).find(|w| {
            let (before, now) = (&w[0], &w[1]);
            (before.at, before.seq) > (now.at, now.seq)
                || (before.at == now.at
                    && now
                        .counters
                        .iter()
                        .zip(before.counters.iter())
                        .any(|(n, b)| n < b))
        });
        if let Some(w) = bad {
            problems.push(SanityProblem::NegativeCounterDelta {
                device: *key,
                at: w[1].at,
            });
        }
    }
}

#[cfg(test)]
mod tests;
