//! Virtual routers (`listRouters`, `startRouter`, `stopRouter`, `rebootRouter`,
//! `destroyRouter`) and the Ledgerstack test extension `listRouterConfigurations`, which shows
//! each router's configuration as the network driver programmed it next to the one the log
//! implies.
//!
//! A router action is a driver request (`ROUTER.*` in state `Started`): the router moves to
//! `Starting`/`Stopping` at once and settles when the driver answers; the job waits for that
//! answer and fails with the driver's text (534) when it refuses.

use engine::event::vm::{RouterFacts, RouterLifecycle};
use engine::event::{EventBody, RouterEvent};
use engine::time::Timestamp;
use projections::State;
use projections::driver::network::NetworkDriver;
use projections::network::{RouterRow, RouterState};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::date;
use crate::commands::render::{merge, owner_fields};
use crate::commands::volumes::{accessible_row, listed, zone_name};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobMeta};
use crate::network_implementation::ROUTER_OFFERING;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

/// The router software version `listRouters` reports (CloudStack's `version`): routers are
/// simulated, so they always run the current one.
const ROUTER_VERSION: &str = "4.22.0";

/// The name of the system offering routers run with (see [`ROUTER_OFFERING`]).
const ROUTER_OFFERING_NAME: &str = "System Offering For Software Router";

const ROUTER_FIELDS: &[ResponseField] = &[
    field("id", "string", "the id of the router"),
    field("name", "string", "the name of the router"),
    field("state", "string", "the state of the router"),
    field("zoneid", "string", "the Zone ID for the router"),
    field("zonename", "string", "the Zone name for the router"),
    field(
        "networkdomain",
        "string",
        "the network domain for the router",
    ),
    field("gateway", "string", "the gateway for the router"),
    field("hostid", "string", "the host ID for the router"),
    field("hostname", "string", "the hostname for the router"),
    field(
        "hypervisor",
        "string",
        "the hypervisor on which the template runs",
    ),
    field("publicip", "string", "the public IP address for the router"),
    field(
        "guestipaddress",
        "string",
        "the guest IP address for the router",
    ),
    field(
        "guestnetworkid",
        "string",
        "the ID of the corresponding guest network",
    ),
    field(
        "guestnetworkname",
        "string",
        "the name of the corresponding guest network",
    ),
    field("vpcid", "string", "VPC the router belongs to"),
    field("vpcname", "string", "the name of VPC the router belongs to"),
    field("templateid", "string", "the template ID for the router"),
    field(
        "created",
        "date",
        "the date and time the router was created",
    ),
    field(
        "account",
        "string",
        "the account associated with the router",
    ),
    field(
        "domainid",
        "string",
        "the domain ID associated with the router",
    ),
    field("domain", "string", "the domain associated with the router"),
    field(
        "serviceofferingid",
        "string",
        "the ID of the service offering of the virtual machine",
    ),
    field(
        "serviceofferingname",
        "string",
        "the name of the service offering of the virtual machine",
    ),
    field(
        "isredundantrouter",
        "boolean",
        "if this router is an redundant virtual router",
    ),
    field(
        "redundantstate",
        "string",
        "the state of redundant virtual router",
    ),
    field("version", "string", "the version of template"),
    field("role", "string", "role of the domain router"),
    field(
        "requiresupgrade",
        "boolean",
        "true if the router template requires upgrader",
    ),
];

const ROUTER_CONFIGURATION_FIELDS: &[ResponseField] = &[
    field("routerid", "string", "the id of the router"),
    field("name", "string", "the name of the router"),
    field("state", "string", "the router's state in the read models"),
    field(
        "running",
        "boolean",
        "whether the simulated router runs (absent: the simulator does not know it)",
    ),
    field(
        "matches",
        "boolean",
        "true when the configuration the simulator programmed equals the one the log implies",
    ),
    field(
        "programmed",
        "object",
        "the configuration the simulator programmed (absent: the simulator does not know the router)",
    ),
    field(
        "expected",
        "object",
        "the configuration the event log implies for the router",
    ),
];

