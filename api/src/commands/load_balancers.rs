//! Load balancer rules on public IPs (`createLoadBalancerRule`, `deleteLoadBalancerRule`,
//! `updateLoadBalancerRule`, `listLoadBalancerRules`) and their member VMs
//! (`assignToLoadBalancerRule`, `removeFromLoadBalancerRule`,
//! `listLoadBalancerRuleInstances`): the LB.* events (LOAD_BALANCER_POLICY usage, type 11,
//! reads them).
//!
//! Like every rule (see `nat_rules`), a change on a network with a virtual router is a driver
//! request its job waits for, and a fact otherwise; conflicts with the other rules of the
//! public IP are checked inside the decision.

use std::collections::BTreeSet;
use std::net::IpAddr;

use compact_str::CompactString;
use engine::event::services::{LoadBalancerFacts, LoadBalancerMembers};
use engine::event::{EventBody, LoadBalancerEvent};
use projections::State;
use projections::compute::VmRow;
use projections::network::{LoadBalancerRow, RuleState};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::firewall_rules::{close_related_firewall_rule, open_firewall_for};
use crate::commands::nat_rules::{
    accessible_ip, checked_list, ip_network, not_busy, open_firewall, required_port, rule_event,
    rule_network, settle_router_of, valid_cidr, vm_address_on, vm_gone,
};
use crate::commands::render::{merge, owner_fields};
use crate::commands::row_reply;
use crate::commands::vms::vm_json;
use crate::commands::volumes::{accessible_vm, check_access, listed, zone_name};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobMeta};
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;
use crate::rule_conflicts::{RuleSpec, check_ip_rule};

/// The balancing algorithms the virtual router offers (`SupportedLBAlgorithms`).
const ALGORITHMS: &[&str] = &["roundrobin", "leastconn", "source"];

/// The balancing protocols the virtual router offers (its Lb `SupportedProtocols`).
const PROTOCOLS: &[&str] = &["tcp", "udp", "tcp-proxy", "ssl"];

/// The DNS port, which a source NAT address of a network with the DNS service keeps.
const DNS_PORT: u16 = 53;

const LOAD_BALANCER_FIELDS: &[ResponseField] = &[
    field("id", "string", "the load balancer rule ID"),
    field("name", "string", "the name of the load balancer"),
    field(
        "description",
        "string",
        "the description of the load balancer",
    ),
    field("publicipid", "string", "the public ip address id"),
    field("publicip", "string", "the public ip address"),
    field("publicport", "string", "the public port"),
    field("privateport", "string", "the private port"),
    field(
        "algorithm",
        "string",
        "the load balancer algorithm (source, roundrobin, leastconn)",
    ),
    field(
        "networkid",
        "string",
        "the id of the guest network the lb rule belongs to",
    ),
    field(
        "cidrlist",
        "string",
        "the CIDR list to allow traffic, all other CIDRs will be blocked. Multiple entries must be separated by a single comma character (,).",
    ),
    field("account", "string", "the account of the load balancer rule"),
    field(
        "domainid",
        "string",
        "the domain ID of the load balancer rule",
    ),
    field("domain", "string", "the domain of the load balancer rule"),
    field("state", "string", "the state of the rule"),
    field("zoneid", "string", "the id of the zone the rule belongs to"),
    field(
        "zonename",
        "string",
        "the name of the zone the load balancer rule belongs to",
    ),
    field(
        "protocol",
        "string",
        "the protocol of the loadbalanacer rule",
    ),
    field(
        "tags",
        "list",
        "the list of resource tags associated with load balancer",
    ),
    field(
        "fordisplay",
        "boolean",
        "is rule for display to the regular user",
    ),
];

const INSTANCE_FIELDS: &[ResponseField] = &[
    field(
        "loadbalancerruleinstance",
        "virtualmachine",
        "the user vm set for lb rule",
    ),
    field(
        "lbvmipaddresses",
        "list",
        "IP addresses of the vm set of lb rule",
    ),
];

