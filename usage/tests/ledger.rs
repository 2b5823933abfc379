//! The usage ledger through its public API: the worked examples and the DST table of
//! spec/usage.md, idempotent closes, late data, account deletion, counters, offering changes and
//! rule changes.
//!
//! Expected period boundaries are written out by hand (from the spec's table or plain calendar
//! arithmetic), never computed with `usage::period`.

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use engine::time::Timestamp;
use usage::fact::{Counters, DeviceKey, DeviceKind, Fact, RecordFacts, TrackKey};
use usage::ledger::{Applying, Ledger, RecordKey, RecordRow};
use usage::usage_type::UsageType;
use uuid::Uuid;

const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap()
}

/// The instant of an unambiguous local wall time `yyyy-mm-dd HH:MM` in `zone`.
fn local(zone: Tz, text: &str) -> Timestamp {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
    let at = zone.from_local_datetime(&naive).single().unwrap();
    Timestamp::from_millis(at.timestamp_millis())
}

fn account(n: u128) -> Uuid {
    Uuid::from_u128(0xacc0_0000 + n)
}

fn track(account_id: Uuid, usage_type: UsageType, entity: u128) -> TrackKey {
    TrackKey {
        account_id,
        usage_type,
        entity_id: Uuid::from_u128(entity),
        sub_id: Uuid::nil(),
    }
}

/// Record facts told apart by their offering (what an offering change or resize changes).
fn facts(offering: u128) -> RecordFacts {
    RecordFacts {
        offering_id: Some(Uuid::from_u128(offering)),
        description: format!("offering {offering}"),
        ..RecordFacts::default()
    }
}

/// A ledger fed like the projection feeds it: every write gets the next log position.
struct Harness {
    ledger: Ledger,
    position: u64,
}

impl Harness {
    /// A ledger whose global rule is `range` minutes in `zone` from 2026-01-01T00:00Z (the change
    /// is made on 2025-12-31 at noon and takes effect at the next GMT midnight).
    fn new(zone: Tz, range: u32) -> Self {
        let mut ledger = Ledger::default();
        ledger.change_global_rule(ts("2025-12-31T12:00:00Z"), Some(range), Some(zone));
        Harness {
            ledger,
            position: 0,
        }
    }

    fn apply(&mut self, fact: Fact, recorded_at: Timestamp) {
        self.position += 1;
        let applying = Applying {
            position: self.position,
            recorded_at,
        };
        self.ledger.apply_fact(fact, applying);
    }

    /// Applies a fact on time: recorded when it occurred.
    fn now(&mut self, fact: Fact) {
        let at = match &fact {
            Fact::Open { at, .. }
            | Fact::Close { at, .. }
            | Fact::Reading { at, .. }
            | Fact::AccountDeleted { at, .. } => *at,
        };
        self.apply(fact, at);
    }

    fn open(&mut self, track: TrackKey, at: Timestamp, offering: u128) {
        self.now(Fact::Open {
            track,
            at,
            facts: facts(offering),
        });
    }

    fn close_track(&mut self, track: TrackKey, at: Timestamp) {
        self.now(Fact::Close { track, at });
    }

    fn read(&mut self, device: DeviceKey, at: Timestamp, counters: Counters) {
        self.now(Fact::Reading {
            device,
            at,
            counters,
            facts: RecordFacts::default(),
        });
    }

    /// `USAGE.CLOSE` recorded at `until` (a run right when the periods end).
    fn close(&mut self, until: Timestamp) {
        self.position += 1;
        self.ledger.close(until, None, until);
    }

