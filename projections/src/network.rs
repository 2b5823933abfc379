//! Everything above the guest network itself: network and VPC offerings, public IP ranges and
//! addresses, NAT, firewall and load balancer rules, remote access VPNs and their users,
//! security groups, VPCs and virtual routers; and the router configuration the log implies.
//! (Guest networks and NICs live in `compute`, beside the VMs that use them.)
//!
//! Architecture Invariant: a row that the driver must program moves through CloudStack's rule
//! states. A request (an event in state `Started`) inserts it as `Add` or marks it `Revoke`;
//! the driver's result (the same event type in state `Completed`, caused by the request) makes
//! it `Active` or removes it; a DRIVER.FAILED naming the request undoes the request. A fact (an
//! event appended in state `Completed` directly, such as a rule deleted while its VM is
//! expunged) changes the row at once. [`Network::router_config`] counts `Active` and `Revoke`
//! rows — what is on the router until the driver confirms otherwise — so once every command
//! has its result, it equals what the network driver has programmed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use engine::event::network::{
    FirewallRuleFacts, IpAddressFacts, NetworkOfferingFacts, NetworkRule, RulePurpose,
    StaticNatFacts, TrafficDirection, VlanIpRangeFacts,
};
use engine::event::services::{
    LoadBalancerFacts, RemoteAccessVpnFacts, SecurityGroupFacts, SecurityGroupRule, VpcFacts,
    VpcOfferingFacts, VpnUserFacts,
};
use engine::event::vm::RouterFacts;
use engine::event::{
    DriverEvent, EventBody, EventState, FirewallEvent, LoadBalancerEvent, NetEvent,
    NetworkOfferingEvent, RecordedEvent, RouterEvent, SecurityGroupEvent, StaticNatEvent,
    VlanEvent, VpcEvent, VpcOfferingEvent, VpnEvent,
};
use engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::Created;
use crate::compute::Compute;
use crate::driver::network::{
    DhcpEntry, Direction, FirewallEntry, LoadBalancerEntry, PortForwardEntry, PublicIpEntry,
    RouterConfig, SecurityGroupConfig, SecurityRuleEntry, VpnEntry,
};
use crate::table::{PersistedTable, Table};

/// The id of the firewall rule a port forwarding, IP forwarding or load balancer rule opens
/// its ports with (`openfirewall=true`): derived from the rule's id, so deleting the rule finds
/// it again (CloudStack's `related` column, which the FIREWALL.OPEN payload does not carry).
pub fn related_firewall_rule_id(rule_id: Uuid) -> Uuid {
    engine::ids::derived_event_id(rule_id, "firewall.related")
}

/// Where a rule stands between the API and the router (CloudStack's `FirewallRule.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleState {
    /// Requested, not yet confirmed by the driver.
    Add,
    /// Programmed.
    Active,
    /// Removal requested, not yet confirmed (still programmed).
    Revoke,
}

impl RuleState {
    /// The name CloudStack shows in `state`.
    pub fn name(self) -> &'static str {
        match self {
            RuleState::Add => "Add",
            RuleState::Active => "Active",
            RuleState::Revoke => "Revoke",
        }
    }

    /// On the router: programmed, or its removal not yet confirmed.
    pub fn programmed(self) -> bool {
        matches!(self, RuleState::Active | RuleState::Revoke)
    }
}

/// A row the driver programs: the facts of its last event and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRow<F> {
    /// Facts of the last event.
    pub facts: F,
    /// Requested, programmed or being removed.
    pub state: RuleState,
    /// When it was first requested.
    pub created: Timestamp,
    /// The request the driver has not answered yet: its failure undoes exactly that request.
    pub pending: Option<Uuid>,
}

/// Where a public IP stands (CloudStack's `IpAddress.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpState {
    /// Acquired, being plumbed on the router.
    Allocating,
    /// Plumbed.
    Allocated,
    /// Release requested.
    Releasing,
}

impl IpState {
    /// The name CloudStack shows in `state`.
    pub fn name(self) -> &'static str {
        match self {
            IpState::Allocating => "Allocating",
            IpState::Allocated => "Allocated",
            IpState::Releasing => "Releasing",
        }
    }
}

/// A public IP address held by an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicIpRow {
    /// Facts of the last event.
    pub facts: IpAddressFacts,
    /// Allocating, allocated or releasing.
    pub state: IpState,
    /// When it was acquired.
    pub allocated: Timestamp,
    /// Its one-to-one NAT, when enabled (or being enabled).
    pub static_nat: Option<RuleRow<StaticNatFacts>>,
    /// The association or release request the driver has not answered yet.
    pub pending: Option<Uuid>,
}

/// A load balancer member VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRow {
    /// Being added, in, or being removed.
    pub state: RuleState,
    /// The assign or remove request not answered yet.
    pub pending: Option<Uuid>,
}

/// A load balancer rule with its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerRow {
    /// The rule.
    pub rule: RuleRow<LoadBalancerFacts>,
    /// Member VMs by id.
    pub members: BTreeMap<Uuid, MemberRow>,
}

