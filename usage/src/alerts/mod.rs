//! Alerts (spec/usage.md "Alerts"): the alert type catalogue, the alerts read model folded from
//! `ALERT.RAISE` / `ALERT.RESOLVE` / `ALERT.ARCHIVE` / `ALERT.DELETE`, and the helpers other code
//! uses to raise and resolve alerts with ids derived from their cause (DESIGN.md invariant 9),
//! so a restart or a rebuild raises nothing twice.
//!
//! An alert is *open* from its raise until it is resolved, archived or deleted (CloudStack's
//! `AlertDao.getLastAlert` also stops seeing archived alerts); while an alert of a type is open
//! for a scope, that type is not raised again for that scope.

pub mod capacity;
pub mod catalogue;
pub mod sanity;
pub mod watcher;

use engine::event::operations::{AlertRaised, AlertResolved};
use engine::event::{AlertEvent, EventBody, Level, NewEvent, RecordedEvent};
use engine::ids::derived_event_id;
use engine::time::Timestamp;
use projections::State;
use projections::runner::DownstreamModel;
use projections::table::{PersistedTable, Table};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use catalogue::AlertType;

/// Bumped whenever an alert row or the fold changes meaning: the store is then rebuilt.
const ALERTS_MODEL_VERSION: &str = "alerts-1";

/// The singleton stream alerts are appended to (raises, resolutions, archive and delete).
pub const ALERTS_STREAM: &str = "alerts";

/// What an alert is about: CloudStack keys its "already sent" check on type, zone, pod and
/// cluster; Ledgerstack adds the account for per-account alerts (quota, usage thresholds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertScope {
    /// Zone concerned.
    pub zone_id: Option<Uuid>,
    /// Pod concerned.
    pub pod_id: Option<Uuid>,
    /// Cluster concerned.
    pub cluster_id: Option<Uuid>,
    /// Account concerned.
    pub account_id: Option<Uuid>,
}

impl AlertScope {
    /// The scope of one account's alerts.
    pub fn account(account_id: Uuid) -> Self {
        AlertScope {
            account_id: Some(account_id),
            ..AlertScope::default()
        }
    }

    /// The key of the open-alert index: the type and every part of the scope.
    fn open_key(&self, alert_type: u16) -> String {
        let part = |id: Option<Uuid>| id.map_or_else(|| "-".to_owned(), |id| id.to_string());
        format!(
            "{alert_type}/{}/{}/{}/{}",
            part(self.zone_id),
            part(self.pod_id),
            part(self.cluster_id),
            part(self.account_id)
        )
    }
}

/// One alert as `listAlerts` shows it, with what the log says happened to it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRow {
    /// The alert's id.
    pub id: Uuid,
    /// Type number (`type`).
    pub alert_type: u16,
    /// Type name (`name`).
    pub name: String,
    /// What the operator reads (`description`; CloudStack's subject).
    pub description: String,
    /// When it was raised: the raise's occurred-at (`sent`).
    pub sent: Timestamp,
    /// Zone, pod, cluster and account concerned.
    pub scope: AlertScope,
    /// When its condition cleared; `None` while open.
    pub resolved_at: Option<Timestamp>,
    /// Hidden by `archiveAlerts`.
    pub archived: bool,
    /// Hidden by `deleteAlerts` (the log keeps it).
    pub deleted: bool,
}

impl AlertRow {
    /// Shown by `listAlerts`: neither archived nor deleted.
    pub fn visible(&self) -> bool {
        !self.archived && !self.deleted
    }
}

/// The alerts read model.
#[derive(Debug)]
pub struct AlertsModel {
    /// Every alert ever raised, by id.
    pub alerts: Table<Uuid, AlertRow>,
    /// The open alert of each type and scope ([`AlertScope::open_key`]), so "is it open" is one
    /// lookup for the watchers that ask it every few hundred milliseconds.
    open: Table<String, Uuid>,
}

impl Default for AlertsModel {
    fn default() -> Self {
        AlertsModel {
            alerts: Table::new("alerts"),
            open: Table::new("alerts_open"),
        }
    }
}

/// The alerts model of read models made with [`crate::model::read_models`].
pub fn of(state: &State) -> Option<&AlertsModel> {
    state.downstream::<AlertsModel>()
}

impl AlertsModel {
    /// The alert with this id, hidden or not.
    pub fn get(&self, id: Uuid) -> Option<&AlertRow> {
        self.alerts.get(&id)
    }

    /// The open alert of this type and scope, if any.
    pub fn open_alert(&self, alert_type: u16, scope: &AlertScope) -> Option<&AlertRow> {
        self.open
            .get(&scope.open_key(alert_type))
            .and_then(|id| self.alerts.get(id))
    }

    /// True when an alert of this type and scope is open, so it must not be raised again.
    pub fn is_open(&self, alert_type: u16, scope: &AlertScope) -> bool {
        self.open_alert(alert_type, scope).is_some()
    }

