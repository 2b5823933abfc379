//! Network rule conflicts: CloudStack's `FirewallManagerImpl.detectRulesConflict` and the
//! checks around it (`RulesManagerImpl.isIpReadyForStaticNat`, `createRuleForAllCidrs`), as
//! pure functions over the read models.
//!
//! Every rule on one public IP — port forwarding, IP forwarding (static NAT), load balancing,
//! remote access VPN and ingress firewall — is compared with a new one; egress firewall rules
//! are compared per network. A decision that adds several rules at once (a port forward and
//! the firewall rule that opens its ports) passes the ones it already added as `pending`, as
//! CloudStack persists the firewall rule before it checks the port forward.
//!
//! Architecture Invariant: these functions only read; the command that calls them does so
//! inside its decision on the allocation stream, so two concurrent rules on one IP are
//! compared with each other (the second decision re-runs against the first's events).

use compact_str::CompactString;
use engine::event::network::{FirewallRuleFacts, NetworkRule, RulePurpose, TrafficDirection};
use engine::event::services::LoadBalancerFacts;
use projections::State;
pub use projections::network::related_firewall_rule_id;
use projections::network::{PublicIpRow, RuleState};
use uuid::Uuid;

use crate::error::ApiError;

/// The UDP ports a remote access VPN reserves on its public IP (CloudStack's `VPN_PORT`,
/// `VPN_L2TP_PORT`, `VPN_NATT_PORT`).
const VPN_PORTS: [u16; 3] = [500, 1701, 4500];

/// A rule as conflict detection compares it: the fields of CloudStack's `FirewallRule` that
/// `detectRulesConflict` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// The rule's id (a rule never conflicts with itself).
    pub id: Uuid,
    /// Port forwarding, static NAT, firewall, load balancing or VPN.
    pub purpose: RulePurpose,
    /// Load balancers show their name in conflict messages.
    pub name: Option<CompactString>,
    /// The guest network it is programmed on.
    pub network_id: Option<Uuid>,
    /// Lowercase `tcp`, `udp`, `icmp` or `all`.
    pub protocol: CompactString,
    /// First and last public port (both or neither, as CloudStack defaults the end to the
    /// start).
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code (`-1` for any), for ICMP firewall rules.
    pub icmp: Option<(i32, i32)>,
    /// Source CIDRs (firewall and port forwarding rules compare them).
    pub source_cidrs: Vec<CompactString>,
    /// Destination CIDRs (egress firewall rules compare them too).
    pub destination_cidrs: Vec<CompactString>,
    /// Where it stands; shown in conflict messages.
    pub state: RuleState,
}

impl RuleSpec {
    /// A port forwarding or IP forwarding rule.
    pub fn from_nat(rule: &NetworkRule, state: RuleState) -> RuleSpec {
        RuleSpec {
            id: rule.rule_id,
            purpose: rule.purpose,
            name: None,
            network_id: rule.network_id,
            protocol: rule.protocol.to_lowercase(),
            ports: rule
                .public_start_port
                .map(|start| (start, rule.public_end_port.unwrap_or(start))),
            icmp: None,
            source_cidrs: rule.cidrs.clone(),
            destination_cidrs: Vec::new(),
            state,
        }
    }

    /// An ingress or egress firewall rule.
    pub fn from_firewall(rule: &FirewallRuleFacts, state: RuleState) -> RuleSpec {
        RuleSpec {
            id: rule.rule_id,
            purpose: RulePurpose::Firewall,
            name: None,
            network_id: rule.network_id,
            protocol: rule.protocol.to_lowercase(),
            ports: rule
                .start_port
                .map(|start| (start, rule.end_port.unwrap_or(start))),
            icmp: match (rule.icmp_type, rule.icmp_code) {
                (None, None) => None,
                (t, c) => Some((t.unwrap_or(-1), c.unwrap_or(-1))),
            },
            source_cidrs: rule.source_cidrs.clone(),
            destination_cidrs: rule.destination_cidrs.clone(),
            state,
        }
    }

