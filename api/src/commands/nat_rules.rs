//! Port forwarding (`createPortForwardingRule`, `deletePortForwardingRule`,
//! `listPortForwardingRules`, `updatePortForwardingRule`) and IP forwarding
//! (`createIpForwardingRule`, `deleteIpForwardingRule`, `listIpForwardingRules`) rules: the
//! NET.RULEADD / RULEDELETE / RULEMODIFY events of purpose `PortForwarding` and `StaticNat`.
//!
//! A rule on a network served by a virtual router is a driver *request*: the row is `Add` (or
//! `Revoke`) until the router confirms, and the job waits for that. A network without a router
//! has nothing to program, so the event is recorded as a fact and the job is done at once (the
//! router, once it exists, gets its whole configuration when it starts). Every decision runs
//! on the allocation stream, with CloudStack's conflict checks (`rule_conflicts`) inside it.
//!
//! This module also holds what the firewall and load balancer commands share with it: the
//! public IP a rule goes on, port and CIDR parameters, and the request-or-fact choice.

use std::net::IpAddr;

use compact_str::CompactString;
use engine::event::network::{NetworkRule, RulePurpose};
use engine::event::{EventBody, NetEvent, NewEvent};
use projections::State;
use projections::compute::{VmRow, VmState};
use projections::network::{IpState, PublicIpRow, RuleRow, RuleState};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::firewall_rules::{close_related_firewall_rule, open_firewall_for};
use crate::commands::networks::settle_router;
use crate::commands::render::{merge, owner_fields};
use crate::commands::row_reply;
use crate::commands::volumes::{accessible_row, accessible_vm, check_access, listed};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobIds, JobMeta};
use crate::network_implementation::router_request;
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;
use crate::rule_conflicts::{RuleSpec, check_ip_rule, ip_text};

const PORT_FORWARDING_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the port forwarding rule"),
    field(
        "privateport",
        "string",
        "the starting port of port forwarding rule's private port range",
    ),
    field(
        "privateendport",
        "string",
        "the ending port of port forwarding rule's private port range",
    ),
    field(
        "protocol",
        "string",
        "the protocol of the port forwarding rule",
    ),
    field(
        "publicport",
        "string",
        "the starting port of port forwarding rule's public port range",
    ),
    field(
        "publicendport",
        "string",
        "the ending port of port forwarding rule's private port range",
    ),
    field(
        "virtualmachineid",
        "string",
        "the VM ID for the port forwarding rule",
    ),
    field(
        "virtualmachinename",
        "string",
        "the VM name for the port forwarding rule",
    ),
    field(
        "virtualmachinedisplayname",
        "string",
        "the VM display name for the port forwarding rule",
    ),
    field(
        "ipaddressid",
        "string",
        "the public ip address id for the port forwarding rule",
    ),
    field(
        "ipaddress",
        "string",
        "the public ip address for the port forwarding rule",
    ),
    field("state", "string", "the state of the rule"),
    field(
        "cidrlist",
        "string",
        "the cidr list to forward traffic from. Multiple entries are separated by a single comma character (,).",
    ),
    field(
        "tags",
        "list",
        "the list of resource tags associated with the rule",
    ),
    field(
        "vmguestip",
        "string",
        "the vm ip address for the port forwarding rule",
    ),
    field(
        "networkid",
        "string",
        "the id of the guest network the port forwarding rule belongs to",
    ),
    field(
        "fordisplay",
        "boolean",
        "is firewall for display to the regular user",
    ),
    field("account", "string", "the account owning the rule"),
    field("domainid", "string", "the domain ID of the rule's owner"),
    field("domain", "string", "the domain of the rule's owner"),
    field("zoneid", "string", "the zone of the rule"),
];

const IP_FORWARDING_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the port forwarding rule"),
    field(
        "protocol",
        "string",
        "the protocol of the port forwarding rule",
    ),
    field(
        "virtualmachineid",
        "string",
        "the VM ID for the port forwarding rule",
    ),
    field(
        "virtualmachinename",
        "string",
        "the VM name for the port forwarding rule",
    ),
    field(
        "virtualmachinedisplayname",
        "string",
        "the VM display name for the port forwarding rule",
    ),
    field(
        "ipaddressid",
        "string",
        "the public ip address id for the port forwarding rule",
    ),
    field(
        "ipaddress",
        "string",
        "the public ip address for the port forwarding rule",
    ),
    field("startport", "integer", "the start port of the rule"),
    field("endport", "integer", "the end port of the rule"),
    field("state", "string", "state of the ip forwarding rule"),
    field("account", "string", "the account owning the rule"),
    field("domainid", "string", "the domain ID of the rule's owner"),
    field("domain", "string", "the domain of the rule's owner"),
];

const CIDR_LIST_DESCRIPTION: &str = " the source CIDR list to allow traffic from; all other CIDRs will be blocked. Multiple entries must be separated by a single comma character (,). This param will be used only for VPC tiers. By default, all CIDRs are allowed.";

