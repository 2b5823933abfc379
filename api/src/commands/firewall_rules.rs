//! Ingress firewall rules on public IPs (`createFirewallRule`, `deleteFirewallRule`,
//! `listFirewallRules`) and egress firewall rules of guest networks
//! (`createEgressFirewallRule`, `deleteEgressFirewallRule`, `listEgressFirewallRules`): the
//! FIREWALL.OPEN / CLOSE and FIREWALL.EGRESS.OPEN / CLOSE events.
//!
//! Like every rule (see `nat_rules`), a change on a network with a virtual router is a driver
//! request its job waits for, and a fact otherwise; conflicts are checked inside the decision.
//! The port forwarding, IP forwarding and load balancer commands open their public ports with
//! an ingress rule of their own here (`openfirewall`), and close it when they are deleted.

use compact_str::CompactString;
use engine::event::network::{FirewallRuleFacts, TrafficDirection};
use engine::event::{EventBody, FirewallEvent, NewEvent};
use projections::State;
use projections::network::{PublicIpRow, RuleRow, RuleState};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::nat_rules::{
    accessible_ip, cidr_list, ip_network, not_busy, port, port_range, protocol, rule_event,
    settle_router_of,
};
use crate::commands::render::{merge, owner_fields};
use crate::commands::row_reply;
use crate::commands::volumes::{accessible_row, check_access, listed};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobIds, JobMeta};
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;
use crate::rule_conflicts::{
    RuleSpec, check_egress_rule, check_ip_rule, firewall_rule_for_ports, related_firewall_rule_id,
};

/// Every IPv4 address: the default source of an ingress rule.
const ALL_IPV4: &str = "0.0.0.0/0";

const FIREWALL_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the firewall rule"),
    field("protocol", "string", "the protocol of the firewall rule"),
    field(
        "startport",
        "integer",
        "the starting port of firewall rule's port range",
    ),
    field(
        "endport",
        "integer",
        "the ending port of firewall rule's port range",
    ),
    field(
        "ipaddressid",
        "string",
        "the public ip address id for the firewall rule",
    ),
    field("networkid", "string", "the network id of the firewall rule"),
    field(
        "ipaddress",
        "string",
        "the public ip address for the firewall rule",
    ),
    field("state", "string", "the state of the rule"),
    field(
        "cidrlist",
        "string",
        "the cidr list to forward traffic from. Multiple entries are separated by a single comma character (,).",
    ),
    field("icmptype", "integer", "type of the icmp message being sent"),
    field("icmpcode", "integer", "error code for this icmp message"),
    field(
        "tags",
        "list",
        "the list of resource tags associated with the rule",
    ),
    field(
        "fordisplay",
        "boolean",
        "is rule for display to the regular user",
    ),
    field(
        "destcidrlist",
        "string",
        "the cidr list to forward traffic to. Multiple entries are separated by a single comma character (,).",
    ),
    field(
        "traffictype",
        "string",
        "the traffic type for the firewall rule",
    ),
    field("account", "string", "the account owning the rule"),
    field("domainid", "string", "the domain ID of the rule's owner"),
    field("domain", "string", "the domain of the rule's owner"),
    field("zoneid", "string", "the zone of the rule"),
];

const FOR_DISPLAY: &str =
    "an optional field, whether to the display the rule to the end user or not (always displayed)";

