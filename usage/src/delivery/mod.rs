//! Alert delivery (issue 7, docs/alert-delivery.md): the admin's sinks and the outbox, as a
//! downstream read model folded from the log, and the [`worker`] that works the outbox off.
//!
//! The outbox lives in the log: every `ALERT.RAISE` / `ALERT.RESOLVE` recorded while a sink is
//! live and matching its type filter is a delivery pending for that sink, until an
//! `ALERT.DELIVERY.DONE` or a final `ALERT.DELIVERY.FAILED` (no `retry_at`) closes it. A crash
//! between raise and delivery therefore loses nothing: the rebuilt model still holds the
//! delivery, and the worker attempts it again.

pub mod email;
pub mod worker;

use compact_str::CompactString;
use engine::event::billing::{
    AlertDelivered, AlertDeliveryFailed, AlertSinkDefined, AlertSinkRemoved,
};
use engine::event::operations::{AlertRaised, AlertResolved};
use engine::event::{AlertDeliveryEvent, AlertEvent, EventBody, RecordedEvent};
use engine::time::Timestamp;
use hmac::{Hmac, Mac};
use projections::State;
use projections::runner::DownstreamModel;
use projections::table::{PersistedTable, Table};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// Bumped whenever a row or the fold changes meaning: the store is then rebuilt from the log.
const DELIVERY_MODEL_VERSION: &str = "delivery-1";

/// Namespace of idempotency keys: `uuid5(namespace, notification id bytes ++ sink id bytes)`.
/// Fixed forever: receivers deduplicate by the key, so it must never change for a delivery.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_bytes([
    0x6c, 0x65, 0x64, 0x67, 0x65, 0x72, 0x61, 0x6c, 0x65, 0x72, 0x74, 0x2d, 0x6b, 0x65, 0x79, 0x31,
]);

/// The stream sink definitions are decided on (`createAlertSink` & co.): their own, so the
/// worker's attempts (on [`worker::ALERT_DELIVERY_STREAM`]) never race an admin's change.
pub const ALERT_SINKS_STREAM: &str = "alert_sinks";

/// The context a webhook sink's secret is sealed with: the sink's id, so a sealed secret copied
/// into another sink's event does not open.
pub fn secret_context(sink_id: Uuid) -> Vec<u8> {
    sink_id.as_bytes().to_vec()
}

/// The context an e-mail sink's SMTP password is sealed with: the sink's id and a label, so it
/// cannot be swapped with a webhook secret either.
pub fn password_context(sink_id: Uuid) -> Vec<u8> {
    let mut context = sink_id.as_bytes().to_vec();
    context.extend_from_slice(b"/smtp-password");
    context
}

/// The key a receiver deduplicates by: the same on every attempt of one notification to one
/// sink, different for every other pair.
pub fn idempotency_key(notification_id: Uuid, sink_id: Uuid) -> Uuid {
    let mut name = [0u8; 32];
    name[..16].copy_from_slice(notification_id.as_bytes());
    name[16..].copy_from_slice(sink_id.as_bytes());
    Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, &name)
}

/// The id of the event recording attempt `attempt` of delivery `key`: derived, so a worker
/// restarted after an attempt (or two nodes) record each attempt once.
pub fn attempt_event_id(key: Uuid, attempt: u32) -> Uuid {
    engine::ids::derived_event_id(key, &format!("alert.delivery:{attempt}"))
}

/// How long to wait after failed attempt `attempt` (1 for the first): `base × 2^(attempt−1)`,
/// never more than `max` (all milliseconds).
pub fn backoff_ms(base_ms: i64, max_ms: i64, attempt: u32) -> i64 {
    let doublings = attempt.saturating_sub(1).min(62);
    base_ms
        .max(1)
        .checked_mul(1i64 << doublings)
        .map_or(max_ms, |wait| wait.min(max_ms))
}

/// The value of the `X-Ledgerstack-Signature` header: `sha256=` and the lowercase hex
/// HMAC-SHA256 of exactly the bytes of the request body, keyed with the sink's secret.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether a notification says an alert was raised or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationKind {
    /// `ALERT.RAISE`.
    Raise,
    /// `ALERT.RESOLVE`.
    Resolve,
}

impl NotificationKind {
    /// `raise` / `resolve`, as in the payload.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Raise => "raise",
            NotificationKind::Resolve => "resolve",
        }
    }
}

