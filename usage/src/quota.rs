//! CloudStack's quota plugin (spec/usage.md "Quota"): tariffs, credits and the charges made
//! from usage records, folded inside the usage model so every published record (and every
//! correction of one) is charged in the same pass that publishes it.
//!
//! A record is charged when it is published: `charge(new quantity)` minus what was charged for
//! it before, so a correction adjusts the balance by the difference and never silently. The
//! tariffs are those in force at the record's period start, as the log stands when the record
//! is published (see docs/quota.md).
//!
//! Money is `rust_decimal`: per-hour rates and GiB conversions are rounded to 8 decimals
//! half-even as CloudStack's `QuotaManagerImpl` does, and so is each record's charge.
//!
//! The book also follows each account's balance against its thresholds: after every event that
//! changed a balance it notes when the balance went below the account's `min_balance`
//! ([`Threshold::Low`]) or below zero ([`Threshold::Empty`]) and when it came back. Each such
//! [`Crossing`] is named by the event that caused it, so the alert the quota watcher
//! (`crate::quota_watch`) raises for it, and the lock it may take, have ids derived from the
//! log: a restart or a rebuild raises and locks nothing twice.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use engine::event::billing::{QuotaCreditsAdded, QuotaTariffDefined};
use engine::event::{AccountEvent, Actor, AlertEvent, EventBody, QuotaEvent, RecordedEvent};
use engine::time::Timestamp;
use projections::table::{PersistedTable, Table};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alerts::{AlertType, alert_id};
use crate::ledger::{Ledger, Publication, RecordKey};
use crate::usage_type::UsageType;

/// Decimals kept by every rounding step (CloudStack's `divide(..., 8, HALF_EVEN)`).
pub const SCALE: u32 = 8;

/// Bytes in a GiB (CloudStack's `ByteScaleUtils.GiB`).
const GIB: i64 = 1 << 30;

/// Milliseconds in an hour: time-based quantities are milliseconds, tariffs are per hour.
const HOUR_MS: i64 = 3_600_000;

/// Rounds to [`SCALE`] decimals, half-even.
pub fn round(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointNearestEven)
}

/// How a usage type is priced: CloudStack's `QuotaTypes` unit of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaUnit {
    /// Compute·Month, IP·Month, Policy·Month: the tariff is per month of use.
    PerMonth,
    /// GB·Month: per GiB of size and month of use.
    GbMonth,
    /// GB: per GiB transferred.
    Gb,
    /// IOPS or bytes: per operation or byte.
    PerUnit,
    /// BUCKET: per GiB stored and month (the record's quantity is bytes over its period).
    Bucket,
}

impl QuotaUnit {
    /// The unit of `usage_type`.
    pub fn of(usage_type: UsageType) -> QuotaUnit {
        use UsageType as U;
        match usage_type {
            U::Volume
            | U::Template
            | U::Iso
            | U::Snapshot
            | U::VmSnapshot
            | U::VolumeSecondary
            | U::VmSnapshotOnPrimary
            | U::Backup => QuotaUnit::GbMonth,
            U::NetworkBytesSent | U::NetworkBytesReceived => QuotaUnit::Gb,
            U::VmDiskIoRead | U::VmDiskIoWrite | U::VmDiskBytesRead | U::VmDiskBytesWrite => {
                QuotaUnit::PerUnit
            }
            U::Bucket => QuotaUnit::Bucket,
            _ => QuotaUnit::PerMonth,
        }
    }

    /// CloudStack's name of the unit (`usageUnit`).
    pub fn name(self, usage_type: UsageType) -> &'static str {
        match (self, usage_type) {
            (QuotaUnit::PerMonth, UsageType::IpAddress) => "IP*Month",
            (QuotaUnit::PerMonth, UsageType::RunningVm | UsageType::AllocatedVm) => "Compute*Month",
            (QuotaUnit::PerMonth, _) => "Policy*Month",
            (QuotaUnit::GbMonth, _) => "GB*Month",
            (QuotaUnit::Gb, _) => "GB",
            (QuotaUnit::PerUnit, UsageType::VmDiskIoRead | UsageType::VmDiskIoWrite) => "IOPS",
            (QuotaUnit::PerUnit, _) => "Bytes",
            (QuotaUnit::Bucket, _) => "GB*Month",
        }
    }
}

