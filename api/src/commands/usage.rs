//! Usage (spec/usage.md): `listUsageRecords` and `listUsageTypes` read the usage read model;
//! `generateUsageRecords` and `removeRawUsageRecords` append `USAGE.CLOSE` and `USAGE.PRUNE`
//! to the `usage` stream (the same stream the scheduler appends its runs to) and answer once
//! the usage model applied them; `listUsageServerMetrics` reports where the usage server is.
//!
//! Dates without an offset are read in the global aggregation zone
//! (`usage.aggregation.timezone`), so `startdate=enddate=D` selects day D's daily records.

use chrono::{Duration as ChronoDuration, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use engine::event::operations::{UsagePeriodsClosed, UsageRecordsPruned};
use engine::event::{EventBody, UsageEvent};
use engine::time::Timestamp;
use projections::State;
use serde_json::{Value, json};
use usage::scheduler::USAGE_STREAM;
use usage::usage_type::UsageType;
use usage::view::{DomainFilter, RecordQuery, RecordView};
use uuid::Uuid;

use crate::call::{Call, Paging};
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::protocol::dates::parse_filter_date;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Role, Roles, field, param, required,
};
use crate::response::Reply;

const DAY_MS: i64 = 86_400_000;

/// The last second of a day given as a date only: the end of the `enddate` range.
const LAST_SECOND_MS: i64 = 1_000;

const RECORD_FIELDS: &[ResponseField] = &[
    field("account", "string", "the user account name"),
    field("accountid", "string", "the user account Id"),
    field("domainid", "string", "the domain ID"),
    field(
        "domain",
        "string",
        "the domain the resource is associated with",
    ),
    field(
        "domainpath",
        "string",
        "path of the domain to which the usage record belongs",
    ),
    field("zoneid", "string", "the zone ID"),
    field("description", "string", "description of the usage record"),
    field("usage", "string", "usage in hours"),
    field("usagetype", "integer", "usage type ID"),
    field(
        "rawusage",
        "string",
        "raw usage in hours (rounded half-even to 6 decimals), or the counter for byte and I/O types",
    ),
    field("virtualmachineid", "string", "virtual machine ID"),
    field("name", "string", "resource or virtual machine name"),
    field("offeringid", "string", "offering ID"),
    field("templateid", "string", "template ID"),
    field("usageid", "string", "id of the resource"),
    field("type", "string", "resource type"),
    field("size", "long", "resource size"),
    field("virtualsize", "long", "virtual size of resource"),
    field("cpunumber", "long", "number of cpu of resource"),
    field("cpuspeed", "long", "speed of each cpu of resource"),
    field("memory", "long", "memory allocated for the resource"),
    field(
        "startdate",
        "string",
        "start date of the usage record, with the offset of its aggregation zone",
    ),
    field(
        "enddate",
        "string",
        "end date of the usage record (its period's last second), with the offset of its aggregation zone",
    ),
    field(
        "issourcenat",
        "boolean",
        "True if the IPAddress is source NAT",
    ),
    field(
        "issystem",
        "boolean",
        "True if the IPAddress is system IP - allocated during vm deploy or lb rule create",
    ),
    field("networkid", "string", "id of the network"),
    field("isdefault", "boolean", "True if the resource is default"),
    field("vpcid", "string", "id of the vpc"),
    field("tags", "set", "the list of resource tags associated"),
    field(
        "revision",
        "integer",
        "the record's revision: 1 when first published, one more per correction (Ledgerstack)",
    ),
    field(
        "publishedat",
        "date",
        "when this revision was published (Ledgerstack)",
    ),
    field(
        "superseded",
        "boolean",
        "true for a revision a later correction replaced; only listed with showsuperseded=true (Ledgerstack)",
    ),
];

const METRICS_FIELDS: &[ResponseField] = &[
    field(
        "collectiontime",
        "date",
        "the time these statistics were collected",
    ),
    field("hostname", "string", "the name of the active usage server"),
    field("state", "state", "the state of the usage server"),
    field(
        "lastheartbeat",
        "date",
        "the last time this Usage Server checked for jobs",
    ),
    field(
        "lastsuccessfuljob",
        "date",
        "the last time a usage job successfully completed",
    ),
    field(
        "lastclosedperiodend",
        "date",
        "every usage period ending at or before this is closed and published (Ledgerstack)",
    ),
    field(
        "lagseconds",
        "long",
        "how far the closed periods trail the latest event in the log, in seconds (Ledgerstack)",
    ),
    field(
        "recordswritten",
        "long",
        "records and corrected revisions published since the log began (Ledgerstack)",
    ),
    field(
        "records",
        "long",
        "records currently in the records store (Ledgerstack)",
    ),
];