/// What a receiver is told about one notification: everything the payload carries, copied out
/// of the alert when the notification was recorded (a resolve repeats its raise's text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The `ALERT.RAISE` / `ALERT.RESOLVE` event's id.
    pub notification_id: Uuid,
    /// Raise or resolve.
    pub kind: NotificationKind,
    /// The alert.
    pub alert_id: Uuid,
    /// Its type number.
    pub alert_type: u16,
    /// Its type name (`ALERT.USAGE`, ...).
    pub name: CompactString,
    /// What the operator reads.
    pub description: String,
    /// When the notification was recorded.
    pub sent: Timestamp,
    /// Account concerned.
    pub account_id: Option<Uuid>,
    /// Zone concerned.
    pub zone_id: Option<Uuid>,
}

impl Notification {
    /// The webhook body for delivery `key`: compact JSON, keys in a fixed order. Signed as is.
    pub fn payload(&self, key: Uuid) -> Vec<u8> {
        let value = serde_json::json!({
            "idempotencykey": key.to_string(),
            "notificationid": self.notification_id.to_string(),
            "kind": self.kind.as_str(),
            "alertid": self.alert_id.to_string(),
            "type": self.alert_type,
            "name": self.name.as_str(),
            "description": self.description,
            "sent": self.sent.to_string(),
            "accountid": self.account_id.map(|a| a.to_string()),
            "zoneid": self.zone_id.map(|z| z.to_string()),
        });
        // A `Value` always serializes.
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// The sink accepted it.
    Delivered,
    /// Given up after the sink's attempts.
    Failed,
}

impl DeliveryState {
    /// `pending` / `delivered` / `failed`, as `listAlertDeliveries` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One notification × one sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The idempotency key (also the row's key).
    pub key: Uuid,
    /// The sink.
    pub sink_id: Uuid,
    /// What is delivered.
    pub notification: Notification,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts recorded so far.
    pub attempts: u32,
    /// The last failure's text.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending only): the notification's time, then the last
    /// failure's `retry_at`.
    pub next_attempt: Option<Timestamp>,
}

/// A known alert, so a resolve can repeat its raise's name and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AlertInfo {
    name: CompactString,
    description: String,
    account_id: Option<Uuid>,
    zone_id: Option<Uuid>,
}

/// The sinks and the outbox.
#[derive(Debug)]
pub struct DeliveryModel {
    /// Live sinks by id, as last defined.
    sinks: Table<Uuid, AlertSinkDefined>,
    /// Every alert raised, by alert id (resolves carry only the id).
    alerts: Table<Uuid, AlertInfo>,
    /// Deliveries by idempotency key; those to a deleted sink are dropped when still pending.
    deliveries: Table<Uuid, Delivery>,
}

impl Default for DeliveryModel {
    fn default() -> Self {
        DeliveryModel {
            sinks: Table::new("delivery.sinks"),
            alerts: Table::new("delivery.alerts"),
            deliveries: Table::new("delivery.deliveries"),
        }
    }
}

/// The delivery model of read models made with [`crate::model::read_models`].
pub fn of(state: &State) -> Option<&DeliveryModel> {
    state.downstream::<DeliveryModel>()
}

impl DeliveryModel {
    /// The live sinks, by id.
    pub fn sinks(&self) -> impl Iterator<Item = &AlertSinkDefined> {
        self.sinks.values()
    }

    /// A live sink.
    pub fn sink(&self, id: Uuid) -> Option<&AlertSinkDefined> {
        self.sinks.get(&id)
    }

    /// A live sink by name.
    pub fn sink_named(&self, name: &str) -> Option<&AlertSinkDefined> {
        self.sinks.values().find(|s| s.name == name)
    }

    /// Every delivery, by idempotency key.
    pub fn deliveries(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries.values()
    }

