//! The event-history view behind `listEvents`: one row per CloudStack-visible event, with the
//! Scheduled / Started / Completed states of async work linked by `parentid`.
//!
//! `archiveEvents` and `deleteEvents` only set flags here; the log keeps every event.

use std::collections::BTreeMap;

use compact_str::CompactString;
use engine::event::{
    AsyncJobEvent, DriverEvent, EventBody, EventHistoryEvent, EventState, Level, RecordedEvent,
    UsageEvent,
};
use engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::identity::Identity;
use crate::table::{PersistedTable, Table};

/// One row of `listEvents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// The log record's id (`id`).
    pub id: Uuid,
    /// CloudStack event type (`type`).
    pub event_type: CompactString,
    /// INFO, WARN or ERROR.
    pub level: Level,
    /// Created, Scheduled, Started or Completed.
    pub state: EventState,
    /// Who caused it.
    pub user_id: Option<Uuid>,
    /// Their account (or, for system events, the account the resource belongs to).
    pub account_id: Option<Uuid>,
    /// That account's domain when the event happened.
    pub domain_id: Option<Uuid>,
    /// The resource it concerns.
    pub resource_id: Option<Uuid>,
    /// CloudStack resource type, such as `Account`.
    pub resource_type: Option<CompactString>,
    /// The resource's name when the event happened.
    pub resource_name: Option<CompactString>,
    /// What happened, in words.
    pub description: String,
    /// When it happened.
    pub created: Timestamp,
    /// The Scheduled event of the async job this belongs to (`parentid`).
    pub parent_id: Option<Uuid>,
    /// Archived by `archiveEvents` (still listed when asked for archived events).
    pub archived: bool,
    /// Deleted by `deleteEvents`: no longer listed; the log still has it.
    pub deleted: bool,
}

/// The event-history read model.
#[derive(Debug)]
pub struct EventHistory {
    /// Rows by log position, so listing newest first is a reverse walk.
    pub rows: Table<u64, EventRow>,
    /// Row key by event id, for `archiveEvents`/`deleteEvents` and `startid`.
    #[doc(hidden)]
    pub by_id: Table<Uuid, u64>,
    /// Per async job: its Scheduled row id and the action's event type, so the Started and
    /// Completed rows can link to it and carry the same type.
    jobs: Table<Uuid, (Uuid, CompactString)>,
}

impl Default for EventHistory {
    fn default() -> Self {
        EventHistory {
            rows: Table::new("events.rows"),
            by_id: Table::new("events.by_id"),
            jobs: Table::new("events.jobs"),
        }
    }
}

