//! Security groups (`createSecurityGroup`, `deleteSecurityGroup`, `listSecurityGroups`,
//! `authorizeSecurityGroupIngress`/`Egress`, `revokeSecurityGroupIngress`/`Egress`) and the
//! Ledgerstack test extension `listSecurityGroupConfigurations`.
//!
//! Creating and deleting a group are facts (SG.CREATE, SG.DELETE): the hosts learn of a group
//! through its rules and members. Authorizing and revoking rules are driver requests
//! (SG.AUTH.*, SG.REVOKE.*): a rule shows at once and its job finishes once the hosts applied
//! it. Names are unique per account and a group's members come from deploys, so the create
//! and delete decisions are taken on the [`ALLOCATION`] stream.

use std::collections::BTreeSet;

use compact_str::CompactString;
use engine::event::services::{SecurityGroupFacts, SecurityGroupRule, SecurityGroupRules};
use engine::event::{EventBody, SecurityGroupEvent};
use projections::State;
use projections::driver::network::NetworkDriver;
use projections::network::{RuleRow, RuleState, SecurityGroupRow};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::{ALLOCATION, owner};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::nat_rules::valid_cidr;
use crate::commands::render::{merge, owner_fields};
use crate::commands::row_reply;
use crate::commands::volumes::{accessible_row, listed};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobMeta};
use crate::protocol::params::parse_list;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

/// The group every account's VMs join when no other is named; CloudStack reserves its name.
pub const DEFAULT_GROUP: &str = "default";

const GROUP_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the security group"),
    field("name", "string", "the name of the security group"),
    field(
        "description",
        "string",
        "the description of the security group",
    ),
    field("account", "string", "the account owning the security group"),
    field("domainid", "string", "the domain ID of the security group"),
    field("domain", "string", "the domain name of the security group"),
    field(
        "ingressrule",
        "set",
        "the list of ingress rules associated with the security group",
    ),
    field(
        "egressrule",
        "set",
        "the list of egress rules associated with the security group",
    ),
    field(
        "tags",
        "set",
        "the list of resource tags associated with the rule",
    ),
    field(
        "virtualmachinecount",
        "integer",
        "the number of virtualmachines associated with this securitygroup",
    ),
    field(
        "virtualmachineids",
        "set",
        "the list of virtualmachine ids associated with this securitygroup",
    ),
];

const CONFIGURATION_FIELDS: &[ResponseField] = &[
    field("securitygroupid", "string", "the id of the security group"),
    field("name", "string", "the name of the security group"),
    field(
        "matches",
        "boolean",
        "true when the rules and members the simulator applied equal those the log implies",
    ),
    field(
        "programmed",
        "object",
        "the group as the simulator applied it (empty when it does not know the group)",
    ),
    field(
        "expected",
        "object",
        "the group as the event log implies it",
    ),
];

/// The parameters authorize commands share (CloudStack's AuthorizeSecurityGroup*Cmd).
const AUTHORIZE_PARAMS: &[crate::registry::ParamSpec] = &[
    param(
        "securitygroupid",
        T::Uuid,
        "The ID of the security group. Mutually exclusive with securityGroupName parameter",
    ),
    param(
        "securitygroupname",
        T::String,
        "The name of the security group. Mutually exclusive with securityGroupId parameter",
    ),
    param(
        "protocol",
        T::String,
        "the protocol for the ACL rule. Valid values are TCP/UDP/ICMP/ALL or valid protocol number (see /etc/protocols). ALL is default.",
    ),
    param("startport", T::Integer, "start port for this rule"),
    param("endport", T::Integer, "end port for this rule"),
    param(
        "icmptype",
        T::Integer,
        "type of the icmp message being sent",
    ),
    param("icmpcode", T::Integer, "error code for this icmp message"),
    param(
        "cidrlist",
        T::List,
        "the cidr list associated. Multiple entries must be separated by a single comma character (,).",
    ),
    param(
        "usersecuritygrouplist",
        T::Map,
        "user to security group mapping",
    ),
    param(
        "account",
        T::String,
        "an optional account for the security group. Must be used with domainId.",
    ),
    param(
        "domainid",
        T::Uuid,
        "an optional domainId for the security group. If the account parameter is used, domainId must also be used.",
    ),
];