    /// A load balancer rule (its one public port). As a network rule its protocol is always
    /// `tcp` (CloudStack's `LoadBalancerVO`); `protocol` of the facts is the balancing protocol
    /// (`tcp`, `udp`, `tcp-proxy`, `ssl`), which conflict detection does not read.
    pub fn from_load_balancer(lb: &LoadBalancerFacts, state: RuleState) -> RuleSpec {
        RuleSpec {
            id: lb.rule_id,
            purpose: RulePurpose::LoadBalancing,
            name: Some(lb.name.clone()),
            network_id: lb.network_id,
            protocol: "tcp".into(),
            ports: Some((lb.public_port, lb.public_port)),
            icmp: None,
            source_cidrs: lb.cidrs.clone(),
            destination_cidrs: Vec::new(),
            state,
        }
    }

    /// The rule as CloudStack's `toString` names it in messages (`FirewallRule {...}`, or
    /// `LoadBalancer {...}` for a load balancer).
    pub fn text(&self) -> String {
        let network = self
            .network_id
            .map_or_else(|| "null".to_owned(), |n| format!("\"{n}\""));
        match &self.name {
            Some(name) if self.purpose == RulePurpose::LoadBalancing => format!(
                "LoadBalancer {{\"uuid\":\"{}\",\"name\":\"{name}\",\"purpose\":\"{}\",\"state\":\"{}\"}}",
                self.id,
                purpose_name(self.purpose),
                self.state.name()
            ),
            _ => format!(
                "FirewallRule {{\"uuid\":\"{}\",\"networkId\":{network},\"purpose\":\"{}\",\"state\":\"{}\"}}",
                self.id,
                purpose_name(self.purpose),
                self.state.name()
            ),
        }
    }
}

/// CloudStack's `FirewallRule.Purpose` name.
pub fn purpose_name(purpose: RulePurpose) -> &'static str {
    match purpose {
        RulePurpose::PortForwarding => "PortForwarding",
        RulePurpose::StaticNat => "StaticNat",
        RulePurpose::Firewall => "Firewall",
        RulePurpose::LoadBalancing => "LoadBalancing",
        RulePurpose::Vpn => "Vpn",
    }
}

/// A public IP as CloudStack's `IPAddressVO.toString` names it in messages.
pub fn ip_text(ip: &PublicIpRow) -> String {
    format!(
        "IPAddress {{\"uuid\":\"{}\",\"dataCenterId\":\"{}\",\"address\":\"{}\"}}",
        ip.facts.ip_id, ip.facts.zone_id, ip.facts.address
    )
}

/// Every rule on the public IP `ip_id` that is not being revoked (CloudStack's
/// `listByIpAndPurposeAndNotRevoked(ip, null)`).
pub fn rules_on_ip(state: &State, ip_id: Uuid) -> Vec<RuleSpec> {
    let network = &state.network;
    let live = |s: RuleState| s != RuleState::Revoke;
    let nat = network
        .nat_rules
        .values()
        .filter(|r| live(r.state) && r.facts.ip_address_id == Some(ip_id))
        .map(|r| RuleSpec::from_nat(&r.facts, r.state));
    let firewall = network
        .firewall_rules
        .values()
        .filter(|r| {
            live(r.state)
                && r.facts.direction == TrafficDirection::Ingress
                && r.facts.ip_address_id == Some(ip_id)
        })
        .map(|r| RuleSpec::from_firewall(&r.facts, r.state));
    let load_balancers = network
        .load_balancers
        .values()
        .filter(|lb| live(lb.rule.state) && lb.rule.facts.ip_address_id == ip_id)
        .map(|lb| RuleSpec::from_load_balancer(&lb.rule.facts, lb.rule.state));
    let vpn = network
        .vpns
        .values()
        .filter(|v| live(v.state) && v.facts.public_ip_id == ip_id)
        .flat_map(|v| {
            VPN_PORTS.map(|port| RuleSpec {
                id: v.facts.vpn_id,
                purpose: RulePurpose::Vpn,
                name: None,
                network_id: v.facts.network_id,
                protocol: "udp".into(),
                ports: Some((port, port)),
                icmp: None,
                source_cidrs: Vec::new(),
                destination_cidrs: Vec::new(),
                state: v.state,
            })
        });
    nat.chain(firewall)
        .chain(load_balancers)
        .chain(vpn)
        .collect()
}