impl EventHistory {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 3] {
        [&mut self.rows, &mut self.by_id, &mut self.jobs]
    }

    pub(crate) fn apply(&mut self, event: &RecordedEvent, identity: &Identity) {
        let envelope = &event.envelope;
        let domain_of = |account: Option<Uuid>| {
            account.and_then(|a| identity.accounts.get(&a).map(|row| row.facts.domain_id))
        };
        let row = match &*event.body {
            EventBody::EventHistory(EventHistoryEvent::Archive(e)) => {
                return self.flag(&e.event_ids, |row| row.archived = true);
            }
            EventBody::EventHistory(EventHistoryEvent::Delete(e)) => {
                return self.flag(&e.event_ids, |row| row.deleted = true);
            }
            EventBody::AsyncJob(AsyncJobEvent::Submit(e)) => {
                let Some(event_type) = e.event_type.clone() else {
                    return;
                };
                self.jobs
                    .insert(e.job_id, (envelope.id, event_type.clone()));
                EventRow {
                    event_type,
                    state: EventState::Scheduled,
                    user_id: Some(e.user_id),
                    account_id: Some(e.account_id),
                    domain_id: Some(e.domain_id),
                    resource_id: e.instance_id,
                    resource_type: e.instance_type.clone(),
                    description: e.description.clone(),
                    ..self.base_row(event)
                }
            }
            EventBody::AsyncJob(AsyncJobEvent::Start(e)) => {
                let Some((scheduled, event_type)) = self.jobs.get(&e.job_id).cloned() else {
                    return;
                };
                let Some(parent) = self.by_id.get(&scheduled).and_then(|p| self.rows.get(p)) else {
                    return;
                };
                EventRow {
                    event_type,
                    state: EventState::Started,
                    parent_id: Some(scheduled),
                    description: format!("Starting job for {}", parent.description),
                    ..parent.clone()
                }
                .with_identity_of(event)
            }
            EventBody::AsyncJob(_) | EventBody::Alert(_) => return,
            // Counter readings are measurements, not actions: usage reads them, `listEvents`
            // would drown in them.
            body if body.event_type().name().ends_with(".STATS") => return,
            // A fact's driver confirmation (a NIC's DHCP entry programmed) is bookkeeping of
            // the orchestrator, not an action anyone took.
            EventBody::Driver(DriverEvent::Applied(_)) => return,
            // The usage scheduler's runs are the clock reaching usage, not actions.
            EventBody::Usage(UsageEvent::Close(_)) if envelope.actor.account_id.is_none() => return,
            // A driver command's request (state Started) is the job's own Started row already.
            _ if envelope.state == EventState::Started => return,
            body => {
                let payload = body.data_json().unwrap_or(Value::Null);
                let (resource_type, resource_id, resource_name) =
                    describe_resource(body.event_type().name(), &payload);
                let parent = envelope
                    .correlation_id
                    .and_then(|job| self.jobs.get(&job))
                    .map(|(scheduled, _)| *scheduled);
                let account_id = envelope.actor.account_id.or_else(|| {
                    find_field(&payload, "account_id").and_then(|v| v.as_str()?.parse().ok())
                });
                let name = body.event_type().name();
                let verb = match envelope.state {
                    EventState::Created => "created",
                    EventState::Scheduled => "scheduled",
                    EventState::Started => "started",
                    EventState::Completed => "completed",
                };
                let mut description = match (&resource_type, &resource_name, resource_id) {
                    (Some(kind), Some(n), _) => format!("{name} {verb} for {kind} {n}"),
                    (Some(kind), None, Some(id)) => format!("{name} {verb} for {kind} {id}"),
                    _ => format!("{name} {verb}"),
                };
                if let Some(error) = find_field(&payload, "error").and_then(Value::as_str) {
                    description = format!("{description}: {error}");
                }
                EventRow {
                    resource_type,
                    resource_id,
                    resource_name,
                    account_id,
                    domain_id: domain_of(account_id),
                    parent_id: parent,
                    description,
                    ..self.base_row(event)
                }
            }
        };
        let position = envelope.position.0;
        self.by_id.insert(row.id, position);
        self.rows.insert(position, row);
    }

    fn base_row(&self, event: &RecordedEvent) -> EventRow {
        let envelope = &event.envelope;
        EventRow {
            id: envelope.id,
            event_type: event.body.event_type().name().into(),
            level: envelope.level,
            state: envelope.state,
            user_id: envelope.actor.user_id,
            account_id: envelope.actor.account_id,
            domain_id: None,
            resource_id: None,
            resource_type: None,
            resource_name: None,
            description: String::new(),
            created: envelope.occurred_at,
            parent_id: None,
            archived: false,
            deleted: false,
        }
    }

    fn flag(&mut self, ids: &[Uuid], set: impl Fn(&mut EventRow)) {
        for id in ids {
            if let Some(position) = self.by_id.get(id).copied()
                && let Some(row) = self.rows.get_mut(&position)
            {
                set(row);
            }
        }
    }

    /// The row with this event id.
    pub fn by_event_id(&self, id: &Uuid) -> Option<&EventRow> {
        self.by_id.get(id).and_then(|p| self.rows.get(p))
    }
}

impl EventRow {
    fn with_identity_of(mut self, event: &RecordedEvent) -> EventRow {
        self.id = event.envelope.id;
        self.created = event.envelope.occurred_at;
        self.level = event.envelope.level;
        self.archived = false;
        self.deleted = false;
        self
    }
}

