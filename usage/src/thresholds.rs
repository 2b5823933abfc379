//! Per-account usage thresholds (Ledgerstack, beyond CloudStack): "tell me when account X has
//! run more than 48 VM-hours today" or "... has spent more than 80% of its 50.00 budget this
//! period". A threshold watches one usage type's quantity, or the account's quota spend (on
//! every usage type, or on one: see [`spend`]), in the account's usage period (its aggregation
//! period: a day by default, in its aggregation zone), as an absolute amount or as a
//! percentage of a budget.
//!
//! The read model folds `USAGE.THRESHOLD.*` and the threshold alerts already raised; the watcher
//! (the one wall-clock reader here, like the usage scheduler) measures each threshold's period
//! so far and appends `ALERT.RAISE` (type 1003 `ALERT.USAGE.THRESHOLD`) once per threshold and
//! period, and, when the threshold asks for it, `ALERT.RESOLVE` once a later period is measured
//! under the limit. Alert ids derive from the threshold and the period, so a restart, a second
//! node or a rebuild never raises one twice (DESIGN.md invariant 9).

use std::sync::Arc;
use std::time::Duration;

use engine::clock::Clock;
use engine::event::billing::{ThresholdMetric, UsageThresholdDefined};
use engine::event::operations::{AlertRaised, AlertResolved};
use engine::event::{
    AlertEvent, EventBody, NewEvent, RecordedEvent, StreamId, UsageThresholdEvent,
};
use engine::ids::derived_event_id;
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use projections::runner::DownstreamModel;
use projections::table::{PersistedTable, Table};
use projections::{ReadModels, State};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

use crate::fact::TrackKey;
use crate::ledger::{Device, Ledger};
use crate::model::UsageModel;
use crate::period::Period;
use crate::quota::{self, ChargeInput};
use crate::task::TaskHandle;
use crate::usage_type::{Unit, UsageType};

/// The alert type a threshold raises (Ledgerstack's id; CloudStack's stop below 100).
pub const THRESHOLD_ALERT_TYPE: u16 = 1003;
/// Its name.
pub const THRESHOLD_ALERT_NAME: &str = "ALERT.USAGE.THRESHOLD";
/// The stream thresholds and their alerts are appended to.
pub const THRESHOLD_STREAM: &str = "usage_thresholds";

/// How often the watcher measures.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Bumped whenever a row changes meaning.
const THRESHOLDS_MODEL_VERSION: &str = "thresholds-1";

/// A live threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdRow {
    /// Its definition after the latest change.
    pub facts: UsageThresholdDefined,
    /// When it was created (occurred-at).
    pub created: Timestamp,
}

impl ThresholdRow {
    /// The quantity at which it fires: the limit, or the limit's percentage of the budget.
    pub fn effective_limit(&self) -> Decimal {
        match self.facts.budget {
            Some(budget) => budget * self.facts.limit / Decimal::ONE_HUNDRED,
            None => self.facts.limit,
        }
    }
}

/// An alert a threshold raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdAlert {
    /// The threshold.
    pub threshold_id: Uuid,
    /// Start of the period it fired in.
    pub period_start: Timestamp,
    /// Whether its resolution was appended.
    pub resolved: bool,
}

/// The thresholds read model.
#[derive(Debug)]
pub struct ThresholdsModel {
    /// Live thresholds by id.
    pub thresholds: Table<Uuid, ThresholdRow>,
    /// Alerts raised by thresholds, by alert id.
    pub alerts: Table<Uuid, ThresholdAlert>,
}

impl Default for ThresholdsModel {
    fn default() -> Self {
        ThresholdsModel {
            thresholds: Table::new("usage_thresholds"),
            alerts: Table::new("usage_threshold_alerts"),
        }
    }
}

/// The thresholds model of read models made with [`crate::model::read_models`].
pub fn of(state: &State) -> Option<&ThresholdsModel> {
    state.downstream::<ThresholdsModel>()
}

