//! VPCs (`createVPC`, `listVPCs`, `updateVPC`, `restartVPC`, `deleteVPC`) and their offerings
//! (`listVPCOfferings`).
//!
//! A VPC is implemented when it is created: its source-NAT address and its router are facts of
//! the creation, decided on the [`ALLOCATION`](crate::allocation::ALLOCATION) stream with the
//! VPC limit (DESIGN.md invariant 8), and the job waits for the router's start. Its tiers are
//! guest networks created with `createNetwork vpcid=`, all served by that one router.
//! Restarting re-applies the router's whole configuration; deleting (once no tier is left)
//! releases the VPC's addresses and destroys its router.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use compact_str::CompactString;
use engine::event::services::VpcFacts;
use engine::event::vm::RouterLifecycle;
use engine::event::{EventBody, EventState, NetEvent, NewEvent, RouterEvent, VpcEvent};
use projections::State;
use projections::catalog::Created;
use projections::network::{RouterState, VpcRow};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::{ResourceType, check_limit, owner, parse_cidr};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::networks::{network_json, services_json, settle_router};
use crate::commands::public_ips::{cleanup_bodies, ip_busy};
use crate::commands::render::{merge, owner_fields};
use crate::commands::tags::tags_json;
use crate::commands::volumes::{accessible_row, listed, zone_name};
use crate::commands::{date, row_reply};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobMeta};
use crate::network_implementation::{RouterTarget, router_events};
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

/// The provider of every VPC service: the VPC's virtual router.
const VPC_PROVIDER: &str = "VpcVirtualRouter";

const VPC_FIELDS: &[ResponseField] = &[
    field("id", "string", "the id of the VPC"),
    field("name", "string", "the name of the VPC"),
    field(
        "displaytext",
        "string",
        "an alternate display text of the VPC.",
    ),
    field(
        "state",
        "string",
        "state of the VPC. Can be Inactive/Enabled",
    ),
    field("zoneid", "string", "zone id of the vpc"),
    field(
        "zonename",
        "string",
        "the name of the zone the VPC belongs to",
    ),
    field("service", "list", "the list of supported services"),
    field(
        "cidr",
        "string",
        "the cidr the VPC; all VPC guest networks' cidrs should be within this CIDR",
    ),
    field(
        "vpcofferingid",
        "string",
        "vpc offering id the VPC is created from",
    ),
    field(
        "vpcofferingname",
        "string",
        "vpc offering name the VPC is created from",
    ),
    field("created", "date", "the date this VPC was created"),
    field("account", "string", "the owner of the VPC"),
    field("domainid", "string", "the domain id of the VPC owner"),
    field("domain", "string", "the domain name of the owner"),
    field(
        "network",
        "list",
        "the list of networks belongign to the VPC",
    ),
    field("restartrequired", "boolean", "true VPC requires restart"),
    field("networkdomain", "string", "the network domain of the VPC"),
    field(
        "tags",
        "list",
        "the list of resource tags associated with the project",
    ),
    field(
        "fordisplay",
        "boolean",
        "is vpc for display to the regular user",
    ),
    field(
        "redundantvpcrouter",
        "boolean",
        "if this VPC has redundant router",
    ),
    field(
        "distributedvpcrouter",
        "boolean",
        "is VPC uses distributed router for one hop forwarding and host based network ACL's",
    ),
];

const VPC_OFFERING_FIELDS: &[ResponseField] = &[
    field("id", "string", "the id of the vpc offering"),
    field("name", "string", "the name of the vpc offering"),
    field(
        "displaytext",
        "string",
        "an alternate display text of the vpc offering.",
    ),
    field("created", "date", "the date this vpc offering was created"),
    field(
        "isdefault",
        "boolean",
        "true if vpc offering is default, false otherwise",
    ),
    field(
        "state",
        "string",
        "state of the vpc offering. Can be Disabled/Enabled",
    ),
    field(
        "service",
        "list",
        "the list of supported services for the vpc offering",
    ),
    field(
        "distributedvpcrouter",
        "boolean",
        " indicates if the vpc offering supports distributed router for one-hop forwarding",
    ),
    field(
        "supportsregionLevelvpc",
        "boolean",
        " indicated if the offering can support region level vpc",
    ),
];