/// The usage commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listUsageRecords",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Lists usage records for accounts",
        params: &[
            param(
                "account",
                T::String,
                "List usage records for the specified user.",
            ),
            param(
                "domainid",
                T::Uuid,
                "List usage records for the specified domain.",
            ),
            required(
                "enddate",
                T::Date,
                "End date range for usage record query (yyyy-MM-dd, yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ssZ; without an offset, in the usage aggregation time zone). A date alone means its last second.",
            ),
            required(
                "startdate",
                T::Date,
                "Start date range for usage record query (yyyy-MM-dd, yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ssZ; without an offset, in the usage aggregation time zone).",
            ),
            param(
                "accountid",
                T::Uuid,
                "List usage records for the specified account",
            ),
            param(
                "projectid",
                T::Uuid,
                "List usage records for specified project (projects are not supported)",
            ),
            param(
                "type",
                T::Long,
                "List usage records for the specified usage type",
            ),
            param(
                "usageid",
                T::String,
                "List usage records for the specified usage UUID. Can be used only together with TYPE parameter.",
            ),
            param(
                "includetags",
                T::Boolean,
                "Flag to enable display of Tags for a resource",
            ),
            param(
                "oldformat",
                T::Boolean,
                "Flag to enable description rendered in old format which uses internal database IDs instead of UUIDs. False by default.",
            ),
            param(
                "isrecursive",
                T::Boolean,
                "Specify if usage records should be fetched recursively per domain. If an account id is passed, records will be limited to that account.",
            ),
            param(
                "changedsince",
                T::Date,
                "Only records first published or corrected at or after this time, for incremental pulls (Ledgerstack)",
            ),
            param(
                "showsuperseded",
                T::Boolean,
                "Also list the revisions corrections replaced, each with its revision number (Ledgerstack)",
            ),
            param(
                "includesuperseded",
                T::Boolean,
                "Same as showsuperseded (Ledgerstack)",
            ),
        ],
        inherits: Inherits::Paging,
        response: RECORD_FIELDS,
        related: "listUsageTypes,generateUsageRecords",
        manual_clock_only: false,
        handler: handler!(list_usage_records),
    },
    CommandSpec {
        name: "listUsageTypes",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "List Usage Types",
        params: &[],
        inherits: Inherits::Nothing,
        response: &[
            field("id", "integer", "Usage type ID"),
            field("name", "string", "Usage type name"),
            field("description", "string", "Usage type description"),
        ],
        related: "listUsageRecords",
        manual_clock_only: false,
        handler: handler!(list_usage_types),
    },
    CommandSpec {
        name: "generateUsageRecords",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Generates usage records: closes and publishes every usage period that has ended (up to enddate when given), and with startdate computes the periods already published from there again, publishing a new revision only where something changed. Answers once the records are published.",
        params: &[
            param(
                "domainid",
                T::Uuid,
                "List events for the specified domain (accepted; periods close for every account).",
            ),
            param(
                "enddate",
                T::Date,
                "End date range for usage record query. Use yyyy-MM-dd as the date format, e.g. startDate=2009-06-03.",
            ),
            param(
                "startdate",
                T::Date,
                "Start date range for usage record query. Use yyyy-MM-dd as the date format, e.g. startDate=2009-06-01.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "listUsageRecords",
        manual_clock_only: false,
        handler: handler!(generate_usage_records),
    },
    CommandSpec {
        name: "removeRawUsageRecords",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Safely removes raw records from cloud_usage table: published usage records of periods that ended more than interval days ago leave the records store (they can be regenerated from the event log).",
        params: &[required(
            "interval",
            T::Integer,
            "Specify the number of days (greater than zero) to remove records that are older than those number of days from today. For example, specifying 10 would result in removing all the records created before 10 days from today",
        )],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "listUsageRecords",
        manual_clock_only: false,
        handler: handler!(remove_raw_usage_records),
    },
    CommandSpec {
        name: "listUsageServerMetrics",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists Usage Server metrics",
        params: &[],
        inherits: Inherits::Nothing,
        response: METRICS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_usage_server_metrics),
    },
];

