//! The engine's own operational events: async jobs (`ASYNCJOB.*`), alerts (`ALERT.*`), hidden
//! events (`EVENT.*`) and the manual clock (`CLOCK.ADVANCE`).
//! CloudStack keeps these in tables; Ledgerstack keeps them in the log like everything else.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::JsonDocument;
use crate::time::Timestamp;

/// ASYNCJOB.SUBMIT: an asynchronous command was accepted (`jobstatus` 0 from here on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncJobSubmitted {
    /// The job's id (`jobid`).
    pub job_id: Uuid,
    /// The API command, such as `deployVirtualMachine`.
    pub command: CompactString,
    /// Caller's account.
    pub account_id: Uuid,
    /// Caller.
    pub user_id: Uuid,
    /// Caller's domain.
    pub domain_id: Uuid,
    /// `jobinstancetype`, such as `VirtualMachine`.
    pub instance_type: Option<CompactString>,
    /// `jobinstanceid`: the resource the job works on.
    pub instance_id: Option<Uuid>,
    /// The CloudStack event type of the action the job performs (`ACCOUNT.DELETE`), which
    /// `listEvents` shows as Scheduled, Started and Completed.
    pub event_type: Option<CompactString>,
    /// What the action does, as `listEvents` describes it ("deleting account acme").
    pub description: String,
}

/// ASYNCJOB.START: a job began running (`listEvents` state Started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncJobStarted {
    /// The job.
    pub job_id: Uuid,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// `jobstatus` 1.
    Succeeded,
    /// `jobstatus` 2.
    Failed,
}

/// ASYNCJOB.COMPLETE: the job ended; `queryAsyncJobResult` answers from this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncJobCompleted {
    /// The job.
    pub job_id: Uuid,
    /// Succeeded or failed.
    pub outcome: JobOutcome,
    /// `jobresultcode`: 0, or the CloudStack error code.
    pub result_code: u32,
    /// `jobresult`: the response object (success) or `{errorcode, errortext}` (failure).
    pub result: JsonDocument,
}

/// ALERT.RAISE: an alert was raised (`listAlerts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRaised {
    /// The alert's id.
    pub alert_id: Uuid,
    /// CloudStack alert type number (13 ALERT.USAGE, 0 memory capacity, ...).
    pub alert_type: u16,
    /// Alert type name, such as `ALERT.USAGE`.
    pub name: CompactString,
    /// What the operator reads.
    pub description: String,
    /// Zone concerned.
    pub zone_id: Option<Uuid>,
    /// Pod concerned.
    pub pod_id: Option<Uuid>,
    /// Cluster concerned.
    pub cluster_id: Option<Uuid>,
    /// Account concerned (usage thresholds, quota).
    pub account_id: Option<Uuid>,
}

/// ALERT.RESOLVE: the condition behind an alert cleared, so its type may be raised again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertResolved {
    /// The alert.
    pub alert_id: Uuid,
    /// Its type number.
    pub alert_type: u16,
}

/// ALERT.ARCHIVE / ALERT.DELETE: alerts hidden from `listAlerts` (never erased from the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsHidden {
    /// The alerts.
    pub alert_ids: Vec<Uuid>,
}

/// EVENT.ARCHIVE / EVENT.DELETE: events hidden from `listEvents`. Nothing is ever removed from
/// the log; these only change what the event-history view shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsHidden {
    /// The events (ids of log records).
    pub event_ids: Vec<Uuid>,
}

/// CLOCK.ADVANCE: a root admin moved the manual clock forward (`serve --clock manual`), so the
/// log shows why recorded-at jumped and a restart resumes from the same instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockAdvanced {
    /// The manual clock's reading before.
    pub from: Timestamp,
    /// Its reading after.
    pub to: Timestamp,
}

/// DRIVER.FAILED (Ledgerstack): a hypervisor command failed. The command is the one caused by
/// the event `command_id` (a `Scheduled` event such as VM.START); success comes back as that
/// event's type in state `Completed`, failure as this, so every scheduled command has exactly
/// one result in the log and the orchestrator knows what to re-issue after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverFailed {
    /// The id of the event that caused the command.
    pub command_id: Uuid,
    /// The agent command, such as `StartCommand`.
    pub command: CompactString,
    /// CloudStack resource type acted on, such as `VirtualMachine`.
    pub resource_type: CompactString,
    /// The resource acted on.
    pub resource_id: Uuid,
    /// Its account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// The driver's error text (the failed job's `errortext`).
    pub error: String,
}

/// DRIVER.APPLIED (Ledgerstack): a driver command that carries out a fact already recorded
/// (a NIC created, a rule deleted while its VM was expunged: events in state `Completed` that
/// change a virtual router's configuration without being a request) succeeded. Requests
/// (events in state `Started`) are answered by their own type in state `Completed` instead;
/// either way every command has exactly one result in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverApplied {
    /// The id of the event that caused the command.
    pub command_id: Uuid,
    /// The agent command, such as `DhcpEntryCommand`.
    pub command: CompactString,
    /// CloudStack resource type acted on, such as `DomainRouter`.
    pub resource_type: CompactString,
    /// The resource acted on.
    pub resource_id: Uuid,
    /// Its account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
}

/// USAGE.CLOSE (Ledgerstack): the usage periods that ended at or before `until` are closed and
/// their records published. The scheduler appends it at `usage.stats.job.exec.time` (with an id
/// derived from `until`, so a second node or a restart appends nothing new); so does
/// `generateUsageRecords`. Projections never read the wall clock: this is how time reaches usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePeriodsClosed {
    /// Every period ending at or before this instant is closed.
    pub until: Timestamp,
    /// `generateUsageRecords startdate=...`: periods already closed from here on are computed
    /// again and compared with what was published (a correction gets a new revision; equal
    /// records stay as they are, so re-generating never duplicates).
    pub recompute_from: Option<Timestamp>,
}

/// USAGE.PRUNE (Ledgerstack): `removeRawUsageRecords` dropped the published records of periods
/// that ended before `before` from the records store. They can be regenerated from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecordsPruned {
    /// Records of periods ending at or before this instant are removed.
    pub before: Timestamp,
    /// The `interval` (days) that was asked for.
    pub interval_days: u32,
}