/// The VPC commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listVPCOfferings",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists VPC offerings",
        params: &[
            param("id", T::Uuid, "list VPC offerings by id"),
            param("name", T::String, "list VPC offerings by name"),
            param(
                "displaytext",
                T::String,
                "list VPC offerings by display text",
            ),
            param(
                "isdefault",
                T::Boolean,
                "true if need to list only default VPC offerings. Default value is false",
            ),
            param(
                "supportedservices",
                T::List,
                "list VPC offerings supporting certain services",
            ),
            param("state", T::String, "list VPC offerings by state"),
            param(
                "zoneid",
                T::Uuid,
                "id of zone VPC offering is associated with",
            ),
            param(
                "domainid",
                T::Uuid,
                "list VPC offerings available for VPC creation in specific domain",
            ),
        ],
        inherits: Inherits::Paging,
        response: VPC_OFFERING_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_vpc_offerings),
    },
    CommandSpec {
        name: "createVPC",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates a VPC",
        params: &[
            required("zoneid", T::Uuid, "the ID of the availability zone"),
            required("name", T::String, "the name of the VPC"),
            param(
                "displaytext",
                T::String,
                "The display text of the VPC, defaults to its 'name'.",
            ),
            param(
                "cidr",
                T::String,
                "the cidr of the VPC. All VPC guest networks' cidrs should be within this CIDR",
            ),
            required("vpcofferingid", T::Uuid, "the ID of the VPC offering"),
            param(
                "networkdomain",
                T::String,
                "VPC network domain. All networks inside the VPC will belong to this domain",
            ),
            param(
                "start",
                T::Boolean,
                "If set to false, the VPC won't start (VPC VR will not get allocated) until its first network gets implemented. True by default.",
            ),
            param(
                "account",
                T::String,
                "the account associated with the VPC. Must be used with the domainId parameter.",
            ),
            param(
                "domainid",
                T::Uuid,
                "the domain ID associated with the VPC. If used with the account parameter returns the VPC associated with the account for the specified domain.",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "an optional field, whether to the display the vpc to the end user or not",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VPC_FIELDS,
        related: "listVPCs,updateVPC,deleteVPC,restartVPC",
        manual_clock_only: false,
        handler: handler!(create_vpc),
    },
    CommandSpec {
        name: "listVPCs",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists VPCs",
        params: &[
            param("id", T::Uuid, "list VPC by id"),
            param("zoneid", T::Uuid, "list by zone"),
            param("name", T::String, "list by name of the VPC"),
            param("displaytext", T::String, "List by display text of the VPC"),
            param(
                "cidr",
                T::String,
                "list by cidr of the VPC. All VPC guest networks' cidrs should be within this CIDR",
            ),
            param("vpcofferingid", T::Uuid, "list by ID of the VPC offering"),
            param(
                "supportedservices",
                T::List,
                "list VPC supporting certain services",
            ),
            param("state", T::String, "list VPCs by state"),
            param(
                "restartrequired",
                T::Boolean,
                "list VPCs by restartRequired option",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "list resources by display flag; only ROOT admin is eligible to pass this parameter",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: VPC_FIELDS,
        related: "createVPC,updateVPC,deleteVPC,restartVPC",
        manual_clock_only: false,
        handler: handler!(list_vpcs),
    },
    CommandSpec {
        name: "updateVPC",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Updates a VPC",
        params: &[
            required("id", T::Uuid, "the id of the VPC"),
            param("name", T::String, "the name of the VPC"),
            param("displaytext", T::String, "the display text of the VPC"),
            param(
                "customid",
                T::String,
                "an optional field, in case you want to set a custom id to the resource. Allowed to Root Admins only (ignored by Ledgerstack)",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "an optional field, whether to the display the vpc to the end user or not",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VPC_FIELDS,
        related: "createVPC,listVPCs,deleteVPC,restartVPC",
        manual_clock_only: false,
        handler: handler!(update_vpc),
    },
    CommandSpec {
        name: "restartVPC",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Restarts a VPC",
        params: &[
            required("id", T::Uuid, "the id of the VPC"),
            param("cleanup", T::Boolean, "If cleanup old network elements"),
            param(
                "makeredundant",
                T::Boolean,
                "Turn a single VPC into a redundant one (not supported by Ledgerstack: refused).",
            ),
            param(
                "livepatch",
                T::Boolean,
                "Live patches the router software before restarting it. This parameter will only work when 'cleanup' is false.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "createVPC,listVPCs,updateVPC,deleteVPC",
        manual_clock_only: false,
        handler: handler!(restart_vpc),
    },
    CommandSpec {
        name: "deleteVPC",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a VPC",
        params: &[required("id", T::Uuid, "the ID of the VPC")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "createVPC,listVPCs,updateVPC,restartVPC",
        manual_clock_only: false,
        handler: handler!(delete_vpc),
    },
];

// ---------------------------------------------------------------------------------------------
// JSON views

/// A VPC offering as CloudStack's VpcOfferingResponse shows it.
fn vpc_offering_json(row: &Created<engine::event::services::VpcOfferingFacts>) -> Value {
    let o = &row.facts;
    json!({
        "id": o.vpc_offering_id,
        "name": o.name,
        "displaytext": o.display_text,
        "created": date(row.created),
        "isdefault": o.is_default,
        "state": o.state,
        "service": services_json(&o.services, VPC_PROVIDER),
        "distributedvpcrouter": false,
        "supportsregionLevelvpc": false,
        "fornsx": false,
        "networkmode": "NATTED",
        "internetprotocol": "IPv4",
    })
}

/// CloudStack's Vpc.State: `Inactive` once a delete was asked for, `Enabled` before.
fn vpc_state(row: &VpcRow) -> &'static str {
    if row.deleting { "Inactive" } else { "Enabled" }
}

/// A VPC as CloudStack's VpcResponse shows it, with its tiers.
pub fn vpc_json(state: &State, row: &VpcRow) -> Value {
    let v = &row.facts;
    let offering = state.network.vpc_offerings.get(&v.vpc_offering_id);
    let mut tiers: Vec<_> = state
        .compute
        .networks
        .values()
        .filter(|n| n.facts.vpc_id == Some(v.vpc_id))
        .collect();
    tiers.sort_by_key(|n| (n.created, n.facts.network_id));
    let value = json!({
        "id": v.vpc_id,
        "name": v.name,
        "displaytext": v.display_text,
        "state": vpc_state(row),
        "zoneid": v.zone_id,
        "zonename": zone_name(state, v.zone_id),
        "service": offering.map(|o| services_json(&o.facts.services, VPC_PROVIDER)),
        "cidr": v.cidr,
        "vpcofferingid": v.vpc_offering_id,
        "vpcofferingname": offering.map(|o| o.facts.name.clone()),
        "created": date(row.created),
        "network": tiers.into_iter().map(|n| network_json(state, n)).collect::<Vec<_>>(),
        "restartrequired": false,
        "networkdomain": v.network_domain,
        "tags": tags_json(state, v.vpc_id),
        "fordisplay": true,
        "redundantvpcrouter": false,
        "distributedvpcrouter": false,
        "regionlevelvpc": false,
    });
    merge(value, owner_fields(state, v.account_id, v.domain_id))
}

/// The `vpc` reply for VPC `id`.
pub fn vpc_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(state.network.vpcs.get(&id), "vpc", "vpc", id, |r| {
        vpc_json(state, r)
    })
}

// ---------------------------------------------------------------------------------------------
// Offerings

async fn list_vpc_offerings(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let display_text = call.str("displaytext");
    let is_default = call.bool_opt("isdefault");
    let services = call.str("supportedservices").map(parse_list);
    let wanted_state = call.str("state");
    if let Some(zone) = call.uuid("zoneid")?
        && state.catalog.zones.get(&zone).is_none()
    {
        return Err(ApiError::invalid_param("Please specify a valid zone id"));
    }
    if let Some(domain) = call.uuid("domainid")?
        && state.identity.domains.get(&domain).is_none()
    {
        return Err(ApiError::invalid_param("Please specify a valid domain id"));
    }
    let keyword = call.str("keyword");
    let mut rows: Vec<_> = state
        .network
        .vpc_offerings
        .values()
        .filter(|row| {
            let o = &row.facts;
            id.is_none_or(|id| o.vpc_offering_id == id)
                && name.is_none_or(|n| o.name.eq_ignore_ascii_case(n))
                && display_text.is_none_or(|d| o.display_text.eq_ignore_ascii_case(d))
                && is_default.is_none_or(|d| o.is_default == d)
                && services.as_ref().is_none_or(|wanted| {
                    wanted
                        .iter()
                        .all(|s| o.services.iter().any(|have| have.eq_ignore_ascii_case(s)))
                })
                && wanted_state.is_none_or(|s| o.state.eq_ignore_ascii_case(s))
                && keyword_matches(keyword, &[&o.name, &o.display_text])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.vpc_offering_id));
    let (count, items) = paging.apply(rows.into_iter().map(vpc_offering_json).collect());
    Ok(Reply::List {
        key: "vpcoffering",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// VPCs

/// The VPC `id`, which the caller may act on (431 when unknown, 531 when not theirs).
fn accessible_vpc<'s>(state: &'s State, call: &Call, id: Uuid) -> Result<&'s VpcRow, ApiError> {
    let row = state.network.vpcs.get(&id);
    accessible_row(state, call, "vpc", id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })
}

/// 431 unless the VPC is `Enabled` and waits for no driver command.
fn idle(row: &VpcRow) -> Result<(), ApiError> {
    if row.deleting {
        return Err(ApiError::invalid_param(
            "Unable to find Enabled VPC by id specified",
        ));
    }
    if row.pending.is_some() {
        return Err(ApiError::invalid_param(format!(
            "VPC {} is being restarted: try again once that job has finished",
            row.facts.name
        )));
    }
    Ok(())
}

/// True for an RFC 1918 (private) IPv4 prefix.
fn rfc1918(base: u32, prefix: u32) -> bool {
    [
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
    ]
    .into_iter()
    .any(|(net, bits)| {
        let mask = u32::MAX << (32 - bits);
        prefix >= bits && base & mask == u32::from(net)
    })
}

/// The VPC's super CIDR, checked as CloudStack does.
fn vpc_cidr(call: &Call) -> Result<CompactString, ApiError> {
    let cidr = call
        .str("cidr")
        .map(str::trim)
        .ok_or_else(|| ApiError::invalid_param("VPC cidr or cidr size must be specified"))?;
    let (base, prefix) = parse_cidr(cidr)
        .ok_or_else(|| ApiError::invalid_param(format!("Invalid CIDR specified {cidr}")))?;
    if !rfc1918(base, prefix) {
        return Err(ApiError::invalid_param(format!(
            "Guest Cidr {cidr} is not RFC1918 compliant"
        )));
    }
    Ok(cidr.into())
}

async fn create_vpc(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let zone_id = call.required_uuid("zoneid")?;
    let offering_id = call.required_uuid("vpcofferingid")?;
    let name = call.required("name")?.trim().to_owned();
    if name.is_empty() {
        return Err(ApiError::invalid_param("VPC name cannot be empty"));
    }
    let display_text = call
        .str("displaytext")
        .map_or_else(|| name.clone(), str::to_owned);
    let cidr = vpc_cidr(call)?;
    let network_domain = call
        .str("networkdomain")
        .map(str::trim)
        .map(CompactString::from);
    let start = call.bool_opt("start").unwrap_or(true);
    let vpc_id = Uuid::new_v4();
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::creating("Vpc", vpc_id, "VPC.CREATE", format!("creating vpc {name}")),
        |state, ids| {
            let (account_id, domain_id) = owner(call, state)?;
            check_limit(state, account_id, ResourceType::Vpc, 1)?;
            let zone = state
                .catalog
                .zones
                .get(&zone_id)
                .ok_or_else(|| ApiError::invalid_param("Can't find zone by id specified"))?;
            if zone.facts.allocation_state == "Disabled" && !call.caller.is_root_admin() {
                return Err(ApiError::permission_denied(
                    "Cannot perform this operation since specified Zone is currently disabled",
                ));
            }
            if state
                .network
                .vpc_offerings
                .get(&offering_id)
                .is_none_or(|o| o.facts.state != "Enabled")
            {
                return Err(ApiError::invalid_param(
                    "Unable to find vpc offering in Enabled state by specified id",
                ));
            }
            let facts = VpcFacts {
                vpc_id,
                name: name.as_str().into(),
                display_text: display_text.clone(),
                account_id,
                domain_id,
                zone_id,
                vpc_offering_id: offering_id,
                cidr: cidr.clone(),
                network_domain: network_domain
                    .clone()
                    .or_else(|| zone.facts.network_domain.clone()),
            };
            let (implementation, router) = router_events(
                state,
                call,
                RouterTarget {
                    network_id: None,
                    vpc_id: Some(vpc_id),
                    account_id,
                    domain_id,
                    zone_id,
                    guest_ip: None,
                },
                &BTreeSet::new(),
            )?;
            let mut events = vec![ids.event(call, EventBody::Vpc(VpcEvent::Create(facts)))];
            // The router's start is this job's driver command, so the VPC is ready when the
            // job ends (or the job fails with the driver's error); without `start` the router
            // stays down until restartVPC or startRouter.
            events.extend(
                implementation
                    .into_iter()
                    .filter(|e| e.state != EventState::Started),
            );
            if start {
                events.push(ids.request(
                    call,
                    EventBody::Router(RouterEvent::Start(RouterLifecycle { router })),
                ));
            }
            Ok(events)
        },
        move |state| vpc_reply(state, vpc_id),
    )
    .await
}

async fn list_vpcs(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let zone_id = call.uuid("zoneid")?;
    let name = call.str("name");
    let display_text = call.str("displaytext");
    let cidr = call.str("cidr");
    let offering_id = call.uuid("vpcofferingid")?;
    let services = call.str("supportedservices").map(parse_list);
    let wanted_state = call.str("state");
    let restart_required = call.bool_opt("restartrequired");
    let keyword = call.str("keyword");
    let mut rows: Vec<&VpcRow> = state
        .network
        .vpcs
        .values()
        .filter(|row| {
            let v = &row.facts;
            let offered = || {
                state
                    .network
                    .vpc_offerings
                    .get(&v.vpc_offering_id)
                    .map(|o| o.facts.services.clone())
                    .unwrap_or_default()
            };
            listed(&state, call, scope, id.is_some(), v.account_id, v.domain_id)
                && id.is_none_or(|id| v.vpc_id == id)
                && zone_id.is_none_or(|z| v.zone_id == z)
                && name.is_none_or(|n| v.name.eq_ignore_ascii_case(n))
                && display_text.is_none_or(|d| v.display_text.eq_ignore_ascii_case(d))
                && cidr.is_none_or(|c| v.cidr == c)
                && offering_id.is_none_or(|o| v.vpc_offering_id == o)
                && services.as_ref().is_none_or(|wanted| {
                    let have = offered();
                    wanted
                        .iter()
                        .all(|s| have.iter().any(|h| h.eq_ignore_ascii_case(s)))
                })
                && wanted_state.is_none_or(|s| vpc_state(row).eq_ignore_ascii_case(s))
                && restart_required.is_none_or(|r| !r)
                && keyword_matches(keyword, &[&v.name, &v.display_text])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.vpc_id));
    let (count, items) = paging.apply(rows.into_iter().map(|r| vpc_json(&state, r)).collect());
    Ok(Reply::List {
        key: "vpc",
        count,
        items,
    })
}

async fn update_vpc(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = call.str("name").map(str::trim).map(CompactString::from);
    if name.as_ref().is_some_and(|n| n.is_empty()) {
        return Err(ApiError::invalid_param("VPC name cannot be empty"));
    }
    let display_text = call.str("displaytext").map(str::to_owned);
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "Vpc",
            id,
            "VPC.UPDATE",
            format!("updating vpc. Vpc Id: {id}"),
        ),
        |state, ids| {
            let row = accessible_vpc(state, call, id)?;
            idle(row)?;
            let mut facts = row.facts.clone();
            if let Some(name) = &name {
                facts.name = name.clone();
            }
            if let Some(text) = &display_text {
                facts.display_text = text.clone();
            }
            if facts == row.facts {
                return Ok(vec![]);
            }
            Ok(vec![
                ids.event(call, EventBody::Vpc(VpcEvent::Update(facts))),
            ])
        },
        move |state| vpc_reply(state, id),
    )
    .await
}

async fn restart_vpc(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    if call.flag("makeredundant") {
        return Err(ApiError::invalid_param(
            "Redundant VPC routers are not supported",
        ));
    }
    settle_router(ctx, None, Some(id)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "Vpc",
            id,
            "VPC.RESTART",
            format!("restarting VPC. VPC Id: {id}"),
        ),
        |state, ids| {
            let row = accessible_vpc(state, call, id)?;
            idle(row)?;
            let restart = EventBody::Vpc(VpcEvent::Restart(row.facts.clone()));
            let router = state
                .network
                .router_for(&state.compute, None, Some(id))
                .and_then(|r| state.network.routers.get(&r));
            Ok(match router {
                // Nothing to re-apply: the restart is recorded as it is.
                None => vec![ids.event(call, restart)],
                Some(r) if r.pending.is_some() => {
                    return Err(ApiError::invalid_param(format!(
                        "Unable to restart VPC {}: its router {} is in state {}",
                        row.facts.name,
                        r.facts.name,
                        r.state.name()
                    )));
                }
                // A running router gets its whole configuration again.
                Some(r) if r.state == RouterState::Running => vec![ids.request(call, restart)],
                // A stopped one is started, with its whole configuration.
                Some(r) => vec![
                    ids.event(call, restart),
                    ids.request(
                        call,
                        EventBody::Router(RouterEvent::Start(RouterLifecycle {
                            router: r.facts.clone(),
                        })),
                    ),
                ],
            })
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn delete_vpc(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    settle_router(ctx, None, Some(id)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "Vpc",
            id,
            "VPC.DELETE",
            format!("deleting VPC. VPC Id: {id}"),
        ),
        |state, ids| decide_delete(state, call, ids, id),
        |_| Ok(Reply::success()),
    )
    .await
}

/// The events of deleting VPC `id`: its addresses go with everything on them (facts, the
/// router told of each while it still runs), then the delete itself, a request the router's destruction answers,
/// then the router's removal. The request precedes the removal: the command it yields is
/// computed from the router row, which must still exist when the request is applied.
fn decide_delete(
    state: &State,
    call: &Call,
    ids: jobs::JobIds,
    id: Uuid,
) -> Result<Vec<NewEvent>, ApiError> {
    let row = accessible_vpc(state, call, id)?;
    idle(row)?;
    let v = &row.facts;
    let tiers = state
        .compute
        .networks
        .values()
        .filter(|n| n.facts.vpc_id == Some(id))
        .count();
    if tiers > 0 {
        return Err(ApiError::in_use(format!(
            "Can't delete VPC {} as its used by {tiers} networks",
            v.name
        )));
    }
    let router = state
        .network
        .router_for(&state.compute, None, Some(id))
        .and_then(|r| state.network.routers.get(&r));
    if let Some(r) = router
        && r.pending.is_some()
    {
        return Err(ApiError::invalid_param(format!(
            "Unable to delete VPC {}: its router {} is in state {}",
            v.name,
            r.facts.name,
            r.state.name()
        )));
    }
    let addresses: Vec<_> = state
        .network
        .public_ips
        .values()
        .filter(|ip| ip.facts.vpc_id == Some(id))
        .collect();
    if addresses.iter().any(|ip| ip_busy(state, ip.facts.ip_id)) {
        return Err(ApiError::invalid_param(format!(
            "VPC {} is busy: a change of its addresses or rules is in progress; try again when it has finished",
            v.name
        )));
    }
    let mut events = Vec::new();
    for ip in addresses {
        events.extend(
            cleanup_bodies(state, ip.facts.ip_id)
                .into_iter()
                .map(|body| ids.event(call, body)),
        );
        events.push(ids.event(call, EventBody::Net(NetEvent::IpRelease(ip.facts.clone()))));
    }
    let delete = EventBody::Vpc(VpcEvent::Delete(v.clone()));
    match router {
        Some(r) => {
            events.push(ids.request(call, delete));
            events.push(ids.event(
                call,
                EventBody::Router(RouterEvent::Destroy(RouterLifecycle {
                    router: r.facts.clone(),
                })),
            ));
        }
        None => events.push(ids.event(call, delete)),
    }
    Ok(events)
}
