//! Per-account usage thresholds (Ledgerstack, beyond CloudStack; see docs/usage-thresholds.md):
//! `createUsageThreshold`, `listUsageThresholds`, `updateUsageThreshold`,
//! `deleteUsageThreshold`. The thresholds live in the log (`USAGE.THRESHOLD.*`); the watcher in
//! `usage::thresholds` raises their alerts.
//!
//! Anyone may watch an account they may act for: a user their own, admins the accounts in
//! their reach.

use compact_str::CompactString;
use engine::event::billing::{ThresholdMetric, UsageThresholdDefined, UsageThresholdRemoved};
use engine::event::{EventBody, UsageThresholdEvent};
use projections::State;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use usage::thresholds::{self, THRESHOLD_STREAM, ThresholdRow};
use usage::usage_type::UsageType;
use uuid::Uuid;

use crate::allocation::owner;
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

const THRESHOLD_FIELDS: &[ResponseField] = &[
    field("id", "string", "the threshold's ID"),
    field("name", "string", "the threshold's name"),
    field("account", "string", "the account watched"),
    field("accountid", "string", "the ID of the account watched"),
    field("domainid", "string", "the account's domain ID"),
    field("domain", "string", "the account's domain"),
    field(
        "metric",
        "string",
        "usage (a usage type's quantity) or quota (quota spend)",
    ),
    field(
        "usagetype",
        "integer",
        "the usage type watched (metric usage), or whose spend is watched (metric quota; absent: all)",
    ),
    field(
        "unit",
        "string",
        "hours, bytes or operations (metric usage); the currency symbol, quota.currency.symbol (metric quota)",
    ),
    field(
        "limit",
        "string",
        "the limit: a quantity, or with budget a percentage of it",
    ),
    field(
        "budget",
        "string",
        "the budget the limit is a percentage of",
    ),
    field(
        "effectivelimit",
        "string",
        "the quantity at which the threshold fires",
    ),
    field(
        "notifyresolve",
        "boolean",
        "whether a resolution is notified once a later period is under the limit",
    ),
    field("created", "date", "when the threshold was created"),
    field(
        "periodstart",
        "date",
        "start of the account's current usage period",
    ),
    field(
        "periodend",
        "date",
        "end of the account's current usage period",
    ),
    field(
        "periodquantity",
        "string",
        "the quantity so far in the current period",
    ),
    field(
        "exceeded",
        "boolean",
        "whether the current period reached the limit",
    ),
    field(
        "alertsraised",
        "integer",
        "alerts the threshold raised, one per period at most",
    ),
    field(
        "openalerts",
        "integer",
        "of those, the ones not resolved (with notifyresolve, a period under the limit resolves them)",
    ),
];