const FOR_DISPLAY: &str =
    "an optional field, whether to the display the rule to the end user or not (always displayed)";

/// The load balancer commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createLoadBalancerRule",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates a load balancer rule",
        params: &[
            required(
                "algorithm",
                T::String,
                "load balancer algorithm (source, roundrobin, leastconn)",
            ),
            param(
                "description",
                T::String,
                "the description of the load balancer rule",
            ),
            required("name", T::String, "name of the load balancer rule"),
            required(
                "privateport",
                T::Integer,
                "the private port of the private IP address/virtual machine where the network traffic will be load balanced to",
            ),
            param(
                "publicipid",
                T::Uuid,
                "public IP address ID from where the network traffic will be load balanced from",
            ),
            param(
                "zoneid",
                T::Uuid,
                "zone where the load balancer is going to be created (only for ElasticLoadBalancerVm: ignored)",
            ),
            required(
                "publicport",
                T::Integer,
                "the public port from where the network traffic will be load balanced from",
            ),
            param(
                "openfirewall",
                T::Boolean,
                "if true, firewall rule for source/end public port is automatically created; if false - firewall rule has to be created explicitly. If not specified 1) defaulted to false when LB rule is being created for VPC guest network 2) in all other cases defaulted to true",
            ),
            param(
                "account",
                T::String,
                "the account associated with the load balancer (the rule belongs to the public IP's account)",
            ),
            param(
                "domainid",
                T::Uuid,
                "the domain ID associated with the load balancer (the rule belongs to the public IP's account)",
            ),
            param(
                "cidrlist",
                T::List,
                "the source CIDR list to allow traffic from; all other CIDRs will be blocked. Multiple entries must be separated by a single comma character (,). By default, all CIDRs are allowed.",
            ),
            param(
                "networkid",
                T::Uuid,
                "The guest network this rule will be created for. Required when public Ip address is not associated with any Guest network yet (VPC case)",
            ),
            param(
                "protocol",
                T::String,
                "The protocol for the LB such as tcp, udp, tcp-proxy or ssl.",
            ),
            param("fordisplay", T::Boolean, FOR_DISPLAY),
        ],
        inherits: Inherits::Nothing,
        response: LOAD_BALANCER_FIELDS,
        related: "listLoadBalancerRules,deleteLoadBalancerRule,updateLoadBalancerRule",
        manual_clock_only: false,
        handler: handler!(create_load_balancer_rule),
    },
    CommandSpec {
        name: "deleteLoadBalancerRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a load balancer rule.",
        params: &[required("id", T::Uuid, "the ID of the load balancer rule")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_load_balancer_rule),
    },
    CommandSpec {
        name: "updateLoadBalancerRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Updates load balancer",
        params: &[
            param(
                "algorithm",
                T::String,
                "load balancer algorithm (source, roundrobin, leastconn)",
            ),
            param(
                "description",
                T::String,
                "the description of the load balancer rule",
            ),
            required("id", T::Uuid, "the ID of the load balancer rule to update"),
            param("name", T::String, "the name of the load balancer rule"),
            param("protocol", T::String, "The protocol for the LB"),
            param("cidrlist", T::List, "the cidr list to forward traffic from"),
            param(
                "customid",
                T::String,
                "an optional field, in case you want to set a custom id to the resource (not supported: ignored)",
            ),
            param("fordisplay", T::Boolean, FOR_DISPLAY),
        ],
        inherits: Inherits::Nothing,
        response: LOAD_BALANCER_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(update_load_balancer_rule),
    },
    CommandSpec {
        name: "assignToLoadBalancerRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Assigns virtual machine or a list of virtual machines to a load balancer rule.",
        params: &[
            required("id", T::Uuid, "the ID of the load balancer rule"),
            param(
                "virtualmachineids",
                T::List,
                "the list of IDs of the virtual machine that are being assigned to the load balancer rule(i.e. virtualMachineIds=1,2,3)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(assign_to_load_balancer_rule),
    },
    CommandSpec {
        name: "removeFromLoadBalancerRule",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Removes a virtual machine or a list of virtual machines from a load balancer rule.",
        params: &[
            required("id", T::Uuid, "The ID of the load balancer rule"),
            param(
                "virtualmachineids",
                T::List,
                "the list of IDs of the virtual machines that are being removed from the load balancer rule (i.e. virtualMachineIds=1,2,3)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(remove_from_load_balancer_rule),
    },
    CommandSpec {
        name: "listLoadBalancerRules",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists load balancer rules.",
        params: &[
            param("id", T::Uuid, "the ID of the load balancer rule"),
            param("name", T::String, "the name of the load balancer rule"),
            param(
                "publicipid",
                T::Uuid,
                "the public IP address ID of the load balancer rule",
            ),
            param(
                "virtualmachineid",
                T::Uuid,
                "the ID of the virtual machine of the load balancer rule",
            ),
            param("zoneid", T::Uuid, "the availability zone ID"),
            param(
                "networkid",
                T::Uuid,
                "list by network ID the rule belongs to",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "list resources by display flag (every rule is displayed)",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: LOAD_BALANCER_FIELDS,
        related: "createLoadBalancerRule,deleteLoadBalancerRule,updateLoadBalancerRule",
        manual_clock_only: false,
        handler: handler!(list_load_balancer_rules),
    },
    CommandSpec {
        name: "listLoadBalancerRuleInstances",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List all virtual machine instances that are assigned to a load balancer rule.",
        params: &[
            param(
                "applied",
                T::Boolean,
                "true if listing all virtual machines currently applied to the load balancer rule; default is true",
            ),
            required("id", T::Uuid, "the ID of the load balancer rule"),
            param(
                "lbvmips",
                T::Boolean,
                "true if load balancer rule VM IP information to be included; default is false",
            ),
        ],
        inherits: Inherits::Paging,
        response: INSTANCE_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_load_balancer_rule_instances),
    },
];

// ---------------------------------------------------------------------------------------------
// Views

/// A load balancer rule as CloudStack's LoadBalancerResponse shows it (ports as strings).
pub fn load_balancer_json(state: &State, row: &LoadBalancerRow) -> Value {
    let lb = &row.rule.facts;
    let ip = state.network.public_ips.get(&lb.ip_address_id);
    let value = json!({
        "id": lb.rule_id,
        "name": lb.name,
        "description": lb.description,
        "publicipid": lb.ip_address_id,
        "publicip": ip.map(|ip| ip.facts.address),
        "publicport": lb.public_port.to_string(),
        "privateport": lb.private_port.to_string(),
        "algorithm": lb.algorithm,
        "networkid": lb.network_id,
        "cidrlist": lb.cidrs.join(","),
        "state": row.rule.state.name(),
        "zoneid": lb.zone_id,
        "zonename": zone_name(state, lb.zone_id),
        "protocol": lb.protocol,
        "tags": [],
        "fordisplay": true,
    });
    merge(value, owner_fields(state, lb.account_id, lb.domain_id))
}

/// The `loadbalancer` reply for rule `id`.
pub fn load_balancer_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(
        state.network.load_balancers.get(&id),
        "loadbalancer",
        "load balancer rule",
        id,
        |r| load_balancer_json(state, r),
    )
}

// ---------------------------------------------------------------------------------------------
// Shared checks

/// The load balancer `id`, which the caller may act on; `unknown` words the 431.
fn accessible_load_balancer<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
    unknown: impl FnOnce() -> String,
) -> Result<&'s LoadBalancerRow, ApiError> {
    let row = state
        .network
        .load_balancers
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(unknown()))?;
    let lb = &row.rule.facts;
    check_access(
        state,
        call,
        lb.account_id,
        lb.domain_id,
        "load balancer rule",
        id,
    )?;
    Ok(row)
}