    /// Pending deliveries due at `now`, at most `limit` of them, earliest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> Vec<&Delivery> {
        let mut due: Vec<&Delivery> = self
            .deliveries
            .values()
            .filter(|d| {
                d.state == DeliveryState::Pending && d.next_attempt.is_some_and(|t| t <= now)
            })
            .collect();
        due.sort_by_key(|d| (d.next_attempt, d.key));
        due.truncate(limit);
        due
    }

    fn notify(&mut self, notification: Notification) {
        let sinks: Vec<Uuid> = self
            .sinks
            .values()
            .filter(|s| {
                s.alert_types.is_empty() || s.alert_types.contains(&notification.alert_type)
            })
            .map(|s| s.sink_id)
            .collect();
        for sink_id in sinks {
            let key = idempotency_key(notification.notification_id, sink_id);
            self.deliveries.insert(
                key,
                Delivery {
                    key,
                    sink_id,
                    notification: notification.clone(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    last_error: None,
                    next_attempt: Some(notification.sent),
                },
            );
        }
    }

    fn raised(&mut self, id: Uuid, at: Timestamp, alert: &AlertRaised) {
        self.alerts.insert(
            alert.alert_id,
            AlertInfo {
                name: alert.name.clone(),
                description: alert.description.clone(),
                account_id: alert.account_id,
                zone_id: alert.zone_id,
            },
        );
        self.notify(Notification {
            notification_id: id,
            kind: NotificationKind::Raise,
            alert_id: alert.alert_id,
            alert_type: alert.alert_type,
            name: alert.name.clone(),
            description: alert.description.clone(),
            sent: at,
            account_id: alert.account_id,
            zone_id: alert.zone_id,
        });
    }

    fn resolved(&mut self, id: Uuid, at: Timestamp, alert: &AlertResolved) {
        let info = self.alerts.get(&alert.alert_id).cloned();
        self.notify(Notification {
            notification_id: id,
            kind: NotificationKind::Resolve,
            alert_id: alert.alert_id,
            alert_type: alert.alert_type,
            name: info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
            description: info
                .as_ref()
                .map(|i| i.description.clone())
                .unwrap_or_default(),
            sent: at,
            account_id: info.as_ref().and_then(|i| i.account_id),
            zone_id: info.as_ref().and_then(|i| i.zone_id),
        });
    }

    fn sink_removed(&mut self, removed: &AlertSinkRemoved) {
        self.sinks.remove(&removed.sink_id);
        let dropped: Vec<Uuid> = self
            .deliveries
            .values()
            .filter(|d| d.sink_id == removed.sink_id && d.state == DeliveryState::Pending)
            .map(|d| d.key)
            .collect();
        for key in dropped {
            self.deliveries.remove(&key);
        }
    }

    fn delivered(&mut self, done: &AlertDelivered) {
        if let Some(row) = self.deliveries.get_mut(&done.idempotency_key)
            && done.attempt > row.attempts
        {
            row.state = DeliveryState::Delivered;
            row.attempts = done.attempt;
            row.next_attempt = None;
        }
    }

    fn failed(&mut self, failed: &AlertDeliveryFailed) {
        if let Some(row) = self.deliveries.get_mut(&failed.idempotency_key)
            && failed.attempt > row.attempts
            && row.state == DeliveryState::Pending
        {
            row.attempts = failed.attempt;
            row.last_error = Some(failed.error.clone());
            row.next_attempt = failed.retry_at;
            if failed.retry_at.is_none() {
                row.state = DeliveryState::Failed;
            }
        }
    }
}

impl DownstreamModel for DeliveryModel {
    fn version(&self) -> &'static str {
        DELIVERY_MODEL_VERSION
    }

    fn apply(&mut self, event: &RecordedEvent, _upstream: &State) {
        let envelope = &event.envelope;
        match &*event.body {
            EventBody::Alert(AlertEvent::Raise(alert)) => {
                self.raised(envelope.id, envelope.recorded_at, alert);
            }
            EventBody::Alert(AlertEvent::Resolve(alert)) => {
                self.resolved(envelope.id, envelope.recorded_at, alert);
            }
            EventBody::AlertDelivery(AlertDeliveryEvent::SinkCreate(sink))
            | EventBody::AlertDelivery(AlertDeliveryEvent::SinkUpdate(sink)) => {
                self.sinks.insert(sink.sink_id, sink.clone());
            }
            EventBody::AlertDelivery(AlertDeliveryEvent::SinkDelete(removed)) => {
                self.sink_removed(removed);
            }
            EventBody::AlertDelivery(AlertDeliveryEvent::Done(done)) => self.delivered(done),
            EventBody::AlertDelivery(AlertDeliveryEvent::Failed(failed)) => self.failed(failed),
            _ => {}
        }
    }

    fn tables(&mut self) -> Vec<&mut dyn PersistedTable> {
        vec![&mut self.sinks, &mut self.alerts, &mut self.deliveries]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
