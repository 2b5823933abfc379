//! Guest networks, network offerings and public IP ranges: `listNetworkOfferings`,
//! `createNetworkOffering`, `updateNetworkOffering`, `createNetwork`, `listNetworks`,
//! `updateNetwork`, `restartNetwork`, `deleteNetwork`, `createVlanIpRange`, `listVlanIpRanges`,
//! `deleteVlanIpRange`; and what deploy and the NIC and IP commands share about networks
//! (implementing one, its guest address pool, who may use it).
//!
//! Creating a network, a range or anything that takes a public or guest address is decided on
//! the [`ALLOCATION`] stream (DESIGN.md invariant 8). An isolated network whose offering has
//! `SourceNat` is implemented when it is created: its source-NAT address and its virtual router
//! are facts of the same decision, the router's start a request the orchestrator carries out.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use compact_str::CompactString;
use engine::event::network::{
    NetworkFacts, NetworkLifecycle, NetworkOfferingFacts, NetworkRestarted, TrafficDirection,
    VlanIpRangeFacts,
};
use engine::event::services::VpcOfferingFacts;
use engine::event::vm::RouterLifecycle;
use engine::event::{
    EventBody, FirewallEvent, NetEvent, NetworkEvent, NetworkOfferingEvent, NewEvent, RouterEvent,
    VlanEvent,
};
use projections::State;
use projections::catalog::Created;
use projections::compute::NetworkRow;
use projections::network::RouterState;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::allocation::{self, ALLOCATION, ResourceType, check_limit};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::catalog::CATALOG;
use crate::commands::render::{put, put_owner};
use crate::commands::{date, row_reply};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobMeta};
use crate::network_implementation::{RouterTarget, router_events};
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

/// CloudStack's `DefaultIsolatedNetworkOfferingWithSourceNatService`, the offering of every
/// account's default guest network, under a fixed id (every log names the same one).
pub const DEFAULT_NETWORK_OFFERING: Uuid = Uuid::from_u128(0x6c656467_6572_4e4f_8000_000000000001);

/// CloudStack's `DefaultSharedNetworkOffering`.
pub const DEFAULT_SHARED_NETWORK_OFFERING: Uuid =
    Uuid::from_u128(0x6c656467_6572_4e4f_8000_000000000002);

/// CloudStack's `DefaultL2NetworkOffering`.
pub const DEFAULT_L2_NETWORK_OFFERING: Uuid =
    Uuid::from_u128(0x6c656467_6572_4e4f_8000_000000000003);

/// CloudStack's `DefaultIsolatedNetworkOfferingForVpcNetworks`, the offering of VPC tiers.
pub const DEFAULT_VPC_NETWORK_OFFERING: Uuid =
    Uuid::from_u128(0x6c656467_6572_4e4f_8000_000000000004);

/// CloudStack's "Default VPC offering".
pub const DEFAULT_VPC_OFFERING: Uuid = Uuid::from_u128(0x6c656467_6572_5650_8000_000000000001);

/// Guest CIDR of a network when neither the call nor its zone gives one (CloudStack's default).
pub const DEFAULT_GUEST_CIDR: &str = "10.1.1.0/24";

/// How long a command waits for a router that is still starting (or stopping) before it
/// decides anyway (see [`settle_router`]).
const ROUTER_SETTLE: Duration = Duration::from_secs(30);

/// The services of CloudStack's isolated offering with source NAT (NetworkOrchestrator).
const ISOLATED_SERVICES: &[&str] = &[
    "Dhcp",
    "Dns",
    "UserData",
    "Firewall",
    "Gateway",
    "Lb",
    "SourceNat",
    "StaticNat",
    "PortForwarding",
    "Vpn",
];

/// The services of CloudStack's offering for VPC tiers and of its default VPC offering.
const VPC_SERVICES: &[&str] = &[
    "Dhcp",
    "Dns",
    "UserData",
    "NetworkACL",
    "Gateway",
    "Lb",
    "SourceNat",
    "StaticNat",
    "PortForwarding",
    "Vpn",
];

/// Every service name CloudStack knows (`supportedservices`).
const KNOWN_SERVICES: &[&str] = &[
    "Vpn",
    "Dhcp",
    "Dns",
    "SourceNat",
    "PortForwarding",
    "Lb",
    "UserData",
    "StaticNat",
    "NetworkACL",
    "Firewall",
    "Gateway",
    "SecurityGroup",
    "Connectivity",
];

/// The network offerings CloudStack ships with, as Ledgerstack seeds them at every start.
pub fn builtin_network_offerings() -> Vec<NetworkOfferingFacts> {
    let offering = |id: Uuid,
                    name: &str,
                    display_text: &str,
                    guest_ip_type: &str,
                    services: &[&str],
                    specify_vlan: bool,
                    for_vpc: bool| NetworkOfferingFacts {
        network_offering_id: id,
        name: name.into(),
        display_text: display_text.into(),
        guest_ip_type: guest_ip_type.into(),
        traffic_type: "Guest".into(),
        services: services.iter().map(|s| CompactString::from(*s)).collect(),
        state: "Enabled".into(),
        is_default: true,
        is_persistent: false,
        specify_vlan,
        for_vpc,
        egress_default_policy: true,
    };
    vec![
        offering(
            DEFAULT_NETWORK_OFFERING,
            "DefaultIsolatedNetworkOfferingWithSourceNatService",
            "Offering for Isolated networks with Source Nat service enabled",
            "Isolated",
            ISOLATED_SERVICES,
            false,
            false,
        ),
        offering(
            DEFAULT_SHARED_NETWORK_OFFERING,
            "DefaultSharedNetworkOffering",
            "Offering for Shared networks",
            "Shared",
            &["Dhcp", "Dns", "UserData"],
            true,
            false,
        ),
        offering(
            DEFAULT_L2_NETWORK_OFFERING,
            "DefaultL2NetworkOffering",
            "Offering for L2 networks",
            "L2",
            &[],
            false,
            false,
        ),
        offering(
            DEFAULT_VPC_NETWORK_OFFERING,
            "DefaultIsolatedNetworkOfferingForVpcNetworks",
            "Offering for Isolated VPC networks with Source Nat service enabled",
            "Isolated",
            VPC_SERVICES,
            false,
            true,
        ),
    ]
}

/// CloudStack's default VPC offering, as Ledgerstack seeds it at every start.
pub fn builtin_vpc_offering() -> VpcOfferingFacts {
    VpcOfferingFacts {
        vpc_offering_id: DEFAULT_VPC_OFFERING,
        name: "Default VPC offering".into(),
        display_text: "Default VPC offering".into(),
        services: VPC_SERVICES
            .iter()
            .map(|s| CompactString::from(*s))
            .collect(),
        state: "Enabled".into(),
        is_default: true,
    }
}

// ---------------------------------------------------------------------------------------------
// Response fields

const OFFERING_FIELDS: &[ResponseField] = &[
    field("id", "string", "the id of the network offering"),
    field("name", "string", "the name of the network offering"),
    field(
        "displaytext",
        "string",
        "an alternate display text of the network offering.",
    ),
    field(
        "traffictype",
        "string",
        "the traffic type for the network offering",
    ),
    field(
        "isdefault",
        "boolean",
        "true if network offering is default, false otherwise",
    ),
    field(
        "specifyvlan",
        "boolean",
        "true if network offering supports vlans, false otherwise",
    ),
    field(
        "conservemode",
        "boolean",
        "true if network offering is ip conserve mode enabled",
    ),
    field(
        "specifyipranges",
        "boolean",
        "true if network offering supports specifying ip ranges, false otherwise",
    ),
    field(
        "availability",
        "string",
        "availability of the network offering",
    ),
    field(
        "state",
        "string",
        "state of the network offering. Can be Disabled/Enabled/Inactive",
    ),
    field(
        "guestiptype",
        "string",
        "guest type of the network offering, can be Shared or Isolated",
    ),
    field("service", "list", "the list of supported services"),
    field(
        "forvpc",
        "boolean",
        "true if network offering can be used by VPC networks only",
    ),
    field(
        "ispersistent",
        "boolean",
        "true if network offering supports persistent networks, false otherwise",
    ),
    field(
        "egressdefaultpolicy",
        "boolean",
        "true if guest network default egress policy is allow; false if default egress policy is deny",
    ),
    field(
        "networkrate",
        "integer",
        "data transfer rate in megabits per second allowed.",
    ),
    field(
        "created",
        "date",
        "the date this network offering was created",
    ),
];

/// The fields of a `network` (NetworkResponse).
pub const NETWORK_FIELDS: &[ResponseField] = &[
    field("id", "string", "the id of the network"),
    field("name", "string", "the name of the network"),
    field("displaytext", "string", "the displaytext of the network"),
    field("state", "string", "state of the network"),
    field("type", "string", "the type of the network"),
    field("traffictype", "string", "the traffic type of the network"),
    field(
        "broadcastdomaintype",
        "string",
        "Broadcast domain type of the network",
    ),
    field("zoneid", "string", "zone id of the network"),
    field(
        "zonename",
        "string",
        "the name of the zone the network belongs to",
    ),
    field(
        "networkofferingid",
        "string",
        "network offering id the network is created from",
    ),
    field(
        "networkofferingname",
        "string",
        "name of the network offering the network is created from",
    ),
    field(
        "networkofferingdisplaytext",
        "string",
        "display text of the network offering the network is created from",
    ),
    field(
        "networkofferingavailability",
        "string",
        "availability of the network offering the network is created from",
    ),
    field(
        "networkofferingconservemode",
        "boolean",
        "true if network offering is ip conserve mode enabled",
    ),
    field(
        "issystem",
        "boolean",
        "true if network is system, false otherwise",
    ),
    field(
        "isdefault",
        "boolean",
        "true if network is default, false otherwise",
    ),
    field(
        "cidr",
        "string",
        "Cloudstack managed address space, all CloudStack managed VMs get IP address from CIDR",
    ),
    field("gateway", "string", "the network's gateway"),
    field("netmask", "string", "the network's netmask"),
    field(
        "vlan",
        "string",
        "The vlan of the network. This parameter is visible to ROOT admins only",
    ),
    field(
        "broadcasturi",
        "string",
        "broadcast uri of the network. This parameter is visible to ROOT admins only",
    ),
    field("networkdomain", "string", "the network domain"),
    field("dns1", "string", "the first IPv4 DNS for the network"),
    field("dns2", "string", "the second IPv4 DNS for the network"),
    field("acltype", "string", "acl type - access type to the network"),
    field("account", "string", "the owner of the network"),
    field("domainid", "string", "the domain id of the network owner"),
    field("domain", "string", "the domain name of the network owner"),
    field("vpcid", "string", "VPC the network belongs to"),
    field(
        "vpcname",
        "string",
        "Name of the VPC to which this network belongs",
    ),
    field("service", "list", "the list of services"),
    field(
        "restartrequired",
        "boolean",
        "true network requires restart",
    ),
    field(
        "specifyipranges",
        "boolean",
        "true if network supports specifying ip ranges, false otherwise",
    ),
    field(
        "ispersistent",
        "boolean",
        "list networks that are persistent",
    ),
    field(
        "canusefordeploy",
        "boolean",
        "list networks available for vm deployment",
    ),
    field(
        "displaynetwork",
        "boolean",
        "an optional field, whether to the display the network to the end user or not.",
    ),
    field(
        "redundantrouter",
        "boolean",
        "If the network has redundant routers enabled",
    ),
    field("created", "date", "the date this network was created"),
    field(
        "related",
        "string",
        "related to what other network configuration",
    ),
    field(
        "tags",
        "list",
        "the list of resource tags associated with network",
    ),
];

