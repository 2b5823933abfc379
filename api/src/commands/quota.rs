//! CloudStack's quota plugin (spec/usage.md "Quota", docs/quota.md): tariffs, credits, balance,
//! statement, summary. Tariffs and credits are QUOTA.* events on the `quota` stream; the usage
//! model folds them and charges every usage record it publishes, so balances are always
//! current.
//!
//! The charges are computed from the log whatever `quota.enable.service` says; with the service
//! disabled every command but `quotaIsEnabled` is refused (CloudStack does not even register
//! them). Amounts are exact decimals rendered as JSON strings, never floats.
//!
//! The QUOTA_LOW / QUOTA_EMPTY alerts and the enforcement locks that credits and charges imply
//! are appended by the quota watcher (`usage::quota_watch`), not by these commands, so a
//! balance that crosses a threshold through a usage close is handled exactly like one that
//! crosses it through `quotaCredits`.

use std::str::FromStr;

use compact_str::CompactString;
use engine::event::billing::{QuotaCreditsAdded, QuotaTariffDefined, QuotaTariffRemoved};
use engine::event::{EventBody, QuotaEvent};
use engine::time::Timestamp;
use projections::State;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use usage::model::UsageModel;
use usage::quota::{QuotaUnit, TariffRow};
use usage::usage_type::UsageType;
use uuid::Uuid;

use super::usage::{Edge, aggregation_zone, usage_date};
use crate::call::{Call, Paging};
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Role, Roles, field, param, required,
};
use crate::response::Reply;

/// The stream quota tariffs and credits are appended to.
pub const QUOTA_STREAM: &str = "quota";

const TARIFF_FIELDS: &[ResponseField] = &[
    field("usageType", "int", "usageType"),
    field("usageName", "string", "usageName"),
    field("usageUnit", "string", "usageUnit"),
    field("usageDiscriminator", "string", "usageDiscriminator"),
    field(
        "tariffValue",
        "bigdecimal",
        "the tariff value (an exact decimal, as a string)",
    ),
    field(
        "effectiveDate",
        "date",
        "the date on/after which this quota value will be effective",
    ),
    field("usageTypeDescription", "string", "usage type description"),
    field("currency", "string", "currency"),
    field("endDate", "date", "the end date of the quota tariff"),
    field(
        "activationRule",
        "string",
        "activation rule of the quota tariff (not supported: always empty)",
    ),
    field("name", "string", "name"),
    field("description", "string", "description"),
    field("id", "string", "the ID of the tariff"),
    field("removed", "date", "when the quota tariff was removed"),
    field(
        "position",
        "integer",
        "position in the execution sequence for tariffs of the same type",
    ),
];

const CREDIT_FIELDS: &[ResponseField] = &[
    field(
        "credit",
        "bigdecimal",
        "the credit deposited (an exact decimal, as a string)",
    ),
    field(
        "creditoruserid",
        "string",
        "the ID of the user who credited",
    ),
    field(
        "creditorusername",
        "string",
        "the name of the user who credited",
    ),
    field("creditedon", "date", "when the credit was added"),
    field("currency", "string", "currency"),
    field("accountid", "string", "the account credited (Ledgerstack)"),
];

const BALANCE_FIELDS: &[ResponseField] = &[
    field("accountid", "long", "account id"),
    field("account", "string", "account name"),
    field("domain", "long", "domain id"),
    field(
        "startquota",
        "bigdecimal",
        "quota balance at the start date",
    ),
    field("endquota", "bigdecimal", "quota balance at the end date"),
    field("credits", "list", "credits added in the period"),
    field("startdate", "date", "start date"),
    field("enddate", "date", "end date"),
    field("currency", "string", "currency"),
];

const STATEMENT_FIELDS: &[ResponseField] = &[
    field("accountid", "long", "account id"),
    field("account", "string", "account name"),
    field("domain", "long", "domain id"),
    field(
        "quotausage",
        "list",
        "list of quota usage under various types",
    ),
    field(
        "totalquota",
        "bigdecimal",
        "total quota used during this period",
    ),
    field("startdate", "date", "start date"),
    field("enddate", "date", "end date"),
    field("currency", "string", "currency"),
];