/// The firewall commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createFirewallRule",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates a firewall rule for a given IP address",
        params: &[
            required(
                "ipaddressid",
                T::Uuid,
                "the IP address id of the port forwarding rule",
            ),
            required(
                "protocol",
                T::String,
                "the protocol for the firewall rule. Valid values are TCP/UDP/ICMP.",
            ),
            param(
                "startport",
                T::Integer,
                "the starting port of firewall rule",
            ),
            param("endport", T::Integer, "the ending port of firewall rule"),
            param(
                "cidrlist",
                T::List,
                "the CIDR list to forward traffic from. Multiple entries must be separated by a single comma character (,).",
            ),
            param(
                "icmptype",
                T::Integer,
                "type of the ICMP message being sent",
            ),
            param("icmpcode", T::Integer, "error code for this icmp message"),
            param("type", T::String, "type of firewallrule: system/user"),
            param("fordisplay", T::Boolean, FOR_DISPLAY),
        ],
        inherits: Inherits::Nothing,
        response: FIREWALL_FIELDS,
        related: "listFirewallRules,deleteFirewallRule",
        manual_clock_only: false,
        handler: handler!(create_firewall_rule),
    },
    CommandSpec {
        name: "deleteFirewallRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a firewall rule",
        params: &[required("id", T::Uuid, "the ID of the firewall rule")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_firewall_rule),
    },
    CommandSpec {
        name: "listFirewallRules",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all firewall rules for an IP address.",
        params: &[
            param("id", T::Uuid, "Lists rule with the specified ID."),
            param(
                "ipaddressid",
                T::Uuid,
                "the ID of IP address of the firewall services",
            ),
            param(
                "networkid",
                T::Uuid,
                "list firewall rules for certain network",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "list resources by display flag (every rule is displayed)",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: FIREWALL_FIELDS,
        related: "createFirewallRule,deleteFirewallRule",
        manual_clock_only: false,
        handler: handler!(list_firewall_rules),
    },
    CommandSpec {
        name: "createEgressFirewallRule",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates a egress firewall rule for a given network ",
        params: &[
            required(
                "networkid",
                T::Uuid,
                "the network id of the port forwarding rule",
            ),
            required(
                "protocol",
                T::String,
                "the protocol for the firewall rule. Valid values are TCP/UDP/ICMP.",
            ),
            param(
                "startport",
                T::Integer,
                "the starting port of firewall rule",
            ),
            param("endport", T::Integer, "the ending port of firewall rule"),
            param(
                "cidrlist",
                T::List,
                "the cidr list to forward traffic from. Multiple entries must be separated by a single comma character (,).",
            ),
            param(
                "destcidrlist",
                T::List,
                "the cidr list to forward traffic to. Multiple entries must be separated by a single comma character (,).",
            ),
            param(
                "icmptype",
                T::Integer,
                "type of the icmp message being sent",
            ),
            param("icmpcode", T::Integer, "error code for this icmp message"),
            param("type", T::String, "type of firewallrule: system/user"),
            param("fordisplay", T::Boolean, FOR_DISPLAY),
        ],
        inherits: Inherits::Nothing,
        response: FIREWALL_FIELDS,
        related: "listEgressFirewallRules,deleteEgressFirewallRule",
        manual_clock_only: false,
        handler: handler!(create_egress_firewall_rule),
    },
    CommandSpec {
        name: "deleteEgressFirewallRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes an egress firewall rule",
        params: &[required("id", T::Uuid, "the ID of the firewall rule")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_egress_firewall_rule),
    },
    CommandSpec {
        name: "listEgressFirewallRules",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all egress firewall rules for network ID.",
        params: &[
            param("id", T::Uuid, "Lists rule with the specified ID."),
            param(
                "networkid",
                T::Uuid,
                "the network ID for the egress firewall services",
            ),
            param(
                "ipaddressid",
                T::Uuid,
                "the ID of IP address of the firewall services",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "list resources by display flag (every rule is displayed)",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: FIREWALL_FIELDS,
        related: "createEgressFirewallRule,deleteEgressFirewallRule",
        manual_clock_only: false,
        handler: handler!(list_egress_firewall_rules),
    },
];

// ---------------------------------------------------------------------------------------------
// Shared with the port forwarding, IP forwarding and load balancer commands

/// The firewall rule `openfirewall` adds for `rule` on `ip` (CloudStack's
/// `createRuleForAllCidrs`): an ingress rule from 0.0.0.0/0 to the rule's public ports, with
/// the id [`related_firewall_rule_id`] gives; none when a live rule for the same ports and
/// protocol exists already (it is reused). Checked for conflicts; its event is a request no
/// job waits for (or a fact without a router). Returns it, as conflict detection sees it, with
/// its event.
pub(crate) fn open_firewall_for(
    state: &State,
    call: &Call,
    ids: JobIds,
    ip: &PublicIpRow,
    rule: &RuleSpec,
) -> Result<Option<(RuleSpec, NewEvent)>, ApiError> {
    let ip_id = ip.facts.ip_id;
    let Some(ports) = rule.ports else {
        return Ok(None);
    };
    if firewall_rule_for_ports(state, ip_id, ports, &rule.protocol).is_some() {
        return Ok(None);
    }
    let facts = FirewallRuleFacts {
        rule_id: related_firewall_rule_id(rule.id),
        direction: TrafficDirection::Ingress,
        account_id: ip.facts.account_id,
        domain_id: ip.facts.domain_id,
        zone_id: ip.facts.zone_id,
        network_id: rule.network_id,
        ip_address_id: Some(ip_id),
        protocol: rule.protocol.clone(),
        start_port: Some(ports.0),
        end_port: Some(ports.1),
        icmp_type: None,
        icmp_code: None,
        source_cidrs: vec![ALL_IPV4.into()],
        destination_cidrs: Vec::new(),
    };
    let spec = RuleSpec::from_firewall(&facts, RuleState::Add);
    check_ip_rule(state, ip_id, &spec, &[])?;
    let event = rule_event(
        state,
        call,
        ids,
        rule.network_id,
        EventBody::Firewall(FirewallEvent::Open(facts)),
        false,
    );
    Ok(Some((spec, event)))
}

/// The event closing the firewall rule `openfirewall` added for the rule `rule_id`, if it is
/// still there (CloudStack's `revokeRelatedFirewallRule`): a request no job waits for, or a
/// fact without a router.
pub(crate) fn close_related_firewall_rule(
    state: &State,
    call: &Call,
    ids: JobIds,
    rule_id: Uuid,
) -> Option<NewEvent> {
    let row = state
        .network
        .firewall_rules
        .get(&related_firewall_rule_id(rule_id))
        .filter(|r| r.state != RuleState::Revoke)?;
    Some(rule_event(
        state,
        call,
        ids,
        row.facts.network_id,
        EventBody::Firewall(FirewallEvent::Close(row.facts.clone())),
        false,
    ))
}

// ---------------------------------------------------------------------------------------------
// Views

/// A firewall rule as CloudStack's FirewallResponse shows it.
pub fn firewall_json(state: &State, row: &RuleRow<FirewallRuleFacts>) -> Value {
    let r = &row.facts;
    let ip = r
        .ip_address_id
        .and_then(|id| state.network.public_ips.get(&id));
    let value = json!({
        "id": r.rule_id,
        "protocol": r.protocol,
        "startport": r.start_port,
        "endport": r.end_port,
        "ipaddressid": r.ip_address_id,
        "ipaddress": ip.map(|ip| ip.facts.address),
        "networkid": r.network_id,
        "state": row.state.name(),
        "cidrlist": r.source_cidrs.join(","),
        "destcidrlist": r.destination_cidrs.join(","),
        "icmptype": r.icmp_type,
        "icmpcode": r.icmp_code,
        "tags": [],
        "fordisplay": true,
        "traffictype": match r.direction {
            TrafficDirection::Ingress => "Ingress",
            TrafficDirection::Egress => "Egress",
        },
        "zoneid": r.zone_id,
    });
    merge(value, owner_fields(state, r.account_id, r.domain_id))
}

/// The `firewallrule` reply for rule `id`.
pub fn firewall_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(
        state.network.firewall_rules.get(&id),
        "firewallrule",
        "firewall rule",
        id,
        |r| firewall_json(state, r),
    )
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// `startport` / `endport` (the end defaults to the start).
fn ports(call: &Call) -> Result<Option<(u16, u16)>, ApiError> {
    let start = port(call, "startport", "publicPort")?;
    let end = port(call, "endport", "Public port range")?;
    match (start, end) {
        (None, None) => Ok(None),
        (Some(start), end) => port_range(start, end.unwrap_or(start)).map(Some),
        (None, Some(_)) => Err(ApiError::invalid_param(
            "startport is required when endport is given",
        )),
    }
}

/// `icmptype` / `icmpcode`: only for ICMP, where they default to -1 (any); ICMP takes no ports.
fn icmp(
    call: &Call,
    protocol: &str,
    ports: Option<(u16, u16)>,
) -> Result<(Option<i32>, Option<i32>), ApiError> {
    let value = |name: &str| -> Result<Option<i32>, ApiError> {
        call.int(name)?
            .map(|v| {
                i32::try_from(v).map_err(|_| {
                    ApiError::invalid_param(format!("{name} is an invalid value: {v}"))
                })
            })
            .transpose()
    };
    let (icmp_type, icmp_code) = (value("icmptype")?, value("icmpcode")?);
    if protocol != "icmp" {
        if icmp_type.is_some() || icmp_code.is_some() {
            return Err(ApiError::invalid_param(
                "Can specify icmpCode and icmpType for ICMP protocol only",
            ));
        }
        return Ok((None, None));
    }
    if ports.is_some() {
        return Err(ApiError::invalid_param(
            "Can't specify start/end port when protocol is ICMP",
        ));
    }
    Ok((Some(icmp_type.unwrap_or(-1)), Some(icmp_code.unwrap_or(-1))))
}

/// An IPv4 CIDR as (network, prefix length).
fn ipv4_cidr(text: &str) -> Option<(u32, u32)> {
    let (address, prefix) = text.split_once('/')?;
    let address: std::net::Ipv4Addr = address.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Some((u32::from(address) & mask, prefix))
}

/// CloudStack's `isNetworkAWithinNetworkB` for IPv4 CIDRs.
fn within(inner: &str, outer: &str) -> bool {
    match (ipv4_cidr(inner), ipv4_cidr(outer)) {
        (Some((inner, inner_prefix)), Some((outer, outer_prefix))) => {
            let mask = u32::MAX.checked_shl(32 - outer_prefix).unwrap_or(0);
            inner_prefix >= outer_prefix && inner & mask == outer
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Ingress

async fn create_firewall_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let ip_id = call.required_uuid("ipaddressid")?;
    let ports = ports(call)?;
    let cidrs = cidr_list(call, "cidrlist", |c| {
        format!("Source CIDRs formatting error {c}")
    })?
    .filter(|c| !c.is_empty())
    .unwrap_or_else(|| vec![ALL_IPV4.into()]);
    let rule_id = Uuid::new_v4();
    settle_router_of(ctx, |s| ip_network(s, ip_id, None)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::creating(
            "FirewallRule",
            rule_id,
            "FIREWALL.OPEN",
            format!("creating firewall rule {rule_id}"),
        ),
        |state, ids| {
            let ip = accessible_ip(state, call, ip_id, || {
                "Unable to create firewall rule; couldn't locate IP address by id in the system"
                    .to_owned()
            })?;
            let network_id = ip.facts.network_id.ok_or_else(|| {
                ApiError::invalid_param(
                    "Unable to create firewall rule ; ip with specified id is not associated with any network",
                )
            })?;
            let protocol = protocol(call, &["tcp", "udp", "icmp"], ip.facts.zone_id)?;
            let (icmp_type, icmp_code) = icmp(call, &protocol, ports)?;
            let facts = FirewallRuleFacts {
                rule_id,
                direction: TrafficDirection::Ingress,
                account_id: ip.facts.account_id,
                domain_id: ip.facts.domain_id,
                zone_id: ip.facts.zone_id,
                network_id: Some(network_id),
                ip_address_id: Some(ip_id),
                protocol,
                start_port: ports.map(|p| p.0),
                end_port: ports.map(|p| p.1),
                icmp_type,
                icmp_code,
                source_cidrs: cidrs.clone(),
                destination_cidrs: Vec::new(),
            };
            check_ip_rule(
                state,
                ip_id,
                &RuleSpec::from_firewall(&facts, RuleState::Add),
                &[],
            )?;
            Ok(vec![rule_event(
                state,
                call,
                ids,
                Some(network_id),
                EventBody::Firewall(FirewallEvent::Open(facts)),
                true,
            )])
        },
        move |state| firewall_reply(state, rule_id),
    )
    .await
}

/// The firewall rule `id` going `direction`, which the caller may act on.
fn accessible_firewall_rule<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
    direction: TrafficDirection,
) -> Result<&'s RuleRow<FirewallRuleFacts>, ApiError> {
    let row = state
        .network
        .firewall_rules
        .get(&id)
        .filter(|r| r.facts.direction == direction);
    let row = accessible_row(state, call, "firewall rule", id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })?;
    not_busy(row, "firewall rule", id)?;
    Ok(row)
}

/// `deleteFirewallRule` and `deleteEgressFirewallRule`.
async fn delete_rule(
    ctx: &Ctx,
    call: &Call,
    direction: TrafficDirection,
) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let event_type = match direction {
        TrafficDirection::Ingress => "FIREWALL.CLOSE",
        TrafficDirection::Egress => "FIREWALL.EGRESS.CLOSE",
    };
    settle_router_of(ctx, |s| {
        s.network
            .firewall_rules
            .get(&id)
            .and_then(|r| r.facts.network_id)
    })
    .await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "FirewallRule",
            id,
            event_type,
            format!("deleting firewall rule {id}"),
        ),
        |state, ids| {
            let row = accessible_firewall_rule(state, call, id, direction)?;
            let facts = row.facts.clone();
            let body = match direction {
                TrafficDirection::Ingress => FirewallEvent::Close(facts),
                TrafficDirection::Egress => FirewallEvent::EgressClose(facts),
            };
            Ok(vec![rule_event(
                state,
                call,
                ids,
                row.facts.network_id,
                EventBody::Firewall(body),
                true,
            )])
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn delete_firewall_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    delete_rule(ctx, call, TrafficDirection::Ingress).await
}

async fn delete_egress_firewall_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    delete_rule(ctx, call, TrafficDirection::Egress).await
}

