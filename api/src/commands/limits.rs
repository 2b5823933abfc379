//! Resource limits (`listResourceLimits`, `updateResourceLimit`, `updateResourceCount`).
//!
//! A limit is a recorded maximum per account or domain and resource type; what an account
//! holds is never stored but derived from the read models (`allocation::count`), so
//! `updateResourceCount` has nothing to repair: it reports. Limits are changed on the
//! allocation stream, the one every allocation checks them on, so a deploy decided at a given
//! version saw exactly the limits in force at that version.

use engine::event::identity::{AccountType, LimitOwner, ResourceLimitChanged};
use engine::event::{EventBody, ResourceLimitEvent};
use projections::State;
use projections::identity::{AccountRow, DomainRow};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::{ALLOCATION, ResourceType, account_limit, count, domain_limit};
use crate::call::{Call, Caller, Paging};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Role, Roles, field, param, required,
};
use crate::response::Reply;

const LIMIT_FIELDS: &[ResponseField] = &[
    field("account", "string", "the account of the resource limit"),
    field("domainid", "string", "the domain ID of the resource limit"),
    field("domain", "string", "the domain name of the resource limit"),
    field(
        "domainpath",
        "string",
        "path of the domain to which the resource limit belongs",
    ),
    field(
        "resourcetype",
        "string",
        "resource type. Values include 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11. See the resourceType parameter for more information on these values.",
    ),
    field(
        "resourcetypename",
        "string",
        "resource type name. Values include user_vm, public_ip, volume, snapshot, template, network, vpc, cpu, memory, primary_storage, secondary_storage.",
    ),
    field(
        "max",
        "long",
        "the maximum number of the resource. A -1 means the resource currently has no limit.",
    ),
];

const COUNT_FIELDS: &[ResponseField] = &[
    field(
        "account",
        "string",
        "the account for which resource count's are updated",
    ),
    field(
        "domainid",
        "string",
        "the domain ID for which resource count's are updated",
    ),
    field(
        "domain",
        "string",
        "the domain name for which resource count's are updated",
    ),
    field(
        "domainpath",
        "string",
        "path of the domain to which the resource counts are updated",
    ),
    field(
        "resourcetype",
        "string",
        "resource type. Values include 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11.",
    ),
    field("resourcetypename", "string", "resource type name."),
    field("resourcecount", "long", "The resource count"),
];

const RESOURCE_TYPES: &str = "Type of resource. Values are 0, 1, 2, 3, 4, 6, 7, 8, 9, 10 and 11. \
    0 - Instance. 1 - IP. 2 - Volume. 3 - Snapshot. 4 - Template. 6 - Network. 7 - VPC. \
    8 - CPU. 9 - Memory (MiB). 10 - PrimaryStorage (GiB). 11 - SecondaryStorage (GiB).";

/// The resource limit commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listResourceLimits",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists resource limits.",
        params: &[
            param("resourcetype", T::Integer, RESOURCE_TYPES),
            param(
                "resourcetypename",
                T::String,
                "Type of resource (wins over resourceType if both are provided). Values are: user_vm, public_ip, volume, snapshot, template, network, vpc, cpu, memory, primary_storage, secondary_storage",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: LIMIT_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_resource_limits),
    },
    CommandSpec {
        name: "updateResourceLimit",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Updates resource limits for an account or domain.",
        params: &[
            param(
                "account",
                T::String,
                "Update resource for a specified account. Must be used with the domainId parameter.",
            ),
            param(
                "domainid",
                T::Uuid,
                "Update resource limits for all accounts in specified domain. If used with the account parameter, updates resource limits for a specified account in specified domain.",
            ),
            param(
                "max",
                T::Long,
                "Maximum resource limit (-1: unlimited; absent: back to the default).",
            ),
            required("resourcetype", T::Integer, RESOURCE_TYPES),
        ],
        inherits: Inherits::Nothing,
        response: LIMIT_FIELDS,
        related: "listResourceLimits",
        manual_clock_only: false,
        handler: handler!(update_resource_limit),
    },
    CommandSpec {
        name: "updateResourceCount",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Recalculate and update resource count for an account or domain.",
        params: &[
            param(
                "account",
                T::String,
                "Update resource count for a specified account. Must be used with the domainId parameter.",
            ),
            required(
                "domainid",
                T::Uuid,
                "If account parameter specified then updates resource counts for a specified account in this domain else update resource counts for all accounts & child domains in specified domain.",
            ),
            param(
                "resourcetype",
                T::Integer,
                "Type of resource to update. If not specified will update all resource counts.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: COUNT_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(update_resource_count),
    },
];

/// Whose limits or counts a command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Account(Uuid),
    Domain(Uuid),
}

fn invalid_type() -> ApiError {
    ApiError::invalid_param("Please specify valid resource type")
}

/// `resourcetype` as a number (431 when it is not one of ours).
fn type_number(call: &Call) -> Result<Option<ResourceType>, ApiError> {
    call.int("resourcetype")?
        .map(|n| ResourceType::from_number(n).ok_or_else(invalid_type))
        .transpose()
}

