//! Alerts (spec/usage.md "Alerts"): `listAlerts`, `archiveAlerts`, `deleteAlerts`,
//! `listAlertTypes`, `generateAlert`. Alerts are events on the `alerts` stream, folded by
//! `usage::alerts::AlertsModel`; archiving and deleting only hide them (the log keeps every
//! alert forever).

use std::collections::HashSet;

use engine::event::operations::AlertsHidden;
use engine::event::{AlertEvent, EventBody, Level};
use engine::time::Timestamp;
use futures::FutureExt;
use projections::State;
use serde_json::{Value, json};
use usage::alerts::{ALERTS_STREAM, AlertRow, AlertScope, AlertType, AlertsModel};
use uuid::Uuid;

use super::events::Hide;
use crate::call::{Call, Paging, keyword_matches};
use crate::commands::{SUCCESS_FIELDS, date};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::AsyncWork;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamSpec, ParamType as T, Roles, field, param, required,
};
use crate::response::Reply;

/// `archiveAlerts` and `deleteAlerts` take the same selection.
const HIDE_PARAMS: &[ParamSpec] = &[
    param("ids", T::List, "the IDs of the alerts"),
    param(
        "enddate",
        T::Date,
        "end date range (including) this date (use format \"yyyy-MM-dd\" or the new format \"yyyy-MM-ddThh:mm:ss\")",
    ),
    param(
        "startdate",
        T::Date,
        "start date range (including) this date (use format \"yyyy-MM-dd\" or the new format \"yyyy-MM-ddThh:mm:ss\")",
    ),
    param("type", T::String, "by alert type"),
];

/// The alert commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listAlerts",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists all alerts (neither archived nor deleted), most recently sent first.",
        params: &[
            param("id", T::Uuid, "the ID of the alert"),
            param("type", T::String, "list by alert type"),
            param("name", T::String, "list by alert name"),
        ],
        inherits: Inherits::Paging,
        response: &[
            field("id", "string", "the id of the alert"),
            field(
                "type",
                "short",
                "the alert type number (listAlertTypes lists them: MEMORY = 0, CPU = 1, STORAGE = 2, PUBLIC_IP = 4, USAGE_SERVER = 13, USAGE_SERVER_RESULT = 20, USAGE_SANITY_RESULT = 23, Ledgerstack's QUOTA_LOW = 1001, QUOTA_EMPTY = 1002, USAGE_THRESHOLD = 1003, ...)",
            ),
            field("name", "string", "the name of the alert"),
            field("description", "string", "description of the alert"),
            field("sent", "date", "the date and time the alert was sent"),
        ],
        related: "listAlertTypes,archiveAlerts,deleteAlerts",
        manual_clock_only: false,
        handler: handler!(list_alerts),
    },
    CommandSpec {
        name: "archiveAlerts",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Archive one or more alerts. Archived alerts are only hidden from listAlerts; the event log keeps them.",
        params: HIDE_PARAMS,
        inherits: Inherits::Nothing,
        response: SUCCESS_FIELDS,
        related: "listAlerts",
        manual_clock_only: false,
        handler: handler!(archive_alerts),
    },
    CommandSpec {
        name: "deleteAlerts",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Delete one or more alerts. Deleted alerts are only hidden from listAlerts; they are never removed from the event log.",
        params: HIDE_PARAMS,
        inherits: Inherits::Nothing,
        response: SUCCESS_FIELDS,
        related: "listAlerts",
        manual_clock_only: false,
        handler: handler!(delete_alerts),
    },
    CommandSpec {
        name: "listAlertTypes",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists all alerts types",
        params: &[],
        inherits: Inherits::Nothing,
        response: &[
            field("alerttypeid", "short", "alert type"),
            field("name", "string", "description of alert type"),
        ],
        related: "listAlerts",
        manual_clock_only: false,
        handler: handler!(list_alert_types),
    },
    CommandSpec {
        name: "generateAlert",
        kind: Kind::Async,
        roles: Roles::ADMIN,
        description: "Generates an alert. Nothing new is raised while an alert of the same type, zone and pod is open (neither resolved, archived nor deleted), as in CloudStack.",
        params: &[
            required("type", T::Short, "Type of the alert"),
            required("name", T::String, "Name of the alert"),
            ParamSpec {
                length: 999,
                ..required("description", T::String, "Alert description")
            },
            param("zoneid", T::Uuid, "Zone id for which alert is generated"),
            param("podid", T::Uuid, "Pod id for which alert is generated"),
        ],
        inherits: Inherits::Nothing,
        response: SUCCESS_FIELDS,
        related: "listAlerts",
        manual_clock_only: false,
        handler: handler!(generate_alert),
    },
];