const SUMMARY_FIELDS: &[ResponseField] = &[
    field("accountid", "string", "account id"),
    field("account", "string", "account name"),
    field("domainid", "string", "domain id"),
    field("domain", "string", "domain name"),
    field("balance", "bigdecimal", "account balance"),
    field("state", "string", "account state"),
    field("quota", "bigdecimal", "quota used this month"),
    field("startdate", "date", "start of the month"),
    field("enddate", "date", "now"),
    field("currency", "string", "currency"),
    field(
        "quotaenabled",
        "boolean",
        "whether the quota service is enabled",
    ),
];

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "quotaIsEnabled",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Return true if the plugin is enabled",
        params: &[],
        inherits: Inherits::Nothing,
        response: &[field("isenabled", "boolean", "is quota service enabled")],
        related: "",
        manual_clock_only: false,
        handler: handler!(quota_is_enabled),
    },
    CommandSpec {
        name: "quotaTariffList",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all quota tariff plans",
        params: &[
            param("usagetype", T::Integer, "Usage type of the resource"),
            param(
                "startdate",
                T::Date,
                "Tariffs effective on or after this date",
            ),
            param(
                "enddate",
                T::Date,
                "Tariffs effective on or before this date",
            ),
            param("name", T::String, "The name of the quota tariff."),
            param(
                "listall",
                T::Boolean,
                "False will list only not removed quota tariffs. If set to true, we will list all, including the removed ones.",
            ),
            param(
                "listonlyremoved",
                T::Boolean,
                "If set to true, we will list only the removed tariffs.",
            ),
            param("id", T::String, "The quota tariff's id."),
        ],
        inherits: Inherits::Paging,
        response: TARIFF_FIELDS,
        related: "quotaTariffCreate",
        manual_clock_only: false,
        handler: handler!(quota_tariff_list),
    },
    CommandSpec {
        name: "quotaTariffCreate",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Creates a quota tariff for a resource.",
        params: &[
            required("name", T::String, "Quota tariff's name"),
            param("description", T::String, "Quota tariff's description."),
            required(
                "usagetype",
                T::Integer,
                "Integer value for the usage type of the resource.",
            ),
            required(
                "value",
                T::String,
                "The quota tariff value of the resource as per the default unit (an exact decimal).",
            ),
            param(
                "activationrule",
                T::String,
                "Activation rules are not supported: refused.",
            ),
            param(
                "startdate",
                T::Date,
                "The effective start date on/after which the quota tariff is effective (default: now).",
            ),
            param(
                "enddate",
                T::Date,
                "The end date of the quota tariff. If not informed, the tariff will be valid indefinitely.",
            ),
            param(
                "position",
                T::Integer,
                "Position in the execution sequence for tariffs of the same type",
            ),
        ],
        inherits: Inherits::Nothing,
        response: TARIFF_FIELDS,
        related: "quotaTariffList",
        manual_clock_only: false,
        handler: handler!(quota_tariff_create),
    },
    CommandSpec {
        name: "quotaTariffUpdate",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Update the tariff plan for a resource",
        params: &[
            required("name", T::String, "Quota tariff's name"),
            param(
                "value",
                T::String,
                "The quota tariff value of the resource as per the default unit (an exact decimal).",
            ),
            param("enddate", T::Date, "The end date of the quota tariff."),
            param("description", T::String, "Quota tariff's description."),
            param(
                "activationrule",
                T::String,
                "Activation rules are not supported: refused.",
            ),
            param(
                "position",
                T::Integer,
                "Position in the execution sequence for tariffs of the same type",
            ),
            param(
                "usagetype",
                T::Integer,
                "DEPRECATED. Must equal the tariff's usage type when given.",
            ),
            param(
                "startdate",
                T::Date,
                "DEPRECATED. Refused: a tariff's effective date cannot change.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: TARIFF_FIELDS,
        related: "quotaTariffList",
        manual_clock_only: false,
        handler: handler!(quota_tariff_update),
    },
    CommandSpec {
        name: "quotaTariffDelete",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Marks a quota tariff as removed.",
        params: &[required("id", T::String, "ID of the quota tariff")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "quotaTariffList",
        manual_clock_only: false,
        handler: handler!(quota_tariff_delete),
    },
    CommandSpec {
        name: "quotaCredits",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Add +-credits to an account",
        params: &[
            required(
                "account",
                T::String,
                "Account name for which quota credits need to be added",
            ),
            required(
                "domainid",
                T::Uuid,
                "Domain for which quota credits need to be added",
            ),
            required(
                "value",
                T::String,
                "Value of the credits to be added+, subtracted- (an exact decimal)",
            ),
            param(
                "min_balance",
                T::String,
                "Minimum balance threshold of the account",
            ),
            param(
                "quota_enforce",
                T::Boolean,
                "Account for which quota enforce is set to false will not be locked when there is no credit balance",
            ),
        ],
        inherits: Inherits::Nothing,
        response: CREDIT_FIELDS,
        related: "quotaBalance",
        manual_clock_only: false,
        handler: handler!(quota_credits),
    },
    CommandSpec {
        name: "quotaCreditsList",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists quota credits of an account.",
        params: &[
            param(
                "accountid",
                T::Uuid,
                "ID of the account for which the credit statement will be generated.",
            ),
            param(
                "domainid",
                T::Uuid,
                "ID of the domain for which credit statement will be generated.",
            ),
            param(
                "startdate",
                T::Date,
                "Start date of the credit statement (default: the beginning).",
            ),
            param(
                "enddate",
                T::Date,
                "End date of the credit statement (default: now).",
            ),
            param(
                "isrecursive",
                T::Boolean,
                "Whether to include the domain's subdomains.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: CREDIT_FIELDS,
        related: "quotaCredits",
        manual_clock_only: false,
        handler: handler!(quota_credits_list),
    },
    CommandSpec {
        name: "quotaBalance",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Create a quota balance statement",
        params: &[
            required(
                "account",
                T::String,
                "Account name for which the balance is reported",
            ),
            required("domainid", T::Uuid, "The account's domain"),
            param(
                "enddate",
                T::Date,
                "End of the period of the Quota balance.",
            ),
            param(
                "startdate",
                T::Date,
                "Start of the period of the Quota balance.",
            ),
            param(
                "accountid",
                T::Uuid,
                "The account (instead of account and domainid)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: BALANCE_FIELDS,
        related: "quotaStatement",
        manual_clock_only: false,
        handler: handler!(quota_balance),
    },
    CommandSpec {
        name: "quotaStatement",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Create a quota statement",
        params: &[
            required(
                "account",
                T::String,
                "Account name for which the statement is generated",
            ),
            required("domainid", T::Uuid, "The account's domain"),
            required(
                "enddate",
                T::Date,
                "End of the period of the Quota statement.",
            ),
            required(
                "startdate",
                T::Date,
                "Start of the period of the Quota statement.",
            ),
            param(
                "type",
                T::Integer,
                "List quota usage records for the specified usage type",
            ),
            param(
                "accountid",
                T::Uuid,
                "The account (instead of account and domainid)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: STATEMENT_FIELDS,
        related: "quotaBalance",
        manual_clock_only: false,
        handler: handler!(quota_statement),
    },
    CommandSpec {
        name: "quotaSummary",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists balance and quota usage for all accounts",
        params: &[
            param("account", T::String, "Account name"),
            param("domainid", T::Uuid, "Domain of the account, or to list"),
            param(
                "listall",
                T::Boolean,
                "List all accounts irrespective of the quota activity",
            ),
        ],
        inherits: Inherits::Paging,
        response: SUMMARY_FIELDS,
        related: "quotaBalance",
        manual_clock_only: false,
        handler: handler!(quota_summary),
    },
    CommandSpec {
        name: "quotaUpdate",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Update quota calculations, alerts and statements (Ledgerstack's balances are always current: appends nothing)",
        params: &[],
        inherits: Inherits::Nothing,
        response: &[field("updated", "boolean", "true")],
        related: "",
        manual_clock_only: false,
        handler: handler!(quota_update),
    },
];

fn service_enabled(state: &State) -> bool {
    state
        .configuration
        .global("quota.enable.service")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn currency(state: &State) -> String {
    state
        .configuration
        .global("quota.currency.symbol")
        .unwrap_or_else(|| "$".to_owned())
}

/// The usage model, once the quota service is enabled.
fn model<'a>(state: &'a State, call: &Call) -> Result<&'a UsageModel, ApiError> {
    if !service_enabled(state) {
        return Err(ApiError::unavailable(format!(
            "{} is not available: the quota service is disabled (set quota.enable.service to true)",
            call.command.name
        )));
    }
    usage::model::of(state).ok_or_else(|| ApiError::internal("the usage read model is not loaded"))
}

fn decimal(call: &Call, name: &str) -> Result<Option<Decimal>, ApiError> {
    call.str(name)
        .map(|v| {
            Decimal::from_str(v.trim()).map_err(|_| {
                ApiError::invalid_param(format!(
                    "Unable to execute API command {} due to invalid value {v:?} for parameter {name}: not a decimal number",
                    call.command.name
                ))
            })
        })
        .transpose()
}

fn refuse_activation_rule(call: &Call) -> Result<(), ApiError> {
    if call.str("activationrule").is_some() {
        return Err(ApiError::invalid_param(
            "Quota tariff activation rules are not supported by Ledgerstack: omit activationrule",
        ));
    }
    Ok(())
}

fn position(call: &Call) -> Result<Option<u32>, ApiError> {
    call.int("position")?
        .map(|p| {
            u32::try_from(p).map_err(|_| {
                ApiError::invalid_param("The position must be zero or a positive whole number")
            })
        })
        .transpose()
}

fn tariff_json(state: &State, id: Uuid, row: &TariffRow) -> Value {
    let t = &row.current;
    let usage_type = u8::try_from(t.usage_type).ok().and_then(UsageType::from_id);
    json!({
        "usageType": t.usage_type,
        "usageName": usage_type.map(|u| u.name()),
        "usageUnit": usage_type.map(|u| QuotaUnit::of(u).name(u)),
        "usageDiscriminator": "",
        "tariffValue": t.value.to_string(),
        "effectiveDate": date(t.effective_on),
        "usageTypeDescription": usage_type.map(|u| u.description()),
        "currency": currency(state),
        "endDate": t.end_date.map(date),
        "name": t.name,
        "description": t.description,
        "id": id,
        "removed": row.removed.map(date),
        "position": t.position,
    })
}

async fn quota_is_enabled(ctx: &Ctx, _call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    Ok(Reply::Object {
        key: "isenabled",
        value: json!({ "isenabled": service_enabled(&state) }),
    })
}

async fn quota_tariff_list(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let usage = model(&state, call)?;
    let paging = Paging::for_call(call, &state)?;
    let zone = aggregation_zone(&state);
    let start = usage_date(call, "startdate", zone, Edge::Start)?;
    let end = usage_date(call, "enddate", zone, Edge::End)?;
    let usage_type = call.int("usagetype")?;
    let name = call.str("name");
    let id = call.str("id");
    let (all, only_removed) = (call.flag("listall"), call.flag("listonlyremoved"));
    let rows: Vec<Value> = usage
        .quota
        .tariffs
        .iter()
        .filter(|(tid, row)| {
            let t = &row.current;
            (if only_removed {
                row.removed.is_some()
            } else {
                all || row.removed.is_none()
            }) && usage_type.is_none_or(|u| i64::from(t.usage_type) == u)
                && name.is_none_or(|n| t.name.as_str() == n)
                && id.is_none_or(|i| i.trim().eq_ignore_ascii_case(&tid.to_string()))
                && start.is_none_or(|s| t.effective_on >= s)
                && end.is_none_or(|e| t.effective_on <= e)
        })
        .map(|(tid, row)| tariff_json(&state, *tid, row))
        .collect();
    let count = rows.len();
    let items = rows
        .into_iter()
        .skip(paging.offset)
        .take(paging.limit.unwrap_or(usize::MAX))
        .collect();
    Ok(Reply::List {
        key: "quotatariff",
        count,
        items,
    })
}

fn live_tariff_named<'a>(usage: &'a UsageModel, name: &str) -> Option<(Uuid, &'a TariffRow)> {
    usage
        .quota
        .tariffs
        .iter()
        .find(|(_, row)| row.removed.is_none() && row.current.name.as_str() == name)
        .map(|(id, row)| (*id, row))
}

async fn quota_tariff_create(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    refuse_activation_rule(call)?;
    let name = call.required("name")?.trim().to_owned();
    let value = decimal(call, "value")?
        .ok_or_else(|| ApiError::missing_param(call.command.name, "value"))?;
    let type_id = call
        .int("usagetype")?
        .ok_or_else(|| ApiError::missing_param(call.command.name, "usagetype"))?;
    let usage_type = u8::try_from(type_id)
        .ok()
        .and_then(UsageType::from_id)
        .ok_or_else(|| {
            ApiError::invalid_param(format!("Usage type {type_id} is not a valid usage type"))
        })?;
    let position = position(call)?;
    let now = ctx.clock.now();
    let (effective_on, end_date) = {
        let state = ctx.models.read();
        model(&state, call)?;
        let zone = aggregation_zone(&state);
        (
            usage_date(call, "startdate", zone, Edge::Start)?.unwrap_or(now),
            usage_date(call, "enddate", zone, Edge::End)?,
        )
    };
    if let Some(end) = end_date
        && end < effective_on
    {
        return Err(ApiError::invalid_param(format!(
            "The quota tariff's end date [{}] cannot be less than the start date [{}]",
            date(end),
            date(effective_on)
        )));
    }
    let defined = QuotaTariffDefined {
        tariff_id: Uuid::new_v4(),
        name: CompactString::from(name.as_str()),
        description: call.str("description").map(str::to_owned),
        usage_type: u16::from(usage_type.id()),
        value,
        effective_on,
        end_date,
        position,
    };
    let id = defined.tariff_id;
    ctx.decide(QUOTA_STREAM, |state| {
        let usage = model(state, call)?;
        if live_tariff_named(usage, &name).is_some() {
            return Err(ApiError::invalid_param(format!(
                "A quota tariff with name [{name}] already exists"
            )));
        }
        Ok(vec![call.event(EventBody::Quota(
            QuotaEvent::TariffCreate(defined.clone()),
        ))])
    })
    .await?;
    tariff_reply(ctx, call, id)
}

fn tariff_reply(ctx: &Ctx, call: &Call, id: Uuid) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let usage = model(&state, call)?;
    let row =
        usage.quota.tariffs.get(&id).ok_or_else(|| {
            ApiError::internal("the tariff just written is not in the read model")
        })?;
    Ok(Reply::Object {
        key: "quotatariff",
        value: tariff_json(&state, id, row),
    })
}

async fn quota_tariff_update(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    refuse_activation_rule(call)?;
    if call.str("startdate").is_some() {
        return Err(ApiError::invalid_param(
            "A quota tariff's start date cannot be changed: create a new tariff and give the old one an end date",
        ));
    }
    let name = call.required("name")?.trim().to_owned();
    let value = decimal(call, "value")?;
    let type_id = call.int("usagetype")?;
    let position = position(call)?;
    let end_date = {
        let state = ctx.models.read();
        model(&state, call)?;
        usage_date(call, "enddate", aggregation_zone(&state), Edge::End)?
    };
    let found = std::sync::Mutex::new(None);
    ctx.decide(QUOTA_STREAM, |state| {
        let usage = model(state, call)?;
        let (id, row) = live_tariff_named(usage, &name).ok_or_else(|| {
            ApiError::invalid_param(format!("There is no quota tariff with name [{name}]"))
        })?;
        let mut defined = row.current.clone();
        if let Some(t) = type_id
            && i64::from(defined.usage_type) != t
        {
            return Err(ApiError::invalid_param(format!(
                "The usage type of quota tariff [{name}] is {} and cannot be changed",
                defined.usage_type
            )));
        }
        if let Some(v) = value {
            defined.value = v;
        }
        if let Some(end) = end_date {
            if end < defined.effective_on {
                return Err(ApiError::invalid_param(format!(
                    "The quota tariff's end date [{}] cannot be less than the start date [{}]",
                    date(end),
                    date(defined.effective_on)
                )));
            }
            defined.end_date = Some(end);
        }
        if let Some(description) = call.params.get("description") {
            defined.description = Some(description.to_owned());
        }
        if let Some(p) = position {
            defined.position = Some(p);
        }
        if let Ok(mut slot) = found.lock() {
            *slot = Some(id);
        }
        if defined == row.current {
            return Ok(Vec::new());
        }
        Ok(vec![call.event(EventBody::Quota(
            QuotaEvent::TariffUpdate(defined),
        ))])
    })
    .await?;
    let id = found
        .lock()
        .ok()
        .and_then(|slot| *slot)
        .ok_or_else(|| ApiError::internal("the updated tariff is unknown"))?;
    tariff_reply(ctx, call, id)
}

async fn quota_tariff_delete(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let text = call.required("id")?;
    let id = Uuid::parse_str(text.trim())
        .map_err(|_| ApiError::invalid_param(format!("Invalid quota tariff id {text:?}")))?;
    ctx.decide(QUOTA_STREAM, |state| {
        let usage = model(state, call)?;
        let row = usage
            .quota
            .tariffs
            .get(&id)
            .filter(|row| row.removed.is_none())
            .ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Quota tariff with the provided UUID [{id}] does not exist."
                ))
            })?;
        Ok(vec![call.event(EventBody::Quota(
            QuotaEvent::TariffDelete(QuotaTariffRemoved {
                tariff_id: id,
                name: row.current.name.clone(),
            }),
        ))])
    })
    .await?;
    Ok(Reply::success())
}

/// The account a quota command names, by `accountid` or `account` + `domainid`, which the
/// caller may see.
fn target_account(call: &Call, state: &State) -> Result<(Uuid, Uuid), ApiError> {
    let caller = &call.caller;
    let (account_id, domain_id) = match call.uuid("accountid")? {
        Some(id) => {
            let row = state.identity.accounts.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find account by id {id}"))
            })?;
            (id, row.facts.domain_id)
        }
        None => {
            let name = call.required("account")?;
            let domain = call.required_uuid("domainid")?;
            let row = state
                .identity
                .account_by_name(domain, name)
                .ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Unable to find account {name} in domain {domain}"
                    ))
                })?;
            (row.facts.account_id, domain)
        }
    };
    if !caller.may_access(state, account_id, domain_id) {
        return Err(ApiError::permission_denied(
            "Account/domain is not accessible by the caller",
        ));
    }
    Ok((account_id, domain_id))
}