/// `listFirewallRules` and `listEgressFirewallRules`: the rules going `direction`, oldest
/// first.
fn list_rules(ctx: &Ctx, call: &Call, direction: TrafficDirection) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let ip_id = call.uuid("ipaddressid")?;
    let network_id = call.uuid("networkid")?;
    if let Some(ip_id) = ip_id {
        accessible_ip(&state, call, ip_id, || {
            format!("Ip address id={ip_id} not ready for firewall rules yet")
        })?;
    }
    let keyword = call.str("keyword");
    let mut rows: Vec<&RuleRow<FirewallRuleFacts>> = state
        .network
        .firewall_rules
        .values()
        .filter(|row| {
            let r = &row.facts;
            r.direction == direction
                && listed(&state, call, scope, id.is_some(), r.account_id, r.domain_id)
                && id.is_none_or(|id| r.rule_id == id)
                && ip_id.is_none_or(|ip| r.ip_address_id == Some(ip))
                && network_id.is_none_or(|n| r.network_id == Some(n))
                && keyword_matches(keyword, &[&r.protocol])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.rule_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|row| firewall_json(&state, row))
            .collect(),
    );
    Ok(Reply::List {
        key: "firewallrule",
        count,
        items,
    })
}

async fn list_firewall_rules(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    list_rules(ctx, call, TrafficDirection::Ingress)
}