/// The egress firewall rules of a network that are not being revoked.
pub fn egress_rules(state: &State, network_id: Uuid) -> Vec<RuleSpec> {
    state
        .network
        .firewall_rules
        .values()
        .filter(|r| {
            r.state != RuleState::Revoke
                && r.facts.direction == TrafficDirection::Egress
                && r.facts.network_id == Some(network_id)
        })
        .map(|r| RuleSpec::from_firewall(&r.facts, r.state))
        .collect()
}

/// 537 (or 431 for a duplicate ICMP rule) when `new` conflicts with a rule on the public IP
/// `ip_id`, or with one of `pending` (rules the same decision adds before it).
pub fn check_ip_rule(
    state: &State,
    ip_id: Uuid,
    new: &RuleSpec,
    pending: &[RuleSpec],
) -> Result<(), ApiError> {
    let mut existing = rules_on_ip(state, ip_id);
    existing.extend_from_slice(pending);
    detect_conflict(new, &existing, Some(ip_id))
}

/// 537 (or 431 for a duplicate ICMP rule) when the egress rule `new` conflicts with another
/// egress rule of its network.
pub fn check_egress_rule(state: &State, new: &RuleSpec) -> Result<(), ApiError> {
    let existing = new
        .network_id
        .map(|n| egress_rules(state, n))
        .unwrap_or_default();
    detect_conflict(new, &existing, None)
}

/// The firewall rule `openfirewall` reuses rather than creating one (CloudStack's
/// `createRuleForAllCidrs`): a live ingress rule on the IP for the same ports and protocol.
pub fn firewall_rule_for_ports(
    state: &State,
    ip_id: Uuid,
    ports: (u16, u16),
    protocol: &str,
) -> Option<Uuid> {
    state
        .network
        .firewall_rules
        .values()
        .find(|r| {
            let f = &r.facts;
            r.state != RuleState::Revoke
                && f.direction == TrafficDirection::Ingress
                && f.ip_address_id == Some(ip_id)
                && f.start_port == Some(ports.0)
                && f.end_port.or(f.start_port) == Some(ports.1)
                && f.protocol.eq_ignore_ascii_case(protocol)
        })
        .map(|r| r.facts.rule_id)
}

/// Whether static NAT may be enabled on the public IP `ip_id` as far as its other rules go
/// (CloudStack's `isIpReadyForStaticNat`): an IP with port forwarding or load balancing rules
/// refuses it with 537. An IP that already has static NAT is not checked again (the caller
/// checks whether it maps to another VM); an unknown IP passes (the caller reports it).
pub fn static_nat_conflict(state: &State, ip_id: Uuid) -> Result<(), ApiError> {
    let Some(ip) = state.network.public_ips.get(&ip_id) else {
        return Ok(());
    };
    if ip.static_nat.is_some() {
        return Ok(());
    }
    let rules = rules_on_ip(state, ip_id);
    for (purpose, what) in [
        (RulePurpose::PortForwarding, "PortForwarding"),
        (RulePurpose::LoadBalancing, "LoadBalancing"),
    ] {
        if rules.iter().any(|r| r.purpose == purpose) {
            return Err(ApiError::rule_conflict(format!(
                "Failed to enable static nat for the ip address {} as it already has {what} rules assigned",
                ip_text(ip)
            )));
        }
    }
    Ok(())
}

/// CloudStack's `detectConflictingCidrs`: both empty, or sharing one.
fn cidrs_overlap(a: &[CompactString], b: &[CompactString]) -> bool {
    (a.is_empty() && b.is_empty()) || a.iter().any(|c| b.contains(c))
}

