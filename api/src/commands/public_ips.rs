//! Public IP addresses and static NAT: `associateIpAddress`, `disassociateIpAddress`,
//! `listPublicIpAddresses`, `enableStaticNat`, `disableStaticNat`; and the cleanup every
//! release of an address shares (its rules, load balancers, VPN and static NAT go first).
//!
//! Acquiring an address is decided on the [`ALLOCATION`] stream, which owns every zone's
//! public IP pool and the `public_ip` limit (DESIGN.md invariant 8). An address is plumbed on
//! (and removed from) the virtual router serving its network or VPC: a request the job waits
//! for when there is a router, a fact otherwise.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};

use engine::event::network::{IpAddressFacts, StaticNatFacts, TrafficDirection};
use engine::event::{
    EventBody, FirewallEvent, LoadBalancerEvent, NetEvent, NewEvent, StaticNatEvent, VpnEvent,
};
use engine::ids::derived_event_id;
use projections::State;
use projections::compute::VmState;
use projections::network::{IpState, PublicIpRow};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::allocation::{self, ALLOCATION, ResourceType, check_limit};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::networks::{self, settle_router};
use crate::commands::render::{put, put_owner};
use crate::commands::volumes::zone_name;
use crate::commands::{date, row_reply};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobMeta};
use crate::network_implementation::{allocate_public_ip, router_request};
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

/// The fields of an `ipaddress` / `publicipaddress` (IPAddressResponse).
pub const IP_FIELDS: &[ResponseField] = &[
    field("id", "string", "public IP address id"),
    field("ipaddress", "string", "public IP address"),
    field(
        "allocated",
        "date",
        "date the public IP address was acquired",
    ),
    field(
        "zoneid",
        "string",
        "the ID of the zone the public IP address belongs to",
    ),
    field(
        "zonename",
        "string",
        "the name of the zone the public IP address belongs to",
    ),
    field(
        "issourcenat",
        "boolean",
        "true if the IP address is a source nat address, false otherwise",
    ),
    field(
        "account",
        "string",
        "the account the public IP address is associated with",
    ),
    field(
        "domainid",
        "string",
        "the domain ID the public IP address is associated with",
    ),
    field(
        "domain",
        "string",
        "the domain the public IP address is associated with",
    ),
    field(
        "forvirtualnetwork",
        "boolean",
        "the virtual network for the IP address",
    ),
    field(
        "vlanid",
        "string",
        "the ID of the VLAN associated with the IP address. This parameter is visible to ROOT admins only",
    ),
    field(
        "vlanname",
        "string",
        "the VLAN associated with the IP address",
    ),
    field(
        "isstaticnat",
        "boolean",
        "true if this ip is for static nat, false otherwise",
    ),
    field(
        "issystem",
        "boolean",
        "true if this ip is system ip (was allocated as a part of deployVm or createLbRule)",
    ),
    field(
        "virtualmachineid",
        "string",
        "virtual machine id the ip address is assigned to",
    ),
    field(
        "virtualmachinename",
        "string",
        "virtual machine name the ip address is assigned to",
    ),
    field(
        "virtualmachinedisplayname",
        "string",
        "virtual machine display name the ip address is assigned to (not null only for static nat Ip)",
    ),
    field(
        "virtualmachinetype",
        "string",
        "virtual machine type the ip address is assigned to",
    ),
    field(
        "vmipaddress",
        "string",
        "virtual machine (dnat) ip address (not null only for static nat Ip)",
    ),
    field(
        "associatednetworkid",
        "string",
        "the ID of the Network associated with the IP address",
    ),
    field(
        "associatednetworkname",
        "string",
        "the name of the Network associated with the IP address",
    ),
    field(
        "networkid",
        "string",
        "the ID of the Network from which this IP address was allocated (the zone's public network)",
    ),
    field(
        "state",
        "string",
        "State of the ip address. Can be: Allocating, Allocated, Releasing",
    ),
    field("vpcid", "string", "VPC id the ip belongs to"),
    field("vpcname", "string", "VPC name the ip belongs to"),
    field(
        "isportable",
        "boolean",
        "is public IP portable across the zones",
    ),
    field(
        "fordisplay",
        "boolean",
        "is public ip for display to the regular user",
    ),
    field(
        "hasrules",
        "boolean",
        "whether the ip address has Firewall/PortForwarding/LoadBalancing rules defined",
    ),
    field(
        "tags",
        "list",
        "the list of resource tags associated with ip address",
    ),
];