/// A security group with its rules and member VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupRow {
    /// Facts of its creation.
    pub facts: SecurityGroupFacts,
    /// When it was created.
    pub created: Timestamp,
    /// Ingress rules by id.
    pub ingress: BTreeMap<Uuid, RuleRow<SecurityGroupRule>>,
    /// Egress rules by id.
    pub egress: BTreeMap<Uuid, RuleRow<SecurityGroupRule>>,
    /// Member VMs.
    pub members: BTreeSet<Uuid>,
}

/// Where a VPC stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpcRow {
    /// Facts of the last event.
    pub facts: VpcFacts,
    /// When it was created.
    pub created: Timestamp,
    /// The delete or restart request the driver has not answered yet.
    pub pending: Option<Uuid>,
    /// A delete was requested (CloudStack shows it `Inactive`).
    pub deleting: bool,
}

/// Where a virtual router stands (CloudStack's VM states, as `listRouters` shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouterState {
    /// Being booted.
    Starting,
    /// Up.
    Running,
    /// Being shut down (or destroyed).
    Stopping,
    /// Down.
    Stopped,
}

impl RouterState {
    /// The name CloudStack shows in `state`.
    pub fn name(self) -> &'static str {
        match self {
            RouterState::Starting => "Starting",
            RouterState::Running => "Running",
            RouterState::Stopping => "Stopping",
            RouterState::Stopped => "Stopped",
        }
    }
}

/// A virtual router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterRow {
    /// Facts of the last event.
    pub facts: RouterFacts,
    /// Where it stands.
    pub state: RouterState,
    /// The state before the request not answered yet, restored when it fails.
    pub state_before: Option<RouterState>,
    /// When it was created.
    pub created: Timestamp,
    /// The lifecycle request the driver has not answered yet.
    pub pending: Option<Uuid>,
}

/// The network services read model.
#[derive(Debug)]
pub struct Network {
    /// Network offerings by id (deleted ones removed).
    pub offerings: Table<Uuid, Created<NetworkOfferingFacts>>,
    /// VPC offerings by id.
    pub vpc_offerings: Table<Uuid, Created<VpcOfferingFacts>>,
    /// Public (and shared network) IP ranges by id.
    pub vlan_ranges: Table<Uuid, Created<VlanIpRangeFacts>>,
    /// Public IPs held by accounts, by id (released ones removed).
    pub public_ips: Table<Uuid, PublicIpRow>,
    /// Port forwarding and IP forwarding rules by id (`facts.purpose` tells which).
    pub nat_rules: Table<Uuid, RuleRow<NetworkRule>>,
    /// Ingress and egress firewall rules by id (`facts.direction` tells which).
    pub firewall_rules: Table<Uuid, RuleRow<FirewallRuleFacts>>,
    /// Load balancer rules by id.
    pub load_balancers: Table<Uuid, LoadBalancerRow>,
    /// Remote access VPNs by id.
    pub vpns: Table<Uuid, RuleRow<RemoteAccessVpnFacts>>,
    /// VPN users by id.
    pub vpn_users: Table<Uuid, RuleRow<VpnUserFacts>>,
    /// Security groups by id.
    pub security_groups: Table<Uuid, SecurityGroupRow>,
    /// VPCs by id.
    pub vpcs: Table<Uuid, VpcRow>,
    /// Virtual routers by id (destroyed ones removed).
    pub routers: Table<Uuid, RouterRow>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            offerings: Table::new("network.offerings"),
            vpc_offerings: Table::new("network.vpc_offerings"),
            vlan_ranges: Table::new("network.vlan_ranges"),
            public_ips: Table::new("network.public_ips"),
            nat_rules: Table::new("network.nat_rules"),
            firewall_rules: Table::new("network.firewall_rules"),
            load_balancers: Table::new("network.load_balancers"),
            vpns: Table::new("network.vpns"),
            vpn_users: Table::new("network.vpn_users"),
            security_groups: Table::new("network.security_groups"),
            vpcs: Table::new("network.vpcs"),
            routers: Table::new("network.routers"),
        }
    }
}

/// How an event moves a row: requested, confirmed, or recorded as a fact.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// State `Started`: a request, with its id.
    Request(Uuid),
    /// State `Completed` caused by a request: the driver's confirmation.
    Result,
    /// State `Completed` without a request: a fact.
    Fact,
}

/// Adds a rule: a request inserts it as `Add`, a fact or result makes it `Active`.
fn add<F>(table: &mut Table<Uuid, RuleRow<F>>, id: Uuid, facts: &F, step: Step, at: Timestamp)
where
    F: Clone + Serialize + serde::de::DeserializeOwned,
{
    match step {
        Step::Request(request) => table.insert(
            id,
            RuleRow {
                facts: facts.clone(),
                state: RuleState::Add,
                created: at,
                pending: Some(request),
            },
        ),
        Step::Result | Step::Fact => match table.get_mut(&id) {
            Some(row) => {
                row.facts = facts.clone();
                row.state = RuleState::Active;
                row.pending = None;
            }
            None => table.insert(
                id,
                RuleRow {
                    facts: facts.clone(),
                    state: RuleState::Active,
                    created: at,
                    pending: None,
                },
            ),
        },
    }
}