/// CloudStack's `checkIfRulesHaveConflictingPortRanges` for two rules with ports.
fn ranges_overlap(new: (u16, u16), old: (u16, u16)) -> bool {
    new.0 <= old.1 && old.0 <= new.1
}

/// `detectRulesConflict`: compares `new` with each of `existing` (itself skipped), in
/// CloudStack's order, and answers its first conflict. `ip_id` names the public IP in the
/// static NAT messages.
pub fn detect_conflict(
    new: &RuleSpec,
    existing: &[RuleSpec],
    ip_id: Option<Uuid>,
) -> Result<(), ApiError> {
    use RulePurpose::{Firewall, LoadBalancing, PortForwarding, StaticNat, Vpn};
    let ip = ip_id.map_or_else(|| "null".to_owned(), |id| id.to_string());
    for rule in existing.iter().filter(|r| r.id != new.id) {
        let same_protocol = rule.protocol.eq_ignore_ascii_case(&new.protocol);
        let one_is_firewall = (rule.purpose == Firewall || new.purpose == Firewall)
            && (rule.purpose != new.purpose || !same_protocol);
        let both_firewall = rule.purpose == Firewall && new.purpose == Firewall;
        let both_port_forwarding = rule.purpose == PortForwarding && new.purpose == PortForwarding;
        let duplicated_cidrs = if both_firewall {
            cidrs_overlap(&rule.source_cidrs, &new.source_cidrs)
                && cidrs_overlap(&rule.destination_cidrs, &new.destination_cidrs)
        } else if both_port_forwarding {
            cidrs_overlap(&rule.source_cidrs, &new.source_cidrs)
        } else {
            false
        };
        if !one_is_firewall {
            if rule.purpose == StaticNat && new.purpose != StaticNat {
                return Err(ApiError::rule_conflict(format!(
                    "There is 1 to 1 Nat rule specified for the ip address id={ip}"
                )));
            }
            if rule.purpose != StaticNat && new.purpose == StaticNat {
                return Err(ApiError::rule_conflict(format!(
                    "There is already firewall rule specified for the ip address id={ip}"
                )));
            }
        }
        if rule.network_id != new.network_id && rule.state != RuleState::Revoke {
            return Err(ApiError::rule_conflict(format!(
                "New rule is for a different network than what's specified in rule {}",
                rule.id
            )));
        }
        if new.protocol.eq_ignore_ascii_case("icmp")
            && same_protocol
            && new.icmp.unwrap_or((-1, -1)) == rule.icmp.unwrap_or((-1, -1))
            && duplicated_cidrs
        {
            return Err(ApiError::invalid_param(format!(
                "New rule conflicts with existing rule: {}",
                rule.text()
            )));
        }
        if new.ports.is_none()
            && rule.ports.is_none()
            && duplicated_cidrs
            && same_protocol
            && !new.protocol.eq_ignore_ascii_case("icmp")
        {
            return Err(ApiError::rule_conflict(format!(
                "There is already a firewall rule specified with protocol = {} and no ports",
                new.protocol
            )));
        }
        let (Some(new_ports), Some(old_ports)) = (new.ports, rule.ports) else {
            continue;
        };
        if one_is_firewall
            || ((both_firewall || both_port_forwarding) && !duplicated_cidrs)
            || !ranges_overlap(new_ports, old_ports)
        {
            continue;
        }
        // The same ports are allowed for another protocol between port forwards, static NAT
        // rules, and a VPN and a port forward or load balancer.
        let allowed = !same_protocol
            && matches!(
                (rule.purpose, new.purpose),
                (PortForwarding, PortForwarding)
                    | (Vpn, PortForwarding)
                    | (StaticNat, StaticNat)
                    | (PortForwarding, Vpn)
                    | (LoadBalancing, Vpn)
            );
        if !allowed {
            return Err(ApiError::rule_conflict(format!(
                "The range specified, {}-{}, conflicts with rule {} which has {}-{}",
                new_ports.0,
                new_ports.1,
                rule.text(),
                old_ports.0,
                old_ports.1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::event::network::{IpAddressFacts, StaticNatFacts};
    use engine::time::Timestamp;
    use projections::network::{IpState, LoadBalancerRow, RuleRow};
    use std::collections::BTreeMap;

    fn network() -> Uuid {
        Uuid::from_u128(0xaaaa)
    }

    fn spec(purpose: RulePurpose, protocol: &str, ports: Option<(u16, u16)>) -> RuleSpec {
        RuleSpec {
            id: Uuid::new_v4(),
            purpose,
            name: None,
            network_id: Some(network()),
            protocol: protocol.into(),
            ports,
            icmp: None,
            source_cidrs: Vec::new(),
            destination_cidrs: Vec::new(),
            state: RuleState::Active,
        }
    }

    fn firewall(protocol: &str, ports: Option<(u16, u16)>, cidrs: &[&str]) -> RuleSpec {
        RuleSpec {
            source_cidrs: cidrs.iter().map(|c| CompactString::from(*c)).collect(),
            ..spec(RulePurpose::Firewall, protocol, ports)
        }
    }

    /// The error code of adding `new` beside `old` (no IP's static NAT in play).
    fn conflict_code(new: &RuleSpec, old: &RuleSpec) -> Option<u16> {
        detect_conflict(new, std::slice::from_ref(old), None)
            .err()
            .map(|e| e.code)
    }

    #[test]
    fn overlapping_port_forwards_of_one_protocol_conflict_with_cloudstacks_text() {
        let old = spec(RulePurpose::PortForwarding, "tcp", Some((20, 25)));
        let new = spec(RulePurpose::PortForwarding, "tcp", Some((22, 30)));
        let error = detect_conflict(&new, std::slice::from_ref(&old), None).unwrap_err();
        assert_eq!(error.code, 537);
        assert!(
            error
                .text
                .starts_with("The range specified, 22-30, conflicts with rule FirewallRule"),
            "{}",
            error.text
        );
        assert!(error.text.ends_with("which has 20-25"), "{}", error.text);
        assert!(error.text.contains(&old.id.to_string()));
        // Every way two ranges can overlap, and the ways they cannot.
        for (ports, conflicts) in [
            ((10, 20), true),
            ((25, 40), true),
            ((21, 24), true),
            ((10, 40), true),
            ((10, 19), false),
            ((26, 40), false),
        ] {
            let new = spec(RulePurpose::PortForwarding, "tcp", Some(ports));
            assert_eq!(conflict_code(&new, &old).is_some(), conflicts, "{ports:?}");
        }
    }

    #[test]
    fn port_forwards_of_different_protocols_or_cidrs_do_not_conflict() {
        let old = spec(RulePurpose::PortForwarding, "tcp", Some((22, 22)));
        let udp = spec(RulePurpose::PortForwarding, "udp", Some((22, 22)));
        assert_eq!(conflict_code(&udp, &old), None);
        let mut from_a = old.clone();
        from_a.id = Uuid::new_v4();
        from_a.source_cidrs = vec!["10.0.0.0/8".into()];
        let mut from_b = from_a.clone();
        from_b.id = Uuid::new_v4();
        from_b.source_cidrs = vec!["192.168.0.0/16".into()];
        assert_eq!(conflict_code(&from_b, &from_a), None);
        from_b.source_cidrs.push("10.0.0.0/8".into());
        assert_eq!(conflict_code(&from_b, &from_a), Some(537));
    }

    #[test]
    fn load_balancers_conflict_with_port_forwards_whatever_the_protocol() {
        let pf = spec(RulePurpose::PortForwarding, "udp", Some((80, 80)));
        let mut lb = spec(RulePurpose::LoadBalancing, "tcp", Some((80, 80)));
        lb.name = Some("web".into());
        assert_eq!(conflict_code(&lb, &pf), Some(537));
        let error = detect_conflict(&pf, std::slice::from_ref(&lb), None).unwrap_err();
        assert!(error.text.contains("LoadBalancer {"), "{}", error.text);
        assert!(error.text.contains("\"name\":\"web\""), "{}", error.text);
    }

    #[test]
    fn a_rule_never_conflicts_with_itself() {
        let rule = spec(RulePurpose::PortForwarding, "tcp", Some((22, 22)));
        assert_eq!(conflict_code(&rule, &rule), None);
    }

    #[test]
    fn firewall_rules_conflict_only_with_firewall_rules_of_the_same_protocol_and_cidrs() {
        let old = firewall("tcp", Some((22, 22)), &["0.0.0.0/0"]);
        let same = firewall("tcp", Some((20, 30)), &["0.0.0.0/0"]);
        assert_eq!(conflict_code(&same, &old), Some(537));
        let other_cidr = firewall("tcp", Some((22, 22)), &["10.0.0.0/8"]);
        assert_eq!(conflict_code(&other_cidr, &old), None);
        let udp = firewall("udp", Some((22, 22)), &["0.0.0.0/0"]);
        assert_eq!(conflict_code(&udp, &old), None);
        // A firewall rule and a port forward on the same ports go together.
        let pf = spec(RulePurpose::PortForwarding, "tcp", Some((22, 22)));
        assert_eq!(conflict_code(&pf, &old), None);
        assert_eq!(conflict_code(&old, &pf), None);
    }

    #[test]
    fn egress_rules_compare_destination_cidrs_too() {
        let mut old = firewall("tcp", Some((80, 80)), &["10.1.1.0/24"]);
        old.destination_cidrs = vec!["8.8.8.8/32".into()];
        let mut new = firewall("tcp", Some((80, 80)), &["10.1.1.0/24"]);
        new.destination_cidrs = vec!["1.1.1.1/32".into()];
        assert_eq!(conflict_code(&new, &old), None);
        new.destination_cidrs = vec!["8.8.8.8/32".into()];
        assert_eq!(conflict_code(&new, &old), Some(537));
    }

    #[test]
    fn portless_and_icmp_duplicates_are_refused() {
        let all = firewall("all", None, &["0.0.0.0/0"]);
        let again = firewall("all", None, &["0.0.0.0/0"]);
        let error = detect_conflict(&again, &[all], None).unwrap_err();
        assert_eq!(error.code, 537);
        assert_eq!(
            error.text,
            "There is already a firewall rule specified with protocol = all and no ports"
        );
        let mut ping = firewall("icmp", None, &["0.0.0.0/0"]);
        ping.icmp = Some((8, 0));
        let mut ping_again = firewall("icmp", None, &["0.0.0.0/0"]);
        ping_again.icmp = Some((8, 0));
        let error = detect_conflict(&ping_again, std::slice::from_ref(&ping), None).unwrap_err();
        assert_eq!(error.code, 431);
        assert!(
            error
                .text
                .starts_with("New rule conflicts with existing rule: FirewallRule")
        );
        let mut any = firewall("icmp", None, &["0.0.0.0/0"]);
        any.icmp = Some((-1, -1));
        assert_eq!(conflict_code(&any, &ping), None);
    }

    #[test]
    fn static_nat_rules_and_other_rules_exclude_each_other() {
        let ip = Uuid::new_v4();
        let nat = spec(RulePurpose::StaticNat, "tcp", Some((22, 22)));
        let pf = spec(RulePurpose::PortForwarding, "tcp", Some((80, 80)));
        let error = detect_conflict(&pf, std::slice::from_ref(&nat), Some(ip)).unwrap_err();
        assert_eq!(error.code, 537);
        assert_eq!(
            error.text,
            format!("There is 1 to 1 Nat rule specified for the ip address id={ip}")
        );
        let error = detect_conflict(&nat, &[pf], Some(ip)).unwrap_err();
        assert_eq!(
            error.text,
            format!("There is already firewall rule specified for the ip address id={ip}")
        );
        // Static NAT rules on the same ports need another protocol.
        let udp = spec(RulePurpose::StaticNat, "udp", Some((22, 22)));
        assert_eq!(conflict_code(&udp, &nat), None);
        let tcp = spec(RulePurpose::StaticNat, "tcp", Some((20, 22)));
        assert_eq!(conflict_code(&tcp, &nat), Some(537));
    }

    #[test]
    fn rules_of_another_network_conflict() {
        let old = spec(RulePurpose::PortForwarding, "tcp", Some((22, 22)));
        let mut new = spec(RulePurpose::PortForwarding, "tcp", Some((80, 80)));
        new.network_id = Some(Uuid::new_v4());
        let error = detect_conflict(&new, std::slice::from_ref(&old), None).unwrap_err();
        assert_eq!(
            error.text,
            format!(
                "New rule is for a different network than what's specified in rule {}",
                old.id
            )
        );
    }

    #[test]
    fn vpn_ports_admit_a_port_forward_of_another_protocol_only() {
        let vpn = spec(RulePurpose::Vpn, "udp", Some((500, 500)));
        let tcp = spec(RulePurpose::PortForwarding, "tcp", Some((500, 500)));
        assert_eq!(conflict_code(&tcp, &vpn), None);
        let udp = spec(RulePurpose::PortForwarding, "udp", Some((400, 600)));
        assert_eq!(conflict_code(&udp, &vpn), Some(537));
    }

    fn state_with_ip() -> (State, Uuid) {
        let mut state = State::default();
        let ip_id = Uuid::new_v4();
        state.network.public_ips.insert(
            ip_id,
            PublicIpRow {
                facts: IpAddressFacts {
                    ip_id,
                    address: "172.16.0.5".parse().unwrap(),
                    account_id: Uuid::new_v4(),
                    domain_id: Uuid::new_v4(),
                    zone_id: Uuid::new_v4(),
                    vlan_range_id: None,
                    network_id: Some(network()),
                    vpc_id: None,
                    is_source_nat: false,
                    is_system: false,
                },
                state: IpState::Allocated,
                allocated: Timestamp::from_millis(0),
                static_nat: None,
                pending: None,
            },
        );
        (state, ip_id)
    }

    fn nat_rule(ip_id: Uuid, purpose: RulePurpose, ports: (u16, u16)) -> NetworkRule {
        NetworkRule {
            rule_id: Uuid::new_v4(),
            purpose,
            account_id: Uuid::new_v4(),
            domain_id: Uuid::new_v4(),
            zone_id: Uuid::new_v4(),
            network_id: Some(network()),
            ip_address_id: Some(ip_id),
            protocol: "tcp".into(),
            public_start_port: Some(ports.0),
            public_end_port: Some(ports.1),
            private_start_port: Some(ports.0),
            private_end_port: Some(ports.1),
            vm_id: None,
            vm_guest_ip: None,
            cidrs: Vec::new(),
        }
    }

    fn row<F>(facts: F, state: RuleState) -> RuleRow<F> {
        RuleRow {
            facts,
            state,
            created: Timestamp::from_millis(0),
            pending: None,
        }
    }

    #[test]
    fn static_nat_is_refused_on_an_ip_with_port_forwards_or_load_balancers() {
        let (mut state, ip_id) = state_with_ip();
        assert_eq!(static_nat_conflict(&state, ip_id), Ok(()));
        let pf = nat_rule(ip_id, RulePurpose::PortForwarding, (22, 22));
        state
            .network
            .nat_rules
            .insert(pf.rule_id, row(pf.clone(), RuleState::Active));
        let error = static_nat_conflict(&state, ip_id).unwrap_err();
        assert_eq!(error.code, 537);
        assert!(
            error
                .text
                .ends_with("as it already has PortForwarding rules assigned"),
            "{}",
            error.text
        );
        // A port forward being revoked no longer counts.
        state
            .network
            .nat_rules
            .insert(pf.rule_id, row(pf, RuleState::Revoke));
        assert_eq!(static_nat_conflict(&state, ip_id), Ok(()));
        let lb = LoadBalancerFacts {
            rule_id: Uuid::new_v4(),
            name: "web".into(),
            description: None,
            account_id: Uuid::new_v4(),
            domain_id: Uuid::new_v4(),
            zone_id: Uuid::new_v4(),
            network_id: Some(network()),
            ip_address_id: ip_id,
            algorithm: "roundrobin".into(),
            protocol: "tcp".into(),
            public_port: 80,
            private_port: 8080,
            cidrs: Vec::new(),
        };
        state.network.load_balancers.insert(
            lb.rule_id,
            LoadBalancerRow {
                rule: row(lb, RuleState::Add),
                members: BTreeMap::new(),
            },
        );
        let error = static_nat_conflict(&state, ip_id).unwrap_err();
        assert!(
            error
                .text
                .ends_with("as it already has LoadBalancing rules assigned"),
            "{}",
            error.text
        );
        // Unknown IPs are the caller's to report.
        assert_eq!(static_nat_conflict(&state, Uuid::new_v4()), Ok(()));
    }

    #[test]
    fn an_ip_with_static_nat_is_not_checked_again_and_its_ip_forwards_count() {
        let (mut state, ip_id) = state_with_ip();
        let nat = StaticNatFacts {
            ip_address_id: ip_id,
            address: "172.16.0.5".parse().unwrap(),
            vm_id: Uuid::new_v4(),
            vm_ip: Some("10.1.1.10".parse().unwrap()),
            network_id: network(),
            account_id: Uuid::new_v4(),
            domain_id: Uuid::new_v4(),
            zone_id: Uuid::new_v4(),
        };
        if let Some(ip) = state.network.public_ips.get_mut(&ip_id) {
            ip.static_nat = Some(row(nat, RuleState::Active));
        }
        assert_eq!(static_nat_conflict(&state, ip_id), Ok(()));
        let ipf = nat_rule(ip_id, RulePurpose::StaticNat, (22, 22));
        state
            .network
            .nat_rules
            .insert(ipf.rule_id, row(ipf, RuleState::Active));
        let rules = rules_on_ip(&state, ip_id);
        assert_eq!(rules.len(), 1);
        let pf = RuleSpec::from_nat(
            &nat_rule(ip_id, RulePurpose::PortForwarding, (80, 80)),
            RuleState::Add,
        );
        assert_eq!(
            check_ip_rule(&state, ip_id, &pf, &[]).map_err(|e| e.code),
            Err(537)
        );
    }

    #[test]
    fn a_firewall_rule_for_the_same_ports_is_reused_and_related_ids_are_stable() {
        let (mut state, ip_id) = state_with_ip();
        let facts = FirewallRuleFacts {
            rule_id: Uuid::new_v4(),
            direction: TrafficDirection::Ingress,
            account_id: Uuid::new_v4(),
            domain_id: Uuid::new_v4(),
            zone_id: Uuid::new_v4(),
            network_id: Some(network()),
            ip_address_id: Some(ip_id),
            protocol: "tcp".into(),
            start_port: Some(22),
            end_port: Some(22),
            icmp_type: None,
            icmp_code: None,
            source_cidrs: vec!["0.0.0.0/0".into()],
            destination_cidrs: Vec::new(),
        };
        state
            .network
            .firewall_rules
            .insert(facts.rule_id, row(facts.clone(), RuleState::Active));
        assert_eq!(
            firewall_rule_for_ports(&state, ip_id, (22, 22), "TCP"),
            Some(facts.rule_id)
        );
        assert_eq!(
            firewall_rule_for_ports(&state, ip_id, (22, 23), "tcp"),
            None
        );
        assert_eq!(
            firewall_rule_for_ports(&state, ip_id, (22, 22), "udp"),
            None
        );
        let id = Uuid::new_v4();
        assert_eq!(related_firewall_rule_id(id), related_firewall_rule_id(id));
        assert_ne!(related_firewall_rule_id(id), id);
    }
}
