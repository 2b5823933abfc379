//! The network driver layer: what the orchestrator asks virtual routers (and the security group
//! firewall of the hosts) to do, and the configuration a router ends up with.
//!
//! A [`NetworkAction`] is one idempotent change, in the granularity of CloudStack's agent
//! commands (`IpAssocCommand`, `SetPortForwardingRulesCommand`, `LoadBalancerConfigCommand`,
//! ...). Like hypervisor commands it travels in a [`super::DriverCommand`] whose id is the
//! causing event's id (DESIGN.md invariant 5).
//!
//! [`RouterConfig`] is the *effective* configuration of one router. The simulator keeps one per
//! router, changed only by actions; the network read model computes the one the log implies
//! (`projections::network::Network::router_config`). The two are equal once every command has
//! its result: that is what the tests assert after every step and after a rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A public IP plumbed on a router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIpEntry {
    /// The network's source-NAT address (guests' outgoing traffic leaves through it).
    pub source_nat: bool,
    /// One-to-one NAT to this guest address, when static NAT is enabled.
    pub static_nat: Option<IpAddr>,
}

/// A port forwarding rule, or (with `protocol` and ports covering everything) an IP forwarding
/// rule of a static NAT address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForwardEntry {
    /// Public address the rule listens on.
    pub public_ip: IpAddr,
    /// `tcp`, `udp` (IP forwarding also `icmp`/`all`).
    pub protocol: String,
    /// First public port (absent: every port).
    pub public_start_port: Option<u16>,
    /// Last public port.
    pub public_end_port: Option<u16>,
    /// Guest address traffic goes to.
    pub private_ip: IpAddr,
    /// First private port.
    pub private_start_port: Option<u16>,
    /// Last private port.
    pub private_end_port: Option<u16>,
    /// Source CIDRs allowed (empty: any).
    pub cidrs: Vec<String>,
}

/// Which way a firewall rule filters (mirrors the event's `TrafficDirection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    /// Traffic coming in to a public IP.
    Ingress,
    /// Traffic leaving the guest network.
    Egress,
}

/// A firewall rule (ingress on a public IP, or egress from the guest network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallEntry {
    /// Ingress or egress.
    pub direction: Direction,
    /// Public address (ingress rules).
    pub public_ip: Option<IpAddr>,
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    /// First port.
    pub start_port: Option<u16>,
    /// Last port.
    pub end_port: Option<u16>,
    /// ICMP type.
    pub icmp_type: Option<i32>,
    /// ICMP code.
    pub icmp_code: Option<i32>,
    /// Source CIDRs.
    pub source_cidrs: Vec<String>,
    /// Destination CIDRs (egress).
    pub destination_cidrs: Vec<String>,
}

/// A load balancer rule with its members, as the router's HAProxy would be configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerEntry {
    /// Public address it listens on.
    pub public_ip: IpAddr,
    /// Port it listens on.
    pub public_port: u16,
    /// Port on the members.
    pub private_port: u16,
    /// `roundrobin`, `leastconn` or `source`.
    pub algorithm: String,
    /// `tcp`, `udp` or `tcp-proxy`.
    pub protocol: String,
    /// Guest addresses of the member VMs.
    pub members: BTreeSet<IpAddr>,
    /// Source CIDRs allowed.
    pub cidrs: Vec<String>,
}

/// A DHCP/DNS entry for one VM NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpEntry {
    /// The NIC's guest address.
    pub ip: IpAddr,
    /// The VM's host name (its DNS name on the guest network).
    pub hostname: String,
    /// The VM's default NIC (gets the default route).
    pub default: bool,
}

/// Remote access VPN terminating on a router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnEntry {
    /// Public address it terminates on.
    pub public_ip: IpAddr,
    /// Client address range, such as `10.1.2.1-10.1.2.8`.
    pub ip_range: String,
}

/// The effective configuration of one virtual router. Every collection is ordered, so two
/// configurations compare (and serialize) equal exactly when they program the same rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterConfig {
    /// Public IPs by address.
    pub public_ips: BTreeMap<IpAddr, PublicIpEntry>,
    /// Port and IP forwarding rules by rule id.
    pub port_forwards: BTreeMap<Uuid, PortForwardEntry>,
    /// Firewall rules (ingress and egress) by rule id.
    pub firewall: BTreeMap<Uuid, FirewallEntry>,
    /// Load balancer rules by rule id.
    pub load_balancers: BTreeMap<Uuid, LoadBalancerEntry>,
    /// DHCP/DNS entries by MAC address.
    pub dhcp: BTreeMap<String, DhcpEntry>,
    /// The remote access VPN, when enabled.
    pub vpn: Option<VpnEntry>,
    /// VPN user names allowed to log in.
    pub vpn_users: BTreeSet<String>,
}