/// Removes a rule: a request marks it `Revoke`, a fact or result removes it.
fn remove<F>(table: &mut Table<Uuid, RuleRow<F>>, id: Uuid, step: Step)
where
    F: Clone + Serialize + serde::de::DeserializeOwned,
{
    match step {
        Step::Request(request) => {
            if let Some(row) = table.get_mut(&id) {
                row.state = RuleState::Revoke;
                row.pending = Some(request);
            }
        }
        Step::Result | Step::Fact => {
            table.remove(&id);
        }
    }
}

/// Undoes the request `command` on whichever row of `table` waits for it: an `Add` goes, a
/// `Revoke` is `Active` again.
fn undo<F>(table: &mut Table<Uuid, RuleRow<F>>, command: Uuid)
where
    F: Clone + Serialize + serde::de::DeserializeOwned,
{
    let Some(id) = table
        .iter()
        .find(|(_, row)| row.pending == Some(command))
        .map(|(id, _)| *id)
    else {
        return;
    };
    undo_row(table, id);
}

fn undo_row<F>(table: &mut Table<Uuid, RuleRow<F>>, id: Uuid)
where
    F: Clone + Serialize + serde::de::DeserializeOwned,
{
    let Some(row) = table.get_mut(&id) else {
        return;
    };
    match row.state {
        RuleState::Add => {
            table.remove(&id);
        }
        RuleState::Revoke | RuleState::Active => {
            row.state = RuleState::Active;
            row.pending = None;
        }
    }
}