/// The router commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listRouters",
        kind: Kind::Sync,
        roles: Roles::ADMINS,
        description: "List routers.",
        params: &[
            param("id", T::Uuid, "the ID of the disk router"),
            param("name", T::String, "the name of the router"),
            param("state", T::String, "the state of the router"),
            param("zoneid", T::Uuid, "the Zone ID of the router"),
            param("podid", T::Uuid, "the Pod ID of the router"),
            param("clusterid", T::Uuid, "the cluster ID of the router"),
            param("hostid", T::Uuid, "the host ID of the router"),
            param("networkid", T::Uuid, "list by network id"),
            param("vpcid", T::Uuid, "List networks by VPC"),
            param(
                "forvpc",
                T::Boolean,
                "if true is passed for this parameter, list only VPC routers",
            ),
            param(
                "version",
                T::String,
                "list virtual router elements by version",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: ROUTER_FIELDS,
        related: "startRouter,stopRouter,rebootRouter,destroyRouter",
        manual_clock_only: false,
        handler: handler!(list_routers),
    },
    CommandSpec {
        name: "startRouter",
        kind: Kind::Async,
        roles: Roles::ADMINS,
        description: "Starts a router.",
        params: &[required("id", T::Uuid, "the ID of the router")],
        inherits: Inherits::Nothing,
        response: ROUTER_FIELDS,
        related: "listRouters",
        manual_clock_only: false,
        handler: handler!(start_router),
    },
    CommandSpec {
        name: "stopRouter",
        kind: Kind::Async,
        roles: Roles::ADMINS,
        description: "Stops a router.",
        params: &[
            required("id", T::Uuid, "the ID of the router"),
            param(
                "forced",
                T::Boolean,
                "Force stop the VM (the simulated router always stops). The caller knows the VM is stopped.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: ROUTER_FIELDS,
        related: "listRouters",
        manual_clock_only: false,
        handler: handler!(stop_router),
    },
    CommandSpec {
        name: "rebootRouter",
        kind: Kind::Async,
        roles: Roles::ADMINS,
        description: "Reboots a router.",
        params: &[
            required("id", T::Uuid, "the ID of the router"),
            param(
                "forced",
                T::Boolean,
                "Force reboot the router (Router is force Stopped and then Started)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: ROUTER_FIELDS,
        related: "listRouters",
        manual_clock_only: false,
        handler: handler!(reboot_router),
    },
    CommandSpec {
        name: "destroyRouter",
        kind: Kind::Async,
        roles: Roles::ADMINS,
        description: "Destroys a router.",
        params: &[required("id", T::Uuid, "the ID of the router")],
        inherits: Inherits::Nothing,
        response: ROUTER_FIELDS,
        related: "listRouters",
        manual_clock_only: false,
        handler: handler!(destroy_router),
    },
    CommandSpec {
        name: "listRouterConfigurations",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Ledgerstack simulator extension: lists each virtual router's configuration as the simulated network driver programmed it and as the event log implies it, and whether they match.",
        params: &[
            param("routerid", T::Uuid, "only this router"),
            param(
                "networkid",
                T::Uuid,
                "only the router serving this guest network",
            ),
        ],
        inherits: Inherits::Paging,
        response: ROUTER_CONFIGURATION_FIELDS,
        related: "listRouters,listSecurityGroupConfigurations",
        manual_clock_only: false,
        handler: handler!(list_router_configurations),
    },
];

// ---------------------------------------------------------------------------------------------
// JSON views

/// A router as CloudStack's DomainRouterResponse shows it; `shown_state` is its `state` (the
/// read model's, or `Destroyed` for a router rendered after its destroy).
pub fn router_json(
    state: &State,
    facts: &RouterFacts,
    shown_state: &str,
    created: Timestamp,
) -> Value {
    let network = facts
        .network_id
        .and_then(|id| state.compute.networks.get(&id));
    let vpc = facts.vpc_id.and_then(|id| state.network.vpcs.get(&id));
    let host = facts
        .host_id
        .and_then(|id| state.infrastructure.hosts.get(&id));
    let network_domain = network
        .and_then(|n| n.facts.network_domain.clone())
        .or_else(|| vpc.and_then(|v| v.facts.network_domain.clone()));
    let value = json!({
        "id": facts.router_id,
        "name": facts.name,
        "state": shown_state,
        "zoneid": facts.zone_id,
        "zonename": zone_name(state, facts.zone_id),
        "networkdomain": network_domain,
        "gateway": network.and_then(|n| n.facts.gateway),
        "hostid": facts.host_id,
        "hostname": host.map(|h| h.facts.name.clone()),
        "hypervisor": host.map(|h| h.facts.hypervisor.clone()),
        "publicip": facts.public_ip,
        "guestipaddress": facts.guest_ip,
        "guestnetworkid": facts.network_id,
        "guestnetworkname": network.map(|n| n.facts.name.clone()),
        "vpcid": facts.vpc_id,
        "vpcname": vpc.map(|v| v.facts.name.clone()),
        "templateid": facts.template_id,
        "created": date(created),
        "serviceofferingid": facts.service_offering_id,
        "serviceofferingname": (facts.service_offering_id == ROUTER_OFFERING).then_some(ROUTER_OFFERING_NAME),
        "isredundantrouter": false,
        "redundantstate": "UNKNOWN",
        "version": ROUTER_VERSION,
        "role": "VIRTUAL_ROUTER",
        "requiresupgrade": false,
        "healthcheckfailed": false,
    });
    merge(
        value,
        owner_fields(state, facts.account_id, facts.domain_id),
    )
}

/// The `router` reply for router `id`.
pub fn router_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    let row = state
        .network
        .routers
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find router by id {id}.")))?;
    Ok(Reply::Object {
        key: "router",
        value: router_json(state, &row.facts, row.state.name(), row.created),
    })
}

/// The `router` reply of a `destroyRouter` job rendered after a restart
/// (`commands::render_job_result`): the router's row is gone, only its id and fate remain.
pub fn destroyed_router_reply(id: Uuid) -> Reply {
    Reply::Object {
        key: "router",
        value: json!({"id": id, "state": "Destroyed"}),
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// The router `id`, which the caller may act on (431 when unknown, 531 when not theirs).
fn accessible_router<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
) -> Result<&'s RouterRow, ApiError> {
    let row = state.network.routers.get(&id);
    accessible_row(state, call, "router", id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })
}

/// 431 while the driver works on the router (a start, stop, reboot or destroy in flight).
fn not_busy(row: &RouterRow) -> Result<(), ApiError> {
    if row.pending.is_some() {
        return Err(ApiError::invalid_param(format!(
            "Unable to act on router {} because it is in state {}: another operation is in progress",
            row.facts.name,
            row.state.name()
        )));
    }
    Ok(())
}

/// A job acting on router `id`.
fn router_job(id: Uuid, event_type: &'static str, description: String) -> JobMeta {
    JobMeta::on("DomainRouter", id, event_type, description)
}

fn lifecycle(row: &RouterRow) -> RouterLifecycle {
    RouterLifecycle {
        router: row.facts.clone(),
    }
}

async fn start_router(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    jobs::submit_request(
        ctx,
        call,
        router_job(id, "ROUTER.START", format!("starting router {id}")),
        |state| {
            let row = accessible_router(state, call, id)?;
            not_busy(row)?;
            if row.state != RouterState::Stopped {
                return Err(ApiError::invalid_param(format!(
                    "Unable to start router {} because it is in state {}",
                    row.facts.name,
                    row.state.name()
                )));
            }
            Ok(EventBody::Router(RouterEvent::Start(lifecycle(row))))
        },
        move |state| router_reply(state, id),
    )
    .await
}

async fn stop_router(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    jobs::submit_request(
        ctx,
        call,
        router_job(id, "ROUTER.STOP", format!("stopping router {id}")),
        |state| {
            let row = accessible_router(state, call, id)?;
            not_busy(row)?;
            if row.state != RouterState::Running {
                return Err(ApiError::invalid_param(format!(
                    "Unable to stop router {} because it is in state {}",
                    row.facts.name,
                    row.state.name()
                )));
            }
            Ok(EventBody::Router(RouterEvent::Stop(lifecycle(row))))
        },
        move |state| router_reply(state, id),
    )
    .await
}

async fn reboot_router(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    jobs::submit_request(
        ctx,
        call,
        router_job(id, "ROUTER.REBOOT", format!("rebooting router {id}")),
        |state| {
            let row = accessible_router(state, call, id)?;
            not_busy(row)?;
            // CloudStack reboots only a running router, and says so with a 534.
            if row.state != RouterState::Running {
                return Err(ApiError::unavailable(format!(
                    "Unable to reboot domR, it is not in right state {}",
                    row.state.name()
                )));
            }
            Ok(EventBody::Router(RouterEvent::Reboot(lifecycle(row))))
        },
        move |state| router_reply(state, id),
    )
    .await
}

async fn destroy_router(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    // The router is gone from the read models once the driver confirms: the reply shows it
    // from what it was when the destroy was asked for.
    let (facts, created) = {
        let state = ctx.models.read();
        let row = accessible_router(&state, call, id)?;
        (row.facts.clone(), row.created)
    };
    jobs::submit_request(
        ctx,
        call,
        router_job(id, "ROUTER.DESTROY", format!("destroying router {id}")),
        |state| {
            let row = accessible_router(state, call, id)?;
            not_busy(row)?;
            Ok(EventBody::Router(RouterEvent::Destroy(lifecycle(row))))
        },
        move |state| {
            Ok(Reply::Object {
                key: "router",
                value: router_json(state, &facts, "Destroyed", created),
            })
        },
    )
    .await
}

async fn list_routers(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let wanted_state = call.str("state");
    let zone_id = call.uuid("zoneid")?;
    let pod_id = call.uuid("podid")?;
    let cluster_id = call.uuid("clusterid")?;
    let host_id = call.uuid("hostid")?;
    let network_id = call.uuid("networkid")?;
    let vpc_id = call.uuid("vpcid")?;
    let for_vpc = call.bool_opt("forvpc");
    let version = call.str("version");
    let keyword = call.str("keyword");
    // A network's router may be its VPC's.
    let network_router = network_id.map(|n| {
        state
            .network
            .router_of_network(&state.compute, n)
            .map(|r| r.facts.router_id)
    });
    let host_of = |host: Option<Uuid>| host.and_then(|h| state.infrastructure.hosts.get(&h));
    let mut rows: Vec<&RouterRow> = state
        .network
        .routers
        .values()
        .filter(|row| {
            let r = &row.facts;
            let host = host_of(r.host_id);
            listed(&state, call, scope, id.is_some(), r.account_id, r.domain_id)
                && id.is_none_or(|id| r.router_id == id)
                && name.is_none_or(|n| r.name.eq_ignore_ascii_case(n))
                && wanted_state.is_none_or(|s| row.state.name().eq_ignore_ascii_case(s))
                && zone_id.is_none_or(|z| r.zone_id == z)
                && pod_id.is_none_or(|p| host.is_some_and(|h| h.facts.pod_id == p))
                && cluster_id.is_none_or(|c| host.is_some_and(|h| h.facts.cluster_id == c))
                && host_id.is_none_or(|h| r.host_id == Some(h))
                && network_router.is_none_or(|found| found == Some(r.router_id))
                && vpc_id.is_none_or(|v| r.vpc_id == Some(v))
                && for_vpc.is_none_or(|vpc| r.vpc_id.is_some() == vpc)
                && version.is_none_or(|v| v == ROUTER_VERSION)
                && keyword_matches(keyword, &[&r.name])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.router_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|r| router_json(&state, &r.facts, r.state.name(), r.created))
            .collect(),
    );
    Ok(Reply::List {
        key: "router",
        count,
        items,
    })
}

/// One router's configuration, programmed and expected.
fn router_configuration(ctx: &Ctx, state: &State, row: &RouterRow) -> Result<Value, ApiError> {
    let id = row.facts.router_id;
    let programmed = ctx.simulator.router_config(id);
    let expected = state.network.router_config(&state.compute, id);
    let to_json = |what: &str, value: Result<Value, serde_json::Error>| {
        value.map_err(|e| {
            ApiError::internal(format!(
                "the {what} configuration of router {id} does not serialise: {e}"
            ))
        })
    };
    let matches = programmed.as_ref() == Some(&expected);
    Ok(json!({
        "routerid": id,
        "name": row.facts.name,
        "state": row.state.name(),
        "running": ctx.simulator.router_running(id),
        "matches": matches,
        "programmed": to_json("programmed", serde_json::to_value(&programmed))?,
        "expected": to_json("expected", serde_json::to_value(&expected))?,
    }))
}

async fn list_router_configurations(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let router_id = call.uuid("routerid")?;
    let network_id = call.uuid("networkid")?;
    let network_router = network_id.map(|n| {
        state
            .network
            .router_of_network(&state.compute, n)
            .map(|r| r.facts.router_id)
    });
    let keyword = call.str("keyword");
    let mut rows: Vec<&RouterRow> = state
        .network
        .routers
        .values()
        .filter(|row| {
            router_id.is_none_or(|id| row.facts.router_id == id)
                && network_router.is_none_or(|found| found == Some(row.facts.router_id))
                && keyword_matches(keyword, &[&row.facts.name])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.router_id));
    let items = rows
        .into_iter()
        .map(|row| router_configuration(ctx, &state, row))
        .collect::<Result<Vec<_>, _>>()?;
    let (count, items) = paging.apply(items);
    Ok(Reply::List {
        key: "routerconfiguration",
        count,
        items,
    })
}