/// The security group commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createSecurityGroup",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Creates a security group",
        params: &[
            required("name", T::String, "name of the security group"),
            param(
                "description",
                T::String,
                "the description of the security group",
            ),
            param(
                "account",
                T::String,
                "an optional account for the security group. Must be used with domainId.",
            ),
            param(
                "domainid",
                T::Uuid,
                "an optional domainId for the security group. If the account parameter is used, domainId must also be used.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: GROUP_FIELDS,
        related: "listSecurityGroups,deleteSecurityGroup",
        manual_clock_only: false,
        handler: handler!(create_security_group),
    },
    CommandSpec {
        name: "deleteSecurityGroup",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Deletes security group",
        params: &[
            param(
                "id",
                T::Uuid,
                "The ID of the security group. Mutually exclusive with name parameter",
            ),
            param(
                "name",
                T::String,
                "The ID of the security group. Mutually exclusive with id parameter",
            ),
            param(
                "account",
                T::String,
                "the account of the security group. Must be specified with domain ID",
            ),
            param(
                "domainid",
                T::Uuid,
                "the domain ID of account owning the security group",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_security_group),
    },
    CommandSpec {
        name: "listSecurityGroups",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists security groups",
        params: &[
            param("id", T::Uuid, "list the security group by the id provided"),
            param(
                "securitygroupname",
                T::String,
                "lists security groups by name",
            ),
            param(
                "virtualmachineid",
                T::Uuid,
                "lists security groups by virtual machine id",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: GROUP_FIELDS,
        related: "createSecurityGroup",
        manual_clock_only: false,
        handler: handler!(list_security_groups),
    },
    CommandSpec {
        name: "authorizeSecurityGroupIngress",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Authorizes a particular ingress rule for this security group",
        params: AUTHORIZE_PARAMS,
        inherits: Inherits::Nothing,
        response: GROUP_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(authorize_ingress),
    },
    CommandSpec {
        name: "authorizeSecurityGroupEgress",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Authorizes a particular egress rule for this security group",
        params: AUTHORIZE_PARAMS,
        inherits: Inherits::Nothing,
        response: GROUP_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(authorize_egress),
    },
    CommandSpec {
        name: "revokeSecurityGroupIngress",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a particular ingress rule from this security group",
        params: &[required("id", T::Uuid, "The ID of the ingress rule")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(revoke_ingress),
    },
    CommandSpec {
        name: "revokeSecurityGroupEgress",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a particular egress rule from this security group",
        params: &[required("id", T::Uuid, "The ID of the egress rule")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(revoke_egress),
    },
    CommandSpec {
        name: "listSecurityGroupConfigurations",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Ledgerstack simulator extension: lists each security group's rules and members as the simulated hosts applied them and as the event log implies them, and whether they match.",
        params: &[param(
            "securitygroupid",
            T::Uuid,
            "only this security group",
        )],
        inherits: Inherits::Paging,
        response: CONFIGURATION_FIELDS,
        related: "listSecurityGroups,listRouterConfigurations",
        manual_clock_only: false,
        handler: handler!(list_security_group_configurations),
    },
];

// ---------------------------------------------------------------------------------------------
// JSON views

/// One rule as CloudStack's SecurityGroupRuleResponse shows it: ports for TCP/UDP, type and
/// code for ICMP; a CIDR, or the name and account of the group it admits.
fn rule_json(state: &State, rule: &SecurityGroupRule) -> Value {
    let icmp = rule.protocol == "icmp";
    let source = rule
        .source_group_id
        .and_then(|id| state.network.security_groups.get(&id));
    json!({
        "ruleid": rule.rule_id,
        "protocol": rule.protocol,
        "startport": rule.start_port.filter(|_| !icmp),
        "endport": rule.end_port.filter(|_| !icmp),
        "icmptype": rule.icmp_type.filter(|_| icmp),
        "icmpcode": rule.icmp_code.filter(|_| icmp),
        "cidr": rule.cidr,
        "securitygroupname": source.map(|g| g.facts.name.clone()),
        "account": source.and_then(|g| state.identity.account_name(g.facts.account_id)),
        "tags": [],
    })
}

/// The rules of a group CloudStack would show: every one not being revoked.
fn shown_rules<'r>(
    rules: impl Iterator<Item = &'r RuleRow<SecurityGroupRule>>,
    only: Option<&BTreeSet<Uuid>>,
) -> impl Iterator<Item = &'r SecurityGroupRule> {
    rules
        .filter(|r| r.state != RuleState::Revoke)
        .map(|r| &r.facts)
        .filter(move |r| only.is_none_or(|ids| ids.contains(&r.rule_id)))
}

/// A group as CloudStack's SecurityGroupResponse shows it; with `only`, just those rules (the
/// reply of an authorize shows the rules it added).
fn group_json(state: &State, row: &SecurityGroupRow, only: Option<&BTreeSet<Uuid>>) -> Value {
    let g = &row.facts;
    let ingress: Vec<Value> = shown_rules(row.ingress.values(), only)
        .map(|r| rule_json(state, r))
        .collect();
    let egress: Vec<Value> = shown_rules(row.egress.values(), only)
        .map(|r| rule_json(state, r))
        .collect();
    let value = json!({
        "id": g.group_id,
        "name": g.name,
        "description": g.description,
        "ingressrule": ingress,
        "egressrule": egress,
        "tags": [],
        "virtualmachinecount": row.members.len(),
        "virtualmachineids": row.members,
    });
    merge(value, owner_fields(state, g.account_id, g.domain_id))
}

/// The `securitygroup` reply for group `id` (with `only`, just those rules).
pub fn group_reply(
    state: &State,
    id: Uuid,
    only: Option<&BTreeSet<Uuid>>,
) -> Result<Reply, ApiError> {
    row_reply(
        state.network.security_groups.get(&id),
        "securitygroup",
        "security group",
        id,
        |r| group_json(state, r, only),
    )
}

// ---------------------------------------------------------------------------------------------
// Lookups

/// The group of `account_id` named `name` (case-insensitively, as CloudStack's database
/// compares names).
pub fn group_by_name<'s>(
    state: &'s State,
    account_id: Uuid,
    name: &str,
) -> Option<&'s SecurityGroupRow> {
    state
        .network
        .security_groups
        .values()
        .find(|g| g.facts.account_id == account_id && g.facts.name.eq_ignore_ascii_case(name))
}

/// The group `id`, which the caller may act on (431 when unknown, 531 when not theirs).
fn accessible_group<'s>(
    state: &'s State,
    call: &Call,
    id: Uuid,
) -> Result<&'s SecurityGroupRow, ApiError> {
    let row = state.network.security_groups.get(&id);
    accessible_row(state, call, "security group", id, row, |r| {
        (r.facts.account_id, r.facts.domain_id)
    })
}