/// The network of the load balancer `id`, for [`settle_router_of`].
fn lb_network(state: &State, id: Uuid) -> Option<Uuid> {
    state
        .network
        .load_balancers
        .get(&id)
        .and_then(|lb| lb.rule.facts.network_id)
}

/// A valid `algorithm`, lowercase.
fn algorithm(value: &str) -> Result<CompactString, ApiError> {
    let algorithm = value.trim().to_lowercase();
    if !ALGORITHMS.contains(&algorithm.as_str()) {
        return Err(ApiError::invalid_param(format!(
            "Invalid algorithm: {value}"
        )));
    }
    Ok(algorithm.into())
}

/// A valid balancing `protocol`, lowercase.
fn balancing_protocol(value: &str) -> Result<CompactString, ApiError> {
    let protocol = value.trim().to_lowercase();
    if !PROTOCOLS.contains(&protocol.as_str()) {
        return Err(ApiError::invalid_param(
            "LB service provider cannot support this rule",
        ));
    }
    Ok(protocol.into())
}

/// `cidrlist` of a load balancer: CIDRs or single addresses.
fn source_cidrs(call: &Call) -> Result<Option<Vec<CompactString>>, ApiError> {
    checked_list(
        call,
        "cidrlist",
        |cidr| valid_cidr(cidr) || cidr.parse::<IpAddr>().is_ok(),
        |cidr| format!("CIDR [{cidr}] is invalid."),
    )
}

