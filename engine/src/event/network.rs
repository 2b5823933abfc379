//! Guest networks, public IPs, NICs, NAT and firewall rules, VLAN ranges and network offerings
//! (`NETWORK.*`, `NET.*`, `NIC.*`, `STATICNAT.*`, `FIREWALL.*`, `VLAN.IP.RANGE.*`,
//! `NETWORK.OFFERING.*`).

use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What every NETWORK.* event carries about the network (NETWORK usage, type 30).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFacts {
    /// The network's id (the usage record's `usageid` for type 30).
    pub network_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub display_text: String,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// The offering it was created from.
    pub network_offering_id: Uuid,
    /// `Isolated`, `Shared` or `L2`.
    pub guest_type: CompactString,
    /// VPC tier membership.
    pub vpc_id: Option<Uuid>,
    /// Guest CIDR, such as `10.1.1.0/24` (absent for L2).
    pub cidr: Option<CompactString>,
    /// Guest gateway.
    pub gateway: Option<IpAddr>,
    /// Broadcast URI such as `vlan://100`, once implemented.
    pub vlan: Option<CompactString>,
    /// DNS domain for guests.
    pub network_domain: Option<CompactString>,
}

/// NETWORK.CREATE / UPDATE / DELETE (an update closes and reopens NETWORK usage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLifecycle {
    /// The network (after the change, for an update).
    pub network: NetworkFacts,
}

/// NETWORK.RESTART.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRestarted {
    /// The network.
    pub network: NetworkFacts,
    /// `cleanup=true`: routers were rebuilt rather than reconfigured.
    pub cleanup: bool,
}

/// NET.IPASSIGN / NET.IPRELEASE: a public IP was acquired or released (IP_ADDRESS usage, type 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAddressFacts {
    /// The public IP's id.
    pub ip_id: Uuid,
    /// The address.
    pub address: IpAddr,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// The public VLAN range it came from (the pool that owns it).
    pub vlan_range_id: Option<Uuid>,
    /// Network it is associated with.
    pub network_id: Option<Uuid>,
    /// VPC it is associated with.
    pub vpc_id: Option<Uuid>,
    /// The network's source-NAT address (usage `type` shows `SourceNat`).
    pub is_source_nat: bool,
    /// Allocated for the system rather than a user (usage `issystem`).
    pub is_system: bool,
}

/// What a NET.RULEADD / RULEDELETE / RULEMODIFY rule is for, as CloudStack's rule purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RulePurpose {
    /// Port forwarding (PORT_FORWARDING_RULE usage, type 12).
    PortForwarding,
    /// One-to-one NAT (IP forwarding) rule.
    StaticNat,
    /// Ingress firewall.
    Firewall,
    /// Load balancing.
    LoadBalancing,
    /// Remote access VPN.
    Vpn,
}

/// NET.RULEADD / NET.RULEDELETE / NET.RULEMODIFY: a port forwarding or IP forwarding rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRule {
    /// The rule's id.
    pub rule_id: Uuid,
    /// What the rule does.
    pub purpose: RulePurpose,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Network it is programmed on.
    pub network_id: Option<Uuid>,
    /// Public IP it applies to.
    pub ip_address_id: Option<Uuid>,
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: CompactString,
    /// First public port.
    pub public_start_port: Option<u16>,
    /// Last public port.
    pub public_end_port: Option<u16>,
    /// First private port.
    pub private_start_port: Option<u16>,
    /// Last private port.
    pub private_end_port: Option<u16>,
    /// VM the traffic goes to.
    pub vm_id: Option<Uuid>,
    /// That VM's guest address.
    pub vm_guest_ip: Option<IpAddr>,
    /// Source CIDRs allowed.
    pub cidrs: Vec<CompactString>,
}

/// Which way a firewall rule filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficDirection {
    /// Traffic coming in to the public IP.
    Ingress,
    /// Traffic leaving the guest network.
    Egress,
}