const VLAN_FIELDS: &[ResponseField] = &[
    field("id", "string", "the ID of the VLAN IP range"),
    field(
        "forvirtualnetwork",
        "boolean",
        "the virtual network for the VLAN IP range",
    ),
    field("zoneid", "string", "the Zone ID of the VLAN IP range"),
    field("vlan", "string", "the ID or VID of the VLAN."),
    field("account", "string", "the account of the VLAN IP range"),
    field("domainid", "string", "the domain ID of the VLAN IP range"),
    field("domain", "string", "the domain name of the VLAN IP range"),
    field("podid", "string", "the Pod ID for the VLAN IP range"),
    field("podname", "string", "the Pod name for the VLAN IP range"),
    field(
        "description",
        "string",
        "the description of the VLAN IP range",
    ),
    field("gateway", "string", "the gateway of the VLAN IP range"),
    field("netmask", "string", "the netmask of the VLAN IP range"),
    field("cidr", "string", "the cidr of the VLAN IP range"),
    field("startip", "string", "the start ip of the VLAN IP range"),
    field("endip", "string", "the end ip of the VLAN IP range"),
    field("networkid", "string", "the network id of vlan range"),
    field(
        "forsystemvms",
        "boolean",
        "indicates whether VLAN IP range is dedicated to system vms or not",
    ),
];

