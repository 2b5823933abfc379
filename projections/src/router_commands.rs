//! What each network event asks the network driver to do: the translation from the log's
//! vocabulary (NET.RULEADD, LB.ASSIGN.TO.RULE, NIC.CREATE, ...) to [`NetworkAction`]s.
//!
//! Architecture Invariant: an action is computed from the read models *after* they applied
//! the event, so its payload (a rule's public address, a member's guest address, a starting
//! router's whole configuration) is what the log says at that position, and the same log
//! always yields the same commands.

use engine::event::{
    EventBody, FirewallEvent, LoadBalancerEvent, NetEvent, NetworkEvent, NicEvent, RouterEvent,
    SecurityGroupEvent, StaticNatEvent, VpcEvent, VpnEvent,
};
use uuid::Uuid;

use crate::compute::Compute;
use crate::driver::DriverAction;
use crate::driver::network::{Direction, NetworkAction};
use crate::network::{Network, RouterState};

/// A driver action with what it acts on: (action, resource type, resource id, account, domain).
pub type RoutedCommand = (DriverAction, &'static str, Uuid, Uuid, Uuid);

/// The network command an event asks for, if any. `fact` says the event was recorded in state
/// `Completed` without a request: such a command only goes to a router that is up or coming up
/// (a stopped router gets its whole configuration when it starts).
pub fn network_command(
    body: &EventBody,
    compute: &Compute,
    network: &Network,
    fact: bool,
) -> Option<RoutedCommand> {
    let router_of = |network_id: Option<Uuid>, vpc_id: Option<Uuid>| {
        let id = network.router_for(compute, network_id, vpc_id)?;
        let row = network.routers.get(&id)?;
        if fact && row.state == RouterState::Stopped {
            return None;
        }
        Some(id)
    };
    let (action, resource_type, resource_id, account_id, domain_id) = match body {
        EventBody::Net(e) => match e {
            NetEvent::IpAssign(ip) | NetEvent::IpRelease(ip) => {
                let router_id = router_of(ip.network_id, ip.vpc_id)?;
                let action = if matches!(e, NetEvent::IpAssign(_)) {
                    NetworkAction::AssociateIp {
                        router_id,
                        address: ip.address,
                        source_nat: ip.is_source_nat,
                    }
                } else {
                    NetworkAction::ReleaseIp {
                        router_id,
                        address: ip.address,
                    }
                };
                (
                    action,
                    "PublicIpAddress",
                    ip.ip_id,
                    ip.account_id,
                    ip.domain_id,
                )
            }
            NetEvent::RuleAdd(rule) | NetEvent::RuleModify(rule) => {
                let router_id = router_of(rule.network_id, None)?;
                let entry = network.port_forward_entry(rule)?;
                (
                    NetworkAction::AddPortForward {
                        router_id,
                        rule_id: rule.rule_id,
                        entry,
                    },
                    "FirewallRule",
                    rule.rule_id,
                    rule.account_id,
                    rule.domain_id,
                )
            }
            NetEvent::RuleDelete(rule) => (
                NetworkAction::RemovePortForward {
                    router_id: router_of(rule.network_id, None)?,
                    rule_id: rule.rule_id,
                },
                "FirewallRule",
                rule.rule_id,
                rule.account_id,
                rule.domain_id,
            ),
        },
        EventBody::StaticNat(e) => {
            let (StaticNatEvent::Enable(nat) | StaticNatEvent::Disable(nat)) = e;
            let router_id = router_of(Some(nat.network_id), None)?;
            let action = match e {
                StaticNatEvent::Enable(_) => NetworkAction::EnableStaticNat {
                    router_id,
                    address: nat.address,
                    vm_ip: nat.vm_ip?,
                },
                StaticNatEvent::Disable(_) => NetworkAction::DisableStaticNat {
                    router_id,
                    address: nat.address,
                },
            };
            (
                action,
                "PublicIpAddress",
                nat.ip_address_id,
                nat.account_id,
                nat.domain_id,
            )
        }
        EventBody::Firewall(e) => {
            let (FirewallEvent::Open(rule)
            | FirewallEvent::Close(rule)
            | FirewallEvent::EgressOpen(rule)
            | FirewallEvent::EgressClose(rule)) = e;
            let router_id = router_of(rule.network_id, None)?;
            let action = match e {
                FirewallEvent::Open(_) | FirewallEvent::EgressOpen(_) => {
                    NetworkAction::AddFirewallRule {
                        router_id,
                        rule_id: rule.rule_id,
                        entry: network.firewall_entry(rule),
                    }
                }
                _ => NetworkAction::RemoveFirewallRule {
                    router_id,
                    rule_id: rule.rule_id,
                },
            };
            (
                action,
                "FirewallRule",
                rule.rule_id,
                rule.account_id,
                rule.domain_id,
            )
        }
        EventBody::LoadBalancer(e) => match e {
            LoadBalancerEvent::Create(lb) | LoadBalancerEvent::Update(lb) => {
                let router_id = router_of(lb.network_id, None)?;
                // The event's facts: an update's row keeps the programmed ones until confirmed.
                let mut row = network.load_balancers.get(&lb.rule_id)?.clone();
                row.rule.facts = lb.clone();
                let entry = network.load_balancer_entry(compute, &row, |m| m.state.programmed())?;
                (
                    NetworkAction::ConfigureLoadBalancer {
                        router_id,
                        rule_id: lb.rule_id,
                        entry,
                    },
                    "LoadBalancer",
                    lb.rule_id,
                    lb.account_id,
                    lb.domain_id,
                )
            }
            LoadBalancerEvent::Delete(lb) => (
                NetworkAction::RemoveLoadBalancer {
                    router_id: router_of(lb.network_id, None)?,
                    rule_id: lb.rule_id,
                },
                "LoadBalancer",
                lb.rule_id,
                lb.account_id,
                lb.domain_id,
            ),
            LoadBalancerEvent::AssignToRule(m) | LoadBalancerEvent::RemoveFromRule(m) => {
                let row = network.load_balancers.get(&m.rule_id)?;
                let network_id = row.rule.facts.network_id;
                let router_id = router_of(network_id, None)?;
                let members = m
                    .vm_ids
                    .iter()
                    .filter_map(|vm| Network::vm_ip_on(compute, *vm, network_id))
                    .collect();
                let action = if matches!(e, LoadBalancerEvent::AssignToRule(_)) {
                    NetworkAction::AssignToLoadBalancer {
                        router_id,
                        rule_id: m.rule_id,
                        members,
                    }
                } else {
                    NetworkAction::RemoveFromLoadBalancer {
                        router_id,
                        rule_id: m.rule_id,
                        members,
                    }
                };
                (action, "LoadBalancer", m.rule_id, m.account_id, m.domain_id)
            }
            _ => return None,
        },
        EventBody::Vpn(e) => match e {
            VpnEvent::RemoteAccessCreate(v) | VpnEvent::RemoteAccessDestroy(v) => {
                let router_id = router_of(v.network_id, v.vpc_id)?;
                let action = if matches!(e, VpnEvent::RemoteAccessCreate(_)) {
                    NetworkAction::EnableVpn {
                        router_id,
                        entry: crate::driver::network::VpnEntry {
                            public_ip: v.public_ip,
                            ip_range: v.ip_range.to_string(),
                        },
                        users: network.vpn_user_names(v.account_id),
                    }
                } else {
                    NetworkAction::DisableVpn { router_id }
                };
                (
                    action,
                    "RemoteAccessVpn",
                    v.vpn_id,
                    v.account_id,
                    v.domain_id,
                )
            }
            VpnEvent::UserAdd(u) | VpnEvent::UserRemove(u) => {
                let router_ids = network.vpn_routers(compute, u.account_id);
                let username = u.username.to_string();
                let action = if matches!(e, VpnEvent::UserAdd(_)) {
                    NetworkAction::AddVpnUser {
                        router_ids,
                        username,
                    }
                } else {
                    NetworkAction::RemoveVpnUser {
                        router_ids,
                        username,
                    }
                };
                (action, "VpnUser", u.vpn_user_id, u.account_id, u.domain_id)
            }
        },
        EventBody::SecurityGroup(e) => {
            let (group_id, account_id, domain_id, action) = match e {
                SecurityGroupEvent::Create(_) => return None,
                SecurityGroupEvent::Delete(g) => (
                    g.group_id,
                    g.account_id,
                    g.domain_id,
                    NetworkAction::RemoveSecurityGroup {
                        group_id: g.group_id,
                    },
                ),
                SecurityGroupEvent::AuthIngress(r) | SecurityGroupEvent::AuthEgress(r) => (
                    r.group_id,
                    r.account_id,
                    r.domain_id,
                    NetworkAction::AuthorizeSecurityGroupRules {
                        group_id: r.group_id,
                        direction: direction_of(e),
                        rules: r.rules.iter().map(Network::security_rule_entry).collect(),
                    },
                ),
                SecurityGroupEvent::RevokeIngress(r) | SecurityGroupEvent::RevokeEgress(r) => (
                    r.group_id,
                    r.account_id,
                    r.domain_id,
                    NetworkAction::RevokeSecurityGroupRules {
                        group_id: r.group_id,
                        direction: direction_of(e),
                        rule_ids: r.rules.iter().map(|rule| rule.rule_id).collect(),
                    },
                ),
                SecurityGroupEvent::Assign(m) => (
                    m.group_id,
                    m.account_id,
                    m.domain_id,
                    NetworkAction::JoinSecurityGroup {
                        group_id: m.group_id,
                        vm_id: m.vm_id,
                    },
                ),
                SecurityGroupEvent::Remove(m) => (
                    m.group_id,
                    m.account_id,
                    m.domain_id,
                    NetworkAction::LeaveSecurityGroup {
                        group_id: m.group_id,
                        vm_id: m.vm_id,
                    },
                ),
            };
            (action, "SecurityGroup", group_id, account_id, domain_id)
        }
        EventBody::Router(e) => {
            let (RouterEvent::Start(r)
            | RouterEvent::Stop(r)
            | RouterEvent::Reboot(r)
            | RouterEvent::Destroy(r)) = e
            else {
                return None;
            };
            let router = &r.router;
            let router_id = router.router_id;
            let action = match e {
                RouterEvent::Start(_) => NetworkAction::StartRouter {
                    router_id,
                    config: network.router_config(compute, router_id),
                },
                RouterEvent::Stop(_) => NetworkAction::StopRouter { router_id },
                RouterEvent::Reboot(_) => NetworkAction::RebootRouter { router_id },
                _ => NetworkAction::DestroyRouter { router_id },
            };
            (
                action,
                "DomainRouter",
                router_id,
                router.account_id,
                router.domain_id,
            )
        }
        // Restarting a network or VPC re-applies its router's whole configuration.
        EventBody::Network(NetworkEvent::Restart(e)) if !fact => {
            let n = &e.network;
            let router_id = network.router_for(compute, Some(n.network_id), n.vpc_id)?;
            (
                NetworkAction::StartRouter {
                    router_id,
                    config: network.router_config(compute, router_id),
                },
                "Network",
                n.network_id,
                n.account_id,
                n.domain_id,
            )
        }
        EventBody::Vpc(VpcEvent::Restart(v)) if !fact => {
            let router_id = network.router_for(compute, None, Some(v.vpc_id))?;
            (
                NetworkAction::StartRouter {
                    router_id,
                    config: network.router_config(compute, router_id),
                },
                "Vpc",
                v.vpc_id,
                v.account_id,
                v.domain_id,
            )
        }
        // Deleting a network or VPC shuts its own router down for good.
        EventBody::Network(NetworkEvent::Delete(e)) if !fact => {
            let n = &e.network;
            let router = network
                .routers
                .values()
                .find(|r| r.facts.network_id == Some(n.network_id))?;
            (
                NetworkAction::DestroyRouter {
                    router_id: router.facts.router_id,
                },
                "Network",
                n.network_id,
                n.account_id,
                n.domain_id,
            )
        }
        EventBody::Vpc(VpcEvent::Delete(v)) if !fact => {
            let router_id = network.router_for(compute, None, Some(v.vpc_id))?;
            (
                NetworkAction::DestroyRouter { router_id },
                "Vpc",
                v.vpc_id,
                v.account_id,
                v.domain_id,
            )
        }
        EventBody::Nic(e) => {
            let (NicEvent::Create(nic) | NicEvent::Update(nic) | NicEvent::Delete(nic)) = e;
            let router_id = router_of(Some(nic.network_id), None)?;
            let mac = nic.mac_address.to_string();
            let action = match e {
                NicEvent::Delete(_) => NetworkAction::RemoveDhcpEntry { router_id, mac },
                _ => NetworkAction::AddDhcpEntry {
                    router_id,
                    mac,
                    entry: Network::dhcp_entry(compute, nic)?,
                },
            };
            (action, "Nic", nic.nic_id, nic.account_id, nic.domain_id)
        }
        _ => return None,
    };
    Some((
        DriverAction::Network(action),
        resource_type,
        resource_id,
        account_id,
        domain_id,
    ))
}

fn direction_of(e: &SecurityGroupEvent) -> Direction {
    match e {
        SecurityGroupEvent::AuthEgress(_) | SecurityGroupEvent::RevokeEgress(_) => {
            Direction::Egress
        }
        _ => Direction::Ingress,
    }
}