/// The threshold commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createUsageThreshold",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Creates a usage threshold on an account: an alert (type 1003 ALERT.USAGE.THRESHOLD) is raised once per usage period in which the account's quantity of a usage type, or its quota spend, reaches the limit (Ledgerstack)",
        params: &[
            required("name", T::String, "a name for the threshold"),
            required(
                "limit",
                T::String,
                "the limit, a decimal: hours for time-based usage types, bytes or operations for counters, an amount of money for quota spend; with budget, a percentage of the budget",
            ),
            param(
                "usagetype",
                T::Integer,
                "the usage type watched (listUsageTypes); required with metric=usage; with metric=quota, only the spend on this type counts",
            ),
            param(
                "metric",
                T::String,
                "usage (default): a usage type's quantity in the period; quota: quota spend in the period (the charges of the period's usage records, priced so far while the period is open)",
            ),
            param(
                "budget",
                T::String,
                "a budget, a decimal: the limit is then a percentage (0 to 100) of it",
            ),
            param(
                "notifyresolve",
                T::Boolean,
                "also resolve the alert (notifying the sinks) once a later period is under the limit",
            ),
            param("account", T::String, "the account watched (with domainid)"),
            param("domainid", T::Uuid, "the account's domain"),
        ],
        inherits: Inherits::Nothing,
        response: THRESHOLD_FIELDS,
        related: "listUsageThresholds,updateUsageThreshold,deleteUsageThreshold",
        manual_clock_only: false,
        handler: handler!(create_usage_threshold),
    },
    CommandSpec {
        name: "listUsageThresholds",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists usage thresholds, each with where its account stands in the current usage period (Ledgerstack)",
        params: &[
            param("id", T::Uuid, "the threshold's ID"),
            param(
                "account",
                T::String,
                "list the thresholds of this account (with domainid)",
            ),
            param("domainid", T::Uuid, "list the thresholds in this domain"),
            param(
                "isrecursive",
                T::Boolean,
                "with domainid, include subdomains",
            ),
            param(
                "listall",
                T::Boolean,
                "list every threshold the caller may see",
            ),
        ],
        inherits: Inherits::Paging,
        response: THRESHOLD_FIELDS,
        related: "createUsageThreshold",
        manual_clock_only: false,
        handler: handler!(list_usage_thresholds),
    },
    CommandSpec {
        name: "updateUsageThreshold",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Changes a usage threshold; the change applies from the next measurement (Ledgerstack)",
        params: &[
            required("id", T::Uuid, "the threshold's ID"),
            param("name", T::String, "a new name"),
            param("limit", T::String, "a new limit (decimal)"),
            param("budget", T::String, "a new budget (decimal); 0 removes it"),
            param(
                "usagetype",
                T::Integer,
                "a new usage type (metric quota: the spend on it only; -1 removes it)",
            ),
            param(
                "notifyresolve",
                T::Boolean,
                "whether resolutions are notified",
            ),
        ],
        inherits: Inherits::Nothing,
        response: THRESHOLD_FIELDS,
        related: "listUsageThresholds",
        manual_clock_only: false,
        handler: handler!(update_usage_threshold),
    },
    CommandSpec {
        name: "deleteUsageThreshold",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Deletes a usage threshold; the alerts it raised stay (Ledgerstack)",
        params: &[required("id", T::Uuid, "the threshold's ID")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "listUsageThresholds",
        manual_clock_only: false,
        handler: handler!(delete_usage_threshold),
    },
];

fn model(state: &State) -> Result<&thresholds::ThresholdsModel, ApiError> {
    thresholds::of(state)
        .ok_or_else(|| ApiError::internal("the usage thresholds read model is not loaded"))
}

/// A decimal parameter: plain decimal notation, no exponent, no float rounding.
fn decimal(call: &Call, name: &str) -> Result<Option<Decimal>, ApiError> {
    call.str(name)
        .map(|text| {
            text.trim().parse::<Decimal>().map_err(|_| {
                ApiError::invalid_param(format!(
                    "Unable to verify parameter {name}: '{text}' is not a decimal number"
                ))
            })
        })
        .transpose()
}

fn usage_type(call: &Call) -> Result<Option<u16>, ApiError> {
    let Some(id) = call.int("usagetype")? else {
        return Ok(None);
    };
    u8::try_from(id)
        .ok()
        .and_then(UsageType::from_id)
        .map(|t| Some(t as u16))
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Unknown usage type {id}: listUsageTypes lists the valid ones"
            ))
        })
}

fn name(text: &str) -> Result<CompactString, ApiError> {
    let name = text.trim();
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::invalid_param(
            "A threshold's name must be 1 to 255 characters",
        ));
    }
    Ok(name.into())
}

