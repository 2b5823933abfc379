//! The usage ledger: every track's transitions and every device's readings, the aggregation
//! schedule of each account, and the published records.
//!
//! Records are computed from the transitions whenever a period closes, and computed again for
//! exactly the periods a late fact touches (an event whose occurred-at falls in a closed period).
//! A record that changes gets a higher revision, the previous one kept beside it; an equal one is
//! left alone, so closing or regenerating a period twice publishes nothing twice.

use std::collections::BTreeSet;

use chrono_tz::Tz;
use engine::time::Timestamp;
use projections::table::{PersistedTable, RowKey, Table};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fact::{Counters, DeviceKey, DeviceKind, Fact, RecordFacts, TrackKey};
use crate::period::{AggregationRule, Period, Schedule};
use crate::usage_type::UsageType;

/// A change of a track's state at an instant: open with a variant of its facts, or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When (occurred-at, ms since the epoch).
    pub at: i64,
    /// Log position of the event, ordering transitions at the same instant as the log does.
    pub seq: u64,
    /// The variant of facts in force from here on; `None`: closed.
    pub variant: Option<u16>,
}

/// One track's history. Transitions are sorted by `(at, seq)`; the state between two of them is
/// the earlier one's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// Every distinct set of record facts the track has had: a record is per variant.
    pub variants: Vec<RecordFacts>,
    /// The transitions, in time order.
    pub transitions: Vec<Transition>,
}

impl Track {
    fn variant_of(&mut self, facts: RecordFacts) -> u16 {
        match self.variants.iter().position(|v| *v == facts) {
            Some(index) => index as u16,
            None => {
                self.variants.push(facts);
                (self.variants.len() - 1) as u16
            }
        }
    }

    /// Inserts a transition in time order and returns its index. A transition that changes
    /// nothing where it lands (opening with the facts in force, closing what is closed) is kept
    /// all the same: each transition states the whole state from its instant on, so a late
    /// fact inserted before it later can only change the state up to it, never beyond.
    fn insert(&mut self, transition: Transition) -> usize {
        let index = self
            .transitions
            .partition_point(|t| (t.at, t.seq) <= (transition.at, transition.seq));
        self.transitions.insert(index, transition);
        index
    }

    /// Whether the track is open after its last transition.
    fn is_open(&self) -> bool {
        self.transitions.last().is_some_and(|t| t.variant.is_some())
    }

    /// Milliseconds accrued by each variant within `period`.
    pub fn accrued(&self, period: Period) -> Vec<u64> {
        let mut accrued = vec![0u64; self.variants.len()];
        let (start, end) = (period.start.millis(), period.end.millis());
        let first = self.transitions.partition_point(|t| t.at <= start);
        let mut state = first
            .checked_sub(1)
            .and_then(|i| self.transitions[i].variant);
        let mut cursor = start;
        for transition in &self.transitions[first..] {
            if transition.at >= end {
                break;
            }
            if let Some(v) = state {
                accrued[v as usize] += (transition.at - cursor) as u64;
            }
            cursor = transition.at;
            state = transition.variant;
        }
        if let Some(v) = state {
            accrued[v as usize] += (end - cursor) as u64;
        }
        accrued
    }
}

/// One reading of a device's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// When (occurred-at, ms).
    pub at: i64,
    /// Log position, for readings at the same instant.
    pub seq: u64,
    /// The cumulative counters.
    pub counters: Counters,
}

/// One device's readings, sorted by `(at, seq)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Record facts of its records, from the latest reading applied.
    pub facts: RecordFacts,
    /// The readings.
    pub readings: Vec<Reading>,
}

impl Device {
    /// The usage types its counters feed, in counter order.
    pub fn usage_types(kind: DeviceKind) -> &'static [UsageType] {
        match kind {
            DeviceKind::Router => &[UsageType::NetworkBytesSent, UsageType::NetworkBytesReceived],
            DeviceKind::Disk => &[
                UsageType::VmDiskIoRead,
                UsageType::VmDiskIoWrite,
                UsageType::VmDiskBytesRead,
                UsageType::VmDiskBytesWrite,
            ],
        }
    }

    /// The counters' growth over the readings taken within `period`. A reading lower than the
    /// one before is a reset: the device counted again from zero. The first reading counts from
    /// zero too (a device's counters start at zero).
    pub fn deltas(&self, period: Period) -> Counters {
        let (start, end) = (period.start.millis(), period.end.millis());
        let first = self.readings.partition_point(|r| r.at < start);
        let mut previous = first
            .checked_sub(1)
            .map(|i| self.readings[i].counters)
            .unwrap_or([0; 4]);
        let mut deltas = [0u64; 4];
        for reading in &self.readings[first..] {
            if reading.at >= end {
                break;
            }
            for (k, delta) in deltas.iter_mut().enumerate() {
                let (now, before) = (reading.counters[k], previous[k]);
                *delta += if now >= before { now - before } else { now };
            }
            previous = reading.counters;
        }
        deltas
    }
}