    fn records(&self) -> Vec<(RecordKey, RecordRow)> {
        self.ledger
            .records
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// The records of `track`, in period order: `(start, end, quantity)` of every variant.
    fn of(&self, track: TrackKey) -> Vec<(Timestamp, Timestamp, u64)> {
        self.ledger
            .records
            .iter()
            .filter(|(k, _)| k.track == track)
            .map(|(k, v)| {
                (
                    Timestamp::from_millis(k.period_start),
                    v.period_end,
                    v.quantity,
                )
            })
            .collect()
    }

    /// The record of `track` (all variants summed) in the period starting at `start`.
    fn quantity(&self, track: TrackKey, start: Timestamp) -> u64 {
        self.ledger
            .records
            .iter()
            .filter(|(k, _)| k.track == track && k.period_start == start.millis())
            .map(|(_, v)| v.quantity)
            .sum()
    }

    fn row(&self, track: TrackKey, start: Timestamp) -> RecordRow {
        let rows: Vec<&RecordRow> = self
            .ledger
            .records
            .iter()
            .filter(|(k, _)| k.track == track && k.period_start == start.millis())
            .map(|(_, v)| v)
            .collect();
        assert_eq!(rows.len(), 1, "one record of {track:?} at {start}");
        rows[0].clone()
    }
}

/// Asserts that consecutive records of a track's one variant tile (each starts where the one
/// before ended) and returns their total.
fn assert_tiles(records: &[(Timestamp, Timestamp, u64)]) -> u64 {
    for pair in records.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "periods tile: {pair:?}");
    }
    for (start, end, quantity) in records {
        assert!(start < end);
        assert!(*quantity as i64 <= end.millis() - start.millis());
    }
    records.iter().map(|r| r.2).sum()
}

#[test]
fn worked_example_running_and_allocated_vm() {
    let ny = zone("America/New_York");
    let mut h = Harness::new(ny, 1440);
    let vm = account(1);
    let running = track(vm, UsageType::RunningVm, 1);
    let allocated = track(vm, UsageType::AllocatedVm, 1);
    h.open(allocated, local(ny, "2026-05-12 12:00"), 7);
    h.open(running, local(ny, "2026-05-12 12:00"), 7);
    h.close_track(running, local(ny, "2026-05-12 18:00"));
    h.open(running, local(ny, "2026-05-12 23:00"), 7);
    h.close(local(ny, "2026-05-14 00:00"));

    let day1 = local(ny, "2026-05-12 00:00");
    let day2 = local(ny, "2026-05-13 00:00");
    assert_eq!(day1, ts("2026-05-12T04:00:00Z"));
    assert_eq!(h.quantity(running, day1), 7 * HOUR as u64);
    assert_eq!(h.quantity(allocated, day1), 12 * HOUR as u64);
    assert_eq!(h.quantity(running, day2), 24 * HOUR as u64);
    assert_eq!(h.quantity(allocated, day2), 24 * HOUR as u64);
    assert_eq!(h.row(running, day2).period_end, ts("2026-05-14T04:00:00Z"));
    // Exactly four records, each first revisions published by the close.
    let records = h.records();
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|(_, r)| r.revision == 1 && r.superseded.is_empty())
    );
    // The period containing the close's `until` is not closed.
    assert_eq!(h.quantity(running, local(ny, "2026-05-14 00:00")), 0);
}