    /// Every open alert of a type, whatever its scope, in id order.
    pub fn open_of_type(&self, alert_type: u16) -> impl Iterator<Item = &AlertRow> {
        self.open
            .values()
            .filter_map(|id| self.alerts.get(id))
            .filter(move |row| row.alert_type == alert_type)
    }

    fn raise(&mut self, raised: &AlertRaised, at: Timestamp) {
        if self.alerts.get(&raised.alert_id).is_some() {
            return;
        }
        let scope = AlertScope {
            zone_id: raised.zone_id,
            pod_id: raised.pod_id,
            cluster_id: raised.cluster_id,
            account_id: raised.account_id,
        };
        let key = scope.open_key(raised.alert_type);
        if self.open.get(&key).is_none() {
            self.open.insert(key, raised.alert_id);
        }
        self.alerts.insert(
            raised.alert_id,
            AlertRow {
                id: raised.alert_id,
                alert_type: raised.alert_type,
                name: raised.name.to_string(),
                description: raised.description.clone(),
                sent: at,
                scope,
                resolved_at: None,
                archived: false,
                deleted: false,
            },
        );
    }

    /// Closes `id` in the open index (it stays in `alerts`).
    fn close(&mut self, id: Uuid) {
        let Some(row) = self.alerts.get(&id) else {
            return;
        };
        let key = row.scope.open_key(row.alert_type);
        if self.open.get(&key) == Some(&id) {
            self.open.remove(&key);
        }
    }

    fn resolve(&mut self, resolved: &AlertResolved, at: Timestamp) {
        self.close(resolved.alert_id);
        if let Some(row) = self.alerts.get_mut(&resolved.alert_id)
            && row.resolved_at.is_none()
        {
            row.resolved_at = Some(at);
        }
    }

    fn hide(&mut self, ids: &[Uuid], delete: bool) {
        for id in ids {
            self.close(*id);
            if let Some(row) = self.alerts.get_mut(id) {
                if delete {
                    row.deleted = true;
                } else {
                    row.archived = true;
                }
            }
        }
    }
}

impl DownstreamModel for AlertsModel {
    fn version(&self) -> &'static str {
        ALERTS_MODEL_VERSION
    }

    fn apply(&mut self, event: &RecordedEvent, _upstream: &State) {
        let at = event.envelope.occurred_at;
        match &*event.body {
            EventBody::Alert(AlertEvent::Raise(raised)) => self.raise(raised, at),
            EventBody::Alert(AlertEvent::Resolve(resolved)) => self.resolve(resolved, at),
            EventBody::Alert(AlertEvent::Archive(hidden)) => self.hide(&hidden.alert_ids, false),
            EventBody::Alert(AlertEvent::Delete(hidden)) => self.hide(&hidden.alert_ids, true),
            _ => {}
        }
    }

    fn tables(&mut self) -> Vec<&mut dyn PersistedTable> {
        vec![&mut self.alerts, &mut self.open]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The id of the alert of kind `kind` caused by event `cause` (the id its raise carries too).
pub fn alert_id(cause: Uuid, kind: &str) -> Uuid {
    derived_event_id(cause, kind)
}

/// The body of the raise of alert `alert_id` of type number `type_id` named `name`.
pub fn raise_body(
    alert_id: Uuid,
    type_id: u16,
    name: &str,
    description: String,
    scope: AlertScope,
) -> EventBody {
    EventBody::Alert(AlertEvent::Raise(AlertRaised {
        alert_id,
        alert_type: type_id,
        name: name.into(),
        description,
        zone_id: scope.zone_id,
        pod_id: scope.pod_id,
        cluster_id: scope.cluster_id,
        account_id: scope.account_id,
    }))
}

/// `ALERT.RAISE` of an alert caused by event `cause`: the event and the alert share the id
/// derived from the cause and `kind`, so appending it again (a restart, a rebuild, a second
/// node) is a no-op. Callers check [`AlertsModel::is_open`] first: a type already open for
/// the scope is not raised again until it is resolved.
pub fn raise_event(
    cause: Uuid,
    kind: &str,
    alert_type: AlertType,
    description: String,
    scope: AlertScope,
) -> NewEvent {
    let id = alert_id(cause, kind);
    NewEvent::derived(
        cause,
        kind,
        raise_body(id, alert_type.id, alert_type.name, description, scope),
    )
    .level(Level::Warn)
}

/// `ALERT.RESOLVE` of alert `alert`: its id derived from the alert's, so it is appended once.
pub fn resolve_event(alert: &AlertRow) -> NewEvent {
    NewEvent::derived(
        alert.id,
        "alert.resolve",
        EventBody::Alert(AlertEvent::Resolve(AlertResolved {
            alert_id: alert.id,
            alert_type: alert.alert_type,
        })),
    )
}

#[cfg(test)]
mod tests;