/// A published record's key: its period, then account, type and usage id (the order
/// `listUsageRecords` returns them in), then the variant of the track's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    /// Start of the period (ms).
    pub period_start: i64,
    /// The track (for counter types: the device, with the counter's usage type).
    pub track: TrackKey,
    /// Which of the track's variants (always 0 for counters).
    pub variant: u16,
}

/// A revision a correction replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superseded {
    /// Its revision number.
    pub revision: u32,
    /// Its quantity.
    pub quantity: u64,
    /// When it was published (recorded-at of the event that published it).
    pub published_at: Timestamp,
}

/// A published usage record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRow {
    /// End of the period (exclusive).
    pub period_end: Timestamp,
    /// Milliseconds for time-based types; bytes or operations for counters.
    pub quantity: u64,
    /// 1 when first published; each correction adds one.
    pub revision: u32,
    /// Recorded-at of the event that published this revision (a period close, or the late
    /// event that corrected it): what `changedsince` compares.
    pub published_at: Timestamp,
    /// Earlier revisions, oldest first: corrections are never silent.
    pub superseded: Vec<Superseded>,
}

/// Per-account usage state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountUsage {
    /// The account's own schedule once it has its own aggregation zone (`None`: the global one).
    pub schedule: Option<Schedule>,
    /// Its `usage.aggregation.timezone` at account scope.
    pub zone_override: Option<Tz>,
    /// Every period ending at or before this is closed and published.
    pub closed_until: Option<Timestamp>,
    /// The earliest instant any of its facts is about: where its first period starts.
    pub first_activity: Option<Timestamp>,
    /// Tracks that may still accrue in unclosed periods.
    pub live_tracks: BTreeSet<TrackKey>,
    /// Devices with readings in unclosed periods.
    pub live_devices: BTreeSet<DeviceKey>,
    /// When the account was deleted, if it was.
    pub deleted_at: Option<Timestamp>,
}

/// What the usage server has done, for `listUsageServerMetrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageStatus {
    /// The global aggregation schedule.
    pub schedule: Schedule,
    /// `until` of the last `USAGE.CLOSE`.
    pub closed_until: Option<Timestamp>,
    /// Recorded-at of the last `USAGE.CLOSE`: the time of the last run.
    pub last_run_at: Option<Timestamp>,
    /// Records (and revisions) published by the last run.
    pub last_run_records: u64,
    /// Records and revisions published since the log began.
    pub records_published: u64,
    /// Recorded-at of the latest event applied: the lag is how far `closed_until` trails it.
    pub latest_recorded_at: Option<Timestamp>,
}

impl Default for UsageStatus {
    fn default() -> Self {
        UsageStatus {
            schedule: Schedule::new(AggregationRule::DEFAULT),
            closed_until: None,
            last_run_at: None,
            last_run_records: 0,
            records_published: 0,
            latest_recorded_at: None,
        }
    }
}

/// The ledger's tables.
#[derive(Debug)]
pub struct Ledger {
    /// Singleton row (key 0): schedule and run metrics.
    pub status: Table<u64, UsageStatus>,
    /// Per-account state.
    pub accounts: Table<Uuid, AccountUsage>,
    /// Every track.
    pub tracks: Table<TrackKey, Track>,
    /// Every device.
    pub devices: Table<DeviceKey, Device>,
    /// Published records.
    pub records: Table<RecordKey, RecordRow>,
    /// Records and revisions published while applying the current event, for the quota book
    /// to charge (`UsageModel` drains it after each event). Not a table: never persisted, so
    /// the usage store's bytes do not depend on it.
    pub journal: Vec<Publication>,
}

/// A record or revision just published: what the quota book charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// The record.
    pub key: RecordKey,
    /// End of its period (exclusive).
    pub period_end: Timestamp,
    /// Its new quantity (ms for time-based types, bytes or operations for counters).
    pub quantity: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            status: Table::new("usage_status"),
            accounts: Table::new("usage_accounts"),
            tracks: Table::new("usage_tracks"),
            devices: Table::new("usage_devices"),
            records: Table::new("usage_records"),
            journal: Vec::new(),
        }
    }
}