/// Every row of spec/usage.md's table: a resource alive through the local day has that many
/// hours in one period with exactly those bounds.
#[test]
fn dst_table_of_the_spec() {
    let rows: &[(&str, &str, &str, &str, i64)] = &[
        (
            "America/New_York",
            "2026-03-08",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
            23 * 60,
        ),
        (
            "America/New_York",
            "2026-11-01",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
            25 * 60,
        ),
        (
            "Europe/London",
            "2026-03-29",
            "2026-03-29T00:00:00Z",
            "2026-03-29T23:00:00Z",
            23 * 60,
        ),
        (
            "Europe/London",
            "2026-10-25",
            "2026-10-24T23:00:00Z",
            "2026-10-26T00:00:00Z",
            25 * 60,
        ),
        (
            "Australia/Lord_Howe",
            "2026-04-05",
            "2026-04-04T13:00:00Z",
            "2026-04-05T13:30:00Z",
            24 * 60 + 30,
        ),
        (
            "Australia/Lord_Howe",
            "2026-10-04",
            "2026-10-03T13:30:00Z",
            "2026-10-04T13:00:00Z",
            23 * 60 + 30,
        ),
        (
            "Pacific/Chatham",
            "2026-04-05",
            "2026-04-04T10:15:00Z",
            "2026-04-05T11:15:00Z",
            25 * 60,
        ),
        (
            "Asia/Kolkata",
            "2026-03-08",
            "2026-03-07T18:30:00Z",
            "2026-03-08T18:30:00Z",
            24 * 60,
        ),
        (
            "America/Santiago",
            "2026-09-06",
            "2026-09-06T04:00:00Z",
            "2026-09-07T03:00:00Z",
            23 * 60,
        ),
        (
            "America/Havana",
            "2026-03-08",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
            23 * 60,
        ),
        (
            "America/Havana",
            "2026-11-01",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
            25 * 60,
        ),
        (
            "Asia/Beirut",
            "2026-03-29",
            "2026-03-28T22:00:00Z",
            "2026-03-29T21:00:00Z",
            23 * 60,
        ),
    ];
    for &(name, day, start, end, minutes) in rows {
        let tz = zone(name);
        let (start, end) = (ts(start), ts(end));
        let mut h = Harness::new(tz, 1440);
        let ip = track(account(1), UsageType::IpAddress, 1);
        h.open(ip, start.add_millis(-2 * 24 * HOUR - 1234), 1);
        h.close(end.add_millis(2 * 24 * HOUR));
        let row = h.row(ip, start);
        assert_eq!(row.period_end, end, "{name} {day}");
        assert_eq!(row.quantity as i64, minutes * MINUTE, "{name} {day}");
        // The neighbouring days end and start exactly there.
        let records = h.of(ip);
        let at = records.iter().position(|r| r.0 == start).unwrap();
        assert_eq!(records[at - 1].1, start, "{name} {day}");
        assert_eq!(records[at + 1].0, end, "{name} {day}");
        // The local date of the period's first instant is the day.
        let first = tz.timestamp_millis_opt(start.millis()).unwrap();
        assert_eq!(
            first.date_naive(),
            day.parse::<NaiveDate>().unwrap(),
            "{name}"
        );
        let total = assert_tiles(&records);
        let lifetime = records.last().unwrap().1.millis() - (start.millis() - 2 * 24 * HOUR - 1234);
        assert_eq!(total as i64, lifetime, "{name} {day}: conservation");
    }
}

#[test]
fn closing_twice_or_recomputing_closed_periods_publishes_nothing_new() {
    let tz = zone("Europe/London");
    let mut h = Harness::new(tz, 60);
    let acc = account(1);
    let vm = track(acc, UsageType::RunningVm, 1);
    let volume = track(acc, UsageType::Volume, 2);
    let router = DeviceKey {
        account_id: acc,
        kind: DeviceKind::Router,
        device_id: Uuid::from_u128(3),
    };
    h.open(vm, ts("2026-03-29T00:10:00.123Z"), 1);
    h.open(volume, ts("2026-03-29T00:20:00Z"), 1);
    h.read(router, ts("2026-03-29T00:30:00Z"), [10, 20, 0, 0]);
    h.open(vm, ts("2026-03-29T02:10:00Z"), 2);
    h.read(router, ts("2026-03-29T03:30:00Z"), [5, 40, 0, 0]);
    h.close_track(volume, ts("2026-03-29T04:45:00Z"));
    h.close(ts("2026-03-29T06:00:00Z"));
    let records = h.records();
    let published = h.ledger.status().records_published;
    assert!(!records.is_empty());
    assert_eq!(published as usize, records.len());

    h.close(ts("2026-03-29T06:00:00Z"));
    assert_eq!(h.records(), records);
    assert_eq!(h.ledger.status().last_run_records, 0);

    h.ledger.close(
        ts("2026-03-29T06:00:00Z"),
        Some(ts("2026-03-28T00:00:00Z")),
        ts("2026-03-29T07:00:00Z"),
    );
    assert_eq!(h.records(), records);
    assert_eq!(h.ledger.status().last_run_records, 0);
    assert_eq!(h.ledger.status().records_published, published);

    // An earlier `until` closes nothing and reopens nothing.
    h.close(ts("2026-03-29T03:00:00Z"));
    assert_eq!(h.records(), records);
}