/// `virtualmachineids`, in order, without repeats.
fn vm_ids(call: &Call) -> Result<Vec<Uuid>, ApiError> {
    let Some(value) = call.str("virtualmachineids") else {
        return Err(ApiError::invalid_param(
            "Both instanceids and vmidipmap  can't be null",
        ));
    };
    let mut seen = BTreeSet::new();
    let mut ids = Vec::new();
    for item in parse_list(value) {
        let id = Uuid::parse_str(&item).map_err(|_| {
            ApiError::invalid_param(format!(
                "Invalid parameter virtualmachineids value={item} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class."
            ))
        })?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(ApiError::invalid_param(
            "Both instanceids and vmidipmap  can't be null",
        ));
    }
    Ok(ids)
}

// ---------------------------------------------------------------------------------------------
// Rules

async fn create_load_balancer_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let public_port = required_port(call, "publicport", "publicPort")?;
    let private_port = required_port(call, "privateport", "privatePort")?;
    let algorithm = algorithm(call.required("algorithm")?)?;
    let name: CompactString = call.required("name")?.trim().into();
    let description = call.str("description").map(str::to_owned);
    let protocol = call
        .str("protocol")
        .map(balancing_protocol)
        .transpose()?
        .unwrap_or_else(|| "tcp".into());
    let cidrs = source_cidrs(call)?.unwrap_or_default();
    let ip_id = call.uuid("publicipid")?.ok_or_else(|| {
        ApiError::invalid_param("Unable to create load balance rule; can't find/allocate source IP")
    })?;
    let network_param = call.uuid("networkid")?;
    let rule_id = Uuid::new_v4();
    settle_router_of(ctx, |s| ip_network(s, ip_id, network_param)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::creating(
            "LoadBalancerRule",
            rule_id,
            "LB.CREATE",
            format!("creating load balancer {name}"),
        ),
        |state, ids| {
            let ip = accessible_ip(state, call, ip_id, || {
                "Unable to create load balance rule; can't find/allocate source IP".to_owned()
            })?;
            if ip.static_nat.is_some() {
                return Err(ApiError::rule_conflict(format!(
                    "Can't do load balance on ip address: {}",
                    ip.facts.address
                )));
            }
            if ip.state != projections::network::IpState::Allocated {
                return Err(ApiError::invalid_param(
                    "Unable to create load balancer rule, invalid IP address id specified",
                ));
            }
            let (network_id, in_vpc) = rule_network(state, ip, network_param)?;
            let services = state
                .compute
                .networks
                .get(&network_id)
                .and_then(|n| state.network.offerings.get(&n.facts.network_offering_id))
                .map(|o| o.facts.services.clone());
            let offers = |service: &str| {
                services
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|x| x.eq_ignore_ascii_case(service)))
            };
            if services.is_some() && !offers("Lb") {
                return Err(ApiError::invalid_param(
                    "LB service is not supported in specified network id",
                ));
            }
            if public_port == DNS_PORT && ip.facts.is_source_nat && offers("Dns") {
                return Err(ApiError::invalid_param(
                    "Error adding load balancer rule, cannot add port 53 with network service offering having DNS service and Source NAT.",
                ));
            }
            let open = open_firewall(call, in_vpc)?;
            let facts = LoadBalancerFacts {
                rule_id,
                name: name.clone(),
                description: description.clone(),
                account_id: ip.facts.account_id,
                domain_id: ip.facts.domain_id,
                zone_id: ip.facts.zone_id,
                network_id: Some(network_id),
                ip_address_id: ip_id,
                algorithm: algorithm.clone(),
                protocol: protocol.clone(),
                public_port,
                private_port,
                cidrs: cidrs.clone(),
            };
            let spec = RuleSpec::from_load_balancer(&facts, RuleState::Add);
            let mut events = Vec::new();
            let mut pending = Vec::new();
            if open && let Some((firewall, event)) = open_firewall_for(state, call, ids, ip, &spec)? {
                pending.push(firewall);
                events.push(event);
            }
            check_ip_rule(state, ip_id, &spec, &pending)?;
            events.push(rule_event(
                state,
                call,
                ids,
                Some(network_id),
                EventBody::LoadBalancer(LoadBalancerEvent::Create(facts)),
                true,
            ));
            Ok(events)
        },
        move |state| load_balancer_reply(state, rule_id),
    )
    .await
}

