//! The usage alert watcher: a background task (like the usage scheduler, it reads the read
//! models and the clock and appends derived events) raising and resolving CloudStack's usage
//! alerts:
//!
//! - 13 `ALERT.USAGE` when the closed usage periods trail the clock by more than one
//!   aggregation range plus `usage.lag.alert.minutes`, seen for [`LAG_CONFIRM`] of real time
//!   (a manual clock's jump is caught up by the scheduler within a look); resolved once usage
//!   caught up;
//! - 20 `ALERT.USAGE.RESULT` when the scheduler could not record a run ([`run_failed`], called
//!   by the scheduler); resolved by the next run recorded;
//! - 23 `ALERT.USAGE.SANITY` when [`super::sanity::check`], run after each `USAGE.CLOSE`, finds
//!   problems; resolved by the first later check that finds none.
//!
//! It also raises and resolves the capacity alerts (0 `ALERT.MEMORY`, 1 `ALERT.CPU`, 4
//! `ALERT.NETWORK.PUBLICIP`) of [`super::capacity`] at every look.
//!
//! Every id is derived from its cause (the lagging horizon, the failed run, the checked run),
//! so a restart or a second node raises nothing twice.

use std::sync::Arc;
use std::time::Duration;

use engine::clock::Clock;
use engine::event::{NewEvent, StreamId};
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use projections::{ReadModels, State};
use tracing::warn;
use uuid::Uuid;

use super::{ALERTS_STREAM, AlertScope, AlertType, AlertsModel, raise_event, resolve_event};
use crate::ledger::UsageStatus;
use crate::scheduler::{run_id, run_times};
use crate::task::TaskHandle;

/// How often the watcher looks.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// How long (real time) usage must be seen lagging on the same horizon before the alert.
pub const LAG_CONFIRM: Duration = Duration::from_secs(2);

/// The setting: minutes of lag tolerated beyond one aggregation range.
pub const LAG_SETTING: &str = "usage.lag.alert.minutes";

/// Most sanity problems named in one alert's description.
const PROBLEMS_SHOWN: usize = 5;

/// The horizon (`closed_until`) when usage lags at `now`: it trails `now` by more than one
/// aggregation range plus `usage.lag.alert.minutes`. `None` when usage keeps up or never ran.
pub fn lagging(state: &State, now: Timestamp) -> Option<Timestamp> {
    let closed = crate::model::of(state)?.ledger.status().closed_until?;
    let range = i64::from(run_times(state).range_minutes);
    let grace = state.configuration.global_i64(LAG_SETTING).max(0);
    let allowed = (range + grace).saturating_mul(60_000);
    (now.millis() - closed.millis() > allowed).then_some(closed)
}

/// The raise of the lag alert for horizon `closed`, unless one is open or was raised for it.
pub fn lag_raise(alerts: &AlertsModel, closed: Timestamp, now: Timestamp) -> Option<NewEvent> {
    let kind = "alert.usage.lag";
    let cause = run_id(closed);
    if alerts.is_open(AlertType::USAGE.id, &AlertScope::default())
        || alerts.get(super::alert_id(cause, kind)).is_some()
    {
        return None;
    }
    let behind = (now.millis() - closed.millis()) / 60_000;
    Some(raise_event(
        cause,
        kind,
        AlertType::USAGE,
        format!(
            "Usage lags: periods are closed up to {closed}, {behind} minutes behind the clock (more than one aggregation range plus {LAG_SETTING})"
        ),
        AlertScope::default(),
    ))
}

/// Resolutions of the open global alerts of a type.
fn resolve_all(alerts: &AlertsModel, alert_type: AlertType) -> Vec<NewEvent> {
    alerts
        .open_of_type(alert_type.id)
        .filter(|row| row.scope == AlertScope::default())
        .map(resolve_event)
        .collect()
}

/// Resolutions of the failed-run alerts a run recorded since cleared.
pub fn recovered_runs(alerts: &AlertsModel, status: &UsageStatus) -> Vec<NewEvent> {
    let Some(last_run) = status.last_run_at else {
        return Vec::new();
    };
    alerts
        .open_of_type(AlertType::USAGE_RESULT.id)
        .filter(|row| row.scope == AlertScope::default() && row.sent < last_run)
        .map(resolve_event)
        .collect()
}