const NETWORK_ID: crate::registry::ParamSpec = required("id", T::Uuid, "the ID of the network");

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "listNetworkOfferings",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all available network offerings.",
        params: &[
            param("id", T::Uuid, "list network offerings by ID"),
            param("name", T::String, "list network offerings by name"),
            param(
                "displaytext",
                T::String,
                "list network offerings by display text",
            ),
            param("traffictype", T::String, "list by traffic type"),
            param(
                "isdefault",
                T::Boolean,
                "true if need to list only default network offerings. Default value is false",
            ),
            param(
                "specifyvlan",
                T::Boolean,
                "the tags for the network offering.",
            ),
            param(
                "availability",
                T::String,
                "the availability of network offering. Default value is required",
            ),
            param("state", T::String, "list network offerings by state"),
            param(
                "guestiptype",
                T::String,
                "list network offerings by guest type: shared or isolated",
            ),
            param(
                "zoneid",
                T::Uuid,
                "list network offerings available for network creation in specific zone",
            ),
            param(
                "forvpc",
                T::Boolean,
                "the network offering can be used only for network creation inside the VPC",
            ),
            param(
                "supportedservices",
                T::List,
                "list network offerings supporting certain services",
            ),
            param(
                "sourcenatsupported",
                T::Boolean,
                "true if need to list only netwok offerings where source NAT is supported, false otherwise",
            ),
            param(
                "specifyipranges",
                T::Boolean,
                "true if need to list only network offerings which support specifying ip ranges",
            ),
            param(
                "networkid",
                T::Uuid,
                "the ID of the network. Pass this in if you want to see the available network offering that a network can be changed to.",
            ),
        ],
        inherits: Inherits::Paging,
        response: OFFERING_FIELDS,
        related: "createNetworkOffering",
        manual_clock_only: false,
        handler: handler!(list_offerings),
    },
    CommandSpec {
        name: "createNetworkOffering",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Creates a network offering.",
        params: &[
            required("name", T::String, "the name of the network offering"),
            param(
                "displaytext",
                T::String,
                "the display text of the network offering, defaults to the value of 'name'.",
            ),
            required(
                "traffictype",
                T::String,
                "the traffic type for the network offering. Supported type in current release is GUEST only",
            ),
            required(
                "guestiptype",
                T::String,
                "guest type of the network offering: Shared, Isolated or L2",
            ),
            param(
                "supportedservices",
                T::List,
                "services supported by the network offering",
            ),
            param(
                "serviceproviderlist",
                T::Map,
                "provider to service mapping (every service is provided by the virtual router)",
            ),
            param(
                "servicecapabilitylist",
                T::Map,
                "desired service capabilities as part of network offering (ignored)",
            ),
            param(
                "specifyvlan",
                T::Boolean,
                "true if network offering supports vlans",
            ),
            param(
                "specifyipranges",
                T::Boolean,
                "true if network offering supports specifying ip ranges; defaulted to false if not specified",
            ),
            param(
                "ispersistent",
                T::Boolean,
                "true if network offering supports persistent networks; defaulted to false if not specified",
            ),
            param(
                "forvpc",
                T::Boolean,
                "true if network offering is meant to be used for VPC, false otherwise.",
            ),
            param(
                "egressdefaultpolicy",
                T::Boolean,
                "true if guest network default egress policy is allow; false if default egress policy is deny",
            ),
            param(
                "conservemode",
                T::Boolean,
                "true if the network offering is IP conserve mode enabled",
            ),
            param(
                "availability",
                T::String,
                "the availability of network offering. The default value is Optional.",
            ),
            param(
                "networkrate",
                T::Integer,
                "data transfer rate in megabits per second allowed",
            ),
            param("tags", T::String, "the tags for the network offering."),
            param(
                "enable",
                T::Boolean,
                "set to true if the offering is to be enabled during creation. Default is false",
            ),
        ],
        inherits: Inherits::Nothing,
        response: OFFERING_FIELDS,
        related: "listNetworkOfferings",
        manual_clock_only: false,
        handler: handler!(create_offering),
    },
    CommandSpec {
        name: "updateNetworkOffering",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Updates a network offering.",
        params: &[
            param("id", T::Uuid, "the id of the network offering"),
            param("name", T::String, "the name of the network offering"),
            param(
                "displaytext",
                T::String,
                "the display text of the network offering",
            ),
            param(
                "availability",
                T::String,
                "the availability of network offering. The default value is Optional",
            ),
            param(
                "state",
                T::String,
                "update state for the network offering: Enabled or Disabled",
            ),
            param(
                "sortkey",
                T::Integer,
                "sort key of the network offering, integer (ignored)",
            ),
            param(
                "tags",
                T::String,
                "the tags for the network offering (ignored)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: OFFERING_FIELDS,
        related: "listNetworkOfferings",
        manual_clock_only: false,
        handler: handler!(update_offering),
    },
    CommandSpec {
        name: "createNetwork",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Creates a network",
        params: &[
            required("name", T::String, "the name of the network"),
            param("displaytext", T::String, "the display text of the network"),
            required("networkofferingid", T::Uuid, "the network offering ID"),
            required("zoneid", T::Uuid, "the zone ID for the network"),
            param(
                "gateway",
                T::String,
                "the gateway of the network. Required for shared networks and isolated networks when it belongs to VPC",
            ),
            param(
                "netmask",
                T::String,
                "the netmask of the network. Required for shared networks and isolated networks when it belongs to VPC",
            ),
            param(
                "startip",
                T::String,
                "the beginning IP address in the network IP range",
            ),
            param(
                "endip",
                T::String,
                "the ending IP address in the network IP range. If not specified, will be defaulted to startIP",
            ),
            param(
                "vlan",
                T::String,
                "the ID or VID of the network (root admin)",
            ),
            param("networkdomain", T::String, "network domain"),
            param(
                "acltype",
                T::String,
                "Access control type; supported values are account and domain.",
            ),
            param("account", T::String, "account that will own the network"),
            param(
                "domainid",
                T::Uuid,
                "domain ID of the account owning a network",
            ),
            param("vpcid", T::Uuid, "the VPC network belongs to"),
            param(
                "physicalnetworkid",
                T::Uuid,
                "the physical network ID the network belongs to (ignored: one physical network per zone)",
            ),
            param(
                "projectid",
                T::Uuid,
                "an optional project for the network (not supported)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: NETWORK_FIELDS,
        related: "listNetworks",
        manual_clock_only: false,
        handler: handler!(create_network),
    },
    CommandSpec {
        name: "listNetworks",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists all available networks.",
        params: &[
            param("id", T::Uuid, "list networks by ID"),
            param("name", T::String, "list networks by name"),
            param("zoneid", T::Uuid, "the zone ID of the network"),
            param(
                "type",
                T::String,
                "the type of the network. Supported values are: isolated, l2, shared and all",
            ),
            param(
                "isdefault",
                T::Boolean,
                "true if network is default, false otherwise",
            ),
            param(
                "issystem",
                T::Boolean,
                "true if network is system, false otherwise",
            ),
            param(
                "acltype",
                T::String,
                "list networks by ACL (access control list) type. Supported values are account and domain",
            ),
            param("traffictype", T::String, "type of the traffic"),
            param("vpcid", T::Uuid, "List networks by VPC"),
            param("forvpc", T::Boolean, "the network belongs to VPC"),
            param(
                "canusefordeploy",
                T::Boolean,
                "list networks available for VM deployment",
            ),
            param(
                "restartrequired",
                T::Boolean,
                "list networks by restartRequired",
            ),
            param(
                "specifyipranges",
                T::Boolean,
                "true if need to list only networks which support specifying IP ranges",
            ),
            param(
                "networkofferingid",
                T::Uuid,
                "list networks by network offering ID",
            ),
            param(
                "supportedservices",
                T::List,
                "list networks supporting certain services",
            ),
            param(
                "displaynetwork",
                T::Boolean,
                "list resources by display flag; only ROOT admin is eligible to pass this parameter",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: NETWORK_FIELDS,
        related: "createNetwork",
        manual_clock_only: false,
        handler: handler!(list_networks),
    },
    CommandSpec {
        name: "updateNetwork",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Updates a network",
        params: &[
            NETWORK_ID,
            param("name", T::String, "the new name for the network"),
            param(
                "displaytext",
                T::String,
                "the new display text for the network",
            ),
            param("networkdomain", T::String, "network domain"),
            param(
                "networkofferingid",
                T::Uuid,
                "network offering ID (changing it is not supported)",
            ),
            param(
                "guestvmcidr",
                T::String,
                "CIDR for guest VMs (changing it is not supported)",
            ),
            param(
                "customid",
                T::String,
                "an optional field, in case you want to set a custom id to the resource. Allowed to Root Admins only",
            ),
        ],
        inherits: Inherits::Nothing,
        response: NETWORK_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(update_network),
    },
    CommandSpec {
        name: "restartNetwork",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Restarts the network; includes 1) restarting network elements - virtual routers, DHCP servers 2) reapplying all public IPs 3) reapplying loadBalancing/portForwarding rules",
        params: &[
            NETWORK_ID,
            param("cleanup", T::Boolean, "If cleanup old network elements"),
            param(
                "makeredundant",
                T::Boolean,
                "Turn the network into a network with redundant routers (ignored)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(restart_network),
    },
    CommandSpec {
        name: "deleteNetwork",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Deletes a network",
        params: &[
            NETWORK_ID,
            param(
                "forced",
                T::Boolean,
                "Force delete a network (ignored: a network with VMs is never deleted)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_network),
    },
    CommandSpec {
        name: "createVlanIpRange",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Creates a VLAN IP range.",
        params: &[
            param("zoneid", T::Uuid, "the Zone ID of the VLAN IP range"),
            param(
                "podid",
                T::Uuid,
                "optional parameter. Have to be specified for Direct Untagged vlan only.",
            ),
            param(
                "vlan",
                T::String,
                "the ID or VID of the VLAN. If not specified, will be defaulted to the vlan of the network or if vlan of the network is null - to Untagged",
            ),
            param("gateway", T::String, "the gateway of the VLAN IP range"),
            param("netmask", T::String, "the netmask of the VLAN IP range"),
            param(
                "startip",
                T::String,
                "the beginning IP address in the VLAN IP range",
            ),
            param(
                "endip",
                T::String,
                "the ending IP address in the VLAN IP range",
            ),
            param(
                "forvirtualnetwork",
                T::Boolean,
                "true if VLAN is of Virtual type, false if Direct",
            ),
            param("networkid", T::Uuid, "the network id"),
            param(
                "physicalnetworkid",
                T::Uuid,
                "the physical network id (ignored)",
            ),
            param(
                "forsystemvms",
                T::Boolean,
                "true if IP range is set to system vms, false if not (ignored)",
            ),
            param(
                "account",
                T::String,
                "account who will own the VLAN. If VLAN is Zone wide, this parameter should be omitted",
            ),
            param(
                "domainid",
                T::Uuid,
                "domain ID of the account owning a VLAN",
            ),
            param(
                "projectid",
                T::Uuid,
                "project who will own the VLAN (not supported)",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VLAN_FIELDS,
        related: "listVlanIpRanges",
        manual_clock_only: false,
        handler: handler!(create_vlan_ip_range),
    },
    CommandSpec {
        name: "listVlanIpRanges",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Lists all VLAN IP ranges.",
        params: &[
            param("id", T::Uuid, "the ID of the VLAN IP range"),
            param("zoneid", T::Uuid, "the Zone ID of the VLAN IP range"),
            param("podid", T::Uuid, "the Pod ID of the VLAN IP range"),
            param(
                "vlan",
                T::String,
                "the ID or VID of the VLAN. Default is an \"untagged\" VLAN.",
            ),
            param("networkid", T::Uuid, "network id of the VLAN IP range"),
            param(
                "forvirtualnetwork",
                T::Boolean,
                "true if VLAN is of Virtual type, false if Direct",
            ),
            param(
                "physicalnetworkid",
                T::Uuid,
                "physical network id of the VLAN IP range (ignored)",
            ),
            param(
                "account",
                T::String,
                "the account with which the VLAN IP range is associated. Must be used with the domainId parameter.",
            ),
            param(
                "domainid",
                T::Uuid,
                "the domain ID with which the VLAN IP range is associated.  If used with the account parameter, returns all VLAN IP ranges for that account in the specified domain.",
            ),
            param(
                "projectid",
                T::Uuid,
                "project who will own the VLAN (not supported)",
            ),
        ],
        inherits: Inherits::Paging,
        response: VLAN_FIELDS,
        related: "createVlanIpRange",
        manual_clock_only: false,
        handler: handler!(list_vlan_ip_ranges),
    },
    CommandSpec {
        name: "deleteVlanIpRange",
        kind: Kind::Sync,
        roles: Roles::ADMIN,
        description: "Deletes a VLAN IP range.",
        params: &[required("id", T::Uuid, "the id of the VLAN IP range")],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_vlan_ip_range),
    },
];

// ---------------------------------------------------------------------------------------------
// Addresses

fn v4(ip: IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(v4) => Some(u32::from(v4)),
        IpAddr::V6(_) => None,
    }
}

fn ip_of(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

/// The dotted netmask of a prefix length.
pub fn netmask_of(prefix: u32) -> String {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    Ipv4Addr::from(mask).to_string()
}

/// The prefix length of a dotted netmask (`255.255.240.0` → 20), when it is one.
fn prefix_of_netmask(netmask: &str) -> Option<u32> {
    let mask = u32::from(netmask.trim().parse::<Ipv4Addr>().ok()?);
    (mask.leading_ones() + mask.trailing_zeros() == 32).then_some(mask.leading_ones())
}

/// An IPv4 address parameter (431 when it is not one).
fn ipv4_param(call: &Call, name: &str) -> Result<Option<IpAddr>, ApiError> {
    call.str(name)
        .map(|v| {
            v.trim().parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
                ApiError::invalid_param(format!(
                    "Please specify a valid IPv4 address for {name}: {v}"
                ))
            })
        })
        .transpose()
}

/// A netmask parameter as a prefix length (431 when it is not a netmask).
fn netmask_param(call: &Call) -> Result<Option<u32>, ApiError> {
    call.str("netmask")
        .map(|v| {
            prefix_of_netmask(v)
                .filter(|p| (8..=30).contains(p))
                .ok_or_else(|| {
                    ApiError::invalid_param(format!("Please specify a valid netmask: {v}"))
                })
        })
        .transpose()
}

/// `vlan` as CloudStack records it: `untagged`, or `vlan://<n>`.
fn vlan_uri(vlan: &str) -> Result<CompactString, ApiError> {
    let v = vlan.trim();
    if v.eq_ignore_ascii_case("untagged") {
        return Ok("untagged".into());
    }
    let tag = v.strip_prefix("vlan://").unwrap_or(v);
    match tag.parse::<u16>() {
        Ok(n) if (1..=4094).contains(&n) => Ok(format!("vlan://{n}").into()),
        _ => Err(ApiError::invalid_param(format!(
            "Invalid vlan {vlan}: give untagged, a VLAN id from 1 to 4094, or vlan://<id>"
        ))),
    }
}

/// The VLAN tag a `vlan://<n>` URI names (`untagged` as is).
fn vlan_tag(uri: &str) -> &str {
    uri.strip_prefix("vlan://").unwrap_or(uri)
}

/// Checks a new address range of a zone: its addresses in order and in the gateway's subnet,
/// the gateway outside it, and no address shared with another range of the zone.
fn check_range(
    state: &State,
    zone_id: Uuid,
    start: IpAddr,
    end: IpAddr,
    gateway: IpAddr,
    prefix: u32,
) -> Result<(), ApiError> {
    let (Some(s), Some(e), Some(g)) = (v4(start), v4(end), v4(gateway)) else {
        return Err(ApiError::invalid_param("Only IPv4 ranges are supported"));
    };
    if s > e {
        return Err(ApiError::invalid_param(format!(
            "Please specify a valid IP range: the start IP {start} is after the end IP {end}"
        )));
    }
    let mask = u32::MAX << (32 - prefix);
    if s & mask != g & mask || e & mask != g & mask {
        return Err(ApiError::invalid_param(format!(
            "Please specify a valid IP range or valid netmask or valid gateway: {start}-{end} is not in the subnet of gateway {gateway}/{prefix}"
        )));
    }
    if (s..=e).contains(&g) {
        return Err(ApiError::invalid_param(
            "The gateway shouldn't overlap start/end ip addresses",
        ));
    }
    let overlaps = state
        .network
        .vlan_ranges
        .values()
        .map(|r| &r.facts)
        .filter(|r| r.zone_id == zone_id)
        .any(|r| match (v4(r.start_ip), v4(r.end_ip)) {
            (Some(rs), Some(re)) => s <= re && rs <= e,
            _ => false,
        });
    if overlaps {
        return Err(ApiError::invalid_param(
            "The IP range already has IPs that overlap with the new range. Please specify a different start IP/end IP.",
        ));
    }
    Ok(())
}

/// The address range of a shared network (its VLAN IP range), if it has one.
fn shared_range(state: &State, network_id: Uuid) -> Option<&VlanIpRangeFacts> {
    state
        .network
        .vlan_ranges
        .values()
        .map(|r| &r.facts)
        .find(|r| r.network_id == Some(network_id))
}

/// A guest address for a new NIC on `network`: `requested` when it is free and in the pool,
/// else the lowest free one (a shared network's pool is its range, any other's its CIDR);
/// none on an L2 network. 533 when the pool is exhausted. Must be decided on the allocation
/// stream, which owns every network's pool.
pub fn guest_address(
    state: &State,
    network: &NetworkFacts,
    requested: Option<IpAddr>,
) -> Result<Option<IpAddr>, ApiError> {
    let Some(cidr) = network.cidr.as_deref() else {
        if let Some(ip) = requested {
            return Err(ApiError::invalid_param(format!(
                "Network {} has no IPv4 addressing: ipaddress {ip} cannot be used",
                network.name
            )));
        }
        return Ok(None);
    };
    let range = shared_range(state, network.network_id);
    let used: BTreeSet<IpAddr> = state
        .compute
        .nics
        .values()
        .filter(|n| n.facts.network_id == network.network_id)
        .filter_map(|n| n.facts.ip_address)
        .chain(network.gateway)
        .collect();
    let pool = match range {
        Some(r) => v4(r.start_ip).zip(v4(r.end_ip)),
        None => allocation::parse_cidr(cidr).map(|(base, prefix)| {
            let size = 1u32.checked_shl(32 - prefix).unwrap_or(0);
            (base + 1, base + size.saturating_sub(2))
        }),
    };
    let Some((first, last)) = pool else {
        return Err(ApiError::internal(format!(
            "network {} has a bad address pool ({cidr})",
            network.network_id
        )));
    };
    match requested {
        Some(ip) => {
            if !v4(ip).is_some_and(|n| (first..=last).contains(&n)) {
                return Err(ApiError::invalid_param(format!(
                    "IP address {ip} is not in the address range {}-{} of network {}",
                    ip_of(first),
                    ip_of(last),
                    network.name
                )));
            }
            if used.contains(&ip) {
                return Err(ApiError::invalid_param(format!(
                    "IP address {ip} is already in use in network {}",
                    network.name
                )));
            }
            Ok(Some(ip))
        }
        None => (first..=last)
            .map(ip_of)
            .find(|ip| !used.contains(ip))
            .map(Some)
            .ok_or_else(|| {
                ApiError::insufficient_capacity(format!(
                    "Insufficient address capacity: network {} ({cidr}) has no free address",
                    network.name
                ))
            }),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared with deploy, NICs and public IPs

/// The offering of a network.
pub fn offering_of<'a>(
    state: &'a State,
    network: &NetworkFacts,
) -> Option<&'a NetworkOfferingFacts> {
    state
        .network
        .offerings
        .get(&network.network_offering_id)
        .map(|o| &o.facts)
}

/// Whether a network's offering provides `service` (such as `StaticNat`).
pub fn has_service(state: &State, network: &NetworkFacts, service: &str) -> bool {
    offering_of(state, network)
        .is_some_and(|o| o.services.iter().any(|s| s.eq_ignore_ascii_case(service)))
}

/// The account's default guest network in a zone: its oldest isolated network outside any
/// VPC (not being deleted). Deploy without `networkids` uses it, and creates it when absent.
pub fn default_network(state: &State, account_id: Uuid, zone_id: Uuid) -> Option<&NetworkRow> {
    state
        .compute
        .networks
        .values()
        .filter(|n| {
            n.facts.account_id == account_id
                && n.facts.zone_id == zone_id
                && n.facts.vpc_id.is_none()
                && n.facts.guest_type == "Isolated"
                && n.deleting.is_none()
        })
        .min_by_key(|n| (n.created, n.facts.network_id))
}

/// The network `id`, if the VM owner `account_id` (in `domain_id`) may put a NIC on it: their
/// own, one the caller may act on, or a shared network of a domain above theirs.
pub fn usable_network<'a>(
    state: &'a State,
    call: &Call,
    account_id: Uuid,
    domain_id: Uuid,
    id: Uuid,
) -> Result<&'a NetworkRow, ApiError> {
    let row = state
        .compute
        .networks
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find network by id {id}")))?;
    let n = &row.facts;
    let shared = n.guest_type == "Shared" && state.identity.is_in_subtree(domain_id, n.domain_id);
    if n.account_id != account_id
        && !shared
        && !call.caller.may_access(state, n.account_id, n.domain_id)
    {
        return Err(ApiError::permission_denied(format!(
            "Account {account_id} does not have permission to use network {id}"
        )));
    }
    not_deleting(row)
}

/// The network `id`, if the caller may manage it (431 unknown, 531 someone else's).
fn managed_network<'a>(
    state: &'a State,
    call: &Call,
    id: Uuid,
) -> Result<&'a NetworkRow, ApiError> {
    let row = state
        .compute
        .networks
        .get(&id)
        .ok_or_else(|| ApiError::invalid_param(format!("Unable to find network by id {id}")))?;
    if !call
        .caller
        .may_access(state, row.facts.account_id, row.facts.domain_id)
    {
        return Err(ApiError::permission_denied(format!(
            "Account {} does not have permission to operate on network {id}",
            call.caller.account_id
        )));
    }
    Ok(row)
}

/// [`managed_network`], refused (431) while the network is being deleted: what changing it
/// needs.
fn live_managed_network<'a>(
    state: &'a State,
    call: &Call,
    id: Uuid,
) -> Result<&'a NetworkRow, ApiError> {
    not_deleting(managed_network(state, call, id)?)
}