#[test]
fn late_close_corrects_a_published_record_with_a_new_revision() {
    let tz = zone("Asia/Kolkata");
    let mut h = Harness::new(tz, 1440);
    let ip = track(account(1), UsageType::IpAddress, 1);
    let day1 = local(tz, "2026-06-01 00:00");
    let day2 = local(tz, "2026-06-02 00:00");
    let day3 = local(tz, "2026-06-03 00:00");
    h.open(ip, local(tz, "2026-06-01 06:00"), 1);
    h.close(day3);
    assert_eq!(h.quantity(ip, day1), 18 * HOUR as u64);
    assert_eq!(h.quantity(ip, day2), 24 * HOUR as u64);
    let before = h.row(ip, day2);
    assert_eq!(before.revision, 1);
    assert_eq!(before.published_at, day3);

    // Imported later: the IP was released at 10:00 on day 2.
    let recorded = ts("2026-06-05T08:00:00Z");
    h.apply(
        Fact::Close {
            track: ip,
            at: local(tz, "2026-06-02 10:00"),
        },
        recorded,
    );
    let row = h.row(ip, day2);
    assert_eq!(row.quantity, 10 * HOUR as u64);
    assert_eq!(row.revision, 2);
    assert_eq!(row.published_at, recorded);
    assert_eq!(row.superseded.len(), 1);
    assert_eq!(row.superseded[0].revision, 1);
    assert_eq!(row.superseded[0].quantity, 24 * HOUR as u64);
    assert_eq!(row.superseded[0].published_at, day3);
    // Day 1 is untouched.
    let first = h.row(ip, day1);
    assert_eq!((first.revision, first.quantity), (1, 18 * HOUR as u64));

    // Nothing accrues afterwards, and closing again changes nothing.
    let records = h.records();
    h.close(local(tz, "2026-06-06 00:00"));
    assert_eq!(h.records(), records);

    // A late open on day 1 that changes nothing (already open) publishes nothing.
    h.apply(
        Fact::Open {
            track: ip,
            at: local(tz, "2026-06-01 08:00"),
            facts: facts(1),
        },
        ts("2026-06-06T09:00:00Z"),
    );
    assert_eq!(h.records(), records);

    // A late reopen on day 2 corrects it again: revision 3, both earlier ones kept.
    let recorded = ts("2026-06-07T09:00:00Z");
    h.apply(
        Fact::Open {
            track: ip,
            at: local(tz, "2026-06-02 22:00"),
            facts: facts(1),
        },
        recorded,
    );
    let row = h.row(ip, day2);
    assert_eq!((row.quantity, row.revision), (12 * HOUR as u64, 3));
    assert_eq!(row.superseded.len(), 2);
    assert_eq!(row.superseded[1].quantity, 10 * HOUR as u64);
    // And it is open again from then on: later closed periods are corrected as well.
    assert_eq!(h.quantity(ip, day3), 24 * HOUR as u64);
    assert_eq!(h.row(ip, day3).published_at, recorded);
}

#[test]
fn account_deletion_closes_open_tracks() {
    let tz = zone("America/New_York");
    let mut h = Harness::new(tz, 1440);
    let acc = account(1);
    let other = account(2);
    let vm = track(acc, UsageType::RunningVm, 1);
    let volume = track(acc, UsageType::Volume, 2);
    let ip = track(acc, UsageType::IpAddress, 3);
    let survivor = track(other, UsageType::IpAddress, 4);
    h.open(vm, local(tz, "2026-07-01 00:00"), 1);
    h.open(volume, local(tz, "2026-07-01 03:00"), 1);
    h.open(ip, local(tz, "2026-07-01 01:00"), 1);
    h.close_track(ip, local(tz, "2026-07-01 02:00"));
    h.open(survivor, local(tz, "2026-07-01 00:00"), 1);
    h.now(Fact::AccountDeleted {
        account_id: acc,
        at: local(tz, "2026-07-01 15:00"),
    });
    h.close(local(tz, "2026-07-04 00:00"));
    let day1 = local(tz, "2026-07-01 00:00");
    assert_eq!(
        h.of(vm),
        vec![(day1, local(tz, "2026-07-02 00:00"), 15 * HOUR as u64)]
    );
    assert_eq!(h.of(volume).len(), 1);
    assert_eq!(h.quantity(volume, day1), 12 * HOUR as u64);
    assert_eq!(h.of(ip).len(), 1);
    assert_eq!(h.quantity(ip, day1), HOUR as u64);
    assert_eq!(h.of(survivor).len(), 3);
    let deleted = h.ledger.accounts.get(&acc).unwrap();
    assert_eq!(deleted.deleted_at, Some(local(tz, "2026-07-01 15:00")));
    assert!(deleted.live_tracks.is_empty());
}

