//! Network services above the network itself: load balancers (`LB.*`), remote access VPN
//! (`VPN.*`), security groups (`SG.*`) and VPCs (`VPC.*`, `VPC.OFFERING.*`).

use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::{KeyValue, SealedSecret};

/// LB.CREATE / LB.UPDATE / LB.DELETE (LOAD_BALANCER_POLICY usage, type 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerFacts {
    /// The rule's id.
    pub rule_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub description: Option<String>,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Network it balances into.
    pub network_id: Option<Uuid>,
    /// Public IP it listens on.
    pub ip_address_id: Uuid,
    /// `roundrobin`, `leastconn` or `source`.
    pub algorithm: CompactString,
    /// `tcp`, `udp` or `tcp-proxy`.
    pub protocol: CompactString,
    /// Port it listens on.
    pub public_port: u16,
    /// Port on the members.
    pub private_port: u16,
    /// Source CIDRs allowed.
    pub cidrs: Vec<CompactString>,
}

/// LB.ASSIGN.TO.RULE / LB.REMOVE.FROM.RULE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerMembers {
    /// The rule.
    pub rule_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// VMs added or removed.
    pub vm_ids: Vec<Uuid>,
}

/// LB.STICKINESSPOLICY.* and LB.HEALTHCHECKPOLICY.*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerPolicy {
    /// The policy's id.
    pub policy_id: Uuid,
    /// The rule it belongs to.
    pub rule_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Stickiness method (`LbCookie`, `AppCookie`, `SourceBased`) or health check `pingpath`.
    pub method: CompactString,
    /// Further parameters.
    pub params: Vec<KeyValue>,
}

/// VPN.REMOTE.ACCESS.CREATE / DESTROY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteAccessVpnFacts {
    /// The VPN's id.
    pub vpn_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Public IP it terminates on.
    pub public_ip_id: Uuid,
    /// That address.
    pub public_ip: IpAddr,
    /// Network it gives access to.
    pub network_id: Option<Uuid>,
    /// VPC it gives access to.
    pub vpc_id: Option<Uuid>,
    /// Client address range, such as `10.1.2.1-10.1.2.8`.
    pub ip_range: CompactString,
    /// The IPsec pre-shared key, sealed with the master key.
    pub preshared_key: Option<SealedSecret>,
}

/// VPN.USER.ADD / VPN.USER.REMOVE (VPN_USERS usage, type 14). The user's password is never
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnUserFacts {
    /// The VPN user's id.
    pub vpn_user_id: Uuid,
    /// Login name.
    pub username: CompactString,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone of the VPN the user was added for.
    pub zone_id: Option<Uuid>,
}

/// SG.CREATE / SG.DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupFacts {
    /// The group's id.
    pub group_id: Uuid,
    /// Its name (unique per account).
    pub name: CompactString,
    /// Its description.
    pub description: Option<String>,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
}

/// One rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    /// The rule's id.
    pub rule_id: Uuid,
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: CompactString,
    /// First port.
    pub start_port: Option<u16>,
    /// Last port.
    pub end_port: Option<u16>,
    /// ICMP type.
    pub icmp_type: Option<i32>,
    /// ICMP code.
    pub icmp_code: Option<i32>,
    /// Peer CIDR.
    pub cidr: Option<CompactString>,
    /// Peer security group, instead of a CIDR.
    pub source_group_id: Option<Uuid>,
}

/// SG.AUTH.INGRESS / SG.AUTH.EGRESS / SG.REVOKE.INGRESS / SG.REVOKE.EGRESS (the direction is in
/// the event type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRules {
    /// The group.
    pub group_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Rules authorized or revoked by one call.
    pub rules: Vec<SecurityGroupRule>,
}

/// SG.ASSIGN / SG.REMOVE: a VM joined or left a group (SECURITY_GROUP usage, type 10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupMembership {
    /// The group.
    pub group_id: Uuid,
    /// The VM.
    pub vm_id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
}

/// VPC.CREATE / UPDATE / DELETE / RESTART (VPC usage, type 31).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcFacts {
    /// The VPC's id.
    pub vpc_id: Uuid,
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
    pub vpc_offering_id: Uuid,
    /// Super CIDR its tiers are carved from.
    pub cidr: CompactString,
    /// DNS domain for guests.
    pub network_domain: Option<CompactString>,
}

/// VPC.OFFERING.CREATE / UPDATE / DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcOfferingFacts {
    /// The offering's id.
    pub vpc_offering_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub display_text: String,
    /// Services offered.
    pub services: Vec<CompactString>,
    /// `Enabled` or `Disabled`.
    pub state: CompactString,
    /// One of the offerings CloudStack ships with.
    pub is_default: bool,
}