const IP_ID: crate::registry::ParamSpec =
    required("ipaddressid", T::Uuid, "the public IP address ID");

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "associateIpAddress",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Acquires and associates a public IP to an account.",
        params: &[
            param(
                "networkid",
                T::Uuid,
                "The network this IP address should be associated to.",
            ),
            param(
                "vpcid",
                T::Uuid,
                "the VPC you want the IP address to be associated with",
            ),
            param(
                "zoneid",
                T::Uuid,
                "the ID of the availability zone you want to acquire an public IP address from (the account's default network there gets it)",
            ),
            param("ipaddress", T::String, "IP Address to be associated"),
            param(
                "account",
                T::String,
                "the account to associate with this IP address",
            ),
            param(
                "domainid",
                T::Uuid,
                "the ID of the domain to associate with this IP address",
            ),
            param(
                "isportable",
                T::Boolean,
                "should be set to true if public IP is required to be transferable across zones (not supported)",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "an optional field, whether to the display the ip to the end user or not",
            ),
            param(
                "projectid",
                T::Uuid,
                "Deploy vm for the project (not supported)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: IP_FIELDS,
        related: "listPublicIpAddresses",
        manual_clock_only: false,
        handler: handler!(associate),
    },
    CommandSpec {
        name: "disassociateIpAddress",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Disassociates an IP address from the account.",
        params: &[
            param(
                "id",
                T::Uuid,
                "the ID of the public IP address to disassociate. Mutually exclusive with the ipaddress parameter",
            ),
            param(
                "ipaddress",
                T::String,
                "IP Address to be disassociated. Mutually exclusive with the id parameter",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(disassociate),
    },
    CommandSpec {
        name: "listPublicIpAddresses",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all public IP addresses",
        params: &[
            param("id", T::Uuid, "lists IP address by ID"),
            param("ipaddress", T::String, "lists the specified IP address"),
            param(
                "allocatedonly",
                T::Boolean,
                "limits search results to allocated public IP addresses (Ledgerstack lists allocated addresses only)",
            ),
            param("state", T::String, "lists all public IP addresses by state"),
            param(
                "forvirtualnetwork",
                T::Boolean,
                "the virtual network for the IP address",
            ),
            param(
                "vlanid",
                T::Uuid,
                "lists all public IP addresses by VLAN ID",
            ),
            param(
                "zoneid",
                T::Uuid,
                "lists all public IP addresses by zone ID",
            ),
            param(
                "forloadbalancing",
                T::Boolean,
                "list only IPs used for load balancing",
            ),
            param(
                "associatednetworkid",
                T::Uuid,
                "lists all public IP addresses associated to the network specified",
            ),
            param(
                "networkid",
                T::Uuid,
                "lists all public IP addresses by source network ID",
            ),
            param(
                "issourcenat",
                T::Boolean,
                "list only source NAT IP addresses",
            ),
            param(
                "isstaticnat",
                T::Boolean,
                "list only static NAT IP addresses",
            ),
            param("vpcid", T::Uuid, "List IPs belonging to the VPC"),
            param(
                "physicalnetworkid",
                T::Uuid,
                "lists all public IP addresses by physical network ID (ignored)",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "list resources by display flag; only ROOT admin is eligible to pass this parameter",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: IP_FIELDS,
        related: "associateIpAddress",
        manual_clock_only: false,
        handler: handler!(list),
    },
    CommandSpec {
        name: "enableStaticNat",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Enables static NAT for given IP address",
        params: &[
            IP_ID,
            required(
                "virtualmachineid",
                T::Uuid,
                "the ID of the virtual machine for enabling static NAT feature",
            ),
            param(
                "networkid",
                T::Uuid,
                "The network of the VM the static NAT will be enabled for. Required when public IP address is not associated with any guest network yet (VPC case)",
            ),
            param(
                "vmguestip",
                T::String,
                "VM guest NIC secondary IP address for the port forwarding rule",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(enable_static_nat),
    },
    CommandSpec {
        name: "disableStaticNat",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Disables static rule for given IP address",
        params: &[IP_ID],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(disable_static_nat),
    },
];

// ---------------------------------------------------------------------------------------------
// Shared

/// The id CloudStack's `networkid` of a public IP names: the zone's public network, which
/// Ledgerstack does not model as a row (one per zone, derived from the zone's id).
pub fn public_network_id(zone_id: Uuid) -> Uuid {
    derived_event_id(zone_id, "public-network")
}

/// The facts that remove everything on a public IP before it is released: its port and IP
/// forwarding rules, firewall rules, load balancers, remote access VPN and static NAT. Each is
/// a fact (the address goes with them); the orchestration read model tells a running router.
pub fn cleanup_bodies(state: &State, ip_id: Uuid) -> Vec<EventBody> {
    let on_ip = Some(ip_id);
    let mut bodies = Vec::new();
    for rule in state
        .network
        .nat_rules
        .values()
        .filter(|r| r.facts.ip_address_id == on_ip)
    {
        bodies.push(EventBody::Net(NetEvent::RuleDelete(rule.facts.clone())));
    }
    for rule in state
        .network
        .firewall_rules
        .values()
        .filter(|r| r.facts.ip_address_id == on_ip)
    {
        let facts = rule.facts.clone();
        bodies.push(EventBody::Firewall(match facts.direction {
            TrafficDirection::Ingress => FirewallEvent::Close(facts),
            TrafficDirection::Egress => FirewallEvent::EgressClose(facts),
        }));
    }
    for lb in state
        .network
        .load_balancers
        .values()
        .filter(|lb| lb.rule.facts.ip_address_id == ip_id)
    {
        bodies.push(EventBody::LoadBalancer(LoadBalancerEvent::Delete(
            lb.rule.facts.clone(),
        )));
    }
    for vpn in state
        .network
        .vpns
        .values()
        .filter(|v| v.facts.public_ip_id == ip_id)
    {
        bodies.push(EventBody::Vpn(VpnEvent::RemoteAccessDestroy(
            vpn.facts.clone(),
        )));
    }
    if let Some(nat) = state
        .network
        .public_ips
        .get(&ip_id)
        .and_then(|ip| ip.static_nat.as_ref())
    {
        bodies.push(EventBody::StaticNat(StaticNatEvent::Disable(
            nat.facts.clone(),
        )));
    }
    bodies
}

/// True while the address, or anything on it, waits for the driver: removing it then would
/// let the pending result bring a removed row back.
pub fn ip_busy(state: &State, ip_id: Uuid) -> bool {
    let on_ip = Some(ip_id);
    let Some(ip) = state.network.public_ips.get(&ip_id) else {
        return false;
    };
    ip.pending.is_some()
        || ip.static_nat.as_ref().is_some_and(|n| n.pending.is_some())
        || state
            .network
            .nat_rules
            .values()
            .any(|r| r.facts.ip_address_id == on_ip && r.pending.is_some())
        || state
            .network
            .firewall_rules
            .values()
            .any(|r| r.facts.ip_address_id == on_ip && r.pending.is_some())
        || state.network.load_balancers.values().any(|lb| {
            lb.rule.facts.ip_address_id == ip_id
                && (lb.rule.pending.is_some() || lb.members.values().any(|m| m.pending.is_some()))
        })
        || state
            .network
            .vpns
            .values()
            .any(|v| v.facts.public_ip_id == ip_id && v.pending.is_some())
}

/// Whether any rule (forwarding, firewall, load balancing) uses the address.
fn has_rules(state: &State, ip_id: Uuid) -> bool {
    let on_ip = Some(ip_id);
    state
        .network
        .nat_rules
        .values()
        .any(|r| r.facts.ip_address_id == on_ip)
        || state
            .network
            .firewall_rules
            .values()
            .any(|r| r.facts.ip_address_id == on_ip)
        || state
            .network
            .load_balancers
            .values()
            .any(|lb| lb.rule.facts.ip_address_id == ip_id)
}

/// The address `id`, if the caller may act on it (431 unknown, 531 someone else's).
pub fn accessible_ip<'a>(
    state: &'a State,
    call: &Call,
    id: Uuid,
) -> Result<&'a PublicIpRow, ApiError> {
    let row =
        state.network.public_ips.get(&id).ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find ip address by id {id}"))
        })?;
    if !call
        .caller
        .may_access(state, row.facts.account_id, row.facts.domain_id)
    {
        return Err(ApiError::permission_denied(format!(
            "Account {} does not have permission to operate on ip address {id}",
            call.caller.account_id
        )));
    }
    Ok(row)
}

/// A public IP as CloudStack shows it (IPAddressResponse).
pub fn ip_json(state: &State, row: &PublicIpRow) -> Value {
    let f = &row.facts;
    let range = f
        .vlan_range_id
        .and_then(|id| state.network.vlan_ranges.get(&id))
        .map(|r| &r.facts);
    let mut m = Map::new();
    put(&mut m, "id", json!(f.ip_id));
    put(&mut m, "ipaddress", json!(f.address));
    put(&mut m, "allocated", json!(date(row.allocated)));
    put(&mut m, "zoneid", json!(f.zone_id));
    put(&mut m, "zonename", json!(zone_name(state, f.zone_id)));
    put(&mut m, "issourcenat", json!(f.is_source_nat));
    put_owner(&mut m, state, f.account_id, f.domain_id);
    put(
        &mut m,
        "forvirtualnetwork",
        json!(range.is_none_or(|r| r.for_virtual_network)),
    );
    if let Some(r) = range {
        put(&mut m, "vlanid", json!(r.vlan_range_id));
        put(&mut m, "vlanname", json!(r.vlan));
    }
    put(&mut m, "isstaticnat", json!(row.static_nat.is_some()));
    put(&mut m, "issystem", json!(f.is_system));
    if let Some(nat) = &row.static_nat {
        let vm = state.compute.vms.get(&nat.facts.vm_id).map(|v| &v.facts);
        put(&mut m, "virtualmachineid", json!(nat.facts.vm_id));
        put(&mut m, "virtualmachinename", json!(vm.map(|v| &v.name)));
        put(
            &mut m,
            "virtualmachinedisplayname",
            json!(vm.map(|v| v.display_name.as_ref().unwrap_or(&v.name))),
        );
        put(&mut m, "virtualmachinetype", json!("User"));
        put(&mut m, "vmipaddress", json!(nat.facts.vm_ip));
    }
    if let Some(network) = f.network_id {
        put(&mut m, "associatednetworkid", json!(network));
        put(
            &mut m,
            "associatednetworkname",
            json!(state.compute.networks.get(&network).map(|n| &n.facts.name)),
        );
    }
    put(&mut m, "networkid", json!(public_network_id(f.zone_id)));
    put(&mut m, "state", json!(row.state.name()));
    if let Some(vpc) = f.vpc_id {
        put(&mut m, "vpcid", json!(vpc));
        put(
            &mut m,
            "vpcname",
            json!(state.network.vpcs.get(&vpc).map(|v| &v.facts.name)),
        );
    }
    put(&mut m, "isportable", json!(false));
    put(&mut m, "fordisplay", json!(true));
    put(&mut m, "hasrules", json!(has_rules(state, f.ip_id)));
    put(&mut m, "tags", super::tags::tags_json(state, f.ip_id));
    Value::Object(m)
}

/// The `ipaddress` reply for an address.
pub fn ip_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(
        state.network.public_ips.get(&id),
        "ipaddress",
        "ip address",
        id,
        |r| ip_json(state, r),
    )
}

fn v4(ip: IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(v4) => Some(u32::from(v4)),
        IpAddr::V6(_) => None,
    }
}