fn account_name(state: &State, account_id: Uuid) -> Option<String> {
    state
        .identity
        .accounts
        .get(&account_id)
        .map(|a| a.facts.name.to_string())
}

fn credit_json(state: &State, row: &usage::quota::CreditRow) -> Value {
    json!({
        "credit": row.amount.to_string(),
        "creditoruserid": row.creditor,
        "creditorusername": row.creditor.and_then(|u| state.identity.users.get(&u)).map(|u| u.facts.username.to_string()),
        "creditedon": date(row.credited_at),
        "currency": currency(state),
        "accountid": row.account_id,
    })
}

async fn quota_credits(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let amount = decimal(call, "value")?
        .ok_or_else(|| ApiError::missing_param(call.command.name, "value"))?;
    let min_balance = decimal(call, "min_balance")?;
    let enforce = call.bool_opt("quota_enforce");
    let credit_id = Uuid::new_v4();
    ctx.decide(QUOTA_STREAM, |state| {
        model(state, call)?;
        let (account_id, domain_id) = target_account(call, state)?;
        Ok(vec![call.event(EventBody::Quota(QuotaEvent::Credits(
            QuotaCreditsAdded {
                credit_id,
                account_id,
                domain_id,
                amount,
                min_balance,
                enforce,
            },
        )))])
    })
    .await?;
    let state = ctx.models.read();
    let usage = model(&state, call)?;
    let row =
        usage.quota.credits.get(&credit_id).ok_or_else(|| {
            ApiError::internal("the credit just written is not in the read model")
        })?;
    Ok(Reply::Object {
        key: "quotacredits",
        value: credit_json(&state, row),
    })
}