/// `row`, unless its network is being deleted (431).
fn not_deleting(row: &NetworkRow) -> Result<&NetworkRow, ApiError> {
    if row.deleting.is_some() {
        return Err(ApiError::invalid_param(format!(
            "Network {} is being deleted",
            row.facts.name
        )));
    }
    Ok(row)
}

/// Whether a network gets a virtual router of its own: isolated, outside a VPC, with an
/// offering that has `SourceNat`.
pub fn routed(state: &State, network: &NetworkFacts) -> bool {
    network.guest_type == "Isolated"
        && network.vpc_id.is_none()
        && has_service(state, network, "SourceNat")
}

/// What implements a network: facts (its source-NAT address and its router) and the router's
/// start request. The start goes last in its decision, after the NICs it serves, so that the
/// configuration it boots with already holds their DHCP entries and no NIC command can reach
/// the router before it runs.
pub struct Implementation {
    /// NET.IPASSIGN (source NAT) and ROUTER.CREATE.
    pub facts: Vec<NewEvent>,
    /// The source-NAT address taken (a later implementation in the same decision must skip it).
    pub address: Option<IpAddr>,
    /// The ROUTER.START request.
    pub start: NewEvent,
}

/// The implementation of a routed network that has no router yet (see [`routed`]); `None` when
/// it needs none. `also_taken`: public addresses the same decision already took. Must be
/// decided on the allocation stream (it takes a public address against the account's limit).
pub fn implementation(
    state: &State,
    call: &Call,
    network: &NetworkFacts,
    also_taken: &BTreeSet<IpAddr>,
) -> Result<Option<Implementation>, ApiError> {
    if !routed(state, network)
        || state
            .network
            .router_of_network(&state.compute, network.network_id)
            .is_some()
    {
        return Ok(None);
    }
    let (mut events, router) = router_events(
        state,
        call,
        RouterTarget {
            network_id: Some(network.network_id),
            vpc_id: None,
            account_id: network.account_id,
            domain_id: network.domain_id,
            zone_id: network.zone_id,
            guest_ip: network.gateway,
        },
        also_taken,
    )?;
    let start = events
        .pop()
        .ok_or_else(|| ApiError::internal("implementing a network yielded no router start"))?;
    Ok(Some(Implementation {
        facts: events,
        address: router.public_ip,
        start,
    }))
}

/// Waits (a bounded time) until the router serving `network_id` (or the VPC `vpc_id`) has no
/// lifecycle request in flight. The orchestrator already runs a router's commands one at a
/// time in log order; waiting lets a decision see how the start or stop ended (a command
/// queued behind a start that fails would fail too) instead of refusing the router as busy.
pub async fn settle_router(ctx: &Ctx, network_id: Option<Uuid>, vpc_id: Option<Uuid>) {
    let settled = |s: &State| {
        s.network
            .router_for(&s.compute, network_id, vpc_id)
            .and_then(|id| s.network.routers.get(&id))
            .is_none_or(|r| r.pending.is_none())
    };
    let _ = tokio::time::timeout(ROUTER_SETTLE, ctx.models.wait_until(settled)).await;
}

// ---------------------------------------------------------------------------------------------
// Views

/// Availability as CloudStack shows it: the isolated default is `Required` (deploy uses it
/// for the default network), every other offering `Optional`.
fn availability(o: &NetworkOfferingFacts) -> &'static str {
    if o.network_offering_id == DEFAULT_NETWORK_OFFERING {
        "Required"
    } else {
        "Optional"
    }
}

/// A list of services (ServiceResponse), each provided by `provider`.
pub fn services_json(services: &[CompactString], provider: &str) -> Value {
    Value::Array(
        services
            .iter()
            .map(|s| json!({"name": s, "provider": [{"name": provider}], "capability": []}))
            .collect(),
    )
}

/// A network offering as CloudStack shows it (NetworkOfferingResponse).
pub fn offering_json(row: &Created<NetworkOfferingFacts>) -> Value {
    let o = &row.facts;
    let provider = if o.for_vpc {
        "VpcVirtualRouter"
    } else {
        "VirtualRouter"
    };
    json!({
        "id": o.network_offering_id,
        "name": o.name,
        "displaytext": o.display_text,
        "traffictype": o.traffic_type,
        "isdefault": o.is_default,
        "specifyvlan": o.specify_vlan,
        "conservemode": true,
        "specifyipranges": o.guest_ip_type == "Shared",
        "availability": availability(o),
        "networkrate": 200,
        "state": o.state,
        "guestiptype": o.guest_ip_type,
        "service": services_json(&o.services, provider),
        "forvpc": o.for_vpc,
        "fornsx": false,
        "ispersistent": o.is_persistent,
        "egressdefaultpolicy": o.egress_default_policy,
        "supportsstrechedl2subnet": false,
        "supportspublicaccess": false,
        "internetprotocol": "IPv4",
        "created": date(row.created),
    })
}

/// CloudStack's network state: `Shutdown` while a delete is in flight, `Setup` for shared and
/// L2 networks (nothing to implement), `Implemented` while its router (its own or its VPC's)
/// runs, `Allocated` otherwise.
pub fn network_state(state: &State, row: &NetworkRow) -> &'static str {
    if row.deleting.is_some() {
        return "Shutdown";
    }
    if row.facts.guest_type != "Isolated" {
        return "Setup";
    }
    match state
        .network
        .router_of_network(&state.compute, row.facts.network_id)
    {
        Some(r) if r.state == RouterState::Running => "Implemented",
        _ => "Allocated",
    }
}