/// The event being applied: where its writes are attributed.
#[derive(Debug, Clone, Copy)]
pub struct Applying {
    /// Its log position (orders same-instant facts).
    pub position: u64,
    /// Its recorded-at (stamps publications and revisions).
    pub recorded_at: Timestamp,
}

impl Ledger {
    /// The tables, in a fixed order.
    pub fn tables(&mut self) -> Vec<&mut dyn PersistedTable> {
        vec![
            &mut self.status,
            &mut self.accounts,
            &mut self.tracks,
            &mut self.devices,
            &mut self.records,
        ]
    }

    /// The run status (defaults before anything happened).
    pub fn status(&self) -> UsageStatus {
        self.status.get(&0).cloned().unwrap_or_default()
    }

    fn update_status(&mut self, change: impl FnOnce(&mut UsageStatus)) {
        if self.status.get(&0).is_none() {
            self.status.insert(0, UsageStatus::default());
        }
        if let Some(status) = self.status.get_mut(&0) {
            change(status);
        }
    }

    /// The schedule periods of `account` follow.
    pub fn schedule_of(&self, account_id: Uuid) -> Schedule {
        self.accounts
            .get(&account_id)
            .and_then(|a| a.schedule.clone())
            .unwrap_or_else(|| self.status().schedule)
    }

    /// The facts a record shows.
    pub fn facts_of(&self, key: &RecordKey) -> Option<&RecordFacts> {
        match device_of(&key.track) {
            Some(device) => self.devices.get(&device).map(|d| &d.facts),
            None => self
                .tracks
                .get(&key.track)
                .and_then(|t| t.variants.get(key.variant as usize)),
        }
    }

    /// Notes the recorded-at of every event applied (the lag reference).
    pub fn observe(&mut self, recorded_at: Timestamp) {
        self.update_status(|s| s.latest_recorded_at = Some(recorded_at));
    }

    /// `usage.stats.job.aggregation.range` or the global `usage.aggregation.timezone` changed at
    /// `at`: the new rule takes effect at the next boundary of each schedule's old rule.
    pub fn change_global_rule(&mut self, at: Timestamp, range: Option<u32>, zone: Option<Tz>) {
        let mut status = self.status();
        let current = status.schedule.rule_at(at);
        let rule = AggregationRule {
            range_minutes: range.unwrap_or(current.range_minutes),
            zone: zone.unwrap_or(current.zone),
        };
        status.schedule.change(at, rule);
        self.status.insert(0, status);
        for account in self.accounts.values_mut_where(|a| a.schedule.is_some()) {
            if let Some(schedule) = account.schedule.as_mut() {
                let own = AggregationRule {
                    range_minutes: rule.range_minutes,
                    zone: account.zone_override.unwrap_or(rule.zone),
                };
                schedule.change(at, own);
            }
        }
    }

    /// The account-scoped `usage.aggregation.timezone` was set (or reset, `None`) at `at`.
    pub fn change_account_zone(&mut self, at: Timestamp, account_id: Uuid, zone: Option<Tz>) {
        let global = self.status().schedule;
        let mut account = self.accounts.get(&account_id).cloned().unwrap_or_default();
        let global_rule = global.rule_at(at);
        let mut schedule = account.schedule.take().unwrap_or(global);
        schedule.change(
            at,
            AggregationRule {
                range_minutes: global_rule.range_minutes,
                zone: zone.unwrap_or(global_rule.zone),
            },
        );
        account.schedule = Some(schedule);
        account.zone_override = zone;
        self.accounts.insert(account_id, account);
    }

    /// Applies one fact.
    pub fn apply_fact(&mut self, fact: Fact, applying: Applying) {
        match fact {
            Fact::Open { track, at, facts } => {
                let mut row = self.tracks.get(&track).cloned().unwrap_or_default();
                let variant = row.variant_of(facts);
                self.transition(track, row, at, Some(variant), applying);
            }
            Fact::Close { track, at } => {
                // Even for a track never opened: an earlier opening may still arrive late.
                let row = self.tracks.get(&track).cloned().unwrap_or_default();
                self.transition(track, row, at, None, applying);
            }
            Fact::Reading {
                device,
                at,
                counters,
                facts,
            } => self.reading(device, at, counters, facts, applying),
            Fact::AccountDeleted { account_id, at } => {
                let open: Vec<TrackKey> = self
                    .accounts
                    .get(&account_id)
                    .map(|a| a.live_tracks.iter().copied().collect())
                    .unwrap_or_default();
                for track in open {
                    if let Some(row) = self.tracks.get(&track).cloned() {
                        self.transition(track, row, at, None, applying);
                    }
                }
                if let Some(account) = self.accounts.get_mut(&account_id) {
                    account.deleted_at = Some(at);
                }
            }
        }
    }