/// The alerts read model, which every server runs.
fn model(state: &State) -> Result<&AlertsModel, ApiError> {
    usage::alerts::of(state)
        .ok_or_else(|| ApiError::internal("the alerts read model is not loaded"))
}

/// An alert as `listAlerts` shows it (CloudStack's `AlertResponse`).
pub fn alert_json(row: &AlertRow) -> Value {
    json!({
        "id": row.id,
        "type": row.alert_type,
        "name": row.name,
        "description": row.description,
        "sent": date(row.sent),
    })
}

/// The `type` filter: CloudStack compares it with the type number in SQL.
fn type_filter(call: &Call) -> Result<Option<u16>, ApiError> {
    call.str("type")
        .map(|v| {
            v.trim().parse::<u16>().map_err(|_| {
                ApiError::invalid_param(format!(
                    "Invalid alert type {v:?}: use a type number from listAlertTypes"
                ))
            })
        })
        .transpose()
}

async fn list_alerts(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let alerts = model(&state)?;
    let paging = Paging::for_call(call, &state)?;
    let id = call.uuid("id")?;
    if let Some(id) = id
        && alerts.get(id).is_none()
    {
        return Err(ApiError::invalid_param(format!(
            "Invalid parameter id value={id} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class."
        )));
    }
    let alert_type = type_filter(call)?;
    let name = call.str("name").map(str::trim);
    let keyword = call.str("keyword");
    let mut rows: Vec<&AlertRow> = alerts
        .alerts
        .values()
        .filter(|r| r.visible())
        .filter(|r| id.is_none_or(|id| r.id == id))
        .filter(|r| alert_type.is_none_or(|t| r.alert_type == t))
        .filter(|r| name.is_none_or(|n| r.name.eq_ignore_ascii_case(n)))
        .filter(|r| keyword_matches(keyword, &[&r.description]))
        .collect();
    // Most recently sent first (CloudStack orders by lastSent descending); ties by id.
    rows.sort_by(|a, b| b.sent.cmp(&a.sent).then(a.id.cmp(&b.id)));
    let count = rows.len();
    let items = rows
        .into_iter()
        .skip(paging.offset)
        .take(paging.limit.unwrap_or(usize::MAX))
        .map(alert_json)
        .collect();
    Ok(Reply::List {
        key: "alert",
        count,
        items,
    })
}

/// The selection of `archiveAlerts` / `deleteAlerts`.
#[derive(Debug)]
struct HideFilter {
    ids: Option<Vec<Uuid>>,
    alert_type: Option<u16>,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
}

impl HideFilter {
    /// Reads and checks the selection with CloudStack's rules, in its order.
    fn from_call(call: &Call, how: Hide) -> Result<HideFilter, ApiError> {
        let ids = call.uuid_list("ids")?;
        let filter = HideFilter {
            ids,
            alert_type: type_filter(call)?,
            start: call.date("startdate", false)?,
            end: call.date("enddate", true)?,
        };
        if filter.ids.is_none() && filter.alert_type.is_none() && filter.end.is_none() {
            return Err(ApiError::invalid_param(match how {
                Hide::Archive => "either ids, type, startdate or enddate must be specified",
                Hide::Delete => "either ids, type or enddate must be specified",
            }));
        }
        if filter.start.is_some() && filter.end.is_none() {
            return Err(ApiError::invalid_param(
                "enddate must be specified with startdate parameter",
            ));
        }
        Ok(filter)
    }

    fn admits(&self, row: &AlertRow) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&row.id))
            && self.alert_type.is_none_or(|t| row.alert_type == t)
            && self.start.is_none_or(|s| row.sent >= s)
            && self.end.is_none_or(|e| row.sent <= e)
    }

    /// The ids to hide, in id order. An id the log never raised fails with 431 (CloudStack
    /// cannot translate it); one that is already hidden or outside the other filters fails the
    /// whole call as CloudStack's does (530, nothing hidden).
    fn select(&self, alerts: &AlertsModel, how: Hide) -> Result<Vec<Uuid>, ApiError> {
        if let Some(ids) = &self.ids
            && let Some(unknown) = ids.iter().find(|id| alerts.get(**id).is_none())
        {
            return Err(ApiError::invalid_param(format!(
                "Invalid parameter ids value={unknown} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class."
            )));
        }
        let matched: Vec<Uuid> = alerts
            .alerts
            .values()
            .filter(|r| r.visible() && self.admits(r))
            .map(|r| r.id)
            .collect();
        if let Some(ids) = &self.ids {
            let found: HashSet<Uuid> = matched.iter().copied().collect();
            if ids.iter().any(|id| !found.contains(id)) {
                return Err(ApiError::internal(format!(
                    "Unable to {} Alerts, one or more parameters has invalid values",
                    how.verb()
                )));
            }
        }
        Ok(matched)
    }
}