/// The usage read model, which every server runs.
fn model(state: &State) -> Result<&usage::model::UsageModel, ApiError> {
    usage::model::of(state).ok_or_else(|| ApiError::internal("the usage read model is not loaded"))
}

/// The global aggregation zone (`usage.aggregation.timezone`, GMT by default): dates without an
/// offset are read in it.
pub fn aggregation_zone(state: &State) -> Tz {
    state
        .configuration
        .global("usage.aggregation.timezone")
        .and_then(|v| usage::period::parse_zone(&v).ok())
        .unwrap_or(chrono_tz::GMT)
}

/// Which end of a range a date bounds: a date alone means its first instant as a start and
/// its last second as an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    /// The first instant of a date given alone.
    Start,
    /// The last second of a date given alone.
    End,
}

/// A date parameter of the usage commands: with an offset it is an instant; without one it is
/// local time in `zone`.
pub(crate) fn usage_date(
    call: &Call,
    name: &str,
    zone: Tz,
    edge: Edge,
) -> Result<Option<Timestamp>, ApiError> {
    let Some(value) = call.str(name) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::invalid_param(format!(
            "Unable to parse date {value:?} for parameter {name}: use yyyy-MM-dd, yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ssZ"
        ))
    };
    let parsed = parse_filter_date(value, false).ok_or_else(invalid)?;
    let value = value.trim();
    if value.contains('T') {
        return Ok(Some(Timestamp::from(parsed)));
    }
    let local = parsed.naive_utc();
    if value.contains(' ') || edge == Edge::Start {
        return Ok(Some(local_instant(local, zone)));
    }
    // A date alone as an end: the last second before the next local day begins.
    let next_day = local
        .checked_add_signed(ChronoDuration::days(1))
        .ok_or_else(invalid)?;
    Ok(Some(
        local_instant(next_day, zone).add_millis(-LAST_SECOND_MS),
    ))
}

/// The instant of local time `local` in `zone`: the earlier of two when it occurs twice; in a
/// gap, read with the offset in force before it (02:30 in a 02:00→03:00 gap is 03:30, and a
/// midnight that does not exist is the first instant of the day).
fn local_instant(local: NaiveDateTime, zone: Tz) -> Timestamp {
    if let Some(at) = zone.from_local_datetime(&local).earliest() {
        return Timestamp::from_millis(at.timestamp_millis());
    }
    let before = local - ChronoDuration::days(1);
    let offset = zone.offset_from_utc_datetime(&before).fix();
    let utc = local - ChronoDuration::seconds(i64::from(offset.local_minus_utc()));
    Timestamp::from_millis(utc.and_utc().timestamp_millis())
}

/// Whose records the caller may list and asked for: an account, a domain (or subtree), both
/// or neither (spec/usage.md: root admin all, domain admin their domain, subtree with
/// `isrecursive`, user only their account; CloudStack's `UsageServiceImpl` messages).
fn scope(call: &Call, state: &State) -> Result<(Option<Uuid>, Option<DomainFilter>), ApiError> {
    let caller = &call.caller;
    let account_id = call.uuid("accountid")?;
    if let Some(project) = call.str("projectid") {
        return Err(ApiError::invalid_param(if account_id.is_some() {
            "Projectid and accountId can't be specified together".to_owned()
        } else {
            format!("Unable to find project by id {project}")
        }));
    }
    let recursive = call.flag("isrecursive");
    let domain_id = call.uuid("domainid")?;
    if let Some(domain) = domain_id {
        if state.identity.domains.get(&domain).is_none() {
            return Err(ApiError::invalid_param(format!(
                "Unable to find domain by id {domain}"
            )));
        }
        if caller.role == Role::User {
            return Err(ApiError::permission_denied(
                "Users are not allowed to list usage records for a domain",
            ));
        }
        if !caller.may_access_domain(state, domain) {
            return Err(ApiError::permission_denied("Invalid Domain Id or Account"));
        }
    }
    if caller.role == Role::User && recursive {
        return Err(ApiError::permission_denied(
            "Users are not allowed to list usage records recursively.",
        ));
    }
    let asked_domain = domain_id.map(|domain_id| DomainFilter {
        domain_id,
        recursive,
    });
    let account = match (account_id, call.str("account")) {
        (Some(id), _) => Some(id),
        (None, Some(name)) => {
            let domain = domain_id.unwrap_or(caller.domain_id);
            let row = state
                .identity
                .account_by_name(domain, name)
                .ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Unable to find account {name} in domain {domain}"
                    ))
                })?;
            Some(row.facts.account_id)
        }
        (None, None) => None,
    };
    let Some(account) = account else {
        return Ok(match caller.role {
            Role::RootAdmin => (None, asked_domain),
            Role::DomainAdmin => (
                None,
                Some(asked_domain.unwrap_or(DomainFilter {
                    domain_id: caller.domain_id,
                    recursive,
                })),
            ),
            Role::User => (Some(caller.account_id), None),
        });
    };
    let denied = || match caller.role {
        Role::User => "Users are only allowed to list usage records for their own account.",
        _ => {
            "Domain admins may only retrieve usage records for accounts in their own domain and child domains."
        }
    };
    match state.identity.accounts.get(&account) {
        Some(row) if !caller.may_access(state, account, row.facts.domain_id) => {
            Err(ApiError::permission_denied(denied()))
        }
        Some(_) => Ok((Some(account), asked_domain)),
        // A deleted account's records stay; outside root, they are limited to what the
        // caller's own scope holds.
        None => match caller.role {
            Role::RootAdmin => Ok((Some(account), asked_domain)),
            Role::DomainAdmin => Ok((
                Some(account),
                Some(asked_domain.unwrap_or(DomainFilter {
                    domain_id: caller.domain_id,
                    recursive: true,
                })),
            )),
            Role::User if account == caller.account_id => Ok((Some(account), None)),
            Role::User => Err(ApiError::permission_denied(denied())),
        },
    }
}