async fn delete_load_balancer_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    settle_router_of(ctx, |s| lb_network(s, id)).await;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "LoadBalancerRule",
            id,
            "LB.DELETE",
            format!("deleting load balancer {id}"),
        ),
        |state, ids| {
            let row = accessible_load_balancer(state, call, id, || {
                format!("Unable to find load balancer rule by id {id}")
            })?;
            not_busy(&row.rule, "load balancer rule", id)?;
            let lb = &row.rule.facts;
            let mut events: Vec<_> = close_related_firewall_rule(state, call, ids, id)
                .into_iter()
                .collect();
            events.push(rule_event(
                state,
                call,
                ids,
                lb.network_id,
                EventBody::LoadBalancer(LoadBalancerEvent::Delete(lb.clone())),
                true,
            ));
            Ok(events)
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn update_load_balancer_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    settle_router_of(ctx, |s| lb_network(s, id)).await;
    let name = call.str("name").map(|n| CompactString::from(n.trim()));
    let description = call.str("description").map(str::to_owned);
    let algorithm = call.str("algorithm").map(algorithm).transpose()?;
    let protocol = call.str("protocol").map(balancing_protocol).transpose()?;
    let cidrs = source_cidrs(call)?;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "LoadBalancerRule",
            id,
            "LB.UPDATE",
            format!("updating load balancer {id}"),
        ),
        |state, ids| {
            let row = accessible_load_balancer(state, call, id, || {
                format!("Unable to find lb rule by id={id}")
            })?;
            not_busy(&row.rule, "load balancer rule", id)?;
            let mut lb = row.rule.facts.clone();
            if let Some(name) = &name {
                lb.name = name.clone();
            }
            if let Some(description) = &description {
                lb.description = Some(description.clone());
            }
            if let Some(algorithm) = &algorithm {
                lb.algorithm = algorithm.clone();
            }
            if let Some(protocol) = &protocol {
                lb.protocol = protocol.clone();
            }
            if let Some(cidrs) = &cidrs {
                lb.cidrs = cidrs.clone();
            }
            let network_id = lb.network_id;
            Ok(vec![rule_event(
                state,
                call,
                ids,
                network_id,
                EventBody::LoadBalancer(LoadBalancerEvent::Update(lb)),
                true,
            )])
        },
        move |state| load_balancer_reply(state, id),
    )
    .await
}