    fn transition(
        &mut self,
        key: TrackKey,
        mut track: Track,
        at: Timestamp,
        variant: Option<u16>,
        applying: Applying,
    ) {
        let index = track.insert(Transition {
            at: at.millis(),
            seq: applying.position,
            variant,
        });
        let next = track.transitions.get(index + 1).map(|t| t.at);
        let open = track.is_open();
        let last_at = track
            .transitions
            .last()
            .map(|t| t.at)
            .unwrap_or(at.millis());
        self.tracks.insert(key, track);
        let closed = self.touch_account(key.account_id, at, |account| {
            if open || account.closed_until.is_none_or(|c| last_at >= c.millis()) {
                account.live_tracks.insert(key);
            }
        });
        if let Some(closed) = closed.filter(|c| at < *c) {
            // Late: correct the closed periods between this transition and the next one.
            let until = next.map_or(closed, |n| Timestamp::from_millis(n.min(closed.millis())));
            self.recompute_track(key, at, until, closed, applying.recorded_at);
        }
    }

    fn reading(
        &mut self,
        key: DeviceKey,
        at: Timestamp,
        counters: Counters,
        facts: RecordFacts,
        applying: Applying,
    ) {
        let mut device = self.devices.get(&key).cloned().unwrap_or_default();
        device.facts = facts;
        let reading = Reading {
            at: at.millis(),
            seq: applying.position,
            counters,
        };
        let index = device
            .readings
            .partition_point(|r| (r.at, r.seq) <= (reading.at, reading.seq));
        device.readings.insert(index, reading);
        let next = device.readings.get(index + 1).map(|r| r.at);
        self.devices.insert(key, device);
        let closed = self.touch_account(key.account_id, at, |account| {
            if account.closed_until.is_none_or(|c| at >= c) {
                account.live_devices.insert(key);
            }
        });
        if let Some(closed) = closed.filter(|c| at < *c) {
            // Late: this reading's period, and the next reading's (whose delta it changed).
            let schedule = self.schedule_of(key.account_id);
            let mut periods = vec![schedule.period_containing(at)];
            if let Some(next) = next.map(Timestamp::from_millis).filter(|n| *n < closed) {
                let period = schedule.period_containing(next);
                if period != periods[0] {
                    periods.push(period);
                }
            }
            for period in periods {
                self.publish_device(key, period, applying.recorded_at);
            }
        }
    }

    /// Notes activity of `account_id` at `at`, lets `change` update its row, and returns the
    /// end of its closed periods.
    fn touch_account(
        &mut self,
        account_id: Uuid,
        at: Timestamp,
        change: impl FnOnce(&mut AccountUsage),
    ) -> Option<Timestamp> {
        if self.accounts.get(&account_id).is_none() {
            self.accounts.insert(account_id, AccountUsage::default());
        }
        let account = self.accounts.get_mut(&account_id)?;
        if account.first_activity.is_none_or(|first| at < first) {
            account.first_activity = Some(at);
        }
        change(account);
        account.closed_until
    }

    /// `USAGE.CLOSE`: closes every account's periods that end at or before `until`, and with
    /// `recompute_from` computes the closed ones from there again.
    pub fn close(
        &mut self,
        until: Timestamp,
        recompute_from: Option<Timestamp>,
        recorded_at: Timestamp,
    ) {
        let published_before = self.status().records_published;
        let accounts: Vec<Uuid> = self.accounts.iter().map(|(id, _)| *id).collect();
        for account_id in accounts {
            self.close_account(account_id, until, recompute_from, recorded_at);
        }
        let published = self.status().records_published - published_before;
        self.update_status(|s| {
            s.closed_until = Some(s.closed_until.map_or(until, |c| c.max(until)));
            s.last_run_at = Some(recorded_at);
            s.last_run_records = published;
        });
    }