async fn quota_credits_list(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let now = ctx.clock.now();
    let state = ctx.models.read();
    let usage = model(&state, call)?;
    let zone = aggregation_zone(&state);
    let start =
        usage_date(call, "startdate", zone, Edge::Start)?.unwrap_or(Timestamp::from_millis(0));
    let end = usage_date(call, "enddate", zone, Edge::End)?.unwrap_or(now);
    let caller = &call.caller;
    let account = call.uuid("accountid")?;
    let domain = call.uuid("domainid")?;
    if let Some(domain) = domain
        && !caller.may_access_domain(&state, domain)
    {
        return Err(ApiError::permission_denied("Invalid Domain Id or Account"));
    }
    let recursive = call.flag("isrecursive");
    let mut items: Vec<(Timestamp, Uuid, Value)> = usage
        .quota
        .credits
        .iter()
        .filter(|(_, c)| {
            c.credited_at >= start
                && c.credited_at <= end
                && account.is_none_or(|a| c.account_id == a)
                && domain.is_none_or(|d| {
                    c.domain_id == d || (recursive && state.identity.is_in_subtree(c.domain_id, d))
                })
                && match caller.role {
                    Role::User => c.account_id == caller.account_id,
                    _ => caller.may_access(&state, c.account_id, c.domain_id),
                }
        })
        .map(|(id, c)| (c.credited_at, *id, credit_json(&state, c)))
        .collect();
    items.sort_by_key(|(at, id, _)| (*at, *id));
    Ok(Reply::List {
        key: "credit",
        count: items.len(),
        items: items.into_iter().map(|(_, _, v)| v).collect(),
    })
}