async fn list_usage_records(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let usage = model(&state)?;
    let paging = Paging::for_call(call, &state)?;
    let (account_id, domain) = scope(call, &state)?;
    let zone = aggregation_zone(&state);
    let start = usage_date(call, "startdate", zone, Edge::Start)?
        .ok_or_else(|| ApiError::missing_param(call.command.name, "startdate"))?;
    let end = usage_date(call, "enddate", zone, Edge::End)?
        .ok_or_else(|| ApiError::missing_param(call.command.name, "enddate"))?;
    if start > end {
        return Err(ApiError::invalid_param(format!(
            "Incorrect Date Range. Start date: {} is after end date:{}",
            date(start),
            date(end)
        )));
    }
    let type_id = call.int("type")?;
    let usage_id = call.str("usageid");
    if usage_id.is_some() && type_id.is_none() {
        return Err(ApiError::invalid_param(
            "Usageid must be specified together with usageType",
        ));
    }
    let empty = Reply::List {
        key: "usagerecord",
        count: 0,
        items: Vec::new(),
    };
    // As in CloudStack, an unknown type or usage id finds nothing rather than failing.
    let usage_type = match type_id {
        None => None,
        Some(id) => match u8::try_from(id).ok().and_then(UsageType::from_id) {
            Some(t) => Some(t),
            None => return Ok(empty),
        },
    };
    let usage_id = match usage_id {
        None => None,
        Some(text) => match Uuid::parse_str(text.trim()) {
            Ok(id) => Some(id),
            Err(_) => return Ok(empty),
        },
    };
    let query = RecordQuery {
        account_id,
        domain,
        usage_type,
        usage_id,
        changed_since: usage_date(call, "changedsince", zone, Edge::Start)?,
        include_superseded: call.flag("showsuperseded") || call.flag("includesuperseded"),
        old_format: call.flag("oldformat"),
        offset: paging.offset,
        limit: paging.limit,
        ..RecordQuery::between(start, end)
    };
    let include_tags = call.flag("includetags");
    let (count, views) = usage::view::query(&state, usage, &query);
    Ok(Reply::List {
        key: "usagerecord",
        count,
        items: views
            .iter()
            .map(|view| record_json(&state, view, include_tags))
            .collect(),
    })
}

/// A usage record as `listUsageRecords` shows it, in CloudStack's field order
/// (`UsageRecordResponse`), then Ledgerstack's `revision`, `publishedat` and `superseded`.
pub fn record_json(state: &State, view: &RecordView, include_tags: bool) -> Value {
    let tags = if include_tags {
        super::tags::tags_json(state, view.usage_id)
    } else {
        Value::Array(Vec::new())
    };
    // The exports' object (one list of fields for both), with `tags` where CloudStack has it.
    let mut object = serde_json::Map::new();
    for (name, value) in usage::export::record_object(view) {
        if name == "revision" {
            object.insert("tags".to_owned(), tags.clone());
        }
        object.insert(name, value);
    }
    Value::Object(object)
}