/// Checks a definition as a whole: what create and update both must hold.
fn validate(facts: &UsageThresholdDefined) -> Result<(), ApiError> {
    if facts.metric == ThresholdMetric::Usage && facts.usage_type.is_none() {
        return Err(ApiError::invalid_param(
            "usagetype is required for a usage threshold",
        ));
    }
    if facts.limit <= Decimal::ZERO {
        return Err(ApiError::invalid_param("limit must be greater than zero"));
    }
    if let Some(budget) = facts.budget {
        if budget <= Decimal::ZERO {
            return Err(ApiError::invalid_param("budget must be greater than zero"));
        }
        if facts.limit > Decimal::ONE_HUNDRED {
            return Err(ApiError::invalid_param(
                "with a budget, limit is a percentage: at most 100",
            ));
        }
    }
    Ok(())
}

fn name_free(
    state: &State,
    account_id: Uuid,
    name: &str,
    except: Option<Uuid>,
) -> Result<(), ApiError> {
    let taken = model(state)?.thresholds.values().any(|row| {
        row.facts.account_id == account_id
            && row.facts.name.eq_ignore_ascii_case(name)
            && Some(row.facts.threshold_id) != except
    });
    if taken {
        return Err(ApiError::invalid_param(format!(
            "The account already has a usage threshold named '{name}'"
        )));
    }
    Ok(())
}

fn threshold_json(ctx: &Ctx, state: &State, row: &ThresholdRow) -> Value {
    let facts = &row.facts;
    let usage_type = facts
        .usage_type
        .and_then(|t| u8::try_from(t).ok())
        .and_then(UsageType::from_id);
    let mut value = json!({
        "id": facts.threshold_id,
        "name": facts.name,
        "account": state.identity.account_name(facts.account_id),
        "accountid": facts.account_id,
        "domainid": facts.domain_id,
        "domain": state.identity.domains.get(&facts.domain_id).map(|d| d.facts.name.clone()),
        "metric": match facts.metric {
            ThresholdMetric::Usage => "usage",
            ThresholdMetric::Quota => "quota",
        },
        "limit": facts.limit.to_string(),
        "effectivelimit": row.effective_limit().normalize().to_string(),
        "notifyresolve": facts.notify_resolve,
        "created": date(row.created),
    });
    if let Some(t) = usage_type {
        value["usagetype"] = json!(t as u16);
    }
    match (facts.metric, usage_type) {
        (ThresholdMetric::Usage, Some(t)) => value["unit"] = json!(thresholds::unit_word(t)),
        (ThresholdMetric::Quota, _) => {
            value["unit"] = json!(state.configuration.global("quota.currency.symbol"))
        }
        (ThresholdMetric::Usage, None) => {}
    }
    if let Ok(model) = model(state) {
        let raised = model
            .alerts
            .values()
            .filter(|a| a.threshold_id == facts.threshold_id);
        let (total, open) = raised.fold((0u32, 0u32), |(total, open), a| {
            (total + 1, open + u32::from(!a.resolved))
        });
        value["alertsraised"] = json!(total);
        value["openalerts"] = json!(open);
    }
    if let Some(budget) = facts.budget {
        value["budget"] = json!(budget.to_string());
    }
    if let Some(standing) = thresholds::standing(state, row, ctx.clock.now()) {
        value["periodstart"] = json!(date(standing.period.start));
        value["periodend"] = json!(date(standing.period.end));
        value["periodquantity"] = json!(standing.quantity.normalize().to_string());
        value["exceeded"] = json!(standing.exceeded);
    }
    value
}

fn reply(ctx: &Ctx, threshold_id: Uuid) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let row = model(&state)?
        .thresholds
        .get(&threshold_id)
        .ok_or_else(|| {
            ApiError::internal(format!(
                "usage threshold {threshold_id} vanished after it was written"
            ))
        })?;
    Ok(Reply::Object {
        key: "usagethreshold",
        value: threshold_json(ctx, &state, row),
    })
}

