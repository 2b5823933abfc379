//! Domains: the tree accounts live in (`createDomain`, `listDomains`, `updateDomain`,
//! `deleteDomain`).

use engine::event::identity::{AccountRef, DomainDeleted, DomainFacts, DomainLifecycle};
use engine::event::{AccountEvent, DomainEvent, EventBody};
use futures::FutureExt;
use projections::State;
use projections::identity::DomainRow;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, Paging, keyword_matches};
use crate::commands::date;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::AsyncWork;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

/// The stream that owns identity invariants (unique names, the tree's shape).
pub const IDENTITY: &str = "identity";

const DOMAIN_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the domain"),
    field("name", "string", "the name of the domain"),
    field("level", "integer", "the level of the domain"),
    field(
        "parentdomainid",
        "string",
        "the domain ID of the parent domain",
    ),
    field(
        "parentdomainname",
        "string",
        "the domain name of the parent domain",
    ),
    field(
        "haschild",
        "boolean",
        "whether the domain has one or more sub-domains",
    ),
    field("path", "string", "the path of the domain"),
    field("networkdomain", "string", "the network domain"),
    field("state", "string", "the state of the domain"),
    field("created", "date", "the date when this domain was created"),
];

/// The domain commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createDomain",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Creates a domain",
        params: &[
            required("name", T::String, "creates domain with this name"),
            param(
                "parentdomainid",
                T::Uuid,
                "assigns new domain a parent domain by domain ID of the parent.  If no parent domain is specified, the ROOT domain is assumed.",
            ),
            param(
                "networkdomain",
                T::String,
                "Network domain for networks in the domain",
            ),
            param(
                "domainid",
                T::Uuid,
                "Domain UUID, required for adding domain from another Region",
            ),
        ],
        inherits: Inherits::Nothing,
        response: DOMAIN_FIELDS,
        related: "listDomains",
        manual_clock_only: false,
        handler: handler!(create_domain),
    },
    CommandSpec {
        name: "listDomains",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "Lists domains and provides detailed information for listed domains",
        params: &[
            param("id", T::Uuid, "List domain by domain ID."),
            param("name", T::String, "List domain by domain name."),
            param("level", T::Integer, "List domains by domain level."),
            param(
                "listall",
                T::Boolean,
                "If set to false, list only resources belonging to the command's caller; if set to true - list resources that the caller is authorized to see. Default value is false",
            ),
        ],
        inherits: Inherits::Paging,
        response: DOMAIN_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_domains),
    },
    CommandSpec {
        name: "updateDomain",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Updates a domain with a new name",
        params: &[
            required("id", T::Uuid, "ID of domain to update"),
            param("name", T::String, "updates domain with this name"),
            param(
                "networkdomain",
                T::String,
                "Network domain for the domain's networks; empty string will update domainName with NULL value",
            ),
        ],
        inherits: Inherits::Nothing,
        response: DOMAIN_FIELDS,
        related: "listDomains",
        manual_clock_only: false,
        handler: handler!(update_domain),
    },
    CommandSpec {
        name: "deleteDomain",
        kind: Kind::Async,
        roles: Roles::ADMINS,
        description: "Deletes a specified domain",
        params: &[
            required("id", T::Uuid, "ID of domain to delete"),
            param(
                "cleanup",
                T::Boolean,
                "true if all domain resources (child domains, accounts) have to be cleaned up, false otherwise",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_domain),
    },
];

/// A domain as CloudStack shows it.
pub fn domain_json(state: &State, row: &DomainRow) -> Value {
    let facts = &row.facts;
    let parent = facts.parent_id.and_then(|p| state.identity.domains.get(&p));
    let has_child = state
        .identity
        .domains
        .values()
        .any(|d| d.facts.parent_id == Some(facts.domain_id));
    json!({
        "id": facts.domain_id,
        "name": facts.name,
        "level": row.level,
        "parentdomainid": facts.parent_id,
        "parentdomainname": parent.map(|p| p.facts.name.clone()),
        "haschild": has_child,
        "path": facts.path,
        "networkdomain": facts.network_domain,
        "state": "Active",
        "created": date(row.created),
    })
}

fn domain_reply(ctx: &Ctx, id: Uuid) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let row =
        state.identity.domains.get(&id).ok_or_else(|| {
            ApiError::internal(format!("domain {id} vanished after it was written"))
        })?;
    Ok(Reply::Object {
        key: "domain",
        value: domain_json(&state, row),
    })
}

/// The domain `id`, if the caller may manage it.
pub fn accessible_domain<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
) -> Result<&'s DomainRow, ApiError> {
    let domain = state
        .identity
        .domains
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find domain by id {id}")))?;
    if !call.caller.may_access_domain(state, id) {
        return Err(ApiError::permission_denied(format!(
            "Caller has no access to domain {}",
            domain.facts.path
        )));
    }
    Ok(domain)
}

fn sibling_named(state: &State, parent: Option<Uuid>, name: &str, except: Option<Uuid>) -> bool {
    state.identity.domains.values().any(|d| {
        d.facts.parent_id == parent
            && d.facts.name.eq_ignore_ascii_case(name)
            && Some(d.facts.domain_id) != except
    })
}