/// Hours in the calendar month that `at` falls in, read in `zone`: days × 24, as CloudStack's
/// `DateUtil.getHoursInCurrentMonth` (a month with a DST change still counts whole days).
pub fn hours_in_month(at: Timestamp, zone: Tz) -> u32 {
    let local = zone.from_utc_datetime(&at.to_datetime().naive_utc());
    let (year, month) = (local.year(), local.month());
    let first = NaiveDate::from_ymd_opt(year, month, 1);
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    match first.zip(next) {
        Some((first, next)) => (next - first).num_days() as u32 * 24,
        // Unreachable for any timestamp chrono represents; a 30-day month is a safe answer.
        None => 720,
    }
}

/// What a charge is computed from: one usage record.
#[derive(Debug, Clone, Copy)]
pub struct ChargeInput {
    /// The record's usage type.
    pub usage_type: UsageType,
    /// Its quantity: ms for time-based types, bytes or operations for counters.
    pub quantity: u64,
    /// `size` of its facts (bytes), for GB·Month types.
    pub size: Option<u64>,
    /// Its period start.
    pub period_start: Timestamp,
    /// Its period end (exclusive).
    pub period_end: Timestamp,
    /// The account's aggregation zone at the period start: which month the record is in.
    pub zone: Tz,
}

/// The charge of one record at `tariff` (the sum of the tariffs in force), rounded to 8
/// decimals half-even. The formulas are CloudStack's (`getUsageValueAccordingToUsageUnitType`),
/// except BUCKET's, which CloudStack gets wrong.
pub fn charge(input: &ChargeInput, tariff: Decimal) -> Decimal {
    let hours = || Decimal::from(input.quantity) / Decimal::from(HOUR_MS);
    let per_hour = || round(tariff / Decimal::from(hours_in_month(input.period_start, input.zone)));
    let gib = |bytes: u64| round(Decimal::from(bytes) / Decimal::from(GIB));
    let value = match QuotaUnit::of(input.usage_type) {
        QuotaUnit::PerMonth => hours() * per_hour(),
        QuotaUnit::GbMonth => hours() * per_hour() * gib(input.size.unwrap_or(0)),
        QuotaUnit::Gb => gib(input.quantity) * tariff,
        QuotaUnit::PerUnit => Decimal::from(input.quantity) * tariff,
        QuotaUnit::Bucket => {
            let period_ms = (input.period_end.millis() - input.period_start.millis()).max(0);
            let period_hours = Decimal::from(period_ms) / Decimal::from(HOUR_MS);
            gib(input.quantity) * period_hours * per_hour()
        }
    };
    round(value)
}

/// A tariff: its current definition and every earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TariffRow {
    /// The definition in force (the latest QUOTA.TARIFF.CREATE / UPDATE).
    pub current: QuotaTariffDefined,
    /// When it was created (recorded-at).
    pub created_at: Timestamp,
    /// When it was last changed (recorded-at).
    pub updated_at: Timestamp,
    /// When it was deleted, if it was: it then applies to nothing published after.
    pub removed: Option<Timestamp>,
    /// Earlier definitions with the instant each was replaced, oldest first.
    pub history: Vec<(Timestamp, QuotaTariffDefined)>,
}

impl TariffRow {
    /// Whether it prices a record of `usage_type` starting at `start`.
    pub fn applies(&self, usage_type: UsageType, start: Timestamp) -> bool {
        self.removed.is_none()
            && self.current.usage_type == u16::from(usage_type.id())
            && self.current.effective_on <= start
            && self.current.end_date.is_none_or(|end| end >= start)
    }
}

/// A credit (QUOTA.CREDITS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditRow {
    /// The account credited.
    pub account_id: Uuid,
    /// Its domain.
    pub domain_id: Uuid,
    /// The amount (negative takes credits away).
    pub amount: Decimal,
    /// When (recorded-at).
    pub credited_at: Timestamp,
    /// The user who credited it (`creditoruserid`), when a user did.
    pub creditor: Option<Uuid>,
}