async fn list_usage_types(_ctx: &Ctx, _call: &Call) -> Result<Reply, ApiError> {
    let items: Vec<Value> = UsageType::ALL
        .iter()
        .map(|t| {
            json!({
                "id": t.id(),
                "name": t.name(),
                "description": t.description(),
            })
        })
        .collect();
    Ok(Reply::List {
        key: "usagetype",
        count: items.len(),
        items,
    })
}

async fn generate_usage_records(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    if let Some(domain) = call.uuid("domainid")?
        && ctx.models.read().identity.domains.get(&domain).is_none()
    {
        return Err(ApiError::invalid_param(format!(
            "Unable to find domain by id {domain}"
        )));
    }
    let now = ctx.clock.now();
    let (from, until) = {
        let state = ctx.models.read();
        let zone = aggregation_zone(&state);
        let from = usage_date(call, "startdate", zone, Edge::Start)?;
        // The inclusive end's next instant: periods ending there are closed too.
        let until = usage_date(call, "enddate", zone, Edge::End)?
            .map_or(now, |end| end.add_millis(LAST_SECOND_MS).min(now));
        (from, until)
    };
    if let Some(from) = from
        && from > until
    {
        return Err(ApiError::invalid_param(format!(
            "Incorrect Date Range. Start date: {} is after end date:{}",
            date(from),
            date(until)
        )));
    }
    ctx.decide(USAGE_STREAM, |_| {
        Ok(vec![call.event(EventBody::Usage(UsageEvent::Close(
            UsagePeriodsClosed {
                until,
                recompute_from: from,
            },
        )))])
    })
    .await?;
    Ok(Reply::success())
}

async fn remove_raw_usage_records(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let days = call
        .int("interval")?
        .filter(|days| *days > 0)
        .and_then(|days| u32::try_from(days).ok())
        .ok_or_else(|| {
            ApiError::invalid_param(
                "Invalid interval value. Interval to remove cloud_usage records should be greater than 0",
            )
        })?;
    let before = ctx.clock.now().add_millis(-(i64::from(days) * DAY_MS));
    ctx.decide(USAGE_STREAM, |_| {
        Ok(vec![call.event(EventBody::Usage(UsageEvent::Prune(
            UsageRecordsPruned {
                before,
                interval_days: days,
            },
        )))])
    })
    .await?;
    Ok(Reply::success())
}

/// The name of the machine the usage server (this process) runs on.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn list_usage_server_metrics(ctx: &Ctx, _call: &Call) -> Result<Reply, ApiError> {
    let now = ctx.clock.now();
    let state = ctx.models.read();
    let usage = model(&state)?;
    let status = usage.ledger.status();
    // How far the closed periods trail the log (none before the first close).
    let lag_seconds = status
        .latest_recorded_at
        .zip(status.closed_until)
        .map(|(latest, closed)| (latest.millis() - closed.millis()).max(0) / 1000);
    Ok(Reply::Object {
        key: "usageMetrics",
        value: json!({
            "collectiontime": date(now),
            // The usage server runs inside this process: its host is this one, and it is up
            // whenever this answers.
            "hostname": host_name(),
            "state": "Up",
            "lastheartbeat": date(now),
            "lastsuccessfuljob": status.last_run_at.map(date),
            "lastclosedperiodend": status.closed_until.map(date),
            "lagseconds": lag_seconds,
            "recordswritten": status.records_published,
            "records": usage.ledger.records.len(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn local_times_resolve_in_the_zone() {
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            local_instant(local("2026-03-08 00:00:00"), ny),
            at("2026-03-08T05:00:00Z")
        );
        // In the spring gap: read with the offset before it.
        assert_eq!(
            local_instant(local("2026-03-08 02:30:00"), ny),
            at("2026-03-08T07:30:00Z")
        );
        // Twice in the fall: the first.
        assert_eq!(
            local_instant(local("2026-11-01 01:30:00"), ny),
            at("2026-11-01T05:30:00Z")
        );
        // Santiago's midnight does not exist on 2026-09-06: the day starts at 01:00 (-03).
        let santiago = chrono_tz::America::Santiago;
        assert_eq!(
            local_instant(local("2026-09-06 00:00:00"), santiago),
            at("2026-09-06T04:00:00Z")
        );
    }
}