/// An address the caller asked for by `ipaddress`: in a range of the zone for virtual
/// networks (not dedicated to another account) and free. Returns it with its range.
fn requested_public_ip(
    state: &State,
    zone_id: Uuid,
    account_id: Uuid,
    ip: IpAddr,
) -> Result<(IpAddr, Uuid), ApiError> {
    let n = v4(ip);
    let range = state
        .network
        .vlan_ranges
        .values()
        .map(|r| &r.facts)
        .filter(|r| r.zone_id == zone_id && r.for_virtual_network && r.network_id.is_none())
        .filter(|r| r.account_id.is_none_or(|a| a == account_id))
        .find(|r| match (n, v4(r.start_ip), v4(r.end_ip)) {
            (Some(n), Some(s), Some(e)) => (s..=e).contains(&n),
            _ => false,
        })
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "IP address {ip} is not in a public IP range of zone {zone_id} available to the account"
            ))
        })?;
    if state
        .network
        .public_ips
        .values()
        .any(|p| p.facts.address == ip)
    {
        return Err(ApiError::invalid_param(format!(
            "IP address {ip} is already allocated"
        )));
    }
    Ok((ip, range.vlan_range_id))
}

// ---------------------------------------------------------------------------------------------
// associateIpAddress

/// Where a new address goes: (owner, owner's domain, zone, network, VPC).
type Placement = (Uuid, Uuid, Uuid, Option<Uuid>, Option<Uuid>);