async fn list_load_balancer_rules(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let ip_id = call.uuid("publicipid")?;
    let vm_id = call.uuid("virtualmachineid")?;
    let zone_id = call.uuid("zoneid")?;
    let network_id = call.uuid("networkid")?;
    let keyword = call.str("keyword");
    let mut rows: Vec<&LoadBalancerRow> = state
        .network
        .load_balancers
        .values()
        .filter(|row| {
            let lb = &row.rule.facts;
            listed(
                &state,
                call,
                scope,
                id.is_some(),
                lb.account_id,
                lb.domain_id,
            ) && id.is_none_or(|id| lb.rule_id == id)
                && name.is_none_or(|n| lb.name.eq_ignore_ascii_case(n))
                && ip_id.is_none_or(|ip| lb.ip_address_id == ip)
                && vm_id.is_none_or(|vm| row.members.contains_key(&vm))
                && zone_id.is_none_or(|z| lb.zone_id == z)
                && network_id.is_none_or(|n| lb.network_id == Some(n))
                && keyword_matches(keyword, &[&lb.name])
        })
        .collect();
    rows.sort_by_key(|r| (r.rule.created, r.rule.facts.rule_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|row| load_balancer_json(&state, row))
            .collect(),
    );
    Ok(Reply::List {
        key: "loadbalancerrule",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// Members

async fn assign_to_load_balancer_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    change_members(
        ctx,
        call,
        MembersChange {
            event_type: "LB.ASSIGN.TO.RULE",
            describe: |id| format!("assigning to load balancer {id}"),
            unknown: |id| {
                format!("Failed to assign to load balancer {id}, the load balancer was not found.")
            },
            check: check_assign,
            event: LoadBalancerEvent::AssignToRule,
        },
    )
    .await
}

/// CloudStack's checks before VMs `vm_ids` join the load balancer `row`.
fn check_assign(
    state: &State,
    call: &Call,
    row: &LoadBalancerRow,
    vm_ids: &[Uuid],
) -> Result<(), ApiError> {
    let lb = &row.rule.facts;
    let id = lb.rule_id;
    if row.rule.state == RuleState::Revoke {
        return Err(ApiError::invalid_param(format!(
            "Failed: LB rule: {id} is in deleting state"
        )));
    }
    for vm_id in vm_ids {
        let usable = state
            .compute
            .vms
            .get(vm_id)
            .is_some_and(|vm: &VmRow| !vm_gone(vm));
        if !usable {
            return Err(ApiError::invalid_param("Invalid instance id specified"));
        }
        accessible_vm(state, call, *vm_id)?;
        let address = lb
            .network_id
            .and_then(|n| vm_address_on(state, *vm_id, n))
            .ok_or_else(|| {
                ApiError::invalid_param(
                    "VM with id specified cannot be added because it doesn't belong in the same network.",
                )
            })?;
        if row.members.contains_key(vm_id) {
            return Err(ApiError::invalid_param(format!(
                "VM {vm_id} with {address} is already mapped to load balancer."
            )));
        }
    }
    Ok(())
}

async fn remove_from_load_balancer_rule(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    change_members(
        ctx,
        call,
        MembersChange {
            event_type: "LB.REMOVE.FROM.RULE",
            describe: |id| format!("removing from load balancer {id}"),
            unknown: |id| format!("Invalid load balancer value: {id}"),
            check: check_remove,
            event: LoadBalancerEvent::RemoveFromRule,
        },
    )
    .await
}

/// CloudStack's checks before VMs `vm_ids` leave the load balancer `row`.
fn check_remove(
    _state: &State,
    _call: &Call,
    row: &LoadBalancerRow,
    vm_ids: &[Uuid],
) -> Result<(), ApiError> {
    let id = row.rule.facts.rule_id;
    for vm_id in vm_ids {
        let member = row
            .members
            .get(vm_id)
            .filter(|m| m.state != RuleState::Revoke)
            .ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "The instance id: {vm_id} is not configured  for LB rule id {id}"
                ))
            })?;
        if member.pending.is_some() {
            return Err(ApiError::invalid_param(format!(
                "The instance {vm_id} is being assigned to load balancer rule {id}; try again when that job has finished"
            )));
        }
    }
    Ok(())
}

