//! Events: CloudStack's view of the log (`listEvents`, `listEventTypes`) and hiding events
//! from that view (`archiveEvents`, `deleteEvents`).
//!
//! Hiding appends EVENT.ARCHIVE or EVENT.DELETE to the `eventhistory` stream; the read model
//! then flags the rows. Nothing is ever removed from the log itself: that is what keeps it an
//! audit trail, and why `ledgerstack export` still shows hidden events.

use std::collections::HashSet;

use engine::event::operations::EventsHidden;
use engine::event::{EventBody, EventHistoryEvent, EventType, Level};
use engine::time::Timestamp;
use projections::State;
use projections::event_history::EventRow;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, Caller, ListScope, Paging, keyword_matches};
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamSpec, ParamType as T, ResponseField, Role, Roles, field,
    param,
};
use crate::response::Reply;

/// The stream that orders archive and delete decisions, so two of them never race on the same
/// rows.
pub const EVENT_HISTORY: &str = "eventhistory";

const EVENT_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the event"),
    field(
        "username",
        "string",
        "the name of the user who performed the action (can be different from the account if an admin is performing an action for a user, e.g. starting/stopping a user's virtual machine)",
    ),
    field("type", "string", "the type of the event (see event types)"),
    field("level", "string", "the event level (INFO, WARN, ERROR)"),
    field("description", "string", "a brief description of the event"),
    field(
        "account",
        "string",
        "the account name for the account that owns the object being acted on in the event (e.g. the owner of the virtual machine, ip address, or security group)",
    ),
    field("domainid", "string", "the id of the account's domain"),
    field("domain", "string", "the name of the account's domain"),
    field("resourceid", "string", "the id of the resource"),
    field("resourcetype", "string", "the type of the resource"),
    field("resourcename", "string", "the name of the resource"),
    field("created", "date", "the date the event was created"),
    field("state", "string", "the state of the event"),
    field("parentid", "string", "whether the event is parented"),
    field(
        "archived",
        "boolean",
        "whether the event has been archived or not",
    ),
];

/// `ids` holds a list of UUIDs: at 37 characters each, the default limit of 255 would refuse
/// more than six of them.
const IDS_LENGTH: u32 = 65_535;

const ARCHIVE_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        length: IDS_LENGTH,
        ..param("ids", T::List, "the IDs of the events")
    },
    param(
        "enddate",
        T::Date,
        "end date range to archive events (including) this date (use format \"yyyy-MM-dd\" or the new format \"yyyy-MM-ddThh:mm:ss\")",
    ),
    param(
        "startdate",
        T::Date,
        "start date range to archive events (including) this date (use format \"yyyy-MM-dd\" or the new format \"yyyy-MM-ddThh:mm:ss\")",
    ),
    param("type", T::String, "archive by event type"),
];

const DELETE_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        length: IDS_LENGTH,
        ..param("ids", T::List, "the IDs of the events")
    },
    param(
        "enddate",
        T::Date,
        "end date range to delete events (including) this date (use format \"yyyy-MM-dd\" or the new format \"yyyy-MM-ddThh:mm:ss\")",
    ),
    param(
        "startdate",
        T::Date,
        "start date range to delete events (including) this date (use format \"yyyy-MM-dd\" or the new format \"yyyy-MM-ddThh:mm:ss\")",
    ),
    param("type", T::String, "delete by event type"),
];