async fn hide(ctx: &Ctx, call: &Call, how: Hide) -> Result<Reply, ApiError> {
    let filter = HideFilter::from_call(call, how)?;
    ctx.decide(ALERTS_STREAM, |state| {
        let ids = filter.select(model(state)?, how)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let hidden = AlertsHidden { alert_ids: ids };
        Ok(vec![call.event(EventBody::Alert(match how {
            Hide::Archive => AlertEvent::Archive(hidden),
            Hide::Delete => AlertEvent::Delete(hidden),
        }))])
    })
    .await?;
    Ok(Reply::success())
}

async fn archive_alerts(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    hide(ctx, call, Hide::Archive).await
}

async fn delete_alerts(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    hide(ctx, call, Hide::Delete).await
}

async fn list_alert_types(_ctx: &Ctx, _call: &Call) -> Result<Reply, ApiError> {
    let items: Vec<Value> = AlertType::ALL
        .iter()
        .map(|t| json!({ "alerttypeid": t.id, "name": t.name }))
        .collect();
    Ok(Reply::List {
        key: "alerttype",
        count: items.len(),
        items,
    })
}

/// What `generateAlert` raises.
#[derive(Debug, Clone)]
struct Generated {
    type_id: u16,
    name: String,
    description: String,
    scope: AlertScope,
}

fn generated(call: &Call, state: &State) -> Result<Generated, ApiError> {
    let type_id = call
        .int("type")?
        .and_then(|t| u16::try_from(t).ok())
        .ok_or_else(|| {
            ApiError::invalid_param("Invalid alert type: a number from 0 to 65535".to_owned())
        })?;
    let name = call
        .str("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::missing_param(call.command.name, "name"))?;
    let description = call
        .str("description")
        .ok_or_else(|| ApiError::missing_param(call.command.name, "description"))?;
    let name = match AlertType::for_generate(type_id, name) {
        Ok(Some(listed)) => listed.name.to_owned(),
        Ok(None) => name.to_owned(),
        Err(listed) => {
            return Err(ApiError::invalid_param(format!(
                "There is a default alert having type {type_id} and name {}",
                listed.name
            )));
        }
    };
    let zone_id = call.uuid("zoneid")?;
    if let Some(zone) = zone_id
        && state.catalog.zones.get(&zone).is_none()
    {
        return Err(ApiError::invalid_param(format!(
            "Invalid parameter zoneid value={zone} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class."
        )));
    }
    let pod_id = call.uuid("podid")?;
    if let Some(pod) = pod_id
        && state.infrastructure.pods.get(&pod).is_none()
    {
        return Err(ApiError::invalid_param(format!(
            "Invalid parameter podid value={pod} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class."
        )));
    }
    Ok(Generated {
        type_id,
        name,
        description: description.to_owned(),
        scope: AlertScope {
            zone_id,
            pod_id,
            ..AlertScope::default()
        },
    })
}

async fn generate_alert(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let alert = generated(call, &ctx.models.read())?;
    Ok(Reply::Async(AsyncWork {
        instance_type: None,
        instance_id: None,
        event_type: "ALERT.GENERATE",
        description: format!(
            "Generating alert of type {}; name {}",
            alert.type_id, alert.name
        ),
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(ALERTS_STREAM, |state| {
                        // CloudStack sends nothing new while the same alert is still there.
                        if model(state)?.is_open(alert.type_id, &alert.scope) {
                            return Ok(Vec::new());
                        }
                        Ok(vec![
                            job.event(usage::alerts::raise_body(
                                Uuid::new_v4(),
                                alert.type_id,
                                &alert.name,
                                alert.description.clone(),
                                alert.scope,
                            ))
                            .level(Level::Warn),
                        ])
                    })
                    .await?;
                Ok(Reply::success())
            }
            .boxed()
        }),
    }))
}