/// The sanity check of the ledger as of the last run: a raise when it finds problems and no
/// sanity alert is open, resolutions when it finds none.
pub fn sanity_events(state: &State, alerts: &AlertsModel) -> Vec<NewEvent> {
    let Some(usage) = crate::model::of(state) else {
        return Vec::new();
    };
    let status = usage.ledger.status();
    let (Some(closed), Some(run_at)) = (status.closed_until, status.last_run_at) else {
        return Vec::new();
    };
    let problems = super::sanity::check(&usage.ledger);
    if problems.is_empty() {
        return resolve_all(alerts, AlertType::USAGE_SANITY);
    }
    let kind = format!("alert.usage.sanity:{}", run_at.millis());
    let cause = run_id(closed);
    if alerts.is_open(AlertType::USAGE_SANITY.id, &AlertScope::default())
        || alerts.get(super::alert_id(cause, &kind)).is_some()
    {
        return Vec::new();
    }
    let shown: Vec<String> = problems
        .iter()
        .take(PROBLEMS_SHOWN)
        .map(ToString::to_string)
        .collect();
    vec![raise_event(
        cause,
        &kind,
        AlertType::USAGE_SANITY,
        format!(
            "Usage sanity check found {} problem(s) after the run closing periods up to {closed}: {}",
            problems.len(),
            shown.join("; ")
        ),
        AlertScope::default(),
    )]
}

/// The raise of a failed-run alert for the run closing periods up to `until`, unless one is
/// open: called by the scheduler when it could not record the run.
pub fn run_failed_event(alerts: &AlertsModel, until: Timestamp, error: &str) -> Option<NewEvent> {
    let kind = "alert.usage.result";
    let cause = run_id(until);
    if alerts.is_open(AlertType::USAGE_RESULT.id, &AlertScope::default())
        || alerts.get(super::alert_id(cause, kind)).is_some()
    {
        return None;
    }
    Some(raise_event(
        cause,
        kind,
        AlertType::USAGE_RESULT,
        format!("Usage run closing periods up to {until} failed: {error}"),
        AlertScope::default(),
    ))
}

/// Raises the failed-run alert (the scheduler's hook); a failure to do so is logged.
pub async fn run_failed(
    store: &dyn EventStore,
    models: &ReadModels,
    until: Timestamp,
    error: &str,
) {
    let event = {
        let state = models.read();
        super::of(&state).and_then(|alerts| run_failed_event(alerts, until, error))
    };
    if let Some(event) = event
        && let Err(e) = append(store, vec![event]).await
    {
        warn!(error = %e, "could not raise the failed usage run alert");
    }
}

async fn append(store: &dyn EventStore, events: Vec<NewEvent>) -> Result<(), String> {
    let stream = StreamId::singleton(ALERTS_STREAM).map_err(|e| e.to_string())?;
    store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Starts the watcher.
pub fn start(
    store: Arc<dyn EventStore>,
    models: Arc<ReadModels>,
    clock: Arc<dyn Clock>,
) -> TaskHandle {
    TaskHandle::spawn(move |mut stop_rx| async move {
        // The run whose ledger was last checked, and the lagging horizon first seen when.
        let mut checked: Option<Timestamp> = None;
        let mut lag_since: Option<(Timestamp, tokio::time::Instant)> = None;
        loop {
            let (events, run_at) = {
                let state = models.read();
                look(&state, clock.now(), &mut lag_since, checked)
            };
            let ok = events.is_empty() || {
                match append(&*store, events).await {
                    Ok(()) => true,
                    Err(e) => {
                        warn!(error = %e, "could not record usage alerts");
                        false
                    }
                }
            };
            if ok {
                checked = run_at.or(checked);
            }
            tokio::select! {
                _ = &mut stop_rx => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    })
}

/// One look: the events to append, and the run the sanity check covered (when it ran).
fn look(
    state: &State,
    now: Timestamp,
    lag_since: &mut Option<(Timestamp, tokio::time::Instant)>,
    checked: Option<Timestamp>,
) -> (Vec<NewEvent>, Option<Timestamp>) {
    let (Some(alerts), Some(usage)) = (super::of(state), crate::model::of(state)) else {
        return (Vec::new(), None);
    };
    let status = usage.ledger.status();
    let mut events = Vec::new();
    match lagging(state, now) {
        Some(closed) => match *lag_since {
            Some((seen, since)) if seen == closed => {
                if since.elapsed() >= LAG_CONFIRM {
                    events.extend(lag_raise(alerts, closed, now));
                }
            }
            _ => *lag_since = Some((closed, tokio::time::Instant::now())),
        },
        None => {
            *lag_since = None;
            events.extend(resolve_all(alerts, AlertType::USAGE));
        }
    }
    events.extend(recovered_runs(alerts, &status));
    events.extend(super::capacity::due_events(state, alerts));
    let mut run_at = None;
    if status.last_run_at.is_some() && status.last_run_at != checked {
        events.extend(sanity_events(state, alerts));
        run_at = status.last_run_at;
    }
    // Same id twice in one append would be refused: keep the first.
    let mut seen = std::collections::BTreeSet::<Uuid>::new();
    events.retain(|e| seen.insert(e.id));
    (events, run_at)
}