impl DownstreamModel for ThresholdsModel {
    fn version(&self) -> &'static str {
        THRESHOLDS_MODEL_VERSION
    }

    fn apply(&mut self, event: &RecordedEvent, _upstream: &State) {
        match &*event.body {
            EventBody::UsageThreshold(UsageThresholdEvent::Create(facts)) => {
                self.thresholds.insert(
                    facts.threshold_id,
                    ThresholdRow {
                        facts: facts.clone(),
                        created: event.envelope.occurred_at,
                    },
                );
            }
            EventBody::UsageThreshold(UsageThresholdEvent::Update(facts)) => {
                if let Some(row) = self.thresholds.get_mut(&facts.threshold_id) {
                    row.facts = facts.clone();
                }
            }
            EventBody::UsageThreshold(UsageThresholdEvent::Delete(removed)) => {
                self.thresholds.remove(&removed.threshold_id);
            }
            EventBody::Alert(AlertEvent::Raise(raised))
                if raised.alert_type == THRESHOLD_ALERT_TYPE =>
            {
                if let Some((threshold_id, period_start)) = parse_cause(&raised.description) {
                    self.alerts.insert(
                        raised.alert_id,
                        ThresholdAlert {
                            threshold_id,
                            period_start,
                            resolved: false,
                        },
                    );
                }
            }
            EventBody::Alert(AlertEvent::Resolve(resolved))
                if resolved.alert_type == THRESHOLD_ALERT_TYPE =>
            {
                if let Some(alert) = self.alerts.get_mut(&resolved.alert_id) {
                    alert.resolved = true;
                }
            }
            _ => {}
        }
    }

    fn tables(&mut self) -> Vec<&mut dyn PersistedTable> {
        vec![&mut self.thresholds, &mut self.alerts]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The id of the alert `threshold` raises in the period starting at `period_start`.
pub fn alert_id(threshold_id: Uuid, period_start: Timestamp) -> Uuid {
    derived_event_id(
        threshold_id,
        &format!("usage.threshold.alert:{}", period_start.millis()),
    )
}

/// The description of a threshold alert ends with a machine-readable cause, so the model can
/// tell which threshold and period an `ALERT.RAISE` belongs to without another event field.
fn cause_suffix(threshold_id: Uuid, period_start: Timestamp) -> String {
    format!(
        "[threshold {threshold_id}, period {}]",
        period_start.millis()
    )
}

fn parse_cause(description: &str) -> Option<(Uuid, Timestamp)> {
    let start = description.rfind("[threshold ")?;
    let inner = description[start + "[threshold ".len()..].strip_suffix(']')?;
    let (id, period) = inner.split_once(", period ")?;
    Some((
        id.parse().ok()?,
        Timestamp::from_millis(period.parse().ok()?),
    ))
}

/// A usage type's quantity in the unit thresholds are given in: hours for time-based types,
/// bytes or operations for counters.
pub fn display_quantity(usage_type: UsageType, raw: u64) -> Decimal {
    match usage_type.unit() {
        Unit::Hours => Decimal::from(raw) / Decimal::from(3_600_000u32),
        Unit::Bytes | Unit::Count => Decimal::from(raw),
    }
}

/// The unit [`display_quantity`] measures in, for people.
pub fn unit_word(usage_type: UsageType) -> &'static str {
    match usage_type.unit() {
        Unit::Hours => "hours",
        Unit::Bytes => "bytes",
        Unit::Count => "operations",
    }
}

/// What an account's usage of `usage_type` amounts to in `period` up to `until` (raw: ms for
/// time-based types, bytes or operations for counters).
pub fn measure(
    ledger: &Ledger,
    account_id: Uuid,
    usage_type: UsageType,
    period: Period,
    until: Timestamp,
) -> u64 {
    let clipped = Period {
        start: period.start,
        end: until.min(period.end).max(period.start),
    };
    let tracked: u64 = ledger
        .tracks
        .range(TrackKey::range_of(account_id, usage_type))
        .map(|(_, track)| track.accrued(clipped).iter().sum::<u64>())
        .sum();
    let counted: u64 = ledger
        .devices
        .iter()
        .filter(|(key, _)| key.account_id == account_id)
        .map(|(key, device)| {
            Device::usage_types(key.kind)
                .iter()
                .zip(device.deltas(clipped))
                .filter(|(t, _)| **t == usage_type)
                .map(|(_, delta)| delta)
                .sum::<u64>()
        })
        .sum();
    tracked + counted
}