/// The limit in force for an account: none for root admin accounts (CloudStack ignores their
/// limits), its own, else the `max.account.*` default, a negative one meaning unlimited.
fn effective_account_limit(state: &State, account: &AccountRow, resource: ResourceType) -> i64 {
    if account.facts.account_type == AccountType::RootAdmin {
        return -1;
    }
    account_limit(state, account.facts.account_id, resource).max(-1)
}

fn domain_fields(state: &State, domain_id: Uuid) -> (Option<String>, Option<String>) {
    let domain: Option<&DomainRow> = state.identity.domains.get(&domain_id);
    (
        domain.map(|d| d.facts.name.to_string()),
        domain.map(|d| d.facts.path.clone()),
    )
}

/// One `resourcelimit` item.
fn limit_json(state: &State, target: Target, resource: ResourceType) -> Value {
    let (account, domain_id, max) = match target {
        Target::Account(id) => match state.identity.accounts.get(&id) {
            Some(row) => (
                Some(row.facts.name.to_string()),
                row.facts.domain_id,
                effective_account_limit(state, row, resource),
            ),
            None => (None, Uuid::nil(), account_limit(state, id, resource)),
        },
        Target::Domain(id) => (None, id, domain_limit(state, id, resource)),
    };
    let (domain, domain_path) = domain_fields(state, domain_id);
    json!({
        "account": account,
        "domainid": domain_id,
        "domain": domain,
        "domainpath": domain_path,
        "resourcetype": (resource as i64).to_string(),
        "resourcetypename": resource.name(),
        "max": max,
    })
}

/// The account `account` names in `domainid` (the caller's domain without it).
fn named_account<'s>(
    state: &'s State,
    call: &Call,
    name: &str,
) -> Result<&'s AccountRow, ApiError> {
    let domain = call.uuid("domainid")?.unwrap_or(call.caller.domain_id);
    state.identity.account_by_name(domain, name).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find account {name} in domain {domain}"))
    })
}

/// 531 unless the caller may manage this account: a domain admin only in their subtree, and
/// only a root admin may touch a root admin's account.
fn check_account_access(
    state: &State,
    caller: &Caller,
    account: &AccountRow,
) -> Result<(), ApiError> {
    let facts = &account.facts;
    let allowed = caller.may_access(state, facts.account_id, facts.domain_id)
        && (caller.is_root_admin() || facts.account_type != AccountType::RootAdmin);
    if allowed {
        Ok(())
    } else {
        Err(ApiError::permission_denied(format!(
            "Account {} is not accessible by the caller",
            facts.name
        )))
    }
}

fn check_domain_access(state: &State, caller: &Caller, domain: Uuid) -> Result<(), ApiError> {
    if caller.may_access_domain(state, domain) {
        Ok(())
    } else {
        Err(ApiError::permission_denied(format!(
            "Caller cannot access domain {domain}"
        )))
    }
}

async fn list_resource_limits(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let resource = match call.str("resourcetypename") {
        Some(name) => Some(
            ResourceType::ALL
                .into_iter()
                .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| {
                    ApiError::invalid_param(format!("Unknown resource type name {name}"))
                })?,
        ),
        None => type_number(call)?,
    };
    let empty = || Reply::List {
        key: "resourcelimit",
        count: 0,
        items: Vec::new(),
    };
    if call.str("projectid").is_some() {
        return Ok(empty());
    }
    let caller = &call.caller;
    // Users see their own account's limits whatever they ask; admins name an account, a
    // domain (its own limits) or nothing (their own account's), as CloudStack's
    // searchForLimits.
    let target = if caller.role == Role::User {
        Target::Account(caller.account_id)
    } else {
        let domain = call.uuid("domainid")?;
        if let Some(domain) = domain {
            if state.identity.domains.get(&domain).is_none() {
                return Ok(empty());
            }
            check_domain_access(&state, caller, domain)?;
        }
        match (call.str("account"), domain) {
            (Some(name), _) => {
                let account = named_account(&state, call, name)?;
                check_account_access(&state, caller, account)?;
                Target::Account(account.facts.account_id)
            }
            (None, Some(domain)) => Target::Domain(domain),
            (None, None) => Target::Account(caller.account_id),
        }
    };
    let items: Vec<Value> = ResourceType::ALL
        .into_iter()
        .filter(|t| resource.is_none_or(|r| r == *t))
        .map(|t| limit_json(&state, target, t))
        .collect();
    let (count, items) = paging.apply(items);
    Ok(Reply::List {
        key: "resourcelimit",
        count,
        items,
    })
}