async fn create_usage_threshold(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = name(call.required("name")?)?;
    let limit = decimal(call, "limit")?
        .ok_or_else(|| ApiError::invalid_param("Unable to verify parameter limit"))?;
    let metric = match call.str("metric").unwrap_or("usage") {
        m if m.eq_ignore_ascii_case("usage") => ThresholdMetric::Usage,
        m if m.eq_ignore_ascii_case("quota") => ThresholdMetric::Quota,
        other => {
            return Err(ApiError::invalid_param(format!(
                "Unknown metric '{other}': use usage or quota"
            )));
        }
    };
    let usage_type = usage_type(call)?;
    let budget = decimal(call, "budget")?;
    let notify_resolve = call.flag("notifyresolve");
    let threshold_id = Uuid::new_v4();
    ctx.decide(THRESHOLD_STREAM, |state| {
        let (account_id, domain_id) = owner(call, state)?;
        name_free(state, account_id, &name, None)?;
        let facts = UsageThresholdDefined {
            threshold_id,
            account_id,
            domain_id,
            name: name.clone(),
            metric,
            usage_type,
            limit,
            budget,
            notify_resolve,
        };
        validate(&facts)?;
        Ok(vec![call.event(EventBody::UsageThreshold(
            UsageThresholdEvent::Create(facts),
        ))])
    })
    .await?;
    reply(ctx, threshold_id)
}

/// The threshold `id`, if the caller may act for its account (431 otherwise, as for an
/// unknown id, so ids of other accounts' thresholds do not leak).
fn threshold<'s>(state: &'s State, call: &Call, id: Uuid) -> Result<&'s ThresholdRow, ApiError> {
    model(state)?
        .thresholds
        .get(&id)
        .filter(|row| {
            call.caller
                .may_access(state, row.facts.account_id, row.facts.domain_id)
        })
        .ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find usage threshold by id {id}"))
        })
}

async fn update_usage_threshold(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let new_name = call.str("name").map(name).transpose()?;
    let limit = decimal(call, "limit")?;
    let budget = decimal(call, "budget")?;
    // -1 clears the type (a quota threshold then watches the spend on every type).
    let usage_type = match call.int("usagetype")? {
        Some(-1) => Some(None),
        Some(_) => Some(usage_type(call)?),
        None => None,
    };
    let notify_resolve = call.bool_opt("notifyresolve");
    ctx.decide(THRESHOLD_STREAM, |state| {
        let mut facts = threshold(state, call, id)?.facts.clone();
        if let Some(name) = &new_name {
            name_free(state, facts.account_id, name, Some(id))?;
            facts.name = name.clone();
        }
        if let Some(limit) = limit {
            facts.limit = limit;
        }
        if let Some(budget) = budget {
            facts.budget = (budget != Decimal::ZERO).then_some(budget);
        }
        if let Some(usage_type) = usage_type {
            facts.usage_type = usage_type;
        }
        if let Some(notify) = notify_resolve {
            facts.notify_resolve = notify;
        }
        validate(&facts)?;
        Ok(vec![call.event(EventBody::UsageThreshold(
            UsageThresholdEvent::Update(facts),
        ))])
    })
    .await?;
    reply(ctx, id)
}

async fn delete_usage_threshold(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(THRESHOLD_STREAM, |state| {
        let row = threshold(state, call, id)?;
        Ok(vec![call.event(EventBody::UsageThreshold(
            UsageThresholdEvent::Delete(UsageThresholdRemoved {
                threshold_id: id,
                account_id: row.facts.account_id,
            }),
        ))])
    })
    .await?;
    Ok(Reply::success())
}

async fn list_usage_thresholds(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let keyword = call.str("keyword");
    let mut rows: Vec<&ThresholdRow> = model(&state)?
        .thresholds
        .values()
        .filter(|row| {
            let f = &row.facts;
            scope.admits(&state, Some(f.account_id), Some(f.domain_id))
                && id.is_none_or(|id| f.threshold_id == id)
                && keyword_matches(keyword, &[&f.name])
        })
        .collect();
    rows.sort_by_key(|row| (row.created, row.facts.threshold_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|row| threshold_json(ctx, &state, row))
            .collect(),
    );
    Ok(Reply::List {
        key: "usagethreshold",
        count,
        items,
    })
}