/// An account's quota spend in `period` up to `until`, on one usage type or on all.
///
/// A period the usage server has closed for the account is what the quota book charged for
/// its records (what `quotaStatement` shows for it). A period still open has no records yet:
/// its spend so far is what closing it now would charge, every would-be record (each variant
/// of each track, each device counter) priced with [`quota::charge`] at the tariffs in force
/// at the period start, so the spend a threshold sees before the close is the one it sees
/// after (unless the tariffs change in between).
pub fn spend(
    usage: &UsageModel,
    account_id: Uuid,
    only: Option<UsageType>,
    period: Period,
    until: Timestamp,
) -> Decimal {
    let ledger = &usage.ledger;
    let book = &usage.quota;
    let wanted = |t: UsageType| only.is_none_or(|o| o == t);
    let closed = ledger
        .accounts
        .get(&account_id)
        .and_then(|a| a.closed_until)
        .is_some_and(|closed| closed >= period.end);
    if closed {
        return book
            .charges_by_type(account_id, period.start, period.end)
            .into_iter()
            .filter(|(t, _)| wanted(*t))
            .map(|(_, amount)| amount)
            .sum();
    }
    let clipped = Period {
        start: period.start,
        end: until.min(period.end).max(period.start),
    };
    let zone = ledger.schedule_of(account_id).rule_at(period.start).zone;
    let price = |usage_type: UsageType, quantity: u64, size: Option<u64>| {
        if quantity == 0 {
            return Decimal::ZERO;
        }
        let tariff: Decimal = book
            .tariffs_in_force(usage_type, period.start)
            .map(|t| t.current.value)
            .sum();
        let input = ChargeInput {
            usage_type,
            quantity,
            size,
            period_start: period.start,
            period_end: period.end,
            zone,
        };
        quota::charge(&input, tariff)
    };
    let mut total = Decimal::ZERO;
    for &usage_type in UsageType::ALL.iter().filter(|t| wanted(**t)) {
        for (_, track) in ledger
            .tracks
            .range(TrackKey::range_of(account_id, usage_type))
        {
            for (variant, ms) in track.accrued(clipped).into_iter().enumerate() {
                let size = track.variants.get(variant).and_then(|f| f.size);
                total += price(usage_type, ms, size);
            }
        }
    }
    for (key, device) in ledger.devices.iter() {
        if key.account_id != account_id {
            continue;
        }
        for (usage_type, delta) in Device::usage_types(key.kind)
            .iter()
            .zip(device.deltas(clipped))
        {
            if wanted(*usage_type) {
                total += price(*usage_type, delta, device.facts.size);
            }
        }
    }
    total
}

/// One threshold's standing in its current period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The period being measured.
    pub period: Period,
    /// The quantity so far, in the threshold's unit.
    pub quantity: Decimal,
    /// Whether it reached the effective limit.
    pub exceeded: bool,
}

/// Where `row` stands in the period containing `at`: a usage quantity in its unit, or quota
/// spend ([`spend`]). `None` when the usage model is missing or the usage type is unknown.
pub fn standing(state: &State, row: &ThresholdRow, at: Timestamp) -> Option<Standing> {
    let usage = crate::model::of(state)?;
    let period = usage
        .ledger
        .schedule_of(row.facts.account_id)
        .period_containing(at);
    standing_in(state, row, period, at)
}

fn standing_in(
    state: &State,
    row: &ThresholdRow,
    period: Period,
    until: Timestamp,
) -> Option<Standing> {
    let usage = crate::model::of(state)?;
    let quantity = match row.facts.metric {
        ThresholdMetric::Usage => {
            let usage_type = UsageType::from_id(u8::try_from(row.facts.usage_type?).ok()?)?;
            display_quantity(
                usage_type,
                measure(
                    &usage.ledger,
                    row.facts.account_id,
                    usage_type,
                    period,
                    until,
                ),
            )
        }
        ThresholdMetric::Quota => {
            let only = match row.facts.usage_type {
                Some(id) => Some(UsageType::from_id(u8::try_from(id).ok()?)?),
                None => None,
            };
            spend(usage, row.facts.account_id, only, period, until)
        }
    };
    Some(Standing {
        period,
        quantity,
        exceeded: quantity >= row.effective_limit(),
    })
}