fn placement(state: &State, call: &Call) -> Result<Placement, ApiError> {
    let network_id = call.uuid("networkid")?;
    let vpc_id = call.uuid("vpcid")?;
    let zone_id = call.uuid("zoneid")?;
    let (account_id, domain_id) = allocation::owner(call, state)?;
    let placed = match (network_id, vpc_id) {
        (Some(id), _) => {
            let row = state.compute.networks.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find network by id {id}"))
            })?;
            let n = &row.facts;
            if !call.caller.may_access(state, n.account_id, n.domain_id) {
                return Err(ApiError::permission_denied(format!(
                    "Account {} does not have permission to operate on network {id}",
                    call.caller.account_id
                )));
            }
            if n.guest_type != "Isolated" {
                return Err(ApiError::invalid_param(format!(
                    "Can't associate an ip address to network {} of type {}: only isolated networks take public addresses",
                    n.name, n.guest_type
                )));
            }
            if row.deleting.is_some() {
                return Err(ApiError::invalid_param(format!(
                    "Network {} is being deleted",
                    n.name
                )));
            }
            if vpc_id.is_some_and(|v| n.vpc_id != Some(v)) {
                return Err(ApiError::invalid_param(format!(
                    "Network {} does not belong to the given vpc",
                    n.name
                )));
            }
            (n.account_id, n.domain_id, n.zone_id, Some(id), n.vpc_id)
        }
        (None, Some(id)) => {
            let vpc =
                state.network.vpcs.get(&id).ok_or_else(|| {
                    ApiError::invalid_param(format!("Unable to find vpc by id {id}"))
                })?;
            let v = &vpc.facts;
            if !call.caller.may_access(state, v.account_id, v.domain_id) {
                return Err(ApiError::permission_denied(format!(
                    "Account {} does not have permission to operate on vpc {id}",
                    call.caller.account_id
                )));
            }
            if vpc.deleting {
                return Err(ApiError::invalid_param(format!(
                    "VPC {} is being deleted",
                    v.name
                )));
            }
            (v.account_id, v.domain_id, v.zone_id, None, Some(id))
        }
        (None, None) => {
            let zone = zone_id.ok_or_else(|| {
                ApiError::invalid_param(
                    "Unable to figure out zone to assign ip to. Please specify either zoneId, or networkId, or vpcId in the call",
                )
            })?;
            if state.catalog.zones.get(&zone).is_none() {
                return Err(ApiError::invalid_param(format!(
                    "Unable to find zone by id {zone}"
                )));
            }
            let network = networks::default_network(state, account_id, zone).ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "The account has no guest network in zone {zone} to associate the ip address with: give networkid"
                ))
            })?;
            (
                account_id,
                domain_id,
                zone,
                Some(network.facts.network_id),
                None,
            )
        }
    };
    if zone_id.is_some_and(|z| z != placed.2) {
        return Err(ApiError::invalid_param(
            "The network or vpc is not in the given zone",
        ));
    }
    Ok(placed)
}