/// Resource type, id and name an event concerns, by its family: the field that names the
/// family's resource in its payload.
fn describe_resource(
    event_type: &str,
    payload: &Value,
) -> (Option<CompactString>, Option<Uuid>, Option<CompactString>) {
    let family = event_type.split('.').next().unwrap_or_default();
    let (kind, id_field) = match (family, event_type) {
        (_, "REGISTER.USER.KEY") => ("User", "user_id"),
        (_, "REGISTER.SSH.KEYPAIR") => ("SSHKeyPair", "keypair_id"),
        (_, "CONFIGURATION.VALUE.EDIT") => ("Configuration", ""),
        (_, t) if t.starts_with("SERVICE.OFFERING") => ("ServiceOffering", "service_offering_id"),
        (_, t) if t.starts_with("DISK.OFFERING") => ("DiskOffering", "disk_offering_id"),
        (_, t) if t.starts_with("NETWORK.OFFERING") => ("NetworkOffering", "network_offering_id"),
        (_, t) if t.starts_with("VPC.OFFERING") => ("VpcOffering", "vpc_offering_id"),
        (_, "DRIVER.FAILED") => {
            let kind = find_field(payload, "resource_type").and_then(Value::as_str);
            let id = find_field(payload, "resource_id").and_then(|v| v.as_str()?.parse().ok());
            return (kind.map(CompactString::from), id, None);
        }
        (_, t) if t.starts_with("SSH.KEYPAIR") => ("SSHKeyPair", "keypair_id"),
        (_, t) if t.starts_with("RESOURCE.LIMIT") => ("ResourceLimit", ""),
        (_, "CLUSTER.ADD") => ("Cluster", "cluster_id"),
        (_, t) if t.starts_with("NET.RULE") => ("FirewallRule", "rule_id"),
        (_, t) if t.starts_with("VPN.USER") => ("VpnUser", "vpn_user_id"),
        (_, t) if t.starts_with("VPN.REMOTE") => ("RemoteAccessVpn", "vpn_id"),
        (_, t) if t.starts_with("VLAN.IP.RANGE") => ("Vlan", "vlan_range_id"),
        ("FIREWALL", _) => ("FirewallRule", "rule_id"),
        ("LB", _) => ("LoadBalancerRule", "rule_id"),
        ("STATICNAT", _) => ("IpAddress", "ip_address_id"),
        ("NIC", _) => ("Nic", "nic_id"),
        ("HOST" | "MAINT", _) => ("Host", "host_id"),
        ("DOMAIN", _) => ("Domain", "domain_id"),
        ("ACCOUNT", _) => ("Account", "account_id"),
        ("USER", _) => ("User", "user_id"),
        ("ZONE", _) => ("Zone", "zone_id"),
        ("POD", _) => ("Pod", "pod_id"),
        ("VM", _) => ("VirtualMachine", "vm_id"),
        ("ROUTER", _) => ("DomainRouter", "router_id"),
        ("NETWORK", _) => ("Network", "network_id"),
        ("NET", _) => ("IpAddress", "ip_id"),
        ("VOLUME", _) => ("Volume", "volume_id"),
        ("SNAPSHOT", _) => ("Snapshot", "snapshot_id"),
        ("VMSNAPSHOT", _) => ("VMSnapshot", "vm_snapshot_id"),
        ("TEMPLATE", _) => ("Template", "template_id"),
        ("ISO", _) => ("Iso", "iso_id"),
        ("VPC", _) => ("Vpc", "vpc_id"),
        ("SG", _) => ("SecurityGroup", "group_id"),
        _ => return (None, None, None),
    };
    if id_field.is_empty() {
        let name = find_field(payload, "name").and_then(|v| v.as_str().map(CompactString::from));
        return (Some(kind.into()), None, name);
    }
    let id = find_field(payload, id_field).and_then(|v| v.as_str()?.parse().ok());
    let name = find_object_with(payload, id_field)
        .and_then(|object| object.get("name").or_else(|| object.get("username")))
        .and_then(|v| v.as_str().map(CompactString::from));
    (Some(kind.into()), id, name)
}

/// The first value of `field` in a depth-first walk of the payload (objects in key order, so
/// the answer is the same on every run).
fn find_field<'a>(value: &'a Value, field: &str) -> Option<&'a Value> {
    find_object_with(value, field).and_then(|object| object.get(field))
}

fn find_object_with<'a>(
    value: &'a Value,
    field: &str,
) -> Option<&'a serde_json::Map<String, Value>> {
    match value {
        Value::Object(map) => {
            if map.contains_key(field) {
                return Some(map);
            }
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            sorted.values().find_map(|v| find_object_with(v, field))
        }
        Value::Array(items) => items.iter().find_map(|v| find_object_with(v, field)),
        _ => None,
    }
}