/// The group an authorize names by `securitygroupid` or by `securitygroupname` (in the account
/// the call acts for).
fn authorize_target<'s>(state: &'s State, call: &Call) -> Result<&'s SecurityGroupRow, ApiError> {
    let command = call.command.name;
    match (call.uuid("securitygroupid")?, call.str("securitygroupname")) {
        (Some(_), Some(_)) => Err(ApiError::invalid_param(
            "securityGroupId and securityGroupName parameters are mutually exclusive",
        )),
        (Some(id), None) => {
            if state.network.security_groups.get(&id).is_none() {
                return Err(ApiError::invalid_param(format!(
                    "Unable to find security group by id {id}"
                )));
            }
            accessible_group(state, call, id)
        }
        (None, Some(name)) => {
            let (account_id, _) = owner(call, state)?;
            group_by_name(state, account_id, name).ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Unable to find security group {name} for account id={account_id}"
                ))
            })
        }
        (None, None) => Err(ApiError::invalid_param(format!(
            "Either securityGroupId or securityGroupName is required by {command} command"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Create, delete, list

async fn create_security_group(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = call.required("name")?.trim().to_owned();
    if name.is_empty() {
        return Err(ApiError::invalid_param(
            "Security group name cannot be empty",
        ));
    }
    let description = call.str("description").map(str::to_owned);
    let group_id = Uuid::new_v4();
    ctx.decide(ALLOCATION, |state| {
        let (account_id, domain_id) = owner(call, state)?;
        if group_by_name(state, account_id, &name).is_some() {
            return Err(ApiError::invalid_param(format!(
                "Unable to create security group, a group with name {name} already exists."
            )));
        }
        Ok(vec![call.event(EventBody::SecurityGroup(
            SecurityGroupEvent::Create(SecurityGroupFacts {
                group_id,
                name: name.as_str().into(),
                description: description.clone(),
                account_id,
                domain_id,
            }),
        ))])
    })
    .await?;
    group_reply(&ctx.models.read(), group_id, None)
}

async fn delete_security_group(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.uuid("id")?;
    let name = call.str("name");
    ctx.decide(ALLOCATION, |state| {
        let row = match (id, name) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_param(
                    "name and id parameters are mutually exclusive",
                ));
            }
            (Some(id), None) => {
                if state.network.security_groups.get(&id).is_none() {
                    return Err(ApiError::invalid_param(format!(
                        "Unable to find network group: {id}; failed to delete group."
                    )));
                }
                accessible_group(state, call, id)?
            }
            (None, Some(name)) => {
                let (account_id, _) = owner(call, state)?;
                group_by_name(state, account_id, name).ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Unable to find security group by name {name} for the account id={account_id}"
                    ))
                })?
            }
            (None, None) => {
                return Err(ApiError::invalid_param(
                    "Either id or name parameter is required by deleteSecurityGroup command",
                ));
            }
        };
        let group_id = row.facts.group_id;
        if row.facts.name.eq_ignore_ascii_case(DEFAULT_GROUP) {
            return Err(ApiError::invalid_param(
                "The network group default is reserved",
            ));
        }
        let admitted_elsewhere = state.network.security_groups.values().any(|g| {
            g.ingress
                .values()
                .chain(g.egress.values())
                .any(|r| r.facts.source_group_id == Some(group_id))
        });
        if admitted_elsewhere {
            return Err(ApiError::in_use(
                "Cannot delete group when there are security rules that allow this group",
            ));
        }
        if !row.members.is_empty() {
            return Err(ApiError::in_use(
                "Cannot delete group when it's in use by virtual machines",
            ));
        }
        Ok(vec![call.event(EventBody::SecurityGroup(
            SecurityGroupEvent::Delete(row.facts.clone()),
        ))])
    })
    .await?;
    Ok(Reply::success())
}