#[test]
fn counter_deltas_per_period_with_reset_and_late_reading() {
    let tz = zone("Europe/London");
    let mut h = Harness::new(tz, 1440);
    let acc = account(1);
    let router = DeviceKey {
        account_id: acc,
        kind: DeviceKind::Router,
        device_id: Uuid::from_u128(9),
    };
    let sent = track(acc, UsageType::NetworkBytesSent, 9);
    let received = track(acc, UsageType::NetworkBytesReceived, 9);
    let day1 = local(tz, "2026-06-01 00:00");
    let day2 = local(tz, "2026-06-02 00:00");
    h.read(router, local(tz, "2026-06-01 01:00"), [100, 50, 0, 0]);
    h.read(router, local(tz, "2026-06-01 05:00"), [300, 80, 0, 0]);
    // Both counters lower: the router restarted and counts from zero.
    h.read(router, local(tz, "2026-06-02 02:00"), [20, 10, 0, 0]);
    h.read(router, local(tz, "2026-06-02 08:00"), [70, 40, 0, 0]);
    h.close(local(tz, "2026-06-03 00:00"));
    assert_eq!(h.quantity(sent, day1), 300);
    assert_eq!(h.quantity(received, day1), 80);
    assert_eq!(h.quantity(sent, day2), 70);
    assert_eq!(h.quantity(received, day2), 40);
    assert_eq!(h.records().len(), 4);

    // A reading taken on day 1 at 20:00 arrives late: the router had restarted then already,
    // so day 2's first reading is no longer a reset. Both days are corrected.
    let recorded = local(tz, "2026-06-04 12:00");
    h.apply(
        Fact::Reading {
            device: router,
            at: local(tz, "2026-06-01 20:00"),
            counters: [10, 5, 0, 0],
            facts: RecordFacts::default(),
        },
        recorded,
    );
    assert_eq!(h.quantity(sent, day1), 100 + 200 + 10);
    assert_eq!(h.quantity(received, day1), 50 + 30 + 5);
    assert_eq!(h.quantity(sent, day2), 10 + 50);
    assert_eq!(h.quantity(received, day2), 5 + 30);
    for record in [sent, received] {
        for day in [day1, day2] {
            let row = h.row(record, day);
            assert_eq!(row.revision, 2);
            assert_eq!(row.published_at, recorded);
        }
    }
    // Idempotent afterwards.
    let records = h.records();
    h.ledger.close(
        local(tz, "2026-06-03 00:00"),
        Some(day1),
        local(tz, "2026-06-05 00:00"),
    );
    assert_eq!(h.records(), records);
}