/// A guest network as CloudStack shows it (NetworkResponse).
pub fn network_json(state: &State, row: &NetworkRow) -> Value {
    let n = &row.facts;
    let offering = offering_of(state, n);
    let zone = state.catalog.zones.get(&n.zone_id).map(|z| &z.facts);
    let mut m = Map::new();
    put(&mut m, "id", json!(n.network_id));
    put(&mut m, "name", json!(n.name));
    put(&mut m, "displaytext", json!(n.display_text));
    put(&mut m, "state", json!(network_state(state, row)));
    put(&mut m, "type", json!(n.guest_type));
    put(&mut m, "traffictype", json!("Guest"));
    put(&mut m, "broadcastdomaintype", json!("Vlan"));
    put(&mut m, "zoneid", json!(n.zone_id));
    put(&mut m, "zonename", json!(zone.map(|z| &z.name)));
    put(&mut m, "networkofferingid", json!(n.network_offering_id));
    if let Some(o) = offering {
        put(&mut m, "networkofferingname", json!(o.name));
        put(&mut m, "networkofferingdisplaytext", json!(o.display_text));
        put(
            &mut m,
            "networkofferingavailability",
            json!(availability(o)),
        );
        put(&mut m, "networkofferingconservemode", json!(true));
        put(&mut m, "ispersistent", json!(o.is_persistent));
        put(
            &mut m,
            "egressdefaultpolicy",
            json!(o.egress_default_policy),
        );
        let provider = if n.vpc_id.is_some() {
            "VpcVirtualRouter"
        } else {
            "VirtualRouter"
        };
        put(&mut m, "service", services_json(&o.services, provider));
    }
    put(&mut m, "issystem", json!(false));
    let is_default = n.guest_type == "Isolated"
        && default_network(state, n.account_id, n.zone_id)
            .is_some_and(|d| d.facts.network_id == n.network_id);
    put(&mut m, "isdefault", json!(is_default));
    put(&mut m, "cidr", json!(n.cidr));
    put(&mut m, "gateway", json!(n.gateway));
    let netmask = n
        .cidr
        .as_deref()
        .and_then(allocation::parse_cidr)
        .map(|(_, prefix)| netmask_of(prefix));
    put(&mut m, "netmask", json!(netmask));
    if let Some(vlan) = &n.vlan {
        put(&mut m, "vlan", json!(vlan_tag(vlan)));
        put(&mut m, "broadcasturi", json!(vlan));
    }
    put(&mut m, "networkdomain", json!(n.network_domain));
    put(&mut m, "dns1", json!(zone.and_then(|z| z.dns1)));
    put(&mut m, "dns2", json!(zone.and_then(|z| z.dns2)));
    let acl = if n.guest_type == "Shared" {
        "Domain"
    } else {
        "Account"
    };
    put(&mut m, "acltype", json!(acl));
    put_owner(&mut m, state, n.account_id, n.domain_id);
    if let Some(vpc) = n.vpc_id {
        put(&mut m, "vpcid", json!(vpc));
        put(
            &mut m,
            "vpcname",
            json!(state.network.vpcs.get(&vpc).map(|v| &v.facts.name)),
        );
    }
    put(&mut m, "restartrequired", json!(false));
    put(&mut m, "specifyipranges", json!(n.guest_type == "Shared"));
    put(&mut m, "canusefordeploy", json!(row.deleting.is_none()));
    put(&mut m, "displaynetwork", json!(true));
    put(&mut m, "redundantrouter", json!(false));
    put(&mut m, "created", json!(date(row.created)));
    put(&mut m, "related", json!(n.network_id));
    put(&mut m, "tags", super::tags::tags_json(state, n.network_id));
    Value::Object(m)
}

/// The `network` reply for a network.
pub fn network_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(
        state.compute.networks.get(&id),
        "network",
        "network",
        id,
        |r| network_json(state, r),
    )
}

/// A public or shared-network address range as CloudStack shows it (VlanIpRangeResponse).
pub fn vlan_json(state: &State, row: &Created<VlanIpRangeFacts>) -> Value {
    let r = &row.facts;
    let mut m = Map::new();
    put(&mut m, "id", json!(r.vlan_range_id));
    put(&mut m, "forvirtualnetwork", json!(r.for_virtual_network));
    put(&mut m, "zoneid", json!(r.zone_id));
    put(&mut m, "vlan", json!(r.vlan));
    if let Some(account) = r.account_id {
        put(
            &mut m,
            "account",
            json!(state.identity.account_name(account)),
        );
    }
    if let Some(domain) = r.domain_id {
        put(&mut m, "domainid", json!(domain));
        put(
            &mut m,
            "domain",
            json!(state.identity.domains.get(&domain).map(|d| &d.facts.name)),
        );
    }
    if let Some(pod) = r.pod_id {
        put(&mut m, "podid", json!(pod));
        put(
            &mut m,
            "podname",
            json!(state.infrastructure.pods.get(&pod).map(|p| &p.facts.name)),
        );
    }
    put(
        &mut m,
        "description",
        json!(format!("{}-{}", r.start_ip, r.end_ip)),
    );
    put(&mut m, "gateway", json!(r.gateway));
    put(&mut m, "netmask", json!(r.netmask));
    if let (Some(g), Some(prefix)) = (v4(r.gateway), prefix_of_netmask(&r.netmask)) {
        let base = g & (u32::MAX.checked_shl(32 - prefix).unwrap_or(0));
        put(
            &mut m,
            "cidr",
            json!(format!("{}/{prefix}", Ipv4Addr::from(base))),
        );
    }
    put(&mut m, "startip", json!(r.start_ip));
    put(&mut m, "endip", json!(r.end_ip));
    put(&mut m, "networkid", json!(r.network_id));
    put(&mut m, "forsystemvms", json!(false));
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Network offerings

fn no_project(call: &Call) -> Result<(), ApiError> {
    if call.str("projectid").is_some() {
        return Err(ApiError::invalid_param("projects are not supported"));
    }
    Ok(())
}

fn list_param(call: &Call, name: &str) -> Vec<String> {
    call.str(name)
        .map(crate::protocol::params::parse_list)
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn list_offerings(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let display_text = call.str("displaytext");
    let traffic = call.str("traffictype");
    let is_default = call.bool_opt("isdefault");
    let specify_vlan = call.bool_opt("specifyvlan");
    let wanted_availability = call.str("availability");
    let wanted_state = call.str("state");
    let guest = call.str("guestiptype");
    let for_vpc = call.bool_opt("forvpc");
    let source_nat = call.bool_opt("sourcenatsupported");
    let specify_ranges = call.bool_opt("specifyipranges");
    let services = list_param(call, "supportedservices");
    let keyword = call.str("keyword");
    if let Some(zone) = call.uuid("zoneid")?
        && state.catalog.zones.get(&zone).is_none()
    {
        return Err(ApiError::invalid_param(format!(
            "Unable to find zone by id {zone}"
        )));
    }
    // The offerings a network could move to: Ledgerstack does not change offerings, so none
    // but the network's own.
    let current = match call.uuid("networkid")? {
        Some(n) => Some(managed_network(&state, call, n)?.facts.network_offering_id),
        None => None,
    };
    let admin = call.caller.role != crate::registry::Role::User;
    let has =
        |o: &NetworkOfferingFacts, s: &str| o.services.iter().any(|x| x.eq_ignore_ascii_case(s));
    let mut rows: Vec<&Created<NetworkOfferingFacts>> = state
        .network
        .offerings
        .values()
        .filter(|row| {
            let o = &row.facts;
            id.is_none_or(|id| o.network_offering_id == id)
                && current.is_none_or(|c| o.network_offering_id == c)
                && name.is_none_or(|n| o.name.eq_ignore_ascii_case(n))
                && display_text.is_none_or(|d| o.display_text.eq_ignore_ascii_case(d))
                && traffic.is_none_or(|t| o.traffic_type.eq_ignore_ascii_case(t))
                && is_default.is_none_or(|d| o.is_default == d)
                && specify_vlan.is_none_or(|v| o.specify_vlan == v)
                && wanted_availability.is_none_or(|a| availability(o).eq_ignore_ascii_case(a))
                && match wanted_state {
                    Some(s) => o.state.eq_ignore_ascii_case(s),
                    // Users only see offerings they can create networks from.
                    None => admin || o.state == "Enabled",
                }
                && guest.is_none_or(|g| o.guest_ip_type.eq_ignore_ascii_case(g))
                && for_vpc.is_none_or(|v| o.for_vpc == v)
                && source_nat.is_none_or(|s| has(o, "SourceNat") == s)
                && specify_ranges.is_none_or(|s| (o.guest_ip_type == "Shared") == s)
                && services.iter().all(|s| has(o, s))
                && keyword_matches(keyword, &[&o.name, &o.display_text])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.network_offering_id));
    let (count, items) = paging.apply(rows.into_iter().map(offering_json).collect());
    Ok(Reply::List {
        key: "networkoffering",
        count,
        items,
    })
}

/// The guest type names CloudStack accepts, normalized.
fn guest_type(value: &str) -> Result<&'static str, ApiError> {
    ["Isolated", "Shared", "L2"]
        .into_iter()
        .find(|g| g.eq_ignore_ascii_case(value.trim()))
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Invalid guest type {value}: supported types are Isolated, Shared and L2"
            ))
        })
}

fn availability_param(call: &Call) -> Result<(), ApiError> {
    match call.str("availability") {
        Some(a)
            if !["Required", "Optional"]
                .iter()
                .any(|x| x.eq_ignore_ascii_case(a)) =>
        {
            Err(ApiError::invalid_param(format!(
                "Invalid value {a} for availability: supported values are Required and Optional"
            )))
        }
        _ => Ok(()),
    }
}

async fn create_offering(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name: CompactString = call.required("name")?.trim().into();
    let display_text = call.str("displaytext").unwrap_or(&name).to_owned();
    let traffic = call.required("traffictype")?;
    if !traffic.eq_ignore_ascii_case("Guest") {
        return Err(ApiError::invalid_param(format!(
            "Invalid traffic type {traffic}: only traffic type Guest is supported"
        )));
    }
    let guest = guest_type(call.required("guestiptype")?)?;
    availability_param(call)?;
    let mut services: Vec<CompactString> = Vec::new();
    for s in list_param(call, "supportedservices") {
        let known = KNOWN_SERVICES
            .iter()
            .find(|k| k.eq_ignore_ascii_case(&s))
            .ok_or_else(|| ApiError::invalid_param(format!("Invalid service {s}")))?;
        if !services.iter().any(|x| x == known) {
            services.push((*known).into());
        }
    }
    let for_vpc = call.flag("forvpc");
    if guest == "L2" && !services.is_empty() {
        return Err(ApiError::invalid_param(
            "L2 network offerings cannot have services",
        ));
    }
    if for_vpc && guest != "Isolated" {
        return Err(ApiError::invalid_param(
            "Only isolated network offerings can be used for VPC networks",
        ));
    }
    if guest == "Shared" && services.iter().any(|s| s == "SourceNat") {
        return Err(ApiError::invalid_param(
            "SourceNat service is not supported for Shared networks",
        ));
    }
    let offering = NetworkOfferingFacts {
        network_offering_id: Uuid::new_v4(),
        name: name.clone(),
        display_text,
        guest_ip_type: guest.into(),
        traffic_type: "Guest".into(),
        services,
        state: if call.flag("enable") {
            "Enabled".into()
        } else {
            "Disabled".into()
        },
        is_default: false,
        is_persistent: call.flag("ispersistent"),
        specify_vlan: call.flag("specifyvlan"),
        for_vpc,
        egress_default_policy: call.bool_opt("egressdefaultpolicy").unwrap_or(true),
    };
    let id = offering.network_offering_id;
    ctx.decide(CATALOG, |state| {
        if state
            .network
            .offerings
            .values()
            .any(|o| o.facts.name.eq_ignore_ascii_case(&name))
        {
            return Err(ApiError::invalid_param(format!(
                "Network offering with name {name} already exists"
            )));
        }
        Ok(vec![call.event(EventBody::NetworkOffering(
            NetworkOfferingEvent::Create(offering.clone()),
        ))])
    })
    .await?;
    offering_reply(&ctx.models.read(), id)
}

fn offering_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    let row = state.network.offerings.get(&id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find network offering by id {id}"))
    })?;
    Ok(Reply::Object {
        key: "networkoffering",
        value: offering_json(row),
    })
}