    fn close_account(
        &mut self,
        account_id: Uuid,
        until: Timestamp,
        recompute_from: Option<Timestamp>,
        recorded_at: Timestamp,
    ) {
        let Some(account) = self.accounts.get(&account_id).cloned() else {
            return;
        };
        let schedule = self.schedule_of(account_id);
        if let (Some(from), Some(closed)) = (recompute_from, account.closed_until) {
            let tracks: Vec<TrackKey> = self
                .tracks
                .range(account_range(account_id))
                .map(|(k, _)| *k)
                .collect();
            for track in tracks {
                self.recompute_track(track, from, closed, closed, recorded_at);
            }
            let devices: Vec<DeviceKey> = self
                .devices
                .iter()
                .filter(|(k, _)| k.account_id == account_id)
                .map(|(k, _)| *k)
                .collect();
            for device in devices {
                for period in closed_periods(&schedule, from, closed, closed) {
                    self.publish_device(device, period, recorded_at);
                }
            }
        }
        let Some(first) = account.first_activity else {
            return;
        };
        let start = account
            .closed_until
            .unwrap_or_else(|| schedule.period_containing(first).start);
        if start >= until {
            return;
        }
        let mut closed_until = account.closed_until;
        for period in schedule.periods_overlapping(start, until) {
            if period.end > until {
                break;
            }
            for track in &account.live_tracks {
                self.publish_track(*track, period, recorded_at);
            }
            for device in &account.live_devices {
                self.publish_device(*device, period, recorded_at);
            }
            closed_until = Some(period.end);
        }
        let Some(closed) = closed_until else {
            return;
        };
        let still_live_tracks: BTreeSet<TrackKey> = account
            .live_tracks
            .iter()
            .filter(|key| {
                self.tracks.get(key).is_some_and(|t| {
                    t.is_open()
                        || t.transitions
                            .last()
                            .is_some_and(|l| l.at >= closed.millis())
                })
            })
            .copied()
            .collect();
        let still_live_devices: BTreeSet<DeviceKey> = account
            .live_devices
            .iter()
            .filter(|key| {
                self.devices
                    .get(key)
                    .is_some_and(|d| d.readings.last().is_some_and(|r| r.at >= closed.millis()))
            })
            .copied()
            .collect();
        if let Some(row) = self.accounts.get_mut(&account_id) {
            row.closed_until = Some(closed);
            row.live_tracks = still_live_tracks;
            row.live_devices = still_live_devices;
        }
    }

    /// Computes the closed periods overlapping `[from, until)` of one track again.
    fn recompute_track(
        &mut self,
        key: TrackKey,
        from: Timestamp,
        until: Timestamp,
        closed: Timestamp,
        recorded_at: Timestamp,
    ) {
        let schedule = self.schedule_of(key.account_id);
        for period in closed_periods(&schedule, from, until, closed) {
            self.publish_track(key, period, recorded_at);
        }
    }

    fn publish_track(&mut self, key: TrackKey, period: Period, recorded_at: Timestamp) {
        let Some(track) = self.tracks.get(&key) else {
            return;
        };
        let accrued = track.accrued(period);
        for (variant, quantity) in accrued.into_iter().enumerate() {
            let record = RecordKey {
                period_start: period.start.millis(),
                track: key,
                variant: variant as u16,
            };
            self.publish(record, period.end, quantity, recorded_at);
        }
    }

    fn publish_device(&mut self, key: DeviceKey, period: Period, recorded_at: Timestamp) {
        let Some(device) = self.devices.get(&key) else {
            return;
        };
        let deltas = device.deltas(period);
        for (usage_type, quantity) in Device::usage_types(key.kind).iter().zip(deltas) {
            let record = RecordKey {
                period_start: period.start.millis(),
                track: TrackKey {
                    account_id: key.account_id,
                    usage_type: *usage_type,
                    entity_id: key.device_id,
                    sub_id: Uuid::nil(),
                },
                variant: 0,
            };
            self.publish(record, period.end, quantity, recorded_at);
        }
    }

    /// Publishes `quantity` for `key`: a new record, a new revision of a different one, or
    /// nothing when it equals what is published (or is zero and nothing was).
    fn publish(&mut self, key: RecordKey, period_end: Timestamp, quantity: u64, at: Timestamp) {
        match self.records.get(&key) {
            Some(row) if row.quantity == quantity => {}
            None if quantity == 0 => {}
            Some(_) => {
                if let Some(row) = self.records.get_mut(&key) {
                    row.superseded.push(Superseded {
                        revision: row.revision,
                        quantity: row.quantity,
                        published_at: row.published_at,
                    });
                    row.revision += 1;
                    row.quantity = quantity;
                    row.published_at = at;
                }
                self.journal.push(Publication {
                    key,
                    period_end,
                    quantity,
                });
                self.count_published();
            }
            None => {
                self.records.insert(
                    key,
                    RecordRow {
                        period_end,
                        quantity,
                        revision: 1,
                        published_at: at,
                        superseded: Vec::new(),
                    },
                );
                self.journal.push(Publication {
                    key,
                    period_end,
                    quantity,
                });
                self.count_published();
            }
        }
    }