#[test]
fn offering_change_splits_a_period_into_two_records() {
    let tz = zone("Europe/London");
    let mut h = Harness::new(tz, 1440);
    let acc = account(1);
    let vm = track(acc, UsageType::RunningVm, 1);
    let volume = track(acc, UsageType::Volume, 2);
    let day = local(tz, "2026-06-10 00:00");
    h.open(vm, local(tz, "2026-06-10 02:00"), 1);
    h.open(vm, local(tz, "2026-06-10 10:00"), 2);
    // Equal facts again: no change.
    h.open(vm, local(tz, "2026-06-10 12:00"), 2);
    h.open(volume, local(tz, "2026-06-10 00:00"), 100);
    h.open(volume, local(tz, "2026-06-10 06:30"), 200);
    h.open(volume, local(tz, "2026-06-10 18:00"), 100);
    h.close(local(tz, "2026-06-11 00:00"));
    let rows: Vec<(RecordKey, RecordRow)> = h
        .records()
        .into_iter()
        .filter(|(k, _)| k.track == vm)
        .collect();
    assert_eq!(rows.len(), 2);
    for (key, row) in &rows {
        assert_eq!(key.period_start, day.millis());
        let offering = h.ledger.facts_of(key).unwrap().offering_id.unwrap();
        let expected = if offering == Uuid::from_u128(1) {
            8
        } else {
            14
        };
        assert_eq!(row.quantity, expected * HOUR as u64);
    }
    // The resized volume: 100 → 200 → 100 is two variants, the first accruing twice.
    let rows: Vec<(RecordKey, RecordRow)> = h
        .records()
        .into_iter()
        .filter(|(k, _)| k.track == volume)
        .collect();
    assert_eq!(rows.len(), 2);
    for (key, row) in &rows {
        let offering = h.ledger.facts_of(key).unwrap().offering_id.unwrap();
        let expected = if offering == Uuid::from_u128(100) {
            6 * HOUR + 30 * MINUTE + 6 * HOUR
        } else {
            11 * HOUR + 30 * MINUTE
        };
        assert_eq!(row.quantity as i64, expected);
    }
}

#[test]
fn rule_change_takes_effect_at_the_next_boundary_and_periods_tile() {
    // Daily GMT, then hourly in Asia/Kolkata (hours start at :30 UTC) decided at 10:00Z.
    let mut h = Harness::new(chrono_tz::GMT, 1440);
    let acc = account(1);
    let ip = track(acc, UsageType::IpAddress, 1);
    let opened = ts("2026-04-01T07:00:00Z");
    h.open(ip, opened, 1);
    h.close(ts("2026-04-02T00:00:00Z"));
    h.ledger.change_global_rule(
        ts("2026-04-02T10:00:00Z"),
        Some(60),
        Some(zone("Asia/Kolkata")),
    );
    h.close(ts("2026-04-03T03:00:00Z"));
    let records = h.of(ip);
    // Day 1 (from 07:00), day 2 whole: the change waits for GMT midnight.
    assert_eq!(
        records[0],
        (
            ts("2026-04-01T00:00:00Z"),
            ts("2026-04-02T00:00:00Z"),
            17 * HOUR as u64
        )
    );
    assert_eq!(
        records[1],
        (
            ts("2026-04-02T00:00:00Z"),
            ts("2026-04-03T00:00:00Z"),
            24 * HOUR as u64
        )
    );
    // Then the first Kolkata hour is cut short at 00:30Z.
    assert_eq!(
        records[2],
        (
            ts("2026-04-03T00:00:00Z"),
            ts("2026-04-03T00:30:00Z"),
            30 * MINUTE as u64
        )
    );
    assert_eq!(
        records[3],
        (
            ts("2026-04-03T00:30:00Z"),
            ts("2026-04-03T01:30:00Z"),
            HOUR as u64
        )
    );
    assert_eq!(records.last().unwrap().1, ts("2026-04-03T02:30:00Z"));
    assert_eq!(records.len(), 5);
    let total = assert_tiles(&records);
    assert_eq!(
        total as i64,
        ts("2026-04-03T02:30:00Z").millis() - opened.millis()
    );

    // A grid range of 7 minutes decided at 02:31Z takes effect at the next Kolkata hour (03:30Z).
    h.ledger
        .change_global_rule(ts("2026-04-03T02:31:00Z"), Some(7), None);
    h.close(ts("2026-04-03T04:00:00Z"));
    let records = h.of(ip);
    let after: Vec<_> = records
        .iter()
        .filter(|r| r.0 >= ts("2026-04-03T02:30:00Z"))
        .copied()
        .collect();
    assert_eq!(
        after[0],
        (
            ts("2026-04-03T02:30:00Z"),
            ts("2026-04-03T03:30:00Z"),
            HOUR as u64
        )
    );
    // From 03:30Z on, periods follow 7-minute multiples of the epoch.
    let grid = 7 * MINUTE;
    let next = (ts("2026-04-03T03:30:00Z").millis() / grid + 1) * grid;
    assert_eq!(after[1].0, ts("2026-04-03T03:30:00Z"));
    assert_eq!(after[1].1.millis(), next);
    for period in &after[2..] {
        assert_eq!(period.0.millis() % grid, 0);
        assert_eq!(period.1.millis() - period.0.millis(), grid);
    }
    assert!(after.last().unwrap().1 <= ts("2026-04-03T04:00:00Z"));
    let total = assert_tiles(&records);
    assert_eq!(
        total as i64,
        records.last().unwrap().1.millis() - opened.millis()
    );
}