/// Credits recorded before `at` minus charges of periods starting before `at`.
fn balance_at(usage: &UsageModel, account_id: Uuid, at: Timestamp) -> Decimal {
    let credits: Decimal = usage
        .quota
        .credits_between(
            account_id,
            Timestamp::from_millis(i64::MIN),
            at.add_millis(-1),
        )
        .iter()
        .map(|(_, c)| c.amount)
        .sum();
    credits - usage.quota.charges_before(account_id, at)
}

async fn quota_balance(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let now = ctx.clock.now();
    let state = ctx.models.read();
    let usage = model(&state, call)?;
    let (account_id, domain_id) = target_account(call, &state)?;
    let zone = aggregation_zone(&state);
    let start = usage_date(call, "startdate", zone, Edge::Start)?;
    let end = usage_date(call, "enddate", zone, Edge::End)?;
    let (start, end_exclusive) = match (start, end) {
        (None, None) => (now, now.add_millis(1)),
        (Some(s), None) => (s, now.add_millis(1)),
        (None, Some(e)) => (e, e.add_millis(1000)),
        (Some(s), Some(e)) => (s, e.add_millis(1000)),
    };
    if start >= end_exclusive {
        return Err(ApiError::invalid_param(format!(
            "Incorrect Date Range. Start date: {} is after end date:{}",
            date(start),
            date(end_exclusive.add_millis(-1))
        )));
    }
    let credits: Vec<Value> = usage
        .quota
        .credits_between(account_id, start, end_exclusive.add_millis(-1))
        .iter()
        .map(|(_, c)| credit_json(&state, c))
        .collect();
    Ok(Reply::Object {
        key: "balance",
        value: json!({
            "accountid": account_id,
            "account": account_name(&state, account_id),
            "domain": domain_id,
            "startquota": balance_at(usage, account_id, start).to_string(),
            "endquota": balance_at(usage, account_id, end_exclusive).to_string(),
            "credits": credits,
            "startdate": date(start),
            "enddate": date(end_exclusive.add_millis(-1)),
            "currency": currency(&state),
        }),
    })
}

