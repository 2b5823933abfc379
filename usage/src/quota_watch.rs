//! The quota watcher (spec/usage.md "Quota", docs/quota.md): a background task, like the usage
//! threshold watcher, that reads the quota book and appends what it implies:
//!
//! - `ALERT.RAISE` of 1001 `ALERT.QUOTA.LOW` / 1002 `ALERT.QUOTA.EMPTY` for every balance
//!   [`Crossing`] the book noted, and its `ALERT.RESOLVE` once the balance came back, on the
//!   `alerts` stream, so they reach `listAlerts` and every alert sink like any other alert;
//! - with `quota.enable.enforcement` true, `ACCOUNT.DISABLE` with `locked=true` and a reason
//!   naming quota for an enforceable account (`quota_enforce=true`, a user or domain admin
//!   account, enabled) whose balance is below zero, and `ACCOUNT.ENABLE` when the balance is
//!   back to zero or more, for accounts quota locked only.
//!
//! Every id is derived from the crossing, itself named by the event that caused it, so a
//! restart, a second node or a rebuild appends nothing twice (DESIGN.md invariant 9). The
//! watcher reads no clock: what it appends follows from the log alone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use engine::event::identity::{AccountDisabled, AccountRef, AccountType};
use engine::event::infrastructure::ConfigScope;
use engine::event::{AccountEvent, EventBody, Level, NewEvent, StreamId, StreamIdError};
use engine::store::{EventStore, ExpectedVersion, StoreError};
use projections::identity::AccountState;
use projections::{ReadModels, State};
use tracing::{info, warn};
use uuid::Uuid;

use crate::alerts::{ALERTS_STREAM, AlertScope, AlertsModel, raise_event};
use crate::quota::{Crossing, LOCK_REASON, QuotaAccount, Threshold};
use crate::task::TaskHandle;

/// How often the watcher looks.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// The setting that makes quota lock accounts below zero.
pub const ENFORCEMENT_SETTING: &str = "quota.enable.enforcement";

/// The stream account locks and unlocks go to: the one that owns account state.
pub const IDENTITY_STREAM: &str = "identity";

/// What one look found to append.
#[derive(Debug, Default)]
pub struct Due {
    /// Alert raises and resolutions, resolutions first (a new crossing's alert is raised
    /// only once the previous one of its type and account is closed).
    pub alerts: Vec<NewEvent>,
    /// Account locks and unlocks.
    pub accounts: Vec<NewEvent>,
    /// The identity stream's version the account decisions read: they are appended expecting
    /// it, so an admin's enable or disable in between makes the watcher look again.
    pub identity_version: u64,
}

/// The events due given the read models `state`.
pub fn due(state: &State) -> Due {
    let mut due = Due {
        identity_version: state.stream_version(IDENTITY_STREAM),
        ..Due::default()
    };
    let (Some(usage), Some(alerts)) = (crate::model::of(state), crate::alerts::of(state)) else {
        return due;
    };
    due.alerts = alert_events(state, alerts, usage.quota.crossings.iter());
    for (account_id, account) in usage.quota.accounts.iter() {
        due.accounts.extend(lock_event(state, *account_id, account));
    }
    due
}

/// Resolutions of ended crossings whose alerts were raised, then raises of crossings not yet
/// raised, oldest first, at most one per type and account and only when no other alert of
/// that type is open for the account.
fn alert_events<'a>(
    state: &State,
    alerts: &AlertsModel,
    crossings: impl Iterator<Item = (&'a Uuid, &'a Crossing)>,
) -> Vec<NewEvent> {
    let crossings: Vec<(&Uuid, &Crossing)> = crossings.collect();
    let mut events = Vec::new();
    let mut resolving = BTreeSet::new();
    for (id, crossing) in &crossings {
        if crossing.raised
            && crossing.ended_at.is_some()
            && !crossing.resolved
            && let Some(row) = alerts.get(**id)
        {
            events.push(crate::alerts::resolve_event(row));
            resolving.insert(**id);
        }
    }
    let mut waiting: Vec<&(&Uuid, &Crossing)> =
        crossings.iter().filter(|(_, c)| !c.raised).collect();
    waiting.sort_by_key(|(id, c)| (c.began_at, **id));
    let mut raising = BTreeSet::new();
    for (id, crossing) in waiting {
        let alert_type = crossing.threshold.alert_type();
        let scope = AlertScope::account(crossing.account_id);
        let blocked = alerts
            .open_alert(alert_type.id, &scope)
            .is_some_and(|open| open.id != **id && !resolving.contains(&open.id));
        if blocked || !raising.insert((alert_type.id, crossing.account_id)) {
            continue;
        }
        events.push(raise_event(
            crossing.cause,
            &crossing.threshold.kind(crossing.account_id),
            alert_type,
            describe(state, crossing),
            scope,
        ));
    }
    events
}