/// One security group rule as the hosts' firewall applies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecurityRuleEntry {
    /// The rule's id.
    pub rule_id: Uuid,
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    /// First port.
    pub start_port: Option<u16>,
    /// Last port.
    pub end_port: Option<u16>,
    /// ICMP type.
    pub icmp_type: Option<i32>,
    /// ICMP code.
    pub icmp_code: Option<i32>,
    /// Peer CIDR.
    pub cidr: Option<String>,
    /// Peer security group, instead of a CIDR.
    pub source_group_id: Option<Uuid>,
}

/// The effective configuration of one security group on the hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupConfig {
    /// Ingress rules by id.
    pub ingress: BTreeMap<Uuid, SecurityRuleEntry>,
    /// Egress rules by id.
    pub egress: BTreeMap<Uuid, SecurityRuleEntry>,
    /// VMs in the group.
    pub members: BTreeSet<Uuid>,
}

/// One change to a router or security group. Each is idempotent: applying it twice leaves the
/// same configuration (removing what is absent succeeds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkAction {
    /// Boot (or re-boot after a stop) a router with its whole configuration, which replaces
    /// whatever it had; its byte counters start from zero.
    StartRouter {
        /// The router.
        router_id: Uuid,
        /// Everything it must program.
        config: RouterConfig,
    },
    /// Shut a router down (it keeps its configuration, and its counters stop).
    StopRouter {
        /// The router.
        router_id: Uuid,
    },
    /// Restart a running router in place: configuration kept, byte counters reset.
    RebootRouter {
        /// The router.
        router_id: Uuid,
    },
    /// Remove a router for good.
    DestroyRouter {
        /// The router.
        router_id: Uuid,
    },
    /// Plumb a public IP on a router.
    AssociateIp {
        /// The router.
        router_id: Uuid,
        /// The address.
        address: IpAddr,
        /// It is the source-NAT address.
        source_nat: bool,
    },
    /// Unplumb a public IP, with every rule that still names it.
    ReleaseIp {
        /// The router.
        router_id: Uuid,
        /// The address.
        address: IpAddr,
    },
    /// Map a public IP one-to-one to a guest address.
    EnableStaticNat {
        /// The router.
        router_id: Uuid,
        /// The public address.
        address: IpAddr,
        /// The guest address.
        vm_ip: IpAddr,
    },
    /// Remove a public IP's one-to-one mapping.
    DisableStaticNat {
        /// The router.
        router_id: Uuid,
        /// The public address.
        address: IpAddr,
    },
    /// Add (or replace) a port or IP forwarding rule.
    AddPortForward {
        /// The router.
        router_id: Uuid,
        /// The rule.
        rule_id: Uuid,
        /// What it forwards.
        entry: PortForwardEntry,
    },
    /// Remove a port or IP forwarding rule.
    RemovePortForward {
        /// The router.
        router_id: Uuid,
        /// The rule.
        rule_id: Uuid,
    },
    /// Add (or replace) a firewall rule.
    AddFirewallRule {
        /// The router.
        router_id: Uuid,
        /// The rule.
        rule_id: Uuid,
        /// What it allows.
        entry: FirewallEntry,
    },
    /// Remove a firewall rule.
    RemoveFirewallRule {
        /// The router.
        router_id: Uuid,
        /// The rule.
        rule_id: Uuid,
    },
    /// Configure one load balancer rule with its complete member list (replaces it).
    ConfigureLoadBalancer {
        /// The router.
        router_id: Uuid,
        /// The rule.
        rule_id: Uuid,
        /// Its configuration.
        entry: LoadBalancerEntry,
    },
    /// Add members to a load balancer rule.
    AssignToLoadBalancer {
        /// The router.
        router_id: Uuid,
        /// The rule.
        rule_id: Uuid,
        /// Guest addresses of the VMs added.
        members: BTreeSet<IpAddr>,
    },
    /// Remove members from a load balancer rule.
    RemoveFromLoadBalancer {
        /// The router.
        router_id: Uuid,
        /// The rule.
        rule_id: Uuid,
        /// Guest addresses of the VMs removed.
        members: BTreeSet<IpAddr>,
    },
    /// Remove a load balancer rule.
    RemoveLoadBalancer {
        /// The router.
        router_id: Uuid,
        /// The rule.
        rule_id: Uuid,
    },
    /// Add (or replace) the DHCP/DNS entry of a NIC.
    AddDhcpEntry {
        /// The router.
        router_id: Uuid,
        /// The NIC's MAC address.
        mac: String,
        /// The entry.
        entry: DhcpEntry,
    },
    /// Remove the DHCP/DNS entry of a NIC.
    RemoveDhcpEntry {
        /// The router.
        router_id: Uuid,
        /// The NIC's MAC address.
        mac: String,
    },
    /// Enable remote access VPN on a router, with the users allowed so far.
    EnableVpn {
        /// The router.
        router_id: Uuid,
        /// The VPN.
        entry: VpnEntry,
        /// The account's VPN users.
        users: BTreeSet<String>,
    },
    /// Disable remote access VPN (its users go with it).
    DisableVpn {
        /// The router.
        router_id: Uuid,
    },
    /// Allow a VPN user on every router of the account that runs a VPN.
    AddVpnUser {
        /// Those routers (none: the user waits for a VPN, which brings its users).
        router_ids: BTreeSet<Uuid>,
        /// The login name.
        username: String,
    },
    /// Remove a VPN user from every router of the account that runs a VPN.
    RemoveVpnUser {
        /// Those routers.
        router_ids: BTreeSet<Uuid>,
        /// The login name.
        username: String,
    },
    /// Allow traffic in a security group (adds or replaces these rules).
    AuthorizeSecurityGroupRules {
        /// The group.
        group_id: Uuid,
        /// Ingress or egress.
        direction: Direction,
        /// The rules.
        rules: Vec<SecurityRuleEntry>,
    },
    /// Remove rules from a security group.
    RevokeSecurityGroupRules {
        /// The group.
        group_id: Uuid,
        /// Ingress or egress.
        direction: Direction,
        /// The rules.
        rule_ids: Vec<Uuid>,
    },
    /// A VM joined a security group: its traffic is filtered by the group's rules.
    JoinSecurityGroup {
        /// The group.
        group_id: Uuid,
        /// The VM.
        vm_id: Uuid,
    },
    /// A VM left a security group.
    LeaveSecurityGroup {
        /// The group.
        group_id: Uuid,
        /// The VM.
        vm_id: Uuid,
    },
    /// Remove a security group from the hosts.
    RemoveSecurityGroup {
        /// The group.
        group_id: Uuid,
    },
}

