//! Virtual machines (`VM.*`) and their virtual routers (`ROUTER.*`).

use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What every VM event carries about the VM, so that each event is self-contained for usage
/// (RUNNING_VM and ALLOCATED_VM records need offering, template, hypervisor and shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmFacts {
    /// The VM's id.
    pub vm_id: Uuid,
    /// Host name the user chose (`name`).
    pub name: CompactString,
    /// CloudStack's internal name, such as `i-2-5-VM` (used by old-format usage descriptions).
    pub instance_name: CompactString,
    /// `displayname`, when different from the name.
    pub display_name: Option<CompactString>,
    /// Owning account.
    pub account_id: Uuid,
    /// Owning account's domain.
    pub domain_id: Uuid,
    /// Zone it runs in.
    pub zone_id: Uuid,
    /// Current service offering.
    pub service_offering_id: Uuid,
    /// Template (or ISO) it was deployed from.
    pub template_id: Uuid,
    /// Hypervisor type, such as `Simulator` (the usage record's `type`).
    pub hypervisor: CompactString,
    /// vCPUs (custom offerings make this part of the usage key).
    pub cpu_number: u32,
    /// CPU speed in MHz.
    pub cpu_speed: u32,
    /// Memory in MiB.
    pub memory: u64,
}

/// VM.CREATE: a VM was deployed (with `startvm=false` it stays Stopped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCreated {
    /// The VM.
    pub vm: VmFacts,
    /// Host chosen by placement, if placed at creation.
    pub host_id: Option<Uuid>,
    /// Disk offering of the data disk requested at deploy.
    pub disk_offering_id: Option<Uuid>,
    /// Root disk size requested in bytes (`rootdisksize`), when overriding the template's.
    pub root_disk_size: Option<u64>,
    /// Base64 user data as given (not a secret in CloudStack either).
    pub user_data: Option<String>,
    /// Names of the SSH key pairs installed.
    pub ssh_keypairs: Vec<CompactString>,
    /// Affinity groups it joined.
    pub affinity_group_ids: Vec<Uuid>,
}

/// VM.START: the VM was started (Scheduled → Started → Completed; usage accrues from Completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStarted {
    /// The VM.
    pub vm: VmFacts,
    /// Host it runs on, once known.
    pub host_id: Option<Uuid>,
}

/// VM.STOP: the VM was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStopped {
    /// The VM.
    pub vm: VmFacts,
    /// `forced=true`: stopped without a clean guest shutdown.
    pub forced: bool,
}

/// VM.DESTROY: the VM was destroyed (and, with `expunge`, removed at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDestroyed {
    /// The VM.
    pub vm: VmFacts,
    /// `expunge=true` was asked for.
    pub expunge: bool,
}

/// An action on a VM that needs no detail beyond the VM itself
/// (VM.REBOOT, VM.RESETPASSWORD, VM.EXPUNGE, VM.RECOVER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmLifecycle {
    /// The VM.
    pub vm: VmFacts,
}

/// VM.UPDATE: attributes of the VM changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmUpdated {
    /// The VM after the change.
    pub vm: VmFacts,
    /// New base64 user data, if changed.
    pub user_data: Option<String>,
    /// New group, if changed.
    pub group: Option<CompactString>,
    /// New HA setting, if changed.
    pub ha_enabled: Option<bool>,
}

/// VM.UPGRADE (offering changed while stopped) and VM.DYNAMIC.SCALE (changed while running):
/// usage closes the interval under the old offering and opens one under the new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmOfferingChanged {
    /// The VM with its new offering and shape.
    pub vm: VmFacts,
    /// The offering before the change.
    pub previous_service_offering_id: Uuid,
    /// vCPUs before the change.
    pub previous_cpu_number: u32,
    /// CPU speed before the change.
    pub previous_cpu_speed: u32,
    /// Memory before the change.
    pub previous_memory: u64,
}

/// VM.RESETSSHKEY: the VM's SSH keys were replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSshKeyReset {
    /// The VM.
    pub vm: VmFacts,
    /// Names of the key pairs now installed.
    pub ssh_keypairs: Vec<CompactString>,
}

/// VM.MIGRATE: the VM moved to another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmMigrated {
    /// The VM.
    pub vm: VmFacts,
    /// Where it ran.
    pub from_host_id: Option<Uuid>,
    /// Where it runs now.
    pub to_host_id: Uuid,
}

/// VM.MOVE: the VM was assigned to another account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmMoved {
    /// The VM under its new owner.
    pub vm: VmFacts,
    /// The previous owner.
    pub previous_account_id: Uuid,
    /// The previous owner's domain.
    pub previous_domain_id: Uuid,
}

/// VM.RESTORE: the VM's root disk was recreated from a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRestored {
    /// The VM with its new template.
    pub vm: VmFacts,
    /// The template it had before.
    pub previous_template_id: Uuid,
}

/// What every router event carries about the virtual router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterFacts {
    /// The router's id.
    pub router_id: Uuid,
    /// Its name, such as `r-7-VM`.
    pub name: CompactString,
    /// Account whose network it serves.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone it runs in.
    pub zone_id: Uuid,
    /// Guest network it serves (isolated networks).
    pub network_id: Option<Uuid>,
    /// VPC it serves (VPC routers).
    pub vpc_id: Option<Uuid>,
    /// Host it runs on.
    pub host_id: Option<Uuid>,
    /// System offering it runs with.
    pub service_offering_id: Uuid,
    /// System VM template.
    pub template_id: Option<Uuid>,
    /// Its public (source NAT) address.
    pub public_ip: Option<IpAddr>,
    /// Its address on the guest network.
    pub guest_ip: Option<IpAddr>,
}

/// ROUTER.CREATE / DESTROY / START / STOP / REBOOT / HA / UPGRADE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterLifecycle {
    /// The router.
    pub router: RouterFacts,
}

/// ROUTER.STATS (Ledgerstack): a reading of a router's monotonic network byte counters for one
/// guest network, taken every `router.stats.interval` seconds. Usage (types 4 and 5) bills the
/// delta between readings; a reading lower than the previous one is a counter reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCounterReading {
    /// The router whose counters were read: the device deltas are tracked per.
    pub router_id: Uuid,
    /// The guest network the counters belong to.
    pub network_id: Uuid,
    /// Account billed.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Bytes sent by the guest network since the counter started.
    pub bytes_sent: u64,
    /// Bytes received by the guest network since the counter started.
    pub bytes_received: u64,
}