/// What the operator reads: the account, the balance and the threshold it fell below.
fn describe(state: &State, crossing: &Crossing) -> String {
    let account = state
        .identity
        .accounts
        .get(&crossing.account_id)
        .map_or_else(
            || crossing.account_id.to_string(),
            |a| a.facts.name.to_string(),
        );
    let currency = state
        .configuration
        .global("quota.currency.symbol")
        .unwrap_or_else(|| "$".to_owned());
    let balance = crossing.balance.normalize();
    match crossing.threshold {
        Threshold::Low => format!(
            "Quota balance of account {account} fell to {currency}{balance}, below its minimum balance of {currency}{}, at {}",
            crossing.limit.normalize(),
            crossing.began_at
        ),
        Threshold::Empty => format!(
            "Quota balance of account {account} fell to {currency}{balance}, below zero, at {}",
            crossing.began_at
        ),
    }
}

/// `quota.enable.enforcement` for an account: set on the account, else on its domain, else
/// globally (the setting's scopes in the catalogue).
fn enforcing(state: &State, account_id: Uuid, domain_id: Uuid) -> bool {
    let config = &state.configuration;
    config
        .value_at(ENFORCEMENT_SETTING, ConfigScope::Account, Some(account_id))
        .or_else(|| config.value_at(ENFORCEMENT_SETTING, ConfigScope::Domain, Some(domain_id)))
        .map_or_else(|| config.global_bool(ENFORCEMENT_SETTING), |v| v == "true")
}

/// CloudStack's `QuotaManagerImpl.isLockable`: user and domain admin accounts only.
fn lockable(account_type: AccountType) -> bool {
    matches!(account_type, AccountType::User | AccountType::DomainAdmin)
}

/// The lock or unlock due for one account, if any: a lock once per below-zero crossing of an
/// enforceable, lockable, enabled account while enforcement is on; an unlock of a lock quota
/// put once the balance is back to zero or more.
fn lock_event(state: &State, account_id: Uuid, quota: &QuotaAccount) -> Option<NewEvent> {
    let row = state.identity.accounts.get(&account_id)?;
    let named = AccountRef {
        account_id,
        name: row.facts.name.clone(),
        domain_id: row.facts.domain_id,
    };
    match quota.empty {
        Some(crossing)
            if quota.enforce
                && enforcing(state, account_id, row.facts.domain_id)
                && quota.locked_in != Some(crossing)
                && row.state == AccountState::Enabled
                && lockable(row.facts.account_type) =>
        {
            let reason = format!(
                "{LOCK_REASON}: {} (quota.enable.enforcement)",
                quota.balance().normalize()
            );
            Some(
                NewEvent::derived(
                    crossing,
                    "quota.lock",
                    EventBody::Account(AccountEvent::Disable(AccountDisabled {
                        account_id,
                        name: named.name,
                        domain_id: named.domain_id,
                        locked: true,
                        reason: Some(reason),
                    })),
                )
                .level(Level::Warn),
            )
        }
        None if quota.quota_locked && row.state == AccountState::Locked => {
            let crossing = quota.locked_in?;
            Some(NewEvent::derived(
                crossing,
                "quota.unlock",
                EventBody::Account(AccountEvent::Enable(named)),
            ))
        }
        _ => None,
    }
}

/// Starts the quota watcher.
pub fn start(store: Arc<dyn EventStore>, models: Arc<ReadModels>) -> TaskHandle {
    TaskHandle::spawn(move |mut stop_rx| async move {
        loop {
            let due = due(&models.read());
            if let Err(e) = append(&*store, due).await {
                warn!(error = %e, "could not record quota alerts or account locks");
            }
            tokio::select! {
                _ = &mut stop_rx => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    })
}

/// Why a look's appends failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A stream name was refused (a constant: a bug).
    #[error("bad stream name: {0}")]
    Stream(#[from] StreamIdError),
    /// The log refused an append.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Appends what a look found, one event per append: a batch mixing an event already stored
/// (appended by the previous look, not folded yet) with new ones would be refused whole. A
/// lost race on the identity stream (an admin changed an account meanwhile) is not an error:
/// the next look decides again on the newer state.
async fn append(store: &dyn EventStore, due: Due) -> Result<(), WatchError> {
    let alerts = StreamId::singleton(ALERTS_STREAM)?;
    for event in due.alerts {
        store
            .append(&alerts, ExpectedVersion::Any, vec![event])
            .await?;
        info!("quota alert recorded");
    }
    let identity = StreamId::singleton(IDENTITY_STREAM)?;
    let mut version = due.identity_version;
    for event in due.accounts {
        match store
            .append(&identity, ExpectedVersion::Exact(version), vec![event])
            .await
        {
            Ok(_) => {
                info!("quota account lock or unlock recorded");
                version += 1;
            }
            Err(StoreError::WrongExpectedVersion { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