impl NetworkAction {
    /// The routers (or security groups) the action changes. The orchestrator runs the actions
    /// of one device one at a time, in log order, so a router's configuration changes in the
    /// order the log says (a NIC's DHCP entry never overtakes the start of its router).
    pub fn devices(&self) -> BTreeSet<Uuid> {
        match self {
            NetworkAction::AddVpnUser { router_ids, .. }
            | NetworkAction::RemoveVpnUser { router_ids, .. } => router_ids.clone(),
            NetworkAction::StartRouter { router_id, .. }
            | NetworkAction::StopRouter { router_id }
            | NetworkAction::RebootRouter { router_id }
            | NetworkAction::DestroyRouter { router_id }
            | NetworkAction::AssociateIp { router_id, .. }
            | NetworkAction::ReleaseIp { router_id, .. }
            | NetworkAction::EnableStaticNat { router_id, .. }
            | NetworkAction::DisableStaticNat { router_id, .. }
            | NetworkAction::AddPortForward { router_id, .. }
            | NetworkAction::RemovePortForward { router_id, .. }
            | NetworkAction::AddFirewallRule { router_id, .. }
            | NetworkAction::RemoveFirewallRule { router_id, .. }
            | NetworkAction::ConfigureLoadBalancer { router_id, .. }
            | NetworkAction::AssignToLoadBalancer { router_id, .. }
            | NetworkAction::RemoveFromLoadBalancer { router_id, .. }
            | NetworkAction::RemoveLoadBalancer { router_id, .. }
            | NetworkAction::AddDhcpEntry { router_id, .. }
            | NetworkAction::RemoveDhcpEntry { router_id, .. }
            | NetworkAction::EnableVpn { router_id, .. }
            | NetworkAction::DisableVpn { router_id } => BTreeSet::from([*router_id]),
            NetworkAction::AuthorizeSecurityGroupRules { group_id, .. }
            | NetworkAction::RevokeSecurityGroupRules { group_id, .. }
            | NetworkAction::JoinSecurityGroup { group_id, .. }
            | NetworkAction::LeaveSecurityGroup { group_id, .. }
            | NetworkAction::RemoveSecurityGroup { group_id } => BTreeSet::from([*group_id]),
        }
    }