/// The port forwarding and IP forwarding commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createPortForwardingRule",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates a port forwarding rule",
        params: &[
            required(
                "ipaddressid",
                T::Uuid,
                "the IP address id of the port forwarding rule",
            ),
            required(
                "privateport",
                T::Integer,
                "the starting port of port forwarding rule's private port range",
            ),
            required(
                "protocol",
                T::String,
                "the protocol for the port forwarding rule. Valid values are TCP or UDP.",
            ),
            param(
                "privateendport",
                T::Integer,
                "the ending port of port forwarding rule's private port range",
            ),
            required(
                "publicport",
                T::Integer,
                "the starting port of port forwarding rule's public port range",
            ),
            param(
                "publicendport",
                T::Integer,
                "the ending port of port forwarding rule's private port range",
            ),
            required(
                "virtualmachineid",
                T::Uuid,
                "the ID of the virtual machine for the port forwarding rule",
            ),
            param("cidrlist", T::List, CIDR_LIST_DESCRIPTION),
            param(
                "openfirewall",
                T::Boolean,
                "if true, firewall rule for source/end public port is automatically created; if false - firewall rule has to be created explicitly. If not specified 1) defaulted to false when PF rule is being created for VPC guest network 2) in all other cases defaulted to true",
            ),
            param(
                "networkid",
                T::Uuid,
                "the network of the virtual machine the port forwarding rule will be created for. Required when public IP address is not associated with any guest network yet (VPC case).",
            ),
            param(
                "vmguestip",
                T::String,
                "VM guest nic secondary IP address for the port forwarding rule",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "an optional field, whether to the display the rule to the end user or not (always displayed)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: PORT_FORWARDING_FIELDS,
        related: "listPortForwardingRules,deletePortForwardingRule,updatePortForwardingRule",
        manual_clock_only: false,
        handler: handler!(create_port_forwarding_rule),
    },
    CommandSpec {
        name: "deletePortForwardingRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a port forwarding rule",
        params: &[required(
            "id",
            T::Uuid,
            "the ID of the port forwarding rule",
        )],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_port_forwarding_rule),
    },
    CommandSpec {
        name: "listPortForwardingRules",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all port forwarding rules for an IP address.",
        params: &[
            param("id", T::Uuid, "Lists rule with the specified ID."),
            param(
                "ipaddressid",
                T::Uuid,
                "the ID of IP address of the port forwarding services",
            ),
            param(
                "networkid",
                T::Uuid,
                "list port forwarding rules for certain network",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "list resources by display flag (every rule is displayed)",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: PORT_FORWARDING_FIELDS,
        related: "createPortForwardingRule,deletePortForwardingRule,updatePortForwardingRule",
        manual_clock_only: false,
        handler: handler!(list_port_forwarding_rules),
    },
    CommandSpec {
        name: "updatePortForwardingRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Updates a port forwarding rule. Only the private port and the virtual machine can be updated.",
        params: &[
            required("id", T::Uuid, "the ID of the port forwarding rule"),
            param(
                "privateport",
                T::Integer,
                "the private start port of the port forwarding rule",
            ),
            param(
                "privateendport",
                T::Integer,
                "the private end port of the port forwarding rule",
            ),
            param(
                "virtualmachineid",
                T::Uuid,
                "the ID of the virtual machine for the port forwarding rule",
            ),
            param(
                "vmguestip",
                T::String,
                "VM guest nic Secondary ip address for the port forwarding rule",
            ),
            param("cidrlist", T::List, CIDR_LIST_DESCRIPTION),
            param(
                "customid",
                T::String,
                "an optional field, in case you want to set a custom id to the resource (not supported: ignored)",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "an optional field, whether to the display the rule to the end user or not (always displayed)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: PORT_FORWARDING_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(update_port_forwarding_rule),
    },
    CommandSpec {
        name: "createIpForwardingRule",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates an IP forwarding rule",
        params: &[
            required(
                "ipaddressid",
                T::Uuid,
                "the public IP address ID of the forwarding rule, already associated via associateIp",
            ),
            required("startport", T::Integer, "the start port for the rule"),
            param("endport", T::Integer, "the end port for the rule"),
            required(
                "protocol",
                T::String,
                "the protocol for the rule. Valid values are TCP or UDP.",
            ),
            param(
                "openfirewall",
                T::Boolean,
                "if true, firewall rule for source/end public port is automatically created; if false - firewall rule has to be created explicitly. Has value true by default",
            ),
            param(
                "cidrlist",
                T::List,
                "the CIDR list to forward traffic from. Multiple entries must be separated by a single comma character (,). This parameter is deprecated. Do not use.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: IP_FORWARDING_FIELDS,
        related: "listIpForwardingRules,deleteIpForwardingRule",
        manual_clock_only: false,
        handler: handler!(create_ip_forwarding_rule),
    },
    CommandSpec {
        name: "deleteIpForwardingRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes an IP forwarding rule",
        params: &[required("id", T::Uuid, "the ID of the forwarding rule")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_ip_forwarding_rule),
    },
    CommandSpec {
        name: "listIpForwardingRules",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List the IP forwarding rules",
        params: &[
            param(
                "ipaddressid",
                T::Uuid,
                "list the rule belonging to this public IP address",
            ),
            param("id", T::Uuid, "Lists rule with the specified ID."),
            param(
                "virtualmachineid",
                T::Uuid,
                "Lists all rules applied to the specified VM.",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: IP_FORWARDING_FIELDS,
        related: "createIpForwardingRule,deleteIpForwardingRule",
        manual_clock_only: false,
        handler: handler!(list_ip_forwarding_rules),
    },
];

// ---------------------------------------------------------------------------------------------
// Shared with the firewall and load balancer commands

/// Whether a virtual router serves the guest network (its own, or its VPC's): only then is a
/// rule a driver request; otherwise there is nothing to program and it is a fact.
pub(crate) fn has_router(state: &State, network_id: Uuid) -> bool {
    state
        .network
        .router_for(&state.compute, Some(network_id), None)
        .is_some()
}

/// The event of a rule change on `network_id`: the job's driver request when a router serves
/// the network and the job waits for it (`awaited`), a request no job waits for when it
/// does not (a side effect, such as the firewall rule `openfirewall` adds), or a fact
/// correlated with the job when there is no router to program.
pub(crate) fn rule_event(
    state: &State,
    call: &Call,
    ids: JobIds,
    network_id: Option<Uuid>,
    body: EventBody,
    awaited: bool,
) -> NewEvent {
    match network_id.filter(|n| has_router(state, *n)) {
        None => ids.event(call, body),
        Some(_) if awaited => ids.request(call, body),
        Some(_) => router_request(call, body),
    }
}

/// Waits (a bounded time) until the router serving the network `locate` finds has no
/// lifecycle request in flight (a network's router is started by a request when the network
/// is created): a rule command decided while it boots could reach the driver before the router
/// exists there. Reads the state in a scope of its own, so no lock is held across the wait.
pub(crate) async fn settle_router_of(ctx: &Ctx, locate: impl FnOnce(&State) -> Option<Uuid>) {
    let target = {
        let state = ctx.models.read();
        locate(&state).map(|network_id| {
            let vpc_id = state
                .compute
                .networks
                .get(&network_id)
                .and_then(|n| n.facts.vpc_id);
            (network_id, vpc_id)
        })
    };
    if let Some((network_id, vpc_id)) = target {
        settle_router(ctx, Some(network_id), vpc_id).await;
    }
}

/// The network of a NAT rule, for [`settle_router_of`].
fn nat_rule_network(state: &State, id: Uuid) -> Option<Uuid> {
    state
        .network
        .nat_rules
        .get(&id)
        .and_then(|r| r.facts.network_id)
}

/// The network a rule on the public IP `ip_id` goes on, for [`settle_router_of`].
pub(crate) fn ip_network(state: &State, ip_id: Uuid, network_param: Option<Uuid>) -> Option<Uuid> {
    state
        .network
        .public_ips
        .get(&ip_id)
        .and_then(|ip| ip.facts.network_id)
        .or(network_param)
}

/// 431 while a driver request on the rule is unanswered: its result or failure must find the
/// row as that request left it.
pub(crate) fn not_busy<F>(row: &RuleRow<F>, what: &str, id: Uuid) -> Result<(), ApiError> {
    if row.pending.is_some() {
        return Err(ApiError::invalid_param(format!(
            "The {what} {id} is being programmed on the router (state {}); try again when its job has finished",
            row.state.name()
        )));
    }
    Ok(())
}

/// A port parameter (1-65535); `label` is how CloudStack's message names it
/// (`publicPort is an invalid value: 0`).
pub(crate) fn port(call: &Call, name: &str, label: &str) -> Result<Option<u16>, ApiError> {
    let Some(value) = call.int(name)? else {
        return Ok(None);
    };
    u16::try_from(value)
        .ok()
        .filter(|p| *p > 0)
        .map(Some)
        .ok_or_else(|| ApiError::invalid_param(format!("{label} is an invalid value: {value}")))
}

/// A required port parameter.
pub(crate) fn required_port(call: &Call, name: &str, label: &str) -> Result<u16, ApiError> {
    call.required(name)?;
    port(call, name, label)?.ok_or_else(|| ApiError::missing_param(call.command.name, name))
}

/// `start` and `end` in order, or 431 "Start port can't be bigger than end port".
pub(crate) fn port_range(start: u16, end: u16) -> Result<(u16, u16), ApiError> {
    if start > end {
        return Err(ApiError::invalid_param(
            "Start port can't be bigger than end port",
        ));
    }
    Ok((start, end))
}

/// Whether `text` is an IPv4 or IPv6 CIDR (`10.0.0.0/8`, `::/0`).
pub(crate) fn valid_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => prefix <= 32,
        Ok(IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

/// A comma-separated CIDR list parameter; `invalid` words the 431 for a malformed entry.
pub(crate) fn cidr_list(
    call: &Call,
    name: &str,
    invalid: impl Fn(&str) -> String,
) -> Result<Option<Vec<CompactString>>, ApiError> {
    checked_list(call, name, valid_cidr, invalid)
}

/// A comma-separated list parameter whose entries must all pass `valid`; `invalid` words the
/// 431 for the first that does not.
pub(crate) fn checked_list(
    call: &Call,
    name: &str,
    valid: impl Fn(&str) -> bool,
    invalid: impl Fn(&str) -> String,
) -> Result<Option<Vec<CompactString>>, ApiError> {
    let Some(value) = call.str(name) else {
        return Ok(None);
    };
    parse_list(value)
        .into_iter()
        .map(|entry| {
            if valid(&entry) {
                Ok(CompactString::from(entry))
            } else {
                Err(ApiError::invalid_param(invalid(&entry)))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The lowercase `protocol`, which must be one of `supported` (the virtual router's
/// capabilities); 431 as CloudStack words it otherwise.
pub(crate) fn protocol(
    call: &Call,
    supported: &[&str],
    zone_id: Uuid,
) -> Result<CompactString, ApiError> {
    let value = call.required("protocol")?.trim().to_lowercase();
    if !supported.contains(&value.as_str()) {
        return Err(ApiError::invalid_param(format!(
            "Protocol {value} is not supported in zone {zone_id}"
        )));
    }
    Ok(value.into())
}

/// The public IP `ip_id`, which the caller may act on: 431 with `unknown` when there is none,
/// 531 when it is another account's.
pub(crate) fn accessible_ip<'s>(
    state: &'s State,
    call: &Call,
    ip_id: Uuid,
    unknown: impl FnOnce() -> String,
) -> Result<&'s PublicIpRow, ApiError> {
    let ip = state
        .network
        .public_ips
        .get(&ip_id)
        .ok_or_else(|| ApiError::invalid_param(unknown()))?;
    check_access(
        state,
        call,
        ip.facts.account_id,
        ip.facts.domain_id,
        "IP address",
        ip_id,
    )?;
    Ok(ip)
}

/// The guest network a rule on `ip` goes on: the IP's network, or for an address of a VPC not
/// yet on a tier, the tier `network_param` names (CloudStack associates the address with it).
/// Whether the network is a VPC tier comes with it.
pub(crate) fn rule_network(
    state: &State,
    ip: &PublicIpRow,
    network_param: Option<Uuid>,
) -> Result<(Uuid, bool), ApiError> {
    let not_assigned = |network: &dyn std::fmt::Display| {
        ApiError::invalid_param(format!(
            "Ip address {} is not assigned to the network {network}",
            ip_text(ip)
        ))
    };
    let network_id = match (ip.facts.network_id, network_param) {
        (Some(own), Some(given)) if own != given => return Err(not_assigned(&given)),
        (Some(own), _) => own,
        (None, Some(given)) => {
            let tier_of_vpc = state
                .compute
                .networks
                .get(&given)
                .is_some_and(|n| n.facts.vpc_id.is_some() && n.facts.vpc_id == ip.facts.vpc_id);
            if !tier_of_vpc {
                return Err(not_assigned(&given));
            }
            given
        }
        (None, None) => {
            return Err(ApiError::invalid_param(format!(
                "Unable to create the rule: ip address {} is not associated with any network and networkid is not given",
                ip_text(ip)
            )));
        }
    };
    let network = state
        .compute
        .networks
        .get(&network_id)
        .filter(|n| n.deleting.is_none())
        .ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find network by id {network_id}"))
        })?;
    Ok((network_id, network.facts.vpc_id.is_some()))
}

/// `openfirewall`: as given (but never for a VPC address), by default true outside a VPC.
pub(crate) fn open_firewall(call: &Call, in_vpc: bool) -> Result<bool, ApiError> {
    match call.bool_opt("openfirewall") {
        Some(true) if in_vpc => Err(ApiError::invalid_param(
            "Can't have openFirewall=true when IP address belongs to VPC",
        )),
        Some(open) => Ok(open),
        None => Ok(!in_vpc),
    }
}

/// The guest address of the VM's NIC on `network_id`, if it has one.
pub(crate) fn vm_address_on(state: &State, vm_id: Uuid, network_id: Uuid) -> Option<IpAddr> {
    projections::network::Network::vm_ip_on(&state.compute, vm_id, Some(network_id))
}

/// True for a VM that is gone (destroyed; expunged ones have no row).
pub(crate) fn vm_gone(vm: &VmRow) -> bool {
    vm.state == VmState::Destroyed
}

/// A VM as the rule views name it: (`virtualmachinename`, `virtualmachinedisplayname`).
fn vm_names(state: &State, vm_id: Option<Uuid>) -> (Value, Value) {
    match vm_id.and_then(|id| state.compute.vms.get(&id)) {
        Some(vm) => (
            json!(vm.facts.name),
            json!(vm.facts.display_name.as_ref().unwrap_or(&vm.facts.name)),
        ),
        None => (Value::Null, Value::Null),
    }
}

/// The rule `id` of `purpose` (`what` names it in messages), which the caller may act on.
fn accessible_rule<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
    purpose: RulePurpose,
    what: &str,
) -> Result<&'s RuleRow<NetworkRule>, ApiError> {
    let row = state
        .network
        .nat_rules
        .get(&id)
        .filter(|r| r.facts.purpose == purpose);
    accessible_row(state, call, what, id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })
}

// ---------------------------------------------------------------------------------------------
// Views

/// A port forwarding rule as CloudStack's FirewallRuleResponse shows it (ports as strings).
pub fn port_forwarding_json(state: &State, row: &RuleRow<NetworkRule>) -> Value {
    let r = &row.facts;
    let ip = r
        .ip_address_id
        .and_then(|id| state.network.public_ips.get(&id));
    let (vm_name, vm_display_name) = vm_names(state, r.vm_id);
    let text = |p: Option<u16>| p.map(|p| p.to_string());
    let value = json!({
        "id": r.rule_id,
        "privateport": text(r.private_start_port),
        "privateendport": text(r.private_end_port.or(r.private_start_port)),
        "protocol": r.protocol,
        "publicport": text(r.public_start_port),
        "publicendport": text(r.public_end_port.or(r.public_start_port)),
        "virtualmachineid": r.vm_id,
        "virtualmachinename": vm_name,
        "virtualmachinedisplayname": vm_display_name,
        "ipaddressid": r.ip_address_id,
        "ipaddress": ip.map(|ip| ip.facts.address),
        "state": row.state.name(),
        "cidrlist": r.cidrs.join(","),
        "tags": [],
        "vmguestip": r.vm_guest_ip,
        "networkid": r.network_id,
        "fordisplay": true,
        "zoneid": r.zone_id,
    });
    merge(value, owner_fields(state, r.account_id, r.domain_id))
}

/// The `portforwardingrule` reply for rule `id`.
pub fn port_forwarding_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(
        state.network.nat_rules.get(&id),
        "portforwardingrule",
        "port forwarding rule",
        id,
        |r| port_forwarding_json(state, r),
    )
}

/// An IP forwarding rule as CloudStack's IpForwardingRuleResponse shows it.
pub fn ip_forwarding_json(state: &State, row: &RuleRow<NetworkRule>) -> Value {
    let r = &row.facts;
    let ip = r
        .ip_address_id
        .and_then(|id| state.network.public_ips.get(&id));
    let (vm_name, vm_display_name) = vm_names(state, r.vm_id);
    let value = json!({
        "id": r.rule_id,
        "protocol": r.protocol,
        "virtualmachineid": r.vm_id,
        "virtualmachinename": vm_name,
        "virtualmachinedisplayname": vm_display_name,
        "ipaddressid": r.ip_address_id,
        "ipaddress": ip.map(|ip| ip.facts.address),
        "startport": r.public_start_port,
        "endport": r.public_end_port.or(r.public_start_port),
        "state": row.state.name(),
    });
    merge(value, owner_fields(state, r.account_id, r.domain_id))
}

/// The `ipforwardingrule` reply for rule `id`.
pub fn ip_forwarding_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(
        state.network.nat_rules.get(&id),
        "ipforwardingrule",
        "ip forwarding rule",
        id,
        |r| ip_forwarding_json(state, r),
    )
}

// ---------------------------------------------------------------------------------------------
// Port forwarding

/// What `createPortForwardingRule` was asked, parsed before the decision.
struct PortForwardRequest {
    rule_id: Uuid,
    ip_id: Uuid,
    vm_id: Uuid,
    public: (u16, u16),
    private: (u16, u16),
    vm_guest_ip: Option<IpAddr>,
    cidrs: Vec<CompactString>,
    network_param: Option<Uuid>,
}

async fn create_port_forwarding_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let public_start = required_port(call, "publicport", "publicPort")?;
    let public_end = port(call, "publicendport", "Public port range")?.unwrap_or(public_start);
    let private_start = required_port(call, "privateport", "privatePort")?;
    let private_end = port(call, "privateendport", "PrivateEndPort")?.unwrap_or(private_start);
    let vm_guest_ip = call
        .str("vmguestip")
        .map(|v| match v.trim().parse::<IpAddr>() {
            Ok(ip @ IpAddr::V4(_)) => Ok(ip),
            _ => Err(ApiError::invalid_param("Invalid vm ip address")),
        })
        .transpose()?;
    let request = PortForwardRequest {
        rule_id: Uuid::new_v4(),
        ip_id: call.required_uuid("ipaddressid")?,
        vm_id: call.required_uuid("virtualmachineid")?,
        public: (public_start, public_end),
        private: (private_start, private_end),
        vm_guest_ip,
        cidrs: cidr_list(call, "cidrlist", |c| {
            format!("The given source CIDR [{c}] is invalid.")
        })?
        .unwrap_or_default(),
        network_param: call.uuid("networkid")?,
    };
    let rule_id = request.rule_id;
    settle_router_of(ctx, |s| ip_network(s, request.ip_id, request.network_param)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::creating(
            "FirewallRule",
            rule_id,
            "NET.RULEADD",
            format!("creating port forwarding rule {rule_id}"),
        ),
        |state, ids| port_forward_events(state, call, ids, &request),
        move |state| port_forwarding_reply(state, rule_id),
    )
    .await
}

/// The decision of `createPortForwardingRule` (CloudStack's `createPortForwardingRule`).
fn port_forward_events(
    state: &State,
    call: &Call,
    ids: JobIds,
    request: &PortForwardRequest,
) -> Result<Vec<NewEvent>, ApiError> {
    let ip_id = request.ip_id;
    let ip = accessible_ip(state, call, ip_id, || {
        format!("Unable to create port forwarding rule; ip id={ip_id} doesn't exist in the system")
    })?;
    if ip.state != IpState::Allocated {
        return Err(ApiError::invalid_param(format!(
            "Ip address id={ip_id} not ready for port forwarding rules yet"
        )));
    }
    if ip.static_nat.is_some() {
        return Err(ApiError::invalid_param(format!(
            "Unable to create port forwarding rule; ip {} has static nat enabled",
            ip_text(ip)
        )));
    }
    let (network_id, in_vpc) = rule_network(state, ip, request.network_param)?;
    let protocol = protocol(call, &["tcp", "udp"], ip.facts.zone_id)?;
    let public = port_range(request.public.0, request.public.1)?;
    let private = port_range(request.private.0, request.private.1)?;
    if private.1 - private.0 != public.1 - public.0 {
        return Err(ApiError::invalid_param(
            "Source port and destination port ranges should be of equal sizes.",
        ));
    }
    let vm_id = request.vm_id;
    let vm = state.compute.vms.get(&vm_id).ok_or_else(|| {
        ApiError::invalid_param(format!(
            "Unable to create port forwarding rule on address {}, invalid virtual machine id specified ({vm_id}).",
            ip_text(ip)
        ))
    })?;
    if vm_gone(vm) {
        return Err(ApiError::invalid_param(format!(
            "Invalid user vm: {}",
            vm.facts.name
        )));
    }
    accessible_vm(state, call, vm_id)?;
    let nic_ip = vm_address_on(state, vm_id, network_id).ok_or_else(|| {
        ApiError::invalid_param("Vm doesn't belong to network associated with ipAddress")
    })?;
    if request.vm_guest_ip.is_some_and(|given| given != nic_ip) {
        return Err(ApiError::invalid_param(
            "IP Address is not in the VM nic's network ",
        ));
    }
    if public.0 != public.1 || private.0 != private.1 {
        if public.0 != private.0 {
            return Err(ApiError::invalid_param(
                "Private port start should be equal to public port start",
            ));
        }
        if public.1 != private.1 {
            return Err(ApiError::invalid_param(
                "Private port end should be equal to public port end",
            ));
        }
    }
    let open = open_firewall(call, in_vpc)?;
    let rule = NetworkRule {
        rule_id: request.rule_id,
        purpose: RulePurpose::PortForwarding,
        account_id: ip.facts.account_id,
        domain_id: ip.facts.domain_id,
        zone_id: ip.facts.zone_id,
        network_id: Some(network_id),
        ip_address_id: Some(ip_id),
        protocol: protocol.clone(),
        public_start_port: Some(public.0),
        public_end_port: Some(public.1),
        private_start_port: Some(private.0),
        private_end_port: Some(private.1),
        vm_id: Some(vm_id),
        vm_guest_ip: Some(nic_ip),
        cidrs: request.cidrs.clone(),
    };
    add_rule_events(state, call, ids, ip, rule, open)
}

/// The events adding a port forwarding or IP forwarding `rule` on `ip`: the firewall rule that
/// opens its public ports first when `open` (CloudStack creates it before it checks the rule),
/// each checked for conflicts, then the rule itself — the request the job waits for.
fn add_rule_events(
    state: &State,
    call: &Call,
    ids: JobIds,
    ip: &PublicIpRow,
    rule: NetworkRule,
    open: bool,
) -> Result<Vec<NewEvent>, ApiError> {
    let ip_id = ip.facts.ip_id;
    let mut events = Vec::new();
    let mut pending = Vec::new();
    let spec = RuleSpec::from_nat(&rule, RuleState::Add);
    if open && let Some((firewall, event)) = open_firewall_for(state, call, ids, ip, &spec)? {
        pending.push(firewall);
        events.push(event);
    }
    check_ip_rule(state, ip_id, &spec, &pending)?;
    let network_id = rule.network_id;
    events.push(rule_event(
        state,
        call,
        ids,
        network_id,
        EventBody::Net(NetEvent::RuleAdd(rule)),
        true,
    ));
    Ok(events)
}

/// The events deleting a NAT rule: the firewall rule its `openfirewall` added first (as
/// CloudStack's delete commands revoke it first), then the rule — the request the job waits
/// for.
fn delete_rule_events(
    state: &State,
    call: &Call,
    ids: JobIds,
    row: &RuleRow<NetworkRule>,
) -> Vec<NewEvent> {
    let rule = &row.facts;
    let mut events: Vec<NewEvent> = close_related_firewall_rule(state, call, ids, rule.rule_id)
        .into_iter()
        .collect();
    events.push(rule_event(
        state,
        call,
        ids,
        rule.network_id,
        EventBody::Net(NetEvent::RuleDelete(rule.clone())),
        true,
    ));
    events
}

async fn delete_port_forwarding_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    settle_router_of(ctx, |s| nat_rule_network(s, id)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "FirewallRule",
            id,
            "NET.RULEDELETE",
            format!("deleting port forwarding rule {id}"),
        ),
        |state, ids| {
            let row = accessible_rule(
                state,
                call,
                id,
                RulePurpose::PortForwarding,
                "port forwarding rule",
            )?;
            not_busy(row, "port forwarding rule", id)?;
            Ok(delete_rule_events(state, call, ids, row))
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn update_port_forwarding_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let private_start = port(call, "privateport", "privatePort")?;
    let private_end = port(call, "privateendport", "PrivateEndPort")?;
    let vm_id = call.uuid("virtualmachineid")?;
    let vm_guest_ip = call
        .str("vmguestip")
        .map(|v| {
            v.trim()
                .parse::<IpAddr>()
                .map_err(|_| ApiError::invalid_param("Invalid vm ip address"))
        })
        .transpose()?;
    let cidrs = cidr_list(call, "cidrlist", |c| {
        format!("The given source CIDR [{c}] is invalid.")
    })?;
    if vm_id.is_none() && vm_guest_ip.is_some() {
        return Err(ApiError::invalid_param(
            "vmguestip should be set along with virtualmachineid",
        ));
    }
    settle_router_of(ctx, |s| nat_rule_network(s, id)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "FirewallRule",
            id,
            "NET.RULEMODIFY",
            format!("updating port forwarding rule {id}"),
        ),
        |state, ids| {
            let row = accessible_rule(
                state,
                call,
                id,
                RulePurpose::PortForwarding,
                "port forwarding rule",
            )?;
            not_busy(row, "port forwarding rule", id)?;
            let mut rule = row.facts.clone();
            let public_start = rule.public_start_port.unwrap_or(0);
            let public_end = rule.public_end_port.unwrap_or(public_start);
            let inconsistent = || {
                ApiError::invalid_param(format!(
                    "Unable to update the private port range of port forwarding rule as  the provided port range is not consistent with the port range : {public_start} to {public_end}"
                ))
            };
            if let (Some(start), Some(end)) = (private_start, private_end)
                && i32::from(end) - i32::from(start) != i32::from(public_end) - i32::from(public_start)
            {
                return Err(inconsistent());
            }
            if public_start != public_end && private_start.is_some() != private_end.is_some() {
                return Err(inconsistent());
            }
            match (private_start, private_end) {
                (Some(start), end) => {
                    rule.private_start_port = Some(start);
                    rule.private_end_port = Some(end.unwrap_or(start));
                }
                (None, Some(end)) => {
                    rule.private_start_port = Some(end);
                    rule.private_end_port = Some(end);
                }
                (None, None) => {}
            }
            if let Some(vm_id) = vm_id {
                let vm = accessible_vm(state, call, vm_id)?;
                if vm_gone(vm) {
                    return Err(ApiError::invalid_param(format!(
                        "Invalid user vm: {}",
                        vm.facts.name
                    )));
                }
                let nic_ip = rule
                    .network_id
                    .and_then(|n| vm_address_on(state, vm_id, n))
                    .ok_or_else(|| {
                        ApiError::invalid_param(
                            "Vm doesn't belong to network associated with ipAddress",
                        )
                    })?;
                if vm_guest_ip.is_some_and(|given| given != nic_ip) {
                    return Err(ApiError::invalid_param(
                        "IP Address is not in the VM nic's network ",
                    ));
                }
                rule.vm_id = Some(vm_id);
                rule.vm_guest_ip = Some(nic_ip);
            }
            if let Some(cidrs) = &cidrs {
                rule.cidrs = cidrs.clone();
            }
            let network_id = rule.network_id;
            Ok(vec![rule_event(
                state,
                call,
                ids,
                network_id,
                EventBody::Net(NetEvent::RuleModify(rule)),
                true,
            )])
        },
        move |state| port_forwarding_reply(state, id),
    )
    .await
}

async fn list_port_forwarding_rules(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let ip_id = call.uuid("ipaddressid")?;
    let network_id = call.uuid("networkid")?;
    if let Some(ip_id) = ip_id {
        accessible_ip(&state, call, ip_id, || {
            format!("Ip address id={ip_id} not ready for port forwarding rules yet")
        })?;
    }
    let keyword = call.str("keyword");
    let rows = nat_rows(
        &state,
        call,
        scope,
        RulePurpose::PortForwarding,
        |r| {
            id.is_none_or(|id| r.rule_id == id)
                && ip_id.is_none_or(|ip| r.ip_address_id == Some(ip))
                && network_id.is_none_or(|n| r.network_id == Some(n))
        },
        id.is_some(),
    );
    let rows: Vec<_> = rows
        .into_iter()
        .map(|row| port_forwarding_json(&state, row))
        .filter(|json| {
            keyword_matches(
                keyword,
                &[
                    json["protocol"].as_str().unwrap_or_default(),
                    json["ipaddress"].as_str().unwrap_or_default(),
                    json["virtualmachinename"].as_str().unwrap_or_default(),
                ],
            )
        })
        .collect();
    let (count, items) = paging.apply(rows);
    Ok(Reply::List {
        key: "portforwardingrule",
        count,
        items,
    })
}

/// The NAT rules of `purpose` a list shows, oldest first (CloudStack lists by id).
fn nat_rows<'s>(
    state: &'s State,
    call: &Call,
    scope: ListScope,
    purpose: RulePurpose,
    wanted: impl Fn(&NetworkRule) -> bool,
    by_id: bool,
) -> Vec<&'s RuleRow<NetworkRule>> {
    let mut rows: Vec<_> = state
        .network
        .nat_rules
        .values()
        .filter(|row| {
            let r = &row.facts;
            r.purpose == purpose
                && listed(state, call, scope, by_id, r.account_id, r.domain_id)
                && wanted(r)
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.rule_id));
    rows
}