/// The alert events due at `now`: a raise for every threshold over its limit in the current or
/// the previous period (a period that ended while the server was down still counts) without an
/// alert for that period, and, for thresholds that ask for it, a resolution of earlier periods'
/// alerts once the current period is under the limit.
pub fn due_events(state: &State, now: Timestamp) -> Vec<NewEvent> {
    let (Some(model), Some(usage)) = (of(state), crate::model::of(state)) else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for (_, row) in model.thresholds.iter() {
        let schedule = usage.ledger.schedule_of(row.facts.account_id);
        let current = schedule.period_containing(now);
        let previous = schedule.period_containing(current.start.add_millis(-1));
        for period in [previous, current] {
            if period.start < row.created && period.end <= row.created {
                continue;
            }
            let id = alert_id(row.facts.threshold_id, period.start);
            if model.alerts.get(&id).is_some() {
                continue;
            }
            if let Some(standing) = standing_in(state, row, period, now)
                && standing.exceeded
            {
                events.push(raise_event(state, row, &standing, id));
            }
        }
        if !row.facts.notify_resolve {
            continue;
        }
        let under_now = standing_in(state, row, current, now).is_some_and(|s| !s.exceeded);
        if !under_now {
            continue;
        }
        for (alert_id, alert) in model.alerts.iter() {
            if alert.threshold_id == row.facts.threshold_id
                && !alert.resolved
                && alert.period_start < current.start
            {
                events.push(NewEvent::with_id(
                    derived_event_id(*alert_id, "usage.threshold.resolve"),
                    EventBody::Alert(AlertEvent::Resolve(AlertResolved {
                        alert_id: *alert_id,
                        alert_type: THRESHOLD_ALERT_TYPE,
                    })),
                ));
            }
        }
    }
    events
}

fn raise_event(state: &State, row: &ThresholdRow, standing: &Standing, id: Uuid) -> NewEvent {
    let facts = &row.facts;
    let account = state
        .identity
        .account_name(facts.account_id)
        .map(|n| n.to_string())
        .unwrap_or_else(|| facts.account_id.to_string());
    let usage_type = facts
        .usage_type
        .and_then(|t| u8::try_from(t).ok())
        .and_then(UsageType::from_id);
    let what = match (facts.metric, usage_type) {
        (ThresholdMetric::Usage, Some(t)) => format!("{} {}", unit_word(t), t.name()),
        (ThresholdMetric::Quota, Some(t)) => format!("quota spend on {}", t.name()),
        _ => "quota spend".to_owned(),
    };
    let description = format!(
        "Account {account} reached {} of {what} in the period from {} to {}: threshold '{}' is {} {}",
        standing.quantity.normalize(),
        standing.period.start,
        standing.period.end,
        facts.name,
        row.effective_limit().normalize(),
        cause_suffix(facts.threshold_id, standing.period.start),
    );
    NewEvent::with_id(
        derived_event_id(id, "usage.threshold.raise"),
        EventBody::Alert(AlertEvent::Raise(AlertRaised {
            alert_id: id,
            alert_type: THRESHOLD_ALERT_TYPE,
            name: THRESHOLD_ALERT_NAME.into(),
            description,
            zone_id: None,
            pod_id: None,
            cluster_id: None,
            account_id: Some(facts.account_id),
        })),
    )
}