async fn update_offering(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let by_name = call.str("name");
    availability_param(call)?;
    let new_state = call
        .str("state")
        .map(|s| {
            ["Enabled", "Disabled"]
                .into_iter()
                .find(|x| x.eq_ignore_ascii_case(s.trim()))
                .ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Invalid state {s}: supported states are Enabled and Disabled"
                    ))
                })
        })
        .transpose()?;
    // Given an id, `name` renames the offering; without one, it names the offering to update.
    let (id, rename) = match (call.uuid("id")?, by_name) {
        (Some(id), name) => (id, name),
        (None, Some(name)) => {
            let state = ctx.models.read();
            let id = state
                .network
                .offerings
                .values()
                .find(|o| o.facts.name.eq_ignore_ascii_case(name))
                .map(|o| o.facts.network_offering_id)
                .ok_or_else(|| {
                    ApiError::invalid_param(format!("Unable to find network offering {name}"))
                })?;
            (id, None)
        }
        (None, None) => {
            return Err(ApiError::invalid_param(
                "Either the id or the name of the network offering must be given",
            ));
        }
    };
    ctx.decide(CATALOG, |state| {
        let row = state.network.offerings.get(&id).ok_or_else(|| {
            ApiError::invalid_param(format!("Unable to find network offering by id {id}"))
        })?;
        let mut o = row.facts.clone();
        if let Some(name) = rename {
            o.name = name.trim().into();
        }
        if let Some(text) = call.str("displaytext") {
            o.display_text = text.to_owned();
        }
        if let Some(s) = new_state {
            o.state = s.into();
        }
        if o == row.facts {
            return Ok(Vec::new());
        }
        Ok(vec![call.event(EventBody::NetworkOffering(
            NetworkOfferingEvent::Edit(o),
        ))])
    })
    .await?;
    offering_reply(&ctx.models.read(), id)
}

// ---------------------------------------------------------------------------------------------
// createNetwork

/// What `createNetwork` resolved from its parameters before deciding.
struct NetworkPlan {
    network_id: Uuid,
    name: CompactString,
    display_text: String,
    offering_id: Uuid,
    zone_id: Uuid,
    vpc_id: Option<Uuid>,
    gateway: Option<IpAddr>,
    prefix: Option<u32>,
    start_ip: Option<IpAddr>,
    end_ip: Option<IpAddr>,
    vlan: Option<CompactString>,
    network_domain: Option<CompactString>,
}

fn network_plan(call: &Call) -> Result<NetworkPlan, ApiError> {
    no_project(call)?;
    let name: CompactString = call.required("name")?.trim().into();
    let vlan = call.str("vlan").map(vlan_uri).transpose()?;
    if vlan.is_some() && !call.caller.is_root_admin() {
        return Err(ApiError::permission_denied(
            "Only the ROOT admin is allowed to specify the vlan of a network",
        ));
    }
    if let Some(acl) = call.str("acltype")
        && !["Account", "Domain"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(acl))
    {
        return Err(ApiError::invalid_param(format!(
            "Invalid acltype {acl}: supported values are Account and Domain"
        )));
    }
    let start_ip = ipv4_param(call, "startip")?;
    Ok(NetworkPlan {
        network_id: Uuid::new_v4(),
        display_text: call.str("displaytext").unwrap_or(&name).to_owned(),
        name,
        offering_id: call.required_uuid("networkofferingid")?,
        zone_id: call.required_uuid("zoneid")?,
        vpc_id: call.uuid("vpcid")?,
        gateway: ipv4_param(call, "gateway")?,
        prefix: netmask_param(call)?,
        start_ip,
        end_ip: ipv4_param(call, "endip")?.or(start_ip),
        vlan,
        network_domain: call.str("networkdomain").map(|d| d.trim().into()),
    })
}

/// `(base, prefix)` of a CIDR string, or 431.
fn cidr_parts(cidr: &str) -> Result<(u32, u32), ApiError> {
    allocation::parse_cidr(cidr)
        .ok_or_else(|| ApiError::invalid_param(format!("Invalid CIDR {cidr}")))
}

fn cidrs_overlap(a: (u32, u32), b: (u32, u32)) -> bool {
    let prefix = a.1.min(b.1);
    let mask = u32::MAX << (32 - prefix);
    a.0 & mask == b.0 & mask
}

fn decide_create_network(
    state: &State,
    call: &Call,
    plan: &NetworkPlan,
) -> Result<Vec<NewEvent>, ApiError> {
    let (account_id, domain_id) = allocation::owner(call, state)?;
    let zone = state.catalog.zones.get(&plan.zone_id).ok_or_else(|| {
        ApiError::invalid_param(format!("Unable to find zone by id {}", plan.zone_id))
    })?;
    let offering = state
        .network
        .offerings
        .get(&plan.offering_id)
        .map(|o| &o.facts)
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Unable to find network offering by id {}",
                plan.offering_id
            ))
        })?;
    if offering.state != "Enabled" {
        return Err(ApiError::invalid_param(format!(
            "Can't use specified network offering id as its state is not Enabled: {}",
            offering.name
        )));
    }
    if offering.specify_vlan && plan.vlan.is_none() {
        return Err(ApiError::invalid_param(format!(
            "Network offering {} requires the vlan to be specified",
            offering.name
        )));
    }
    let mut gateway = plan.gateway;
    let mut cidr: Option<CompactString> = None;
    let mut range = None;
    match offering.guest_ip_type.as_str() {
        "Shared" => {
            if call.caller.role == crate::registry::Role::User {
                return Err(ApiError::permission_denied(
                    "Only ROOT and domain admins are allowed to create Shared networks",
                ));
            }
            let (Some(g), Some(prefix)) = (plan.gateway, plan.prefix) else {
                return Err(ApiError::invalid_param(
                    "gateway and netmask are required to create a Shared network",
                ));
            };
            let (Some(start), Some(end)) = (plan.start_ip, plan.end_ip) else {
                return Err(ApiError::invalid_param(
                    "startip is required to create a Shared network",
                ));
            };
            check_range(state, plan.zone_id, start, end, g, prefix)?;
            let base = v4(g).unwrap_or(0) & (u32::MAX << (32 - prefix));
            cidr = Some(format!("{}/{prefix}", Ipv4Addr::from(base)).into());
            range = Some(VlanIpRangeFacts {
                vlan_range_id: Uuid::new_v4(),
                zone_id: plan.zone_id,
                pod_id: None,
                vlan: plan.vlan.clone().unwrap_or_else(|| "untagged".into()),
                gateway: g,
                netmask: netmask_of(prefix).into(),
                start_ip: start,
                end_ip: end,
                for_virtual_network: false,
                network_id: Some(plan.network_id),
                account_id: None,
                domain_id: None,
            });
        }
        "L2" => {
            if plan.gateway.is_some() || plan.prefix.is_some() || plan.start_ip.is_some() {
                return Err(ApiError::invalid_param(
                    "gateway, netmask and startip cannot be given for an L2 network",
                ));
            }
        }
        _ => {
            if plan.start_ip.is_some() {
                return Err(ApiError::invalid_param(
                    "startip and endip can only be given for Shared networks",
                ));
            }
            match (plan.vpc_id, offering.for_vpc) {
                (Some(_), false) => {
                    return Err(ApiError::invalid_param(format!(
                        "Network offering {} can't be used for VPC networks",
                        offering.name
                    )));
                }
                (None, true) => {
                    return Err(ApiError::invalid_param(format!(
                        "Network offering {} can be used for VPC networks only: give vpcid",
                        offering.name
                    )));
                }
                _ => {}
            }
            let (base, prefix) = match (plan.gateway, plan.prefix) {
                (Some(g), Some(prefix)) => {
                    (v4(g).unwrap_or(0) & (u32::MAX << (32 - prefix)), prefix)
                }
                (None, None) if plan.vpc_id.is_none() => {
                    let zone_cidr = zone
                        .facts
                        .guest_cidr
                        .clone()
                        .unwrap_or_else(|| DEFAULT_GUEST_CIDR.into());
                    cidr_parts(&zone_cidr)?
                }
                (None, None) => {
                    return Err(ApiError::invalid_param(
                        "Gateway and netmask are required when creating a network in a VPC",
                    ));
                }
                _ => {
                    return Err(ApiError::invalid_param(
                        "gateway and netmask must be given together",
                    ));
                }
            };
            let g = gateway.get_or_insert(ip_of(base + 1));
            let mask = u32::MAX << (32 - prefix);
            if v4(*g).is_none_or(|g| g & mask != base || g == base || g == base | !mask) {
                return Err(ApiError::invalid_param(format!(
                    "The gateway {g} is not a host address of {}/{prefix}",
                    Ipv4Addr::from(base)
                )));
            }
            if let Some(vpc_id) = plan.vpc_id {
                let vpc = state.network.vpcs.get(&vpc_id).ok_or_else(|| {
                    ApiError::invalid_param(format!("Unable to find vpc by id {vpc_id}"))
                })?;
                if !call
                    .caller
                    .may_access(state, vpc.facts.account_id, vpc.facts.domain_id)
                {
                    return Err(ApiError::permission_denied(format!(
                        "Account {} does not have permission to operate on vpc {vpc_id}",
                        call.caller.account_id
                    )));
                }
                if vpc.facts.account_id != account_id {
                    return Err(ApiError::invalid_param(format!(
                        "A network of VPC {} must belong to the VPC's account",
                        vpc.facts.name
                    )));
                }
                if vpc.deleting {
                    return Err(ApiError::invalid_param(format!(
                        "VPC {} is being deleted",
                        vpc.facts.name
                    )));
                }
                if vpc.facts.zone_id != plan.zone_id {
                    return Err(ApiError::invalid_param(format!(
                        "VPC {} is not in zone {}",
                        vpc.facts.name, zone.facts.name
                    )));
                }
                let super_cidr = cidr_parts(&vpc.facts.cidr)?;
                if prefix < super_cidr.1 || !cidrs_overlap((base, prefix), super_cidr) {
                    return Err(ApiError::invalid_param(format!(
                        "Network cidr {}/{prefix} is not within vpc {} cidr {}",
                        Ipv4Addr::from(base),
                        vpc.facts.name,
                        vpc.facts.cidr
                    )));
                }
                if let Some(other) = state.compute.networks.values().find(|n| {
                    n.facts.vpc_id == Some(vpc_id)
                        && n.facts
                            .cidr
                            .as_deref()
                            .and_then(allocation::parse_cidr)
                            .is_some_and(|c| cidrs_overlap(c, (base, prefix)))
                }) {
                    return Err(ApiError::invalid_param(format!(
                        "Network cidr {}/{prefix} overlaps with the cidr of network {} of the vpc",
                        Ipv4Addr::from(base),
                        other.facts.name
                    )));
                }
            }
            cidr = Some(format!("{}/{prefix}", Ipv4Addr::from(base)).into());
        }
    }
    check_limit(state, account_id, ResourceType::Network, 1)?;
    let network = NetworkFacts {
        network_id: plan.network_id,
        name: plan.name.clone(),
        display_text: plan.display_text.clone(),
        account_id,
        domain_id,
        zone_id: plan.zone_id,
        network_offering_id: plan.offering_id,
        guest_type: offering.guest_ip_type.clone(),
        vpc_id: plan.vpc_id,
        cidr,
        gateway,
        vlan: plan.vlan.clone(),
        network_domain: plan
            .network_domain
            .clone()
            .or_else(|| zone.facts.network_domain.clone()),
    };
    let mut events = vec![
        call.event(EventBody::Network(NetworkEvent::Create(NetworkLifecycle {
            network: network.clone(),
        }))),
    ];
    if let Some(range) = range {
        events.push(call.event(EventBody::Vlan(VlanEvent::IpRangeCreate(range))));
    }
    // The network is not in the read models yet: implement it from its facts.
    if routed(state, &network) {
        let (router, _) = router_events(
            state,
            call,
            RouterTarget {
                network_id: Some(network.network_id),
                vpc_id: None,
                account_id,
                domain_id,
                zone_id: plan.zone_id,
                guest_ip: network.gateway,
            },
            &BTreeSet::new(),
        )?;
        events.extend(router);
    }
    Ok(events)
}