async fn quota_statement(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let usage = model(&state, call)?;
    let (account_id, domain_id) = target_account(call, &state)?;
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
    let wanted = match call.int("type")? {
        None => None,
        Some(id) => Some(
            u8::try_from(id)
                .ok()
                .and_then(UsageType::from_id)
                .ok_or_else(|| {
                    ApiError::invalid_param(format!("Usage type {id} is not a valid usage type"))
                })?,
        ),
    };
    let name = account_name(&state, account_id);
    let mut total = Decimal::ZERO;
    let items: Vec<Value> = usage
        .quota
        .charges_by_type(account_id, start, end.add_millis(1))
        .into_iter()
        .filter(|(t, _)| wanted.is_none_or(|w| w == *t))
        .map(|(t, amount)| {
            total += amount;
            json!({
                "type": t.id(),
                "accountid": account_id,
                "account": name,
                "domain": domain_id,
                "name": t.name(),
                "unit": QuotaUnit::of(t).name(t),
                "quota": amount.to_string(),
            })
        })
        .collect();
    Ok(Reply::Object {
        key: "statement",
        value: json!({
            "accountid": account_id,
            "account": name,
            "domain": domain_id,
            "quotausage": items,
            "totalquota": total.to_string(),
            "startdate": date(start),
            "enddate": date(end),
            "currency": currency(&state),
        }),
    })
}

