//! Billing events beyond usage records: quota tariffs and credits (`QUOTA.*`, CloudStack's quota
//! plugin keeps them in tables), alert delivery sinks and the delivery outbox (`ALERT.SINK.*`,
//! `ALERT.DELIVERY.*`) and per-account usage thresholds (`USAGE.THRESHOLD.*`), all Ledgerstack's.
//!
//! Money is `rust_decimal::Decimal` (a string in JSON, so no reader parses it as a float).

use compact_str::CompactString;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::SealedSecret;
use crate::time::Timestamp;

/// QUOTA.TARIFF.CREATE / QUOTA.TARIFF.UPDATE: a tariff's full definition after the change.
/// CloudStack's update ends the old tariff and creates a new row; Ledgerstack keeps one id and
/// the log keeps every version, so the tariff in force at any instant can be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaTariffDefined {
    /// The tariff's id (`uuid`).
    pub tariff_id: Uuid,
    /// `name` (unique among live tariffs).
    pub name: CompactString,
    /// `description`.
    pub description: Option<String>,
    /// The usage type it prices (`usagetype`).
    pub usage_type: u16,
    /// Price per unit of the usage type (`tariffvalue`), in `quota.currency.symbol`.
    pub value: Decimal,
    /// First instant it applies to usage (`effectiveDate`): records that start on or after it.
    pub effective_on: Timestamp,
    /// Last instant it applies (`endDate`), when bounded.
    pub end_date: Option<Timestamp>,
    /// Order among tariffs of the same type (`position`).
    pub position: Option<u32>,
}

/// QUOTA.TARIFF.DELETE: a tariff stops applying (`removed`); charges already made stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaTariffRemoved {
    /// The tariff.
    pub tariff_id: Uuid,
    /// Its name, for readers of the log.
    pub name: CompactString,
}

/// QUOTA.CREDITS: credits added to (or, negative, taken from) an account's quota balance, with
/// the account's quota settings as `quotaCredits` changes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaCreditsAdded {
    /// The credit's id.
    pub credit_id: Uuid,
    /// The account credited.
    pub account_id: Uuid,
    /// Its domain.
    pub domain_id: Uuid,
    /// The amount (`value`), in `quota.currency.symbol`.
    pub amount: Decimal,
    /// `min_balance`: below it QUOTA_LOW is raised. `None` leaves the account's setting as is.
    pub min_balance: Option<Decimal>,
    /// `quota_enforce`: whether the account is locked below zero when enforcement is on.
    /// `None` leaves the account's setting as is.
    pub enforce: Option<bool>,
}

/// What kind of sink an alert sink delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSinkKind {
    /// An HTTP POST of a signed JSON payload.
    Webhook,
    /// An e-mail through an SMTP server.
    Email,
}

/// ALERT.SINK.CREATE / ALERT.SINK.UPDATE: where alerts are delivered, after the change. Secrets
/// (the webhook's signing key, the SMTP password) enter the log sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSinkDefined {
    /// The sink's id.
    pub sink_id: Uuid,
    /// Its name (unique among live sinks).
    pub name: CompactString,
    /// Webhook or e-mail.
    pub kind: AlertSinkKind,
    /// Alert types delivered; empty means every type.
    pub alert_types: Vec<u16>,
    /// Webhook: the URL posted to.
    pub url: Option<String>,
    /// Webhook: the HMAC-SHA256 key signing each payload.
    pub secret: Option<SealedSecret>,
    /// E-mail: SMTP server host.
    pub smtp_host: Option<CompactString>,
    /// E-mail: SMTP server port.
    pub smtp_port: Option<u16>,
    /// E-mail: SMTP user, when the server wants authentication.
    pub smtp_username: Option<CompactString>,
    /// E-mail: SMTP password.
    pub smtp_password: Option<SealedSecret>,
    /// E-mail: the sender address.
    pub email_from: Option<CompactString>,
    /// E-mail: the recipients.
    pub email_to: Vec<CompactString>,
    /// Attempts before a delivery is given up (the last failure says so).
    pub max_attempts: u32,
}

/// ALERT.SINK.DELETE: a sink stops receiving alerts; deliveries still pending to it are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSinkRemoved {
    /// The sink.
    pub sink_id: Uuid,
    /// Its name, for readers of the log.
    pub name: CompactString,
}

/// ALERT.DELIVERY.DONE: a notification reached a sink. With ALERT.DELIVERY.FAILED this is the
/// outbox: a notification (the id of an ALERT.RAISE or ALERT.RESOLVE event) is pending for a
/// sink until one of these says otherwise, so a restart resumes every pending delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDelivered {
    /// The ALERT.RAISE / ALERT.RESOLVE event delivered.
    pub notification_id: Uuid,
    /// The sink.
    pub sink_id: Uuid,
    /// The idempotency key the receiver saw (derived from notification and sink).
    pub idempotency_key: Uuid,
    /// Which attempt succeeded (1 for the first).
    pub attempt: u32,
}

/// ALERT.DELIVERY.FAILED: an attempt failed; `retry_at` says when the next is due, or `None`
/// when the sink's attempts are used up and the delivery is given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDeliveryFailed {
    /// The ALERT.RAISE / ALERT.RESOLVE event being delivered.
    pub notification_id: Uuid,
    /// The sink.
    pub sink_id: Uuid,
    /// The idempotency key the receiver saw.
    pub idempotency_key: Uuid,
    /// Which attempt failed (1 for the first).
    pub attempt: u32,
    /// What went wrong.
    pub error: String,
    /// When to try again (exponential backoff), or `None`: given up.
    pub retry_at: Option<Timestamp>,
}

/// What a usage threshold watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdMetric {
    /// The quantity of one usage type (hours for time-based types, bytes or operations for
    /// counters), summed over the account's records of the period.
    Usage,
    /// The quota charged to the account in the period.
    Quota,
}

/// USAGE.THRESHOLD.CREATE / USAGE.THRESHOLD.UPDATE: a per-account threshold, after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageThresholdDefined {
    /// The threshold's id.
    pub threshold_id: Uuid,
    /// The account watched.
    pub account_id: Uuid,
    /// Its domain.
    pub domain_id: Uuid,
    /// A name for people.
    pub name: CompactString,
    /// Usage quantity or quota spend.
    pub metric: ThresholdMetric,
    /// For `Usage`: the usage type watched.
    pub usage_type: Option<u16>,
    /// The limit: an absolute quantity, or with `budget` a percentage of it.
    pub limit: Decimal,
    /// When set, `limit` is a percentage of this budget.
    pub budget: Option<Decimal>,
    /// Also notify when the condition clears (the next period starts below the limit).
    pub notify_resolve: bool,
}

/// USAGE.THRESHOLD.DELETE: a threshold is removed; alerts it raised stay in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageThresholdRemoved {
    /// The threshold.
    pub threshold_id: Uuid,
    /// The account it watched.
    pub account_id: Uuid,
}