async fn associate(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    if call.str("projectid").is_some() {
        return Err(ApiError::invalid_param("projects are not supported"));
    }
    if call.flag("isportable") {
        return Err(ApiError::invalid_param(
            "portable public IPs are not supported",
        ));
    }
    let requested = call
        .str("ipaddress")
        .map(|v| {
            v.trim().parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
                ApiError::invalid_param(format!("Please specify a valid IPv4 address: {v}"))
            })
        })
        .transpose()?;
    let (network_id, vpc_id) = {
        let state = ctx.models.read();
        let (_, _, _, network, vpc) = placement(&state, call)?;
        (network, vpc)
    };
    settle_router(ctx, network_id, vpc_id).await;
    let ip_id = Uuid::new_v4();
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::creating(
            "IpAddress",
            ip_id,
            "NET.IPASSIGN",
            "associating ip to network".to_owned(),
        ),
        |state, ids| {
            let (account_id, domain_id, zone_id, network_id, vpc_id) = placement(state, call)?;
            check_limit(state, account_id, ResourceType::PublicIp, 1)?;
            let (address, range) = match requested {
                Some(ip) => requested_public_ip(state, zone_id, account_id, ip)?,
                None => allocate_public_ip(state, zone_id, account_id, &Default::default())?,
            };
            let facts = IpAddressFacts {
                ip_id,
                address,
                account_id,
                domain_id,
                zone_id,
                vlan_range_id: Some(range),
                network_id,
                vpc_id,
                is_source_nat: false,
                is_system: false,
            };
            let body = EventBody::Net(NetEvent::IpAssign(facts));
            let routed = state
                .network
                .router_for(&state.compute, network_id, vpc_id)
                .is_some();
            Ok(vec![if routed {
                ids.request(call, body)
            } else {
                ids.event(call, body)
            }])
        },
        move |state| ip_reply(state, ip_id),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// disassociateIpAddress