async fn create_network(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let plan = network_plan(call)?;
    ctx.decide(ALLOCATION, |state| {
        decide_create_network(state, call, &plan)
    })
    .await?;
    network_reply(&ctx.models.read(), plan.network_id)
}

// ---------------------------------------------------------------------------------------------
// listNetworks

async fn list_networks(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let zone = call.uuid("zoneid")?;
    let wanted_type = call.str("type").filter(|t| !t.eq_ignore_ascii_case("all"));
    let is_default = call.bool_opt("isdefault");
    let is_system = call.bool_opt("issystem");
    let acl = call.str("acltype");
    let traffic = call.str("traffictype");
    let vpc = call.uuid("vpcid")?;
    let for_vpc = call.bool_opt("forvpc");
    let deployable = call.bool_opt("canusefordeploy");
    let restart_required = call.bool_opt("restartrequired");
    let specify_ranges = call.bool_opt("specifyipranges");
    let offering = call.uuid("networkofferingid")?;
    let services = list_param(call, "supportedservices");
    let keyword = call.str("keyword");
    let caller_domain = call.caller.domain_id;
    let mut rows: Vec<&NetworkRow> = state
        .compute
        .networks
        .values()
        .filter(|row| {
            let n = &row.facts;
            // Shared networks are seen by every account below their domain.
            let shared_visible = n.guest_type == "Shared"
                && call.str("account").is_none()
                && state.identity.is_in_subtree(caller_domain, n.domain_id);
            let visible = shared_visible
                || super::volumes::listed(
                    &state,
                    call,
                    scope,
                    id.is_some(),
                    n.account_id,
                    n.domain_id,
                );
            let is_default_network = || {
                default_network(&state, n.account_id, n.zone_id)
                    .is_some_and(|d| d.facts.network_id == n.network_id)
            };
            visible
                && id.is_none_or(|id| n.network_id == id)
                && name.is_none_or(|x| n.name.eq_ignore_ascii_case(x))
                && zone.is_none_or(|z| n.zone_id == z)
                && wanted_type.is_none_or(|t| n.guest_type.eq_ignore_ascii_case(t))
                && is_default
                    .is_none_or(|d| (n.guest_type == "Isolated" && is_default_network()) == d)
                && is_system.is_none_or(|s| !s)
                && acl.is_none_or(|a| {
                    let own = if n.guest_type == "Shared" {
                        "Domain"
                    } else {
                        "Account"
                    };
                    own.eq_ignore_ascii_case(a)
                })
                && traffic.is_none_or(|t| t.eq_ignore_ascii_case("Guest"))
                && vpc.is_none_or(|v| n.vpc_id == Some(v))
                && for_vpc.is_none_or(|f| n.vpc_id.is_some() == f)
                && deployable.is_none_or(|d| row.deleting.is_none() == d)
                && restart_required.is_none_or(|r| !r)
                && specify_ranges.is_none_or(|s| (n.guest_type == "Shared") == s)
                && offering.is_none_or(|o| n.network_offering_id == o)
                && services.iter().all(|s| has_service(&state, n, s))
                && keyword_matches(keyword, &[&n.name, &n.display_text])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.network_id));
    let (count, items) = paging.apply(rows.into_iter().map(|r| network_json(&state, r)).collect());
    Ok(Reply::List {
        key: "network",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// updateNetwork, restartNetwork, deleteNetwork

fn network_job(id: Uuid, event_type: &'static str, description: String) -> JobMeta {
    JobMeta::on("Network", id, event_type, description)
}

fn network_name(ctx: &Ctx, call: &Call, id: Uuid) -> Result<CompactString, ApiError> {
    let state = ctx.models.read();
    Ok(managed_network(&state, call, id)?.facts.name.clone())
}

async fn update_network(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = network_name(ctx, call, id)?;
    if call.str("customid").is_some() && !call.caller.is_root_admin() {
        return Err(ApiError::permission_denied(
            "customid can be set by the ROOT admin only",
        ));
    }
    jobs::submit_decided(
        ctx,
        call,
        network_job(id, "NETWORK.UPDATE", format!("updating network {name}")),
        |state, ids| {
            let row = live_managed_network(state, call, id)?;
            if let Some(offering) = call.uuid("networkofferingid")?
                && offering != row.facts.network_offering_id
            {
                return Err(ApiError::invalid_param(
                    "Changing the network offering of a network is not supported",
                ));
            }
            if let Some(cidr) = call.str("guestvmcidr")
                && Some(cidr.trim()) != row.facts.cidr.as_deref()
            {
                return Err(ApiError::invalid_param(
                    "Changing the guest VM CIDR of a network is not supported",
                ));
            }
            let mut network = row.facts.clone();
            if let Some(n) = call.str("name") {
                network.name = n.trim().into();
            }
            if let Some(d) = call.str("displaytext") {
                network.display_text = d.to_owned();
            }
            if let Some(d) = call.str("networkdomain") {
                network.network_domain = Some(d.trim().into());
            }
            if network == row.facts {
                return Ok(Vec::new());
            }
            Ok(vec![ids.event(
                call,
                EventBody::Network(NetworkEvent::Update(NetworkLifecycle { network })),
            )])
        },
        move |state| network_reply(state, id),
    )
    .await
}

async fn restart_network(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = network_name(ctx, call, id)?;
    let cleanup = call.flag("cleanup");
    let vpc = ctx
        .models
        .read()
        .compute
        .networks
        .get(&id)
        .and_then(|n| n.facts.vpc_id);
    settle_router(ctx, Some(id), vpc).await;
    jobs::submit_decided(
        ctx,
        call,
        network_job(id, "NETWORK.RESTART", format!("restarting network {name}")),
        |state, ids| {
            let row = live_managed_network(state, call, id)?;
            let n = &row.facts;
            let restarted = EventBody::Network(NetworkEvent::Restart(NetworkRestarted {
                network: n.clone(),
                cleanup,
            }));
            let router = state
                .network
                .router_for(&state.compute, Some(id), n.vpc_id)
                .and_then(|r| state.network.routers.get(&r));
            Ok(match router {
                // The driver re-applies the router's whole configuration.
                Some(r) if r.state == RouterState::Running => vec![ids.request(call, restarted)],
                // A router that is down is started: it boots with its whole configuration.
                Some(r) if r.state == RouterState::Stopped && r.pending.is_none() => vec![
                    ids.event(call, restarted),
                    ids.request(
                        call,
                        EventBody::Router(RouterEvent::Start(RouterLifecycle {
                            router: r.facts.clone(),
                        })),
                    ),
                ],
                Some(_) => {
                    return Err(ApiError::invalid_param(format!(
                        "The router of network {} is busy: try again when its start or stop has finished",
                        n.name
                    )));
                }
                None => vec![ids.event(call, restarted)],
            })
        },
        |_| Ok(Reply::success()),
    )
    .await
}

/// The facts that take down a network's public IPs (with everything on them), its egress
/// rules and its address ranges, before the network itself goes.
fn network_cleanup(
    state: &State,
    call: &Call,
    ids: jobs::JobIds,
    network_id: Uuid,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for ip in state
        .network
        .public_ips
        .values()
        .filter(|ip| ip.facts.network_id == Some(network_id))
    {
        for body in super::public_ips::cleanup_bodies(state, ip.facts.ip_id) {
            events.push(ids.event(call, body));
        }
        events.push(ids.event(call, EventBody::Net(NetEvent::IpRelease(ip.facts.clone()))));
    }
    for rule in state.network.firewall_rules.values().filter(|r| {
        r.facts.network_id == Some(network_id) && r.facts.direction == TrafficDirection::Egress
    }) {
        events.push(ids.event(
            call,
            EventBody::Firewall(FirewallEvent::EgressClose(rule.facts.clone())),
        ));
    }
    // A shared network's address range goes with it.
    for range in state
        .network
        .vlan_ranges
        .values()
        .filter(|r| r.facts.network_id == Some(network_id))
    {
        events.push(ids.event(
            call,
            EventBody::Vlan(VlanEvent::IpRangeDelete(range.facts.clone())),
        ));
    }
    events
}

/// True while anything of the network waits for the driver.
fn network_busy(state: &State, network_id: Uuid) -> bool {
    state
        .network
        .public_ips
        .values()
        .filter(|ip| ip.facts.network_id == Some(network_id))
        .any(|ip| super::public_ips::ip_busy(state, ip.facts.ip_id))
        || state
            .network
            .firewall_rules
            .values()
            .any(|r| r.facts.network_id == Some(network_id) && r.pending.is_some())
        || state
            .network
            .routers
            .values()
            .any(|r| r.facts.network_id == Some(network_id) && r.pending.is_some())
}

async fn delete_network(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    let name = network_name(ctx, call, id)?;
    settle_router(ctx, Some(id), None).await;
    jobs::submit_decided(
        ctx,
        call,
        network_job(id, "NETWORK.DELETE", format!("deleting network {name}")),
        |state, ids| {
            let row = managed_network(state, call, id)?;
            let n = &row.facts;
            if row.deleting.is_some() {
                return Err(ApiError::invalid_param(format!(
                    "Network {} is already being deleted",
                    n.name
                )));
            }
            if state.compute.nics.values().any(|nic| nic.facts.network_id == id) {
                return Err(ApiError::in_use(
                    "Can't delete the network, not all user vms are expunged",
                ));
            }
            if network_busy(state, id) {
                return Err(ApiError::invalid_param(format!(
                    "Network {} is busy: a change of its router, addresses or rules is in progress; try again when it has finished",
                    n.name
                )));
            }
            let mut events = network_cleanup(state, call, ids, id);
            let deleted = EventBody::Network(NetworkEvent::Delete(NetworkLifecycle {
                network: n.clone(),
            }));
            let own_router = state
                .network
                .routers
                .values()
                .find(|r| r.facts.network_id == Some(id));
            match own_router {
                // The request destroys the router (router_commands reads the router row as
                // the request is applied, so the row goes only after it, by the fact).
                Some(router) => {
                    events.push(ids.request(call, deleted));
                    events.push(ids.event(
                        call,
                        EventBody::Router(RouterEvent::Destroy(RouterLifecycle {
                            router: router.facts.clone(),
                        })),
                    ));
                }
                None => events.push(ids.event(call, deleted)),
            }
            Ok(events)
        },
        |_| Ok(Reply::success()),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// VLAN IP ranges

async fn create_vlan_ip_range(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    no_project(call)?;
    let zone_param = call.uuid("zoneid")?;
    let network_id = call.uuid("networkid")?;
    let pod_id = call.uuid("podid")?;
    let start = ipv4_param(call, "startip")?
        .ok_or_else(|| ApiError::missing_param(call.command.name, "startip"))?;
    let end = ipv4_param(call, "endip")?.unwrap_or(start);
    let vlan_param = call.str("vlan").map(vlan_uri).transpose()?;
    let for_virtual = call.bool_opt("forvirtualnetwork");
    let range_id = Uuid::new_v4();
    ctx.decide(ALLOCATION, |state| {
        let network = match network_id {
            Some(id) => {
                let n = state.compute.networks.get(&id).ok_or_else(|| {
                    ApiError::invalid_param(format!("Unable to find network by id {id}"))
                })?;
                if n.facts.guest_type != "Shared" {
                    return Err(ApiError::invalid_param(format!(
                        "Can't add an IP range to network {}: only Shared networks take ranges",
                        n.facts.name
                    )));
                }
                Some(&n.facts)
            }
            None => None,
        };
        let zone_id = match (zone_param, network, pod_id) {
            (Some(z), _, _) => z,
            (None, Some(n), _) => n.zone_id,
            (None, None, Some(pod)) => {
                state
                    .infrastructure
                    .pods
                    .get(&pod)
                    .ok_or_else(|| {
                        ApiError::invalid_param(format!("Unable to find pod by id {pod}"))
                    })?
                    .facts
                    .zone_id
            }
            (None, None, None) => {
                return Err(ApiError::invalid_param(
                    "Please specify a valid zone (zoneid), pod or network",
                ));
            }
        };
        if state.catalog.zones.get(&zone_id).is_none() {
            return Err(ApiError::invalid_param(format!(
                "Unable to find zone by id {zone_id}"
            )));
        }
        if network.is_some_and(|n| n.zone_id != zone_id) {
            return Err(ApiError::invalid_param(
                "The network of the range is in another zone",
            ));
        }
        if let Some(pod) = pod_id
            && state
                .infrastructure
                .pods
                .get(&pod)
                .is_none_or(|p| p.facts.zone_id != zone_id)
        {
            return Err(ApiError::invalid_param(format!(
                "Unable to find pod {pod} in zone {zone_id}"
            )));
        }
        // A shared network's range takes its gateway and netmask when not given.
        let net_cidr = network
            .and_then(|n| n.cidr.as_deref())
            .and_then(allocation::parse_cidr);
        let gateway = ipv4_param(call, "gateway")?
            .or_else(|| network.and_then(|n| n.gateway))
            .ok_or_else(|| ApiError::missing_param(call.command.name, "gateway"))?;
        let prefix = netmask_param(call)?
            .or(net_cidr.map(|(_, p)| p))
            .ok_or_else(|| ApiError::missing_param(call.command.name, "netmask"))?;
        check_range(state, zone_id, start, end, gateway, prefix)?;
        let dedicated = if call.str("account").is_some() {
            let (account, domain) = allocation::owner(call, state)?;
            Some((account, domain))
        } else {
            None
        };
        let range = VlanIpRangeFacts {
            vlan_range_id: range_id,
            zone_id,
            pod_id,
            vlan: vlan_param
                .clone()
                .or_else(|| network.and_then(|n| n.vlan.clone()))
                .unwrap_or_else(|| "untagged".into()),
            gateway,
            netmask: netmask_of(prefix).into(),
            start_ip: start,
            end_ip: end,
            for_virtual_network: for_virtual.unwrap_or(network.is_none()),
            network_id,
            account_id: dedicated.map(|(a, _)| a),
            domain_id: dedicated.map(|(_, d)| d),
        };
        Ok(vec![
            call.event(EventBody::Vlan(VlanEvent::IpRangeCreate(range))),
        ])
    })
    .await?;
    let state = ctx.models.read();
    let row = state.network.vlan_ranges.get(&range_id).ok_or_else(|| {
        ApiError::internal(format!(
            "the new range {range_id} is not in the read models"
        ))
    })?;
    Ok(Reply::Object {
        key: "vlan",
        value: vlan_json(&state, row),
    })
}

async fn list_vlan_ip_ranges(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    if call.str("projectid").is_some() {
        return Ok(Reply::List {
            key: "vlaniprange",
            count: 0,
            items: Vec::new(),
        });
    }
    let id = call.uuid("id")?;
    let zone = call.uuid("zoneid")?;
    let pod = call.uuid("podid")?;
    let vlan = call.str("vlan").map(vlan_uri).transpose()?;
    let network = call.uuid("networkid")?;
    let for_virtual = call.bool_opt("forvirtualnetwork");
    let account = if call.str("account").is_some() {
        Some(allocation::owner(call, &state)?.0)
    } else {
        None
    };
    let domain = call.uuid("domainid")?;
    let keyword = call.str("keyword");
    let mut rows: Vec<&Created<VlanIpRangeFacts>> = state
        .network
        .vlan_ranges
        .values()
        .filter(|row| {
            let r = &row.facts;
            id.is_none_or(|id| r.vlan_range_id == id)
                && zone.is_none_or(|z| r.zone_id == z)
                && pod.is_none_or(|p| r.pod_id == Some(p))
                && vlan.as_ref().is_none_or(|v| r.vlan == *v)
                && network.is_none_or(|n| r.network_id == Some(n))
                && for_virtual.is_none_or(|f| r.for_virtual_network == f)
                && account.is_none_or(|a| r.account_id == Some(a))
                && (account.is_some() || domain.is_none_or(|d| r.domain_id == Some(d)))
                && keyword_matches(
                    keyword,
                    &[&r.vlan, &r.start_ip.to_string(), &r.end_ip.to_string()],
                )
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.vlan_range_id));
    let (count, items) = paging.apply(rows.into_iter().map(|r| vlan_json(&state, r)).collect());
    Ok(Reply::List {
        key: "vlaniprange",
        count,
        items,
    })
}

async fn delete_vlan_ip_range(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let id = call.required_uuid("id")?;
    ctx.decide(ALLOCATION, |state| {
        let row =
            state.network.vlan_ranges.get(&id).ok_or_else(|| {
                ApiError::invalid_param(format!("Unable to find vlan by id {id}"))
            })?;
        let r = &row.facts;
        let public = state
            .network
            .public_ips
            .values()
            .filter(|ip| ip.facts.vlan_range_id == Some(id))
            .count();
        let in_range = |ip: IpAddr| match (v4(ip), v4(r.start_ip), v4(r.end_ip)) {
            (Some(n), Some(s), Some(e)) => (s..=e).contains(&n),
            _ => false,
        };
        let guests = match r.network_id {
            Some(network) => state
                .compute
                .nics
                .values()
                .filter(|n| n.facts.network_id == network)
                .filter(|n| n.facts.ip_address.is_some_and(in_range))
                .count(),
            None => 0,
        };
        let used = public + guests;
        if used > 0 {
            return Err(ApiError::in_use(format!(
                "{used}  Ips are in use. Cannot delete this vlan"
            )));
        }
        Ok(vec![call.event(EventBody::Vlan(VlanEvent::IpRangeDelete(
            r.clone(),
        )))])
    })
    .await?;
    Ok(Reply::success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_and_prefixes_round_trip() {
        for prefix in 8..=30 {
            assert_eq!(prefix_of_netmask(&netmask_of(prefix)), Some(prefix));
        }
        assert_eq!(netmask_of(20), "255.255.240.0");
        assert_eq!(prefix_of_netmask("255.255.255.0"), Some(24));
        // Not contiguous, or not an address at all.
        assert_eq!(prefix_of_netmask("255.0.255.0"), None);
        assert_eq!(prefix_of_netmask("nope"), None);
    }

    #[test]
    fn vlans_are_recorded_as_cloudstack_does() {
        assert_eq!(vlan_uri("untagged").unwrap(), "untagged");
        assert_eq!(vlan_uri("UNTAGGED").unwrap(), "untagged");
        assert_eq!(vlan_uri("300").unwrap(), "vlan://300");
        assert_eq!(vlan_uri("vlan://12").unwrap(), "vlan://12");
        assert_eq!(vlan_tag("vlan://12"), "12");
        for bad in ["0", "4095", "vlan://x", "abc"] {
            assert_eq!(vlan_uri(bad).unwrap_err().code, 431, "{bad}");
        }
    }

    #[test]
    fn overlapping_cidrs_are_found() {
        let cidr = |c: &str| allocation::parse_cidr(c).unwrap();
        assert!(cidrs_overlap(cidr("10.0.0.0/16"), cidr("10.0.3.0/24")));
        assert!(cidrs_overlap(cidr("10.0.3.0/24"), cidr("10.0.0.0/16")));
        assert!(!cidrs_overlap(cidr("10.0.1.0/24"), cidr("10.0.2.0/24")));
    }

    #[test]
    fn the_builtin_offerings_are_cloudstacks() {
        let offerings = builtin_network_offerings();
        let names: Vec<&str> = offerings.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "DefaultIsolatedNetworkOfferingWithSourceNatService",
                "DefaultSharedNetworkOffering",
                "DefaultL2NetworkOffering",
                "DefaultIsolatedNetworkOfferingForVpcNetworks",
            ]
        );
        assert_eq!(offerings[0].network_offering_id, DEFAULT_NETWORK_OFFERING);
        assert!(offerings[0].services.iter().any(|s| s == "SourceNat"));
        assert!(offerings[3].for_vpc);
        assert_eq!(builtin_vpc_offering().name, "Default VPC offering");
    }
}