/// The first instant of the month `now` falls in, in `zone`.
fn month_start(now: Timestamp, zone: chrono_tz::Tz) -> Timestamp {
    use chrono::{Datelike, TimeZone};
    let local = zone.from_utc_datetime(&now.to_datetime().naive_utc());
    chrono::NaiveDate::from_ymd_opt(local.year(), local.month(), 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| zone.from_local_datetime(&d).earliest())
        .map_or(now, |d| Timestamp::from_millis(d.timestamp_millis()))
}

async fn quota_summary(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let now = ctx.clock.now();
    let state = ctx.models.read();
    let usage = model(&state, call)?;
    let paging = Paging::for_call(call, &state)?;
    let caller = &call.caller;
    let only: Option<Uuid> = match call.str("account") {
        Some(_) => Some(target_account(call, &state)?.0),
        None if caller.role == Role::User => Some(caller.account_id),
        None => None,
    };
    let domain = call.uuid("domainid")?;
    let list_all = call.flag("listall");
    let zone = aggregation_zone(&state);
    let from = month_start(now, zone);
    let enabled = service_enabled(&state);
    let mut items = Vec::new();
    for (account_id, row) in state.identity.accounts.iter() {
        let quota = usage.quota.accounts.get(account_id);
        if only.is_some_and(|a| a != *account_id)
            || domain.is_some_and(|d| row.facts.domain_id != d)
            || !caller.may_access(&state, *account_id, row.facts.domain_id)
            || (quota.is_none() && !list_all && only.is_none())
        {
            continue;
        }
        let month: Decimal = usage
            .quota
            .charges_by_type(*account_id, from, now)
            .into_iter()
            .map(|(_, a)| a)
            .sum();
        items.push(json!({
            "accountid": account_id,
            "account": row.facts.name,
            "domainid": row.facts.domain_id,
            "domain": state.identity.domains.get(&row.facts.domain_id).map(|d| d.facts.path.clone()),
            "balance": usage.quota.balance(*account_id).to_string(),
            "state": row.state.as_str(),
            "quota": month.to_string(),
            "startdate": date(from),
            "enddate": date(now),
            "currency": currency(&state),
            "quotaenabled": enabled,
        }));
    }
    let count = items.len();
    Ok(Reply::List {
        key: "summary",
        count,
        items: items
            .into_iter()
            .skip(paging.offset)
            .take(paging.limit.unwrap_or(usize::MAX))
            .collect(),
    })
}

async fn quota_update(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    model(&state, call)?;
    Ok(Reply::Object {
        key: "quotacredits",
        value: json!({ "updated": true }),
    })
}