async fn list_egress_firewall_rules(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    list_rules(ctx, call, TrafficDirection::Egress)
}

// ---------------------------------------------------------------------------------------------
// Egress

async fn create_egress_firewall_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let network_id = call.required_uuid("networkid")?;
    let ports = ports(call)?;
    let source = cidr_list(call, "cidrlist", |c| {
        format!("Source CIDRs formatting error [{c}].")
    })?;
    let destination = cidr_list(call, "destcidrlist", |c| {
        format!("Destination CIDRs formatting error [{c}].")
    })?
    .unwrap_or_default();
    let rule_id = Uuid::new_v4();
    settle_router_of(ctx, |_| Some(network_id)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::creating(
            "FirewallRule",
            rule_id,
            "FIREWALL.EGRESS.OPEN",
            format!("creating egress firewall rule {rule_id} for network {network_id}"),
        ),
        |state, ids| {
            let network = state
                .compute
                .networks
                .get(&network_id)
                .filter(|n| n.deleting.is_none())
                .ok_or_else(|| {
                    ApiError::invalid_param(format!("Unable to find network by id {network_id}"))
                })?;
            let n = &network.facts;
            check_access(state, call, n.account_id, n.domain_id, "network", network_id)?;
            let guest_cidr: CompactString = n.cidr.clone().unwrap_or_default();
            let source_cidrs: Vec<CompactString> = match &source {
                Some(cidrs) => {
                    for cidr in cidrs {
                        if cidr != ALL_IPV4 && !within(cidr, &guest_cidr) {
                            return Err(ApiError::invalid_param(format!(
                                "[{cidr}] is not within the guest CIDR [{guest_cidr}]. "
                            )));
                        }
                    }
                    // CloudStack keeps "all sources" as the guest network's CIDR.
                    cidrs
                        .iter()
                        .map(|c| if c == ALL_IPV4 { guest_cidr.clone() } else { c.clone() })
                        .collect()
                }
                None => vec![guest_cidr.clone()],
            };
            let protocol = protocol(call, &["tcp", "udp", "icmp", "all"], n.zone_id)?;
            if protocol == "all" && ports.is_some() {
                return Err(ApiError::invalid_param(format!(
                    "Unable to create firewall rule for the network id=[{network_id}] due to: ports must not be informed to protocol ALL, as it does not require them."
                )));
            }
            if n.vpc_id.is_some() {
                return Err(ApiError::invalid_param(format!(
                    "Unable to create firewall rule for the network id=[{network_id}] as firewall egress rule can be created only for non VPC networks."
                )));
            }
            if n.guest_type.eq_ignore_ascii_case("Shared") {
                return Err(ApiError::invalid_param(format!(
                    "Egress firewall rules are not supported for {}  networks",
                    n.guest_type
                )));
            }
            let (icmp_type, icmp_code) = icmp(call, &protocol, ports)?;
            let facts = FirewallRuleFacts {
                rule_id,
                direction: TrafficDirection::Egress,
                account_id: n.account_id,
                domain_id: n.domain_id,
                zone_id: n.zone_id,
                network_id: Some(network_id),
                ip_address_id: None,
                protocol,
                start_port: ports.map(|p| p.0),
                end_port: ports.map(|p| p.1),
                icmp_type,
                icmp_code,
                source_cidrs,
                destination_cidrs: destination.clone(),
            };
            check_egress_rule(state, &RuleSpec::from_firewall(&facts, RuleState::Add))?;
            Ok(vec![rule_event(
                state,
                call,
                ids,
                Some(network_id),
                EventBody::Firewall(FirewallEvent::EgressOpen(facts)),
                true,
            )])
        },
        move |state| firewall_reply(state, rule_id),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_within_the_guest_network() {
        assert!(within("10.1.1.0/24", "10.1.1.0/24"));
        assert!(within("10.1.1.128/25", "10.1.1.0/24"));
        assert!(within("10.1.1.7/32", "10.1.1.0/24"));
        assert!(!within("10.1.0.0/16", "10.1.1.0/24"));
        assert!(!within("10.2.1.0/24", "10.1.1.0/24"));
        assert!(!within("::/0", "10.1.1.0/24"));
        assert!(within("10.0.0.0/8", "0.0.0.0/0"));
    }
}