/// Starts the threshold watcher.
pub fn start(
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    clock: Arc<dyn Clock>,
) -> TaskHandle {
    TaskHandle::spawn(move |mut stop_rx| async move {
        loop {
            let due = due_events(&models.read(), clock.now());
            for event in due {
                match append(&*store, event).await {
                    Ok(()) => info!("usage threshold alert recorded"),
                    Err(e) => warn!(error = %e, "could not record a usage threshold alert"),
                }
            }
            tokio::select! {
                _ = &mut stop_rx => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    })
}

async fn append(store: &dyn EventStore, event: NewEvent) -> Result<(), String> {
    let stream = StreamId::singleton(THRESHOLD_STREAM).map_err(|e| e.to_string())?;
    store
        .append(&stream, ExpectedVersion::Any, vec![event])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_in_a_description_reads_back() {
        let id = Uuid::from_u128(0x7d);
        let at = Timestamp::from_millis(1_714_521_600_000);
        let description = format!("Account a reached 50 hours {}", cause_suffix(id, at));
        assert_eq!(parse_cause(&description), Some((id, at)));
        assert_eq!(parse_cause("no cause here"), None);
    }

    #[test]
    fn a_budget_makes_the_limit_a_percentage() {
        let row = |limit: &str, budget: Option<&str>| ThresholdRow {
            facts: UsageThresholdDefined {
                threshold_id: Uuid::nil(),
                account_id: Uuid::nil(),
                domain_id: Uuid::nil(),
                name: "t".into(),
                metric: ThresholdMetric::Usage,
                usage_type: Some(1),
                limit: limit.parse().unwrap(),
                budget: budget.map(|b| b.parse().unwrap()),
                notify_resolve: false,
            },
            created: Timestamp::EPOCH,
        };
        assert_eq!(row("48", None).effective_limit(), Decimal::from(48));
        assert_eq!(
            row("80", Some("1000.00")).effective_limit(),
            "800".parse::<Decimal>().unwrap()
        );
    }

    #[test]
    fn hours_types_measure_in_hours_and_counters_in_their_unit() {
        assert_eq!(
            display_quantity(UsageType::RunningVm, 5_400_000),
            "1.5".parse::<Decimal>().unwrap()
        );
        assert_eq!(
            display_quantity(UsageType::NetworkBytesSent, 1024),
            Decimal::from(1024)
        );
    }

    #[test]
    fn spend_prices_an_open_period_and_reads_a_closed_one_from_the_book() {
        use crate::fact::RecordFacts;
        use crate::ledger::{AccountUsage, RecordKey, Track, Transition};
        use crate::quota::{ChargeRow, TariffRow};
        use engine::event::billing::QuotaTariffDefined;

        let account_id = Uuid::from_u128(0xa);
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let day = Period {
            start: at("2026-04-10T00:00:00Z"),
            end: at("2026-04-11T00:00:00Z"),
        };
        let mut usage = UsageModel::default();
        let key = TrackKey {
            account_id,
            usage_type: UsageType::RunningVm,
            entity_id: Uuid::from_u128(0xb),
            sub_id: Uuid::nil(),
        };
        usage.ledger.tracks.insert(
            key,
            Track {
                variants: vec![RecordFacts::default()],
                transitions: vec![Transition {
                    at: day.start.millis(),
                    seq: 1,
                    variant: Some(0),
                }],
            },
        );
        let tariff = QuotaTariffDefined {
            tariff_id: Uuid::from_u128(0xc),
            name: "vm".into(),
            description: None,
            usage_type: 1,
            value: "100".parse().unwrap(),
            effective_on: at("2026-04-01T00:00:00Z"),
            end_date: None,
            position: None,
        };
        usage.quota.tariffs.insert(
            tariff.tariff_id,
            TariffRow {
                current: tariff,
                created_at: Timestamp::EPOCH,
                updated_at: Timestamp::EPOCH,
                removed: None,
                history: Vec::new(),
            },
        );
        // Six hours in April (720 h) at 100 a month: 100/720 → 0.13888889 × 6.
        let six_hours = at("2026-04-10T06:00:00Z");
        let open = spend(&usage, account_id, None, day, six_hours);
        assert_eq!(open, "0.83333334".parse::<Decimal>().unwrap());
        assert_eq!(
            spend(
                &usage,
                account_id,
                Some(UsageType::RunningVm),
                day,
                six_hours
            ),
            open
        );
        assert_eq!(
            spend(&usage, account_id, Some(UsageType::Volume), day, six_hours),
            Decimal::ZERO
        );
        assert_eq!(
            spend(&usage, Uuid::from_u128(0xd), None, day, six_hours),
            Decimal::ZERO
        );

        // Closed: what the book charged for the period's records, whatever the ledger says.
        usage.ledger.accounts.insert(
            account_id,
            AccountUsage {
                closed_until: Some(day.end),
                ..AccountUsage::default()
            },
        );
        usage.quota.charges.insert(
            RecordKey {
                period_start: day.start.millis(),
                track: key,
                variant: 0,
            },
            ChargeRow {
                period_end: day.end,
                amount: "3.33333336".parse().unwrap(),
                charged_at: day.end,
            },
        );
        assert_eq!(
            spend(&usage, account_id, None, day, six_hours),
            "3.33333336".parse::<Decimal>().unwrap()
        );
    }
}
