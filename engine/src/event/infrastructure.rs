//! Zones (`ZONE.*`), pods (`POD.*`), service and disk offerings (`SERVICE.OFFERING.*`,
//! `DISK.OFFERING.*`), configuration (`CONFIGURATION.VALUE.EDIT`) and tags
//! (`CREATE_TAGS`, `DELETE_TAGS`).

use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::KeyValue;

/// What every ZONE.* event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneFacts {
    /// The zone's id.
    pub zone_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub description: Option<String>,
    /// `Basic` or `Advanced`.
    pub network_type: CompactString,
    /// First public DNS server.
    pub dns1: Option<IpAddr>,
    /// Second public DNS server.
    pub dns2: Option<IpAddr>,
    /// First internal DNS server.
    pub internal_dns1: Option<IpAddr>,
    /// Second internal DNS server.
    pub internal_dns2: Option<IpAddr>,
    /// Default guest CIDR for isolated networks.
    pub guest_cidr: Option<CompactString>,
    /// DNS domain for guests.
    pub network_domain: Option<CompactString>,
    /// Security groups are enabled (basic zones).
    pub security_group_enabled: bool,
    /// Local storage may be used.
    pub local_storage_enabled: bool,
    /// `Enabled` or `Disabled`.
    pub allocation_state: CompactString,
}

/// ZONE.CREATE / ZONE.EDIT / ZONE.DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneLifecycle {
    /// The zone.
    pub zone: ZoneFacts,
}

/// What every POD.* event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodFacts {
    /// The pod's id.
    pub pod_id: Uuid,
    /// Zone it is in.
    pub zone_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Management network gateway.
    pub gateway: IpAddr,
    /// Management network netmask.
    pub netmask: CompactString,
    /// First reserved system address.
    pub start_ip: IpAddr,
    /// Last reserved system address.
    pub end_ip: Option<IpAddr>,
    /// `Enabled` or `Disabled`.
    pub allocation_state: CompactString,
}

/// POD.CREATE / POD.EDIT / POD.DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodLifecycle {
    /// The pod.
    pub pod: PodFacts,
}

/// What every SERVICE.OFFERING.* event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOfferingFacts {
    /// The offering's id.
    pub service_offering_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub display_text: String,
    /// vCPUs (`None`: chosen at deploy, a custom offering).
    pub cpu_number: Option<u32>,
    /// CPU speed in MHz (`None`: custom).
    pub cpu_speed: Option<u32>,
    /// Memory in MiB (`None`: custom).
    pub memory: Option<u64>,
    /// Some of cpu/speed/memory are chosen at deploy.
    pub is_customized: bool,
    /// VMs are restarted by HA.
    pub offer_ha: bool,
    /// CPU use is capped at the offering's speed.
    pub limit_cpu_use: bool,
    /// VMs may be scaled while running.
    pub dynamic_scaling_enabled: bool,
    /// `shared` or `local`.
    pub storage_type: CompactString,
    /// Host tags placement must match.
    pub host_tags: Option<CompactString>,
    /// Storage tags the root disk must match.
    pub storage_tags: Option<CompactString>,
    /// Root disk size in bytes, when the offering sets one.
    pub root_disk_size: Option<u64>,
    /// Domains it is restricted to (empty: public).
    pub domain_ids: Vec<Uuid>,
    /// Zones it is restricted to (empty: all).
    pub zone_ids: Vec<Uuid>,
    /// For system VMs of this type (`domainrouter`, ...), if a system offering.
    pub system_vm_type: Option<CompactString>,
}

/// SERVICE.OFFERING.CREATE / EDIT / DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOfferingLifecycle {
    /// The offering.
    pub offering: ServiceOfferingFacts,
}

/// What every DISK.OFFERING.* event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskOfferingFacts {
    /// The offering's id.
    pub disk_offering_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its description.
    pub display_text: String,
    /// Size in bytes (`None`: chosen at creation, a custom offering).
    pub disk_size: Option<u64>,
    /// The size is chosen at creation.
    pub is_customized: bool,
    /// `shared` or `local`.
    pub storage_type: CompactString,
    /// Storage tags.
    pub tags: Option<CompactString>,
    /// Minimum IOPS.
    pub min_iops: Option<u64>,
    /// Maximum IOPS.
    pub max_iops: Option<u64>,
    /// Domains it is restricted to (empty: public).
    pub domain_ids: Vec<Uuid>,
    /// Zones it is restricted to (empty: all).
    pub zone_ids: Vec<Uuid>,
}

/// DISK.OFFERING.CREATE / EDIT / DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskOfferingLifecycle {
    /// The offering.
    pub offering: DiskOfferingFacts,
}

/// Where a configuration value applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigScope {
    /// The whole installation.
    Global,
    /// One zone.
    Zone,
    /// One cluster.
    Cluster,
    /// One domain.
    Domain,
    /// One account (such as an account's own `usage.aggregation.timezone`).
    Account,
}

/// CONFIGURATION.VALUE.EDIT: a setting changed; its effect is immediate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationChanged {
    /// Setting name, such as `default.page.size`.
    pub name: CompactString,
    /// New value (`None`: reset to the default).
    pub value: Option<String>,
    /// Value before the change.
    pub previous_value: Option<String>,
    /// Where it applies.
    pub scope: ConfigScope,
    /// The zone, cluster, domain or account for a scoped value.
    pub scope_id: Option<Uuid>,
}

/// CREATE_TAGS / DELETE_TAGS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceTags {
    /// CloudStack resource type, such as `UserVm` or `Volume`.
    pub resource_type: CompactString,
    /// Resources tagged.
    pub resource_ids: Vec<Uuid>,
    /// Tags added or removed.
    pub tags: Vec<KeyValue>,
    /// Account owning the resources.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
}

/// What every HOST.* and MAINT.* event carries: a hypervisor host and the capacity placement
/// decides against (DESIGN.md invariant 8: the allocation stream owns every host's capacity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// The host's id.
    pub host_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Zone it is in.
    pub zone_id: Uuid,
    /// Pod it is in.
    pub pod_id: Uuid,
    /// Cluster it is in.
    pub cluster_id: Uuid,
    /// Hypervisor type, such as `Simulator`.
    pub hypervisor: CompactString,
    /// Management address.
    pub ip_address: Option<IpAddr>,
    /// Physical CPU cores.
    pub cpu_number: u32,
    /// Speed of each core in MHz.
    pub cpu_speed: u32,
    /// Memory in MiB.
    pub memory: u64,
    /// `Enabled`, `Disabled`, `PrepareForMaintenance` or `Maintenance`: placement uses only
    /// `Enabled` hosts.
    pub resource_state: CompactString,
    /// Host tags an offering's `hosttags` must match.
    pub host_tags: Option<CompactString>,
}

/// HOST.ADD / HOST.UPDATE / MAINT.PREPARE / MAINT.CANCEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLifecycle {
    /// The host after the change.
    pub host: HostFacts,
}

/// What a CLUSTER.ADD event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFacts {
    /// The cluster's id.
    pub cluster_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Zone it is in.
    pub zone_id: Uuid,
    /// Pod it is in.
    pub pod_id: Uuid,
    /// Hypervisor type of its hosts.
    pub hypervisor: CompactString,
    /// `CloudManaged` or `ExternalManaged`.
    pub cluster_type: CompactString,
    /// `Enabled` or `Disabled`.
    pub allocation_state: CompactString,
}

/// CLUSTER.ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLifecycle {
    /// The cluster.
    pub cluster: ClusterFacts,
}