#[test]
fn account_zone_gives_the_account_its_own_periods() {
    let mut h = Harness::new(chrono_tz::GMT, 1440);
    let own = account(1);
    let global = account(2);
    let kolkata = zone("Asia/Kolkata");
    h.ledger
        .change_account_zone(ts("2026-02-01T12:00:00Z"), own, Some(kolkata));
    let a = track(own, UsageType::Vpc, 1);
    let b = track(global, UsageType::Vpc, 2);
    h.open(a, ts("2026-02-03T00:00:00Z"), 1);
    h.open(b, ts("2026-02-03T00:00:00Z"), 1);
    h.close(ts("2026-02-05T00:00:00Z"));
    // The account's days start at 18:30Z (the change took effect at GMT midnight on 02-02,
    // whose day ran to 18:30Z); the other account keeps GMT days.
    let own_records = h.of(a);
    assert_eq!(
        own_records[0],
        (
            ts("2026-02-02T18:30:00Z"),
            ts("2026-02-03T18:30:00Z"),
            18 * HOUR as u64 + 30 * MINUTE as u64
        )
    );
    assert_eq!(own_records.last().unwrap().1, ts("2026-02-04T18:30:00Z"));
    assert_eq!(own_records.len(), 2);
    let global_records = h.of(b);
    assert_eq!(global_records[0].0, ts("2026-02-03T00:00:00Z"));
    assert_eq!(global_records.len(), 2);
    assert_eq!(
        h.ledger
            .schedule_of(own)
            .rule_at(ts("2026-02-04T00:00:00Z"))
            .zone,
        kolkata
    );
}

/// A fact that changed nothing when applied (opening an open track, closing a closed one) must
/// still count once a late fact before it makes it matter: the VM started at 01:00, its stop at
/// 03:00 is imported late, and its start at 05:00 was applied on time while it looked running.
#[test]
fn facts_that_were_no_ops_count_once_a_late_fact_precedes_them() {
    let tz = chrono_tz::GMT;
    let mut h = Harness::new(tz, 1440);
    let acc = account(1);
    let vm = track(acc, UsageType::RunningVm, 1);
    let ip = track(acc, UsageType::IpAddress, 2);
    let day1 = ts("2026-06-01T00:00:00Z");
    let day2 = ts("2026-06-02T00:00:00Z");
    // Start, (stop arrives late), start again.
    h.open(vm, ts("2026-06-01T01:00:00Z"), 1);
    h.open(vm, ts("2026-06-01T05:00:00Z"), 1);
    // Assign, release, (assign arrives late), release again.
    h.open(ip, ts("2026-06-01T01:00:00Z"), 1);
    h.close_track(ip, ts("2026-06-01T03:00:00Z"));
    h.close_track(ip, ts("2026-06-01T10:00:00Z"));
    h.close(ts("2026-06-03T00:00:00Z"));
    h.apply(
        Fact::Close {
            track: vm,
            at: ts("2026-06-01T03:00:00Z"),
        },
        ts("2026-06-04T00:00:00Z"),
    );
    h.apply(
        Fact::Open {
            track: ip,
            at: ts("2026-06-01T05:00:00Z"),
            facts: facts(1),
        },
        ts("2026-06-04T00:00:00Z"),
    );
    // Running 01:00–03:00 and from 05:00 on.
    assert_eq!(h.quantity(vm, day1), 21 * HOUR as u64);
    assert_eq!(h.quantity(vm, day2), 24 * HOUR as u64);
    // Assigned 01:00–03:00 and 05:00–10:00.
    assert_eq!(h.quantity(ip, day1), 7 * HOUR as u64);
    assert_eq!(h.quantity(ip, day2), 0);
}