async fn list_security_groups(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let name = call.str("securitygroupname");
    let vm_id = call.uuid("virtualmachineid")?;
    let keyword = call.str("keyword");
    let mut rows: Vec<&SecurityGroupRow> = state
        .network
        .security_groups
        .values()
        .filter(|row| {
            let g = &row.facts;
            listed(&state, call, scope, id.is_some(), g.account_id, g.domain_id)
                && id.is_none_or(|id| g.group_id == id)
                && name.is_none_or(|n| g.name.eq_ignore_ascii_case(n))
                && vm_id.is_none_or(|vm| row.members.contains(&vm))
                && keyword_matches(
                    keyword,
                    &[&g.name, g.description.as_deref().unwrap_or_default()],
                )
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.group_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|r| group_json(&state, r, None))
            .collect(),
    );
    Ok(Reply::List {
        key: "securitygroup",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// Rules

/// Which way a rule filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Ingress,
    Egress,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Ingress => "ingress",
            Way::Egress => "egress",
        }
    }
}

/// What one authorize asks for, validated: the protocol and its ports (or ICMP type and
/// code), shared by every rule it adds (one per CIDR and per admitted group).
#[derive(Debug, Clone, PartialEq)]
struct RuleShape {
    protocol: CompactString,
    start_port: Option<u16>,
    end_port: Option<u16>,
    icmp_type: Option<i32>,
    icmp_code: Option<i32>,
}

impl RuleShape {
    /// Same protocol, ports and ICMP type/code as `rule` (CloudStack's duplicate test, with
    /// the peer compared separately).
    fn same_as(&self, rule: &SecurityGroupRule) -> bool {
        self.protocol == rule.protocol
            && self.start_port == rule.start_port
            && self.end_port == rule.end_port
            && self.icmp_type == rule.icmp_type
            && self.icmp_code == rule.icmp_code
    }
}

/// A 32-bit parameter as `i32` (431 beyond).
fn int32(call: &Call, name: &str) -> Result<Option<i32>, ApiError> {
    call.int(name)?
        .map(|v| {
            i32::try_from(v).map_err(|_| {
                ApiError::invalid_param(format!("Invalid value {v} for parameter {name}"))
            })
        })
        .transpose()
}