/// What `updateResourceLimit` names, checked against `state`: the limit's owner, or why the
/// caller may not set it.
fn limit_target(
    state: &State,
    call: &Call,
    resource: ResourceType,
    max: Option<i64>,
) -> Result<Target, ApiError> {
    let caller = &call.caller;
    if let Some(name) = call.str("account") {
        let account = named_account(state, call, name)?;
        let facts = &account.facts;
        if facts.account_type == AccountType::RootAdmin && max.is_some_and(|m| m != -1) {
            return Err(ApiError::invalid_param(
                "Only -1 limit is supported for Root Admin accounts",
            ));
        }
        if facts.account_id == caller.account_id && caller.role == Role::DomainAdmin {
            return Err(ApiError::permission_denied(format!(
                "Unable to update resource limit for their own account {}, permission denied",
                facts.name
            )));
        }
        check_account_access(state, caller, account)?;
        return Ok(Target::Account(facts.account_id));
    }
    let Some(domain_id) = call.uuid("domainid")? else {
        return Err(ApiError::invalid_param(
            "AccountId or domainId have to be specified in order to update resource limit",
        ));
    };
    let domain = state.identity.domains.get(&domain_id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find domain by id {domain_id}"))
    })?;
    check_domain_access(state, caller, domain_id)?;
    let Some(parent_id) = domain.facts.parent_id else {
        return Err(ApiError::permission_denied(format!(
            "Cannot update resource limit for ROOT domain {domain_id}, permission denied"
        )));
    };
    if caller.role == Role::DomainAdmin && caller.domain_id == domain_id {
        return Err(ApiError::permission_denied(format!(
            "Unable to update resource limit for domain {domain_id}, permission denied"
        )));
    }
    let parent_max = domain_limit(state, parent_id, resource);
    if let Some(max) = max
        && parent_max >= 0
        && max > parent_max
    {
        let parent = state
            .identity
            .domains
            .get(&parent_id)
            .map(|d| d.facts.name.to_string())
            .unwrap_or_else(|| parent_id.to_string());
        return Err(ApiError::invalid_param(format!(
            "Domain {parent} has maximum allowed resource limit {parent_max} for {}, please specify a value less than or equal to {parent_max}",
            resource.name()
        )));
    }
    Ok(Target::Domain(domain_id))
}

async fn update_resource_limit(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let resource = type_number(call)?.ok_or_else(invalid_type)?;
    let max = call.int("max")?;
    if max.is_some_and(|m| m < -1) {
        return Err(ApiError::invalid_param(
            "Please specify either '-1' for an infinite limit, or a limit that is at least '0'.",
        ));
    }
    let target = limit_target(&ctx.models.read(), call, resource, max)?;
    ctx.decide(ALLOCATION, |state| {
        // The account or domain may have gone, or a parent's limit changed, meanwhile.
        let target = limit_target(state, call, resource, max)?;
        let (owner, owner_id) = match target {
            Target::Account(id) => (LimitOwner::Account, id),
            Target::Domain(id) => (LimitOwner::Domain, id),
        };
        Ok(vec![call.event(EventBody::ResourceLimit(
            ResourceLimitEvent::Update(ResourceLimitChanged {
                resource_type: resource as u8,
                owner,
                owner_id,
                max,
            }),
        ))])
    })
    .await?;
    let state = ctx.models.read();
    Ok(Reply::Object {
        key: "resourcelimit",
        value: limit_json(&state, target, resource),
    })
}

/// What a domain and its subdomains hold of a resource: the sum over their accounts.
fn domain_count(state: &State, domain_id: Uuid, resource: ResourceType) -> i64 {
    state
        .identity
        .accounts
        .values()
        .filter(|a| state.identity.is_in_subtree(a.facts.domain_id, domain_id))
        .map(|a| count(state, a.facts.account_id, resource))
        .sum()
}

/// One `resourcecount` item.
fn count_json(state: &State, target: Target, resource: ResourceType) -> Value {
    let (account, domain_id, held) = match target {
        Target::Account(id) => {
            let row = state.identity.accounts.get(&id);
            (
                row.map(|r| r.facts.name.to_string()),
                row.map_or(Uuid::nil(), |r| r.facts.domain_id),
                count(state, id, resource),
            )
        }
        Target::Domain(id) => (None, id, domain_count(state, id, resource)),
    };
    let (domain, domain_path) = domain_fields(state, domain_id);
    json!({
        "account": account,
        "domainid": domain_id,
        "domain": domain,
        "domainpath": domain_path,
        "resourcetype": (resource as i64).to_string(),
        "resourcetypename": resource.name(),
        "resourcecount": held,
    })
}

async fn update_resource_count(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let resource = type_number(call)?;
    let domain_id = call.required_uuid("domainid")?;
    let state = ctx.models.read();
    if state.identity.domains.get(&domain_id).is_none() {
        return Err(ApiError::invalid_param("Please specify a valid domain ID."));
    }
    check_domain_access(&state, &call.caller, domain_id)?;
    let target = match call.str("account") {
        Some(name) => {
            let account = named_account(&state, call, name)?;
            check_account_access(&state, &call.caller, account)?;
            Target::Account(account.facts.account_id)
        }
        None => Target::Domain(domain_id),
    };
    let items: Vec<Value> = ResourceType::ALL
        .into_iter()
        .filter(|t| resource.is_none_or(|r| r == *t))
        .map(|t| count_json(&state, target, t))
        .collect();
    Ok(Reply::List {
        key: "resourcecount",
        count: items.len(),
        items,
    })
}