    fn count_published(&mut self) {
        self.update_status(|s| s.records_published += 1);
    }

    /// `USAGE.PRUNE`: drops the records of periods ending at or before `before`.
    pub fn prune(&mut self, before: Timestamp) {
        let doomed: Vec<RecordKey> = self
            .records
            .iter()
            .take_while(|(k, _)| k.period_start < before.millis())
            .filter(|(_, r)| r.period_end <= before)
            .map(|(k, _)| *k)
            .collect();
        for key in doomed {
            self.records.remove(&key);
        }
    }
}

/// The closed periods of `schedule` overlapping `[from, until)`, none ending after `closed`.
fn closed_periods(
    schedule: &Schedule,
    from: Timestamp,
    until: Timestamp,
    closed: Timestamp,
) -> Vec<Period> {
    if from >= until {
        return Vec::new();
    }
    schedule
        .periods_overlapping(from, until)
        .take_while(|p| p.end <= closed)
        .collect()
}

/// The counter device a counter-type record key stands for.
fn device_of(track: &TrackKey) -> Option<DeviceKey> {
    let kind = match track.usage_type {
        UsageType::NetworkBytesSent | UsageType::NetworkBytesReceived => DeviceKind::Router,
        UsageType::VmDiskIoRead
        | UsageType::VmDiskIoWrite
        | UsageType::VmDiskBytesRead
        | UsageType::VmDiskBytesWrite => DeviceKind::Disk,
        _ => return None,
    };
    Some(DeviceKey {
        account_id: track.account_id,
        kind,
        device_id: track.entity_id,
    })
}

/// Every track key of one account.
fn account_range(account_id: Uuid) -> std::ops::RangeInclusive<TrackKey> {
    let first = TrackKey {
        account_id,
        usage_type: UsageType::RunningVm,
        entity_id: Uuid::nil(),
        sub_id: Uuid::nil(),
    };
    let last = TrackKey {
        account_id,
        usage_type: UsageType::Vpc,
        entity_id: Uuid::max(),
        sub_id: Uuid::max(),
    };
    first..=last
}

impl RowKey for TrackKey {
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(49);
        bytes.extend_from_slice(self.account_id.as_bytes());
        bytes.push(self.usage_type.id());
        bytes.extend_from_slice(self.entity_id.as_bytes());
        bytes.extend_from_slice(self.sub_id.as_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 49 {
            return None;
        }
        Some(TrackKey {
            account_id: Uuid::from_slice(&bytes[..16]).ok()?,
            usage_type: UsageType::from_id(bytes[16])?,
            entity_id: Uuid::from_slice(&bytes[17..33]).ok()?,
            sub_id: Uuid::from_slice(&bytes[33..49]).ok()?,
        })
    }
}

impl RowKey for DeviceKey {
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(33);
        bytes.extend_from_slice(self.account_id.as_bytes());
        bytes.push(match self.kind {
            DeviceKind::Router => 0,
            DeviceKind::Disk => 1,
        });
        bytes.extend_from_slice(self.device_id.as_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 33 {
            return None;
        }
        Some(DeviceKey {
            account_id: Uuid::from_slice(&bytes[..16]).ok()?,
            kind: match bytes[16] {
                0 => DeviceKind::Router,
                1 => DeviceKind::Disk,
                _ => return None,
            },
            device_id: Uuid::from_slice(&bytes[17..33]).ok()?,
        })
    }
}

impl RowKey for RecordKey {
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(59);
        bytes.extend_from_slice(&self.period_start.to_be_bytes());
        bytes.extend_from_slice(&self.track.to_bytes());
        bytes.extend_from_slice(&self.variant.to_be_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 59 {
            return None;
        }
        Some(RecordKey {
            period_start: i64::from_be_bytes(bytes[..8].try_into().ok()?),
            track: TrackKey::from_bytes(&bytes[8..57])?,
            variant: u16::from_be_bytes(bytes[57..59].try_into().ok()?),
        })
    }
}