/// An account's quota state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaAccount {
    /// Its domain (from its first credit or record).
    pub domain_id: Uuid,
    /// Every credit added, summed.
    pub credits: Decimal,
    /// Every charge made, summed (corrections included).
    pub charges: Decimal,
    /// `min_balance`: below it the balance is low.
    pub min_balance: Decimal,
    /// `quota_enforce`: whether enforcement may lock the account. CloudStack's default is
    /// false: only an account a `quotaCredits` marked enforceable is ever locked.
    pub enforce: bool,
    /// The [`Crossing`] (its alert id) the balance is in below `min_balance`, if it is.
    pub low: Option<Uuid>,
    /// The [`Crossing`] (its alert id) the balance is in below zero, if it is.
    pub empty: Option<Uuid>,
    /// The below-zero crossing in which quota enforcement last locked the account: it is not
    /// locked again in the same crossing (an admin who enabled it meanwhile overrides it).
    pub locked_in: Option<Uuid>,
    /// The account's lock is quota's: no enable or disable came after it. Only such a lock is
    /// lifted by quota, never one an admin put.
    pub quota_locked: bool,
}

impl QuotaAccount {
    /// Credits minus charges.
    pub fn balance(&self) -> Decimal {
        self.credits - self.charges
    }
}

/// What one record was charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRow {
    /// The record's period end: statements select by period.
    pub period_end: Timestamp,
    /// The charge in force for the record (its latest revision's).
    pub amount: Decimal,
    /// Recorded-at of the event that last changed it.
    pub charged_at: Timestamp,
}

/// A threshold an account's balance can fall below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Threshold {
    /// `min_balance`, when it is above zero (at zero or below it is the empty threshold).
    Low,
    /// Zero.
    Empty,
}

impl Threshold {
    /// The alert raised while the balance is below it.
    pub fn alert_type(self) -> AlertType {
        match self {
            Threshold::Low => AlertType::QUOTA_LOW,
            Threshold::Empty => AlertType::QUOTA_EMPTY,
        }
    }

    /// The kind the alert id is derived with, with the cause's id: one per account, since one
    /// event (a usage close) charges many accounts.
    pub fn kind(self, account_id: Uuid) -> String {
        match self {
            Threshold::Low => format!("quota.low:{account_id}"),
            Threshold::Empty => format!("quota.empty:{account_id}"),
        }
    }
}

/// A stretch of time an account's balance spent below a threshold. Keyed by the id of the
/// alert that reports it, derived from the event whose fold took the balance below (a usage
/// close whose publications were charged, a credit taken away or a `min_balance` raised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crossing {
    /// The account.
    pub account_id: Uuid,
    /// Which threshold.
    pub threshold: Threshold,
    /// The event that took the balance below: the alert's cause.
    pub cause: Uuid,
    /// When (recorded-at of the cause).
    pub began_at: Timestamp,
    /// The balance right after the cause, for the alert's description.
    pub balance: Decimal,
    /// The threshold's value then (`min_balance` or zero).
    pub limit: Decimal,
    /// When the balance came back to the threshold or above (recorded-at of that event).
    pub ended_at: Option<Timestamp>,
    /// Its `ALERT.RAISE` is in the log.
    pub raised: bool,
    /// Its `ALERT.RESOLVE` is in the log.
    pub resolved: bool,
}

impl Crossing {
    /// Nothing is left for the watcher to append: it was raised, and resolved once it ended.
    fn settled(&self) -> bool {
        self.raised && self.ended_at.is_some() && self.resolved
    }
}

/// Where a lock's reason starts when quota enforcement locked the account: how the book tells
/// its own locks from an admin's.
pub const LOCK_REASON: &str = "quota balance below zero";

/// The quota tables of the usage model.
#[derive(Debug)]
pub struct QuotaBook {
    /// Tariffs, by id (deleted ones kept, flagged).
    pub tariffs: Table<Uuid, TariffRow>,
    /// Credits, by id.
    pub credits: Table<Uuid, CreditRow>,
    /// Per-account balance and settings.
    pub accounts: Table<Uuid, QuotaAccount>,
    /// What each record was charged: corrections are charged the difference, and statements
    /// sum these by account, type and period.
    pub charges: Table<RecordKey, ChargeRow>,
    /// Crossings the watcher still has to raise or resolve, by alert id; a settled one is
    /// removed (its alert stays in the alerts model).
    pub crossings: Table<Uuid, Crossing>,
    /// Accounts whose balance or minimum changed in the event being folded: only these are
    /// compared with their thresholds when it ends. Not persisted: emptied every event.
    touched: BTreeSet<Uuid>,
}