async fn create_domain(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?.trim().to_owned();
    if name.contains('/') {
        return Err(ApiError::invalid_param(
            "Domain name can't contain the '/' character",
        ));
    }
    let id = call.uuid("domainid")?.unwrap_or_else(Uuid::new_v4);
    ctx.decide(IDENTITY, |state| {
        let parent_id = match call.uuid("parentdomainid")? {
            Some(p) => p,
            None => call.caller.domain_id,
        };
        let parent = accessible_domain(state, call, parent_id)?;
        if sibling_named(state, Some(parent_id), &name, None) {
            return Err(ApiError::invalid_param(format!(
                "Domain with name {name} already exists for the parent id={parent_id}"
            )));
        }
        if state.identity.domains.get(&id).is_some() {
            return Err(ApiError::invalid_param(format!(
                "Domain with id {id} already exists"
            )));
        }
        let facts = DomainFacts {
            domain_id: id,
            name: name.as_str().into(),
            parent_id: Some(parent_id),
            path: format!("{}/{}", parent.facts.path.trim_end_matches('/'), name),
            network_domain: call.str("networkdomain").map(Into::into),
        };
        Ok(vec![call.event(EventBody::Domain(DomainEvent::Create(
            DomainLifecycle { domain: facts },
        )))])
    })
    .await?;
    domain_reply(ctx, id)
}

async fn list_domains(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let level = call.int("level")?;
    let keyword = call.str("keyword");
    let listall = call.flag("listall");
    let caller_domain = call.caller.domain_id;
    let rows: Vec<Value> = state
        .identity
        .domains
        .values()
        .filter(|d| {
            let in_scope = if listall || id.is_some() || name.is_some() || level.is_some() {
                call.caller.may_access_domain(&state, d.facts.domain_id)
            } else {
                d.facts.domain_id == caller_domain
            };
            in_scope
                && id.is_none_or(|id| d.facts.domain_id == id)
                && name.is_none_or(|n| d.facts.name.eq_ignore_ascii_case(n))
                && level.is_none_or(|l| i64::from(d.level) == l)
                && keyword_matches(keyword, &[&d.facts.name])
        })
        .map(|d| domain_json(&state, d))
        .collect();
    let (count, items) = paging.apply(rows);
    Ok(Reply::List {
        key: "domain",
        count,
        items,
    })
}

async fn update_domain(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(IDENTITY, |state| {
        let domain = accessible_domain(state, call, id)?;
        let mut facts = domain.facts.clone();
        if let Some(name) = call.str("name") {
            if facts.parent_id.is_none() {
                return Err(ApiError::invalid_param(
                    "ROOT domain can not be edited with a new name",
                ));
            }
            if name.contains('/') {
                return Err(ApiError::invalid_param(
                    "Domain name can't contain the '/' character",
                ));
            }
            if sibling_named(state, facts.parent_id, name, Some(id)) {
                return Err(ApiError::invalid_param(format!(
                    "Domain with name {name} already exists for the same parent"
                )));
            }
            let parent_path = facts
                .path
                .rsplit_once('/')
                .map(|(p, _)| p.to_owned())
                .unwrap_or_default();
            facts.path = format!("{parent_path}/{name}");
            facts.name = name.into();
        }
        if let Some(network_domain) = call.params.get("networkdomain") {
            facts.network_domain = Some(network_domain.into());
        }
        Ok(vec![call.event(EventBody::Domain(DomainEvent::Update(
            DomainLifecycle { domain: facts },
        )))])
    })
    .await?;
    domain_reply(ctx, id)
}

/// The events that delete `root` and, with `cleanup`, everything under it, deepest first.
fn deletion_events(state: &State, root: Uuid, cleanup: bool) -> Result<Vec<EventBody>, ApiError> {
    let mut domains: Vec<&DomainRow> = state
        .identity
        .domains
        .values()
        .filter(|d| state.identity.is_in_subtree(d.facts.domain_id, root))
        .collect();
    domains.sort_by_key(|d| std::cmp::Reverse(d.level));
    let accounts: Vec<_> = state
        .identity
        .accounts
        .values()
        .filter(|a| state.identity.is_in_subtree(a.facts.domain_id, root))
        .collect();
    if !cleanup && (domains.len() > 1 || !accounts.is_empty()) {
        return Err(ApiError::in_use(format!(
            "Can't delete the domain yet because it has {} child domain(s) and {} account(s); use cleanup=true to delete them with it",
            domains.len() - 1,
            accounts.len()
        )));
    }
    let mut events: Vec<EventBody> = accounts
        .iter()
        .map(|a| {
            EventBody::Account(AccountEvent::Delete(AccountRef {
                account_id: a.facts.account_id,
                name: a.facts.name.clone(),
                domain_id: a.facts.domain_id,
            }))
        })
        .collect();
    events.extend(domains.iter().map(|d| {
        EventBody::Domain(DomainEvent::Delete(DomainDeleted {
            domain: d.facts.clone(),
            cleanup,
        }))
    }));
    Ok(events)
}

async fn delete_domain(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let cleanup = call.flag("cleanup");
    let path = {
        let state = ctx.models.read();
        let domain = accessible_domain(&state, call, id)?;
        if domain.facts.parent_id.is_none() {
            return Err(ApiError::invalid_param("Can't delete the ROOT domain"));
        }
        if call.caller.domain_id == id {
            return Err(ApiError::permission_denied(
                "A domain admin can't delete their own domain",
            ));
        }
        deletion_events(&state, id, cleanup)?;
        domain.facts.path.clone()
    };
    Ok(Reply::Async(AsyncWork {
        instance_type: Some("Domain"),
        instance_id: Some(id),
        event_type: "DOMAIN.DELETE",
        description: format!("deleting domain {path}"),
        create_id: None,
        run: Box::new(move |job| {
            async move {
                job.ctx
                    .decide(IDENTITY, |state| {
                        if state.identity.domains.get(&id).is_none() {
                            return Err(ApiError::invalid_param(format!(
                                "Unable to find domain by id {id}"
                            )));
                        }
                        Ok(deletion_events(state, id, cleanup)?
                            .into_iter()
                            .map(|body| job.event(body))
                            .collect())
                    })
                    .await?;
                job.ctx.forget_secrets();
                Ok(Reply::success())
            }
            .boxed()
        }),
    }))
}