/// The event commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listEvents",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "A command to list events.",
        params: &[
            param("id", T::Uuid, "the ID of the event"),
            param(
                "duration",
                T::Integer,
                "the duration of the event (accepted, not used as a filter)",
            ),
            param(
                "enddate",
                T::Date,
                "the end date range of the list you want to retrieve (use format \"yyyy-MM-dd\" or the new format \"yyyy-MM-dd HH:mm:ss\")",
            ),
            param(
                "entrytime",
                T::Integer,
                "the time the event was entered (accepted, not used as a filter)",
            ),
            param("level", T::String, "the event level (INFO, WARN, ERROR)"),
            param(
                "startdate",
                T::Date,
                "the start date range of the list you want to retrieve (use format \"yyyy-MM-dd\" or the new format \"yyyy-MM-dd HH:mm:ss\")",
            ),
            param("type", T::String, "the event type (see event types)"),
            param(
                "startid",
                T::Uuid,
                "the parent/start ID of the event, when provided this will list all the events with the start/parent ID including the parent event",
            ),
            param(
                "resourceid",
                T::String,
                "the ID of the resource associated with the event",
            ),
            param(
                "resourcetype",
                T::String,
                "the type of the resource associated with the event",
            ),
            param(
                "archived",
                T::Boolean,
                "true to list archived events otherwise false",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: EVENT_FIELDS,
        related: "listEventTypes",
        manual_clock_only: false,
        handler: handler!(list_events),
    },
    CommandSpec {
        name: "listEventTypes",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List Event Types",
        params: &[],
        inherits: Inherits::Nothing,
        response: &[field("name", "string", "Event Type")],
        related: "listEvents",
        manual_clock_only: false,
        handler: handler!(list_event_types),
    },
    CommandSpec {
        name: "archiveEvents",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Archive one or more events. Archived events are only hidden from listEvents (list them with archived=true); they stay in the event log forever, which keeps the log auditable.",
        params: ARCHIVE_PARAMS,
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "listEvents",
        manual_clock_only: false,
        handler: handler!(archive_events),
    },
    CommandSpec {
        name: "deleteEvents",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Delete one or more events. Deleted events are only hidden from listEvents; they are never removed from the event log, which keeps the log auditable (ledgerstack export still shows them).",
        params: DELETE_PARAMS,
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "listEvents",
        manual_clock_only: false,
        handler: handler!(delete_events),
    },
];

/// The name CloudStack gives a level (`INFO`, `WARN`, `ERROR`).
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    }
}

/// CloudStack compares levels in SQL under a case-insensitive collation, so `info` works too.
fn parse_level(value: &str) -> Result<Level, ApiError> {
    [Level::Info, Level::Warn, Level::Error]
        .into_iter()
        .find(|l| level_name(*l).eq_ignore_ascii_case(value.trim()))
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Invalid level {value}: the event level is one of INFO, WARN, ERROR"
            ))
        })
}

/// An event as `listEvents` shows it.
pub fn event_json(state: &State, row: &EventRow) -> Value {
    let domain = row.domain_id.and_then(|d| state.identity.domains.get(&d));
    json!({
        "id": row.id,
        "username": row
            .user_id
            .and_then(|u| state.identity.users.get(&u))
            .map(|u| u.facts.username.clone()),
        "type": row.event_type,
        "level": level_name(row.level),
        "description": row.description,
        "account": row.account_id.and_then(|a| state.identity.account_name(a)),
        "domainid": row.domain_id,
        "domain": domain.map(|d| d.facts.name.clone()),
        "resourceid": row.resource_id,
        "resourcetype": row.resource_type,
        "resourcename": row.resource_name,
        "created": date(row.created),
        "state": format!("{:?}", row.state),
        "parentid": row.parent_id,
        "archived": row.archived,
    })
}

/// The `listEvents` filters other than scope and paging.
#[derive(Debug, Default)]
struct ListFilter {
    id: Option<Uuid>,
    event_type: Option<String>,
    level: Option<Level>,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    start_id: Option<Uuid>,
    resource_type: Option<String>,
    resource_id: Option<Uuid>,
    archived: bool,
    keyword: Option<String>,
}

impl ListFilter {
    fn from_call(call: &Call) -> Result<ListFilter, ApiError> {
        let resource_type = call.str("resourcetype").map(|t| t.trim().to_owned());
        let resource_id = match call.str("resourceid") {
            None => None,
            Some(_) if resource_type.is_none() => {
                return Err(ApiError::invalid_param(
                    "resourceid parameter must be used with resourcetype parameter",
                ));
            }
            Some(v) => Some(
                Uuid::parse_str(v.trim())
                    .map_err(|_| ApiError::invalid_param("Invalid resourceid"))?,
            ),
        };
        Ok(ListFilter {
            id: call.uuid("id")?,
            event_type: call.str("type").map(|t| t.trim().to_owned()),
            level: call.str("level").map(parse_level).transpose()?,
            start: call.date("startdate", false)?,
            end: call.date("enddate", true)?,
            start_id: call.uuid("startid")?,
            resource_type,
            resource_id,
            archived: call.flag("archived"),
            keyword: call.str("keyword").map(str::to_owned),
        })
    }