fn ip_by_address(state: &State, address: &str) -> Result<Uuid, ApiError> {
    let ip: IpAddr = address.trim().parse().map_err(|_| {
        ApiError::invalid_param(format!("Please specify a valid IP address: {address}"))
    })?;
    state
        .network
        .public_ips
        .values()
        .find(|p| p.facts.address == ip)
        .map(|p| p.facts.ip_id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find ip address {address}")))
}

async fn disassociate(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let (id, address, network_id, vpc_id) = {
        let state = ctx.models.read();
        let id = match (call.uuid("id")?, call.str("ipaddress")) {
            (Some(id), None) => id,
            (None, Some(address)) => ip_by_address(&state, address)?,
            _ => {
                return Err(ApiError::invalid_param(
                    "Either the id or the ipaddress of the IP address must be given",
                ));
            }
        };
        let row = accessible_ip(&state, call, id)?;
        (
            id,
            row.facts.address,
            row.facts.network_id,
            row.facts.vpc_id,
        )
    };
    settle_router(ctx, network_id, vpc_id).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "IpAddress",
            id,
            "NET.IPRELEASE",
            format!("disassociating ip address {address}"),
        ),
        |state, ids| {
            let row = accessible_ip(state, call, id)?;
            let f = &row.facts;
            if f.is_source_nat {
                return Err(ApiError::invalid_param(
                    "ip address is used for source nat purposes and can not be disassociated.",
                ));
            }
            if f.is_system {
                return Err(ApiError::invalid_param(
                    "Can't release system IP address with specified id",
                ));
            }
            if row.state != IpState::Allocated || ip_busy(state, id) {
                return Err(ApiError::invalid_param(format!(
                    "IP address {} is busy: its association, rules or static NAT are being changed; try again when that has finished",
                    f.address
                )));
            }
            let mut events: Vec<NewEvent> = cleanup_bodies(state, id)
                .into_iter()
                .map(|body| ids.event(call, body))
                .collect();
            let release = EventBody::Net(NetEvent::IpRelease(f.clone()));
            let routed = state
                .network
                .router_for(&state.compute, f.network_id, f.vpc_id)
                .is_some();
            events.push(if routed {
                ids.request(call, release)
            } else {
                ids.event(call, release)
            });
            Ok(events)
        },
        |_| Ok(Reply::success()),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// listPublicIpAddresses

async fn list(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let address: Option<IpAddr> = call
        .str("ipaddress")
        .map(|a| {
            a.trim().parse().map_err(|_| {
                ApiError::invalid_param(format!("Please specify a valid IP address: {a}"))
            })
        })
        .transpose()?;
    let wanted_state = call.str("state");
    let for_virtual = call.bool_opt("forvirtualnetwork");
    let vlan = call.uuid("vlanid")?;
    let zone = call.uuid("zoneid")?;
    let for_lb = call.bool_opt("forloadbalancing");
    let associated = call.uuid("associatednetworkid")?;
    let source_network = call.uuid("networkid")?;
    let source_nat = call.bool_opt("issourcenat");
    let static_nat = call.bool_opt("isstaticnat");
    let vpc = call.uuid("vpcid")?;
    let keyword = call.str("keyword");
    let mut rows: Vec<&PublicIpRow> = state
        .network
        .public_ips
        .values()
        .filter(|row| {
            let f = &row.facts;
            let range_virtual = f
                .vlan_range_id
                .and_then(|r| state.network.vlan_ranges.get(&r))
                .is_none_or(|r| r.facts.for_virtual_network);
            let has_lb = state
                .network
                .load_balancers
                .values()
                .any(|lb| lb.rule.facts.ip_address_id == f.ip_id);
            super::volumes::listed(&state, call, scope, id.is_some(), f.account_id, f.domain_id)
                && id.is_none_or(|id| f.ip_id == id)
                && address.is_none_or(|a| f.address == a)
                && wanted_state.is_none_or(|s| row.state.name().eq_ignore_ascii_case(s))
                && for_virtual.is_none_or(|v| range_virtual == v)
                && vlan.is_none_or(|v| f.vlan_range_id == Some(v))
                && zone.is_none_or(|z| f.zone_id == z)
                && for_lb.is_none_or(|l| has_lb == l)
                && associated.is_none_or(|n| f.network_id == Some(n))
                && source_network.is_none_or(|n| public_network_id(f.zone_id) == n)
                && source_nat.is_none_or(|s| f.is_source_nat == s)
                && static_nat.is_none_or(|s| row.static_nat.is_some() == s)
                && vpc.is_none_or(|v| f.vpc_id == Some(v))
                && keyword_matches(keyword, &[&f.address.to_string()])
        })
        .collect();
    rows.sort_by_key(|r| (r.allocated, r.facts.ip_id));
    let (count, items) = paging.apply(rows.into_iter().map(|r| ip_json(&state, r)).collect());
    Ok(Reply::List {
        key: "publicipaddress",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// Static NAT

/// The STATICNAT.ENABLE `enableStaticNat` decides, after CloudStack's checks
/// (RulesManagerImpl.enableStaticNat and isIpReadyForStaticNat); `None` when static NAT is
/// already enabled for that VM (nothing to do).
fn static_nat_facts(state: &State, call: &Call) -> Result<Option<StaticNatFacts>, ApiError> {
    let ip_id = call.required_uuid("ipaddressid")?;
    let vm_id = call.required_uuid("virtualmachineid")?;
    let row = accessible_ip(state, call, ip_id)?;
    let f = &row.facts;
    let vm = state.compute.vms.get(&vm_id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find virtual machine by id {vm_id}"))
    })?;
    if !call
        .caller
        .may_access(state, vm.facts.account_id, vm.facts.domain_id)
    {
        return Err(ApiError::permission_denied(format!(
            "Account {} does not have permission to operate on virtual machine {vm_id}",
            call.caller.account_id
        )));
    }
    if vm.facts.account_id != f.account_id {
        return Err(ApiError::invalid_param(format!(
            "Can't enable static nat for the address {}: the virtual machine belongs to another account",
            f.address
        )));
    }
    if vm.state == VmState::Destroyed || vm.state == VmState::Error {
        return Err(ApiError::invalid_param(format!(
            "Invalid user vm: {} is {}",
            vm.facts.name,
            vm.state.as_str()
        )));
    }
    let network_id = match (call.uuid("networkid")?, f.network_id) {
        (Some(given), Some(associated)) if given != associated => {
            return Err(ApiError::invalid_param(format!(
                "Invalid network {given}. IP is associated with a different network than passed network id"
            )));
        }
        (_, Some(associated)) => associated,
        (Some(given), None) => given,
        (None, None) => {
            // A VPC address: the VM's default NIC's network, which must be a tier of the VPC.
            state
                .compute
                .nics_of(vm_id)
                .first()
                .map(|n| n.facts.network_id)
                .ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Ip address {} is not assigned to any network: give networkid",
                        f.address
                    ))
                })?
        }
    };
    let network = state
        .compute
        .networks
        .get(&network_id)
        .ok_or_else(|| ApiError::invalid_param("Unable to find network by id"))?;
    if f.network_id.is_none() && (f.vpc_id.is_none() || network.facts.vpc_id != f.vpc_id) {
        return Err(ApiError::invalid_param(format!(
            "Ip address {} is not assigned to the network {}",
            f.address, network.facts.name
        )));
    }
    let nic = state
        .compute
        .nics_of(vm_id)
        .into_iter()
        .find(|n| n.facts.network_id == network_id)
        .ok_or_else(|| {
            ApiError::invalid_param("Vm doesn't belong to the network with specified id")
        })?;
    if !networks::has_service(state, &network.facts, "StaticNat") {
        return Err(ApiError::invalid_param(
            "Unable to create static nat rule; StaticNat service is not supported in network with specified id",
        ));
    }
    let vm_ip = nic.facts.ip_address;
    if let Some(guest) = call.str("vmguestip") {
        let guest: IpAddr = guest.trim().parse().map_err(|_| {
            ApiError::invalid_param(format!("Please specify a valid IP address: {guest}"))
        })?;
        if Some(guest) != vm_ip {
            return Err(ApiError::invalid_param(format!(
                "VM ip {guest} address not belongs to the vm"
            )));
        }
    }
    if f.is_source_nat {
        return Err(ApiError::invalid_param(format!(
            "Can't enable static, ip address {} is a sourceNat ip address",
            f.address
        )));
    }
    if row.state != IpState::Allocated || ip_busy(state, ip_id) {
        return Err(ApiError::invalid_param(format!(
            "IP address {} is busy: its association, rules or static NAT are being changed; try again when that has finished",
            f.address
        )));
    }
    match &row.static_nat {
        Some(nat) if nat.facts.vm_id == vm_id => return Ok(None),
        Some(_) => {
            return Err(ApiError::rule_conflict(format!(
                "Failed to enable static for the ip address {} and vm id={vm_id} as it's already assigned to antoher vm",
                f.address
            )));
        }
        None => {}
    }
    let on_ip = Some(ip_id);
    if state.network.nat_rules.values().any(|r| {
        r.facts.ip_address_id == on_ip
            && r.facts.purpose == engine::event::network::RulePurpose::PortForwarding
    }) {
        return Err(ApiError::rule_conflict(format!(
            "Failed to enable static nat for the ip address {} as it already has PortForwarding rules assigned",
            f.address
        )));
    }
    if state
        .network
        .load_balancers
        .values()
        .any(|lb| lb.rule.facts.ip_address_id == ip_id)
    {
        return Err(ApiError::rule_conflict(format!(
            "Failed to enable static nat for the ip address {} as it already has LoadBalancing rules assigned",
            f.address
        )));
    }
    if let Some(other) = state.network.public_ips.values().find(|p| {
        p.facts.ip_id != ip_id
            && p.static_nat
                .as_ref()
                .is_some_and(|n| n.facts.vm_id == vm_id && n.facts.vm_ip == vm_ip)
    }) {
        return Err(ApiError::invalid_param(format!(
            "Failed to enable static nat on the  ip {} with Id {ip_id} as the vm {} with Id {vm_id} is already associated with another public ip {} with id {}",
            f.address, vm.facts.instance_name, other.facts.address, other.facts.ip_id
        )));
    }
    Ok(Some(StaticNatFacts {
        ip_address_id: ip_id,
        address: f.address,
        vm_id,
        vm_ip,
        network_id,
        account_id: f.account_id,
        domain_id: f.domain_id,
        zone_id: f.zone_id,
    }))
}