/// CloudStack's validation of an authorize's protocol, ports and ICMP type/code.
fn rule_shape(call: &Call) -> Result<RuleShape, ApiError> {
    let mut protocol = call.str("protocol").unwrap_or("all").trim().to_lowercase();
    let start = int32(call, "startport")?;
    let end = int32(call, "endport")?;
    let mut icmp_type = int32(call, "icmptype")?;
    let mut icmp_code = int32(call, "icmpcode")?;
    if !protocol.is_empty() && protocol.bytes().all(|b| b.is_ascii_digit()) {
        match protocol.parse::<u32>() {
            // ICMP by number is ICMP, with "any" type and code unless given.
            Ok(1) => {
                protocol = "icmp".into();
                icmp_type.get_or_insert(-1);
                icmp_code.get_or_insert(-1);
            }
            Ok(n) if n <= 255 => {}
            _ => {
                return Err(ApiError::invalid_param(format!(
                    "Invalid protocol number: {protocol}"
                )));
            }
        }
    } else if !matches!(protocol.as_str(), "tcp" | "udp" | "icmp" | "all") {
        return Err(ApiError::invalid_param(format!(
            "Invalid protocol {protocol}"
        )));
    }
    let mut shape = RuleShape {
        protocol: protocol.as_str().into(),
        start_port: None,
        end_port: None,
        icmp_type: None,
        icmp_code: None,
    };
    match protocol.as_str() {
        "icmp" => {
            let (Some(t), Some(c)) = (icmp_type, icmp_code) else {
                return Err(ApiError::invalid_param(format!(
                    "Invalid ICMP type/code specified, icmpType = {}, icmpCode = {}",
                    icmp_type.map_or("null".to_owned(), |t| t.to_string()),
                    icmp_code.map_or("null".to_owned(), |c| c.to_string()),
                )));
            };
            if t == -1 && c != -1 {
                return Err(ApiError::invalid_param("Invalid icmp code"));
            }
            if t != -1 && c == -1 {
                return Err(ApiError::invalid_param(
                    "Invalid icmp code: need non-negative icmp code ",
                ));
            }
            if !(-1..=255).contains(&t) || !(-1..=255).contains(&c) {
                return Err(ApiError::invalid_param("Invalid icmp type/code "));
            }
            shape.icmp_type = Some(t);
            shape.icmp_code = Some(c);
        }
        "all" if start.is_some() || end.is_some() => {
            return Err(ApiError::invalid_param(
                "Cannot specify startPort or endPort without specifying protocol",
            ));
        }
        "tcp" | "udp" => {
            let (Some(start), Some(mut end)) = (start, end) else {
                return Err(ApiError::invalid_param(format!(
                    "Invalid port range specified, startPort = {}, endPort = {}",
                    start.map_or("null".to_owned(), |s| s.to_string()),
                    end.map_or("null".to_owned(), |e| e.to_string()),
                )));
            };
            if start == 0 && end == 0 {
                end = 65535;
            }
            if start > end {
                return Err(ApiError::invalid_param(format!(
                    "Invalid port range {start}:{end}"
                )));
            }
            if start > 65535 || end > 65535 || start < -1 || end < -1 {
                return Err(ApiError::invalid_param(format!(
                    "Invalid port numbers {start}:{end}"
                )));
            }
            let (Ok(start), Ok(end)) = (u16::try_from(start), u16::try_from(end)) else {
                return Err(ApiError::invalid_param(format!(
                    "Invalid port range {start}:{end}"
                )));
            };
            shape.start_port = Some(start);
            shape.end_port = Some(end);
        }
        // `all` covers every port; other protocols by number: CloudStack ignores ports.
        _ => {}
    }
    Ok(shape)
}