    fn admits(&self, row: &EventRow) -> bool {
        // Like CloudStack, asking for one id finds it whether archived or not.
        let archived_ok = self.id.is_some() || row.archived == self.archived;
        archived_ok
            && self.id.is_none_or(|id| row.id == id)
            && self
                .start_id
                .is_none_or(|s| row.id == s || row.parent_id == Some(s))
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| row.event_type.eq_ignore_ascii_case(t))
            && self.level.is_none_or(|l| row.level == l)
            && self.start.is_none_or(|s| row.created >= s)
            && self.end.is_none_or(|e| row.created <= e)
            && self.resource_type.as_deref().is_none_or(|t| {
                row.resource_type
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(t))
            })
            && self
                .resource_id
                .is_none_or(|id| row.resource_id == Some(id))
            && keyword_matches(
                self.keyword.as_deref(),
                &[
                    row.event_type.as_str(),
                    &row.description,
                    level_name(row.level),
                ],
            )
    }
}

async fn list_events(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let filter = ListFilter::from_call(call)?;
    // Walking positions newest first makes the stable sort below break ties on `created` by
    // position descending, as CloudStack breaks them by id descending.
    let mut rows: Vec<&EventRow> = state
        .events
        .rows
        .values()
        .rev()
        .filter(|r| {
            !r.deleted && filter.admits(r) && scope.admits(&state, r.account_id, r.domain_id)
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.created));
    let (count, page) = paging.apply(rows);
    Ok(Reply::List {
        key: "event",
        count,
        items: page.into_iter().map(|r| event_json(&state, r)).collect(),
    })
}

async fn list_event_types(_ctx: &Ctx, _call: &Call) -> Result<Reply, ApiError> {
    let items: Vec<Value> = EventType::all()
        .map(|t| json!({ "name": t.name() }))
        .collect();
    Ok(Reply::List {
        key: "eventtype",
        count: items.len(),
        items,
    })
}

/// Which of the two hiding commands runs (of events here, of alerts in `alerts.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hide {
    /// `archive…`: hidden from lists unless asked for.
    Archive,
    /// `delete…`: hidden for good (still in the log).
    Delete,
}

impl Hide {
    /// `archive` / `delete`, for messages.
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Hide::Archive => "archive",
            Hide::Delete => "delete",
        }
    }

    fn body(self, event_ids: Vec<Uuid>) -> EventBody {
        let hidden = EventsHidden { event_ids };
        EventBody::EventHistory(match self {
            Hide::Archive => EventHistoryEvent::Archive(hidden),
            Hide::Delete => EventHistoryEvent::Delete(hidden),
        })
    }

    /// Rows this command may still act on: deleted rows are gone from the view; archiving an
    /// archived row would change nothing, but deleting one still hides it from `archived=true`.
    fn applies_to(self, row: &EventRow) -> bool {
        !row.deleted && (self == Hide::Delete || !row.archived)
    }
}

/// The selection of `archiveEvents` / `deleteEvents`.
#[derive(Debug, Default)]
struct HideFilter {
    ids: Option<Vec<Uuid>>,
    event_type: Option<String>,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
}

impl HideFilter {
    fn from_call(call: &Call) -> Result<HideFilter, ApiError> {
        let ids = call.uuid_list("ids")?;
        let filter = HideFilter {
            ids,
            event_type: call.str("type").map(|t| t.trim().to_owned()),
            start: call.date("startdate", false)?,
            end: call.date("enddate", true)?,
        };
        filter.check()?;
        Ok(filter)
    }

    /// CloudStack's rules, in its order: something must narrow the selection, and a start date
    /// needs an end date.
    fn check(&self) -> Result<(), ApiError> {
        if self.ids.is_none() && self.event_type.is_none() && self.end.is_none() {
            return Err(ApiError::invalid_param(
                "either ids, type or enddate must be specified",
            ));
        }
        if self.start.is_some() && self.end.is_none() {
            return Err(ApiError::invalid_param(
                "enddate must be specified with startdate parameter",
            ));
        }
        Ok(())
    }