async fn enable_static_nat(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let ip_id = call.required_uuid("ipaddressid")?;
    let (network_id, vpc_id) = {
        let state = ctx.models.read();
        let row = accessible_ip(&state, call, ip_id)?;
        (
            row.facts.network_id.or(call.uuid("networkid")?),
            row.facts.vpc_id,
        )
    };
    settle_router(ctx, network_id, vpc_id).await;
    let request_id = Uuid::new_v4();
    let requested = AtomicBool::new(false);
    ctx.decide(ALLOCATION, |state| {
        let Some(nat) = static_nat_facts(state, call)? else {
            requested.store(false, Ordering::Relaxed);
            return Ok(Vec::new());
        };
        let routed = nat.vm_ip.is_some()
            && state
                .network
                .router_for(&state.compute, Some(nat.network_id), None)
                .is_some();
        requested.store(routed, Ordering::Relaxed);
        let body = EventBody::StaticNat(StaticNatEvent::Enable(nat));
        Ok(vec![if routed {
            // A sync command's request: no job waits, so it must not be correlated with one.
            let mut request = router_request(call, body);
            request.id = request_id;
            request
        } else {
            call.event(body)
        }])
    })
    .await?;
    if requested.load(Ordering::Relaxed) {
        jobs::await_command(ctx, request_id).await?;
    }
    Ok(Reply::success())
}