impl Default for QuotaBook {
    fn default() -> Self {
        QuotaBook {
            tariffs: Table::new("quota_tariffs"),
            credits: Table::new("quota_credits"),
            accounts: Table::new("quota_accounts"),
            charges: Table::new("quota_charges"),
            crossings: Table::new("quota_crossings"),
            touched: BTreeSet::new(),
        }
    }
}

impl QuotaBook {
    /// The tables, in a fixed order.
    pub fn tables(&mut self) -> Vec<&mut dyn PersistedTable> {
        vec![
            &mut self.tariffs,
            &mut self.credits,
            &mut self.accounts,
            &mut self.charges,
            &mut self.crossings,
        ]
    }

    /// Folds a QUOTA.* event recorded at `at` by `actor`.
    pub fn apply(&mut self, event: &QuotaEvent, at: Timestamp, actor: &Actor) {
        match event {
            QuotaEvent::TariffCreate(defined) | QuotaEvent::TariffUpdate(defined) => {
                self.define(defined, at)
            }
            QuotaEvent::TariffDelete(removed) => {
                if let Some(row) = self.tariffs.get_mut(&removed.tariff_id) {
                    row.removed = Some(at);
                }
            }
            QuotaEvent::Credits(credit) => self.credit(credit, at, actor),
        }
    }

    fn define(&mut self, defined: &QuotaTariffDefined, at: Timestamp) {
        match self.tariffs.get_mut(&defined.tariff_id) {
            Some(row) => {
                let previous = std::mem::replace(&mut row.current, defined.clone());
                row.history.push((at, previous));
                row.updated_at = at;
            }
            None => self.tariffs.insert(
                defined.tariff_id,
                TariffRow {
                    current: defined.clone(),
                    created_at: at,
                    updated_at: at,
                    removed: None,
                    history: Vec::new(),
                },
            ),
        }
    }

    fn credit(&mut self, credit: &QuotaCreditsAdded, at: Timestamp, actor: &Actor) {
        let creditor = actor.user_id;
        self.credits.insert(
            credit.credit_id,
            CreditRow {
                account_id: credit.account_id,
                domain_id: credit.domain_id,
                amount: credit.amount,
                credited_at: at,
                creditor,
            },
        );
        let mut account = self
            .accounts
            .get(&credit.account_id)
            .cloned()
            .unwrap_or_default();
        account.domain_id = credit.domain_id;
        account.credits += credit.amount;
        if let Some(min) = credit.min_balance {
            account.min_balance = min;
        }
        if let Some(enforce) = credit.enforce {
            account.enforce = enforce;
        }
        self.accounts.insert(credit.account_id, account);
        self.touched.insert(credit.account_id);
    }

    /// The live tariffs pricing a record of `usage_type` that starts at `start`.
    pub fn tariffs_in_force(
        &self,
        usage_type: UsageType,
        start: Timestamp,
    ) -> impl Iterator<Item = &TariffRow> {
        self.tariffs
            .values()
            .filter(move |t| t.applies(usage_type, start))
    }

    /// Charges the records `ledger` just published (recorded at `at`): each is charged at the
    /// tariffs in force at its period start, less what it was charged before.
    pub fn charge_publications(
        &mut self,
        publications: &[Publication],
        ledger: &Ledger,
        at: Timestamp,
    ) {
        for publication in publications {
            self.charge_one(publication, ledger, at);
        }
    }

    fn charge_one(&mut self, publication: &Publication, ledger: &Ledger, at: Timestamp) {
        let key = publication.key;
        let start = Timestamp::from_millis(key.period_start);
        let usage_type = key.track.usage_type;
        let tariff: Decimal = self
            .tariffs_in_force(usage_type, start)
            .map(|t| t.current.value)
            .sum();
        let facts = ledger.facts_of(&key);
        let input = ChargeInput {
            usage_type,
            quantity: publication.quantity,
            size: facts.and_then(|f| f.size),
            period_start: start,
            period_end: publication.period_end,
            zone: ledger.schedule_of(key.track.account_id).rule_at(start).zone,
        };
        let amount = charge(&input, tariff);
        let before = self.charges.get(&key).map_or(Decimal::ZERO, |c| c.amount);
        if amount == before {
            return;
        }
        self.charges.insert(
            key,
            ChargeRow {
                period_end: publication.period_end,
                amount,
                charged_at: at,
            },
        );
        let account_id = key.track.account_id;
        let mut account = self.accounts.get(&account_id).cloned().unwrap_or_default();
        if let Some(facts) = facts
            && account.domain_id.is_nil()
        {
            account.domain_id = facts.domain_id;
        }
        account.charges += amount - before;
        self.accounts.insert(account_id, account);
        self.touched.insert(account_id);
    }