    fn admits(&self, row: &EventRow) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&row.id))
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| row.event_type.eq_ignore_ascii_case(t))
            && self.start.is_none_or(|s| row.created >= s)
            && self.end.is_none_or(|e| row.created <= e)
    }

    /// The ids to hide, in log order. Naming an id that is not there to hide (unknown, not the
    /// caller's, already hidden) fails the whole call, as CloudStack's does.
    fn select(&self, state: &State, caller: &Caller, how: Hide) -> Result<Vec<Uuid>, ApiError> {
        let matched: Vec<Uuid> = state
            .events
            .rows
            .values()
            .filter(|r| how.applies_to(r) && may_hide(state, caller, r) && self.admits(r))
            .map(|r| r.id)
            .collect();
        if let Some(ids) = &self.ids {
            let found: HashSet<Uuid> = matched.iter().copied().collect();
            if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
                let verb = how.verb();
                return Err(ApiError::invalid_param(format!(
                    "Unable to {verb} Events, one or more parameters has invalid values: event {missing} does not exist, is not yours to {verb}, does not match the other filters, or is already {verb}d"
                )));
            }
        }
        Ok(matched)
    }
}

/// CloudStack's rule for hiding: a user their own account's events, a domain admin those of
/// accounts in their subtree, a root admin any (system events included).
fn may_hide(state: &State, caller: &Caller, row: &EventRow) -> bool {
    match caller.role {
        Role::RootAdmin => true,
        Role::DomainAdmin => row
            .domain_id
            .is_some_and(|d| state.identity.is_in_subtree(d, caller.domain_id)),
        Role::User => row.account_id == Some(caller.account_id),
    }
}

async fn hide(ctx: &Ctx, call: &Call, how: Hide) -> Result<Reply, ApiError> {
    let filter = HideFilter::from_call(call)?;
    ctx.decide(EVENT_HISTORY, |state| {
        let ids = filter.select(state, &call.caller, how)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![call.event(how.body(ids))])
    })
    .await?;
    Ok(Reply::success())
}

async fn archive_events(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    hide(ctx, call, Hide::Archive).await
}

async fn delete_events(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    hide(ctx, call, Hide::Delete).await
}

#[cfg(test)]
mod tests {
    use engine::event::EventState;

    use super::*;

    fn row(id: u128, created: i64) -> EventRow {
        EventRow {
            id: Uuid::from_u128(id),
            event_type: "VM.CREATE".into(),
            level: Level::Info,
            state: EventState::Completed,
            user_id: None,
            account_id: Some(Uuid::from_u128(100)),
            domain_id: Some(Uuid::from_u128(200)),
            resource_id: Some(Uuid::from_u128(300)),
            resource_type: Some("VirtualMachine".into()),
            resource_name: Some("web-1".into()),
            description: "VM.CREATE completed for VirtualMachine web-1".into(),
            created: Timestamp::from_millis(created),
            parent_id: None,
            archived: false,
            deleted: false,
        }
    }

    fn caller(role: Role) -> Caller {
        Caller {
            user_id: Uuid::from_u128(1),
            account_id: Uuid::from_u128(100),
            domain_id: Uuid::from_u128(200),
            role,
        }
    }

    #[test]
    fn levels_parse_case_insensitively_and_nothing_else() {
        assert_eq!(parse_level("info").unwrap(), Level::Info);
        assert_eq!(parse_level("Warn").unwrap(), Level::Warn);
        assert_eq!(parse_level("ERROR").unwrap(), Level::Error);
        assert_eq!(parse_level("DEBUG").unwrap_err().code, 431);
    }

    #[test]
    fn archived_rows_show_only_when_asked_or_by_id() {
        let mut archived = row(1, 0);
        archived.archived = true;
        assert!(!ListFilter::default().admits(&archived));
        let asked = ListFilter {
            archived: true,
            ..ListFilter::default()
        };
        assert!(asked.admits(&archived));
        assert!(!asked.admits(&row(2, 0)));
        let by_id = ListFilter {
            id: Some(Uuid::from_u128(1)),
            ..ListFilter::default()
        };
        assert!(by_id.admits(&archived));
    }