/// FIREWALL.OPEN / CLOSE and FIREWALL.EGRESS.OPEN / CLOSE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRuleFacts {
    /// The rule's id.
    pub rule_id: Uuid,
    /// Ingress (on a public IP) or egress (on a network).
    pub direction: TrafficDirection,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Network it is programmed on.
    pub network_id: Option<Uuid>,
    /// Public IP (ingress rules).
    pub ip_address_id: Option<Uuid>,
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: CompactString,
    /// First port.
    pub start_port: Option<u16>,
    /// Last port.
    pub end_port: Option<u16>,
    /// ICMP type (`-1` for all).
    pub icmp_type: Option<i32>,
    /// ICMP code (`-1` for all).
    pub icmp_code: Option<i32>,
    /// Source CIDRs.
    pub source_cidrs: Vec<CompactString>,
    /// Destination CIDRs (egress rules).
    pub destination_cidrs: Vec<CompactString>,
}

/// NIC.CREATE / NIC.DELETE / NIC.UPDATE: a VM's network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicFacts {
    /// The NIC's id.
    pub nic_id: Uuid,
    /// VM it belongs to.
    pub vm_id: Uuid,
    /// Network it is on.
    pub network_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Address allocated from the network's CIDR (the network's pool owns this invariant).
    pub ip_address: Option<IpAddr>,
    /// MAC address.
    pub mac_address: CompactString,
    /// The VM's default NIC.
    pub is_default: bool,
    /// Device number within the VM.
    pub device_id: u32,
}

/// STATICNAT.ENABLE / STATICNAT.DISABLE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticNatFacts {
    /// Public IP mapped.
    pub ip_address_id: Uuid,
    /// Its address.
    pub address: IpAddr,
    /// VM it maps to.
    pub vm_id: Uuid,
    /// The VM's guest address it maps to.
    pub vm_ip: Option<IpAddr>,
    /// Network the mapping is programmed on.
    pub network_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
}

/// VLAN.IP.RANGE.CREATE / DELETE: a public (or shared-network) address range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanIpRangeFacts {
    /// The range's id.
    pub vlan_range_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Pod, for pod-scoped ranges.
    pub pod_id: Option<Uuid>,
    /// `untagged` or `vlan://<n>`.
    pub vlan: CompactString,
    /// Gateway.
    pub gateway: IpAddr,
    /// Netmask.
    pub netmask: CompactString,
    /// First address.
    pub start_ip: IpAddr,
    /// Last address.
    pub end_ip: IpAddr,
    /// Public range for virtual (isolated/VPC) networks, rather than a shared network's.
    pub for_virtual_network: bool,
    /// Shared network it belongs to.
    pub network_id: Option<Uuid>,
    /// Account it is dedicated to.
    pub account_id: Option<Uuid>,
    /// Domain it is dedicated to.
    pub domain_id: Option<Uuid>,
}

/// NETWORK.OFFERING.CREATE / EDIT / DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOfferingFacts {
    /// The offering's id.
    pub network_offering_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub display_text: String,
    /// `Isolated`, `Shared` or `L2`.
    pub guest_ip_type: CompactString,
    /// `Guest`, usually.
    pub traffic_type: CompactString,
    /// Services offered (`SourceNat`, `Dhcp`, `Dns`, `Firewall`, `Lb`, `PortForwarding`, ...).
    pub services: Vec<CompactString>,
    /// `Enabled` or `Disabled`.
    pub state: CompactString,
    /// One of the offerings CloudStack ships with.
    pub is_default: bool,
    /// Networks stay implemented without VMs.
    pub is_persistent: bool,
    /// A VLAN must be given when creating a network.
    pub specify_vlan: bool,
    /// For VPC tiers.
    pub for_vpc: bool,
    /// Egress allowed by default.
    pub egress_default_policy: bool,
}

/// NETWORK.OFFERING.ASSIGN / REMOVE: a VM NIC joined or left a network of this offering
/// (NETWORK_OFFERING usage, type 13, keyed by VM + NIC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOfferingAssignment {
    /// The VM.
    pub vm_id: Uuid,
    /// The NIC.
    pub nic_id: Uuid,
    /// The NIC's network.
    pub network_id: Uuid,
    /// That network's offering.
    pub network_offering_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// The VM's default NIC (usage `isdefault`).
    pub is_default: bool,
}
