//! A clean ledger passes; ledgers built with each kind of damage are reported.

use engine::time::Timestamp;

use super::*;
use crate::fact::{DeviceKind, RecordFacts};
use crate::ledger::{Reading, RecordRow, Transition};

const HOUR: i64 = 3_600_000;

fn key(account: u128, entity: u128) -> TrackKey {
    TrackKey {
        account_id: Uuid::from_u128(account),
        usage_type: UsageType::RunningVm,
        entity_id: Uuid::from_u128(entity),
        sub_id: Uuid::nil(),
    }
}

fn track(spans: &[(i64, Option<i64>)]) -> Track {
    let mut transitions = Vec::new();
    let mut seq = 0;
    for &(from, to) in spans {
        seq += 1;
        transitions.push(Transition {
            at: from,
            seq,
            variant: Some(0),
        });
        if let Some(to) = to {
            seq += 1;
            transitions.push(Transition {
                at: to,
                seq,
                variant: None,
            });
        }
    }
    Track {
        variants: vec![RecordFacts::default()],
        transitions,
    }
}

fn record(track: TrackKey, start: i64, end: i64, quantity: u64) -> (RecordKey, RecordRow) {
    (
        RecordKey {
            period_start: start,
            track,
            variant: 0,
        },
        RecordRow {
            period_end: Timestamp::from_millis(end),
            quantity,
            revision: 1,
            published_at: Timestamp::from_millis(end),
            superseded: Vec::new(),
        },
    )
}

/// One VM running 2 h in a 24 h period, with its record.
fn clean() -> Ledger {
    let mut ledger = Ledger::default();
    ledger
        .tracks
        .insert(key(1, 10), track(&[(HOUR, Some(3 * HOUR))]));
    let (k, r) = record(key(1, 10), 0, 24 * HOUR, 2 * HOUR as u64);
    ledger.records.insert(k, r);
    ledger
}

#[test]
fn a_clean_ledger_has_no_problems() {
    assert_eq!(check(&clean()), Vec::new());
}

#[test]
fn a_resource_open_in_two_accounts_at_once_overlaps() {
    let mut ledger = clean();
    ledger.tracks.insert(key(2, 10), track(&[(2 * HOUR, None)]));
    let problems = check(&ledger);
    assert_eq!(
        problems,
        vec![SanityProblem::OverlappingTracks {
            first: key(1, 10),
            second: key(2, 10),
            at: 2 * HOUR,
        }]
    );
    // Back to back (a VM moved between accounts) is fine.
    let mut ledger = clean();
    ledger.tracks.insert(key(2, 10), track(&[(3 * HOUR, None)]));
    assert_eq!(check(&ledger), Vec::new());
}

#[test]
fn transitions_out_of_order_are_reported() {
    let mut ledger = clean();
    let mut bad = track(&[(HOUR, Some(3 * HOUR))]);
    bad.transitions.reverse();
    ledger.tracks.insert(key(1, 10), bad);
    assert!(check(&ledger).contains(&SanityProblem::UnorderedTransitions { track: key(1, 10) }));
}

#[test]
fn a_record_longer_than_its_period_is_reported() {
    let mut ledger = clean();
    let (k, r) = record(key(1, 10), 0, 24 * HOUR, 25 * HOUR as u64);
    ledger.records.insert(k, r);
    assert_eq!(
        check(&ledger),
        vec![SanityProblem::RecordLongerThanPeriod {
            record: k,
            quantity: 25 * HOUR as u64,
            period: 24 * HOUR,
        }]
    );
}

#[test]
fn records_of_resources_that_did_not_exist_are_reported() {
    let mut ledger = clean();
    // No track at all.
    let (ghost, r) = record(key(3, 30), 0, 24 * HOUR, HOUR as u64);
    ledger.records.insert(ghost, r);
    // A track, but closed before the record's period.
    let (late, r) = record(key(1, 10), 24 * HOUR, 48 * HOUR, HOUR as u64);
    ledger.records.insert(late, r);
    // A counter record without its device.
    let bytes = TrackKey {
        usage_type: UsageType::NetworkBytesSent,
        ..key(1, 40)
    };
    let (no_device, r) = record(bytes, 0, 24 * HOUR, 1_000);
    ledger.records.insert(no_device, r);
    let problems = check(&ledger);
    for record in [ghost, late, no_device] {
        assert!(
            problems.contains(&SanityProblem::RecordWithoutResource { record }),
            "{record:?} not in {problems:?}"
        );
    }
    assert_eq!(problems.len(), 3);
}

#[test]
fn a_counter_going_down_with_no_time_between_is_a_negative_delta() {
    let mut ledger = clean();
    let device = DeviceKey {
        account_id: Uuid::from_u128(1),
        kind: DeviceKind::Router,
        device_id: Uuid::from_u128(50),
    };
    let reading = |at, seq, sent| Reading {
        at,
        seq,
        counters: [sent, 0, 0, 0],
    };
    // A reset after time passed is a reset, not a problem.
    ledger.devices.insert(
        device,
        Device {
            facts: RecordFacts::default(),
            readings: vec![reading(HOUR, 1, 500), reading(2 * HOUR, 2, 10)],
        },
    );
    assert_eq!(check(&ledger), Vec::new());
    ledger.devices.insert(
        device,
        Device {
            facts: RecordFacts::default(),
            readings: vec![reading(HOUR, 1, 500), reading(HOUR, 2, 400)],
        },
    );
    assert_eq!(
        check(&ledger),
        vec![SanityProblem::NegativeCounterDelta { device, at: HOUR }]
    );
    let problem = SanityProblem::NegativeCounterDelta { device, at: HOUR };
    assert!(problem.to_string().contains("negative counter delta"));
}