// ---------------------------------------------------------------------------------------------
// IP forwarding (static NAT rules)

async fn create_ip_forwarding_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let ip_id = call.required_uuid("ipaddressid")?;
    let start = required_port(call, "startport", "publicPort")?;
    let end = port(call, "endport", "Public port range")?.unwrap_or(start);
    let rule_id = Uuid::new_v4();
    settle_router_of(ctx, |s| ip_network(s, ip_id, None)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::creating(
            "FirewallRule",
            rule_id,
            "NET.RULEADD",
            format!("creating ip forwarding rule {rule_id}"),
        ),
        |state, ids| {
            let ip = accessible_ip(state, call, ip_id, || {
                format!(
                    "Unable to create static nat rule; ip id={ip_id} doesn't exist in the system"
                )
            })?;
            let nat = ip
                .static_nat
                .as_ref()
                .filter(|n| !ip.facts.is_source_nat && n.state != RuleState::Revoke)
                .ok_or_else(|| {
                    ApiError::rule_conflict(format!(
                        "Can't do static nat on ip address: {}",
                        ip.facts.address
                    ))
                })?;
            let ports = port_range(start, end)?;
            let protocol = protocol(call, &["tcp", "udp"], ip.facts.zone_id)?;
            let vm_ip = nat.facts.vm_ip.ok_or_else(|| {
                ApiError::invalid_param("VM ip address of the specified public ip is not set ")
            })?;
            let open = call.bool_opt("openfirewall").unwrap_or(true);
            let rule = NetworkRule {
                rule_id,
                purpose: RulePurpose::StaticNat,
                account_id: ip.facts.account_id,
                domain_id: ip.facts.domain_id,
                zone_id: ip.facts.zone_id,
                network_id: Some(nat.facts.network_id),
                ip_address_id: Some(ip_id),
                protocol,
                public_start_port: Some(ports.0),
                public_end_port: Some(ports.1),
                private_start_port: Some(ports.0),
                private_end_port: Some(ports.1),
                vm_id: Some(nat.facts.vm_id),
                vm_guest_ip: Some(vm_ip),
                cidrs: Vec::new(),
            };
            add_rule_events(state, call, ids, ip, rule, open)
        },
        move |state| ip_forwarding_reply(state, rule_id),
    )
    .await
}