/// The groups `usersecuritygrouplist` admits, looked up among the accounts of `domain_id`.
fn admitted_groups(state: &State, call: &Call, domain_id: Uuid) -> Result<Vec<Uuid>, ApiError> {
    let entries = call
        .params
        .map("usersecuritygrouplist")
        .map_err(|e| ApiError::malformed_map(e.to_string()))?;
    let mut groups = Vec::new();
    for entry in entries {
        let field = |name: &str| {
            entry
                .iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (Some(group), Some(account_name)) = (field("group"), field("account")) else {
            return Err(ApiError::invalid_param(
                "Invalid user group specified, fields 'group' and 'account' cannot be null, please specify groups in the form:  userGroupList[0].group=XXX&userGroupList[0].account=YYY",
            ));
        };
        let account = state
            .identity
            .account_by_name(domain_id, account_name)
            .ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Nonexistent account: {account_name} when trying to authorize security group rule"
                ))
            })?;
        let found = group_by_name(state, account.facts.account_id, group).ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Nonexistent group {group} for account {account_name}/{domain_id} is given, unable to authorize security group rule."
            ))
        })?;
        if !groups.contains(&found.facts.group_id) {
            groups.push(found.facts.group_id);
        }
    }
    Ok(groups)
}

/// The peer of one rule to add: a CIDR or a group.
#[derive(Debug, Clone, PartialEq)]
enum Peer {
    Cidr(CompactString),
    Group(Uuid),
}

async fn authorize_ingress(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    authorize(ctx, call, Way::Ingress).await
}

async fn authorize_egress(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    authorize(ctx, call, Way::Egress).await
}

/// `authorizeSecurityGroupIngress` / `Egress`: one rule per CIDR and per admitted group, the
/// ones the group already has skipped (as CloudStack does); nothing new is a failure.
async fn authorize(ctx: &Ctx, call: &Call, way: Way) -> Result<Reply, ApiError> {
    let shape = rule_shape(call)?;
    let cidrs = call.str("cidrlist").map(parse_list);
    let groups_asked = call
        .params
        .map("usersecuritygrouplist")
        .map_err(|e| ApiError::malformed_map(e.to_string()))?
        .len();
    if cidrs.is_none() && groups_asked == 0 {
        return Err(ApiError::invalid_param(
            "At least one cidr or at least one security group needs to be specified",
        ));
    }
    let cidrs = cidrs.unwrap_or_default();
    if let Some(bad) = cidrs.iter().find(|c| !valid_cidr(c)) {
        return Err(ApiError::invalid_param(format!("Invalid cidr {bad}")));
    }
    // Target group for the job's metadata; the decision looks it up again.
    let group_id = {
        let state = ctx.models.read();
        authorize_target(&state, call)?.facts.group_id
    };
    let (event_type, what) = match way {
        Way::Ingress => ("SG.AUTH.INGRESS", "Adding Ingress Rule"),
        Way::Egress => ("SG.AUTH.EGRESS", "Adding Egress Rule"),
    };
    // Rule ids are chosen once, one per possible peer, so a decision run again names the same
    // rules and the reply can show exactly those of them the decision added.
    let rule_ids: Vec<Uuid> = (0..groups_asked + cidrs.len())
        .map(|_| Uuid::new_v4())
        .collect();
    let shown: BTreeSet<Uuid> = rule_ids.iter().copied().collect();
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on("SecurityGroup", group_id, event_type, what.to_owned()),
        |state, ids| {
            let row = authorize_target(state, call)?;
            let mut peers: Vec<Peer> = admitted_groups(state, call, row.facts.domain_id)?
                .into_iter()
                .map(Peer::Group)
                .collect();
            peers.extend(cidrs.iter().map(|c| Peer::Cidr(c.as_str().into())));
            let existing = match way {
                Way::Ingress => &row.ingress,
                Way::Egress => &row.egress,
            };
            let mut rules = Vec::new();
            for (n, (peer, rule_id)) in peers.iter().zip(&rule_ids).enumerate() {
                let duplicate = existing.values().any(|r| {
                    shape.same_as(&r.facts)
                        && match peer {
                            Peer::Cidr(c) => r.facts.cidr.as_ref() == Some(c),
                            Peer::Group(g) => r.facts.source_group_id == Some(*g),
                        }
                });
                if duplicate || peers[..n].contains(peer) {
                    continue;
                }
                rules.push(SecurityGroupRule {
                    rule_id: *rule_id,
                    protocol: shape.protocol.clone(),
                    start_port: shape.start_port,
                    end_port: shape.end_port,
                    icmp_type: shape.icmp_type,
                    icmp_code: shape.icmp_code,
                    cidr: match peer {
                        Peer::Cidr(c) => Some(c.clone()),
                        Peer::Group(_) => None,
                    },
                    source_group_id: match peer {
                        Peer::Group(g) => Some(*g),
                        Peer::Cidr(_) => None,
                    },
                });
            }
            if rules.is_empty() {
                return Err(ApiError::internal(format!(
                    "Failed to authorize security group {} rule(s)",
                    way.name()
                )));
            }
            let body = SecurityGroupRules {
                group_id: row.facts.group_id,
                account_id: row.facts.account_id,
                domain_id: row.facts.domain_id,
                rules,
            };
            let event = match way {
                Way::Ingress => SecurityGroupEvent::AuthIngress(body),
                Way::Egress => SecurityGroupEvent::AuthEgress(body),
            };
            Ok(vec![ids.request(call, EventBody::SecurityGroup(event))])
        },
        move |state| group_reply(state, group_id, Some(&shown)),
    )
    .await
}