/// How `assignToLoadBalancerRule` and `removeFromLoadBalancerRule` differ; the rest of the
/// two commands is [`change_members`].
struct MembersChange {
    /// The job's event type.
    event_type: &'static str,
    /// The job's description of the change to rule `id`.
    describe: fn(Uuid) -> String,
    /// CloudStack's 431 for an unknown rule `id`.
    unknown: fn(Uuid) -> String,
    /// Whether the VMs may join or leave the rule (431 as CloudStack words it otherwise).
    check: fn(&State, &Call, &LoadBalancerRow, &[Uuid]) -> Result<(), ApiError>,
    /// The event that carries the change.
    event: fn(LoadBalancerMembers) -> LoadBalancerEvent,
}

/// Adds the VMs `virtualmachineids` to load balancer `id` or removes them, as `change` says:
/// decided on the allocation stream, awaited until the router has it.
async fn change_members(ctx: &Ctx, call: &Call, change: MembersChange) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    settle_router_of(ctx, |s| lb_network(s, id)).await;
    let vm_ids = vm_ids(call)?;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "LoadBalancerRule",
            id,
            change.event_type,
            (change.describe)(id),
        ),
        |state, ids| {
            let row = accessible_load_balancer(state, call, id, || (change.unknown)(id))?;
            (change.check)(state, call, row, &vm_ids)?;
            let lb = &row.rule.facts;
            let members = LoadBalancerMembers {
                rule_id: id,
                account_id: lb.account_id,
                domain_id: lb.domain_id,
                zone_id: lb.zone_id,
                vm_ids: vm_ids.clone(),
            };
            Ok(vec![rule_event(
                state,
                call,
                ids,
                lb.network_id,
                EventBody::LoadBalancer((change.event)(members)),
                true,
            )])
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn list_load_balancer_rule_instances(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let id = call.required_uuid("id")?;
    let applied = call.bool_opt("applied").unwrap_or(true);
    let with_ips = call.flag("lbvmips");
    let row = accessible_load_balancer(&state, call, id, || {
        format!("Unable to find load balancer rule {id}")
    })?;
    let lb = &row.rule.facts;
    let network_id = lb.network_id;
    let mut vms: Vec<&VmRow> = if applied {
        row.members
            .iter()
            .filter(|(_, m)| m.state != RuleState::Revoke)
            .filter_map(|(vm, _)| state.compute.vms.get(vm))
            .collect()
    } else {
        // The VMs that could be assigned: the owner's, on the rule's network, not members.
        state
            .compute
            .vms
            .values()
            .filter(|vm| {
                vm.facts.account_id == lb.account_id
                    && !vm_gone(vm)
                    && !row.members.contains_key(&vm.facts.vm_id)
                    && network_id
                        .is_some_and(|n| vm_address_on(&state, vm.facts.vm_id, n).is_some())
            })
            .collect()
    };
    vms.sort_by_key(|vm| (vm.created, vm.facts.vm_id));
    let items: Vec<Value> = vms
        .into_iter()
        .map(|vm| {
            let json = vm_json(&state, vm);
            if with_ips {
                let addresses: Vec<IpAddr> = network_id
                    .and_then(|n| vm_address_on(&state, vm.facts.vm_id, n))
                    .into_iter()
                    .collect();
                json!({
                    "loadbalancerruleinstance": json,
                    "lbvmipaddresses": addresses,
                })
            } else {
                json
            }
        })
        .collect();
    let (count, items) = paging.apply(items);
    Ok(Reply::List {
        key: if with_ips {
            "lbrulevmidip"
        } else {
            "loadbalancerruleinstance"
        },
        count,
        items,
    })
}