async fn delete_ip_forwarding_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    settle_router_of(ctx, |s| nat_rule_network(s, id)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "FirewallRule",
            id,
            "NET.RULEDELETE",
            format!("deleting ip forwarding rule {id}"),
        ),
        |state, ids| {
            let row = accessible_rule(
                state,
                call,
                id,
                RulePurpose::StaticNat,
                "ip forwarding rule",
            )?;
            not_busy(row, "ip forwarding rule", id)?;
            Ok(delete_rule_events(state, call, ids, row))
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn list_ip_forwarding_rules(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let ip_id = call.uuid("ipaddressid")?;
    let vm_id = call.uuid("virtualmachineid")?;
    let rows = nat_rows(
        &state,
        call,
        scope,
        RulePurpose::StaticNat,
        |r| {
            id.is_none_or(|id| r.rule_id == id)
                && ip_id.is_none_or(|ip| r.ip_address_id == Some(ip))
                && vm_id.is_none_or(|vm| r.vm_id == Some(vm))
        },
        id.is_some(),
    );
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|row| ip_forwarding_json(&state, row))
            .collect(),
    );
    Ok(Reply::List {
        key: "ipforwardingrule",
        count,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_of_both_families_are_recognised() {
        for good in [
            "0.0.0.0/0",
            "10.1.1.0/24",
            "192.168.1.1/32",
            "::/0",
            "fd00::/8",
        ] {
            assert!(valid_cidr(good), "{good}");
        }
        for bad in [
            "10.1.1.0",
            "10.1.1.0/33",
            "::/129",
            "x/8",
            "10.1.1.0/",
            "/8",
            "",
        ] {
            assert!(!valid_cidr(bad), "{bad}");
        }
    }

    #[test]
    fn port_ranges_must_be_in_order() {
        assert_eq!(port_range(22, 22), Ok((22, 22)));
        assert_eq!(port_range(22, 30), Ok((22, 30)));
        assert_eq!(port_range(30, 22).unwrap_err().code, 431);
    }
}