async fn disable_static_nat(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("ipaddressid")?;
    let (address, network_id) = {
        let state = ctx.models.read();
        let row = accessible_ip(&state, call, id)?;
        (
            row.facts.address,
            row.static_nat.as_ref().map(|n| n.facts.network_id),
        )
    };
    settle_router(ctx, network_id, None).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "IpAddress",
            id,
            "STATICNAT.DISABLE",
            format!("disabling static nat for ip {address}"),
        ),
        |state, ids| {
            let row = accessible_ip(state, call, id)?;
            let Some(nat) = &row.static_nat else {
                return Err(ApiError::invalid_param(
                    "Specified IP address id is not associated with any vm Id",
                ));
            };
            if ip_busy(state, id) {
                return Err(ApiError::invalid_param(format!(
                    "IP address {} is busy: its static NAT is being changed; try again when that has finished",
                    row.facts.address
                )));
            }
            let routed = state
                .network
                .router_for(&state.compute, Some(nat.facts.network_id), None)
                .is_some();
            let body = EventBody::StaticNat(StaticNatEvent::Disable(nat.facts.clone()));
            Ok(vec![if routed {
                ids.request(call, body)
            } else {
                ids.event(call, body)
            }])
        },
        |_| Ok(Reply::success()),
    )
    .await
}