    /// Ends the fold of `event`: notes the locks and alerts it records, then compares every
    /// account it changed with its thresholds, opening a [`Crossing`] caused by `event` where
    /// the balance went below one and ending it where the balance came back.
    pub fn after_event(&mut self, event: &RecordedEvent) {
        let at = event.envelope.recorded_at;
        match &*event.body {
            EventBody::Alert(AlertEvent::Raise(raised)) => {
                self.note_alert(raised.alert_id, |c| c.raised = true)
            }
            EventBody::Alert(AlertEvent::Resolve(resolved)) => {
                self.note_alert(resolved.alert_id, |c| c.resolved = true)
            }
            EventBody::Account(AccountEvent::Disable(disabled)) => {
                let by_quota = disabled.locked
                    && disabled
                        .reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with(LOCK_REASON));
                if let Some(account) = self.accounts.get_mut(&disabled.account_id) {
                    account.quota_locked = by_quota;
                    if by_quota {
                        account.locked_in = event.envelope.causation_id;
                    }
                }
            }
            EventBody::Account(AccountEvent::Enable(enabled)) => {
                if let Some(account) = self.accounts.get_mut(&enabled.account_id) {
                    account.quota_locked = false;
                }
            }
            _ => {}
        }
        for account_id in std::mem::take(&mut self.touched) {
            self.compare(account_id, event.envelope.id, at);
        }
    }

    fn note_alert(&mut self, alert_id: Uuid, note: impl FnOnce(&mut Crossing)) {
        let Some(crossing) = self.crossings.get_mut(&alert_id) else {
            return;
        };
        note(crossing);
        if crossing.settled() {
            self.crossings.remove(&alert_id);
        }
    }

    /// Compares one account's balance with its thresholds after the event `cause`.
    fn compare(&mut self, account_id: Uuid, cause: Uuid, at: Timestamp) {
        let Some(mut account) = self.accounts.get(&account_id).cloned() else {
            return;
        };
        let balance = account.balance();
        let opening = |threshold, limit| Crossing {
            account_id,
            threshold,
            cause,
            began_at: at,
            balance,
            limit,
            ended_at: None,
            raised: false,
            resolved: false,
        };
        let min = account.min_balance;
        let low = min > Decimal::ZERO && balance < min;
        let empty = balance < Decimal::ZERO;
        let (was_low, was_empty) = (account.low, account.empty);
        account.low = self.follow(account.low, low, opening(Threshold::Low, min));
        account.empty = self.follow(
            account.empty,
            empty,
            opening(Threshold::Empty, Decimal::ZERO),
        );
        if (account.low, account.empty) != (was_low, was_empty) {
            self.accounts.insert(account_id, account);
        }
    }

    /// The crossing of `opening`'s threshold the account is in after an event: `current` goes
    /// on while the balance is below, ends when it is not, and `opening` begins when the
    /// balance went below.
    fn follow(&mut self, current: Option<Uuid>, below: bool, opening: Crossing) -> Option<Uuid> {
        match (current, below) {
            (None, true) => {
                let id = alert_id(opening.cause, &opening.threshold.kind(opening.account_id));
                self.crossings.insert(id, opening);
                Some(id)
            }
            (Some(id), false) => {
                if let Some(crossing) = self.crossings.get_mut(&id) {
                    crossing.ended_at = Some(opening.began_at);
                    if crossing.settled() {
                        self.crossings.remove(&id);
                    }
                }
                None
            }
            (current, _) => current,
        }
    }

    /// The account's balance now (zero for an account never credited nor charged).
    pub fn balance(&self, account_id: Uuid) -> Decimal {
        self.accounts
            .get(&account_id)
            .map_or(Decimal::ZERO, QuotaAccount::balance)
    }

    /// Charges of `account_id`'s records whose periods start in `[from, until)`, summed by
    /// usage type.
    pub fn charges_by_type(
        &self,
        account_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> Vec<(UsageType, Decimal)> {
        let mut sums: std::collections::BTreeMap<UsageType, Decimal> = Default::default();
        for (key, row) in self.charges.iter() {
            if key.period_start >= until.millis() {
                break;
            }
            if key.period_start >= from.millis() && key.track.account_id == account_id {
                *sums.entry(key.track.usage_type).or_default() += row.amount;
            }
        }
        sums.into_iter().collect()
    }

    /// Charges of `account_id`'s records whose periods start before `until`.
    pub fn charges_before(&self, account_id: Uuid, until: Timestamp) -> Decimal {
        self.charges_by_type(account_id, Timestamp::from_millis(i64::MIN), until)
            .into_iter()
            .map(|(_, amount)| amount)
            .sum()
    }

    /// Credits of `account_id` recorded in `[from, until]`, oldest first.
    pub fn credits_between(
        &self,
        account_id: Uuid,
        from: Timestamp,
        until: Timestamp,
    ) -> Vec<(Uuid, &CreditRow)> {
        let mut credits: Vec<(Uuid, &CreditRow)> = self
            .credits
            .iter()
            .filter(|(_, c)| {
                c.account_id == account_id && c.credited_at >= from && c.credited_at <= until
            })
            .map(|(id, c)| (*id, c))
            .collect();
        credits.sort_by_key(|(id, c)| (c.credited_at, *id));
        credits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn input(usage_type: UsageType, quantity: u64, start: &str) -> ChargeInput {
        ChargeInput {
            usage_type,
            quantity,
            size: None,
            period_start: at(start),
            period_end: at(start).add_millis(86_400_000),
            zone: chrono_tz::GMT,
        }
    }

    /// Folds `body` into `book` as the log would: the event's own fold, then `after_event`.
    fn fold(book: &mut QuotaBook, id: u128, body: EventBody, causation: Option<Uuid>) {
        let event = RecordedEvent {
            envelope: engine::event::Envelope {
                id: Uuid::from_u128(id),
                position: engine::event::Position(id as u64),
                stream: engine::event::StreamId::singleton("quota").unwrap(),
                version: id as u64,
                occurred_at: Timestamp::from_millis(id as i64 * 1000),
                recorded_at: Timestamp::from_millis(id as i64 * 1000),
                actor: Actor::SYSTEM,
                correlation_id: None,
                causation_id: causation,
                level: engine::event::Level::Info,
                state: engine::event::EventState::Completed,
                schema: 1,
                prev_hash: engine::event::ChainHash::GENESIS,
            },
            body: Box::new(body),
        };
        if let EventBody::Quota(quota) = &*event.body {
            book.apply(quota, event.envelope.recorded_at, &Actor::SYSTEM);
        }
        book.after_event(&event);
    }

    fn credit(account: Uuid, amount: &str, min: Option<&str>) -> EventBody {
        EventBody::Quota(QuotaEvent::Credits(QuotaCreditsAdded {
            credit_id: Uuid::new_v4(),
            account_id: account,
            domain_id: Uuid::nil(),
            amount: dec(amount),
            min_balance: min.map(dec),
            enforce: Some(true),
        }))
    }

    #[test]
    fn crossings_begin_and_end_with_the_balance_and_are_named_by_their_cause() {
        let account = Uuid::from_u128(0xacc);
        let mut book = QuotaBook::default();
        fold(&mut book, 1, credit(account, "100", Some("10")), None);
        assert!(book.crossings.is_empty());
        // 5 left: below the minimum of 10, not below zero.
        fold(&mut book, 2, credit(account, "-95", None), None);
        let low = alert_id(Uuid::from_u128(2), &Threshold::Low.kind(account));
        let row = book.accounts.get(&account).unwrap().clone();
        assert_eq!((row.low, row.empty), (Some(low), None));
        let crossing = book.crossings.get(&low).unwrap();
        assert_eq!((crossing.balance, crossing.limit), (dec("5"), dec("10")));
        // Lower still: the same low crossing goes on, and an empty one begins.
        fold(&mut book, 3, credit(account, "-1", None), None);
        fold(&mut book, 4, credit(account, "-6", None), None);
        let empty = alert_id(Uuid::from_u128(4), &Threshold::Empty.kind(account));
        let row = book.accounts.get(&account).unwrap().clone();
        assert_eq!((row.low, row.empty), (Some(low), Some(empty)));
        // The watcher's raise is noted; a quota lock names its crossing.
        fold(
            &mut book,
            5,
            crate::alerts::raise_body(
                low,
                1001,
                "ALERT.QUOTA.LOW",
                String::new(),
                crate::alerts::AlertScope::account(account),
            ),
            None,
        );
        assert!(book.crossings.get(&low).unwrap().raised);
        let lock = |reason: Option<&str>| {
            EventBody::Account(AccountEvent::Disable(
                engine::event::identity::AccountDisabled {
                    account_id: account,
                    name: "a".into(),
                    domain_id: Uuid::nil(),
                    locked: true,
                    reason: reason.map(str::to_owned),
                },
            ))
        };
        fold(&mut book, 6, lock(Some(LOCK_REASON)), Some(empty));
        let row = book.accounts.get(&account).unwrap().clone();
        assert_eq!((row.quota_locked, row.locked_in), (true, Some(empty)));
        // Back to 18: both end; the raised low one waits for its resolution, then goes.
        fold(&mut book, 7, credit(account, "20", None), None);
        let row = book.accounts.get(&account).unwrap().clone();
        assert_eq!((row.low, row.empty), (None, None));
        assert_eq!(
            book.crossings.get(&low).unwrap().ended_at,
            Some(Timestamp::from_millis(7000))
        );
        fold(
            &mut book,
            8,
            EventBody::Alert(AlertEvent::Resolve(
                engine::event::operations::AlertResolved {
                    alert_id: low,
                    alert_type: 1001,
                },
            )),
            None,
        );
        assert!(book.crossings.get(&low).is_none());
        assert!(book.crossings.get(&empty).is_some(), "never raised yet");
        // An admin's lock is not quota's.
        fold(&mut book, 9, lock(None), None);
        assert!(!book.accounts.get(&account).unwrap().quota_locked);
    }

    #[test]
    fn a_minimum_of_zero_raises_no_low_alert() {
        let account = Uuid::from_u128(0xb0b);
        let mut book = QuotaBook::default();
        fold(&mut book, 1, credit(account, "-1", None), None);
        let row = book.accounts.get(&account).unwrap().clone();
        assert!(row.low.is_none() && row.empty.is_some());
        assert_eq!(book.crossings.len(), 1);
    }

    #[test]
    fn hours_in_month_counts_whole_days_in_the_zone() {
        let gmt = chrono_tz::GMT;
        assert_eq!(hours_in_month(at("2026-04-10T00:00:00Z"), gmt), 720);
        assert_eq!(hours_in_month(at("2026-03-10T00:00:00Z"), gmt), 744);
        assert_eq!(hours_in_month(at("2026-02-10T00:00:00Z"), gmt), 672);
        assert_eq!(hours_in_month(at("2028-02-10T00:00:00Z"), gmt), 696);
        assert_eq!(hours_in_month(at("2026-12-31T23:00:00Z"), gmt), 744);
        // March 2026 in New York has a DST change (743 real hours): still 31 × 24.
        let ny = chrono_tz::America::New_York;
        assert_eq!(hours_in_month(at("2026-03-10T00:00:00Z"), ny), 744);
        // 03:00 UTC on 1 March is still 28 February in New York.
        assert_eq!(hours_in_month(at("2026-03-01T03:00:00Z"), ny), 672);
        assert_eq!(hours_in_month(at("2026-03-01T03:00:00Z"), gmt), 744);
    }

    #[test]
    fn compute_month_in_30_and_31_day_months() {
        // 24 h at 100/month. April: 100/720 = 0.13888888(8…) → 0.13888889; × 24 = 3.33333336.
        let april = input(UsageType::RunningVm, 24 * 3_600_000, "2026-04-10T00:00:00Z");
        assert_eq!(charge(&april, dec("100")), dec("3.33333336"));
        // March: 100/744 = 0.134408602(1…) → 0.13440860; × 24 = 3.2258064.
        let march = input(UsageType::RunningVm, 24 * 3_600_000, "2026-03-10T00:00:00Z");
        assert_eq!(charge(&march, dec("100")), dec("3.22580640"));
        // 7 h 30 min of an IP at 7.44/month in March: 0.01 × 7.5 = 0.075.
        let ip = input(UsageType::IpAddress, 27_000_000, "2026-03-10T00:00:00Z");
        assert_eq!(charge(&ip, dec("7.44")), dec("0.075"));
    }

    #[test]
    fn dst_zone_picks_the_local_month() {
        // A record starting 2026-03-01T03:00Z in New York is in February (672 h):
        // 100/672 = 0.148809523(8…) → 0.14880952; × 24 = 3.57142848.
        let mut record = input(
            UsageType::AllocatedVm,
            24 * 3_600_000,
            "2026-03-01T03:00:00Z",
        );
        record.zone = chrono_tz::America::New_York;
        assert_eq!(charge(&record, dec("100")), dec("3.57142848"));
        // A 23-hour day (spring forward) in March: 100/744 → 0.13440860 × 23 = 3.0913978.
        let mut short = input(UsageType::RunningVm, 23 * 3_600_000, "2026-03-08T05:00:00Z");
        short.zone = chrono_tz::America::New_York;
        assert_eq!(charge(&short, dec("100")), dec("3.09139780"));
    }

    #[test]
    fn gb_month_uses_the_size_in_gib() {
        // 10 GiB volume, 24 h, 7.2/month in April: 7.2/720 = 0.01; 24 × 0.01 × 10 = 2.4.
        let mut volume = input(UsageType::Volume, 24 * 3_600_000, "2026-04-01T00:00:00Z");
        volume.size = Some(10 * (1 << 30));
        assert_eq!(charge(&volume, dec("7.2")), dec("2.4"));
        // 1.5 GB (decimal) = 1.39698386 GiB (1500000000/2^30 = 1.396983861…);
        // 0.01 × 24 × 1.39698386 = 0.33527612640 → 0.33527613.
        volume.size = Some(1_500_000_000);
        assert_eq!(charge(&volume, dec("7.2")), dec("0.33527613"));
        // No size: nothing to charge.
        volume.size = None;
        assert_eq!(charge(&volume, dec("7.2")), Decimal::ZERO);
    }

    #[test]
    fn gb_iops_bytes_and_bucket() {
        // 3 GiB sent at 0.5/GB.
        let sent = input(UsageType::NetworkBytesSent, 3 << 30, "2026-04-01T00:00:00Z");
        assert_eq!(charge(&sent, dec("0.5")), dec("1.5"));
        // 1 byte: 1/2^30 = 0.00000000093 → 0.00000000 at 8 decimals: free.
        let tiny = input(UsageType::NetworkBytesReceived, 1, "2026-04-01T00:00:00Z");
        assert_eq!(charge(&tiny, dec("0.5")), Decimal::ZERO);
        // 1000 read operations at 0.0001 each.
        let io = input(UsageType::VmDiskIoRead, 1000, "2026-04-01T00:00:00Z");
        assert_eq!(charge(&io, dec("0.0001")), dec("0.1"));
        let bytes = input(UsageType::VmDiskBytesWrite, 2048, "2026-04-01T00:00:00Z");
        assert_eq!(charge(&bytes, dec("0.001")), dec("2.048"));
        // A bucket of 2 GiB for a 24 h period at 7.2/GB-month in April: 2 × 24 × 0.01 = 0.48.
        let bucket = input(UsageType::Bucket, 2 << 30, "2026-04-01T00:00:00Z");
        assert_eq!(charge(&bucket, dec("7.2")), dec("0.48"));
    }

    #[test]
    fn per_hour_rate_rounds_half_even() {
        let month = input(
            UsageType::RunningVm,
            720 * 3_600_000,
            "2026-04-01T00:00:00Z",
        );
        // 0.0000009 / 720 = 0.00000000125 → 0.00000000: 720 hours cost nothing.
        assert_eq!(charge(&month, dec("0.0000009")), Decimal::ZERO);
        // 0.0000108 / 720 = 0.000000015 → 0.00000002 (a tie, 1 is odd: up); × 720 = 0.0000144.
        assert_eq!(charge(&month, dec("0.0000108")), dec("0.0000144"));
        // 0.000018 / 720 = 0.000000025 → 0.00000002 (a tie, 2 is even: stays); × 720.
        assert_eq!(charge(&month, dec("0.000018")), dec("0.0000144"));
    }
}