    #[test]
    fn start_id_finds_the_scheduled_event_and_its_children() {
        let scheduled = row(1, 0);
        let mut child = row(2, 1);
        child.parent_id = Some(Uuid::from_u128(1));
        let other = row(3, 2);
        let filter = ListFilter {
            start_id: Some(Uuid::from_u128(1)),
            ..ListFilter::default()
        };
        assert!(filter.admits(&scheduled));
        assert!(filter.admits(&child));
        assert!(!filter.admits(&other));
    }

    #[test]
    fn keyword_searches_type_description_and_level() {
        let r = row(1, 0);
        for keyword in ["vm.cre", "web-1", "inf"] {
            let filter = ListFilter {
                keyword: Some(keyword.into()),
                ..ListFilter::default()
            };
            assert!(filter.admits(&r), "{keyword}");
        }
        let miss = ListFilter {
            keyword: Some("volume".into()),
            ..ListFilter::default()
        };
        assert!(!miss.admits(&r));
    }

    #[test]
    fn dates_bound_inclusively() {
        let filter = ListFilter {
            start: Some(Timestamp::from_millis(10)),
            end: Some(Timestamp::from_millis(20)),
            ..ListFilter::default()
        };
        assert!(!filter.admits(&row(1, 9)));
        assert!(filter.admits(&row(1, 10)));
        assert!(filter.admits(&row(1, 20)));
        assert!(!filter.admits(&row(1, 21)));
    }

    #[test]
    fn resource_type_compares_case_insensitively() {
        let filter = ListFilter {
            resource_type: Some("virtualmachine".into()),
            resource_id: Some(Uuid::from_u128(300)),
            ..ListFilter::default()
        };
        assert!(filter.admits(&row(1, 0)));
        let other = ListFilter {
            resource_type: Some("Volume".into()),
            ..ListFilter::default()
        };
        assert!(!other.admits(&row(1, 0)));
    }

    #[test]
    fn hiding_needs_ids_type_or_enddate() {
        assert_eq!(
            HideFilter::default().check().unwrap_err().text,
            "either ids, type or enddate must be specified"
        );
        let start_only = HideFilter {
            start: Some(Timestamp::EPOCH),
            ..HideFilter::default()
        };
        assert_eq!(
            start_only.check().unwrap_err().text,
            "either ids, type or enddate must be specified"
        );
        let typed_with_start = HideFilter {
            event_type: Some("VM.CREATE".into()),
            start: Some(Timestamp::EPOCH),
            ..HideFilter::default()
        };
        assert_eq!(
            typed_with_start.check().unwrap_err().text,
            "enddate must be specified with startdate parameter"
        );
        let end_only = HideFilter {
            end: Some(Timestamp::EPOCH),
            ..HideFilter::default()
        };
        assert!(end_only.check().is_ok());
    }

    #[test]
    fn archive_skips_archived_rows_but_delete_takes_them() {
        let mut archived = row(1, 0);
        archived.archived = true;
        assert!(!Hide::Archive.applies_to(&archived));
        assert!(Hide::Delete.applies_to(&archived));
        let mut deleted = row(2, 0);
        deleted.deleted = true;
        assert!(!Hide::Archive.applies_to(&deleted));
        assert!(!Hide::Delete.applies_to(&deleted));
    }

    #[test]
    fn users_hide_only_their_own_account_events() {
        let state = State::default();
        let mine = row(1, 0);
        let mut theirs = row(2, 0);
        theirs.account_id = Some(Uuid::from_u128(101));
        let mut system = row(3, 0);
        system.account_id = None;
        system.domain_id = None;
        let user = caller(Role::User);
        assert!(may_hide(&state, &user, &mine));
        assert!(!may_hide(&state, &user, &theirs));
        assert!(!may_hide(&state, &user, &system));
        let root = caller(Role::RootAdmin);
        assert!(may_hide(&state, &root, &system));
        let domain_admin = caller(Role::DomainAdmin);
        assert!(!may_hide(&state, &domain_admin, &system));
    }

    #[test]
    fn every_catalogue_type_is_listed_once() {
        let names: Vec<&str> = EventType::all().map(|t| t.name()).collect();
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), unique.len());
        assert!(unique.contains("VM.CREATE"));
        assert!(unique.contains("EVENT.ARCHIVE"));
    }
}