    /// The kind, which selects the failure injection and latency that apply.
    pub fn kind(&self) -> super::CommandKind {
        use super::CommandKind as K;
        match self {
            NetworkAction::StartRouter { .. } => K::StartRouter,
            NetworkAction::StopRouter { .. } => K::StopRouter,
            NetworkAction::RebootRouter { .. } => K::RebootRouter,
            NetworkAction::DestroyRouter { .. } => K::DestroyRouter,
            NetworkAction::AssociateIp { .. } | NetworkAction::ReleaseIp { .. } => K::IpAssoc,
            NetworkAction::EnableStaticNat { .. } | NetworkAction::DisableStaticNat { .. } => {
                K::StaticNat
            }
            NetworkAction::AddPortForward { .. } | NetworkAction::RemovePortForward { .. } => {
                K::PortForwarding
            }
            NetworkAction::AddFirewallRule { .. } | NetworkAction::RemoveFirewallRule { .. } => {
                K::Firewall
            }
            NetworkAction::ConfigureLoadBalancer { .. }
            | NetworkAction::AssignToLoadBalancer { .. }
            | NetworkAction::RemoveFromLoadBalancer { .. }
            | NetworkAction::RemoveLoadBalancer { .. } => K::LoadBalancer,
            NetworkAction::AddDhcpEntry { .. } | NetworkAction::RemoveDhcpEntry { .. } => {
                K::DhcpEntry
            }
            NetworkAction::EnableVpn { .. } | NetworkAction::DisableVpn { .. } => {
                K::RemoteAccessVpn
            }
            NetworkAction::AddVpnUser { .. } | NetworkAction::RemoveVpnUser { .. } => K::VpnUsers,
            NetworkAction::AuthorizeSecurityGroupRules { .. }
            | NetworkAction::RevokeSecurityGroupRules { .. }
            | NetworkAction::JoinSecurityGroup { .. }
            | NetworkAction::LeaveSecurityGroup { .. }
            | NetworkAction::RemoveSecurityGroup { .. } => K::SecurityGroupRules,
        }
    }
}

/// One reading of a router's monotonic byte counters (becomes a ROUTER.STATS event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterCounters {
    /// The router.
    pub router_id: Uuid,
    /// Bytes its guests sent since the counter last started (router start or reboot).
    pub bytes_sent: u64,
    /// Bytes its guests received since then.
    pub bytes_received: u64,
}

/// Virtual routers and the hosts' security group firewall as the orchestrator sees them.
/// Object-safe (used as `Arc<dyn NetworkDriver>`).
pub trait NetworkDriver: Send + Sync + 'static {
    /// Takes over a router the log says exists with `config`, running or not (after a restart
    /// the driver knows nothing), without acting. Its counters start from zero, as after a
    /// reboot.
    fn adopt_router(&self, router_id: Uuid, config: RouterConfig, running: bool);
    /// Takes over a security group the log says is programmed, without acting.
    fn adopt_security_group(&self, group_id: Uuid, config: SecurityGroupConfig);
    /// Runs one action; the same `command_id` again returns the first outcome without acting.
    fn execute_network(
        &self,
        command_id: Uuid,
        action: NetworkAction,
    ) -> futures::future::BoxFuture<'static, Result<(), super::DriverError>>;
    /// The configuration a router has programmed (absent: unknown or destroyed).
    fn router_config(&self, router_id: Uuid) -> Option<RouterConfig>;
    /// Whether a known router is running.
    fn router_running(&self, router_id: Uuid) -> Option<bool>;
    /// The configuration of a security group on the hosts (absent: never programmed).
    fn security_group_config(&self, group_id: Uuid) -> Option<SecurityGroupConfig>;
    /// Counters of every running router; `elapsed_ms` is how much server-clock time passed
    /// since the previous reading, so traffic grows with running time even on a manual clock.
    fn read_router_counters(&self, elapsed_ms: u64) -> Vec<RouterCounters>;
}