impl Network {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 12] {
        [
            &mut self.offerings,
            &mut self.vpc_offerings,
            &mut self.vlan_ranges,
            &mut self.public_ips,
            &mut self.nat_rules,
            &mut self.firewall_rules,
            &mut self.load_balancers,
            &mut self.vpns,
            &mut self.vpn_users,
            &mut self.security_groups,
            &mut self.vpcs,
            &mut self.routers,
        ]
    }

    /// Applies one event. `is_result` says whether the event answers a pending driver command
    /// (the orchestration read model, applied after this one, still holds it).
    pub(crate) fn apply(&mut self, event: &RecordedEvent, is_result: bool) {
        let envelope = &event.envelope;
        let at = envelope.occurred_at;
        let step = match envelope.state {
            EventState::Started => Step::Request(envelope.id),
            _ if is_result => Step::Result,
            _ => Step::Fact,
        };
        match &*event.body {
            EventBody::Driver(DriverEvent::Failed(failed)) => self.undo(failed.command_id),
            EventBody::NetworkOffering(e) => match e {
                NetworkOfferingEvent::Create(o) | NetworkOfferingEvent::Edit(o) => {
                    let created = self
                        .offerings
                        .get(&o.network_offering_id)
                        .map_or(at, |row| row.created);
                    self.offerings.insert(
                        o.network_offering_id,
                        Created {
                            facts: o.clone(),
                            created,
                        },
                    );
                }
                NetworkOfferingEvent::Delete(o) => {
                    self.offerings.remove(&o.network_offering_id);
                }
                NetworkOfferingEvent::Assign(_) | NetworkOfferingEvent::Remove(_) => {}
            },
            EventBody::VpcOffering(e) => match e {
                VpcOfferingEvent::Create(o) | VpcOfferingEvent::Update(o) => {
                    let created = self
                        .vpc_offerings
                        .get(&o.vpc_offering_id)
                        .map_or(at, |row| row.created);
                    self.vpc_offerings.insert(
                        o.vpc_offering_id,
                        Created {
                            facts: o.clone(),
                            created,
                        },
                    );
                }
                VpcOfferingEvent::Delete(o) => {
                    self.vpc_offerings.remove(&o.vpc_offering_id);
                }
            },
            EventBody::Vlan(e) => match e {
                VlanEvent::IpRangeCreate(r) => self.vlan_ranges.insert(
                    r.vlan_range_id,
                    Created {
                        facts: r.clone(),
                        created: at,
                    },
                ),
                VlanEvent::IpRangeDelete(r) => {
                    self.vlan_ranges.remove(&r.vlan_range_id);
                }
            },
            EventBody::Net(e) => self.apply_net(e, step, at),
            EventBody::StaticNat(e) => self.apply_static_nat(e, step, at),
            EventBody::Firewall(e) => match e {
                FirewallEvent::Open(r) | FirewallEvent::EgressOpen(r) => {
                    add(&mut self.firewall_rules, r.rule_id, r, step, at)
                }
                FirewallEvent::Close(r) | FirewallEvent::EgressClose(r) => {
                    remove(&mut self.firewall_rules, r.rule_id, step)
                }
            },
            EventBody::LoadBalancer(e) => self.apply_load_balancer(e, step, at),
            EventBody::Vpn(e) => match e {
                VpnEvent::RemoteAccessCreate(v) => add(&mut self.vpns, v.vpn_id, v, step, at),
                VpnEvent::RemoteAccessDestroy(v) => remove(&mut self.vpns, v.vpn_id, step),
                VpnEvent::UserAdd(u) => add(&mut self.vpn_users, u.vpn_user_id, u, step, at),
                VpnEvent::UserRemove(u) => remove(&mut self.vpn_users, u.vpn_user_id, step),
            },
            EventBody::SecurityGroup(e) => self.apply_security_group(e, step, at),
            EventBody::Vpc(e) => self.apply_vpc(e, step, at),
            EventBody::Router(e) => self.apply_router(e, step, at),
            _ => {}
        }
    }

    fn apply_net(&mut self, e: &NetEvent, step: Step, at: Timestamp) {
        match e {
            NetEvent::IpAssign(ip) => match step {
                Step::Request(request) => self.public_ips.insert(
                    ip.ip_id,
                    PublicIpRow {
                        facts: ip.clone(),
                        state: IpState::Allocating,
                        allocated: at,
                        static_nat: None,
                        pending: Some(request),
                    },
                ),
                Step::Result | Step::Fact => match self.public_ips.get_mut(&ip.ip_id) {
                    Some(row) => {
                        row.facts = ip.clone();
                        row.state = IpState::Allocated;
                        row.pending = None;
                    }
                    None => self.public_ips.insert(
                        ip.ip_id,
                        PublicIpRow {
                            facts: ip.clone(),
                            state: IpState::Allocated,
                            allocated: at,
                            static_nat: None,
                            pending: None,
                        },
                    ),
                },
            },
            NetEvent::IpRelease(ip) => match step {
                Step::Request(request) => {
                    if let Some(row) = self.public_ips.get_mut(&ip.ip_id) {
                        row.state = IpState::Releasing;
                        row.pending = Some(request);
                    }
                }
                Step::Result | Step::Fact => {
                    self.public_ips.remove(&ip.ip_id);
                }
            },
            // A change requested keeps the rule as programmed until the driver confirms the
            // new facts; a refusal leaves it as it was.
            NetEvent::RuleModify(rule) if matches!(step, Step::Request(_)) => {
                if let (Step::Request(request), Some(row)) =
                    (step, self.nat_rules.get_mut(&rule.rule_id))
                {
                    row.pending = Some(request);
                }
            }
            NetEvent::RuleAdd(rule) | NetEvent::RuleModify(rule) => {
                add(&mut self.nat_rules, rule.rule_id, rule, step, at)
            }
            NetEvent::RuleDelete(rule) => remove(&mut self.nat_rules, rule.rule_id, step),
        }
    }

    fn apply_static_nat(&mut self, e: &StaticNatEvent, step: Step, at: Timestamp) {
        let (StaticNatEvent::Enable(nat) | StaticNatEvent::Disable(nat)) = e;
        let Some(ip) = self.public_ips.get_mut(&nat.ip_address_id) else {
            return;
        };
        match (e, step) {
            (StaticNatEvent::Enable(_), Step::Request(request)) => {
                ip.static_nat = Some(RuleRow {
                    facts: nat.clone(),
                    state: RuleState::Add,
                    created: at,
                    pending: Some(request),
                });
            }
            (StaticNatEvent::Enable(_), _) => {
                let created = ip.static_nat.as_ref().map_or(at, |n| n.created);
                ip.static_nat = Some(RuleRow {
                    facts: nat.clone(),
                    state: RuleState::Active,
                    created,
                    pending: None,
                });
            }
            (StaticNatEvent::Disable(_), Step::Request(request)) => {
                if let Some(row) = ip.static_nat.as_mut() {
                    row.state = RuleState::Revoke;
                    row.pending = Some(request);
                }
            }
            (StaticNatEvent::Disable(_), _) => ip.static_nat = None,
        }
    }

    fn apply_load_balancer(&mut self, e: &LoadBalancerEvent, step: Step, at: Timestamp) {
        match e {
            // A change requested keeps the rule as programmed until the driver confirms it.
            LoadBalancerEvent::Update(lb) if matches!(step, Step::Request(_)) => {
                if let (Step::Request(request), Some(row)) =
                    (step, self.load_balancers.get_mut(&lb.rule_id))
                {
                    row.rule.pending = Some(request);
                }
            }
            LoadBalancerEvent::Create(lb) | LoadBalancerEvent::Update(lb) => {
                let members = self
                    .load_balancers
                    .get(&lb.rule_id)
                    .map(|row| row.members.clone())
                    .unwrap_or_default();
                let created = self
                    .load_balancers
                    .get(&lb.rule_id)
                    .map_or(at, |row| row.rule.created);
                let (state, pending) = match step {
                    Step::Request(request) => (RuleState::Add, Some(request)),
                    Step::Result | Step::Fact => (RuleState::Active, None),
                };
                self.load_balancers.insert(
                    lb.rule_id,
                    LoadBalancerRow {
                        rule: RuleRow {
                            facts: lb.clone(),
                            state,
                            created,
                            pending,
                        },
                        members,
                    },
                );
            }
            LoadBalancerEvent::Delete(lb) => match step {
                Step::Request(request) => {
                    if let Some(row) = self.load_balancers.get_mut(&lb.rule_id) {
                        row.rule.state = RuleState::Revoke;
                        row.rule.pending = Some(request);
                    }
                }
                Step::Result | Step::Fact => {
                    self.load_balancers.remove(&lb.rule_id);
                }
            },
            LoadBalancerEvent::AssignToRule(m) => {
                let Some(row) = self.load_balancers.get_mut(&m.rule_id) else {
                    return;
                };
                for vm in &m.vm_ids {
                    let member = match step {
                        Step::Request(request) => MemberRow {
                            state: RuleState::Add,
                            pending: Some(request),
                        },
                        Step::Result | Step::Fact => MemberRow {
                            state: RuleState::Active,
                            pending: None,
                        },
                    };
                    row.members.insert(*vm, member);
                }
            }
            LoadBalancerEvent::RemoveFromRule(m) => {
                let Some(row) = self.load_balancers.get_mut(&m.rule_id) else {
                    return;
                };
                for vm in &m.vm_ids {
                    match step {
                        Step::Request(request) => {
                            if let Some(member) = row.members.get_mut(vm) {
                                member.state = RuleState::Revoke;
                                member.pending = Some(request);
                            }
                        }
                        Step::Result | Step::Fact => {
                            row.members.remove(vm);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn apply_security_group(&mut self, e: &SecurityGroupEvent, step: Step, at: Timestamp) {
        match e {
            SecurityGroupEvent::Create(g) => self.security_groups.insert(
                g.group_id,
                SecurityGroupRow {
                    facts: g.clone(),
                    created: at,
                    ingress: BTreeMap::new(),
                    egress: BTreeMap::new(),
                    members: BTreeSet::new(),
                },
            ),
            SecurityGroupEvent::Delete(g) => {
                self.security_groups.remove(&g.group_id);
            }
            SecurityGroupEvent::AuthIngress(r)
            | SecurityGroupEvent::AuthEgress(r)
            | SecurityGroupEvent::RevokeIngress(r)
            | SecurityGroupEvent::RevokeEgress(r) => {
                let Some(group) = self.security_groups.get_mut(&r.group_id) else {
                    return;
                };
                let rules = match e {
                    SecurityGroupEvent::AuthIngress(_) | SecurityGroupEvent::RevokeIngress(_) => {
                        &mut group.ingress
                    }
                    _ => &mut group.egress,
                };
                let authorize = matches!(
                    e,
                    SecurityGroupEvent::AuthIngress(_) | SecurityGroupEvent::AuthEgress(_)
                );
                for rule in &r.rules {
                    match (authorize, step) {
                        (true, Step::Request(request)) => {
                            rules.insert(
                                rule.rule_id,
                                RuleRow {
                                    facts: rule.clone(),
                                    state: RuleState::Add,
                                    created: at,
                                    pending: Some(request),
                                },
                            );
                        }
                        (true, _) => {
                            let created = rules.get(&rule.rule_id).map_or(at, |row| row.created);
                            rules.insert(
                                rule.rule_id,
                                RuleRow {
                                    facts: rule.clone(),
                                    state: RuleState::Active,
                                    created,
                                    pending: None,
                                },
                            );
                        }
                        (false, Step::Request(request)) => {
                            if let Some(row) = rules.get_mut(&rule.rule_id) {
                                row.state = RuleState::Revoke;
                                row.pending = Some(request);
                            }
                        }
                        (false, _) => {
                            rules.remove(&rule.rule_id);
                        }
                    }
                }
            }
            // Membership is a fact of deploy and expunge: the driver is told, the row is not
            // held back.
            SecurityGroupEvent::Assign(m) => {
                if let Some(group) = self.security_groups.get_mut(&m.group_id) {
                    group.members.insert(m.vm_id);
                }
            }
            SecurityGroupEvent::Remove(m) => {
                if let Some(group) = self.security_groups.get_mut(&m.group_id) {
                    group.members.remove(&m.vm_id);
                }
            }
        }
    }

    fn apply_vpc(&mut self, e: &VpcEvent, step: Step, at: Timestamp) {
        match e {
            VpcEvent::Create(v) | VpcEvent::Update(v) => {
                let created = self.vpcs.get(&v.vpc_id).map_or(at, |row| row.created);
                let deleting = self.vpcs.get(&v.vpc_id).is_some_and(|row| row.deleting);
                self.vpcs.insert(
                    v.vpc_id,
                    VpcRow {
                        facts: v.clone(),
                        created,
                        pending: None,
                        deleting,
                    },
                );
            }
            VpcEvent::Restart(v) => {
                if let Some(row) = self.vpcs.get_mut(&v.vpc_id) {
                    row.pending = match step {
                        Step::Request(request) => Some(request),
                        Step::Result | Step::Fact => None,
                    };
                }
            }
            VpcEvent::Delete(v) => match step {
                Step::Request(request) => {
                    if let Some(row) = self.vpcs.get_mut(&v.vpc_id) {
                        row.deleting = true;
                        row.pending = Some(request);
                    }
                }
                Step::Result | Step::Fact => {
                    self.vpcs.remove(&v.vpc_id);
                }
            },
        }
    }

    fn apply_router(&mut self, e: &RouterEvent, step: Step, at: Timestamp) {
        let router = match e {
            RouterEvent::Stats(_) => return,
            RouterEvent::Create(r)
            | RouterEvent::Destroy(r)
            | RouterEvent::Start(r)
            | RouterEvent::Stop(r)
            | RouterEvent::Reboot(r)
            | RouterEvent::Ha(r)
            | RouterEvent::Upgrade(r) => &r.router,
        };
        let id = router.router_id;
        if let RouterEvent::Create(_) = e {
            self.routers.insert(
                id,
                RouterRow {
                    facts: router.clone(),
                    state: RouterState::Stopped,
                    state_before: None,
                    created: at,
                    pending: None,
                },
            );
            return;
        }
        if matches!(e, RouterEvent::Destroy(_)) && matches!(step, Step::Result | Step::Fact) {
            self.routers.remove(&id);
            return;
        }
        let Some(row) = self.routers.get_mut(&id) else {
            return;
        };
        row.facts = router.clone();
        match step {
            Step::Request(request) => {
                row.state_before = Some(row.state);
                row.pending = Some(request);
                row.state = match e {
                    RouterEvent::Start(_) | RouterEvent::Reboot(_) => RouterState::Starting,
                    _ => RouterState::Stopping,
                };
            }
            Step::Result | Step::Fact => {
                row.state_before = None;
                row.pending = None;
                row.state = match e {
                    RouterEvent::Stop(_) => RouterState::Stopped,
                    _ => RouterState::Running,
                };
            }
        }
    }

    /// Undoes whatever request `command` made, after the driver refused it.
    fn undo(&mut self, command: Uuid) {
        undo(&mut self.nat_rules, command);
        undo(&mut self.firewall_rules, command);
        undo(&mut self.vpns, command);
        undo(&mut self.vpn_users, command);
        let ip_request = self
            .public_ips
            .iter()
            .find(|(_, ip)| ip.pending == Some(command))
            .map(|(id, _)| *id);
        if let Some(id) = ip_request {
            let acquiring = self
                .public_ips
                .get(&id)
                .is_some_and(|ip| ip.state == IpState::Allocating);
            if acquiring {
                self.public_ips.remove(&id);
            } else if let Some(ip) = self.public_ips.get_mut(&id) {
                ip.state = IpState::Allocated;
                ip.pending = None;
            }
        }
        for ip in self.public_ips.values_mut_where(|ip| {
            ip.static_nat
                .as_ref()
                .is_some_and(|n| n.pending == Some(command))
        }) {
            if let Some(nat) = ip.static_nat.as_mut() {
                if nat.state == RuleState::Add {
                    ip.static_nat = None;
                } else {
                    nat.state = RuleState::Active;
                    nat.pending = None;
                }
            }
        }
        for lb in self.load_balancers.values_mut_where(|lb| {
            lb.rule.pending == Some(command)
                || lb.members.values().any(|m| m.pending == Some(command))
        }) {
            if lb.rule.pending == Some(command) {
                lb.rule.pending = None;
                // A creation that failed stays `Add` without a request, and goes below.
                if lb.rule.state == RuleState::Revoke {
                    lb.rule.state = RuleState::Active;
                }
            }
            lb.members.retain(|_, m| {
                if m.pending != Some(command) {
                    return true;
                }
                m.pending = None;
                let keep = m.state != RuleState::Add;
                m.state = RuleState::Active;
                keep
            });
        }
        // A load balancer whose creation failed goes.
        let failed_creations: Vec<Uuid> = self
            .load_balancers
            .iter()
            .filter(|(_, lb)| lb.rule.state == RuleState::Add && lb.rule.pending.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in failed_creations {
            self.load_balancers.remove(&id);
        }
        for g in self.security_groups.values_mut_where(|g| {
            g.ingress
                .values()
                .chain(g.egress.values())
                .any(|r| r.pending == Some(command))
        }) {
            for rules in [&mut g.ingress, &mut g.egress] {
                rules.retain(|_, r| {
                    if r.pending != Some(command) {
                        return true;
                    }
                    r.pending = None;
                    let keep = r.state != RuleState::Add;
                    r.state = RuleState::Active;
                    keep
                });
            }
        }
        for v in self.vpcs.values_mut_where(|v| v.pending == Some(command)) {
            v.pending = None;
            v.deleting = false;
        }
        for r in self
            .routers
            .values_mut_where(|r| r.pending == Some(command))
        {
            r.pending = None;
            r.state = match r.state_before.take() {
                // A start that failed leaves the router down.
                Some(_) if r.state == RouterState::Starting => RouterState::Stopped,
                Some(before) => before,
                None => RouterState::Stopped,
            };
        }
    }

    /// The router serving a guest network: its own, or its VPC's.
    pub fn router_of_network(&self, compute: &Compute, network_id: Uuid) -> Option<&RouterRow> {
        let vpc = compute
            .networks
            .get(&network_id)
            .and_then(|n| n.facts.vpc_id);
        self.routers.values().find(|r| {
            r.facts.network_id == Some(network_id) || (vpc.is_some() && r.facts.vpc_id == vpc)
        })
    }

    /// The guest networks a router serves.
    pub fn networks_of_router(&self, compute: &Compute, router_id: Uuid) -> BTreeSet<Uuid> {
        let Some(router) = self.routers.get(&router_id) else {
            return BTreeSet::new();
        };
        compute
            .networks
            .values()
            .filter(|n| {
                router.facts.network_id == Some(n.facts.network_id)
                    || (router.facts.vpc_id.is_some() && n.facts.vpc_id == router.facts.vpc_id)
            })
            .map(|n| n.facts.network_id)
            .collect()
    }

    /// The public IP row of an address id.
    fn address_of(&self, ip_id: Option<Uuid>) -> Option<IpAddr> {
        ip_id
            .and_then(|id| self.public_ips.get(&id))
            .map(|ip| ip.facts.address)
    }

    /// The guest address of a VM on one network (its NIC there).
    pub fn vm_ip_on(compute: &Compute, vm_id: Uuid, network_id: Option<Uuid>) -> Option<IpAddr> {
        compute
            .nics
            .values()
            .find(|n| n.facts.vm_id == vm_id && Some(n.facts.network_id) == network_id)
            .and_then(|n| n.facts.ip_address)
    }

    /// A NAT rule as the router programs it.
    pub fn port_forward_entry(&self, rule: &NetworkRule) -> Option<PortForwardEntry> {
        let all_ports = rule.purpose == RulePurpose::StaticNat && rule.public_start_port.is_none();
        Some(PortForwardEntry {
            public_ip: self.address_of(rule.ip_address_id)?,
            protocol: rule.protocol.to_string(),
            public_start_port: rule.public_start_port,
            public_end_port: if all_ports {
                None
            } else {
                rule.public_end_port.or(rule.public_start_port)
            },
            private_ip: rule.vm_guest_ip?,
            private_start_port: rule.private_start_port,
            private_end_port: rule.private_end_port.or(rule.private_start_port),
            cidrs: rule.cidrs.iter().map(ToString::to_string).collect(),
        })
    }

    /// A firewall rule as the router programs it.
    pub fn firewall_entry(&self, rule: &FirewallRuleFacts) -> FirewallEntry {
        FirewallEntry {
            direction: match rule.direction {
                TrafficDirection::Ingress => Direction::Ingress,
                TrafficDirection::Egress => Direction::Egress,
            },
            public_ip: self.address_of(rule.ip_address_id),
            protocol: rule.protocol.to_string(),
            start_port: rule.start_port,
            end_port: rule.end_port,
            icmp_type: rule.icmp_type,
            icmp_code: rule.icmp_code,
            source_cidrs: rule.source_cidrs.iter().map(ToString::to_string).collect(),
            destination_cidrs: rule
                .destination_cidrs
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    /// A load balancer rule as the router programs it, with the members `member` selects.
    pub fn load_balancer_entry(
        &self,
        compute: &Compute,
        row: &LoadBalancerRow,
        member: impl Fn(&MemberRow) -> bool,
    ) -> Option<LoadBalancerEntry> {
        let lb = &row.rule.facts;
        Some(LoadBalancerEntry {
            public_ip: self.address_of(Some(lb.ip_address_id))?,
            public_port: lb.public_port,
            private_port: lb.private_port,
            algorithm: lb.algorithm.to_string(),
            protocol: lb.protocol.to_string(),
            members: row
                .members
                .iter()
                .filter(|(_, m)| member(m))
                .filter_map(|(vm, _)| Self::vm_ip_on(compute, *vm, lb.network_id))
                .collect(),
            cidrs: lb.cidrs.iter().map(ToString::to_string).collect(),
        })
    }

    /// The DHCP entries of a router's networks, by MAC.
    pub fn dhcp_entries(
        compute: &Compute,
        networks: &BTreeSet<Uuid>,
    ) -> BTreeMap<String, DhcpEntry> {
        compute
            .nics
            .values()
            .filter(|n| networks.contains(&n.facts.network_id))
            .filter_map(|n| {
                Some((
                    n.facts.mac_address.to_string(),
                    Self::dhcp_entry(compute, &n.facts)?,
                ))
            })
            .collect()
    }

    /// The DHCP entry of one NIC (none without an address or a VM).
    pub fn dhcp_entry(
        compute: &Compute,
        nic: &engine::event::network::NicFacts,
    ) -> Option<DhcpEntry> {
        let vm = compute.vms.get(&nic.vm_id)?;
        Some(DhcpEntry {
            ip: nic.ip_address?,
            hostname: vm.facts.name.to_string(),
            default: nic.is_default,
        })
    }

    /// The users of an account's VPNs that are programmed (or being added, when `adding`
    /// names the request adding one).
    pub fn vpn_user_names(&self, account_id: Uuid) -> BTreeSet<String> {
        self.vpn_users
            .values()
            .filter(|u| u.facts.account_id == account_id && u.state.programmed())
            .map(|u| u.facts.username.to_string())
            .collect()
    }

    /// The routers running a programmed VPN of an account.
    pub fn vpn_routers(&self, compute: &Compute, account_id: Uuid) -> BTreeSet<Uuid> {
        self.vpns
            .values()
            .filter(|v| v.facts.account_id == account_id && v.state.programmed())
            .filter_map(|v| self.router_for(compute, v.facts.network_id, v.facts.vpc_id))
            .collect()
    }

    /// The router of a network, or else of a VPC.
    pub fn router_for(
        &self,
        compute: &Compute,
        network_id: Option<Uuid>,
        vpc_id: Option<Uuid>,
    ) -> Option<Uuid> {
        network_id
            .and_then(|n| self.router_of_network(compute, n))
            .or_else(|| {
                vpc_id.and_then(|v| self.routers.values().find(|r| r.facts.vpc_id == Some(v)))
            })
            .map(|r| r.facts.router_id)
    }

    /// The configuration the log implies for a router: every programmed row of the networks
    /// it serves (see the module's invariant).
    pub fn router_config(&self, compute: &Compute, router_id: Uuid) -> RouterConfig {
        let Some(router) = self.routers.get(&router_id) else {
            return RouterConfig::default();
        };
        let networks = self.networks_of_router(compute, router_id);
        let on_router = |network: Option<Uuid>, vpc: Option<Uuid>| {
            network.is_some_and(|n| networks.contains(&n))
                || (vpc.is_some() && vpc == router.facts.vpc_id)
        };
        let public_ips = self
            .public_ips
            .values()
            .filter(|ip| ip.state != IpState::Allocating)
            .filter(|ip| on_router(ip.facts.network_id, ip.facts.vpc_id))
            .map(|ip| {
                (
                    ip.facts.address,
                    PublicIpEntry {
                        source_nat: ip.facts.is_source_nat,
                        static_nat: ip
                            .static_nat
                            .as_ref()
                            .filter(|n| n.state.programmed())
                            .and_then(|n| n.facts.vm_ip),
                    },
                )
            })
            .collect();
        let port_forwards = self
            .nat_rules
            .iter()
            .filter(|(_, r)| r.state.programmed() && on_router(r.facts.network_id, None))
            .filter_map(|(id, r)| Some((*id, self.port_forward_entry(&r.facts)?)))
            .collect();
        let firewall = self
            .firewall_rules
            .iter()
            .filter(|(_, r)| r.state.programmed() && on_router(r.facts.network_id, None))
            .map(|(id, r)| (*id, self.firewall_entry(&r.facts)))
            .collect();
        let load_balancers = self
            .load_balancers
            .iter()
            .filter(|(_, lb)| {
                lb.rule.state.programmed() && on_router(lb.rule.facts.network_id, None)
            })
            .filter_map(|(id, lb)| {
                Some((
                    *id,
                    self.load_balancer_entry(compute, lb, |m| m.state.programmed())?,
                ))
            })
            .collect();
        let vpn = self
            .vpns
            .values()
            .find(|v| v.state.programmed() && on_router(v.facts.network_id, v.facts.vpc_id))
            .map(|v| VpnEntry {
                public_ip: v.facts.public_ip,
                ip_range: v.facts.ip_range.to_string(),
            });
        let vpn_users = if vpn.is_some() {
            self.vpn_user_names(router.facts.account_id)
        } else {
            BTreeSet::new()
        };
        RouterConfig {
            public_ips,
            port_forwards,
            firewall,
            load_balancers,
            dhcp: Self::dhcp_entries(compute, &networks),
            vpn,
            vpn_users,
        }
    }

    /// A security group rule as the hosts apply it.
    pub fn security_rule_entry(rule: &SecurityGroupRule) -> SecurityRuleEntry {
        SecurityRuleEntry {
            rule_id: rule.rule_id,
            protocol: rule.protocol.to_string(),
            start_port: rule.start_port,
            end_port: rule.end_port,
            icmp_type: rule.icmp_type,
            icmp_code: rule.icmp_code,
            cidr: rule.cidr.as_ref().map(ToString::to_string),
            source_group_id: rule.source_group_id,
        }
    }

    /// The configuration the log implies for a security group on the hosts.
    pub fn security_group_config(&self, group_id: Uuid) -> SecurityGroupConfig {
        let Some(group) = self.security_groups.get(&group_id) else {
            return SecurityGroupConfig::default();
        };
        let programmed = |rules: &BTreeMap<Uuid, RuleRow<SecurityGroupRule>>| {
            rules
                .iter()
                .filter(|(_, r)| r.state.programmed())
                .map(|(id, r)| (*id, Self::security_rule_entry(&r.facts)))
                .collect()
        };
        SecurityGroupConfig {
            ingress: programmed(&group.ingress),
            egress: programmed(&group.egress),
            members: group.members.clone(),
        }
    }
}