async fn revoke_ingress(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    revoke(ctx, call, Way::Ingress).await
}

async fn revoke_egress(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    revoke(ctx, call, Way::Egress).await
}

/// `revokeSecurityGroupIngress` / `Egress`: the rule `id`, of the named direction.
async fn revoke(ctx: &Ctx, call: &Call, way: Way) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let event_type = match way {
        Way::Ingress => "SG.REVOKE.INGRESS",
        Way::Egress => "SG.REVOKE.EGRESS",
    };
    let description = match way {
        Way::Ingress => "Revoking Ingress Rule",
        Way::Egress => "Revoking Egress Rule",
    };
    jobs::submit_request(
        ctx,
        call,
        JobMeta::on("SecurityGroup", id, event_type, description.to_owned()),
        |state| {
            let found = state.network.security_groups.values().find_map(|g| {
                if let Some(rule) = g.ingress.get(&id) {
                    Some((g, rule, Way::Ingress))
                } else {
                    g.egress.get(&id).map(|rule| (g, rule, Way::Egress))
                }
            });
            let Some((group, rule, found_way)) = found else {
                return Err(ApiError::invalid_param(format!(
                    "Unable to find security rule with id {id}"
                )));
            };
            if found_way != way {
                return Err(ApiError::invalid_param(format!(
                    "Mismatch in rule type for security rule {id}"
                )));
            }
            accessible_group(state, call, group.facts.group_id)?;
            if rule.pending.is_some() {
                return Err(ApiError::invalid_param(format!(
                    "Security rule {id} is being {}: try again once that job has finished",
                    if rule.state == RuleState::Revoke {
                        "revoked"
                    } else {
                        "authorized"
                    }
                )));
            }
            let body = SecurityGroupRules {
                group_id: group.facts.group_id,
                account_id: group.facts.account_id,
                domain_id: group.facts.domain_id,
                rules: vec![rule.facts.clone()],
            };
            Ok(EventBody::SecurityGroup(match way {
                Way::Ingress => SecurityGroupEvent::RevokeIngress(body),
                Way::Egress => SecurityGroupEvent::RevokeEgress(body),
            }))
        },
        |_| Ok(Reply::success()),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// The test extension

async fn list_security_group_configurations(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let group_id = call.uuid("securitygroupid")?;
    let keyword = call.str("keyword");
    let mut rows: Vec<&SecurityGroupRow> = state
        .network
        .security_groups
        .values()
        .filter(|g| {
            group_id.is_none_or(|id| g.facts.group_id == id)
                && keyword_matches(keyword, &[&g.facts.name])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.group_id));
    let items = rows
        .into_iter()
        .map(|row| {
            let id = row.facts.group_id;
            let programmed = ctx.simulator.security_group_config(id).unwrap_or_default();
            let expected = state.network.security_group_config(id);
            let serialise = |value| {
                serde_json::to_value(value).map_err(|e| {
                    ApiError::internal(format!(
                        "the configuration of security group {id} does not serialise: {e}"
                    ))
                })
            };
            Ok(json!({
                "securitygroupid": id,
                "name": row.facts.name,
                "matches": programmed == expected,
                "programmed": serialise(&programmed)?,
                "expected": serialise(&expected)?,
            }))
        })
        .collect::<Result<Vec<Value>, ApiError>>()?;
    let (count, items) = paging.apply(items);
    Ok(Reply::List {
        key: "securitygroupconfiguration",
        count,
        items,
    })
}
